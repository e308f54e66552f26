from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from casbak import BackupService
from casbak.backends.memory import MemoryBackend
from casbak.errors import ChecksumMismatch, RepositoryLocked, UsageError
from casbak.gc import plan_gc
from casbak.layout import PACK_PREFIX, pack_key
from casbak.maintenance import cleanup, collect_garbage
from casbak.repository import Repository
from casbak.retention import RetentionPolicy
from casbak.service import restore_documents, take_snapshot
from casbak.sources import documents_from_values
from casbak.verify import verify_repository
from tests.conftest import FakeClock, tree_state

NO_GRACE = timedelta(0)


class Ticking:
    """Wall clock for the memory backend, so object mtimes can be aged."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def wall() -> Ticking:
    return Ticking()


@pytest.fixture
def repo(wall: Ticking) -> Repository:
    return Repository.init(MemoryBackend(clock=wall))


def backup(repo: Repository, clock: FakeClock, *tenants: dict[str, Any], **kw: Any) -> str:
    return take_snapshot(repo, documents_from_values(tenants, "t"), clock=clock, **kw).snapshot.id


def test_gc_removes_only_unreferenced(repo: Repository, clock: FakeClock) -> None:
    backup(repo, clock, {"id": "a", "v": 1})
    keep = backup(repo, clock, {"id": "a", "v": 2})
    stray = b'{"id":"stray"}'
    from casbak.ids import hash_bytes

    repo.objects.store({hash_bytes(stray): stray})
    report = collect_garbage(repo, grace=NO_GRACE)
    assert report.objects_removed == 1
    assert report.bytes_freed > 0
    assert report.objects_reencoded == 0
    assert not repo.objects.contains(hash_bytes(stray))
    assert restore_documents(repo, keep)[1]["a"] == b'{"id":"a","v":2}'


def test_dry_run_changes_nothing_and_reports_same(tmp_path: Path, clock: FakeClock) -> None:
    repo = Repository.init(
        __import__("casbak.backends.local", fromlist=["x"]).LocalBackend(tmp_path / "r")
    )
    for version in range(5):
        clock.advance(days=10)
        backup(repo, clock, {"id": "a", "v": version}, {"id": "b", "v": version})
    before = tree_state(tmp_path / "r")
    policy = RetentionPolicy(keep_last=1)
    dry = cleanup(repo, policy, dry_run=True, grace=NO_GRACE, clock=clock)
    assert tree_state(tmp_path / "r") == before
    real = cleanup(repo, policy, grace=NO_GRACE, clock=clock)
    assert dry.dry_run and not real.dry_run
    for field in (
        "snapshots_removed",
        "snapshots_kept",
        "objects_removed",
        "bytes_freed",
        "objects_reencoded",
        "packs_rewritten",
    ):
        assert getattr(dry, field) == getattr(real, field), field
    assert real.snapshots_removed == 4
    assert real.objects_removed == 8
    # Each kept version was a delta of the removed one before it: now it stands alone,
    # and the five packs (one per snapshot) became one.
    assert real.objects_reencoded == 2
    assert real.packs_rewritten == 5
    assert len(repo.snapshots()) == 1
    kept = Repository.open(repo.backend)
    assert [location.base for location in kept.objects.index().values()] == [None, None]
    assert len(list(kept.backend.list(PACK_PREFIX))) == 1
    assert restore_documents(kept, "latest")[1] == {
        "a": b'{"id":"a","v":4}',
        "b": b'{"id":"b","v":4}',
    }


def test_shared_objects_survive_when_one_referrer_goes(repo: Repository, clock: FakeClock) -> None:
    old = backup(repo, clock, {"id": "a", "v": 1}, {"id": "shared"})
    clock.advance(days=60)
    new = backup(repo, clock, {"id": "a", "v": 2}, {"id": "shared"})
    report = cleanup(
        repo, RetentionPolicy(keep_within=timedelta(days=30)), grace=NO_GRACE, clock=clock
    )
    assert [s.id for s in report.removed] == [old]
    assert report.objects_removed == 1
    assert report.objects_reencoded == 1  # a's new version was a delta of the removed one
    assert restore_documents(repo, new)[1] == {
        "a": b'{"id":"a","v":2}',
        "shared": b'{"id":"shared"}',
    }


def test_grace_spares_young_unreferenced_objects(
    repo: Repository, clock: FakeClock, wall: Ticking
) -> None:
    backup(repo, clock, {"id": "a", "v": 1})
    clock.advance(days=60)
    backup(repo, clock, {"id": "a", "v": 2})
    policy = RetentionPolicy(keep_within=timedelta(days=30))
    report = cleanup(repo, policy, grace=timedelta(hours=1), clock=clock, dry_run=True)
    assert report.snapshots_removed == 1
    assert report.objects_removed == 0
    assert report.objects_spared_young == 1
    wall.now += 2 * 3600
    real = cleanup(repo, policy, grace=timedelta(hours=1), clock=clock)
    assert (real.objects_removed, real.objects_spared_young, real.objects_reencoded) == (1, 0, 1)


def test_a_reencoded_frame_identical_to_the_old_one_keeps_its_pack(
    repo: Repository, clock: FakeClock
) -> None:
    """Versions of one shape: a delta against any of them is the same bytes.

    So re-encoding the kept last version against the first gives the very pack
    it was in, under the same name; that pack must survive the removal of the old ones.
    """
    ids = [backup(repo, clock, {"id": "t", "round": number}) for number in range(4)]
    for sid in ids[1:3]:
        repo.delete_snapshot(repo.resolve(sid))
    report = collect_garbage(repo, grace=NO_GRACE)
    assert (report.objects_removed, report.objects_reencoded) == (2, 1)
    fresh = Repository.open(repo.backend)
    assert verify_repository(fresh).ok
    assert restore_documents(fresh, ids[3])[1] == {"t": b'{"id":"t","round":3}'}


def test_dedup_hit_refreshes_mtime_so_grace_protects_it(
    repo: Repository, clock: FakeClock, wall: Ticking
) -> None:
    first = backup(repo, clock, {"id": "a", "v": 1})
    wall.now += 10 * 3600
    # The object is now old; a snapshot that reuses it makes it young again.
    backup(repo, clock, {"id": "a", "v": 1})
    digest = repo.resolve(first).manifest.entries["a"].object
    info = repo.backend.stat(pack_key(repo.objects.index()[digest].pack))
    assert info is not None and info.mtime == wall.now
    plan = plan_gc(
        repo,
        snapshots=repo.snapshots(),
        removing={s.id for s in repo.snapshots()},
        grace=timedelta(hours=1),
        now=wall.now,
    )
    assert plan.objects_removed == 0
    assert plan.objects_spared_young == 1


def test_gc_refuses_when_a_manifest_is_damaged(repo: Repository, clock: FakeClock) -> None:
    sid = backup(repo, clock, {"id": "a"})
    key = repo.manifest_keys()[sid]  # type: ignore[index]
    tampered = repo.backend.get(key).replace(b'"manual"', b'"tenant-delete"')
    repo.backend.put(key, tampered, overwrite=True)
    objects_before = list(repo.objects.list())
    with pytest.raises(ChecksumMismatch):
        collect_garbage(repo, grace=NO_GRACE)
    assert list(repo.objects.list()) == objects_before


def test_gc_waits_for_running_snapshot(repo: Repository) -> None:
    with repo.locks.shared("snapshot", 0), pytest.raises(RepositoryLocked):
        collect_garbage(repo, grace=NO_GRACE, lock_timeout=0.05)


def test_empty_policy_refused_before_anything(repo: Repository, clock: FakeClock) -> None:
    backup(repo, clock, {"id": "a"})
    with pytest.raises(UsageError):
        cleanup(repo, RetentionPolicy(), grace=NO_GRACE)
    assert list(repo.backend.list("locks/")) == []


def test_service_cleanup_old_backups(tmp_path: Path) -> None:
    clock = FakeClock()
    service = BackupService(tmp_path / "b", retention_days=30, clock=clock)
    service.create_tenant_backup({"id": "a", "v": 1}, "tenant-update")
    service.create_tenant_backup({"id": "gone", "v": 1}, "tenant-delete")
    clock.advance(days=40)
    service.create_tenant_backup({"id": "a", "v": 2}, "tenant-update")
    assert service.cleanup_old_backups() == 1
    assert [service.load_backup(p).metadata.target_id for p in service.list_backups()] == [
        "a",
        "gone",
    ]
    assert service.cleanup_old_backups() == 0


def tenant_folder(folder: Path, round_number: int) -> Path:
    """40 tenants (enough for delta manifests); each round edits a few of them."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for number in range(40):
        edits = round_number if number < 3 else 0
        tenant = {"id": f"t{number:02d}", "name": f"Tenant {number}", "edits": edits}
        (folder / f"t{number:02d}.json").write_text(json.dumps(tenant))
    return folder


@pytest.mark.parametrize("command", ["cleanup", "gc"])
def test_dry_run_reports_every_figure_of_the_real_run(tmp_path: Path, command: str) -> None:
    from casbak.backends.local import LocalBackend
    from casbak.layout import PACK_PREFIX
    from tests.test_cli import run

    path = tmp_path / "repo"
    run(path, "init")
    for round_number in range(4):
        source = tenant_folder(tmp_path / "in", round_number)
        assert run(path, "snapshot", str(source), "--no-cache")[0] == 0
    repo = Repository.open(LocalBackend(path))
    if command == "gc":
        ordered = sorted(repo.snapshots(), key=lambda snap: snap.header.timestamp)
        repo.delete_snapshots([snap.key for snap in ordered[:-1]])
    repo.backend.put(f"{PACK_PREFIX}ab/ab" + "0" * 62, b"left by a crashed writer")
    options = ["--grace", "0s", *(["--keep-last", "1"] if command == "cleanup" else [])]

    code, out, _ = run(path, command, "--dry-run", *options)
    assert code == 0
    for done in ("orphan pack", "would rewrite", "would re-encode"):
        assert done in out
    assert ("would rebase" in out) == (command == "cleanup")
    code, out, _ = run(path, "--json", command, "--dry-run", *options)
    assert code == 0
    dry = json.loads(out)
    code, out, _ = run(path, "--json", command, *options)
    assert code == 0
    real = json.loads(out)

    assert dry.pop("dry_run") is True and real.pop("dry_run") is False
    assert dry == real
    busy = ["objects_removed", "bytes_freed", "packs_rewritten", "objects_reencoded"]
    busy += ["orphan_packs_removed", *(["manifests_rebased"] if command == "cleanup" else [])]
    assert all(real[figure] > 0 for figure in busy), real
    _, out, _ = run(path, "--json", "gc", "--dry-run", "--grace", "0s")
    after = json.loads(out)
    assert all(after[figure] == 0 for figure in busy), after
    assert run(path, "verify")[0] == 0
    code, out, _ = run(path, command, "--dry-run", *options)
    assert out.splitlines()[-1] == "would remove 0 snapshots (1 kept), 0 objects, 0 B"


def test_gc_moves_small_packs_into_full_sized_ones(tmp_path: Path) -> None:
    from casbak.backends.local import LocalBackend
    from casbak.gc import CONSOLIDATE_FROM
    from casbak.layout import PACK_PREFIX
    from casbak.maintenance import collect_garbage
    from casbak.service import restore_documents, take_snapshot
    from casbak.sources import documents_from_values
    from casbak.verify import verify_repository
    from tests.conftest import FakeClock

    repo = Repository.init(LocalBackend(tmp_path / "repo"))
    clock = FakeClock()
    for number in range(CONSOLIDATE_FROM + 3):
        documents = documents_from_values([{"id": f"t{number % 7}", "v": number}], "x")
        take_snapshot(repo, documents, operation="tenant-update", clock=clock)
    before = {s.id: restore_documents(repo, s.id)[1] for s in repo.snapshots()}
    assert len(list(repo.backend.list_names(PACK_PREFIX))) >= CONSOLIDATE_FROM
    planned = collect_garbage(repo, dry_run=True, grace=timedelta(0))
    assert planned.packs_consolidated >= CONSOLIDATE_FROM
    done = collect_garbage(repo, grace=timedelta(0))
    assert done.packs_consolidated == planned.packs_consolidated
    assert len(list(repo.backend.list_names(PACK_PREFIX))) == 1
    reopened = Repository.open(LocalBackend(tmp_path / "repo"))
    assert {s.id: restore_documents(reopened, s.id)[1] for s in reopened.snapshots()} == before
    assert verify_repository(reopened).damage == 0
    assert collect_garbage(reopened, dry_run=True).packs_consolidated == 0


def test_consolidation_decodes_each_moved_object_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames are checked along their delta chains, so no chain is decoded again per link."""
    from casbak.backends.local import LocalBackend
    from casbak.gc import CONSOLIDATE_FROM
    from casbak.store.reader import ObjectReader

    repo = Repository.init(LocalBackend(tmp_path / "repo"))
    clock = FakeClock()
    versions = CONSOLIDATE_FROM * 2
    for number in range(versions):
        tenant = {"id": f"t{number % 3}", "v": number, "pad": "x" * 400}
        documents = documents_from_values([tenant], "x")
        take_snapshot(repo, documents, operation="tenant-update", clock=clock)
    reopened = Repository.open(LocalBackend(tmp_path / "repo"))
    decoded: list[str] = []
    original = ObjectReader.decode_frame

    def counting(self: ObjectReader, digest: str, *args: Any, **kwargs: Any) -> bytes:
        decoded.append(digest)
        return original(self, digest, *args, **kwargs)

    monkeypatch.setattr(ObjectReader, "decode_frame", counting)
    done = collect_garbage(reopened, grace=NO_GRACE)
    assert done.packs_consolidated >= CONSOLIDATE_FROM
    assert len(decoded) == len(set(decoded))
    assert len(decoded) >= versions - 3


def test_bases_come_before_their_deltas_and_a_cycle_goes_last() -> None:
    from casbak.ids import Digest
    from casbak.store.indexfile import Location
    from casbak.store.sweep import _bases_before_deltas

    def at(name: str, base: str | None) -> tuple[Digest, Location]:
        digest = Digest(name * 64)
        return digest, Location(
            Digest("f" * 64), 0, 1, 1, Digest(base * 64) if base else None, None
        )

    moving = [
        at("c", "b"),
        at("b", "a"),
        at("d", "a"),
        at("a", None),
        at("e", "z"),
        at("1", "2"),
        at("2", "1"),
    ]
    order = [digest[0] for digest, _ in _bases_before_deltas(moving)]
    assert order.index("a") < order.index("b") < order.index("c")
    assert order.index("a") < order.index("d")
    assert "e" in order[:5]  # its base is not moving: a root
    assert sorted(order[-2:]) == ["1", "2"]
    assert len(order) == len(moving)


def test_delete_keys_removes_each_once_and_keeps_the_lock_alive() -> None:
    from casbak.objects import delete_keys

    backend = MemoryBackend()
    keys = [f"manifests/k{number:03d}" for number in range(40)]
    for key in keys[:30]:
        backend.put(key, b"x")
    beats: list[int] = []
    assert delete_keys(backend, keys, lambda: beats.append(1)) == 30
    assert len(beats) == 40
    assert not list(backend.list_names("manifests/"))


def test_removed_delta_manifests_go_deepest_first_though_removed_in_parallel(
    clock: FakeClock,
) -> None:
    import threading
    import time

    class Recording(MemoryBackend):
        def __init__(self) -> None:
            super().__init__()
            self.deleted: list[str] = []
            self.slower: dict[str, float] = {}
            self._guard = threading.Lock()

        def delete(self, key: str) -> None:
            # Deeper ones take longer: removals started together would end shallow first.
            time.sleep(self.slower.get(key, 0.0))
            with self._guard:
                self.deleted.append(key)
            super().delete(key)

    backend = Recording()
    repo = Repository.init(backend)
    tenants = [{"id": f"t{number:02d}", "v": 0} for number in range(60)]
    for number in range(30):
        tenants[number] = {"id": f"t{number:02d}", "v": 1}
        documents = documents_from_values(tenants, "x")
        take_snapshot(repo, documents, operation="sync-apply", target_id="all", clock=clock)
    snapshots = repo.snapshots()
    depth = {snap.key: snap.header.depth for snap in snapshots}
    assert max(depth.values()) > 1  # a chain of deltas
    backend.slower = {key: 0.002 * level for key, level in depth.items()}
    repo.delete_snapshots([snap.key for snap in snapshots[1:]])
    order = [depth[key] for key in backend.deleted if key in depth]
    assert len(order) == len(snapshots) - 1
    assert order == sorted(order, reverse=True)
    assert verify_repository(repo).damage == 0
