"""The report command: one self-contained HTML file about the repository."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from casbak.cli.context import Context, pass_context
from casbak.cli.history import time_callback
from casbak.cli.output import count, human_size

DEFAULT_OUTPUT = "casbak-report.html"


@click.command()
@click.option(
    "-o",
    "--output",
    default=DEFAULT_OUTPUT,
    show_default=True,
    metavar="FILE",
    help="Where to write the report; - for stdout.",
)
@click.option(
    "--tenant",
    "tenant_ids",
    multiple=True,
    metavar="ID",
    help="Show this tenant's whole history (repeatable); else the busiest tenants.",
)
@click.option(
    "--since",
    callback=time_callback,
    help="Only snapshots and versions at or after this time (2025-11-17, -7d, ...).",
)
@click.option("--until", callback=time_callback, help="Only those at or before this time.")
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Tenant sections when no --tenant is given: the N busiest.",
)
@click.option(
    "--verify",
    "verify_file",
    metavar="FILE",
    help="Show the verify state from a 'casbak verify --json' result saved in FILE.",
)
@pass_context
def report(
    ctx: Context,
    output: str,
    tenant_ids: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    top: int,
    verify_file: str | None,
) -> None:
    """Write an HTML report: timeline, growth, churn, tenant history, retention preview.

    The file is self-contained (no script, nothing loaded from the network) and
    can be opened from disk or attached to a ticket. It holds tenant values:
    it is written readable by you only. Reading the repository changes nothing.
    Times are UTC.
    """
    from casbak.report import gather, read_verify, write_report
    from casbak.reporthtml import render

    verify = read_verify(verify_file) if verify_file is not None else None
    data = gather(
        ctx.open(), tenant_ids=tenant_ids, since=since, until=until, top=top, verify=verify
    )
    if output == "-":
        sys.stdout.write(render(data))
        return
    result = write_report(Path(output), data)
    ctx.emit(
        result,
        lambda: (
            f"wrote {result.path} ({human_size(result.bytes)}, "
            f"{count(result.snapshots, 'snapshot')}, "
            f"{count(len(result.tenants_shown), 'tenant section')})"
        ),
    )
