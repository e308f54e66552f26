"""Progress bars on stderr for work that takes a while; drawn only where `terminal` allows.

Library functions report ``progress(done, total, bytes)`` through a callback
(verify, export, find, snapshot, gc, ...); the bar here draws it. Nothing is
drawn until the work has run for ``DELAY`` seconds, so a quick command prints
nothing extra. A callback that starts counting again (a smaller ``done`` or
another ``total``) is the next phase of the same command: the finished bar
stays and a new one begins.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from casbak.cli.output import human_size
from casbak.cli.terminal import progress_on

if TYPE_CHECKING:
    from casbak.cli.context import Context

Progress = Callable[[int, int, int], None]

DELAY = 0.5
"""Seconds of work before a bar appears."""
REDRAW = 0.1
"""Seconds between two redraws: a count per object would otherwise cost more than the work."""


class ProgressBar:
    """``with ProgressBar(ctx, label) as progress``: a callback, or None where no bar is wanted."""

    def __init__(self, ctx: Context, label: str) -> None:
        self._enabled = progress_on(ctx)
        self._label = label
        self._bar: Any = None
        self._total = 0
        self._started = self._drawn = 0.0

    def __enter__(self) -> Progress | None:
        self._started = time.monotonic()
        return self._update if self._enabled else None

    def _update(self, done: int, total: int, read: int) -> None:
        now = time.monotonic()
        if total <= 0 or now - self._started < DELAY:
            return
        if self._bar is not None and (total != self._total or done < self._bar.pos):
            self._close()
        if self._bar is None:
            self._bar = click.progressbar(length=total, label=self._label, file=sys.stderr)
            self._bar.__enter__()
            self._total = total
        elif done < total and now - self._drawn < REDRAW:
            return
        self._drawn = now
        self._bar.label = f"{self._label} ({human_size(read)})" if read else self._label
        self._bar.update(done - self._bar.pos)

    def _close(self) -> None:
        self._bar.__exit__(None, None, None)
        self._bar = None

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._close()
