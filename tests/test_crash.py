"""Crash (or fail) at every write point of snapshot, cleanup, gc and import.

After each stop the repository must verify clean, every snapshot reported as
done must restore exactly, and running the operation again must succeed; after
a gc or cleanup run to completion, nothing it removed is left anywhere.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import casbak.locks as locks_module
from casbak.backends.local import LocalBackend
from casbak.errors import CasbakError
from casbak.layout import PACK_PREFIX, pack_key
from casbak.maintenance import CleanupReport, cleanup, collect_garbage
from casbak.repository import Repository
from casbak.retention import RetentionPolicy
from casbak.service import restore_documents, take_snapshot
from casbak.sources import documents_from_values, read_sources
from casbak.store import PackStore
from casbak.transfer import export_bundle, import_bundle, select_snapshots
from casbak.verify import verify_repository
from tests.catalogtools import CATALOG_KINDS, from_manifests
from tests.conftest import EXAMPLES, FakeClock
from tests.faulty import ERRORS, Crash, injected

ROUND1 = EXAMPLES / "tenants" / "round-1"
ROUND2 = EXAMPLES / "tenants" / "round-2"
CRASH_POINTS: dict[str, int] = {}


def build_template(path: Path) -> dict[str, dict[str, bytes]]:
    """Snapshots whose removal needs re-encoding, and garbage gc must forget.

    The first "vault" version holds a secret and the second, kept, is a delta
    of it; removing the first snapshot leaves the secret as a base only.
    Removing round 1 (cleanup) leaves round 2's changed tenants without theirs.
    """
    repo = Repository.init(LocalBackend(path))
    clock = FakeClock()
    take_snapshot(repo, read_sources([str(ROUND1)]), clock=clock)
    clock.advance(days=1)
    garbage = [take_snapshot(repo, documents_from_values([{"id": "temp"}], "t"), clock=clock)]
    leaked = {"id": "vault", "v": 1, "secret": base64.b64encode(os.urandom(4096)).decode()}
    clock.advance(days=1)
    garbage.append(take_snapshot(repo, documents_from_values([leaked], "t"), clock=clock))
    clock.advance(days=1)
    take_snapshot(repo, documents_from_values([{"id": "vault", "v": 2}], "t"), clock=clock)
    clock.advance(days=1)
    take_snapshot(repo, read_sources([str(ROUND2)]), clock=clock, operation="sync-apply")
    for result in garbage:  # leaves an orphan object and an orphan base for gc
        repo.delete_snapshot(repo.resolve(result.snapshot.id))
    return {s.id: restore_documents(repo, s.id)[1] for s in repo.snapshots()}


@pytest.fixture(scope="module")
def template(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, dict[str, bytes]], bytes]:
    path = tmp_path_factory.mktemp("template") / "repo"
    done = build_template(path)
    other = Repository.init(LocalBackend(path.parent / "other"))
    take_snapshot(
        other,
        documents_from_values([{"id": f"imported-{i}", "v": i} for i in range(4)], "t"),
        clock=FakeClock(),
    )
    take_snapshot(other, read_sources([str(ROUND2)]), clock=FakeClock())
    stream = io.BytesIO()
    export_bundle(other, select_snapshots(other, everything=True), stream)
    return path, done, stream.getvalue()


def op_snapshot(repo: Repository, bundle: bytes) -> None:
    docs = documents_from_values([{"id": "new-tenant", "v": 42}, {"id": "globex-us", "x": 1}], "t")
    take_snapshot(repo, docs, operation="tenant-update")


def op_cleanup(repo: Repository, bundle: bytes, dry_run: bool = False) -> CleanupReport:
    return cleanup(
        repo,
        RetentionPolicy(keep_last=1, group_by="none", keep_newest_of_target=False),
        grace=timedelta(0),
        dry_run=dry_run,
    )


def op_gc(repo: Repository, bundle: bytes, dry_run: bool = False) -> CleanupReport:
    return collect_garbage(repo, grace=timedelta(0), dry_run=dry_run)


def op_import(repo: Repository, bundle: bytes) -> None:
    import_bundle(repo, lambda: io.BytesIO(bundle))


OPERATIONS: dict[str, Callable[[Repository, bytes], object]] = {
    "snapshot": op_snapshot,
    "cleanup": op_cleanup,
    "gc": op_gc,
    "import": op_import,
}


def fresh_copy(template: Path, target: Path) -> Repository:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(template, target)
    return Repository.open(LocalBackend(target))


def count_write_points(template: Path, scratch: Path, name: str, bundle: bytes) -> int:
    repo = fresh_copy(template, scratch)
    with injected() as proxy:
        OPERATIONS[name](repo, bundle)
    return proxy.count


def assert_sound(repo: Repository, done: dict[str, dict[str, bytes]], name: str) -> None:
    report = verify_repository(repo)
    assert report.ok, [f for f in report.findings if f.severity == "damage"]
    assert [f for f in report.findings if f.kind in CATALOG_KINDS] == []
    present = {s.id for s in repo.snapshots()}
    assert [s.id for s in repo.snapshots()] == from_manifests(repo)[0]  # the catalog agrees
    for snapshot_id, documents in done.items():
        if name != "cleanup":
            assert snapshot_id in present
        if snapshot_id in present:
            assert restore_documents(repo, snapshot_id)[1] == documents


def assert_forgotten(repo: Repository, name: str) -> None:
    """After a completed gc: exactly the referenced objects are indexed, in indexed packs."""
    if name not in ("gc", "cleanup"):
        return
    packs = repo.objects
    assert isinstance(packs, PackStore)
    packs.refresh()
    referenced = {e.object for s in repo.snapshots() for e in s.manifest.entries.values()}
    assert set(packs.index()) == referenced
    named = {pack_key(location.pack) for location in packs.index().values()}
    assert {info.key for info in repo.backend.list(PACK_PREFIX)} == named


def dead_processes_hold_no_locks(monkeypatch: pytest.MonkeyPatch) -> None:
    # The crashed "process" is this one; its records must look like a dead process's.
    monkeypatch.setattr(locks_module, "_process_alive", lambda pid: False)


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_crash_at_every_write_point(
    template: Any, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, done, bundle = template
    total = count_write_points(path, tmp_path / "count", name, bundle)
    assert total > 5
    CRASH_POINTS[name] = total
    if name in ("gc", "cleanup"):  # the crashes below interrupt re-encoding, too
        planned = OPERATIONS[name](fresh_copy(path, tmp_path / "plan"), bundle, True)
        assert isinstance(planned, CleanupReport) and planned.objects_reencoded > 0
    dead_processes_hold_no_locks(monkeypatch)
    for point in range(1, total + 1):
        repo = fresh_copy(path, tmp_path / "run")
        with pytest.raises(Crash), injected(fail_at=point):
            OPERATIONS[name](repo, bundle)
        repo = Repository.open(LocalBackend(tmp_path / "run"))
        assert_sound(repo, done, name)
        OPERATIONS[name](repo, bundle)
        assert_sound(repo, done, name)
        assert_forgotten(repo, name)


@pytest.mark.parametrize("error", sorted(ERRORS))
@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_failing_write_points_give_clean_errors(
    template: Any, tmp_path: Path, name: str, error: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, done, bundle = template
    total = count_write_points(path, tmp_path / "count", name, bundle)
    dead_processes_hold_no_locks(monkeypatch)
    for point in range(1, total + 1, 3):
        repo = fresh_copy(path, tmp_path / "run")
        try:
            with injected(fail_at=point, error=ERRORS[error]):
                OPERATIONS[name](repo, bundle)
        except CasbakError as exc:
            assert str(exc)
        repo = Repository.open(LocalBackend(tmp_path / "run"))
        assert_sound(repo, done, name)
        OPERATIONS[name](repo, bundle)
        assert_sound(repo, done, name)
        assert_forgotten(repo, name)


@pytest.mark.parametrize("error", ["ENOSPC", "EACCES", "EROFS"])
def test_disk_full_or_denied_during_cli_snapshot(
    tmp_path: Path, error: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_cli import run

    repo_path = tmp_path / "repo"
    run(repo_path, "init")
    run(repo_path, "snapshot", str(ROUND1))
    before = {s.id for s in Repository.open(LocalBackend(repo_path)).snapshots()}
    dead_processes_hold_no_locks(monkeypatch)
    for point in (1, 4, 9, 20):
        with injected(fail_at=point, error=ERRORS[error]):
            code, _, err = run(repo_path, "snapshot", str(ROUND2))
        assert code == 1
        assert err.startswith("casbak: error: cannot ")
        assert err.count("\n") == 1
        assert "Traceback" not in err
        reason = {
            "ENOSPC": "no space left",
            "EACCES": "permission denied",
            "EROFS": "read-only file system",
        }[error]
        assert reason in err
        repo = Repository.open(LocalBackend(repo_path))
        assert {s.id for s in repo.snapshots()} == before
        assert verify_repository(repo).ok
