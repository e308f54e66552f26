"""Use cases about one tenant over time: its versions (`casbak log`) and TENANT@REF.

Versions come from the catalog (`casbak.history`): no manifest is read, and
a document is read only to show what changed (``-p``) or to restore it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from casbak import history
from casbak.canonical import decode_canonical
from casbak.catalog import CatalogView
from casbak.catalogdata import SnapshotRecord, micros_of
from casbak.diff import Change, diff_values
from casbak.errors import NotFoundError
from casbak.history import TenantHolder
from casbak.ids import Digest
from casbak.references import is_tenant_reference
from casbak.repository import Repository, Snapshot


class SnapshotRef(msgspec.Struct, frozen=True):
    """A snapshot as `log` names it: which, when, why, of what, and who took it."""

    id: str
    timestamp: datetime
    operation: str
    target_id: str
    description: str
    provenance: dict[str, str]

    @classmethod
    def of(cls, record: SnapshotRecord) -> SnapshotRef:
        """From a catalog record."""
        return cls(
            record.hex_id,
            record.time(),
            record.operation,
            record.target_id,
            record.description,
            dict(record.provenance),
        )


class TenantVersionEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """A version of a tenant, held by ``snapshots`` snapshots in a row, ``first`` to ``last``.

    ``first`` is the snapshot that introduced it (who changed the tenant);
    ``changes`` (with ``-p``) are the fields changed from the version before.
    """

    tenant_id: str
    object: str
    size: int
    snapshots: int
    first: SnapshotRef
    last: SnapshotRef
    changes: list[Change] | msgspec.UnsetType = msgspec.UNSET


def tenant_log(
    repo: Repository,
    tenant_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    patch: bool = False,
) -> list[TenantVersionEntry]:
    """Every distinct version of a tenant, newest first (see `TenantVersionEntry`).

    ``since``/``until`` keep the versions held by a snapshot in that time;
    with ``patch`` each version carries its changes from the one before it
    (none for the first version stored).
    """

    def answer(view: CatalogView) -> tuple[list[_Run], list[list[TenantHolder]]]:
        runs = history.versions(history.holding(view, tenant_id))
        if not runs:
            raise NotFoundError(f"no snapshot holds tenant {tenant_id!r}")
        low = micros_of(since) if since is not None else None
        high = micros_of(until) if until is not None else None
        chosen = []
        for run in runs:
            held = [
                h
                for h in run
                if (low is None or h.holder.micros >= low)
                and (high is None or h.holder.micros <= high)
            ]
            if held:
                chosen.append(
                    (run, history.record(view, run[-1].holder), history.record(view, run[0].holder))
                )
        return chosen, runs

    chosen, runs = repo.timeline.ask(answer)
    if limit is not None:
        chosen = chosen[:limit]
    entries = []
    for run, first, last in chosen:
        version = run[0]
        entry = TenantVersionEntry(
            tenant_id,
            version.version.hex(),
            version.size,
            len(run),
            SnapshotRef.of(first),
            SnapshotRef.of(last),
        )
        if patch:
            index = next(i for i, other in enumerate(runs) if other is run)
            before = runs[index + 1][0].version if index + 1 < len(runs) else None
            entry = msgspec.structs.replace(entry, changes=_changes(repo, before, version.version))
        entries.append(entry)
    return entries


def _changes(repo: Repository, before: bytes | None, after: bytes) -> list[Change]:
    if before is None:
        return []

    def document(version: bytes) -> Any:
        return decode_canonical(repo.objects.read(Digest(version.hex())))

    return diff_values(document(before), document(after))


_Run = tuple[list[TenantHolder], SnapshotRecord, SnapshotRecord]


class TenantDocumentPick(msgspec.Struct, frozen=True):
    """Documents chosen by a reference, with the snapshot they come from and warnings."""

    snapshot: Snapshot
    entries: dict[str, tuple[Digest, int]]
    warnings: list[str]


def pick(repo: Repository, reference: str, tenant_ids: Sequence[str] = ()) -> TenantDocumentPick:
    """The tenants a reference names: TENANT@REF (that tenant), or a snapshot's (all or some).

    A tenant whose copy here is older than one a newer snapshot holds gets a
    warning naming that snapshot; a tenant the snapshot lacks is a
    NotFoundError that says where its newest copy is.
    """
    if is_tenant_reference(reference):
        version = repo.resolve_tenant(reference)
        if tenant_ids and set(tenant_ids) != {version.tenant_id}:
            raise NotFoundError(f"{reference!r} names tenant {version.tenant_id!r} only")
        warnings = []
        if version.newer is not None:
            warnings.append(_newer_warning(version.tenant_id, version.snapshot.id, version.newer))
        return TenantDocumentPick(
            version.snapshot, {version.tenant_id: (version.object, version.size)}, warnings
        )
    snapshot = repo.resolve(reference)
    entries = snapshot.manifest.entries
    chosen = list(dict.fromkeys(tenant_ids)) if tenant_ids else sorted(entries)
    newest = repo.timeline.newest_copies(tenant_ids) if tenant_ids else {}
    warnings = []
    for tenant_id in chosen:
        if tenant_id not in entries:
            where = ""
            if tenant_id in newest:
                where = f"; snapshots hold it: restore {tenant_id}@latest for its newest copy"
            raise NotFoundError(f"snapshot {snapshot.id[:12]} has no tenant {tenant_id!r}{where}")
        if tenant_id in newest and newest[tenant_id][0] != entries[tenant_id].object:
            holder = newest[tenant_id][1]
            if holder.header.timestamp >= snapshot.header.timestamp:
                warnings.append(_newer_warning(tenant_id, snapshot.id, holder))
    return TenantDocumentPick(
        snapshot,
        {t: (Digest(entries[t].object), entries[t].size) for t in chosen},
        warnings,
    )


def _newer_warning(tenant_id: str, snapshot_id: str, newer: Snapshot) -> str:
    return (
        f"tenant {tenant_id}: snapshot {snapshot_id[:12]} holds an older copy than snapshot "
        f"{newer.id[:12]} ({newer.header.timestamp:%Y-%m-%d %H:%M:%S} UTC, "
        f"{newer.header.operation}); {tenant_id}@latest names the newest"
    )
