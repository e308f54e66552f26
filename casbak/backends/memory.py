"""An in-memory backend, for tests and for trying casbak without touching disk."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from casbak.backends.base import (
    ObjectInfo,
    StorageIssue,
    validate_key,
    validate_prefix,
    validate_range,
)
from casbak.errors import AlreadyExists, ObjectMissing


class MemoryBackend:
    """A dict of key to (bytes, mtime); every operation is immediately durable."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._items: dict[str, tuple[bytes, float]] = {}
        self._clock = clock

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> None:
        validate_key(key)
        if not overwrite and key in self._items:
            raise AlreadyExists(key)
        self._items[key] = (bytes(data), self._clock())

    def get(self, key: str) -> bytes:
        validate_key(key)
        try:
            return self._items[key][0]
        except KeyError:
            raise ObjectMissing(key) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        validate_range(offset, length)
        return self.get(key)[offset : offset + length]

    def stat(self, key: str) -> ObjectInfo | None:
        validate_key(key)
        found = self._items.get(key)
        return None if found is None else ObjectInfo(key, len(found[0]), found[1])

    def list_names(self, prefix: str) -> Iterator[str]:
        return (info.key for info in self.list(prefix))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        for key in sorted(k for k in self._items if k.startswith(prefix)):
            data, mtime = self._items[key]
            yield ObjectInfo(key, len(data), mtime)

    def delete(self, key: str) -> None:
        validate_key(key)
        if self._items.pop(key, None) is None:
            raise ObjectMissing(key)

    def touch(self, key: str) -> None:
        validate_key(key)
        try:
            data, _ = self._items[key]
        except KeyError:
            raise ObjectMissing(key) from None
        self._items[key] = (data, self._clock())

    def sync(self) -> None:
        """Nothing to do: memory holds what it holds."""

    def audit(self) -> Iterator[StorageIssue]:
        """Memory holds only well-formed keys; there is nothing to report."""
        return iter(())

    def now(self) -> float:
        return self._clock()

    def describe(self) -> str:
        return "memory"
