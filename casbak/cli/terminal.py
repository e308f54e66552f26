"""Whether output is dressed for a person at a terminal: colour, and progress on stderr.

The one place that decides, so every command follows the same rules. Colour
goes only to a stream that is a terminal, never under ``--json``, and never
when ``NO_COLOR`` is set (to any value, even an empty one: whoever set it
asked for none). Progress goes to stderr only when
stderr is a terminal, and neither with ``--json`` nor ``--quiet``: a pipe, a
log file or a script reading the output gets none of it.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, TextIO

import click

if TYPE_CHECKING:
    from casbak.cli.context import Context


def colour_on(stream: TextIO, json_output: bool) -> bool:
    """Whether text written to ``stream`` may carry colour."""
    return not json_output and "NO_COLOR" not in os.environ and _is_terminal(stream)


def progress_on(ctx: Context) -> bool:
    """Whether this command draws progress on stderr."""
    return not ctx.json_output and not ctx.quiet and _is_terminal(sys.stderr)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream is no terminal
        return False


class Painter:
    """Colours text by what it means, or leaves it plain when colour is off."""

    def __init__(self, colour: bool) -> None:
        self.color = colour

    def _style(self, text: str, fg: str, bold: bool | None = None) -> str:
        # bold=None, not False: False writes a "normal intensity" code of its own.
        return click.style(text, fg=fg, bold=bold) if self.color else text

    def old(self, text: str) -> str:
        """Removed, or the old value: red."""
        return self._style(text, "red")

    def new(self, text: str) -> str:
        """Added, or the new value: green."""
        return self._style(text, "green")

    def error(self, text: str) -> str:
        """An error or damage: bold red."""
        return self._style(text, "red", bold=True)

    def warning(self, text: str) -> str:
        """Something to look at that harms nothing yet: yellow."""
        return self._style(text, "yellow")


def for_stdout(ctx: Context) -> Painter:
    """The painter for a command's results on stdout."""
    return Painter(colour_on(sys.stdout, ctx.json_output))


def for_stderr(json_output: bool) -> Painter:
    """The painter for errors and warnings on stderr."""
    return Painter(colour_on(sys.stderr, json_output))
