"""Garbage collection: plan (mark and decide), then execute (sweep).

Planning reads and changes nothing, so a dry run costs the same as the plan
and reports the same figures. Execution removes the manifests the plan drops,
makes that durable, and only then removes objects that no remaining manifest
references, so a crash at any point leaves every remaining snapshot whole.
Objects younger than the grace period are spared: a snapshot that reuses an
object refreshes its mtime, so even a writer whose lock was wrongly judged
stale cannot lose an object it is about to reference.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import timedelta

import msgspec

from casbak.errors import IntegrityError
from casbak.ids import Digest
from casbak.packs import PackStore
from casbak.repository import Repository, Snapshot

DEFAULT_GRACE = timedelta(hours=1)


class GcPlan(msgspec.Struct, frozen=True):
    """What a collection will do; all counts are known before anything changes."""

    snapshots_removed: int
    snapshots_kept: int
    objects_referenced: int
    objects_removed: int
    bytes_freed: int
    objects_spared_young: int
    bytes_spared_young: int
    remove_manifests: list[str] = msgspec.field(default_factory=list)
    remove_objects: list[str] = msgspec.field(default_factory=list)


def plan_gc(
    repo: Repository,
    *,
    snapshots: list[Snapshot],
    removing: Collection[str] = (),
    grace: timedelta = DEFAULT_GRACE,
    now: float | None = None,
) -> GcPlan:
    """Mark objects referenced by the snapshots that stay; plan to sweep the rest.

    ``snapshots`` must be every snapshot in the repository (a manifest that
    cannot be read makes the caller stop before planning: its references are
    unknown, so nothing could be swept safely).
    """
    current = repo.backend.now() if now is None else now
    staying = [snap for snap in snapshots if snap.id not in removing]
    referenced: set[str] = set()
    for snap in staying:
        referenced.update(entry.object for entry in snap.manifest.entries.values())
    if isinstance(repo.objects, PackStore):
        unindexed = referenced - repo.objects.index().keys()
        if unindexed:
            # The bases of an object we cannot see are unknown: sweeping could
            # take one that a kept object needs.
            raise IntegrityError(
                f"{len(unindexed)} objects that snapshots reference are not indexed "
                f"(e.g. {sorted(unindexed)[0]}); run 'casbak verify' before collecting garbage"
            )
        # A delta object needs its base: every base of a kept object is kept.
        referenced = set(repo.objects.live_closure(referenced))
    doomed: list[Digest] = []
    freed = young = young_bytes = 0
    for digest, info in repo.objects.list():
        if digest in referenced:
            continue
        if current - info.mtime < grace.total_seconds():
            young += 1
            young_bytes += info.size
            continue
        doomed.append(digest)
        freed += info.size
    return GcPlan(
        snapshots_removed=len(snapshots) - len(staying),
        snapshots_kept=len(staying),
        objects_referenced=len(referenced),
        objects_removed=len(doomed),
        bytes_freed=freed,
        objects_spared_young=young,
        bytes_spared_young=young_bytes,
        remove_manifests=[snap.key for snap in snapshots if snap.id in removing],
        remove_objects=list(doomed),
    )


def execute_gc(
    repo: Repository,
    plan: GcPlan,
    keepalive: Callable[[], None] = lambda: None,
    grace: timedelta = DEFAULT_GRACE,
) -> None:
    """Carry out a plan: manifests first (made durable), then objects.

    In format 2 objects leave by rewriting the packs that hold them; packs no
    index names (a writer that crashed before indexing) go after the grace.
    """
    repo.delete_snapshots(plan.remove_manifests, keepalive)
    if isinstance(repo.objects, PackStore):
        repo.objects.sweep(plan.remove_objects, keepalive)
        repo.objects.delete_unindexed(grace.total_seconds())
        return
    for digest in plan.remove_objects:
        repo.objects.delete(digest)
        keepalive()
    repo.backend.sync()
