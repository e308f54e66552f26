"""`casbak tag`: new tags make a new snapshot id; the old manifest goes only after the new one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import casbak.locks as locks_module
from casbak import BackupService
from casbak.backends.local import LocalBackend
from casbak.errors import InputError, UsageError
from casbak.repository import Repository
from casbak.service import restore_documents, retag_snapshots, take_snapshot
from casbak.sources import documents_from_values
from casbak.verify import verify_repository
from tests.conftest import FakeClock, tree_state
from tests.faulty import Crash, injected
from tests.test_cli import run

TENANTS = 40
"""Enough tenants that the second snapshot is stored as a delta of the first."""


def build(path: Path) -> list[str]:
    """Two snapshots of one target, the second a delta manifest of the first, plus another."""
    repo = Repository.init(LocalBackend(path))
    clock = FakeClock()
    tenants: list[dict[str, Any]] = [{"id": f"t{i:02d}", "v": 0} for i in range(TENANTS)]
    ids = [take_snapshot(repo, documents_from_values(tenants, "t"), clock=clock, tags=["a"])]
    clock.advance(hours=1)
    tenants[0] = {"id": "t00", "v": 1}
    ids.append(take_snapshot(repo, documents_from_values(tenants, "t"), clock=clock))
    clock.advance(hours=1)
    other = documents_from_values([{"id": "solo"}], "t")
    ids.append(take_snapshot(repo, other, clock=clock, tags=["b", "a"]))
    assert repo.resolve(ids[1].snapshot.id).header.parent == ids[0].snapshot.id
    return [result.snapshot.id for result in ids]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("tag") / "repo"
    return path, build(path)


def copy(template: tuple[Path, list[str]], target: Path) -> tuple[Repository, list[str]]:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(template[0], target)
    return Repository.open(LocalBackend(target)), template[1]


def contents(repo: Repository, reference: str) -> dict[str, bytes]:
    return restore_documents(repo, reference)[1]


def test_tag_makes_a_new_id_and_removes_the_old_one(
    template: tuple[Path, list[str]], tmp_path: Path
) -> None:
    repo, ids = copy(template, tmp_path / "repo")
    before = {sid: contents(repo, sid) for sid in ids}
    results = retag_snapshots(repo, [ids[0], ids[2][:8]], add=["keep", "keep"], remove=["b"])
    assert [(r.old, r.changed) for r in results] == [(ids[0], True), (ids[2], True)]
    assert [r.tags for r in results] == [["a", "keep"], ["a", "keep"]]
    assert all(r.new != r.old for r in results)
    present = {s.id: s for s in repo.snapshots()}
    assert set(present) == {results[0].new, ids[1], results[1].new}
    assert present[results[0].new].header.tags == ["a", "keep"]
    assert contents(repo, results[0].new) == before[ids[0]]
    assert contents(repo, results[1].new) == before[ids[2]]
    # The delta manifest whose parent went was rebased, and still proves its id.
    assert contents(repo, ids[1]) == before[ids[1]]
    assert repo.resolve(ids[1]).header.parent != ids[0]
    assert verify_repository(repo).ok


def test_tag_keeps_the_timestamp_and_the_rest_of_the_manifest(
    template: tuple[Path, list[str]], tmp_path: Path
) -> None:
    repo, ids = copy(template, tmp_path / "repo")
    old = repo.resolve(ids[1]).manifest
    (result,) = retag_snapshots(repo, [ids[1]], add=["x"])
    new = repo.resolve(result.new).manifest
    assert new.tags == ["x"]
    assert (new.timestamp, new.operation, new.target_id, new.description, new.entries) == (
        old.timestamp,
        old.operation,
        old.target_id,
        old.description,
        old.entries,
    )


def test_unchanged_tags_leave_the_snapshot_alone(
    template: tuple[Path, list[str]], tmp_path: Path
) -> None:
    repo, ids = copy(template, tmp_path / "repo")
    before = tree_state(tmp_path / "repo")
    (result,) = retag_snapshots(repo, [ids[2]], add=["a"], remove=["zzz"])
    assert (result.old, result.new, result.changed, result.tags) == (
        ids[2],
        ids[2],
        False,
        ["a", "b"],
    )
    assert tree_state(tmp_path / "repo") == before
    mixed = retag_snapshots(repo, [ids[2], ids[1]], add=["b"])
    assert [r.changed for r in mixed] == [False, True]
    assert {s.id for s in repo.snapshots()} == {ids[0], ids[2], mixed[1].new}


@pytest.mark.parametrize(
    ("add", "remove", "error", "message"),
    [
        ((), (), UsageError, "give a tag to --add or to --remove"),
        (("x",), ("x",), UsageError, "'x' is both added and removed"),
        (("",), (), InputError, "tag must be 1 to 256 printable characters"),
        (("bad\ttag",), (), InputError, "printable"),
        ((), ("x" * 257,), InputError, "printable"),
    ],
)
def test_bad_tags_change_nothing(
    template: tuple[Path, list[str]],
    tmp_path: Path,
    add: tuple[str, ...],
    remove: tuple[str, ...],
    error: type[Exception],
    message: str,
) -> None:
    repo, ids = copy(template, tmp_path / "repo")
    before = tree_state(tmp_path / "repo")
    with pytest.raises(error, match=message):
        retag_snapshots(repo, [ids[0]], add=add, remove=remove)
    assert tree_state(tmp_path / "repo") == before


def test_an_unknown_reference_changes_nothing(
    template: tuple[Path, list[str]], tmp_path: Path
) -> None:
    repo, ids = copy(template, tmp_path / "repo")
    before = tree_state(tmp_path / "repo")
    with pytest.raises(Exception, match="no snapshot matches 'ffffffff'"):
        retag_snapshots(repo, [ids[0], "ffffffff"], add=["x"])
    with pytest.raises(UsageError):
        retag_snapshots(repo, [], add=["x"])
    assert tree_state(tmp_path / "repo") == before


def test_a_damaged_manifest_stops_the_tag_before_anything_is_written(
    template: tuple[Path, list[str]], tmp_path: Path
) -> None:
    repo, ids = copy(template, tmp_path / "repo")
    damaged = tmp_path / "repo" / repo.resolve(ids[2]).key
    damaged.write_bytes(damaged.read_bytes().replace(b'"description":""', b'"description":"x"'))
    before = tree_state(tmp_path / "repo")
    code, _, err = run(tmp_path / "repo", "tag", ids[0], ids[2], "--add", "x")
    assert code == 3
    assert ids[2] in err
    assert err.count("\n") == 1
    assert tree_state(tmp_path / "repo") == before


def test_a_crash_between_the_write_and_the_removal_leaves_both_snapshots(
    template: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, ids = copy(template, tmp_path / "repo")

    def crash(*_args: object, **_kwargs: object) -> int:
        raise Crash("killed before the old manifests went")

    monkeypatch.setattr(Repository, "delete_snapshots", crash)
    with pytest.raises(Crash):
        retag_snapshots(repo, [ids[0], ids[1]], add=["keep"])
    monkeypatch.undo()
    repo = Repository.open(LocalBackend(tmp_path / "repo"))
    present = {s.id for s in repo.snapshots()}
    assert len(present) == 5
    assert set(ids) <= present
    assert verify_repository(repo).ok
    for new in present - set(ids):
        assert repo.resolve(new).header.tags in (["a", "keep"], ["keep"])


def test_a_crash_at_any_write_point_leaves_a_sound_repository(
    template: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, ids = copy(template, tmp_path / "count")
    expected = {sid: contents(repo, sid) for sid in ids}
    with injected() as proxy:
        done = retag_snapshots(repo, ids[:2], add=["keep"])
    renamed = {r.old: r.new for r in done}
    final = {renamed.get(sid, sid) for sid in ids}
    assert proxy.count > 5
    # The crashed "process" is this one; its lock must look like a dead process's.
    monkeypatch.setattr(locks_module, "_process_alive", lambda _pid: False)
    for point in range(1, proxy.count + 1):
        repo, _ = copy(template, tmp_path / "run")
        with pytest.raises(Crash), injected(fail_at=point):
            retag_snapshots(repo, ids[:2], add=["keep"])
        repo = Repository.open(LocalBackend(tmp_path / "run"))
        assert verify_repository(repo).ok, point
        present = {s.id for s in repo.snapshots()}
        for sid in ids:
            # Each snapshot is there under its old id, its new one, or both.
            assert present & {sid, renamed.get(sid, sid)}, point
            for found in present & {sid, renamed.get(sid, sid)}:
                assert contents(repo, found) == expected[sid]
        # Running it again on what is there finishes the job.
        again = [sid if sid in present else renamed[sid] for sid in ids[:2]]
        retag_snapshots(repo, again, add=["keep"])
        assert {s.id for s in repo.snapshots()} == final, point
        assert verify_repository(repo).ok


def test_cli_tag_text_and_json(template: tuple[Path, list[str]], tmp_path: Path) -> None:
    _, ids = copy(template, tmp_path / "repo")
    path = tmp_path / "repo"
    code, out, _ = run(path, "tag", ids[0][:12], ids[2], "--add", "keep", "--remove", "b")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{ids[0][:12]} -> ")
    assert lines[0].endswith("tags: a, keep")
    assert lines[1].startswith(f"{ids[2][:12]} -> ")

    new_id = lines[0].split()[2]
    code, out, _ = run(path, "--json", "tag", new_id, "--add", "keep", "--remove", "a")
    assert code == 0
    (entry,) = json.loads(out)
    assert entry["old"].startswith(new_id)
    assert entry["tags"] == ["keep"]
    assert entry["changed"] is True
    listed = json.loads(run(path, "--json", "list", "--tag", "keep")[1])["snapshots"]
    assert entry["new"] in {s["id"] for s in listed}

    code, out, _ = run(path, "tag", entry["new"], "--add", "keep")
    assert code == 0
    assert out.strip() == f"{entry['new'][:12]} unchanged        tags: keep"


def test_cli_tag_errors(template: tuple[Path, list[str]], tmp_path: Path) -> None:
    repo, ids = copy(template, tmp_path / "repo")
    path = tmp_path / "repo"
    before = tree_state(path)
    assert run(path, "tag", "--add", "x")[0] == 2
    code, _, err = run(path, "tag", ids[0])
    assert code == 2
    assert "--add or to --remove" in err
    code, _, err = run(path, "tag", ids[0], "--add", "")
    assert code == 1
    assert err.startswith("casbak: error: tag must be 1 to 256 printable characters")
    assert err.count("\n") == 1
    with repo.locks.shared("snapshot", 0):
        code, _, err = run(path, "--json", "tag", ids[0], "--add", "x", "--lock-timeout", "0.1")
    assert code == 11
    assert json.loads(err)["error"] == "RepositoryLocked"
    assert tree_state(path) == before


def test_tag_in_a_real_process(template: tuple[Path, list[str]], tmp_path: Path) -> None:
    _, ids = copy(template, tmp_path / "repo")
    casbak = [sys.executable, "-m", "casbak", "--repo", str(tmp_path / "repo")]
    done = subprocess.run(
        [*casbak, "--json", "tag", ids[1], "--add", "pre-migration"],
        capture_output=True,
        check=True,
    )
    (entry,) = json.loads(done.stdout)
    assert entry["old"] == ids[1]
    assert entry["tags"] == ["pre-migration"]
    shown = subprocess.run(
        [*casbak, "--json", "show", entry["new"]], capture_output=True, check=True
    )
    assert json.loads(shown.stdout)["snapshot"]["tags"] == ["pre-migration"]
    gone = subprocess.run([*casbak, "show", ids[1]], capture_output=True, check=False)
    assert gone.returncode == 1


def test_python_api_tag_backup(tmp_path: Path) -> None:
    service = BackupService(tmp_path / "b", clock=FakeClock())
    path = service.create_tenant_backup({"id": "acme", "v": 1}, "tenant-update")
    tagged = service.tag_backup(path, add=["pre-migration"])
    assert tagged != path
    assert not path.exists()
    assert tagged.is_file()
    assert service.load_backup(tagged).tags == ["pre-migration"]
    assert service.tag_backup(tagged, add=["pre-migration"]) == tagged
