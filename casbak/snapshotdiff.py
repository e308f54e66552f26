"""Use case: compare two snapshots, tenant by tenant and field by field.

Three views of the same comparison, for ``casbak diff`` and its ``--name-only``
and ``--stat``: `diff_snapshots` (the changes themselves), `diff_names` (which
tenants differ; no document is read) and `diff_stat` (how many changes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from casbak.canonical import decode_canonical
from casbak.diff import Change, diff_values
from casbak.errors import NotFoundError
from casbak.model import ManifestEntry
from casbak.references import is_tenant_reference
from casbak.repository import Repository

ADDED, REMOVED, MODIFIED = "A", "D", "M"

Progress = Callable[[int, int, int], None]
"""``progress(tenants compared, tenants to compare, 0)``."""


class TenantChanges(msgspec.Struct, frozen=True):
    """A tenant that differs between two snapshots."""

    tenant_id: str
    changes: list[Change]


class SnapshotDiff(msgspec.Struct, frozen=True):
    """Differences from snapshot ``old`` to snapshot ``new``."""

    old: str
    new: str
    added: list[str]
    removed: list[str]
    changed: list[TenantChanges]


class TenantStatus(msgspec.Struct, frozen=True):
    """A tenant that differs: status ``A`` (added), ``D`` (removed) or ``M`` (changed)."""

    tenant_id: str
    status: str


class DiffNames(msgspec.Struct, frozen=True):
    """The tenants that differ from snapshot ``old`` to ``new``, by tenant id."""

    old: str
    new: str
    tenants: list[TenantStatus]


class TenantStat(msgspec.Struct, frozen=True):
    """How many fields of one tenant were added, removed and changed."""

    tenant_id: str
    status: str
    added: int
    removed: int
    changed: int


class DiffTotals(msgspec.Struct, frozen=True):
    """The sums over every tenant that differs."""

    tenants: int
    added: int
    removed: int
    changed: int


class DiffStat(msgspec.Struct, frozen=True):
    """Counts of differences from snapshot ``old`` to ``new``, per tenant and in total."""

    old: str
    new: str
    tenants: list[TenantStat]
    total: DiffTotals


class _Named(msgspec.Struct, frozen=True):
    id: str


class _Compared(msgspec.Struct, frozen=True):
    """Two resolved snapshots, their chosen entries, and the tenants that differ."""

    old: str
    new: str
    before: dict[str, ManifestEntry]
    after: dict[str, ManifestEntry]
    differ: list[TenantStatus]


def _side(repo: Repository, reference: str) -> tuple[str, dict[str, ManifestEntry], str | None]:
    """What one side of a diff holds: a snapshot's tenants, or TENANT@REF's one version."""
    if is_tenant_reference(reference):
        version = repo.resolve_tenant(reference)
        entry = ManifestEntry(version.object, version.size)
        return version.snapshot.id, {version.tenant_id: entry}, version.tenant_id
    snapshot = repo.resolve(reference)
    return snapshot.id, dict(snapshot.manifest.entries), None


def _compare(repo: Repository, old_ref: str, new_ref: str, tenant_ids: Sequence[str]) -> _Compared:
    (old_id, before, old_tenant), (new_id, after, new_tenant) = (
        _side(repo, old_ref),
        _side(repo, new_ref),
    )
    scoped = [tenant for tenant in (old_tenant, new_tenant) if tenant is not None]
    if scoped and not tenant_ids:
        # TENANT@REF against a snapshot compares that tenant alone, not the
        # snapshot's others against nothing.
        tenant_ids = scoped
    old = _Named(old_id)
    new = _Named(new_id)
    if tenant_ids:
        unknown = [t for t in dict.fromkeys(tenant_ids) if t not in before and t not in after]
        if unknown:
            raise NotFoundError(
                f"neither snapshot {old.id[:12]} nor {new.id[:12]} has tenant "
                f"{', '.join(map(repr, unknown))}"
            )
        before = {t: before[t] for t in tenant_ids if t in before}
        after = {t: after[t] for t in tenant_ids if t in after}
    differ = []
    for tenant_id in sorted(before.keys() | after.keys()):
        if tenant_id not in before:
            differ.append(TenantStatus(tenant_id, ADDED))
        elif tenant_id not in after:
            differ.append(TenantStatus(tenant_id, REMOVED))
        elif before[tenant_id].object != after[tenant_id].object:
            # Equal digests are equal canonical bytes, so no field can differ.
            differ.append(TenantStatus(tenant_id, MODIFIED))
    return _Compared(old.id, new.id, before, after, differ)


def _changes(repo: Repository, compared: _Compared, tenant_id: str) -> list[Change]:
    """A tenant's changes; a side that lacks the tenant counts as an empty document."""

    def document(entry: ManifestEntry | None) -> Any:
        return {} if entry is None else decode_canonical(repo.objects.read(entry.object))

    return diff_values(
        document(compared.before.get(tenant_id)), document(compared.after.get(tenant_id))
    )


def diff_snapshots(
    repo: Repository,
    old_ref: str,
    new_ref: str,
    tenant_ids: Sequence[str] = (),
    progress: Progress | None = None,
) -> SnapshotDiff:
    """Tenants added, removed and changed, with changed fields by JSON path.

    With ``tenant_ids`` only those tenants are compared; one that neither
    snapshot holds is a NotFoundError. ``progress`` counts changed tenants compared.
    """
    compared = _compare(repo, old_ref, new_ref, tenant_ids)
    modified = [t.tenant_id for t in compared.differ if t.status == MODIFIED]
    changed = []
    for done, tenant_id in enumerate(modified, 1):
        changed.append(TenantChanges(tenant_id, _changes(repo, compared, tenant_id)))
        if progress is not None:
            progress(done, len(modified), 0)
    return SnapshotDiff(
        compared.old,
        compared.new,
        [t.tenant_id for t in compared.differ if t.status == ADDED],
        [t.tenant_id for t in compared.differ if t.status == REMOVED],
        changed,
    )


def diff_names(
    repo: Repository, old_ref: str, new_ref: str, tenant_ids: Sequence[str] = ()
) -> DiffNames:
    """The tenants that differ, by tenant id, each with its status."""
    compared = _compare(repo, old_ref, new_ref, tenant_ids)
    return DiffNames(compared.old, compared.new, compared.differ)


def diff_stat(
    repo: Repository,
    old_ref: str,
    new_ref: str,
    tenant_ids: Sequence[str] = (),
    progress: Progress | None = None,
) -> DiffStat:
    """Per tenant counts of the changes `diff_snapshots` lists, and their totals.

    An added or removed tenant is counted as its document compared with an
    empty one (each top-level field added or removed); a ``reordered`` array
    counts as a changed field. ``progress`` counts tenants compared.
    """
    compared = _compare(repo, old_ref, new_ref, tenant_ids)
    rows = []
    for done, status in enumerate(compared.differ, 1):
        if progress is not None:
            progress(done, len(compared.differ), 0)
        kinds = [change.kind for change in _changes(repo, compared, status.tenant_id)]
        added, removed = kinds.count("added"), kinds.count("removed")
        changed = len(kinds) - added - removed
        rows.append(TenantStat(status.tenant_id, status.status, added, removed, changed))
    total = DiffTotals(
        len(rows),
        sum(row.added for row in rows),
        sum(row.removed for row in rows),
        sum(row.changed for row in rows),
    )
    return DiffStat(compared.old, compared.new, rows, total)
