"""Option vocabulary every command shares: durations, renamed options, contradictions.

One meaning per short option across all commands (README, Commands):
``-o`` is ``--output``, ``-n`` is ``--dry-run``, ``-t`` is ``--target``,
``-r`` ``--recursive``, ``-d`` ``--description``, ``-p`` ``--patch``,
``-y`` ``--yes``, ``-q`` ``--quiet``, ``-h`` ``--help``. Spellings that meant
something else before (``-o`` for ``--operation``, ``-n`` for
``--max-count``, ``--out``) still work for one release, hidden from help and
warned about when used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from casbak.errors import CasbakError, UsageError

OUTPUT_SHORT = "-o is --output in every command"
DRY_RUN_SHORT = "-n is --dry-run in every command"


if TYPE_CHECKING:
    _DurationBase = click.ParamType[timedelta]
else:  # click before 8.5 has no type parameter on ParamType
    _DurationBase = click.ParamType


class Duration(_DurationBase):
    """A duration in casbak's one syntax (see `casbak.retention.parse_duration`).

    ``bare_seconds`` also takes a plain number as seconds, for options that
    took float seconds before durations (``--lock-timeout 0.5``); elsewhere a
    plain number is refused, since ``--keep-within 30`` is more likely meant as
    days than as seconds.
    """

    name = "duration"

    def __init__(self, *, bare_seconds: bool = False) -> None:
        self.bare_seconds = bare_seconds

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        if self.bare_seconds:
            seconds = _plain_seconds(str(value))
            if seconds is not None:
                return timedelta(seconds=seconds)
        from casbak.retention import parse_duration

        try:
            return parse_duration(str(value))
        except CasbakError as exc:
            self.fail(str(exc), param, ctx)


def _plain_seconds(text: str) -> float | None:
    try:
        seconds = float(text)
    except ValueError:
        return None
    # nan and inf parse as floats, and a negative wait means nothing.
    return seconds if 0 <= seconds < 1e9 else None


def seconds_callback(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    """A `Duration` as the float seconds the library's lock waits take."""
    return value.total_seconds() if isinstance(value, timedelta) else value


def warn(ctx: click.Context, message: str) -> None:
    """A warning on stderr: a line for people, a JSON line under ``--json``."""
    from casbak.cli.context import Context

    state = ctx.find_object(Context)
    if state is not None and state.json_output:
        import msgspec

        click.echo(msgspec.json.encode({"warning": message}).decode(), err=True)
    else:
        click.echo(f"casbak: warning: {message}", err=True)


class RenamedOption(click.Option):
    """An option that also answers to its old spellings, for one release.

    The old spellings are parsed into a destination of their own, so the
    command sees one value and help shows only the new names; using an old one
    prints a warning naming the new one, and giving both is a usage error.
    """

    def __init__(self, *args: Any, old: Sequence[str] = (), why: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.old_opts = list(old)
        self.why = why

    @property
    def _old_dest(self) -> str:
        return f"{self.name}:old"

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        if self.old_opts:
            parser.add_option(
                obj=self, opts=self.old_opts, dest=self._old_dest, action="store", nargs=1
            )

    def consume_value(self, ctx: click.Context, opts: Mapping[str, Any]) -> Any:
        old = opts.get(self._old_dest)
        if isinstance(old, str):
            new = "/".join(self.opts)
            spelling = "/".join(self.old_opts)
            if isinstance(opts.get(str(self.name)), str):
                refuse_together(spelling, new, "they are one option")
            if not ctx.resilient_parsing:
                why = f" ({self.why})" if self.why else ""
                warn(ctx, f"{spelling} for {new} is kept for one release{why}: use {new}")
            opts = {**opts, str(self.name): old}
        return super().consume_value(ctx, opts)


def refuse_together(first: str, second: str, why: str) -> None:
    """Two arguments that contradict each other: one line naming both, exit 2."""
    raise UsageError(f"{first} and {second} contradict each other: {why}")
