"""verify (and other readers) beside cleanup and gc, made deterministic: they act at chosen
moments of the reads.

Readers take no lock, so a cleanup may remove a snapshot (and gc its objects) after a reader
listed it, rewrite a delta manifest and remove its parent, and gc may move an object to a new
pack while verify reads it. verify must not call that damage, and must still report damage
that is really there; the others must not fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from casbak.backends.local import LocalBackend
from casbak.findings import VerifyReport
from casbak.layout import pack_key
from casbak.maintenance import cleanup, collect_garbage
from casbak.repository import Repository
from casbak.retention import RetentionPolicy
from casbak.service import restore_documents, take_snapshot
from casbak.sources import documents_from_values
from casbak.verify import verify_repository
from tests.conftest import FakeClock


class Overtaken(LocalBackend):
    """A real local repository on which others act at chosen moments of one reader's work.

    A moment is ``"listed <prefix>"`` (after a listing of names), ``"reading <key>"``
    (before a read) or ``"read <key>"`` (after it). Each planned action runs once, at the
    first moment its test accepts, through a backend of its own, as another process would.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.plans: list[tuple[Callable[[str], bool], Callable[[], None]]] = []

    def at(self, moment: Callable[[str], bool], action: Callable[[], None]) -> None:
        self.plans.append((moment, action))

    def _moment(self, moment: str) -> None:
        for plan in self.plans:
            if plan[0](moment):
                self.plans.remove(plan)
                plan[1]()
                return

    def get(self, key: str) -> bytes:
        self._moment(f"reading {key}")
        data = super().get(key)
        self._moment(f"read {key}")
        return data

    def list_names(self, prefix: str) -> Iterator[str]:
        names = list(super().list_names(prefix))
        self._moment(f"listed {prefix}")
        yield from names


def other(path: Path) -> Repository:
    """The repository as a concurrent process sees it."""
    return Repository.open(LocalBackend(path))


def snap(repo: Repository, clock: FakeClock, target: str, *tenants: dict[str, Any]) -> str:
    clock.advance(hours=1)
    docs = documents_from_values(list(tenants), "t")
    return take_snapshot(repo, docs, target_id=target, clock=clock).snapshot.id


def damage(report: VerifyReport) -> list[tuple[str, list[str], list[str]]]:
    return [(f.kind, f.tenants, f.snapshots) for f in report.findings if f.severity == "damage"]


def moving_on_from(key: str) -> Callable[[str], bool]:
    """The moment verify, having read ``key``, first reads something else."""
    seen = False

    def moment(event: str) -> bool:
        nonlocal seen
        seen = seen or event == f"read {key}"
        return seen and event.startswith("reading ") and event != f"reading {key}"

    return moment


def remove_snapshot(path: Path, snapshot_id: str) -> Callable[[], None]:
    """A cleanup of one snapshot followed by gc, with no grace: its own objects go."""

    def act() -> None:
        repo = other(path)
        repo.delete_snapshot(repo.resolve(snapshot_id))
        collect_garbage(repo, grace=timedelta(0))

    return act


@pytest.fixture
def two_snapshots(tmp_path: Path) -> tuple[Path, str, str]:
    """An old and a new snapshot of one target; each holds a document of its own."""
    path = tmp_path / "repo"
    repo = Repository.init(LocalBackend(path))
    clock = FakeClock()
    old = snap(repo, clock, "a", {"id": "a", "v": 0}, {"id": "own-old", "pad": "o" * 90})
    new = snap(repo, clock, "a", {"id": "a", "v": 1}, {"id": "own-new", "pad": "n" * 90})
    return path, old, new


def object_of(path: Path, snapshot_id: str, tenant: str) -> str:
    return other(path).resolve(snapshot_id).manifest.entries[tenant].object


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
def test_a_snapshot_removed_after_verify_read_it_is_not_damage(
    two_snapshots: tuple[Path, str, str], quick: bool
) -> None:
    path, old, _ = two_snapshots
    own = object_of(path, old, "own-old")
    backend = Overtaken(path)
    repo = Repository.open(backend)
    old_key = repo.resolve(old).key
    backend.at(moving_on_from(old_key), remove_snapshot(path, old))
    report = verify_repository(repo, quick=quick)
    assert backend.plans == [], "the cleanup did not run"
    assert not other(path).objects.contains(own)  # gc took it while verify worked
    assert report.ok, damage(report)


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
def test_real_damage_is_still_reported_while_a_snapshot_is_removed(
    two_snapshots: tuple[Path, str, str], quick: bool
) -> None:
    path, old, new = two_snapshots
    lost = object_of(path, new, "own-new")
    (path / pack_key(other(path).objects.index()[lost].pack)).unlink()
    backend = Overtaken(path)
    repo = Repository.open(backend)
    old_key = repo.resolve(old).key
    backend.at(moving_on_from(old_key), remove_snapshot(path, old))
    report = verify_repository(repo, quick=quick)
    assert backend.plans == []
    found = damage(report)
    assert ("missing-object", ["own-new"], [new]) in found
    assert all(victims == [new] for _, _, victims in found), found


def test_an_object_gc_moves_twice_while_verify_reads_it_is_not_damage(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    repo = Repository.init(LocalBackend(path))
    clock = FakeClock()
    kept, first, second = (
        {"id": "kept", "pad": "k" * 90},
        {"id": "first", "pad": "f" * 90},
        {"id": "second", "pad": "s" * 90},
    )
    one = snap(repo, clock, "one", kept, first, second)  # one pack holds all three
    snap(repo, clock, "two", kept)
    three = snap(repo, clock, "three", kept, second)
    backend = Overtaken(path)
    reader = Repository.open(backend)
    # The first gc rewrites the pack without "first", the second without "second":
    # "kept" moves twice, once before verify reads its pack and once before the retry.
    backend.at(lambda moment: moment.startswith("reading packs/"), remove_snapshot(path, one))
    backend.at(lambda moment: moment.startswith("reading packs/"), remove_snapshot(path, three))
    report = verify_repository(reader)
    assert backend.plans == []
    assert report.ok, damage(report)


def test_a_delta_whose_parent_a_cleanup_removes_during_verify_is_read_again(
    tmp_path: Path,
) -> None:
    path, ids = _delta_chain(tmp_path)
    backend = Overtaken(path)
    backend.at(
        lambda moment: moment == "listed manifests/",
        lambda: cleanup(other(path), RetentionPolicy(keep_last=1), grace=timedelta(0)),
    )
    report = verify_repository(Repository.open(backend))
    assert backend.plans == []
    assert report.ok, damage(report)
    assert report.snapshots_checked == 1
    assert [s.id for s in other(path).snapshots()] == [ids[2]]  # rewritten whole


def test_a_delta_whose_parent_vanishes_during_verify_is_damage(tmp_path: Path) -> None:
    path, ids = _delta_chain(tmp_path)
    parent_key = other(path).resolve(ids[1]).key
    backend = Overtaken(path)
    # Deleted by hand, not by a cleanup: nothing rewrote the delta that needs it.
    backend.at(lambda moment: moment == "listed manifests/", (path / parent_key).unlink)
    report = verify_repository(Repository.open(backend))
    assert backend.plans == []
    assert [(kind, victims) for kind, _, victims in damage(report)] == [
        ("corrupt-manifest", [ids[2]])
    ]


def _delta_chain(tmp_path: Path) -> tuple[Path, list[str]]:
    """Three snapshots of 40 tenants, each stored as a delta of the one before."""
    path = tmp_path / "repo"
    repo = Repository.init(LocalBackend(path))
    clock = FakeClock()
    ids = []
    for version in range(3):
        tenants = [{"id": f"t{i}", "v": version if i == 0 else 0} for i in range(40)]
        ids.append(snap(repo, clock, "all", *tenants))
    headers = {s.id: s.header for s in repo.snapshots()}
    assert headers[ids[2]].parent == ids[1] and headers[ids[1]].parent == ids[0]
    return path, ids


def test_listing_snapshots_leaves_out_one_removed_after_the_catalog_was_read(
    two_snapshots: tuple[Path, str, str],
) -> None:
    path, old, new = two_snapshots
    Repository.open(LocalBackend(path)).catalog.compact()
    backend = Overtaken(path)
    # The cleanup replaces the catalog between this reader's head and its parts.
    backend.at(
        lambda moment: moment.startswith("reading catalog/parts/"), remove_snapshot(path, old)
    )
    assert [s.id for s in Repository.open(backend).snapshots()] == [new]
    assert backend.plans == []


def test_a_delta_is_read_again_when_a_cleanup_removes_its_parent_under_a_restore(
    tmp_path: Path,
) -> None:
    path, ids = _delta_chain(tmp_path)
    parent_key = other(path).resolve(ids[1]).key
    backend = Overtaken(path)
    backend.at(
        lambda moment: moment == f"reading {parent_key}",
        lambda: cleanup(other(path), RetentionPolicy(keep_last=1), grace=timedelta(0)),
    )
    _, documents = restore_documents(Repository.open(backend), ids[2])
    assert backend.plans == []
    assert documents["t0"] == b'{"id":"t0","v":2}'
    assert len(documents) == 40
