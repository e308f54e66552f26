"""What a shell may complete from a repository: snapshot references, tenant ids, targets.

Every answer comes from one catalog reading (a few small files, however many
snapshots there are) and decodes only what it returns; nothing is written,
not even a rebuilt catalog. Callers that must never fail (a shell waiting on
a Tab) catch errors themselves: here a damaged repository raises as anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from casbak import history
from casbak.catalog import CatalogView
from casbak.repository import Repository

MAX_SNAPSHOTS = 50
"""Snapshot ids offered at most: enough to choose from, and a Tab stays quick."""
SHORT_ID = 12
"""Hex digits of a snapshot id offered, as `list` prints them."""
LATEST = "latest"


class Candidate(msgspec.Struct, frozen=True):
    """One completion, with a short description shells that show one print."""

    value: str
    help: str = ""


def snapshot_references(repo: Repository, incomplete: str) -> list[Candidate]:
    """SNAPSHOT references that start with ``incomplete``, newest first.

    ``latest``, ``latest:TARGET``, ``TENANT@latest`` and snapshot ids (as many
    hex digits as `list` shows, or as were typed).
    """
    view = repo.view()
    if incomplete.startswith(f"{LATEST}:"):
        prefix = incomplete.removeprefix(f"{LATEST}:")
        return [
            Candidate(f"{LATEST}:{target}", f"newest snapshot of {target}")
            for target in _starting(_targets(view), prefix)
        ]
    tenant, at, _ = incomplete.partition("@")
    if at and tenant:
        if tenant in set(history.tenants(view)):
            return [Candidate(f"{tenant}@{LATEST}", f"{tenant} as the newest snapshot holds it")]
        return []
    found = [Candidate(LATEST, "the newest snapshot")] if LATEST.startswith(incomplete) else []
    found += _snapshot_ids(view, incomplete.lower())
    if incomplete and not found:
        found = [
            Candidate(f"{tenant}@{LATEST}", f"{tenant} as the newest snapshot holds it")
            for tenant in _starting(history.tenants(view), incomplete)
        ]
    return found


def _snapshot_ids(view: CatalogView, prefix: str) -> list[Candidate]:
    if prefix.strip("0123456789abcdef"):
        return []
    if prefix:
        holders = history.with_prefix(view, prefix, enough=MAX_SNAPSHOTS)
    else:
        holders = history.newest(view, MAX_SNAPSHOTS)
    found = []
    for holder in holders[:MAX_SNAPSHOTS]:
        record = history.record(view, holder)
        when = record.timestamp[:19].replace("T", " ")
        found.append(
            Candidate(
                holder.snapshot_id.hex()[: max(SHORT_ID, len(prefix))],
                f"{when} {record.operation} {record.target_id}",
            )
        )
    return found


def tenant_ids(repo: Repository, incomplete: str) -> list[Candidate]:
    """Tenant ids any snapshot holds (or held) that start with ``incomplete``, sorted."""
    return [Candidate(tenant) for tenant in _starting(history.tenants(repo.view()), incomplete)]


def targets(repo: Repository, incomplete: str) -> list[Candidate]:
    """Targets of the repository's snapshots that start with ``incomplete``, sorted."""
    return [Candidate(target) for target in _starting(_targets(repo.view()), incomplete)]


def _targets(view: CatalogView) -> Iterator[str]:
    for index in range(len(view.head.buckets)):
        yield from view.bucket(index).targets
    for added in view.added.values():
        yield added.record.target_id


def _starting(names: Iterator[str], prefix: str) -> list[str]:
    return sorted({name for name in names if name.startswith(prefix)})
