"""`casbak forget`: named snapshots leave through cleanup's plan, safety rules and gc."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

import casbak.locks as locks_module
from casbak import BackupService
from casbak.backends.local import LocalBackend
from casbak.errors import InputError, NotFoundError, Refused, UsageError
from casbak.maintenance import CleanupReport, forget
from casbak.repository import Repository
from casbak.service import repository_stats, restore_documents, take_snapshot
from casbak.sources import documents_from_values
from casbak.verify import verify_repository
from tests.conftest import FakeClock, tree_state
from tests.faulty import Crash, injected
from tests.test_cli import run


def backup(repo: Repository, clock: FakeClock, tenants: list[dict[str, Any]], **kw: Any) -> str:
    clock.advance(hours=1)
    docs = documents_from_values(tenants, "t")
    return take_snapshot(repo, docs, clock=clock, **kw).snapshot.id


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """acme twice (the first with a document no later snapshot has), globex once."""
    path = tmp_path / "repo"
    repo = Repository.init(LocalBackend(path))
    clock = FakeClock()
    ids = {
        "acme-1": backup(repo, clock, [{"id": "acme", "v": 1, "secret": "only-here"}]),
        "acme-2": backup(repo, clock, [{"id": "acme", "v": 2}]),
        "globex-1": backup(repo, clock, [{"id": "globex", "v": 1}]),
    }
    return path, ids


def open_repo(path: Path) -> Repository:
    return Repository.open(LocalBackend(path))


def figures(report: CleanupReport) -> dict[str, Any]:
    return {k: v for k, v in msgspec.to_builtins(report).items() if k != "dry_run"}


def test_forget_removes_the_snapshot_and_the_objects_only_it_used(
    history: tuple[Path, dict[str, str]],
) -> None:
    path, ids = history
    before = tree_state(path)
    dry = forget(open_repo(path), [ids["acme-1"][:8]], dry_run=True, grace=timedelta(0))
    assert tree_state(path) == before
    assert dry.dry_run is True
    assert [s.id for s in dry.removed] == [ids["acme-1"]]
    assert (dry.snapshots_removed, dry.snapshots_kept, dry.objects_removed) == (1, 2, 1)

    done = forget(open_repo(path), [ids["acme-1"]], grace=timedelta(0))
    assert figures(done) == figures(dry)
    repo = open_repo(path)
    assert {s.id for s in repo.snapshots()} == {ids["acme-2"], ids["globex-1"]}
    assert repository_stats(repo).objects_stored == 2
    assert verify_repository(repo).ok
    assert restore_documents(repo, ids["acme-2"])[1]["acme"] == b'{"id":"acme","v":2}'


def test_newest_of_a_target_is_refused_unless_forced(history: tuple[Path, dict[str, str]]) -> None:
    path, ids = history
    before = tree_state(path)
    for refs in (["latest"], [ids["acme-1"], "latest:acme"], [ids["globex-1"]]):
        with pytest.raises(Refused) as caught:
            forget(open_repo(path), refs, grace=timedelta(0))
        assert "newest of target" in str(caught.value)
        assert "nothing was removed" in str(caught.value)
        assert "--force" in str(caught.value)
        assert tree_state(path) == before
    with pytest.raises(Refused, match=r"\(newest of target globex\) and 1 more: .* keep them"):
        forget(open_repo(path), ["latest:acme", "latest:globex"], dry_run=True)

    report = forget(open_repo(path), ["latest:acme", ids["acme-1"]], force=True)
    assert sorted(s.id for s in report.removed) == sorted([ids["acme-1"], ids["acme-2"]])
    repo = open_repo(path)
    assert [s.id for s in repo.snapshots()] == [ids["globex-1"]]
    assert verify_repository(repo).ok


def test_a_snapshot_dated_in_the_future_is_refused_unless_forced(tmp_path: Path) -> None:
    repo = Repository.init(LocalBackend(tmp_path / "repo"))
    clock = FakeClock()
    old = backup(repo, clock, [{"id": "acme", "v": 1}])
    skewed = FakeClock(datetime(2099, 1, 1, tzinfo=UTC))
    future = backup(repo, skewed, [{"id": "acme", "v": 2}])
    with pytest.raises(Refused, match="dated in the future"):
        forget(repo, [future])
    # The newest *present* snapshot of the target is protected too, as cleanup protects it.
    with pytest.raises(Refused, match="newest of target acme"):
        forget(repo, [old])
    assert forget(repo, [future], force=True).snapshots_removed == 1


def test_same_snapshot_named_twice_is_removed_once(history: tuple[Path, dict[str, str]]) -> None:
    path, ids = history
    name = open_repo(path).resolve(ids["acme-1"]).key.rsplit("/", 1)[1]
    report = forget(open_repo(path), [ids["acme-1"], ids["acme-1"][:10], name])
    assert [s.id for s in report.removed] == [ids["acme-1"]]
    assert report.snapshots_removed == 1


def test_no_prune_leaves_the_objects_to_gc(history: tuple[Path, dict[str, str]]) -> None:
    path, ids = history
    report = forget(open_repo(path), [ids["acme-1"]], prune=False, grace=timedelta(0))
    assert (report.snapshots_removed, report.objects_removed, report.bytes_freed) == (1, 0, 0)
    repo = open_repo(path)
    assert len(repo.snapshots()) == 2
    assert verify_repository(repo).ok
    code, out, _ = run(path, "--json", "gc", "--grace", "0s")
    assert code == 0
    assert json.loads(out)["objects_removed"] == 1


def test_bad_references_change_nothing(history: tuple[Path, dict[str, str]]) -> None:
    path, ids = history
    before = tree_state(path)
    with pytest.raises(NotFoundError, match="no snapshot matches 'ffffffff'"):
        forget(open_repo(path), [ids["acme-1"], "ffffffff"])
    with pytest.raises(UsageError):
        forget(open_repo(path), [])
    with pytest.raises(InputError, match="too short"):
        forget(open_repo(path), [ids["acme-1"], "ab"])
    assert tree_state(path) == before


def test_a_delta_manifest_of_a_forgotten_snapshot_is_rebased(tmp_path: Path) -> None:
    repo = Repository.init(LocalBackend(tmp_path / "repo"))
    clock = FakeClock()
    tenants = [{"id": f"t{i:02d}", "v": 0} for i in range(40)]
    first = backup(repo, clock, tenants)
    tenants[0] = {"id": "t00", "v": 1}
    second = backup(repo, clock, tenants)
    assert repo.resolve(second).header.parent == first
    dry = forget(repo, [first], dry_run=True, grace=timedelta(0))
    done = forget(repo, [first], grace=timedelta(0))
    assert done.manifests_rebased == dry.manifests_rebased == 1
    assert figures(done) == figures(dry)
    assert repo.resolve(second).header.parent is None
    assert verify_repository(repo).ok
    assert len(restore_documents(repo, second)[1]) == 40


def test_a_crash_while_forgetting_a_delta_and_its_parent_leaves_every_manifest_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "template"
    repo = Repository.init(LocalBackend(template))
    clock = FakeClock()
    tenants = [{"id": f"t{i:02d}", "v": 0} for i in range(40)]
    chain = []
    for version in range(3):
        tenants[0] = {"id": "t00", "v": version}
        chain.append(backup(repo, clock, tenants))
    assert repo.resolve(chain[2]).header.depth == 2
    expected = restore_documents(repo, chain[2])[1]

    def fresh() -> Repository:
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
        shutil.copytree(template, tmp_path / "run")
        return open_repo(tmp_path / "run")

    with injected() as proxy:
        forget(fresh(), chain[:2], grace=timedelta(0))
    monkeypatch.setattr(locks_module, "_process_alive", lambda _pid: False)
    for point in range(1, proxy.count + 1):
        repo = fresh()
        with pytest.raises(Crash), injected(fail_at=point):
            forget(repo, chain[:2], grace=timedelta(0))
        repo = open_repo(tmp_path / "run")
        assert verify_repository(repo).ok, point
        assert restore_documents(repo, chain[2])[1] == expected
        left = [sid for sid in chain[:2] if sid in repo.manifest_keys()]
        if left:
            forget(repo, left, grace=timedelta(0))
        assert [s.id for s in repo.snapshots()] == [chain[2]]
        assert verify_repository(repo).ok


def test_cli_forget_text_json_and_errors(history: tuple[Path, dict[str, str]]) -> None:
    path, ids = history
    code, out, err = run(path, "forget", "latest")
    assert code == 1
    assert err.startswith("casbak: error: refusing to forget snapshot ")
    assert err.count("\n") == 1

    code, out, _ = run(path, "--json", "forget", ids["acme-1"][:12], "--dry-run", "--grace", "0s")
    assert code == 0
    dry = json.loads(out)
    assert (dry["dry_run"], dry["kept"]) == (True, [])
    (removed,) = dry["removed"]
    assert (removed["id"], removed["operation"], removed["target_id"]) == (
        ids["acme-1"],
        "manual",
        "acme",
    )
    assert dry["objects_removed"] == 1

    code, out, _ = run(path, "forget", ids["acme-1"], "--grace", "0s")
    assert code == 0
    # The forgotten snapshot as 'list' shows it: id, UTC time, operation, target.
    assert out.splitlines() == [
        "ACTION   ID            TIME (UTC)           OPERATION  TARGET  TENANTS  DESCRIPTION",
        f"removed  {ids['acme-1'][:12]}  2025-11-17 11:30:00  manual     acme    1",
        "removed 1 snapshot (2 kept), 1 object, " + out.split("1 object, ")[1].strip(),
    ]

    code, out, _ = run(path, "forget", "latest:globex", "--force", "--no-prune")
    assert code == 0
    assert "removed 1 snapshot (1 kept), 0 objects" in out
    assert "left to 'casbak gc'" in out

    assert run(path, "forget")[0] == 2
    code, _, err = run(path, "--json", "forget", "nope-nope")
    assert code == 1
    assert json.loads(err)["error"] == "InputError"


def test_cli_forget_waits_for_the_lock(history: tuple[Path, dict[str, str]]) -> None:
    path, ids = history
    with open_repo(path).locks.shared("snapshot", 0):
        code, _, err = run(path, "forget", ids["acme-1"], "--lock-timeout", "0.1")
    assert code == 11
    assert "shared lock of 'snapshot'" in err
    assert len(open_repo(path).snapshots()) == 3


def test_forget_in_a_real_process(history: tuple[Path, dict[str, str]]) -> None:
    path, ids = history
    casbak = [sys.executable, "-m", "casbak", "--repo", str(path)]
    refused = subprocess.run([*casbak, "forget", "latest"], capture_output=True, check=False)
    assert refused.returncode == 1
    assert b"newest of target" in refused.stderr
    done = subprocess.run(
        [*casbak, "--json", "forget", ids["acme-1"], "--grace", "0s"],
        capture_output=True,
        check=True,
    )
    assert [s["id"] for s in json.loads(done.stdout)["removed"]] == [ids["acme-1"]]
    assert {s.id for s in open_repo(path).snapshots()} == {ids["acme-2"], ids["globex-1"]}


def test_python_api_forget_backups(tmp_path: Path) -> None:
    service = BackupService(tmp_path / "b", clock=FakeClock())
    first = service.create_tenant_backup({"id": "acme", "v": 1}, "tenant-update")
    service.clock.advance(hours=1)  # type: ignore[attr-defined]
    second = service.create_tenant_backup({"id": "acme", "v": 2}, "tenant-update")
    with pytest.raises(Refused):
        service.forget_backups(second)
    assert service.forget_backups(first) == 1
    assert service.list_backups() == [second]
    assert service.forget_backups(second, force=True) == 1
    assert service.list_backups() == []


def test_delete_snapshots_removes_a_delta_before_its_parent(tmp_path: Path) -> None:
    """Whatever order callers name them in, so a crash between removals breaks no manifest."""
    repo = Repository.init(LocalBackend(tmp_path / "repo"))
    clock = FakeClock()
    tenants = [{"id": f"t{i:02d}", "v": 0} for i in range(40)]
    chain = []
    for version in range(3):
        tenants[0] = {"id": "t00", "v": version}
        chain.append(repo.resolve(backup(repo, clock, tenants)))
    assert [snap.header.depth for snap in chain] == [0, 1, 2]
    deleted: list[str] = []
    delete = repo.backend.delete

    def recording(key: str) -> None:
        if key.startswith("manifests/"):
            deleted.append(key)
        delete(key)

    repo.backend.delete = recording  # type: ignore[method-assign]
    repo.delete_snapshots([snap.key for snap in chain])
    assert deleted == [snap.key for snap in reversed(chain)]
