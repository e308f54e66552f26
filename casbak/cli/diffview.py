"""How differences read for people: field changes, --stat, --name-only, and colour.

Colour (red for what was removed or the old value, green for what was added
or the new one) follows `terminal`'s rules: only when stdout is a terminal,
``NO_COLOR`` is not set to anything, and the output is not ``--json``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from casbak.cli.output import count
from casbak.cli.terminal import Painter, colour_on

if TYPE_CHECKING:
    from casbak.cli.context import Context
    from casbak.diff import Change
    from casbak.snapshotdiff import DiffNames, DiffStat, SnapshotDiff

__all__ = ["NOTHING", "Painter", "render_changes", "render_diff", "render_names", "render_stat"]

NOTHING = "no differences"


def use_color(ctx: Context) -> bool:
    """Whether this command's stdout gets colour (`terminal` decides for every command)."""
    return colour_on(sys.stdout, ctx.json_output)


def render_changes(changes: Iterable[Change], paint: Painter | None = None) -> list[str]:
    """One indented line per change: ``path: old -> new``, a missing side ``(absent)``."""
    paint = paint or Painter(False)

    def value(item: Any) -> str:
        return "(absent)" if item is msgspec.UNSET else msgspec.json.encode(item).decode()

    lines = []
    for change in changes:
        old, new = value(change.old), value(change.new)
        if change.old is not msgspec.UNSET:
            old = paint.old(old)
        if change.new is not msgspec.UNSET:
            new = paint.new(new)
        where = f"{change.path} (order)" if change.kind == "reordered" else change.path
        lines.append(f"    {where}: {old} -> {new}")
    return lines


def render_diff(result: SnapshotDiff, paint: Painter) -> str:
    """Added tenants (``+``), removed ones (``-``), then each changed one (``~``) and its fields."""
    lines = [paint.new(f"+ {tenant}") for tenant in result.added]
    lines += [paint.old(f"- {tenant}") for tenant in result.removed]
    for tenant in result.changed:
        lines.append(f"~ {tenant.tenant_id}")
        lines += render_changes(tenant.changes, paint)
    return "\n".join(lines) if lines else NOTHING


def _status(status: str, paint: Painter) -> str:
    return {"A": paint.new, "D": paint.old}.get(status, str)(status)


def render_names(result: DiffNames, paint: Painter) -> str:
    """``STATUS<tab>TENANT`` per line, as ``git diff --name-status`` writes paths."""
    lines = [f"{_status(t.status, paint)}\t{t.tenant_id}" for t in result.tenants]
    return "\n".join(lines) if lines else NOTHING


def render_stat(result: DiffStat, paint: Painter) -> str:
    """A row per tenant (status, id, changes, +added -removed ~changed) and a total line."""
    if not result.tenants:
        return NOTHING
    # Padded before painting: escape codes have length but no width.
    id_width = max(len(row.tenant_id) for row in result.tenants)
    sums = [str(row.added + row.removed + row.changed) for row in result.tenants]
    sum_width = max(map(len, sums))
    lines = []
    for row, changes in zip(result.tenants, sums, strict=True):
        counts = [
            paint.new(f"+{row.added}") if row.added else "",
            paint.old(f"-{row.removed}") if row.removed else "",
            f"~{row.changed}" if row.changed else "",
        ]
        lines.append(
            f"{_status(row.status, paint)} {row.tenant_id.ljust(id_width)} | "
            f"{changes.rjust(sum_width)} {' '.join(part for part in counts if part)}".rstrip()
        )
    total = result.total
    lines.append(
        f"{count(total.tenants, 'tenant')}: {paint.new(count(total.added, 'field') + ' added')}, "
        f"{paint.old(f'{total.removed} removed')}, {total.changed} changed"
    )
    return "\n".join(lines)
