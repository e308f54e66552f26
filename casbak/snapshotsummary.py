"""A snapshot as `list` shows it, the one shape every command reports snapshots in.

Here rather than in `service` so that `maintenance` (cleanup, forget), a
sibling of `service`, reports the snapshots it removes in the same shape.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from casbak.repository import Snapshot


class SnapshotSummary(msgspec.Struct, frozen=True):
    """A snapshot as `list` shows it."""

    id: str
    timestamp: datetime
    operation: str
    target_id: str
    description: str
    tags: list[str]
    tenants: int
    provenance: dict[str, str]
    """Who took it and where (user, host, casbak, meta.*, ci.*); {} before format 4."""

    @classmethod
    def of(cls, snapshot: Snapshot) -> SnapshotSummary:
        """Summarize a loaded snapshot."""
        header = snapshot.header
        return cls(
            snapshot.id,
            header.timestamp,
            header.operation,
            header.target_id,
            header.description,
            list(header.tags),
            header.tenants,
            dict(header.provenance),
        )
