from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import msgspec
import pytest

from casbak.backends.memory import MemoryBackend
from casbak.errors import RepositoryLocked
from casbak.locks import LOCK_PREFIX, STALE_AFTER, LockManager, LockRecord


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


def manager(backend: MemoryBackend, now: float | None = None) -> LockManager:
    if now is None:
        return LockManager(backend, sleep=lambda _s: None)
    return LockManager(backend, wall_clock=lambda: now, sleep=lambda _s: None)


def test_shared_locks_coexist(backend: MemoryBackend) -> None:
    one = manager(backend).shared("snapshot", 0)
    two = manager(backend).shared("snapshot", 0)
    assert len(list(backend.list(LOCK_PREFIX))) == 2
    one.release()
    two.release()
    two.release()
    assert list(backend.list(LOCK_PREFIX)) == []


def test_exclusive_waits_for_shared_then_gives_up_with_holder(backend: MemoryBackend) -> None:
    with manager(backend).shared("snapshot", 0), pytest.raises(RepositoryLocked) as caught:
        manager(backend).exclusive("gc", 0.05)
    message = str(caught.value)
    assert "'snapshot'" in message
    assert f"pid {os.getpid()}" in message
    assert "since" in message
    assert caught.value.exit_code == 11
    assert list(backend.list(LOCK_PREFIX)) == []


def test_shared_waits_for_exclusive(backend: MemoryBackend) -> None:
    with manager(backend).exclusive("gc", 0):
        with pytest.raises(RepositoryLocked, match="'gc'"):
            manager(backend).shared("snapshot", 0.05)
        with pytest.raises(RepositoryLocked):
            manager(backend).exclusive("gc", 0.05)
    with manager(backend).shared("snapshot", 0):
        pass


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_lock_of_dead_process_on_this_host_is_removed(backend: MemoryBackend) -> None:
    import socket

    record = LockRecord("shared", socket.gethostname(), _dead_pid(), "snapshot", datetime.now(UTC))
    backend.put(f"{LOCK_PREFIX}shared-dead.json", msgspec.json.encode(record))
    with manager(backend).exclusive("gc", 0):
        pass
    assert list(backend.list(LOCK_PREFIX)) == []


def test_lock_of_other_host_is_stale_only_after_age(backend: MemoryBackend) -> None:
    record = LockRecord("exclusive", "elsewhere", 1, "gc", datetime.now(UTC))
    backend.put(f"{LOCK_PREFIX}exclusive-other.json", msgspec.json.encode(record))
    mtime = backend.stat(f"{LOCK_PREFIX}exclusive-other.json").mtime  # type: ignore[union-attr]
    with pytest.raises(RepositoryLocked, match="host elsewhere"):
        manager(backend, now=mtime + STALE_AFTER - 1).shared("snapshot", 0)
    with manager(backend, now=mtime + STALE_AFTER + 1).shared("snapshot", 0):
        pass


def test_unreadable_lock_counts_as_held_until_stale(backend: MemoryBackend) -> None:
    backend.put(f"{LOCK_PREFIX}shared-garbage.json", b"not json")
    with pytest.raises(RepositoryLocked, match="unknown"):
        manager(backend).exclusive("gc", 0)
    holders = manager(backend).holders()
    assert holders[0][1] is None
    assert holders[0][2] is False


def test_refresh_touches_only_when_due(
    backend: MemoryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = manager(backend).shared("snapshot", 0)
    before = backend.stat(lock.key).mtime  # type: ignore[union-attr]
    lock.refresh()
    assert backend.stat(lock.key).mtime == before  # type: ignore[union-attr]
    import casbak.locks as locks_module

    monkeypatch.setattr(locks_module, "REFRESH_EVERY", 0.0)
    lock.refresh()
    assert backend.stat(lock.key).mtime >= before  # type: ignore[union-attr]
