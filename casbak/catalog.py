"""The catalog on a backend: a head, immutable parts, and a journal of what changed since.

docs/FORMAT.md (Catalog) gives the layout. Writers tell the catalog of a new
snapshot *before* its manifest is stored (a journal entry naming a manifest
that never arrived is skipped: readers check the manifest is there), and of
removals before the manifests go. Readers take the head and the journal
entries after it; no question lists the manifests. Once the journal is
`COMPACT_AFTER` entries long, the writer that noticed folds it into new parts
under a small compaction lock (one compactor at a time, so heads only move
forward), writes a new head, and only then deletes what the head before it
needed: a reader holding that older head meets a missing part and starts over.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Iterator
from itertools import count
from typing import TypeVar

import msgspec

from casbak.backends.base import Backend
from casbak.catalogdata import (
    BUCKETS,
    CATALOG_VERSION,
    CHUNK,
    HEAD_VERSION,
    HEAD_VERSIONS,
    JOURNAL_VERSIONS,
    Added,
    Bucket,
    Chunk,
    Folding,
    Head,
    JournalEntry,
    SnapshotRecord,
    TenantEntry,
    decode_part,
    empty_bucket,
    encode_part,
    own_entries,
    part_name,
)
from casbak.errors import AlreadyExists, CasbakError, CorruptData, IntegrityError, ObjectMissing
from casbak.layout import (
    CATALOG_HEAD_KEY,
    CATALOG_JOURNAL_PREFIX,
    CATALOG_LOCK_KEY,
    CATALOG_PART_PREFIX,
    catalog_journal_key,
    catalog_part_key,
)
from casbak.objects import DELETE_WORKERS, delete_keys, parallel_map
from casbak.sealer import Sealer
from casbak.store.hashnamed import put_once

COMPACT_AFTER = 32
"""Journal entries after which a writer folds them into the parts."""
FOLD_SYNC_AFTER = 8
"""Journal entries after which a snapshot told by reference folds them: readers of
tenant histories read the manifest of each one waiting."""
TELL_BY_REFERENCE = 256
"""A snapshot of at least this many tenants is told to the journal by reference
(`BY_REFERENCE`): named in full, a sync of 2,000 tenants takes 110 KB, and
folding each at once rewrote every bucket part in every round."""
GHOST_AFTER = 3600.0
"""Seconds after which a journaled snapshot whose manifest never arrived is dropped."""
STALE_COMPACTION = 300.0
"""Seconds after which a compaction lock is taken for a crashed compactor's."""
_ATTEMPTS = 4
_PART_CACHE = 256
_TOLD_CACHE = 64
"""Tenant lists of additions told by reference kept at once (a sync of 2,000: ~200 KB)."""

P = TypeVar("P", Chunk, Bucket)


class CatalogView:
    """One consistent reading: a head, its parts (loaded on demand) and the journal after it."""

    def __init__(self, catalog: Catalog, head: Head, journal: list[JournalEntry]) -> None:
        self.catalog = catalog
        self.head = head
        self.journal = journal
        removed = {sid for entry in journal for sid in entry.removed}
        self.removed = removed
        self._times: dict[int, array[int]] = {}
        self.added: dict[bytes, Added] = {}
        for entry in journal:
            for added in entry.added:
                if added.record.id not in removed:
                    self.added[added.record.id] = added

    def chunk(self, index: int) -> Chunk:
        """A chunk of this head."""
        return self.catalog.part(self.head.chunks[index], Chunk)

    def times(self, index: int) -> array[int]:
        """The times of a chunk's positions (µs), decoded once per reading."""
        found = self._times.get(index)
        if found is None:
            found = self._times[index] = self.chunk(index).times()
        return found

    def bucket(self, index: int) -> Bucket:
        """A bucket of this head."""
        return self.catalog.part(self.head.buckets[index], Bucket)

    def entries_of(self, added: Added) -> list[TenantEntry]:
        """Every tenant a journaled snapshot holds (read from its manifest if told by reference)."""
        return self.catalog.entries_of(added)


class _ToldUnreadable(Exception):
    """The manifest of an addition told by reference was gone when a fold read it."""


def journal_name(seq: int) -> bytes:
    """What a sealed journal entry is bound to: its number, so it cannot move to another."""
    return seq.to_bytes(8, "big")


class Catalog:
    """Reads, appends to, compacts and rewrites the catalog of one repository."""

    def __init__(
        self,
        backend: Backend,
        clock: Callable[[], float] = time.time,
        sealer: Sealer | None = None,
        manifest_entries: Callable[[SnapshotRecord], list[TenantEntry]] | None = None,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self._sealer = sealer
        self._manifest_entries = manifest_entries
        self._told: dict[bytes, list[TenantEntry]] = {}
        """Tenant lists read from the manifests of additions told by reference."""
        self._parts: dict[str, Chunk | Bucket] = {}
        """Stored parts read or written, at most `_PART_CACHE` of them."""
        self._held: dict[str, Chunk | Bucket] = {}
        """The parts of the catalog last built in memory only (`build_fresh`): nowhere else."""
        self._next = 1
        self._journal: dict[int, JournalEntry] = {}
        """Journal entries read, by number: an entry is created once and never changed."""
        self._whole: set[int] = set()
        """Journal entries whose manifests were all seen stored."""

    def sealed(self, kind: str, name: bytes, data: bytes) -> bytes:
        """``data`` as stored: sealed in an encrypted repository, else as it is."""
        return data if self._sealer is None else self._sealer.seal(kind, name, data)

    def opened(self, kind: str, name: bytes, data: bytes, what: str) -> bytes:
        """Stored bytes opened (DecryptionFailed, a CorruptData, when they do not)."""
        return data if self._sealer is None else self._sealer.open(kind, name, data, what)

    def part(self, name: str, kind: type[P]) -> P:
        """A part by name (immutable, so cached); ObjectMissing when a compaction removed it."""
        found = self._held.get(name)
        if found is None:
            found = self._parts.get(name)
        if found is None:
            what = f"catalog {name}"
            data = self.opened("catalog-part", b"", self.backend.get(catalog_part_key(name)), what)
            found = decode_part(data, kind, what)
            self._remember(name, found)
        assert isinstance(found, kind)
        return found

    def entries_of(self, added: Added) -> list[TenantEntry]:
        """An addition's tenants: its own, or its manifest's when told by reference.

        A manifest's tenants never change (its id is their hash), so they are
        kept, at most `_TOLD_CACHE` manifests' worth. A damaged manifest holds
        none here, as a catalog rebuilt from the manifests leaves it out (verify
        names it): one bad file must not stop every question about tenants. A
        missing one raises ObjectMissing: it was removed after this reading.
        """
        if added.entries is not None or self._manifest_entries is None:
            return own_entries(added)
        found = self._told.get(added.record.id)
        if found is None:
            try:
                found = self._manifest_entries(added.record)
            except IntegrityError:
                return []  # not kept: a repair (or an import that heals it) shows at once
            if len(self._told) >= _TOLD_CACHE:
                self._told.pop(next(iter(self._told)))
            self._told[added.record.id] = found
        return found

    def _entries_for_fold(self, added: Added) -> list[TenantEntry]:
        try:
            return self.entries_of(added)
        except ObjectMissing as exc:
            raise _ToldUnreadable from exc

    def holds(self, head: Head) -> bool:
        """Whether every part of ``head``, a catalog built in memory only, is still held.

        Building another in memory, or storing a new head, lets go of the
        parts of the one before: its reader must rebuild rather than ask the
        storage for parts that were never stored.
        """
        return all(name in self._held for name in [*head.chunks, *head.buckets])

    def head(self) -> Head | None:
        """The current head, or None when there is no catalog."""
        try:
            data = self.backend.get(CATALOG_HEAD_KEY)
        except ObjectMissing:
            return None
        what = f"catalog {CATALOG_HEAD_KEY}"
        head = decode_part(self.opened("catalog-head", b"", data, what), Head, what)
        if head.version not in HEAD_VERSIONS or len(head.buckets) != BUCKETS:
            raise CorruptData(f"catalog {CATALOG_HEAD_KEY}", "unknown catalog version")
        return head

    def view(self) -> CatalogView | None:
        """A consistent reading, or None when there is none (it must be rebuilt).

        Journal additions whose manifest is not (yet) stored are left out.
        The head is read again after the journal: two compactions finishing
        meanwhile delete entries after the head first read, which would end
        the journal early without a sign (its parts may be cached). A catalog
        that moves on every attempt counts as none: the manifests answer.
        """
        for _ in range(_ATTEMPTS):
            head = self.head()
            if head is None:
                return None
            journal = [
                entry if seq in self._whole else self._present(entry, seq)
                for seq, entry in zip(
                    count(head.journal + 1), self._journal_after(head.journal), strict=False
                )
            ]
            if self.head() == head:
                return CatalogView(self, head, journal)
        return None

    def _present(self, entry: JournalEntry, seq: int | None = None) -> JournalEntry:
        kept = [added for added in entry.added if self.backend.stat(added.record.key) is not None]
        if len(kept) == len(entry.added):
            if seq is not None:
                self._whole.add(seq)
            return entry
        return msgspec.structs.replace(entry, added=kept)

    def _journal_after(self, folded: int) -> Iterator[JournalEntry]:
        for stale in [seq for seq in self._journal if seq <= folded]:
            del self._journal[stale]
            self._whole.discard(stale)
        for seq in count(folded + 1):
            cached = self._journal.get(seq)
            if cached is not None:
                yield cached
                continue
            try:
                data = self.backend.get(catalog_journal_key(seq))
            except ObjectMissing:
                self._next = max(self._next, seq)
                return
            what = f"catalog journal {seq}"
            data = self.opened("catalog-journal", journal_name(seq), data, what)
            entry = decode_part(data, JournalEntry, what)
            if entry.version not in JOURNAL_VERSIONS:
                raise CorruptData(what, "unknown catalog journal version")
            self._journal[seq] = entry
            yield entry

    def append(self, entry: JournalEntry) -> int:
        """Add a journal entry durably; returns how many entries wait to be folded.

        Entries take the first free number after the head's; one put in a
        number a compaction already folded (and so deleted) is put again
        after the new head, since nothing reads below a head.
        """
        data = encode_part(entry)
        while True:
            head = self.head()
            folded = head.journal if head is not None else 0
            seq = max(self._next, folded + 1)
            while True:
                # A stat is far cheaper than a create that fails: find the
                # end first, and let the create settle a race for it.
                while self.backend.stat(catalog_journal_key(seq)) is not None:
                    seq += 1
                try:
                    sealed = self.sealed("catalog-journal", journal_name(seq), data)
                    self.backend.put(catalog_journal_key(seq), sealed)
                    break
                except AlreadyExists:
                    seq += 1
            self.backend.sync()
            self._next = seq + 1
            after = self.head()
            if after is None or after.journal < seq:
                return seq - (after.journal if after is not None else 0)

    def compact(self) -> bool:
        """Fold the journal into new parts, if no other compaction runs; whether it did."""
        if not self._take_compaction_lock():
            return False
        try:
            head = self.head()
            if head is None:
                return False
            entries = list(self._foldable(head.journal))
            if entries:
                try:
                    folded = self._fold(head, [entry for _, entry in entries])
                except _ToldUnreadable:
                    # Its manifest went after `_foldable` saw it: a removal's entry
                    # will say so, or after an hour the addition is dropped.
                    return False
                self._write_head(folded, head)
                self._drop_journal(head.journal)
            return True
        finally:
            self._release_compaction_lock()

    def _foldable(self, folded: int) -> Iterator[tuple[int, JournalEntry]]:
        """Journal entries after the head, up to one whose manifest may still be on its way."""
        now = self.clock()
        for seq, entry in zip(count(folded + 1), self._journal_after(folded), strict=False):
            present = self._present(entry)
            if len(present.added) < len(entry.added) and now - entry.written < GHOST_AFTER:
                return
            yield seq, present

    def _fold(self, head: Head, entries: list[JournalEntry], *, store: bool = True) -> Head:
        folding = Folding(head, self._chunk_copy(head), self._bucket_copy(head))
        locate = self._locate(head)
        for entry in entries:
            folding.apply(entry, locate, self._entries_for_fold)
        folding.finish()
        chunks = list(head.chunks)
        buckets = list(head.buckets)
        changed_chunks = sorted(folding.chunks.items())
        names = self._store_parts(
            [chunk for _, chunk in changed_chunks] + list(folding.buckets.values()), store=store
        )
        for (index, _), name in zip(changed_chunks, names, strict=False):
            if index < len(chunks):
                chunks[index] = name
            else:
                chunks.append(name)
        for index, name in zip(folding.buckets, names[len(changed_chunks) :], strict=True):
            buckets[index] = name
        if store:
            self.backend.sync()
        newest = list(head.newest)
        if len(newest) != len(head.chunks):
            newest = [max(self.part(name, Chunk).times(), default=0) for name in head.chunks]
        for index, chunk in sorted(folding.chunks.items()):
            value = max(chunk.times(), default=0)
            if index < len(newest):
                newest[index] = value
            else:
                newest.append(value)
        return Head(
            HEAD_VERSION,
            head.journal + len(entries),
            folding.positions,
            folding.snapshots,
            chunks,
            buckets,
            newest,
        )

    def _chunk_copy(self, head: Head) -> Callable[[int], Chunk]:
        def load(index: int) -> Chunk:
            chunk = self.part(head.chunks[index], Chunk)
            return Chunk(chunk.ids, chunk.micros, chunk.alive, list(chunk.records))

        return load

    def _bucket_copy(self, head: Head) -> Callable[[int], Bucket]:
        def load(index: int) -> Bucket:
            bucket = self.part(head.buckets[index], Bucket)
            return Bucket(dict(bucket.tenants), dict(bucket.targets), bucket.gaps)

        return load

    def _locate(self, head: Head) -> dict[bytes, int]:
        locate: dict[bytes, int] = {}
        for index, name in enumerate(head.chunks):
            ids = self.part(name, Chunk).ids
            base = index * CHUNK
            for offset in range(0, len(ids), 32):
                locate[ids[offset : offset + 32]] = base + offset // 32
        return locate

    def _store_parts(self, parts: list[Chunk | Bucket], *, store: bool = True) -> list[str]:
        """`_store_part` of each, several at once.

        A snapshot of many tenants changes every bucket, and each part's own
        fsync waits on the disk; fsyncs in flight together share a commit.
        """
        workers = max(DELETE_WORKERS, getattr(self.backend, "concurrency", 1))
        names = list(parallel_map(lambda part: self._store_part(part, store=store), parts, workers))
        for name, part in zip(names, parts, strict=True):
            if store:
                self._remember(name, part)
            else:
                self._held[name] = part
        return names

    def _remember(self, name: str, part: Chunk | Bucket) -> None:
        """Cache a part, within `_PART_CACHE` parts (the oldest cached goes first)."""
        if name not in self._parts and len(self._parts) >= _PART_CACHE:
            self._parts.pop(next(iter(self._parts)))
        self._parts[name] = part

    def _store_part(self, part: Chunk | Bucket, *, store: bool = True) -> str:
        data = self.sealed("catalog-part", b"", encode_part(part))
        name = part_name(data)
        if store:
            # A name already taken holds these bytes, unless that file is damaged:
            # then this is its repair (a fresh catalog must not name a bad part).
            put_once(self.backend, catalog_part_key(name), data)
        return name

    def _write_head(self, head: Head, previous: Head | None) -> None:
        data = self.sealed("catalog-head", b"", encode_part(head))
        self.backend.put(CATALOG_HEAD_KEY, data, overwrite=True)
        self.backend.sync()
        # Parts the new head no longer names are never read again through this
        # catalog: a process that takes snapshot after snapshot kept every
        # part it ever wrote (13 GB after 80,000 snapshots).
        current = set(head.chunks) | set(head.buckets)
        for cache in (self._parts, self._held):
            for name in [name for name in cache if name not in current]:
                del cache[name]
        if previous is not None:
            gone = (set(previous.chunks) | set(previous.buckets)) - current
            delete_keys(self.backend, sorted(catalog_part_key(name) for name in gone))

    def _drop_journal(self, folded_before: int) -> None:
        """Delete the entries the previous head had folded, newest first, down to a gap.

        Not the ones just folded: an append that raced this compaction may
        have put itself in one of those numbers, and it re-reads the head and
        puts itself again only when the head has moved past it.
        """
        for seq in range(folded_before, 0, -1):
            key = catalog_journal_key(seq)
            if self.backend.stat(key) is None:
                break
            self._delete(key)
        self.backend.sync()

    def _purge(self, head: Head, upto: int) -> None:
        """Delete folded journal entries and every part ``head`` does not name."""
        for key in list(self.backend.list_names(CATALOG_JOURNAL_PREFIX)):
            number = key[len(CATALOG_JOURNAL_PREFIX) :]
            if number.isdigit() and int(number) <= upto:
                self._delete(key)
        named = {catalog_part_key(name) for name in [*head.chunks, *head.buckets]}
        for key in list(self.backend.list_names(CATALOG_PART_PREFIX)):
            if key not in named:
                self._delete(key)
        self.backend.sync()

    def _delete(self, key: str) -> None:
        try:
            self.backend.delete(key)
        except ObjectMissing:
            pass

    def write_fresh(
        self, added: list[Added], journal_end: int, *, purge: bool = False
    ) -> CatalogView:
        """Replace the catalog with one holding exactly ``added`` (after a full read).

        ``journal_end`` is the last journal entry that existed before that read
        began: later entries are applied on top by readers (a snapshot told
        twice is one snapshot). When another process compacts, nothing is
        written and the new catalog serves this reading alone. With ``purge``
        (only under the exclusive lock: no append can race it) every journal
        entry up to ``journal_end`` is deleted, so nothing of a removed
        snapshot stays behind.
        """
        if not self._take_compaction_lock():
            return self.build_fresh(added, journal_end)
        try:
            previous = self.head()
            head = self._fresh_head(added, journal_end, store=True)
            self._write_head(head, previous)
            if purge:
                self._purge(head, journal_end)
        finally:
            self._release_compaction_lock()
        self._next = max(self._next, journal_end + 1)
        return self.view_of(head)

    def build_fresh(self, added: list[Added], journal_end: int) -> CatalogView:
        """A catalog of ``added`` held in memory only (see `write_fresh`)."""
        return self.view_of(self._fresh_head(added, journal_end, store=False))

    def view_of(self, head: Head) -> CatalogView:
        """A reading of ``head`` (maybe one held in memory) and the journal after it."""
        journal = [self._present(entry) for entry in self._journal_after(head.journal)]
        return CatalogView(self, head, journal)

    def _fresh_head(self, added: list[Added], journal_end: int, *, store: bool) -> Head:
        if not store:
            self._held.clear()  # the catalog built in memory before this one is out of date
        [empty_name] = self._store_parts([empty_bucket()], store=store)
        start = Head(HEAD_VERSION, journal_end, 0, 0, [], [empty_name] * BUCKETS)
        entry = JournalEntry(CATALOG_VERSION, self.clock(), added=added)
        head = self._fold(start, [entry], store=store)
        return msgspec.structs.replace(head, journal=journal_end)

    def journal_end(self, *, settled: bool = False) -> int:
        """The number of the newest journal entry, or the head's when it is newer (0: none).

        Listed, not counted up from the head: without a head (a cleanup
        crashed) the first entries may be long gone while later ones remain.
        With ``settled``, the entry before the first one whose manifest may
        still be on its way: a catalog built from a listing of manifests
        must leave that one (and those after it) to be read on top of it.
        """
        head = self.head()
        folded = head.journal if head is not None else 0
        numbers = [
            int(key[len(CATALOG_JOURNAL_PREFIX) :])
            for key in self.backend.list_names(CATALOG_JOURNAL_PREFIX)
            if key[len(CATALOG_JOURNAL_PREFIX) :].isdigit()
        ]
        last = max([folded, *numbers])
        if settled:
            for seq, entry in zip(count(folded + 1), self._journal_after(folded), strict=False):
                if self._arriving(entry):
                    return seq - 1
        return last

    def _arriving(self, entry: JournalEntry) -> bool:
        """Whether an entry names a manifest that is not stored yet but may still come."""
        present = self._present(entry)
        return len(present.added) < len(entry.added) and self.clock() - entry.written < GHOST_AFTER

    def purge(self) -> None:
        """Delete what the head does not need: folded journal entries, unnamed parts.

        Only under the exclusive lock, where no append or compaction runs: a
        compaction lock found then is a dead compactor's, and goes too.
        """
        self._delete(CATALOG_LOCK_KEY)
        head = self.head()
        if head is not None:
            self._purge(head, head.journal)

    def invalidate(self) -> None:
        """Remove the head: until a catalog is written again, readers rebuild it."""
        self._delete(CATALOG_HEAD_KEY)
        self.backend.sync()

    def _take_compaction_lock(self) -> bool:
        stamp = msgspec.json.encode({"since": self.clock()})
        try:
            self.backend.put(CATALOG_LOCK_KEY, stamp)
            return True
        except AlreadyExists:
            info = self.backend.stat(CATALOG_LOCK_KEY)
            if info is None or self.backend.now() - info.mtime < STALE_COMPACTION:
                return False
        try:
            self.backend.put(CATALOG_LOCK_KEY, stamp, overwrite=True)
        except CasbakError:
            return False
        return True

    def _release_compaction_lock(self) -> None:
        self._delete(CATALOG_LOCK_KEY)
