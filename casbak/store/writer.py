"""Writing packs and index files: new objects made durable, then indexed.

A snapshot's new documents go into packs (one write and one fsync per 4 MiB)
as separate frames, so any one can be read alone; then one index file names
them. Packs are durable before the index file that names them, and both
before a manifest can reference them. Every write is told to the index view,
and a writer that finds too many index files merges them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import NamedTuple

import msgspec

from casbak.backends.base import Backend
from casbak.errors import ObjectMissing
from casbak.ids import Digest, hash_bytes
from casbak.kinship import Kin, sketch
from casbak.layout import index_key, pack_key
from casbak.objects import REFRESH_AFTER
from casbak.store.dictionaries import Dictionaries
from casbak.store.encoder import FrameEncoder
from casbak.store.frames import MAX_CHAIN, Frame
from casbak.store.hashnamed import put_once
from casbak.store.indexfile import Location
from casbak.store.indexview import IndexView
from casbak.store.reader import ObjectReader

MAX_PACK_BYTES = 4 * 1024 * 1024
"""A writer starts a new pack past this many bytes of frames."""
MERGE_INDEXES_OVER = 16
"""A writer that finds more index files than this merges them into one."""

FramesByDictionary = dict[Digest | None, list[Frame]]
"""Frames to write, grouped by the dictionary of the packs they go into."""


class StoreResult(msgspec.Struct, frozen=True):
    """What storing a batch of documents added."""

    new_objects: int
    bytes_added: int


class Parts(NamedTuple):
    """The parts of the engine below the ones that write, which each of those uses."""

    backend: Backend
    view: IndexView
    reader: ObjectReader
    encoder: FrameEncoder
    dictionaries: Dictionaries


class UsesParts:
    """Holds the parts below (as ``_backend``, ``_index``, ...) for a part that writes."""

    def __init__(self, parts: Parts) -> None:
        self._backend, self._index, self._reader, self._encoder, self._dictionaries = parts


class PackWriter(UsesParts):
    """New packs and index files, each durable before anything that relies on it."""

    def store(
        self,
        documents: Mapping[Digest, bytes | None],
        bases: Mapping[Digest, Digest] | None = None,
        keepalive: Callable[[], None] = lambda: None,
    ) -> StoreResult:
        """Store the documents not yet stored, in new packs, then index them.

        ``bases`` suggests, per new document, an earlier version to compress
        against. Packs are durable before the index that names them, and both
        before this returns, so a manifest written afterwards is safe.
        """
        located = self._index.locate_many(documents)
        self._refresh_packs({location.pack for location in located.values()})
        new: dict[Digest, bytes] = {}
        for digest, data in documents.items():
            if digest not in located:
                if data is None:  # vouched for by the cache, but gone: the caller re-reads
                    raise ObjectMissing(f"object {digest}")
                new[digest] = data
        if not new:
            return StoreResult(0, 0)
        dictionary_id = self._dictionaries.for_new_frames(new.values())
        kin = Kin(MAX_CHAIN) if len(new) > 1 else None

        def frames() -> Iterator[Frame]:
            # Compressed as the packs are written, so at most one pack's worth
            # of frames is held in memory however large the snapshot.
            for digest, canonical in new.items():
                base = (bases or {}).get(digest)
                shape = sketch(canonical) if kin is not None else frozenset()
                near = kin.nearest(shape) if kin is not None and base is None else None
                if near is not None:
                    frame, used = self._encoder.encode_near(
                        digest, canonical, near, new[near], dictionary_id
                    )
                elif base is not None:
                    frame, used = self._encoder.encode_versioned(
                        digest, canonical, base, dictionary_id
                    )
                else:
                    frame, used = self._encoder.encode(digest, canonical, None, dictionary_id)
                if kin is not None:
                    kin.add(digest, shape, self._depth_of(used, kin.depths))
                self._refresh_base(used, base)
                yield digest, frame, used, len(canonical)
                keepalive()

        added = self.write_packs(frames(), dictionary_id)
        return StoreResult(len(new), added)

    def _refresh_base(self, used: Digest | None, suggested: Digest | None) -> None:
        """Refresh the pack of a stored base other than the one suggested (a chain's root).

        A base of this batch is not indexed yet, so nothing is refreshed for it.
        The suggested base is the target's newest version, which a snapshot
        references; a root may belong only to snapshots already forgotten, and
        a gc must see it young (spared by the grace) until this index exists.
        """
        if used is None or used == suggested:
            return
        location = self._index.locate(used)
        if location is not None:
            self._refresh_packs({location.pack})

    def _depth_of(self, base: Digest | None, batch: Mapping[Digest, int]) -> int:
        """Delta steps to a standalone frame for a frame compressed against ``base``."""
        if base is None:
            return 0
        if base in batch:
            return batch[base] + 1
        return self._index.chain_depth(base) + 1

    def write_packs(self, frames: Iterable[Frame], dictionary_id: Digest | None) -> int:
        """Write frames (digest, frame, base, size) into packs and index them; bytes written."""
        locations, written = self.write_pack_files(frames, dictionary_id)
        written += self.write_index(locations)[1]
        self._index.added(locations)
        self._merge_if_many()
        return written

    def write_pack_files(
        self, frames: Iterable[Frame], dictionary_id: Digest | None
    ) -> tuple[dict[Digest, Location], int]:
        """Write frames into durable packs, not yet indexed; their locations and bytes written.

        Frames with a base are deltas; the others use the packs' dictionary.
        """
        locations: dict[Digest, Location] = {}
        chunk: list[Frame] = []
        size = written = 0
        for item in frames:
            if chunk and size + len(item[1]) > MAX_PACK_BYTES:
                written += self._write_pack(chunk, dictionary_id, locations)
                chunk, size = [], 0
            chunk.append(item)
            size += len(item[1])
        if chunk:
            written += self._write_pack(chunk, dictionary_id, locations)
        self._backend.sync()
        return locations, written

    def _write_pack(
        self, chunk: list[Frame], dictionary_id: Digest | None, locations: dict[Digest, Location]
    ) -> int:
        data = b"".join(frame for _, frame, _, _ in chunk)
        pack_id = hash_bytes(data)
        offset = 0
        for digest, frame, base, size in chunk:
            locations[digest] = Location(
                pack_id, offset, len(frame), size, base, None if base else dictionary_id
            )
            offset += len(frame)
        if put_once(self._backend, pack_key(pack_id), data):
            self._reader.pack_rewritten(pack_id)
        return len(data)

    def write_index(self, locations: Mapping[Digest, Location]) -> tuple[str, int]:
        """Write one index file and make it durable; its key and size."""
        stored = self._index.encode_file(locations)
        key = index_key(hash_bytes(stored))
        put_once(self._backend, key, stored)
        self._backend.sync()
        self._index.file_written(key)
        return key, len(stored)

    def replace_index_files(
        self,
        locations: Mapping[Digest, Location],
        old: Collection[str],
        *,
        whole: bool = False,
    ) -> str:
        """Write one index of ``locations``, make it durable, then remove the ``old`` files.

        The new file is never among those removed, even when its content (and
        so its name) equals one of them. With ``whole``, ``locations`` is the
        entire index from now on. Returns the new file's key.
        """
        key = self.write_index(locations)[0]
        for old_key in set(old) - {key}:
            try:
                self._backend.delete(old_key)
            except ObjectMissing:
                pass
        self._backend.sync()
        self._index.files_replaced(key, locations if whole else None, None if whole else old)
        return key

    def refresh_objects(self, digests: Iterable[str]) -> None:
        """Refresh the packs holding these objects, as a dedup hit does."""
        index = self._index.index()
        self._refresh_packs({index[Digest(d)].pack for d in digests if d in index})

    def _refresh_packs(self, pack_ids: Iterable[str]) -> None:
        # As format 1 refreshes reused objects: a gc honouring the grace period
        # then cannot remove what this snapshot is about to reference.
        now = self._backend.now()
        for pack_id in pack_ids:
            info = self._backend.stat(pack_key(pack_id))
            if info is not None and now - info.mtime > REFRESH_AFTER:
                self._backend.touch(info.key)

    def _merge_if_many(self) -> None:
        # Merging is safe next to other writers: an index file is removed only
        # after a durable merged file holds every one of its records. Only the
        # newest files are merged (so a newer record still wins over an older
        # one), leaving out each oldest file bigger than all newer ones
        # together: a record is then rewritten only when the files newer than
        # its own have grown as big, a few times in its life, not at every merge.
        old = self._index.file_keys()
        if len(old) <= MERGE_INDEXES_OVER:
            return
        try:
            sizes = [self._index.record_count(key) for key in old]
        except ObjectMissing:
            return  # someone else merged first
        start = 0
        while start < len(old) - 2 and sizes[start] > sum(sizes[start + 1 :]):
            start += 1
        old = old[start:]
        merged: dict[Digest, Location] = {}
        for key in old:
            try:
                merged.update(self._index.read_file(key))
            except ObjectMissing:
                return  # someone else merged first
        self.replace_index_files(merged, old)
