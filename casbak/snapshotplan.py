"""What a snapshot would change, found before anything is written.

Two questions, both answered from manifests alone (no object is read): how
each tenant compares with its newest stored version (`preview`, for
``snapshot --dry-run``), and whether the target's newest snapshot already
holds exactly these tenants at these versions (`unchanged_snapshot`, for
``--skip-if-unchanged``). The lookups are Repository methods, so a faster
index behind them speeds these up unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from casbak.errors import CasbakError
from casbak.repository import Repository, Snapshot
from casbak.sources import TenantDocument

Status = Literal["new", "changed", "unchanged"]


class TenantStatus(msgspec.Struct, frozen=True):
    """A tenant as a snapshot would store it.

    ``new``: no snapshot holds the tenant; ``changed``: its newest stored
    version differs; ``unchanged``: that version is this one.
    """

    tenant_id: str
    status: Status
    object: str


class SnapshotPreview(msgspec.Struct, frozen=True):
    """What ``snapshot --dry-run`` reports; nothing was written.

    ``unchanged_snapshot`` is the target's newest snapshot when it holds
    exactly these tenants at these versions (what ``--skip-if-unchanged``
    would keep instead of taking a new one).
    """

    target_id: str
    tenants: list[TenantStatus]
    new: int
    changed: int
    unchanged: int
    unchanged_snapshot: str | None
    dry_run: bool = True


def preview(
    repo: Repository, documents: Sequence[TenantDocument], target_id: str
) -> SnapshotPreview:
    """Each document's status against the newest stored version of its tenant."""
    newest = repo.newest_versions([doc.tenant_id for doc in documents])
    tenants = []
    for doc in sorted(documents, key=lambda doc: doc.tenant_id):
        stored = newest.get(doc.tenant_id)
        status: Status = (
            "new" if stored is None else "unchanged" if stored == doc.digest else "changed"
        )
        tenants.append(TenantStatus(doc.tenant_id, status, doc.digest))
    same = unchanged_snapshot(repo, target_id, documents)
    return SnapshotPreview(
        target_id=target_id,
        tenants=tenants,
        new=sum(1 for tenant in tenants if tenant.status == "new"),
        changed=sum(1 for tenant in tenants if tenant.status == "changed"),
        unchanged=sum(1 for tenant in tenants if tenant.status == "unchanged"),
        unchanged_snapshot=same.id if same is not None else None,
    )


def unchanged_snapshot(
    repo: Repository, target_id: str, documents: Sequence[TenantDocument]
) -> Snapshot | None:
    """The target's newest snapshot if it holds exactly these tenants at these versions.

    A newest snapshot that cannot be read is no match: a new snapshot is the
    safe answer.
    """
    try:
        latest = repo.latest_of_target(target_id)
        if latest is None:
            return None
        held = {tenant: entry.object for tenant, entry in latest.manifest.entries.items()}
    except CasbakError:
        return None
    wanted = {doc.tenant_id: doc.digest for doc in documents}
    return latest if held == wanted else None
