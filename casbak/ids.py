"""Content identifiers: blake3 digests as 64 lowercase hex characters."""

from __future__ import annotations

import re
from typing import NewType

import blake3

Digest = NewType("Digest", str)

DIGEST_LENGTH = 64
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")


def hash_bytes(data: bytes) -> Digest:
    """Return the blake3 digest of ``data`` as lowercase hex."""
    return Digest(blake3.blake3(data).hexdigest())


def is_digest(text: str) -> bool:
    """Tell whether ``text`` has the exact shape of a digest."""
    return _DIGEST_RE.fullmatch(text) is not None


class Hasher:
    """The id function of one repository: plain blake3, or blake3 keyed by the repository.

    An encrypted repository names its objects and snapshots by a keyed hash,
    so nobody without the key can tell whether a known document is stored; a
    plain repository keeps plain blake3 (its ids must not change).
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes | None = None) -> None:
        if key is not None and len(key) != blake3.blake3.key_size:
            raise ValueError(f"an id key is {blake3.blake3.key_size} bytes, not {len(key)}")
        self._key = key

    @property
    def keyed(self) -> bool:
        """Whether ids depend on a key (an encrypted repository)."""
        return self._key is not None

    def __call__(self, data: bytes) -> Digest:
        """The id of ``data`` as lowercase hex."""
        if self._key is None:
            return hash_bytes(data)
        return Digest(blake3.blake3(data, key=self._key).hexdigest())


PLAIN = Hasher()
"""The id function of every unencrypted repository."""
