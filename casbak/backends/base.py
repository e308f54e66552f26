"""The storage backend protocol every repository location implements.

Contract (every backend, tested by the shared contract suite):

- Keys are relative, ``/``-separated, made of ``[A-Za-z0-9._-]`` segments that
  do not start with a dot; `validate_key` enforces it before any I/O.
- ``put`` is atomic: a reader sees the old state or the whole new value, never
  a part. With ``overwrite=False`` it creates the key or raises AlreadyExists.
- A value is durable once ``sync`` has returned after its ``put``; ``sync``
  exists so many puts can share one round of directory syncs.
- Reads see every completed write (read-after-write).
- ``get_range`` reads part of a value (a pack's frames) in one request; it
  returns fewer bytes than asked when the value ends sooner, so a caller can
  tell a value cut short from a whole one.
- ``list`` yields keys under a prefix sorted by key, skipping in-flight
  temporary files.
- ``touch`` refreshes a key's modification time (the GC grace period uses it);
  ``now`` reads the clock those times come from, so ages are computed on one clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Protocol

import msgspec

from casbak.errors import BackendError, InvalidKey

_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")


class ObjectInfo(msgspec.Struct, frozen=True):
    """What a backend knows about a stored key without reading it."""

    key: str
    size: int
    mtime: float


class StorageIssue(msgspec.Struct, frozen=True):
    """Something in the storage that is not a well-formed key: kind, where, and what."""

    kind: str  # "temp-file", "unknown-file", "symlink", "wrong-permissions"
    location: str
    message: str


class Backend(Protocol):
    """A flat key/value store of bytes; see the module docstring for the contract."""

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> None:
        """Store ``data`` atomically; raise AlreadyExists if present and not ``overwrite``."""

    def get(self, key: str) -> bytes:
        """Return the stored bytes; raise ObjectMissing when absent."""

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (fewer at the end); ObjectMissing when absent."""

    def stat(self, key: str) -> ObjectInfo | None:
        """Return size and mtime, or None when absent."""

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Yield every key under ``prefix`` (a folder ending in ``/``, or ``""``), sorted."""

    def list_names(self, prefix: str) -> Iterator[str]:
        """The keys `list` yields, without sizes and times (cheaper on large folders)."""

    def delete(self, key: str) -> None:
        """Remove a key; raise ObjectMissing when absent."""

    def touch(self, key: str) -> None:
        """Refresh the modification time; raise ObjectMissing when absent."""

    def sync(self) -> None:
        """Make every completed put and delete durable."""

    def now(self) -> float:
        """The current time on the clock that stamps mtimes (seconds since the epoch)."""

    def describe(self) -> str:
        """A human-readable location, for messages."""

    def audit(self) -> Iterator[StorageIssue]:
        """Report storage hygiene problems that `list` cannot show (read-only)."""


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise InvalidKey."""
    segments = key.split("/")
    if not key or not all(_SEGMENT.fullmatch(segment) for segment in segments) or ".." in key:
        raise InvalidKey(f"invalid storage key {key[:120]!r}")
    return key


def validate_range(offset: int, length: int) -> None:
    """Refuse a byte range no caller should ask for (a negative offset or length)."""
    if offset < 0 or length < 0:
        raise BackendError(f"invalid byte range: offset {offset}, length {length}")


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is empty or a valid key followed by ``/``."""
    if prefix:
        if not prefix.endswith("/"):
            raise InvalidKey(f"invalid storage prefix {prefix[:120]!r}")
        validate_key(prefix[:-1])
    return prefix
