"""A backend seen through a folder of another: every key lives under ``prefix``.

`casbak migrate --encrypt` builds the encrypted repository under
``encrypted/`` of the plain one's location, and a repository whose config
names a ``root`` is read through this view (docs/FORMAT.md, "Encrypted by
migrate"). Keys given and returned are relative to the prefix, errors name
the caller's keys, and nothing outside the prefix is listed, so every layer
above works on it as on a location of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

from casbak.backends.base import (
    Backend,
    ObjectInfo,
    StorageIssue,
    validate_key,
    validate_prefix,
)
from casbak.errors import AlreadyExists, InvalidKey, ObjectMissing


class PrefixedBackend:
    """``inner`` restricted to the keys under ``prefix`` (a folder ending in ``/``)."""

    def __init__(self, inner: Backend, prefix: str) -> None:
        if not prefix:
            raise InvalidKey("a prefixed backend needs a folder, not the top level")
        self.inner = inner
        self.prefix = validate_prefix(prefix)
        # Parallel readers and deleters size their pools by the backend they
        # talk to: the view must not hide an S3 backend's.
        concurrency = getattr(inner, "concurrency", None)
        if concurrency is not None:
            self.concurrency: int = concurrency

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _own(self, key: str) -> str:
        return key[len(self.prefix) :] if key.startswith(self.prefix) else key

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> None:
        try:
            self.inner.put(self._key(key), data, overwrite=overwrite)
        except AlreadyExists:
            raise AlreadyExists(key) from None

    def get(self, key: str) -> bytes:
        try:
            return self.inner.get(self._key(key))
        except ObjectMissing:
            raise ObjectMissing(key) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            return self.inner.get_range(self._key(key), offset, length)
        except ObjectMissing:
            raise ObjectMissing(key) from None

    def stat(self, key: str) -> ObjectInfo | None:
        found = self.inner.stat(self._key(key))
        return None if found is None else ObjectInfo(key, found.size, found.mtime)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        for info in self.inner.list(self.prefix + prefix):
            yield ObjectInfo(self._own(info.key), info.size, info.mtime)

    def list_names(self, prefix: str) -> Iterator[str]:
        validate_prefix(prefix)
        return (self._own(key) for key in self.inner.list_names(self.prefix + prefix))

    def delete(self, key: str) -> None:
        try:
            self.inner.delete(self._key(key))
        except ObjectMissing:
            raise ObjectMissing(key) from None

    def touch(self, key: str) -> None:
        try:
            self.inner.touch(self._key(key))
        except ObjectMissing:
            raise ObjectMissing(key) from None

    def sync(self) -> None:
        self.inner.sync()

    def now(self) -> float:
        return self.inner.now()

    def describe(self) -> str:
        return f"{self.inner.describe()}/{self.prefix.rstrip('/')}"

    def audit(self) -> Iterator[StorageIssue]:
        """The inner backend's findings that lie in this folder (they name full locations)."""
        inside = self.describe()
        for issue in self.inner.audit():
            if issue.location == inside or issue.location.startswith(inside + "/"):
                yield issue
