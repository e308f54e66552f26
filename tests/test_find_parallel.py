"""find over a large local history reads and judges documents in several processes."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from casbak import findtenants
from casbak.backends.local import LocalBackend
from casbak.errors import BackendError
from casbak.findtenants import FindResult, find_versions
from casbak.query import compile_query
from casbak.repository import Repository
from tests.packed import flip_inside
from tests.test_find import Story

QUERY = [compile_query("$.v >= 1")]


@pytest.fixture
def history(tmp_path: Path) -> Story:
    story = Story(tmp_path / "repo")
    chance = random.Random(11)
    for number in range(40):
        tenants = [{"id": f"t{n}", "v": chance.randrange(4), "n": number} for n in range(6)]
        story.take(*tenants, target=f"target{number % 3}")
    damaged = story.repo.resolve("latest").manifest.entries["t2"].object
    flip_inside(story.path, damaged)
    return story


def _find(story: Story, judges: int, monkeypatch: pytest.MonkeyPatch, **options: Any) -> FindResult:
    monkeypatch.setattr(findtenants, "READ_BATCH", 7)
    monkeypatch.setattr(findtenants, "_judges_for", lambda repo, objects: judges)
    return find_versions(Repository.open(LocalBackend(story.path)), queries=QUERY, **options)


def test_several_processes_find_what_one_finds(
    history: Story, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    alone = _find(history, 1, monkeypatch)
    pids = tmp_path / "pids"
    pids.mkdir()
    real = findtenants._judged

    def judged(*args: Any) -> Any:
        (pids / str(os.getpid())).touch()
        return real(*args)

    monkeypatch.setattr(findtenants, "_judged", judged)
    seen: list[tuple[int, int, int]] = []
    apart = _find(history, 2, monkeypatch, progress=lambda *done: seen.append(done))
    assert apart == alone
    assert len(alone.versions) > 40 and len(alone.warnings) == 1
    assert {path.name for path in pids.iterdir()} - {str(os.getpid())}, "no child judged"
    assert seen[-1][:2] == (seen[-1][1], seen[-1][1])
    assert seen[-1][2] > 0


def test_a_storage_failure_in_a_judging_process_stops_the_search(
    history: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(repo: Repository, batch: list[bytes], queries: Any) -> Any:
        raise BackendError("cannot read packs/ab/cd: Input/output error")

    monkeypatch.setattr(findtenants, "_judged", failing)
    with pytest.raises(BackendError, match="Input/output error"):
        _find(history, 2, monkeypatch)


def test_only_a_large_local_history_is_judged_apart(
    history: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = history.repo
    assert findtenants._judges_for(repo, findtenants.PARALLEL_FROM - 1) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert findtenants._judges_for(repo, findtenants.PARALLEL_FROM) == findtenants.MAX_JUDGES
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert findtenants._judges_for(repo, findtenants.PARALLEL_FROM) == 1
    monkeypatch.setattr(repo.backend, "concurrency", 16, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert findtenants._judges_for(repo, findtenants.PARALLEL_FROM) == 1
