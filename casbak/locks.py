"""Repository locks: shared for writers of snapshots, exclusive for gc.

A lock is a small JSON record under ``locks/``. Shared holders and the
exclusive holder each create their record first and look for the other kind
second, so of two racing parties at least one sees the other and backs off.
A record is stale when its process is gone (same host, pid not running) or when
its holder has not refreshed it for STALE_AFTER seconds; stale records are
removed by whoever finds them, so a killed process never blocks users for long.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, NamedTuple

import msgspec

from casbak.backends.base import Backend
from casbak.errors import ObjectMissing, RepositoryLocked
from casbak.hostname import host_name
from casbak.layout import LOCK_PREFIX, lock_key
from casbak.tokens import random_hex

"""Seconds an operation waits for a conflicting lock before RepositoryLocked."""
STALE_AFTER = 300.0
REFRESH_EVERY = 60.0

Kind = Literal["shared", "exclusive"]


class LockRecord(msgspec.Struct, frozen=True):
    """Who holds a lock, written into the lock object."""

    kind: str
    host: str
    pid: int
    operation: str
    created: datetime


class Holder(NamedTuple):
    """A live lock in the way: its key, its record (None if unreadable), its last refresh."""

    key: str
    record: LockRecord | None
    refreshed: float
    """The record's mtime by the backend's clock: it counts as stale STALE_AFTER later."""


def _utc(moment: datetime) -> str:
    # The one time format of human output; errors are not told about --local.
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lock:
    """A held lock; release it with `release` or by using it as a context manager."""

    def __init__(self, manager: LockManager, key: str) -> None:
        self._manager = manager
        self.key = key
        self._refreshed = time.monotonic()

    def refresh(self) -> None:
        """Keep the lock fresh during long work; cheap to call often."""
        if time.monotonic() - self._refreshed >= REFRESH_EVERY:
            self._manager.backend.touch(self.key)
            self._refreshed = time.monotonic()

    def confirm(self) -> None:
        """Raise RepositoryLocked if the record is gone: someone judged it stale and took over."""
        if self._manager.backend.stat(self.key) is None:
            raise RepositoryLocked(
                "this process's lock was removed as stale while it worked (was it paused?); "
                "nothing was committed, run the command again"
            )

    def release(self) -> None:
        """Remove the lock record; releasing twice is harmless."""
        try:
            self._manager.backend.delete(self.key)
            self._manager.backend.sync()
        except ObjectMissing:
            pass

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


class LockManager:
    """Takes and inspects locks of one repository."""

    def __init__(
        self,
        backend: Backend,
        *,
        wall_clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_acquire: Callable[[], None] | None = None,
    ) -> None:
        self.backend = backend
        self._wall_clock = wall_clock or backend.now
        self._sleep = sleep
        self._host = host_name()
        self._on_acquire = on_acquire
        """Called once a lock is held; if it raises, the lock is released and the error stands."""

    def _record(self, kind: Kind, operation: str) -> bytes:
        record = LockRecord(kind, self._host, os.getpid(), operation, datetime.now(UTC))
        return msgspec.json.encode(record)

    def shared(self, operation: str, timeout: float) -> Lock:
        """Take a shared lock (snapshots, imports); waits while gc holds the exclusive lock."""
        return self._take("shared", "exclusive", operation, timeout)

    def exclusive(self, operation: str, timeout: float) -> Lock:
        """Take the exclusive lock (gc, cleanup); waits for every other holder to finish."""
        return self._take("exclusive", "", operation, timeout)

    def _take(self, kind: Kind, conflicting: str, operation: str, timeout: float) -> Lock:
        # Create first, look second, and go ahead only when nobody in the way
        # was seen: two racing parties can then never both go ahead, because
        # whoever looks last sees the other's record. Records have unique keys,
        # so removing a stale one can never remove a live successor.
        key = lock_key(kind, random_hex(8))
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            self.backend.put(key, self._record(kind, operation))
            self.backend.sync()
            holder = self._first_live_holder(conflicting, key)
            if holder is None:
                return self._held(key)
            try:
                self.backend.delete(key)
            except ObjectMissing:
                pass  # removed by 'unlock' or by migrate --encrypt's tidying: gone either way
            delay = self._wait_or_give_up(deadline, delay, holder, timeout)

    def _held(self, key: str) -> Lock:
        lock = Lock(self, key)
        if self._on_acquire is not None:
            try:
                self._on_acquire()
            except BaseException:
                lock.release()
                raise
        return lock

    def holders(self) -> list[tuple[str, LockRecord | None, bool]]:
        """Every lock record as ``(key, record or None if unreadable, stale)``."""
        found = []
        for info in self.backend.list(LOCK_PREFIX):
            record = self._read(info.key)
            found.append((info.key, record, self._is_stale(record, info.mtime)))
        return found

    def remove(self, key: str) -> bool:
        """Remove one lock record (see ``casbak unlock``); False if it was gone already."""
        try:
            self.backend.delete(key)
        except ObjectMissing:
            return False
        self.backend.sync()
        return True

    def _first_live_holder(self, kind_prefix: str, own_key: str) -> Holder | None:
        """First live record whose name starts with ``kind_prefix``; stale ones are removed."""
        for info in self.backend.list(LOCK_PREFIX):
            name = info.key[len(LOCK_PREFIX) :]
            if info.key == own_key or not name.startswith(kind_prefix):
                continue
            record = self._read(info.key)
            if not self._is_stale(record, info.mtime):
                return Holder(info.key, record, info.mtime)
            try:
                self.backend.delete(info.key)
            except ObjectMissing:
                pass
        return None

    def _read(self, key: str) -> LockRecord | None:
        try:
            return msgspec.json.decode(self.backend.get(key), type=LockRecord)
        except (ObjectMissing, msgspec.DecodeError, msgspec.ValidationError):
            return None

    def _is_stale(self, record: LockRecord | None, mtime: float) -> bool:
        if record is not None and record.host == self._host and not _process_alive(record.pid):
            return True
        return self._wall_clock() - mtime > STALE_AFTER

    def _wait_or_give_up(
        self, deadline: float, delay: float, holder: Holder, timeout: float
    ) -> float:
        if time.monotonic() >= deadline:
            raise RepositoryLocked(self._locked_message(holder, timeout))
        # Imported only when waiting: random loads hashlib, 5 ms of every
        # command's start-up.
        import random

        self._sleep(delay * random.uniform(0.5, 1.5))
        return min(delay * 2, 0.5)

    def _locked_message(self, holder: Holder, timeout: float) -> str:
        """Whose lock is in the way, since when, when it counts as stale, and what to do."""
        record = holder.record
        if record is None:
            whose = f"an unreadable lock record {holder.key} (holder unknown)"
        else:
            whose = (
                f"{record.kind} lock of {record.operation!r} by pid {record.pid} on host "
                f"{record.host} since {_utc(record.created)}"
            )
        head = f"repository is locked: {whose}; gave up after {timeout:g}s"
        if record is not None and record.host == self._host:
            # Same host: the pid was checked, the process is running.
            return (
                f"{head}. That process is still running: its lock goes when it ends "
                "(if it hangs, stop it; 'casbak unlock' then removes its lock)"
            )
        stale_at = datetime.fromtimestamp(holder.refreshed + STALE_AFTER, UTC)
        # Another host's process cannot be checked: only its silence shows it is gone.
        return (
            f"{head}. Its process cannot be checked from this host: unless it is refreshed "
            f"(a running casbak does so every {REFRESH_EVERY:g}s), the lock counts as stale "
            f"from {_utc(stale_at)}, and any casbak command (or 'casbak unlock') then "
            "removes it; if that process is surely gone, 'casbak unlock --force' removes "
            "it now"
        )
