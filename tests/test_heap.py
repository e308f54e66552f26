"""The cycle collector is paused for bulk commands and always restored."""

from __future__ import annotations

import gc

import pytest

from casbak.heap import collector_paused


def test_paused_inside_and_restored_after() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_restored_when_the_block_fails() -> None:
    with pytest.raises(ValueError), collector_paused():
        raise ValueError("boom")
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_gc_runs_with_the_collector_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    from casbak import maintenance
    from casbak.backends.memory import MemoryBackend
    from casbak.repository import Repository
    from casbak.retention import RetentionPolicy

    seen: list[bool] = []
    real = maintenance.StoredSnapshots

    def watching(*args: object, **kwargs: object) -> object:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(maintenance, "StoredSnapshots", watching)
    repo = Repository.init(MemoryBackend())
    maintenance.collect_garbage(repo)
    maintenance.cleanup(repo, RetentionPolicy(keep_last=1))
    assert seen == [False, False]
    assert gc.isenabled()
