"""Fault injection for the local backend: crash or fail at the k-th write point.

The local backend's ``os`` is replaced by a proxy that counts every call that
changes the disk (write, fsync, rename, link, unlink, mkdir, utime, create)
and, at the chosen one, either raises `Crash` (the process dies there:
every later change fails too, so no cleanup code can tidy up) or raises an
OSError such as ENOSPC, EACCES or EROFS (the call fails and the program goes on).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import casbak.backends.local as local_module
import casbak.outfiles as outfiles_module

MUTATING = {
    "write",
    "fsync",
    "replace",
    "rename",
    "link",
    "unlink",
    "mkdir",
    "rmdir",
    "utime",
    "chmod",
    "fchmod",
}


class Crash(BaseException):
    """The simulated death of the process at a write point."""


class InjectingOs:
    def __init__(self, fail_at: int | None, error: int | None) -> None:
        self.fail_at = fail_at
        self.error = error
        self.count = 0
        self.dead = False
        self.calls: list[str] = []
        self._counting = threading.Lock()
        """Writes run in threads (catalog parts, removals): each write point gets one number."""

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name == "open":
            return self._wrap("open", real, creating=True)
        if name in MUTATING:
            return self._wrap(name, real, creating=False)
        return real

    def _wrap(self, name: str, real: Any, creating: bool) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if creating and not (len(args) > 1 and args[1] & os.O_CREAT):
                return real(*args, **kwargs)
            with self._counting:
                if self.dead:
                    raise Crash(f"dead before {name}")
                self.count += 1
                number = self.count
                self.calls.append(name)
                if number == self.fail_at and self.error is None:
                    self.dead = True
            if number == self.fail_at:
                if self.error is None:
                    raise Crash(f"crash at write point {number} ({name})")
                raise OSError(self.error, os.strerror(self.error))
            return real(*args, **kwargs)

        return call


@contextmanager
def injected(fail_at: int | None = None, error: int | None = None) -> Iterator[InjectingOs]:
    """Count write points, crashing (error=None) or failing with ``error`` at ``fail_at``."""
    proxy = InjectingOs(fail_at, error)
    saved = local_module.os
    # Both modules that touch the disk for a repository see the same proxy.
    local_module.os = proxy  # type: ignore[assignment]
    outfiles_module.os = proxy  # type: ignore[assignment]
    try:
        yield proxy
    finally:
        local_module.os = saved
        outfiles_module.os = saved


ERRORS = {"ENOSPC": errno.ENOSPC, "EACCES": errno.EACCES, "EROFS": errno.EROFS, "EIO": errno.EIO}
