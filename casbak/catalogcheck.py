"""Whether the catalog says what the manifests say, and a fresh catalog when it does not.

The catalog (docs/FORMAT.md, Catalog) is a cache of the manifests, never the
only copy of anything. `read_catalog` reads all of it, checks that its files
are sound and agree with one another, and gives what it says of each
snapshot; `disagreements` compares that with the manifests. verify reports
what is found as warnings (the manifests are what counts, and this does not
touch them); gc, under the exclusive lock, writes the catalog afresh when it
disagrees, is damaged or is missing (`reconcile`).

Two things are no disagreement: a journal addition whose manifest is not
stored (a writer is between the two, or crashed there), and no catalog at all
(a cleanup crashed before writing it again); readers cope with both.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Collection, Iterable, Mapping
from itertools import count
from typing import NamedTuple, TypeVar

import msgspec

from casbak import history
from casbak.catalog import Catalog, CatalogView, journal_name
from casbak.catalogdata import (
    CHUNK,
    JOURNAL_VERSIONS,
    Bucket,
    Chunk,
    Head,
    JournalEntry,
    SnapshotRecord,
    bucket_of,
    decode_part,
    decode_record,
    micros_of,
    part_name,
)
from casbak.errors import CasbakError, CorruptData, ObjectMissing
from casbak.ids import Digest
from casbak.layout import (
    CATALOG_HEAD_KEY,
    CATALOG_PREFIX,
    catalog_journal_key,
    catalog_part_key,
)
from casbak.model import Manifest
from casbak.repository import Repository, Snapshot, sort_newest_first
from casbak.storedmanifest import Header

STALE = "stale-catalog"
CORRUPT = "corrupt-catalog"
LISTS_GONE = "lists snapshots that no manifest holds"
LACKS = "lacks snapshots whose manifests exist"
LOOKS = 3
"""How often verify looks before a disagreement counts: writers and cleanups work meanwhile."""
_FIELDS = SnapshotRecord.__struct_fields__
_MASK = (1 << 64) - 1
P = TypeVar("P", Chunk, Bucket)

Fingerprint = tuple[int, int]
"""How many tenants a snapshot holds, and the sum (mod 2**64) of a hash of each entry."""


class Said(NamedTuple):
    """What the catalog, or a manifest, says of one snapshot."""

    record: SnapshotRecord
    tenants: Fingerprint | None
    """None when the manifest's entries were not read, or when the catalog was told them by
    reference (its manifest's own): they are not compared."""


class Problem(NamedTuple):
    """One thing wrong: kind, the catalog file, what is wrong, and the snapshot (hex) if one."""

    kind: str
    location: str
    what: str
    snapshot: str = ""


class Reading(NamedTuple):
    """All the catalog says (snapshot id -> what), or the problems that stopped the reading."""

    snapshots: dict[bytes, Said]
    problems: list[Problem]


def entry_print(tenant_id: str, digest: bytes, size: int) -> int:
    """One (tenant, object, size) entry's share of a fingerprint.

    Python's own tuple hash, not blake3: fingerprints are compared only within
    one process (the catalog against the manifests just read), never stored,
    and gc computes one per entry of every manifest (millions at 100,000
    snapshots), where a cryptographic hash per entry cost seconds. A catalog
    that disagrees yet collides in 64 bits would only stay unrewritten; gc
    never takes what to keep from it.
    """
    return hash((tenant_id, digest, size)) & _MASK


def fingerprint(entries: Iterable[tuple[str, bytes, int]]) -> Fingerprint:
    """A fingerprint of (tenant, object, size) entries that does not depend on their order."""
    number = total = 0
    for tenant_id, digest, size in entries:
        total += hash((tenant_id, digest, size)) & _MASK
        number += 1
    return number, total & _MASK


def said_of(snapshot_id: Digest, key: str, header: Header, manifest: Manifest | None) -> Said:
    """What a manifest (its header, and its entries when read) says of its snapshot."""
    tenants = None
    if manifest is not None:
        tenants = fingerprint(
            (tenant_id, bytes.fromhex(entry.object), entry.size)
            for tenant_id, entry in manifest.entries.items()
        )
    record = history.record_of(snapshot_id, key, header)
    return Said(record, tenants)


def read_catalog(catalog: Catalog) -> Reading | None:
    """Everything the catalog says, read and checked whole; None when there is no catalog."""
    try:
        head = catalog.head()
    except CorruptData as exc:
        return Reading({}, [Problem(CORRUPT, CATALOG_HEAD_KEY, f"cannot be read ({exc.reason})")])
    if head is None:
        return None
    parts = _PartCheck(catalog, head)
    parts.check()
    journal = _journal(catalog, head, parts.problems)
    if parts.problems:
        return Reading({}, parts.problems)
    view = CatalogView(catalog, head, journal)
    found: dict[bytes, Said] = {}
    for holder in history.newest(view):
        record = history.record(view, holder)
        tenants: Fingerprint | None = parts.tenants.get(holder.position, (0, 0))
        if holder.added is not None:
            told = holder.added.entries  # None: by reference, the manifest's own tenants
            if told is None:
                tenants = None
            else:
                tenants = fingerprint((e.tenant_id, e.object, e.size) for e in told)
        found[holder.snapshot_id] = Said(record, tenants)
    return Reading(found, _target_problems(view, found, parts.targets))


def disagreements(
    reading: Reading, expected: Mapping[bytes, Said], ignore: Collection[bytes] = ()
) -> list[Problem]:
    """The reading's own problems, and where it differs from what the manifests say.

    ``ignore``: snapshots whose manifests are damaged (verify reports those).
    """
    found = list(reading.problems)
    if any(problem.kind == CORRUPT for problem in found):
        return found  # what an unsound catalog says is not worth comparing
    for snapshot_id, said in reading.snapshots.items():
        if snapshot_id in ignore:
            continue
        wanted = expected.get(snapshot_id)
        if wanted is None:
            found.append(Problem(STALE, CATALOG_HEAD_KEY, LISTS_GONE, snapshot_id.hex()))
            continue
        for field in _differing(said, wanted):
            what = f"records differ from the manifests in {field}"
            found.append(Problem(STALE, CATALOG_HEAD_KEY, what, snapshot_id.hex()))
    for snapshot_id in expected:
        if snapshot_id not in reading.snapshots and snapshot_id not in ignore:
            found.append(Problem(STALE, CATALOG_HEAD_KEY, LACKS, snapshot_id.hex()))
    return found


def _differing(said: Said, wanted: Said) -> list[str]:
    fields = [
        name for name in _FIELDS if getattr(said.record, name) != getattr(wanted.record, name)
    ]
    if None not in (wanted.tenants, said.tenants) and said.tenants != wanted.tenants:
        fields.append("tenants held")
    return fields


def confirmed_problems(
    repo: Repository, expected: dict[bytes, Said], ignore: set[bytes]
) -> list[Problem]:
    """The problems seen on every one of `LOOKS` looks (for a reader that holds no lock).

    A snapshot written, or a cleanup done, between the reading of the
    manifests and of the catalog shows as a disagreement once; each later
    look reads the catalog again, and the manifests of the snapshots in
    question, so only what stays wrong is reported.
    """
    problems = _look(repo, expected, ignore)
    for _ in range(LOOKS - 1):
        if not problems:
            break
        suspects = {bytes.fromhex(problem.snapshot) for problem in problems if problem.snapshot}
        _look_again(repo, expected, ignore, suspects)
        seen = set(problems)
        problems = [problem for problem in _look(repo, expected, ignore) if problem in seen]
    return problems


def _look(repo: Repository, expected: Mapping[bytes, Said], ignore: set[bytes]) -> list[Problem]:
    try:
        reading = read_catalog(repo.catalog)
    except ObjectMissing as exc:
        # A part checked a moment ago is gone: a compaction replaced it (or
        # under the exclusive lock, where none runs, it is really missing).
        return [Problem(CORRUPT, exc.key, "is missing")]
    except CasbakError as exc:
        return [Problem(CORRUPT, CATALOG_PREFIX, f"could not be checked: {exc}")]
    return [] if reading is None else disagreements(reading, expected, ignore)


def _look_again(
    repo: Repository, expected: dict[bytes, Said], ignore: set[bytes], suspects: set[bytes]
) -> None:
    keys = repo.manifest_keys()
    for snapshot_id in suspects:
        expected.pop(snapshot_id, None)
        hex_id = Digest(snapshot_id.hex())
        if hex_id not in keys:
            continue
        try:
            snap = repo.load(hex_id, keys[hex_id])
            expected[snapshot_id] = said_of(hex_id, snap.key, snap.header, snap.manifest)
        except ObjectMissing as exc:
            if exc.key != keys[hex_id]:
                ignore.add(snapshot_id)  # a damaged chain: verify reports the manifest
        except CasbakError:
            ignore.add(snapshot_id)


class _PartCheck:
    """Reads every part a head names and checks it; gathers tenants and targets by position."""

    def __init__(self, catalog: Catalog, head: Head) -> None:
        self.catalog = catalog
        self.backend = catalog.backend
        self.head = head
        self.problems: list[Problem] = []
        self.tenants: dict[int, Fingerprint] = {}
        self.targets: set[str] = set()

    def check(self) -> None:
        positions = alive = 0
        for index, name in enumerate(self.head.chunks):
            chunk = self._load(name, Chunk)
            if chunk is not None:
                last = index == len(self.head.chunks) - 1
                positions += len(chunk.records)
                alive += sum(1 for flag in chunk.alive if flag)
                self._check_chunk(name, chunk, last)
        if not self.problems and (positions, alive) != (self.head.positions, self.head.snapshots):
            self._problem(CATALOG_HEAD_KEY, "counts differ from what its parts hold")
        buckets: dict[str, Bucket | None] = {}
        for index, name in enumerate(self.head.buckets):
            if name not in buckets:
                loaded = buckets[name] = self._load(name, Bucket)
                if loaded is not None:
                    self._gather(name, loaded)
            bucket = buckets[name]
            if bucket is not None and any(
                bucket_of(key) != index for key in (*bucket.tenants, *bucket.targets)
            ):
                self._problem(catalog_part_key(name), "holds a name of another bucket")

    def _problem(self, location: str, what: str) -> None:
        self.problems.append(Problem(CORRUPT, location, what))

    def _load(self, name: str, kind: type[P]) -> P | None:
        key = catalog_part_key(name)
        try:
            data = self.backend.get(key)
        except ObjectMissing:
            self._problem(key, "is missing")
            return None
        if part_name(data) != name:
            self._problem(key, "does not hash to its name")
            return None
        try:
            return decode_part(self.catalog.opened("catalog-part", b"", data, key), kind, key)
        except CorruptData as exc:
            self._problem(key, f"cannot be read ({exc.reason})")
            return None

    def _check_chunk(self, name: str, chunk: Chunk, last: bool) -> None:
        size = len(chunk.records)
        lengths = (len(chunk.ids), len(chunk.micros), len(chunk.alive))
        if lengths != (32 * size, 8 * size, size) or (size != CHUNK and not last):
            self._problem(catalog_part_key(name), "has arrays of different lengths")
            return
        times = chunk.times()
        for index, raw in enumerate(chunk.records):
            try:
                record = decode_record(raw)
                sound = record.id == chunk.id_at(index) and micros_of(record.time()) == times[index]
            except msgspec.DecodeError:
                sound = False
            if not sound:
                self._problem(catalog_part_key(name), f"record {index} does not match its position")
                return

    def _gather(self, name: str, bucket: Bucket) -> None:
        where = catalog_part_key(name)
        for tenant_id in bucket.tenants:
            try:
                held = bucket.tenant(tenant_id)
                assert held is not None
                pairs = list(held.occurrences())
            except (msgspec.DecodeError, ValueError, CorruptData):
                self._problem(where, f"history of tenant {tenant_id!r} is unreadable")
                continue
            versions = [
                entry_print(tenant_id, digest, size)
                for digest, size in zip(held.objects, held.sizes, strict=False)
            ]
            if (
                len(held.objects) != len(held.sizes)
                or any(len(digest) != 32 for digest in held.objects)
                or any(v >= len(versions) or p >= self.head.positions for p, v in pairs)
            ):
                self._problem(where, f"history of tenant {tenant_id!r} is unsound")
                continue
            for position, version in pairs:
                number, total = self.tenants.get(position, (0, 0))
                self.tenants[position] = (number + 1, (total + versions[version]) & _MASK)
        for target_id in bucket.targets:
            try:
                positions = bucket.target_positions(target_id)
            except ValueError:
                positions = array("I", [self.head.positions])
            if any(position >= self.head.positions for position in positions):
                self._problem(where, f"list of target {target_id!r} is unsound")
            self.targets.add(target_id)


def _journal(catalog: Catalog, head: Head, problems: list[Problem]) -> list[JournalEntry]:
    """The journal after the head, additions without a stored manifest left out."""
    backend = catalog.backend
    found = []
    for seq in count(head.journal + 1):
        key = catalog_journal_key(seq)
        try:
            data = catalog.opened("catalog-journal", journal_name(seq), backend.get(key), key)
            entry = decode_part(data, JournalEntry, key)
            sound = (
                all(
                    len(added.record.id) == 32
                    and micros_of(added.record.time()) == added.micros
                    and all(len(tenant.object) == 32 for tenant in added.entries or ())
                    for added in entry.added
                )
                and entry.version in JOURNAL_VERSIONS
            )
        except ObjectMissing:
            break
        except (CorruptData, msgspec.DecodeError):
            sound = False
        if not sound:
            problems.append(Problem(CORRUPT, key, "is not a sound journal entry"))
            break
        kept = [added for added in entry.added if backend.stat(added.record.key) is not None]
        found.append(msgspec.structs.replace(entry, added=kept))
    return found


def _target_problems(
    view: CatalogView, found: dict[bytes, Said], listed: set[str]
) -> list[Problem]:
    """Each target's list of snapshots must be the snapshots whose records name it."""
    by_target: dict[str, set[bytes]] = {}
    for snapshot_id, said in found.items():
        by_target.setdefault(said.record.target_id, set()).add(snapshot_id)
    problems = []
    for target_id in sorted(listed | by_target.keys()):
        answer = {holder.snapshot_id for holder in history.of_target(view, target_id)}
        if answer != by_target.get(target_id, set()):
            location = catalog_part_key(view.head.buckets[bucket_of(target_id)])
            problems.append(Problem(STALE, location, f"list of target {target_id!r} is wrong"))
    return problems


class StoredSnapshots:
    """Every snapshot as the manifests say, not the catalog: what gc, cleanup and forget use.

    A catalog that lacked a snapshot would otherwise have its objects swept.
    Each manifest's header is read here; its entries, when a plan reads them,
    are remembered as a fingerprint, so the catalog is checked against them
    without reading a manifest twice. ``progress`` counts the headers read.
    """

    def __init__(
        self, repo: Repository, progress: Callable[[int, int, int], None] | None = None
    ) -> None:
        self.repo = repo
        self.said: dict[bytes, Said] = {}
        found = []
        keys = repo.manifest_keys()
        for done, (snapshot_id, key) in enumerate(keys.items(), 1):
            if progress is not None:
                progress(done, len(keys), 0)
            header = repo.load(snapshot_id, key).header
            self.said[bytes.fromhex(snapshot_id)] = said_of(snapshot_id, key, header, None)
            loader = self._loader(snapshot_id, key, header)
            found.append(Snapshot(snapshot_id, key, header, loader=loader))
        self.snapshots = sort_newest_first(found)

    def _loader(self, snapshot_id: Digest, key: str, header: Header) -> Callable[[], Manifest]:
        def load() -> Manifest:
            manifest = self.repo.rebuild(snapshot_id, key)
            self.said[bytes.fromhex(snapshot_id)] = said_of(snapshot_id, key, header, manifest)
            return manifest

        return load


def reconcile(repo: Repository, stored: StoredSnapshots, *, dry_run: bool = False) -> bool:
    """Make the catalog say what the manifests say (exclusive lock); whether it is written afresh.

    A sound catalog keeps its files, less the leftovers nothing names (journal
    entries already folded, parts of an unfinished compaction). With
    ``dry_run`` nothing changes and the answer is whether it would be written.
    """
    reading = read_catalog(repo.catalog)
    stale = reading is None or bool(disagreements(reading, stored.said))
    if dry_run:
        return stale
    if stale:
        write_afresh(repo, stored.snapshots)
    else:
        repo.catalog.purge()
    return stale


def write_afresh(repo: Repository, snapshots: list[Snapshot]) -> None:
    """Under the exclusive lock: a catalog of exactly ``snapshots``, and nothing else left."""
    ordered = sorted(snapshots, key=lambda snap: (snap.header.timestamp, snap.id))
    added = [history.added_of(s.id, s.key, s.header, s.manifest) for s in ordered]
    catalog = repo.catalog
    # The head goes first, so a damaged one cannot stop this (and a crash
    # leaves no catalog, never a wrong one); so does a dead compactor's lock.
    catalog.invalidate()
    catalog.purge()
    catalog.write_fresh(added, catalog.journal_end(), purge=True)
