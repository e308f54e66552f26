"""How the CLI renders for people: sizes, tables, progress bars, error lines.

Library functions report ``progress(done, total, bytes)`` through a callback
(verify, export, find, snapshot, gc, ...); `ProgressBar` draws it, where
`terminal` allows. Nothing is drawn until the work has run for ``DELAY``
seconds, so a quick command prints nothing extra. A callback that starts
counting again (a smaller ``done`` or another ``total``) is the next phase of
the same command (gc reads every header, then marks from the manifests that
stay): the finished bar stays, a new one begins, and it is named by the next
of the command's ``phases``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from casbak import wording

if TYPE_CHECKING:
    from casbak.cli.context import Context

Progress = Callable[[int, int, int], None]

DELAY = 0.5
"""Seconds of work before a bar appears."""
REDRAW = 0.1
"""Seconds between two redraws: a count per object would otherwise cost more than the work."""


class ProgressBar:
    """``with ProgressBar(ctx, label) as progress``: a callback, or None where no bar is wanted."""

    def __init__(self, ctx: Context, label: str, phases: Sequence[str] = ()) -> None:
        from casbak.cli.terminal import progress_on  # only commands that draw pay for it

        self._enabled = progress_on(ctx)
        self._labels = [f"{label}: {phase}" for phase in phases] or [label]
        self._phase = 0
        self._bar: Any = None
        self._done = self._total = 0
        self._started = self._drawn = 0.0

    def __enter__(self) -> Progress | None:
        self._started = time.monotonic()
        return self._update if self._enabled else None

    def _update(self, done: int, total: int, read: int) -> None:
        if total != self._total or done < self._done:
            # Counting starts again: the next phase, drawn (if at all) as a bar of its own.
            if self._total:
                self._phase += 1
            self._close()
        self._done, self._total = done, total
        now = time.monotonic()
        if total <= 0 or now - self._started < DELAY:
            return
        label = self._labels[min(self._phase, len(self._labels) - 1)]
        if self._bar is None:
            self._bar = click.progressbar(length=total, label=label, file=sys.stderr)
            self._bar.__enter__()
        elif done < total and now - self._drawn < REDRAW:
            return
        self._drawn = now
        self._bar.label = f"{label} ({human_size(read)})" if read else label
        self._bar.update(done - self._bar.pos)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def __exit__(self, *exc: object) -> None:
        self._close()


count = wording.count
"""A number and its noun (``1 tenant``, ``2 tenants``); lower layers use `casbak.wording`."""


def human_size(count: int) -> str:
    """A byte count as people read it (``12.3 KiB``)."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # pragma: no cover - the loop always returns


ID_LENGTH = 12
"""Hex digits of every id (snapshot or object) in human output; JSON keeps them whole."""


def short_id(full: str) -> str:
    """An id as human output shows it, snapshot and object alike."""
    return full[:ID_LENGTH]


def when(moment: datetime, local: bool = False) -> str:
    """A time as all human output prints it: ``YYYY-MM-DD HH:MM:SS``, in UTC unless ``local``.

    The zone is not repeated per time: tables say it in their header
    (`zone_label`), single lines through `when_zoned`.
    """
    shifted = moment.astimezone() if local else moment.astimezone(UTC)
    return f"{shifted:%Y-%m-%d %H:%M:%S}"


def when_zoned(moment: datetime, local: bool = False) -> str:
    """`when` followed by its zone (``UTC``, or the local zone's abbreviation)."""
    if not local:
        return f"{when(moment)} UTC"
    shifted = moment.astimezone()
    return f"{shifted:%Y-%m-%d %H:%M:%S} {shifted:%Z}"


def zone_label(local: bool = False) -> str:
    """The zone a table's times are in, for its header (``TIME (UTC)``)."""
    return "local" if local else "UTC"


def snapshot_header(local: bool = False) -> tuple[str, ...]:
    """The columns every snapshot table starts with (`list`, cleanup, forget)."""
    return ("ID", f"TIME ({zone_label(local)})", "OPERATION", "TARGET", "TENANTS")


def snapshot_cells(summary: Any, local: bool = False) -> tuple[str, ...]:
    """A snapshot's cells under `snapshot_header`."""
    return (
        short_id(summary.id),
        when(summary.timestamp, local),
        summary.operation,
        summary.target_id,
        str(summary.tenants),
    )


def table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as left-aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def report_error(error_type: str, message: str, code: int, json_errors: bool) -> None:
    """One error on stderr: a line for people, or a JSON document under ``--json``."""
    if json_errors:
        import msgspec

        document = {"error": error_type, "message": message, "code": code}
        click.echo(msgspec.json.encode(document).decode(), err=True)
    else:
        from casbak.cli.terminal import for_stderr

        click.echo(for_stderr(False).error(f"casbak: error: {message}"), err=True)
