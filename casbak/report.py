"""Use case: an HTML report of a repository (`casbak report`).

Everything comes from one catalog reading plus the pack index: no manifest
is read, and a document only for the field changes of the tenants shown. At
scale the report summarises rather than inlining everything: growth is
sampled into at most `MAX_POINTS` points, churn lists the busiest tenants,
and tenant sections are the busiest `top` (at most `MAX_VERSIONS` versions
each) unless tenants are named, which then get their whole history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import msgspec

from casbak import history
from casbak.catalog import CatalogView
from casbak.catalogdata import SnapshotRecord, micros_of
from casbak.errors import InputError
from casbak.model import utc_now
from casbak.outfiles import atomic_file
from casbak.provenance import casbak_version
from casbak.reporthtml import render
from casbak.reportmodel import (
    Churn,
    ChurnRow,
    GrowthPoint,
    Header,
    Mark,
    RemovedSnapshot,
    ReportData,
    Retention,
    TenantSection,
    VerifyState,
    Version,
    decode_verify,
    who,
)
from casbak.repository import Repository
from casbak.retention import RetentionPolicy, SnapshotInfo, apply_policy, format_duration
from casbak.tenanthistory import TenantVersionEntry, tenant_log

DEFAULT_TOP = 10
"""Tenant sections when no tenant is named: the busiest ones."""
MAX_VERSIONS = 20
"""Versions per tenant section when no tenant is named."""
MAX_POINTS = 500
"""Growth points at most; more snapshots are sampled, the last of each time slice."""
CHURN_ROWS = 25
CHURN_BUCKETS = 40
SHOWN_REMOVED = 100


class ReportResult(msgspec.Struct, frozen=True):
    """What `write_report` wrote."""

    path: str
    bytes: int
    snapshots: int
    tenants_shown: list[str]
    growth_points: int


class _Held(NamedTuple):
    micros: int
    snapshot_id: bytes
    object: bytes
    size: int


class _Scan(NamedTuple):
    records: list[tuple[int, SnapshotRecord]]
    """Every snapshot, oldest first, with its time in µs."""
    held: dict[str, list[_Held]]
    """Every tenant's holders, oldest first."""


def _scan(view: CatalogView) -> _Scan:
    holders = history.newest(view)
    holders.reverse()
    by_position = {h.position: h for h in holders if h.position >= 0}
    held: dict[str, list[_Held]] = {}
    for index in range(len(view.head.buckets)):
        bucket = view.bucket(index)
        for tenant_id in bucket.tenants:
            found = bucket.tenant(tenant_id)
            assert found is not None
            rows = held.setdefault(tenant_id, [])
            for position, version in found.occurrences():
                holder = by_position.get(position)
                if holder is not None:
                    rows.append(
                        _Held(
                            holder.micros,
                            holder.snapshot_id,
                            found.objects[version],
                            found.sizes[version],
                        )
                    )
    for holder in holders:
        if holder.added is not None:
            for entry in view.entries_of(holder.added):
                held.setdefault(entry.tenant_id, []).append(
                    _Held(holder.micros, holder.snapshot_id, entry.object, entry.size)
                )
    for rows in held.values():
        rows.sort()
    records = [(h.micros, history.record(view, h)) for h in holders]
    return _Scan(records, {tenant: rows for tenant, rows in held.items() if rows})


def gather(
    repo: Repository,
    *,
    tenant_ids: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    top: int = DEFAULT_TOP,
    verify: VerifyState | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> ReportData:
    """Everything the report shows (see the module docstring for what is summarised)."""
    now = clock()
    scan = repo.timeline.ask(_scan)
    for tenant_id in tenant_ids:
        if tenant_id not in scan.held:
            raise InputError(f"--tenant {tenant_id!r}: no snapshot holds this tenant")
    low = micros_of(since) if since is not None else None
    high = micros_of(until) if until is not None else None

    def inside(micros: int) -> bool:
        return (low is None or micros >= low) and (high is None or micros <= high)

    marks = [_mark(record) for micros, record in scan.records if inside(micros)]
    points, sampled = _growth(repo, scan, inside)
    churn = _churn(scan, tenant_ids, inside, marks, since, until)
    named = list(dict.fromkeys(tenant_ids))
    chosen = named or [row.tenant_id for row in churn.rows[:top] if row.versions]
    sections = [
        _section(repo, scan, tenant_id, f"t{index}", since, until, full=bool(named))
        for index, tenant_id in enumerate(chosen)
    ]
    anchors = {section.tenant_id: section.anchor for section in sections}
    churn = msgspec.structs.replace(
        churn,
        rows=[msgspec.structs.replace(r, anchor=anchors.get(r.tenant_id)) for r in churn.rows],
    )
    notes = []
    if not named:
        notes.append(
            f"Tenant history: the busiest {len(sections)} of {len(scan.held):,} tenants, at most "
            f"{MAX_VERSIONS} versions each; --tenant ID shows a tenant's whole history."
        )
    if sampled:
        notes.append(f"Growth: {len(scan.records):,} snapshots drawn as {len(points)} points.")
    header = Header(
        repository=repo.backend.describe(),
        casbak_version=casbak_version(),
        generated=now,
        since=since,
        until=until,
        snapshots=len(scan.records),
        tenants=len(scan.held),
        verify=verify,
    )
    return ReportData(header, marks, points, churn, sections, _retention(repo, scan, now), notes)


def _mark(record: SnapshotRecord) -> Mark:
    return Mark(
        record.hex_id,
        record.time(),
        record.operation,
        record.target_id,
        record.description,
        record.tenants,
        who(record.provenance),
    )


def _growth(
    repo: Repository, scan: _Scan, inside: Callable[[int], bool]
) -> tuple[list[GrowthPoint], bool]:
    """Running totals after each snapshot; sampled when there are more than MAX_POINTS."""
    index = repo.objects.index()
    stored_of: dict[str, int] = {digest: location.length for digest, location in index.items()}
    entries: dict[bytes, list[tuple[bytes, int]]] = {}
    for rows in scan.held.values():
        for row in rows:
            entries.setdefault(row.snapshot_id, []).append((row.object, row.size))
    seen: set[bytes] = set()
    logical = unique = stored = 0
    totals = []
    for number, (micros, record) in enumerate(scan.records, 1):
        for digest, size in entries.get(record.id, ()):
            logical += size
            if digest not in seen:
                seen.add(digest)
                unique += size
                stored += stored_of.get(digest.hex(), 0)
        if inside(micros):
            totals.append((micros, GrowthPoint(record.time(), number, logical, unique, stored)))
    if len(totals) <= MAX_POINTS:
        return [point for _, point in totals], False
    first, last = totals[0][0], totals[-1][0]
    width = max((last - first) / MAX_POINTS, 1.0)
    slices: dict[int, GrowthPoint] = {}
    for micros, point in totals:
        slices[min(int((micros - first) / width), MAX_POINTS - 1)] = point
    return list(slices.values()), True


def _churn(
    scan: _Scan,
    tenant_ids: Sequence[str],
    inside: Callable[[int], bool],
    marks: Sequence[Mark],
    since: datetime | None,
    until: datetime | None,
) -> Churn:
    """New versions per tenant in the window, per time bucket; the busiest first."""
    start = since or (marks[0].timestamp if marks else utc_now())
    end = until or (marks[-1].timestamp if marks else start)
    span = max((end - start).total_seconds(), 0.0)
    buckets = CHURN_BUCKETS if span else 1
    step = timedelta(seconds=span / buckets)
    edges = [start + step * index for index in range(buckets)] + [end]
    low, width = micros_of(start), max(span * 1e6 / buckets, 1.0)
    rows = []
    for tenant_id, held in scan.held.items():
        if tenant_ids and tenant_id not in tenant_ids:
            continue
        counts = [0] * buckets
        previous = None
        for row in held:
            if row.object != previous and inside(row.micros):
                counts[min(max(int((row.micros - low) / width), 0), buckets - 1)] += 1
            previous = row.object
        rows.append(ChurnRow(tenant_id, sum(counts), counts, None))
    rows.sort(key=lambda row: (-row.versions, row.tenant_id))
    if tenant_ids:
        order = {tenant: index for index, tenant in enumerate(dict.fromkeys(tenant_ids))}
        rows.sort(key=lambda row: order[row.tenant_id])
    else:
        rows = [row for row in rows if row.versions][:CHURN_ROWS]
    return Churn(rows, edges, len(scan.held))


def _section(
    repo: Repository,
    scan: _Scan,
    tenant_id: str,
    anchor: str,
    since: datetime | None,
    until: datetime | None,
    *,
    full: bool,
) -> TenantSection:
    every = tenant_log(repo, tenant_id, since=since, until=until)
    limit = None if full else MAX_VERSIONS
    shown = tenant_log(repo, tenant_id, since=since, until=until, limit=limit, patch=True)
    first_holder = scan.held[tenant_id][0].snapshot_id.hex()
    versions = [_version(entry, entry.first.id == first_holder) for entry in shown]
    return TenantSection(tenant_id, anchor, versions, len(every) - len(shown))


def _version(entry: TenantVersionEntry, initial: bool) -> Version:
    first = entry.first
    changes = [] if isinstance(entry.changes, msgspec.UnsetType) else entry.changes
    return Version(
        entry.object,
        entry.size,
        entry.snapshots,
        first.timestamp,
        entry.last.timestamp,
        first.id,
        first.operation,
        first.target_id,
        first.description,
        first.provenance,
        changes,
        initial,
    )


def _retention(repo: Repository, scan: _Scan, now: datetime) -> Retention:
    """What cleanup with the repository's default policy would decide now (nothing is locked)."""
    keep_within = timedelta(days=repo.config.retention_days)
    policy = RetentionPolicy(keep_within=keep_within)
    records = {record.hex_id: record for _, record in scan.records}
    infos = [
        SnapshotInfo(r.hex_id, r.time(), r.target_id, r.operation, tuple(r.tags))
        for r in records.values()
    ]
    decision = apply_policy(infos, policy, now)
    reasons: dict[str, int] = {}
    for kept in decision.keep:
        for reason in {_reason_kind(reason) for reason in kept.reasons}:
            reasons[reason] = reasons.get(reason, 0) + 1
    removed = [
        RemovedSnapshot(r.hex_id, r.time(), r.operation, r.target_id)
        for r in (records[snapshot_id] for snapshot_id in decision.remove[:SHOWN_REMOVED])
    ]
    return Retention(
        f"keep within {format_duration(keep_within)}, and the newest of every target",
        removed,
        len(decision.remove),
        len(decision.keep),
        dict(sorted(reasons.items(), key=lambda item: -item[1])),
    )


def _reason_kind(reason: str) -> str:
    """A reason without what is particular to one snapshot (its target, its period)."""
    if reason.startswith("newest of target "):
        return "the newest of its target"
    return reason


def read_verify(path: str) -> VerifyState:
    """A ``verify --json`` result from a file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"--verify {path}: cannot read ({exc.strerror or exc})") from None
    return decode_verify(data, f"--verify {path}")


def write_report(path: Path, data: ReportData) -> ReportResult:
    """Render the report and write it to ``path`` (whole or not at all; mode 0600).

    The file holds tenant values, so it is written as privately as restored
    tenants are; share it on purpose.
    """
    page = render(data).encode()
    try:
        with atomic_file(path, durable=False) as handle:
            handle.write(page)
    except OSError as exc:
        raise InputError(f"cannot write report {path}: {exc.strerror or exc}") from None
    return ReportResult(
        str(path),
        len(page),
        len(data.marks),
        [section.tenant_id for section in data.tenants],
        len(data.growth),
    )
