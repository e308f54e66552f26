"""verify against real damage: each case on a fresh repository with several snapshots."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from casbak.backends.local import LocalBackend
from casbak.ids import hash_bytes
from casbak.layout import INDEX_PREFIX
from casbak.repository import Repository
from casbak.service import take_snapshot
from casbak.sources import documents_from_values
from casbak.verify import verify_repository
from tests.conftest import FakeClock, tree_state
from tests.packed import (
    cut_inside,
    drop_record,
    flip_inside,
    frame_of,
    overwrite_frame,
    rewrite_records,
)
from tests.test_cli import run


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, Repository, list[str]]:
    """Three snapshots; tenant 'shared' is the same document in all of them.

    Each snapshot writes one pack; 'own-N' is the last frame of its snapshot's pack.
    """
    path = tmp_path / "repo"
    repo = Repository.init(LocalBackend(path))
    clock = FakeClock()
    ids = []
    for version in range(3):
        docs = documents_from_values(
            [
                {"id": "shared", "v": 0},
                {"id": "changing", "v": version},
                {"id": f"own-{version}", "pad": "p" * 200},
            ],
            "t",
        )
        ids.append(take_snapshot(repo, docs, clock=clock).snapshot.id)
    return path, repo, ids


def object_of(repo: Repository, snapshot_id: str, tenant: str) -> str:
    return repo.resolve(snapshot_id).manifest.entries[tenant].object


def verify_cli(path: Path, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    before = tree_state(path)
    code, out, _ = run(path, "--json", "verify", *args)
    assert tree_state(path) == before, "verify changed the repository"
    return code, json.loads(out)


def kinds(report: dict) -> list[str]:  # type: ignore[type-arg]
    return [f["kind"] for f in report["findings"]]


def test_clean_repository(damaged: tuple[Path, Repository, list[str]]) -> None:
    path, _, _ids = damaged
    code, report = verify_cli(path)
    assert code == 0
    assert report["ok"] is True
    assert report["snapshots_checked"] == 3
    assert report["objects_stored"] == 7
    assert report["bytes_checked"] > 0
    assert report["findings"] == []


def _not_zstd(path: Path, digest: str) -> str:
    return overwrite_frame(path, digest, b"plain text")


CASES: dict[str, tuple[Callable[[Path, str], object], str]] = {
    "flip one byte": (flip_inside, "corrupt-object"),
    "truncate": (cut_inside, "corrupt-object"),
    "lose its index record": (drop_record, "missing-object"),
    "not zstd": (_not_zstd, "corrupt-object"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_object_of_one_snapshot(
    damaged: tuple[Path, Repository, list[str]], case: str
) -> None:
    path, repo, ids = damaged
    harm, kind = CASES[case]
    digest = object_of(repo, ids[1], "own-1")
    pack, _ = frame_of(path, digest)
    harm(path, digest)
    code, report = verify_cli(path)
    assert code == 3
    assert report["ok"] is False
    damage = [f for f in report["findings"] if f["severity"] == "damage"]
    (finding,) = [f for f in damage if f["kind"] == kind]
    assert f"object {digest}" in finding["message"]
    assert finding["snapshots"] == [ids[1]]
    assert finding["tenants"] == ["own-1"]
    if kind == "missing-object":
        # Its frame is still in the pack, which is intact; only the record is gone.
        assert finding["location"] == INDEX_PREFIX
        assert report["damage"] == 1
    else:
        # The pack fails its check too, and snapshots need what it holds.
        assert finding["location"] == pack
        assert [(f["kind"], f["location"]) for f in damage if f is not finding] == [
            ("corrupt-pack", pack)
        ]
        assert report["damage"] == 2


def test_object_replaced_by_another_valid_object(
    damaged: tuple[Path, Repository, list[str]],
) -> None:
    path, repo, ids = damaged
    victim = object_of(repo, ids[0], "own-0")
    # Its record points at another object's frame: standalone, of the very same size.
    _, other = frame_of(path, object_of(repo, ids[2], "own-2"))
    assert other.base is None and other.size == frame_of(path, victim)[1].size
    rewrite_records(path, {victim: other})
    code, report = verify_cli(path)
    assert code == 3
    (finding,) = [f for f in report["findings"] if f["severity"] == "damage"]
    assert finding["kind"] == "corrupt-object"
    assert f"object {victim}" in finding["message"]
    assert "hashes to" in finding["message"]
    assert finding["snapshots"] == [ids[0]]


def test_shared_object_lost_hurts_every_snapshot(
    damaged: tuple[Path, Repository, list[str]],
) -> None:
    path, repo, ids = damaged
    drop_record(path, object_of(repo, ids[0], "shared"))
    code, report = verify_cli(path)
    assert code == 3
    (finding,) = report["findings"]
    assert finding["kind"] == "missing-object"
    assert finding["snapshots"] == sorted(ids)
    assert finding["tenants"] == ["shared"]
    code, text, _ = run(path, "verify")
    assert code == 3
    assert "DAMAGE missing-object" in text
    assert "tenants shared" in text


def test_manifest_edited_by_hand(damaged: tuple[Path, Repository, list[str]]) -> None:
    path, repo, ids = damaged
    manifest = path / repo.manifest_keys()[ids[2]]  # type: ignore[index]
    manifest.write_bytes(manifest.read_bytes().replace(b'"manual"', b'"tenant-delete"'))
    code, report = verify_cli(path)
    assert code == 3
    (finding,) = report["findings"]
    assert finding["kind"] == "tampered-manifest"
    assert finding["snapshots"] == [ids[2]]
    assert finding["tenants"] == ["changing", "own-2", "shared"]
    manifest.write_bytes(b"{broken")
    code, report = verify_cli(path)
    assert code == 3
    assert report["damage"] == 1
    # Unreadable, so its objects can only be reported as unreferenced.
    assert sorted(kinds(report)) == ["corrupt-manifest", "orphan-object", "orphan-object"]
    (finding,) = [f for f in report["findings"] if f["severity"] == "damage"]
    assert finding["snapshots"] == [ids[2]]


def test_manifest_that_hashes_right_but_is_not_a_manifest(
    damaged: tuple[Path, Repository, list[str]],
) -> None:
    path, _repo, _ = damaged
    for content, kind in [
        (b'{"version": 1}', "corrupt-manifest"),
        (b'{"version": 9}', "unsupported-manifest"),
    ]:
        sid = hash_bytes(content)
        (path / "manifests" / f"2025-01-01T00-00-00_op_t_{sid}.json").write_bytes(content)
        code, report = verify_cli(path)
        assert code == 3
        assert kind in kinds(report)


def test_garbage_files_in_every_folder_are_reported_not_damage(
    damaged: tuple[Path, Repository, list[str]],
) -> None:
    path, _, _ = damaged
    garbage = [
        "junk.txt",
        "packs/notes",
        "packs/ab/garbage.json",
        "packs/zz/" + "0" * 64,
        "dicts/" + "0" * 63,
        "manifests/notes.txt",
        "locks/held-by-me",
        "objects/ab/" + "ab" * 32,  # a format 1 object file is no part of this format
    ]
    (path / "objects").mkdir(mode=0o700)
    for name in garbage:
        (path / name).parent.mkdir(exist_ok=True, mode=0o700)
        (path / name).write_bytes(b"x")
        os.chmod(path / name, 0o600)
    (path / "packs" / ".tmp-0123456789abcdef").write_bytes(b"partial")
    os.chmod(path / "packs" / ".tmp-0123456789abcdef", 0o600)
    os.utime(path / "packs" / ".tmp-0123456789abcdef", (1, 1))  # left by a crash long ago
    (path / "packs" / ".tmp-fedcba9876543210").write_bytes(b"in flight")
    os.chmod(path / "packs" / ".tmp-fedcba9876543210", 0o600)
    code, report = verify_cli(path)
    assert code == 0
    unknown = sorted(f["location"] for f in report["findings"] if f["kind"] == "unknown-file")
    assert unknown == sorted(garbage)
    temp = [f["location"] for f in report["findings"] if f["kind"] == "temp-file"]
    assert temp == [str(path / "packs" / ".tmp-0123456789abcdef")]


def test_orphans_stale_locks_and_permissions(damaged: tuple[Path, Repository, list[str]]) -> None:
    path, repo, ids = damaged
    repo.delete_snapshot(repo.resolve(ids[0]))
    lock = path / "locks" / "shared-0123456789abcdef.json"
    lock.write_bytes(
        json.dumps(
            {
                "kind": "shared",
                "host": os.uname().nodename,
                "pid": 2**22 + 7,
                "operation": "snapshot",
                "created": "2025-01-01T00:00:00Z",
            }
        ).encode()
    )
    os.chmod(lock, 0o600)
    os.chmod(path / "config", 0o644)
    code, report = verify_cli(path)
    assert code == 0
    assert kinds(report).count("orphan-object") == 2
    assert "stale-lock" in kinds(report)
    assert [f["location"] for f in report["findings"] if f["kind"] == "wrong-permissions"] == [
        str(path / "config")
    ]


def test_config_unknown_version_and_missing(damaged: tuple[Path, Repository, list[str]]) -> None:
    path, _, _ = damaged
    config = json.loads((path / "config").read_text())
    config["version"] += 1
    (path / "config").write_text(json.dumps(config))
    os.chmod(path / "config", 0o600)
    code, report = verify_cli(path)
    assert code == 12
    assert kinds(report) == ["unsupported-version"]
    (path / "config").write_text("{}")
    code, report = verify_cli(path)
    assert code == 3
    assert kinds(report) == ["corrupt-config"]
    (path / "config").unlink()
    assert run(path, "verify")[0] == 10


def test_quick_checks_presence_only(damaged: tuple[Path, Repository, list[str]]) -> None:
    path, repo, ids = damaged
    flip_inside(path, object_of(repo, ids[1], "own-1"))
    code, report = verify_cli(path, "--quick")
    assert code == 0
    assert report["mode"] == "quick"
    assert report["bytes_checked"] == 0
    drop_record(path, object_of(repo, ids[2], "own-2"))
    code, report = verify_cli(path, "--quick")
    assert code == 3
    assert kinds(report) == ["missing-object"]


def test_limit_to_snapshots(damaged: tuple[Path, Repository, list[str]]) -> None:
    path, repo, ids = damaged
    drop_record(path, object_of(repo, ids[1], "own-1"))
    code, report = verify_cli(path, "--snapshot", ids[0][:8], "--snapshot", ids[2])
    assert code == 0
    assert report["snapshots_checked"] == 2
    code, report = verify_cli(path, "--snapshot", ids[1])
    assert code == 3


def test_progress_callback_and_memory_backend(memory_repo: Repository) -> None:
    docs = documents_from_values([{"id": str(i)} for i in range(5)], "t")
    take_snapshot(memory_repo, docs)
    seen: list[tuple[int, int, int]] = []
    report = verify_repository(memory_repo, progress=lambda *a: seen.append(a))
    assert report.ok
    assert seen[-1][:2] == (5, 5)
    assert seen[-1][2] == report.bytes_checked


def test_progress_bar_on_a_terminal(
    damaged: tuple[Path, Repository, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    path, _, _ = damaged
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    from casbak.cli.context import Context
    from casbak.cli.output import ProgressBar

    bar = ProgressBar(Context(str(path), False, False), "verifying")
    with bar as update:
        assert update is not None
        update(1, 2, 10)
        update(2, 2, 20)
