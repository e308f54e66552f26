"""Repairing: what import uses to heal objects whose stored copy is lost or damaged.

Fresh copies go into new packs; objects that still read back are moved out of
packs that fail their check; and the index files that named the broken copies
are superseded by one that names the new ones (docs/FORMAT.md, "Index files").
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping

from casbak.errors import CasbakError, IntegrityError, ObjectMissing
from casbak.ids import Digest, hash_bytes
from casbak.store.frames import Frame
from casbak.store.indexfile import Location
from casbak.store.writer import FramesByDictionary, PackWriter, Parts, StoreResult, UsesParts


class Repairer(UsesParts):
    """Heals the store: repairs objects, rescues damaged packs' intact frames, supersedes."""

    def __init__(self, parts: Parts, writer: PackWriter) -> None:
        super().__init__(parts)
        self._writer = writer

    def repair(
        self, documents: Mapping[Digest, bytes], keepalive: Callable[[], None] = lambda: None
    ) -> StoreResult:
        """Store fresh copies of objects whose stored copy is lost or damaged.

        The copies go into new packs, each standalone (a delta could lean on
        another damaged object); then `supersede` indexes them in place of
        the broken copies.
        """
        if not documents:
            return StoreResult(0, 0)
        dictionary_id = self._dictionaries.for_new_frames(documents.values())

        def frames() -> Iterator[Frame]:
            for digest, canonical in documents.items():
                yield (
                    digest,
                    *self._encoder.encode(digest, canonical, None, dictionary_id),
                    len(canonical),
                )
                keepalive()

        locations, written = self._writer.write_pack_files(frames(), dictionary_id)
        return StoreResult(len(documents), written + self.supersede(locations))

    def rescue(
        self, pack_ids: Collection[str], keepalive: Callable[[], None] = lambda: None
    ) -> int:
        """Move every object that still reads back out of those packs that fail their check.

        Afterwards no record names a damaged pack except for objects whose
        own frame is bad (verify keeps reporting them); the pack is left for
        gc, as a pack no index names. Returns the bytes written.
        """
        held: dict[str, list[tuple[Digest, Location]]] = {}
        for digest, location in self._index.index().items():
            if location.pack in pack_ids:
                held.setdefault(location.pack, []).append((digest, location))
        by_dictionary: FramesByDictionary = {}
        for pack_id in sorted(held):
            self._salvage(pack_id, held[pack_id], by_dictionary, keepalive)
        moved: dict[Digest, Location] = {}
        written = 0
        for dictionary_id, frames in by_dictionary.items():
            locations, size = self._writer.write_pack_files(frames, dictionary_id)
            moved.update(locations)
            written += size
        return written + self.supersede(moved) if moved else 0

    def _salvage(
        self,
        pack_id: str,
        held: list[tuple[Digest, Location]],
        by_dictionary: FramesByDictionary,
        keepalive: Callable[[], None],
    ) -> None:
        """Add the frames of a damaged pack that still read back to ``by_dictionary``."""
        try:
            data = self._reader.pack_bytes(pack_id)
        except ObjectMissing:
            return  # lost whole: its objects can only come from a bundle
        if hash_bytes(data) == pack_id:
            return
        for digest, location in sorted(held, key=lambda item: item[1].offset):
            frame = data[location.offset : location.offset + location.length]
            try:
                settled = self._reader.settle(digest, location, frame)
            except IntegrityError:
                continue
            by_dictionary.setdefault(location.dictionary, []).append(
                (digest, frame, settled.base, location.size)
            )
            keepalive()

    def supersede(self, locations: Mapping[Digest, Location]) -> int:
        """Index ``locations`` in one file that replaces every index file naming any of them.

        Readers let the later of two records win, but modification times can
        tie (S3 keeps whole seconds); with the old records gone nothing rests
        on that. The replacement carries the other records of those files as
        the index resolves them now, and is durable before any file is
        removed, so a crash leaves the old records beside the newer ones.
        Returns the bytes written.
        """
        index = self._index.index()
        replaced: list[str] = []
        carried: dict[Digest, Location] = {}
        for key, parsed in self._index.files():
            try:
                named = parsed.locations()
            except CasbakError:
                continue  # not part of the index (verify reports it); nothing of it wins
            if not named.keys().isdisjoint(locations):
                replaced.append(key)
                carried.update((digest, index[digest]) for digest in named if digest in index)
        carried.update(locations)
        kept, written = self._writer.write_index(carried)
        for key in replaced:
            if key != kept:
                try:
                    self._backend.delete(key)
                except ObjectMissing:
                    pass
        self._backend.sync()
        self._reader.refresh()  # the files it relied on are gone
        return written
