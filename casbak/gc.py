"""Garbage collection: plan (mark and decide), then execute (sweep).

Planning reads and changes nothing, so a dry run costs the same as the plan
and reports the same figures. Execution removes the manifests the plan drops,
makes that durable, and only then removes objects that no remaining manifest
references, so a crash at any point leaves every remaining snapshot whole.
Objects younger than the grace period are spared: a snapshot that reuses an
object refreshes its mtime, so even a writer whose lock was wrongly judged
stale cannot lose an object it is about to reference.

A kept object may be a delta against an object that goes. Keeping
that base would keep the removed version's bytes (a secret someone took out of
a tenant, say) for as long as the kept version lives, so the kept object is
re-encoded instead: against its nearest kept ancestor, or standalone.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import timedelta

import msgspec

from casbak.errors import IntegrityError
from casbak.ids import Digest
from casbak.repository import Repository, Snapshot
from casbak.store import MAX_CHAIN, Location, PackStore
from casbak.wording import count

DEFAULT_GRACE = timedelta(hours=1)


class GcPlan(msgspec.Struct, frozen=True):
    """What a collection will do; all counts are known before anything changes.

    ``execute_gc`` returns the same structure with the figures as they turned
    out, so a dry run and the real run can be compared field by field.
    """

    snapshots_removed: int
    snapshots_kept: int
    objects_referenced: int
    objects_removed: int
    bytes_freed: int
    objects_spared_young: int
    bytes_spared_young: int
    manifests_rebased: int = 0
    packs_rewritten: int = 0
    objects_reencoded: int = 0
    orphan_packs_removed: int = 0
    remove_manifests: list[str] = msgspec.field(default_factory=list)
    remove_objects: list[str] = msgspec.field(default_factory=list)
    reencode: dict[str, str | None] = msgspec.field(default_factory=dict)
    """Kept objects whose base goes, each with its new base (None: standalone)."""
    remove_packs: list[str] = msgspec.field(default_factory=list)
    """Keys of packs no index names (left by a crashed writer), older than the grace."""
    packs_consolidated: int = 0
    consolidate: list[str] = msgspec.field(default_factory=list)
    """Small packs whose frames move into full-sized packs."""


SMALL_PACK_BYTES = 64 * 1024
"""A pack under this size is small: each snapshot of a few tenants writes one."""
CONSOLIDATE_FROM = 32
"""gc moves small packs' frames into full-sized packs once there are this many."""


def plan_gc(
    repo: Repository,
    *,
    snapshots: list[Snapshot],
    removing: Collection[str] = (),
    grace: timedelta = DEFAULT_GRACE,
    now: float | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> GcPlan:
    """Mark objects referenced by the snapshots that stay; plan to sweep the rest.

    ``snapshots`` must be every snapshot in the repository (a manifest that
    cannot be read makes the caller stop before planning: its references are
    unknown, so nothing could be swept safely). ``progress`` counts the
    manifests read while marking.
    """
    current = repo.backend.now() if now is None else now
    staying = [snap for snap in snapshots if snap.id not in removing]
    referenced: set[str] = set()
    for done, snap in enumerate(staying, 1):
        if progress is not None:
            progress(done, len(staying), 0)
        referenced.update(entry.object for entry in snap.manifest.entries.values())
    _check_indexed(repo.objects, referenced)
    doomed: dict[Digest, int] = {}
    kept: set[Digest] = set()
    young = young_bytes = 0
    for digest, info in repo.objects.list():
        if digest in referenced:
            kept.add(digest)
        elif current - info.mtime < grace.total_seconds():
            # Perhaps what a running snapshot is about to reference: it stays,
            # readable, like a referenced object.
            kept.add(digest)
            young += 1
            young_bytes += info.size
        else:
            doomed[digest] = info.size
    plan = msgspec.structs.replace(
        plan_removal(snapshots, removing),
        objects_referenced=len(referenced),
        objects_removed=len(doomed),
        bytes_freed=sum(doomed.values()),
        objects_spared_young=young,
        bytes_spared_young=young_bytes,
        remove_objects=list(doomed),
    )
    return _plan_packs(repo.objects, plan, kept, grace.total_seconds(), current)


def plan_removal(snapshots: list[Snapshot], removing: Collection[str]) -> GcPlan:
    """The manifest half of a plan: remove snapshots and sweep nothing (a later gc does)."""
    staying = [snap for snap in snapshots if snap.id not in removing]
    return GcPlan(
        snapshots_removed=len(snapshots) - len(staying),
        snapshots_kept=len(staying),
        objects_referenced=0,
        objects_removed=0,
        bytes_freed=0,
        objects_spared_young=0,
        bytes_spared_young=0,
        manifests_rebased=sum(1 for snap in staying if snap.header.parent in removing),
        remove_manifests=[snap.key for snap in snapshots if snap.id in removing],
    )


def _check_indexed(packs: PackStore, referenced: set[str]) -> None:
    unindexed = referenced - packs.index().keys()
    if unindexed:
        # The bases of an object we cannot see are unknown: sweeping could
        # take one that a kept object needs.
        raise IntegrityError(
            f"{count(len(unindexed), 'object')} that snapshots reference "
            f"{'is' if len(unindexed) == 1 else 'are'} not indexed "
            f"(e.g. {sorted(unindexed)[0]}); run 'casbak verify' before collecting garbage"
        )


def _plan_packs(
    packs: PackStore, plan: GcPlan, kept: set[Digest], grace: float, now: float
) -> GcPlan:
    """Add what objects in packs need: re-encode, rewrite packs, remove orphan packs."""
    index = packs.index()
    doomed = {Digest(digest) for digest in plan.remove_objects}
    reencode = rebase_targets(index, kept, doomed)
    orphans = packs.unindexed_packs(grace, now)
    small = packs.small_packs(SMALL_PACK_BYTES)
    if len(small) < CONSOLIDATE_FROM:
        small = []
    return msgspec.structs.replace(
        plan,
        packs_consolidated=len(small),
        consolidate=sorted(small),
        bytes_freed=plan.bytes_freed + sum(info.size for info in orphans),
        packs_rewritten=len({index[digest].pack for digest in (*doomed, *reencode)}),
        objects_reencoded=len(reencode),
        orphan_packs_removed=len(orphans),
        reencode=dict(reencode),
        remove_packs=[info.key for info in orphans],
    )


def rebase_targets(
    index: Mapping[Digest, Location], kept: Collection[Digest], doomed: Collection[Digest]
) -> dict[Digest, Digest | None]:
    """Each kept object compressed against a doomed one, with the base it gets instead.

    The new base is the nearest kept ancestor in the object's delta chain when
    a delta against it stays within the chain bound (counted as the chains
    will be after gc), else None: standalone.
    """
    rebaser = _Rebaser(index, set(kept), set(doomed))
    for digest in sorted(kept):
        rebaser.depth(digest)
    return rebaser.targets


class _Rebaser:
    def __init__(
        self, index: Mapping[Digest, Location], kept: set[Digest], doomed: set[Digest]
    ) -> None:
        self.index = index
        self.kept = kept
        self.doomed = doomed
        self.targets: dict[Digest, Digest | None] = {}
        self._depths: dict[Digest, int] = {}

    def depth(self, digest: Digest, steps: int = 0) -> int:
        """The object's chain depth after gc, choosing its new base first if it needs one."""
        known = self._depths.get(digest)
        if known is not None:
            return known
        if steps > MAX_CHAIN * 4:
            return MAX_CHAIN  # a loop in a damaged index: no delta may build on it
        location = self.index.get(digest)
        if location is not None and location.unresolved_base is not None:
            depth = self._unresolved(digest, location.unresolved_base)
        else:
            base = location.base if location is not None else None
            if base is not None and digest in self.kept and base in self.doomed:
                base = self._nearest_kept(base, steps)
                self.targets[digest] = base
            depth = 0 if base is None else self.depth(base, steps + 1) + 1
        self._depths[digest] = depth
        return depth

    def _unresolved(self, digest: Digest, prefix: str) -> int:
        """The depth of an object whose base is known only by its prefix, left as it is."""
        if digest in self.kept and any(candidate.startswith(prefix) for candidate in self.doomed):
            self.targets[digest] = None  # any candidate may be the real base: standalone
            return 0
        return 1

    def _nearest_kept(self, base: Digest | None, steps: int) -> Digest | None:
        for _ in range(MAX_CHAIN * 4):
            if base is None or base not in self.doomed:
                break
            location = self.index.get(base)
            base = location.base if location is not None else None
        if base is None or base not in self.kept:
            return None
        return base if self.depth(base, steps + 1) < MAX_CHAIN else None


def execute_gc(
    repo: Repository,
    plan: GcPlan,
    keepalive: Callable[[], None] = lambda: None,
    grace: timedelta = DEFAULT_GRACE,
    snapshots: Iterable[Snapshot] = (),
) -> GcPlan:
    """Carry out a plan: manifests first (made durable), then objects; what was done.

    Objects leave by rewriting the packs that hold them, and kept objects
    whose base leaves are re-encoded on the way; packs no index names (a
    writer that crashed before indexing) go after the grace. ``snapshots``
    (the planned ones) spare reading their headers again.
    """
    headers = {snap.id: snap.header for snap in snapshots}
    rebased = repo.delete_snapshots(plan.remove_manifests, keepalive, headers)
    swept = repo.objects.sweep(plan.remove_objects, keepalive, plan.reencode, plan.consolidate)
    orphans = repo.objects.delete_unindexed(grace.total_seconds(), plan.remove_packs)
    return msgspec.structs.replace(
        plan,
        manifests_rebased=rebased,
        objects_removed=swept.objects_removed,
        bytes_freed=swept.bytes_freed + sum(info.size for info in orphans),
        packs_rewritten=swept.packs_rewritten,
        objects_reencoded=swept.objects_reencoded,
        orphan_packs_removed=len(orphans),
    )
