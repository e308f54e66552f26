"""Commands about tenants over time: log (one tenant) and find (versions that match)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import click

from casbak.cli import complete
from casbak.cli.context import Context, pass_context
from casbak.cli.output import (
    ProgressBar,
    count,
    human_size,
    short_id,
    table,
    when,
    when_zoned,
    zone_label,
)
from casbak.cli.params import DRY_RUN_SHORT, RenamedOption


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


def time_window(command: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--since``/``--until`` options that `log` and `find` share."""
    command = click.option(
        "--until", callback=time_callback, help="Only versions held at or before this time."
    )(command)
    return click.option(
        "--since",
        callback=time_callback,
        help="Only versions held at or after this time (2025-11-17, 2025-11-17T10:30, -7d, ...).",
    )(command)


def who(provenance: dict[str, str]) -> str:
    """``user@host`` of a snapshot's provenance, or an empty string before format 4."""
    user, host = provenance.get("user"), provenance.get("host")
    if user and host:
        return f"{user}@{host}"
    return user or host or ""


@click.command()
@click.argument("tenant_id", metavar="TENANT", shell_complete=complete.tenants)
@click.option("-p", "--patch", is_flag=True, help="Show the fields each version changed.")
@time_window
@click.option(
    "--max-count",
    "limit",
    cls=RenamedOption,
    old=["-n"],
    why=DRY_RUN_SHORT,
    type=click.IntRange(min=1),
    help="At most N versions.",
)
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
    held it. With -p, the fields changed from the version before. Times are UTC
    (--local: local).
    """
    from casbak.cli import diffview
    from casbak.tenanthistory import tenant_log

    entries = tenant_log(ctx.open(), tenant_id, since=since, until=until, limit=limit, patch=patch)
    paint = diffview.Painter(diffview.use_color(ctx))
    local = ctx.local_time

    def human() -> str:
        lines = []
        for entry in entries:
            first, last = entry.first, entry.last
            held = count(entry.snapshots, "snapshot")
            span = when_zoned(first.timestamp, local)
            if entry.snapshots > 1:
                span = f"{when(first.timestamp, local)} .. {when_zoned(last.timestamp, local)}"
            size = human_size(entry.size)
            lines.append(f"version {short_id(entry.object)}  {size}  held by {held}  {span}")
            line = f"    {short_id(first.id)}  {first.operation}  target {first.target_id}"
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


@click.command()
@click.option(
    "--tenant",
    "tenant_ids",
    multiple=True,
    metavar="ID",
    shell_complete=complete.tenants,
    help="Only this tenant (repeatable).",
)
@click.option(
    "--where",
    "wheres",
    multiple=True,
    metavar="QUERY",
    help="Only versions whose document this query matches (repeatable: all must match).",
)
@click.option("--current", is_flag=True, help="Only each tenant's newest version.")
@time_window
@pass_context
def find(
    ctx: Context,
    tenant_ids: tuple[str, ...],
    wheres: tuple[str, ...],
    current: bool,
    since: datetime | None,
    until: datetime | None,
) -> None:
    """Versions of tenants, across every snapshot, that match; give --tenant or --where.

    One row per version (a distinct document) of a tenant: how many
    snapshots held it and the first and last of them. A version held again
    later (A, then B, then A again) is one row spanning all its snapshots;
    'casbak log' lists such runs separately. Tenants by id, each newest
    first. With --current, only the version of the newest snapshot holding
    each tenant (within --since/--until). Times are UTC (--local: local). A version whose
    document cannot be read is left out with a warning, and the exit code is 3.

    \b
    casbak find --where '$.enforceSSO == true'
    casbak find --tenant acme-corp
    casbak find --where '$.name ~ "(?i)acme"' --current --since -30d
    """
    from casbak.errors import DamageFound
    from casbak.findtenants import find_versions
    from casbak.query import compile_query

    if not tenant_ids and not wheres:
        raise click.UsageError("find needs --tenant ID or --where QUERY (or both)")
    # Every query is checked before the repository is opened: a typo touches nothing.
    queries = [compile_query(text) for text in wheres]
    repo = ctx.open()
    with ProgressBar(ctx, "reading documents") as bar:
        result = find_versions(
            repo,
            tenant_ids=tenant_ids,
            queries=queries,
            current=current,
            since=since,
            until=until,
            progress=_when_long(bar),
        )
    for warning in result.warnings:
        if ctx.json_output:
            import msgspec

            click.echo(msgspec.json.encode({"warning": warning}).decode(), err=True)
        else:
            click.echo(f"warning: {warning}", err=True)
    found = result.versions

    def human() -> str:
        zone = zone_label(ctx.local_time)
        rows = [("TENANT", "VERSION", "SIZE", "SNAPSHOTS", f"FIRST ({zone})", f"LAST ({zone})")]
        rows += [
            (
                entry.tenant_id,
                short_id(entry.object),
                human_size(entry.size),
                str(entry.snapshots),
                f"{when(entry.first.timestamp, ctx.local_time)} {short_id(entry.first.id)}",
                f"{when(entry.last.timestamp, ctx.local_time)} {short_id(entry.last.id)}",
            )
            for entry in found
        ]
        return table(rows) if found else "no version matches"

    ctx.emit(found, human)
    if result.warnings:
        raise DamageFound(f"{count(len(result.warnings), 'version')} could not be read")


LONG_READ = 256
"""Documents to read from which find shows a progress bar (fewer take no time)."""


def _when_long(
    bar: Callable[[int, int, int], None] | None,
) -> Callable[[int, int, int], None] | None:
    if bar is None:
        return None

    def progress(done: int, total: int, read: int) -> None:
        if total >= LONG_READ:
            bar(done, total, read)

    return progress
