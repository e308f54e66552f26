"""Sweeping: removing objects by rewriting the packs that hold them, and clearing leftovers.

gc decides what goes; this carries it out (docs/FORMAT.md, "Garbage
collection"): the other frames of the affected packs are checked and copied,
kept objects that were deltas of removed ones re-encoded, all into new packs;
then one merged index file replaces the old ones, and only then are the old
packs removed. Packs no index names (left by a crash) are removed here too.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping

import msgspec

from casbak.backends.base import ObjectInfo
from casbak.ids import Digest
from casbak.layout import PACK_PREFIX, pack_key
from casbak.objects import delete_keys
from casbak.store.indexfile import Location
from casbak.store.writer import FramesByDictionary, PackWriter, Parts, UsesParts


class SweepResult(msgspec.Struct, frozen=True):
    """What a sweep removed and rewrote."""

    objects_removed: int
    bytes_freed: int
    """Stored bytes of the removed objects' frames."""
    packs_rewritten: int
    objects_reencoded: int


class Sweeper(UsesParts):
    """Removes objects from packs, re-encodes what leaned on them, clears unindexed packs."""

    def __init__(self, parts: Parts, writer: PackWriter) -> None:
        super().__init__(parts)
        self._writer = writer

    def sweep(
        self,
        doomed: Iterable[str],
        keepalive: Callable[[], None] = lambda: None,
        reencode: Mapping[str, str | None] | None = None,
        consolidate: Collection[str] = (),
    ) -> SweepResult:
        """Remove objects: rewrite the packs that hold them without them.

        Packs named in ``consolidate`` (small ones) are rewritten too, their
        frames copied into full-sized packs: one small pack per snapshot would
        otherwise make every bulk read a file open per object.

        ``reencode`` names kept objects compressed against a doomed one, each
        with its new base (None: standalone); their packs are rewritten too,
        with a new frame for each of them. New packs and a merged index become
        durable first; only then are the old index files and packs removed, so
        a crash leaves every surviving object indexed, readable, at least once
        (duplicates are harmless).
        """
        index = self._index.index()
        gone = {Digest(digest) for digest in doomed if digest in index}
        rebased = {
            Digest(digest): None if base is None else Digest(base)
            for digest, base in (reencode or {}).items()
            if digest in index and digest not in gone
        }
        indexed = {location.pack for location in index.values()}
        merging = {pack for pack in consolidate if pack in indexed}
        if not gone and not rebased and not merging:
            return SweepResult(0, 0, 0, 0)
        affected = {index[digest].pack for digest in (*gone, *rebased)} | merging
        by_dictionary = self._surviving_frames(index, affected, gone, rebased, keepalive)
        old_files = self._index.file_keys()
        surviving = {
            digest: location
            for digest, location in index.items()
            if location.pack not in affected and digest not in gone
        }
        for dictionary_id, frames in by_dictionary.items():
            surviving.update(self._writer.write_pack_files(frames, dictionary_id)[0])
        self._writer.replace_index_files(surviving, old_files, whole=True)
        # Packs are named by their content, so a rewritten pack can come out
        # byte for byte like an old one (identical delta frames of different
        # objects): a pack the new index names is never removed.
        named = {location.pack for location in surviving.values()}
        delete_keys(self._backend, [pack_key(pack) for pack in sorted(affected - named)], keepalive)
        self._backend.sync()
        freed = sum(index[digest].length for digest in gone)
        return SweepResult(len(gone), freed, len(affected), len(rebased))

    def _surviving_frames(
        self,
        index: Mapping[Digest, Location],
        affected: Collection[str],
        gone: Collection[Digest],
        rebased: Mapping[Digest, Digest | None],
        keepalive: Callable[[], None],
    ) -> FramesByDictionary:
        """The frames of the affected packs that stay, by dictionary: copied or re-encoded."""
        moving = _bases_before_deltas(
            [
                (digest, location)
                for digest, location in sorted(index.items(), key=lambda item: item[1].offset)
                if location.pack in affected and digest not in gone
            ]
        )
        dictionary_id = self._dictionaries.for_new_frames(()) if rebased else None
        by_dictionary: FramesByDictionary = {}
        for digest, location in moving:
            if digest in rebased:
                frame, base = self._reencode(digest, rebased[digest], dictionary_id)
                group = dictionary_id
            else:
                frame = self._reader.frame(digest)[1]
                base = self._reader.settle(digest, location, frame).base  # never copy damage
                group = location.dictionary
            by_dictionary.setdefault(group, []).append((digest, frame, base, location.size))
            keepalive()
        return by_dictionary

    def _reencode(
        self, digest: Digest, base: Digest | None, dictionary_id: Digest | None
    ) -> tuple[bytes, Digest | None]:
        """A new frame for a kept object: a delta against ``base`` if smaller, else standalone."""
        canonical = self._reader.read(digest)  # decoded through its old chain, still there
        standalone = self._encoder.encode(digest, canonical, None, dictionary_id)
        if base is None:
            return standalone
        delta = self._encoder.encode(digest, canonical, base, dictionary_id)
        return delta if len(delta[0]) < len(standalone[0]) else standalone

    def small_packs(self, below: int) -> list[str]:
        """Ids of indexed packs smaller than ``below`` bytes."""
        named = {location.pack for location in self._index.index().values()}
        found = []
        for info in self._backend.list(PACK_PREFIX):
            pack_id = info.key.rsplit("/", 1)[-1]
            if info.size < below and pack_id in named:
                found.append(pack_id)
        return found

    def unindexed_packs(
        self, older_than: float, now: float | None = None
    ) -> tuple[ObjectInfo, ...]:
        """Packs no index names (left by a crash) older than ``older_than`` seconds."""
        named = {pack_key(location.pack) for location in self._index.index().values()}
        current = self._backend.now() if now is None else now
        return tuple(
            info
            for info in self._backend.list(PACK_PREFIX)
            if info.key not in named and current - info.mtime >= older_than
        )

    def delete_unindexed(
        self, older_than: float, only: Collection[str] | None = None
    ) -> tuple[ObjectInfo, ...]:
        """Remove packs no index names older than ``older_than`` seconds (of ``only``, if given).

        Both are judged again here, so a pack indexed or refreshed since it was
        planned for removal stays.
        """
        removed = tuple(
            info for info in self.unindexed_packs(older_than) if only is None or info.key in only
        )
        for info in removed:
            self._backend.delete(info.key)
        if removed:
            self._backend.sync()
        return removed


def _bases_before_deltas(
    moving: list[tuple[Digest, Location]],
) -> list[tuple[Digest, Location]]:
    """The frames in chain order: each delta right after its base, when both are moving.

    Checking a frame decodes it, and a delta's base then comes from the
    reader's recently-decoded objects instead of its whole chain decoded
    again: over one pack per snapshot (what gc consolidates) that is the
    difference between one decode per object and one per chain link.
    """
    moving_ids = {digest for digest, _ in moving}
    deltas: dict[str, list[tuple[Digest, Location]]] = {}
    roots: list[tuple[Digest, Location]] = []
    for item in moving:
        base = item[1].base
        if base is not None and base in moving_ids and base != item[0]:
            deltas.setdefault(base, []).append(item)
        else:
            roots.append(item)
    ordered: list[tuple[Digest, Location]] = []
    placed: set[str] = set()
    stack = roots[::-1]
    while stack:
        item = stack.pop()
        if item[0] in placed:
            continue
        placed.add(item[0])
        ordered.append(item)
        stack.extend(deltas.get(item[0], [])[::-1])
    # A cycle of bases (only damage makes one) has no root: its frames go last.
    ordered.extend(item for item in moving if item[0] not in placed)
    return ordered
