"""Use cases that remove data: cleanup (retention, then gc), forget, gc alone, unlock.

All but unlock run under the exclusive lock, so no snapshot is written while
they mark and sweep; see docs/FORMAT.md (Concurrency). They work from the
manifests, never from the catalog (a cache that may lack a snapshot, whose
objects would then be swept), and write the catalog afresh when it does not
say what the manifests say.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

import msgspec
from msgspec.structs import asdict

from casbak.catalogcheck import StoredSnapshots, reconcile
from casbak.defaults import DEFAULT_LOCK_TIMEOUT
from casbak.errors import Refused, UsageError
from casbak.gc import DEFAULT_GRACE, GcPlan, execute_gc, plan_gc, plan_removal
from casbak.heap import collector_paused
from casbak.layout import LOCK_PREFIX
from casbak.locks import LockRecord
from casbak.model import utc_now
from casbak.repository import Repository, Snapshot
from casbak.retention import (
    Decision,
    RetentionPolicy,
    SnapshotInfo,
    apply_policy,
    safety_reasons,
)
from casbak.snapshotsummary import SnapshotSummary

_Summary = TypeVar("_Summary", bound=SnapshotSummary)


class KeptSnapshot(SnapshotSummary, frozen=True):
    """A snapshot cleanup keeps, as `list` shows it, and every reason it stays."""

    reasons: list[str]


Progress = Callable[[int, int, int], None]
"""``progress(manifests read, manifests to read, 0)``."""


class CleanupReport(msgspec.Struct, frozen=True):
    """What cleanup or gc did (or, with dry_run, would do): the same figures either way.

    ``kept`` and ``removed`` carry each snapshot as `list` shows it, newest
    first, so the report says what went without another lookup (which would
    find nothing: the snapshots are gone).
    """

    dry_run: bool
    snapshots_removed: int
    snapshots_kept: int
    manifests_rebased: int
    objects_removed: int
    bytes_freed: int
    objects_spared_young: int
    objects_reencoded: int
    packs_rewritten: int
    orphan_packs_removed: int
    kept: list[KeptSnapshot]
    removed: list[SnapshotSummary]
    packs_consolidated: int = 0
    """Small packs whose frames moved into full-sized packs (counted in packs_rewritten too)."""
    catalog_rebuilt: bool = False
    """The catalog disagreed with the manifests (or was missing) and was written afresh."""

    @classmethod
    def of(
        cls,
        plan: GcPlan,
        decision: Decision | None,
        dry_run: bool,
        catalog_rebuilt: bool = False,
        snapshots: Sequence[Snapshot] = (),
    ) -> CleanupReport:
        """Combine a retention decision (if any) on ``snapshots`` with a gc plan."""
        by_id: dict[str, Snapshot] = {snap.id: snap for snap in snapshots}
        kept, removed = decision.keep if decision else [], decision.remove if decision else []
        return cls(
            dry_run=dry_run,
            packs_consolidated=plan.packs_consolidated,
            snapshots_removed=plan.snapshots_removed,
            snapshots_kept=plan.snapshots_kept,
            manifests_rebased=plan.manifests_rebased,
            objects_removed=plan.objects_removed,
            bytes_freed=plan.bytes_freed,
            objects_spared_young=plan.objects_spared_young,
            objects_reencoded=plan.objects_reencoded,
            packs_rewritten=plan.packs_rewritten,
            orphan_packs_removed=plan.orphan_packs_removed,
            kept=_newest_first(
                KeptSnapshot(**asdict(SnapshotSummary.of(by_id[k.id])), reasons=k.reasons)
                for k in kept
            ),
            removed=_newest_first(SnapshotSummary.of(by_id[i]) for i in removed),
            catalog_rebuilt=catalog_rebuilt,
        )


def _newest_first(summaries: Iterable[_Summary]) -> list[_Summary]:
    return sorted(summaries, key=lambda s: (s.timestamp, s.id), reverse=True)


def cleanup(
    repo: Repository,
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    grace: timedelta = DEFAULT_GRACE,
    clock: Callable[[], datetime] = utc_now,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    progress: Progress | None = None,
) -> CleanupReport:
    """Apply a retention policy, then collect the garbage it leaves.

    ``progress`` counts manifests read: every header, then those that stay.
    """
    with collector_paused(), repo.locks.exclusive("cleanup", lock_timeout) as lock:
        stored = StoredSnapshots(repo, progress)
        snapshots = stored.snapshots
        decision = apply_policy(_infos(snapshots), policy, clock())
        removing = set(decision.remove)
        plan = plan_gc(repo, snapshots=snapshots, removing=removing, grace=grace, progress=progress)
        rebuilt = reconcile(repo, stored, dry_run=dry_run)
        if not dry_run:
            plan = execute_gc(repo, plan, lock.refresh, grace, stored.snapshots)
    return CleanupReport.of(plan, decision, dry_run, rebuilt, snapshots)


def _infos(snapshots: list[Snapshot]) -> list[SnapshotInfo]:
    return [
        SnapshotInfo(
            snap.id,
            snap.header.timestamp,
            snap.header.target_id,
            snap.header.operation,
            tuple(snap.header.tags),
        )
        for snap in snapshots
    ]


def forget(
    repo: Repository,
    references: Sequence[str],
    *,
    force: bool = False,
    prune: bool = True,
    dry_run: bool = False,
    grace: timedelta = DEFAULT_GRACE,
    clock: Callable[[], datetime] = utc_now,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    progress: Progress | None = None,
) -> CleanupReport:
    """Remove the named snapshots, then (with ``prune``) the objects only they referenced.

    Cleanup's plan, execution and safety rules: naming the newest snapshot of
    a target, or one dated in the future, is refused (nothing is removed)
    unless ``force``. Without ``prune`` the objects are left to a later gc.
    ``progress`` as for `cleanup`.
    """
    if not references:
        raise UsageError("name at least one snapshot to forget")
    with collector_paused(), repo.locks.exclusive("forget", lock_timeout) as lock:
        stored = StoredSnapshots(repo, progress)
        snapshots = stored.snapshots
        # References are answered by the catalog: it must say what the manifests say.
        rebuilt = reconcile(repo, stored, dry_run=dry_run)
        named = {repo.resolve(reference).id for reference in references}
        if not force:
            _refuse_protected(snapshots, named, clock())
        if prune:
            plan = plan_gc(
                repo, snapshots=snapshots, removing=named, grace=grace, progress=progress
            )
        else:
            plan = plan_removal(snapshots, named)
        if not dry_run:
            plan = execute_gc(repo, plan, lock.refresh, grace, stored.snapshots)
    removed: list[str] = [snap.id for snap in snapshots if snap.id in named]
    decision = Decision(keep=[], remove=removed)
    return CleanupReport.of(plan, decision, dry_run, rebuilt, snapshots)


def _refuse_protected(snapshots: list[Snapshot], named: Collection[str], now: datetime) -> None:
    safe = safety_reasons(_infos(snapshots), now)
    protected = [snap for snap in snapshots if snap.id in named and snap.id in safe]
    if protected:
        first = protected[0]
        more = f" and {len(protected) - 1} more" if len(protected) > 1 else ""
        raise Refused(
            f"refusing to forget snapshot {first.id[:12]} ({safe[first.id][0]}){more}: "
            f"cleanup's safety rules keep {'them' if more else 'it'}; nothing was removed "
            "(--force overrides)"
        )


def collect_garbage(
    repo: Repository,
    *,
    dry_run: bool = False,
    grace: timedelta = DEFAULT_GRACE,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    progress: Progress | None = None,
) -> CleanupReport:
    """Remove objects no snapshot references (older than the grace period).

    The catalog is checked against the manifests the plan reads; one that
    disagrees, is damaged or is missing is written afresh (``catalog_rebuilt``).
    ``progress`` as for `cleanup`.
    """
    with collector_paused(), repo.locks.exclusive("gc", lock_timeout) as lock:
        stored = StoredSnapshots(repo, progress)
        plan = plan_gc(repo, snapshots=stored.snapshots, grace=grace, progress=progress)
        rebuilt = reconcile(repo, stored, dry_run=dry_run)
        if not dry_run:
            plan = execute_gc(repo, plan, lock.refresh, grace, stored.snapshots)
    return CleanupReport.of(plan, None, dry_run, rebuilt)


class LockHolder(msgspec.Struct, frozen=True):
    """A lock record as unlock reports it (``since`` is None when it cannot be read)."""

    key: str
    kind: str
    operation: str
    host: str
    pid: int
    since: datetime | None
    stale: bool

    @classmethod
    def of(cls, key: str, record: LockRecord | None, stale: bool) -> LockHolder:
        """Describe a record; an unreadable one by the kind its name gives."""
        if record is None:
            kind = key[len(LOCK_PREFIX) :].partition("-")[0]
            return cls(key, kind, "unknown", "unknown", 0, None, stale)
        return cls(
            key, record.kind, record.operation, record.host, record.pid, record.created, stale
        )


class UnlockReport(msgspec.Struct, frozen=True):
    """Lock records unlock removed, and the live ones it left in place."""

    removed: list[LockHolder]
    kept: list[LockHolder]


def unlock(repo: Repository, *, force: bool = False) -> UnlockReport:
    """Remove stale lock records, and with ``force`` live ones too.

    Takes no lock itself: it is what clears the way for those that do. Each
    record's key is unique, so removing a stale one never removes a newer
    holder's. A live holder whose record is forced away may still be working
    (a snapshot notices before it commits; gc and cleanup do not).
    """
    removed, kept = [], []
    for key, record, stale in repo.locks.holders():
        holder = LockHolder.of(key, record, stale)
        if not (stale or force):
            kept.append(holder)
        elif repo.locks.remove(key):
            removed.append(holder)
    return UnlockReport(removed, kept)
