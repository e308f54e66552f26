"""How the CLI renders for people: sizes, tables, error lines (progress bars: `progress`)."""

from __future__ import annotations

from collections.abc import Sequence

import click


def count(number: int, noun: str, plural: str | None = None) -> str:
    """A number and its noun, singular or plural as English wants (``1 tenant``, ``2 tenants``)."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def human_size(count: int) -> str:
    """A byte count as people read it (``12.3 KiB``)."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # pragma: no cover - the loop always returns


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
