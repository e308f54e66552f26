"""What an HTML report shows, as plain data. Pure.

The report service (`casbak.report`) fills these from a repository; the
renderers (`casbak.reportsvg`, `casbak.reporthtml`) turn them into one HTML
file. Keeping them apart lets the renderers be tested on hand-made data, and
keeps every value that came from a tenant in one place on its way to
escaping.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from casbak.diff import Change
from casbak.errors import InputError


class Mark(msgspec.Struct, frozen=True):
    """A snapshot on the timeline."""

    id: str
    timestamp: datetime
    operation: str
    target_id: str
    description: str
    tenants: int
    who: str


class GrowthPoint(msgspec.Struct, frozen=True):
    """The repository as of a moment: running totals since the first snapshot.

    ``logical`` counts every tenant of every snapshot (what full copies would
    take), ``unique`` each distinct document once, ``stored`` those documents
    as compressed in the repository.
    """

    timestamp: datetime
    snapshots: int
    logical: int
    unique: int
    stored: int


class ChurnRow(msgspec.Struct, frozen=True):
    """A tenant's versions introduced in the window, in total and per time bucket."""

    tenant_id: str
    versions: int
    buckets: list[int]
    anchor: str | None
    """The id of the tenant's section, when the report has one."""


class Churn(msgspec.Struct, frozen=True):
    """The busiest tenants, with the bucket edges their counts fall between."""

    rows: list[ChurnRow]
    edges: list[datetime]
    tenants_total: int


class Version(msgspec.Struct, frozen=True):
    """A version of a tenant, the snapshot that introduced it, and what it changed."""

    object: str
    size: int
    snapshots: int
    first: datetime
    last: datetime
    snapshot_id: str
    operation: str
    target_id: str
    description: str
    provenance: dict[str, str]
    changes: list[Change]
    initial: bool
    """The first version stored: there is nothing before it to compare with."""


class TenantSection(msgspec.Struct, frozen=True):
    """One tenant's history; ``omitted`` older versions are left out."""

    tenant_id: str
    anchor: str
    versions: list[Version]
    omitted: int


class RemovedSnapshot(msgspec.Struct, frozen=True):
    """A snapshot the retention policy would remove now."""

    id: str
    timestamp: datetime
    operation: str
    target_id: str


class Retention(msgspec.Struct, frozen=True):
    """What cleanup with the repository's policy would remove, and why the rest stays."""

    policy: str
    removed: list[RemovedSnapshot]
    removed_total: int
    kept_total: int
    reasons: dict[str, int]
    """How many kept snapshots each kind of reason keeps (one snapshot may have several)."""


class FindingLine(msgspec.Struct, frozen=True):
    """A finding of ``verify --json``, as far as the report shows it."""

    kind: str
    severity: str
    location: str
    message: str


class VerifyState(msgspec.Struct, frozen=True):
    """The part of a ``verify --json`` result the header shows."""

    ok: bool
    mode: str
    snapshots_checked: int
    damage: int
    findings: list[FindingLine] = []


class Header(msgspec.Struct, frozen=True):
    """Where the report comes from and what it covers."""

    repository: str
    casbak_version: str
    generated: datetime
    since: datetime | None
    until: datetime | None
    snapshots: int
    tenants: int
    verify: VerifyState | None


class ReportData(msgspec.Struct, frozen=True):
    """Everything a report shows."""

    header: Header
    marks: list[Mark]
    growth: list[GrowthPoint]
    churn: Churn
    tenants: list[TenantSection]
    retention: Retention
    notes: list[str]
    """What was summarised and how to see more (e.g. 'busiest 10 of 2,000 tenants')."""


def decode_verify(data: bytes, where: str) -> VerifyState:
    """A ``verify --json`` result; InputError naming ``where`` when it is not one."""
    try:
        return msgspec.json.decode(data, type=VerifyState)
    except msgspec.DecodeError as exc:
        raise InputError(f"{where}: not a 'casbak verify --json' result ({exc})") from None


def short_value(value: Any, limit: int = 400) -> str:
    """A JSON value as compact text, cut to ``limit`` characters (documents can be large)."""
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def human_bytes(number: float) -> str:
    """Bytes in the largest unit that keeps the figure at 1 or more (1024-based)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(number) < 1024 or unit == "GiB":
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1024
    raise AssertionError("unreachable")


def who(provenance: dict[str, str]) -> str:
    """``user@host`` of a snapshot's provenance (either alone when the other is missing)."""
    user, host = provenance.get("user", ""), provenance.get("host", "")
    return f"{user}@{host}" if user and host else user or host
