"""Progress bars on stderr for work that takes a while; drawn only where `terminal` allows.

Library functions report ``progress(done, total, bytes)`` through a callback
(verify, export, find, snapshot, gc, ...); the bar here draws it. Nothing is
drawn until the work has run for ``DELAY`` seconds, so a quick command prints
nothing extra. A callback that starts counting again (a smaller ``done`` or
another ``total``) is the next phase of the same command (gc reads every
header, then marks from the manifests that stay): the finished bar stays, a
new one begins, and it is named by the next of the command's ``phases``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
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

    def __init__(self, ctx: Context, label: str, phases: Sequence[str] = ()) -> None:
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
