"""`casbak find`: the versions of tenants, across all of history, that match.

A *version* is a distinct object (document) of a tenant. Unlike `casbak log`,
which lists runs (a tenant that went A -> B -> A has three), find reports each
version once: A -> B -> A gives two rows, and A's row spans every snapshot
that held it (``snapshots`` counts them all, ``first`` and ``last`` are the
oldest and newest of them).

Everything but the documents comes from one catalog reading, walked bucket
by bucket: a tenant's history is two flat arrays (positions, version
indexes), folded into a count and the oldest and newest holder per version
against the times of all positions, so no Python object is made per
occurrence. Documents are read only for ``--where``, each distinct object
once, in batches through the pack store's bulk read. `Query.needs_one_of`
cannot spare a read (which members a document has is known only once it is
read), so it is not used here.

A version whose object cannot be read (missing or damaged) is left out with
a warning naming the tenant and the version; the search goes on, and the
CLI exits 3 after printing what it found. A storage failure (denied,
unreachable) stops the search: nothing could be trusted to be complete.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

import msgspec

from casbak import history
from casbak.canonical import decode_canonical
from casbak.catalog import CatalogView
from casbak.catalogdata import CHUNK, TenantHistory, bucket_of, micros_of
from casbak.errors import BackendError, CasbakError, ObjectMissing, UsageError
from casbak.history import Holder
from casbak.query import Query
from casbak.repository import Repository

READ_BATCH = 4096
"""Objects handed to one bulk read: large enough to group them by pack, small enough
that what the bulk read plans stays small however many versions there are."""
PROGRESS_EVERY = 64
"""Objects read between two progress reports."""

Progress = Callable[[int, int, int], None]
"""``progress(objects done, objects to read, bytes read)``."""

_EARLIEST = -(2**63)
_LATEST = 2**63 - 1


class SnapshotStamp(msgspec.Struct, frozen=True):
    """A snapshot as find names it: which, when, how, and of what target."""

    id: str
    timestamp: datetime
    operation: str
    target_id: str


class FoundVersion(msgspec.Struct, frozen=True):
    """A version of a tenant and the snapshots that held it (all of them, in any run)."""

    tenant_id: str
    object: str
    size: int
    snapshots: int
    first: SnapshotStamp
    last: SnapshotStamp


class FindResult(msgspec.Struct, frozen=True):
    """The versions found (tenants by id, each newest first) and the ones left unread."""

    versions: list[FoundVersion]
    warnings: list[str]


class _Span(NamedTuple):
    """A version of a tenant as the walk sees it: how many held it, oldest and newest."""

    tenant_id: str
    version: bytes
    size: int
    snapshots: int
    first: Holder
    last: Holder


class _Window(NamedTuple):
    """Inclusive bounds in µs; the whole of time when no bound is given."""

    low: int = _EARLIEST
    high: int = _LATEST

    @property
    def bounded(self) -> bool:
        return self.low != _EARLIEST or self.high != _LATEST


def find_versions(
    repo: Repository,
    *,
    tenant_ids: Sequence[str] = (),
    queries: Sequence[Query] = (),
    current: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> FindResult:
    """The versions of ``tenant_ids`` (all tenants when empty) that every query matches.

    ``since``/``until`` keep the versions some snapshot in that time held
    (their counts and spans still cover all of history, as in `log`);
    ``current`` keeps, per tenant, only the version of the newest snapshot
    holding it (within ``since``/``until``). Rows come by tenant id, each
    tenant's versions newest first (by the newest snapshot holding each).
    """
    if not tenant_ids and not queries:
        raise UsageError("find needs --tenant or --where (or both)")
    window = _Window(
        micros_of(since) if since is not None else _EARLIEST,
        micros_of(until) if until is not None else _LATEST,
    )
    # Kept across the catalog's retries, so no object is read twice.
    verdicts: dict[bytes, bool | str] = {}

    def answer(view: CatalogView) -> FindResult:
        spans = _spans(view, tenant_ids, window, current=current)
        warnings: list[str] = []
        if queries:
            _judge(repo, [span.version for span in spans], queries, verdicts, progress)
            kept = []
            for span in spans:
                verdict = verdicts[span.version]
                if isinstance(verdict, str):
                    warnings.append(_unreadable(span, verdict))
                elif verdict:
                    kept.append(span)
            spans = kept
        stamps = _stamps(view, spans)
        return FindResult([_found(span, stamps) for span in spans], warnings)

    return repo.timeline.ask(answer)


def _unreadable(span: _Span, reason: str) -> str:
    return (
        f"tenant {span.tenant_id} version {span.version.hex()[:12]} cannot be read ({reason}); "
        "left out of the search (run casbak verify)"
    )


def _found(span: _Span, stamps: dict[bytes, SnapshotStamp]) -> FoundVersion:
    return FoundVersion(
        span.tenant_id,
        span.version.hex(),
        span.size,
        span.snapshots,
        stamps[span.first.snapshot_id],
        stamps[span.last.snapshot_id],
    )


def _stamps(view: CatalogView, spans: Iterable[_Span]) -> dict[bytes, SnapshotStamp]:
    """The snapshots the rows name, each decoded once, chunk by chunk.

    In position order, so a chunk the part cache let go is not read again
    for every row that names one of its snapshots.
    """
    holders = {h.snapshot_id: h for span in spans for h in (span.first, span.last)}
    stamps = {}
    for holder in sorted(holders.values(), key=lambda h: h.position):
        found = history.record(view, holder)
        stamps[holder.snapshot_id] = SnapshotStamp(
            found.hex_id, found.time(), found.operation, found.target_id
        )
    return stamps


# --- the walk: the catalog, bucket by bucket ----------------------------------------------


class _Positions:
    """The time and liveness of every compacted position, as flat arrays indexed by position.

    A position is dead when its snapshot was removed, or when the journal
    also tells of it (a snapshot told twice): the journal's copy counts.
    """

    def __init__(self, view: CatalogView) -> None:
        self.times: array[int] = array("q")
        # Kept here: the part cache may let a chunk go before the walk is done.
        self._ids: list[bytes] = []
        live = bytearray()
        for index in range(len(view.head.chunks)):
            chunk = view.chunk(index)
            self._ids.append(chunk.ids)
            missing = index * CHUNK - len(live)  # never, while every chunk but the last is full
            self.times.extend([0] * missing)
            live += bytes(missing)
            self.times.extend(view.times(index))
            live += chunk.alive
        hidden = view.removed | view.added.keys()
        if hidden:
            for index, ids in enumerate(self._ids):
                for offset in range(0, len(ids), 32):
                    if ids[offset : offset + 32] in hidden:
                        live[index * CHUNK + offset // 32] = 0
        self.live = bytes(live)

    def id_at(self, position: int) -> bytes:
        """The snapshot id at a position (read only to break a tie in time)."""
        start = position % CHUNK * 32
        return self._ids[position // CHUNK][start : start + 32]

    def holder(self, position: int) -> Holder:
        """The holder at a compacted position."""
        return Holder(self.times[position], self.id_at(position), position, None)


_Journaled = dict[str, list[tuple[Holder, bytes, int]]]


def _journaled(view: CatalogView) -> _Journaled:
    """Per tenant, the journaled snapshots holding it, with the version and size held."""
    found: _Journaled = {}
    for snapshot_id, added in view.added.items():
        holder = Holder(added.micros, snapshot_id, -1, added)
        for entry in view.entries_of(added):
            found.setdefault(entry.tenant_id, []).append((holder, entry.object, entry.size))
    return found


def _spans(
    view: CatalogView, tenant_ids: Sequence[str], window: _Window, *, current: bool
) -> list[_Span]:
    """Every version of the chosen tenants (all when none are named), tenants by id."""
    positions = _Positions(view)
    journaled = _journaled(view)
    by_bucket: dict[int, set[str]] = {}
    for tenant_id in tenant_ids or journaled:
        by_bucket.setdefault(bucket_of(tenant_id), set()).add(tenant_id)
    chosen = sorted(by_bucket) if tenant_ids else range(len(view.head.buckets))
    found: dict[str, list[_Span]] = {}
    for index in chosen:
        bucket = view.bucket(index)
        names = by_bucket.get(index, set())
        if not tenant_ids:
            names = names | bucket.tenants.keys()
        for tenant_id in names:
            spans = _tenant_spans(
                tenant_id,
                positions,
                bucket.tenant(tenant_id),
                journaled.get(tenant_id, []),
                window,
                current=current,
            )
            if spans:
                found[tenant_id] = spans
    return [span for tenant_id in sorted(found) for span in found[tenant_id]]


def _key(holder: Holder) -> tuple[int, bytes]:
    return holder.micros, holder.snapshot_id


def _known(holder: Holder | None) -> tuple[int, bytes]:
    assert holder is not None
    return _key(holder)


class _Versions:
    """Per version: snapshots holding it, its oldest and newest holder, newest in the window."""

    def __init__(self, objects: list[bytes], sizes: list[int]) -> None:
        self.objects = list(objects)
        self.sizes = list(sizes)
        self.counts = [0] * len(objects)
        self.first: list[Holder | None] = [None] * len(objects)
        self.last: list[Holder | None] = [None] * len(objects)
        self.seen: list[Holder | None] = [None] * len(objects)
        self._indexes: dict[bytes, int] | None = None

    def index(self, version: bytes, size: int) -> int:
        """The index of a version, added when the compacted history does not have it."""
        if self._indexes is None:
            self._indexes = {version: i for i, version in enumerate(self.objects)}
        found = self._indexes.get(version)
        if found is None:
            found = self._indexes[version] = len(self.objects)
            self.objects.append(version)
            self.sizes.append(size)
            self.counts.append(0)
            for column in (self.first, self.last, self.seen):
                column.append(None)
        return found

    def add(
        self, index: int, newest: Holder, count: int, oldest: Holder, seen: Holder | None
    ) -> None:
        """Fold in ``count`` holders, ``oldest`` to ``newest``; ``seen``: newest in the window."""
        self.counts[index] += count
        first, last, newest_seen = self.first[index], self.last[index], self.seen[index]
        if first is None or _key(oldest) < _key(first):
            self.first[index] = oldest
        if last is None or _key(newest) > _key(last):
            self.last[index] = newest
        if seen is not None and (newest_seen is None or _key(seen) > _key(newest_seen)):
            self.seen[index] = seen


def _tenant_spans(
    tenant_id: str,
    positions: _Positions,
    compacted: TenantHistory | None,
    journaled: Iterable[tuple[Holder, bytes, int]],
    window: _Window,
    *,
    current: bool,
) -> list[_Span]:
    """A tenant's versions held in the window, newest first (only the newest with ``current``)."""
    versions = _Versions(compacted.objects, compacted.sizes) if compacted else _Versions([], [])
    if compacted is not None:
        _fold_compacted(versions, positions, compacted, window)
    for holder, version, size in journaled:
        inside = window.low <= holder.micros <= window.high
        versions.add(versions.index(version, size), holder, 1, holder, holder if inside else None)
    held = [i for i, seen in enumerate(versions.seen) if seen is not None]
    if current and held:
        held = [max(held, key=lambda i: _known(versions.seen[i]))]
    held.sort(key=lambda i: _known(versions.last[i]), reverse=True)
    spans = []
    for i in held:
        first, last = versions.first[i], versions.last[i]
        assert first is not None and last is not None
        spans.append(
            _Span(
                tenant_id, versions.objects[i], versions.sizes[i], versions.counts[i], first, last
            )
        )
    return spans


def _fold_compacted(
    versions: _Versions, positions: _Positions, compacted: TenantHistory, window: _Window
) -> None:
    """Count each version's live holders and find its oldest, newest and newest in the window.

    The hot loop of find: one pass over flat arrays, keeping positions; a
    snapshot id is read only when two times are equal (ties go by id, as in
    every other answer).
    """
    size = len(compacted.objects)
    counts = [0] * size
    first_t, first_p = [_LATEST] * size, [-1] * size
    last_t, last_p = [_EARLIEST] * size, [-1] * size
    seen_t, seen_p = [_EARLIEST] * size, [-1] * size
    times, live, id_at = positions.times, positions.live, positions.id_at
    low, high, bounded = window.low, window.high, window.bounded
    for position, version in compacted.occurrences():
        if not live[position]:
            continue
        moment = times[position]
        counts[version] += 1
        before = first_t[version]
        if moment < before or (moment == before and id_at(position) < id_at(first_p[version])):
            first_t[version], first_p[version] = moment, position
        after = last_t[version]
        if moment > after or (moment == after and id_at(position) > id_at(last_p[version])):
            last_t[version], last_p[version] = moment, position
        if bounded and low <= moment <= high:
            newest = seen_t[version]
            if moment > newest or (moment == newest and id_at(position) > id_at(seen_p[version])):
                seen_t[version], seen_p[version] = moment, position
    for version in range(size):
        if counts[version]:
            newest = last_p[version] if not bounded else seen_p[version]
            versions.add(
                version,
                positions.holder(last_p[version]),
                counts[version],
                positions.holder(first_p[version]),
                positions.holder(newest) if newest >= 0 else None,
            )


# --- the documents ------------------------------------------------------------------------


def _judge(
    repo: Repository,
    wanted: Iterable[bytes],
    queries: Sequence[Query],
    verdicts: dict[bytes, bool | str],
    progress: Progress | None,
) -> None:
    """Read each object not yet judged once, and note whether every query matches it.

    An unreadable object's verdict is the reason (a string); a storage
    failure is raised, as nothing read after it could be trusted complete.
    """
    todo = [version for version in dict.fromkeys(wanted) if version not in verdicts]
    done = read = 0
    for start in range(0, len(todo), READ_BATCH):
        batch = todo[start : start + READ_BATCH]
        for digest, result in repo.objects.read_many(version.hex() for version in batch):
            if isinstance(result, BackendError) and not isinstance(result, ObjectMissing):
                raise result
            if isinstance(result, CasbakError):
                verdicts[bytes.fromhex(digest)] = str(result)
            else:
                document = decode_canonical(result)
                verdicts[bytes.fromhex(digest)] = all(query.matches(document) for query in queries)
                read += len(result)
            done += 1
            if progress is not None and (done % PROGRESS_EVERY == 0 or done == len(todo)):
                progress(done, len(todo), read)
