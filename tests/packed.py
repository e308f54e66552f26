"""Where a repository keeps an object (a frame in a pack, a record in an index file), to damage it.

Shared by the tests that harm objects on real files: each helper changes one
thing (bytes of one frame, one index record) and leaves the rest as it was.
"""

from __future__ import annotations

from pathlib import Path

from casbak.backends.local import LocalBackend
from casbak.ids import Digest, hash_bytes
from casbak.layout import INDEX_PREFIX, index_key, pack_key
from casbak.repository import Repository
from casbak.store import PackStore
from casbak.store.indexfile import Location, decode_index, encode_index


def packs_of(path: Path) -> PackStore:
    """The object store of the repository at ``path``, opened afresh."""
    store = Repository.open(LocalBackend(path)).objects
    assert isinstance(store, PackStore)
    return store


def frame_of(path: Path, digest: str) -> tuple[str, Location]:
    """The key of the pack holding an object's frame, and where the frame is in it."""
    location = packs_of(path).index()[Digest(digest)]
    return pack_key(location.pack), location


def flip_inside(path: Path, digest: str) -> str:
    """Flip one byte in the middle of an object's frame; return its pack's key."""
    key, location = frame_of(path, digest)
    data = bytearray((path / key).read_bytes())
    data[location.offset + location.length // 2] ^= 0x40
    (path / key).write_bytes(bytes(data))
    return key


def overwrite_frame(path: Path, digest: str, filler: bytes) -> str:
    """Replace an object's frame by ``filler`` repeated to its length; return its pack's key."""
    key, location = frame_of(path, digest)
    data = bytearray((path / key).read_bytes())
    end = location.offset + location.length
    data[location.offset : end] = (filler * location.length)[: location.length]
    (path / key).write_bytes(bytes(data))
    return key


def cut_inside(path: Path, digest: str, missing: int = 5) -> str:
    """Cut short the pack of an object whose frame is the pack's last; return its pack's key."""
    key, location = frame_of(path, digest)
    data = (path / key).read_bytes()
    assert location.offset + location.length == len(data), "only the last frame is cut alone"
    (path / key).write_bytes(data[: len(data) - missing])
    return key


def rewrite_records(path: Path, change: dict[str, Location | None]) -> None:
    """Replace (or, for None, drop) an object's record in every index file that names it.

    Each changed index file is written under its new name before the old one
    goes, as a writer would: the object is then located (or not) as ``change`` says.
    """
    backend = LocalBackend(path)
    for info in list(backend.list(INDEX_PREFIX)):
        records = decode_index(backend.get(info.key), info.key)
        if not change.keys() & records.keys():
            continue
        for digest, location in change.items():
            if digest in records:
                if location is None:
                    del records[Digest(digest)]
                else:
                    records[Digest(digest)] = location
        if records:
            data = encode_index(records.items())
            backend.put(index_key(hash_bytes(data)), data)
        backend.delete(info.key)


def drop_record(path: Path, digest: str) -> None:
    """Make an object missing: no index file names it any more (its frame stays in its pack)."""
    rewrite_records(path, {digest: None})
