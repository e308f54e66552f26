"""Commands about one tenant over time: log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from casbak.cli.context import Context, pass_context
from casbak.cli.output import count


def time_callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    """A ``--since``/``--until`` value in the @TIME forms references take, without the @."""
    if value is None:
        return None
    from casbak.errors import CasbakError
    from casbak.model import utc_now
    from casbak.references import parse_time

    try:
        return parse_time(value.removeprefix("@"), utc_now(), value)
    except CasbakError as exc:
        raise click.BadParameter(str(exc)) from None


def when(moment: datetime) -> str:
    """A time as every history command prints it (UTC, to the second)."""
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def who(provenance: dict[str, str]) -> str:
    """``user@host`` of a snapshot's provenance, or an empty string before format 4."""
    user, host = provenance.get("user"), provenance.get("host")
    if user and host:
        return f"{user}@{host}"
    return user or host or ""


@click.command()
@click.argument("tenant_id", metavar="TENANT")
@click.option("-p", "--patch", is_flag=True, help="Show the fields each version changed.")
@click.option(
    "--since",
    callback=time_callback,
    help="Only versions held at or after this time (2025-11-17, 2025-11-17T10:30, -7d, ...).",
)
@click.option("--until", callback=time_callback, help="Only versions held at or before this time.")
@click.option("-n", "--max-count", "limit", type=click.IntRange(min=1), help="At most N versions.")
@pass_context
def log(
    ctx: Context,
    tenant_id: str,
    patch: bool,
    since: datetime | None,
    until: datetime | None,
    limit: int | None,
) -> None:
    """Every distinct version of TENANT, newest first.

    Each version names the snapshot that introduced it (time, operation,
    target, description, and who took it) and how many snapshots in a row
    held it. With -p, the fields changed from the version before. Times are UTC.
    """
    from casbak.cli import diffview
    from casbak.tenanthistory import tenant_log

    entries = tenant_log(ctx.open(), tenant_id, since=since, until=until, limit=limit, patch=patch)
    paint = diffview.Painter(diffview.use_color(ctx))

    def human() -> str:
        lines = []
        for entry in entries:
            first, last = entry.first, entry.last
            held = count(entry.snapshots, "snapshot")
            span = when(first.timestamp)
            if entry.snapshots > 1:
                span += f" .. {when(last.timestamp)}"
            lines.append(f"version {entry.object[:12]}  {entry.size} B  held by {held}  {span}")
            line = f"    {first.id[:12]}  {first.operation}  target {first.target_id}"
            author = who(first.provenance)
            if author:
                line += f"  by {author}"
            lines.append(line)
            if first.description:
                lines.append(f"    {first.description}")
            if entry.changes:
                lines += diffview.render_changes(entry.changes, paint)
            elif patch:
                lines.append("    (the first version stored)")
            lines.append("")
        if not entries:
            return f"no version of {tenant_id} in that time"
        return "\n".join(lines).rstrip("\n")

    ctx.emit(entries, human)
