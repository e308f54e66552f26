"""Use cases that remove data: cleanup (retention, then gc) and gc alone.

Both run under the exclusive lock, so no snapshot is written while they mark
and sweep; see docs/FORMAT.md (Concurrency).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import msgspec

from casbak.defaults import DEFAULT_LOCK_TIMEOUT
from casbak.gc import DEFAULT_GRACE, GcPlan, execute_gc, plan_gc
from casbak.model import utc_now
from casbak.repository import Repository
from casbak.retention import Decision, Kept, RetentionPolicy, SnapshotInfo, apply_policy


class CleanupReport(msgspec.Struct, frozen=True):
    """What cleanup or gc did (or, with dry_run, would do): the same figures either way."""

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
    kept: list[Kept]
    removed: list[str]

    @classmethod
    def of(cls, plan: GcPlan, decision: Decision | None, dry_run: bool) -> CleanupReport:
        """Combine a retention decision (if any) with a gc plan."""
        return cls(
            dry_run=dry_run,
            snapshots_removed=plan.snapshots_removed,
            snapshots_kept=plan.snapshots_kept,
            manifests_rebased=plan.manifests_rebased,
            objects_removed=plan.objects_removed,
            bytes_freed=plan.bytes_freed,
            objects_spared_young=plan.objects_spared_young,
            objects_reencoded=plan.objects_reencoded,
            packs_rewritten=plan.packs_rewritten,
            orphan_packs_removed=plan.orphan_packs_removed,
            kept=decision.keep if decision else [],
            removed=decision.remove if decision else [],
        )


def cleanup(
    repo: Repository,
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    grace: timedelta = DEFAULT_GRACE,
    clock: Callable[[], datetime] = utc_now,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> CleanupReport:
    """Apply a retention policy, then collect the garbage it leaves."""
    with repo.locks.exclusive("cleanup", lock_timeout) as lock:
        snapshots = repo.snapshots()
        infos = [
            SnapshotInfo(
                snap.id,
                snap.header.timestamp,
                snap.header.target_id,
                snap.header.operation,
                tuple(snap.header.tags),
            )
            for snap in snapshots
        ]
        decision = apply_policy(infos, policy, clock())
        plan = plan_gc(repo, snapshots=snapshots, removing=set(decision.remove), grace=grace)
        if not dry_run:
            plan = execute_gc(repo, plan, lock.refresh, grace)
    return CleanupReport.of(plan, decision, dry_run)


def collect_garbage(
    repo: Repository,
    *,
    dry_run: bool = False,
    grace: timedelta = DEFAULT_GRACE,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> CleanupReport:
    """Remove objects no snapshot references (older than the grace period)."""
    with repo.locks.exclusive("gc", lock_timeout) as lock:
        plan = plan_gc(repo, snapshots=repo.snapshots(), grace=grace)
        if not dry_run:
            plan = execute_gc(repo, plan, lock.refresh, grace)
    return CleanupReport.of(plan, None, dry_run)
