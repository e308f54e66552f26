"""Crash at every write point of what changes the catalog: a snapshot that compacts, a
compaction alone, and a forget that rebases a delta and removes its parent.

After each crash `list` and `log` show exactly the snapshots whose manifests exist and
verify finds neither damage nor anything wrong with the catalog; running the operation
again (or gc) finishes the job and leaves no catalog file that nothing needs.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

import casbak.locks as locks_module
import casbak.repository as repository_module
from casbak.backends.local import LocalBackend
from casbak.layout import CATALOG_JOURNAL_PREFIX, CATALOG_LOCK_KEY, CATALOG_PART_PREFIX
from casbak.layout import catalog_part_key as part_key
from casbak.maintenance import collect_garbage, forget
from casbak.repository import Repository
from tests.catalogtools import assert_agrees, snap
from tests.conftest import FakeClock
from tests.faulty import Crash, injected

WIDE = 40
"""Tenants per snapshot of target "all": enough for its snapshots to be stored as deltas."""
WATCHED = {"t0", "t1", "t2", "solo", "new"}


def wide(changed: dict[int, int]) -> list[dict[str, object]]:
    return [{"id": f"t{i}", "v": changed.get(i, 0)} for i in range(WIDE)]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Three snapshots of "all", each a delta of the one before, folded into parts; then
    two of "solo" waiting in the journal."""
    path = tmp_path_factory.mktemp("catalog-crash") / "repo"
    repo = Repository.init(LocalBackend(path))
    clock = FakeClock()
    ids = [
        snap(repo, clock, *wide({}), target="all"),
        snap(repo, clock, *wide({0: 1}), target="all"),
        snap(repo, clock, *wide({0: 1, 1: 1}), target="all"),
    ]
    assert repo.catalog.compact()
    ids += [snap(repo, clock, {"id": "solo", "v": n}, target="solo") for n in range(2)]
    headers = {s.id: s.header for s in repo.snapshots()}
    assert headers[ids[2]].parent == ids[1] and headers[ids[1]].parent == ids[0]
    return path, ids


def op_snapshot(repo: Repository, ids: list[str]) -> None:
    clock = FakeClock()
    clock.advance(days=30)
    snap(repo, clock, {"id": "new", "v": 1}, {"id": "solo", "v": 9}, target="solo")


def op_compaction(repo: Repository, ids: list[str]) -> None:
    repo.catalog.compact()


def op_forget(repo: Repository, ids: list[str]) -> None:
    forget(repo, [ids[1]], grace=timedelta(0))


OPERATIONS: dict[str, Callable[[Repository, list[str]], None]] = {
    "snapshot": op_snapshot,
    "compaction": op_compaction,
    "forget": op_forget,
}


def fresh_copy(template: Path, target: Path) -> Repository:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(template, target)
    return Repository.open(LocalBackend(target))


def assert_tidy(repo: Repository) -> None:
    """Nothing in catalog/ that the head does not need."""
    head = repo.catalog.head()
    assert head is not None
    named = {part_key(name) for name in [*head.chunks, *head.buckets]}
    assert set(repo.backend.list_names(CATALOG_PART_PREFIX)) == named
    journal = [int(k[-12:]) for k in repo.backend.list_names(CATALOG_JOURNAL_PREFIX)]
    assert all(seq > head.journal for seq in journal)
    assert repo.backend.stat(CATALOG_LOCK_KEY) is None


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_crash_at_every_write_point_of_the_catalog(
    template: tuple[Path, list[str]],
    tmp_path: Path,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, ids = template
    # The snapshot taken here is the third waiting in the journal: it compacts.
    monkeypatch.setattr(repository_module, "COMPACT_AFTER", 3)
    monkeypatch.setattr(locks_module, "_process_alive", lambda pid: False)
    repo = fresh_copy(path, tmp_path / "count")
    with injected() as proxy:
        OPERATIONS[name](repo, ids)
    total = proxy.count
    assert total > 5
    done = assert_agrees(repo, tenants=WATCHED)
    for point in range(1, total + 1):
        repo = fresh_copy(path, tmp_path / "run")
        with pytest.raises(Crash), injected(fail_at=point):
            OPERATIONS[name](repo, ids)
        repo = Repository.open(LocalBackend(tmp_path / "run"))
        listed = assert_agrees(repo, tenants=WATCHED)
        assert set(ids) - {ids[1]} <= set(listed) <= set(ids) | set(done), point
        if name != "forget" or ids[1] in listed:
            OPERATIONS[name](repo, ids)
        collect_garbage(repo, grace=timedelta(0))  # clears what a crashed compactor left
        assert assert_agrees(repo, tenants=WATCHED) == done, point
        assert_tidy(repo)
