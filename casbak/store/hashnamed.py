"""Files named by the hash of their bytes: packs, index files and dictionaries.

Such a file is written once. A name already taken holds these very bytes,
unless the stored file is damaged; then writing it again is its repair.
"""

from __future__ import annotations

from casbak.backends.base import Backend
from casbak.errors import AlreadyExists, ChecksumMismatch, ObjectMissing
from casbak.ids import hash_bytes


def get_checked(backend: Backend, key: str, name: str, what: str) -> bytes:
    """A file's bytes, refused unless they hash to ``name`` (the id its key carries)."""
    stored = backend.get(key)
    actual = hash_bytes(stored)
    if actual != name:
        raise ChecksumMismatch(what, name, actual)
    return stored


def put_once(backend: Backend, key: str, data: bytes) -> bool:
    """Write a file named by the hash of ``data``; True when a damaged copy was replaced.

    A sound copy already there has its time refreshed instead, as a writer
    relying on it must (docs/FORMAT.md, "Writes and durability").
    """
    try:
        backend.put(key, data)
    except AlreadyExists:
        try:
            intact = backend.get(key) == data
        except ObjectMissing:
            intact = False
        if intact:
            backend.touch(key)
        else:
            backend.put(key, data, overwrite=True)
            return True
    return False
