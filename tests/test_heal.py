"""Healing: import repairs every object a bundle holds that the repository lost or damaged.

Each reason an object can be unreadable in format 2 (its pack lost, its frame
damaged, its index record gone, its delta base gone) is produced on real
files, healed through the CLI, and followed by a clean verify, an exact
restore of every snapshot, and a second import that finds nothing to repair.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

import casbak.locks as locks_module
from casbak.backends.local import LocalBackend
from casbak.errors import CasbakError
from casbak.ids import hash_bytes
from casbak.layout import INDEX_PREFIX, PACK_PREFIX
from casbak.repository import Repository
from casbak.store.indexfile import decode_index
from casbak.transfer import import_bundle
from casbak.verify import verify_repository
from tests.conftest import FakeClock
from tests.faulty import Crash, injected
from tests.packed import drop_record, flip_inside, packs_of
from tests.test_cli import run
from tests.test_format2 import assert_restores, edit, take, tenants

Expected = dict[str, dict[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Expected]:
    """Three snapshots of 300 tenants taken as snapshots (so with deltas), and their bundle."""
    root = tmp_path_factory.mktemp("heal")
    repo = Repository.init(LocalBackend(root / "repo"))
    rng, clock = random.Random(5), FakeClock()
    documents = tenants(300, 2)
    expected: Expected = {}
    for number in range(3):
        if number:
            edit(documents, rng, 20)
        expected[take(repo, documents, clock)] = json.loads(json.dumps(documents))
    bundle = root / "all.casbak"
    assert run(root / "repo", "export", "--all", "-o", str(bundle))[0] == 0
    return root / "repo", bundle, expected


def copy_of(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    shutil.copytree(template, path)
    return path


def unreadable(path: Path) -> set[str]:
    """Objects the snapshots need that do not read back now."""
    repo = Repository.open(LocalBackend(path))
    needed = {e.object for snap in repo.snapshots() for e in snap.manifest.entries.values()}
    bad = set()
    for digest in needed:
        try:
            repo.objects.read(digest)
        except CasbakError:
            bad.add(digest)
    return bad


def heal(path: Path, bundle: Path, expected: Expected, tmp_path: Path) -> dict[str, Any]:
    """Import through the CLI; every unreadable object is repaired and counted as such."""
    damaged = unreadable(path)
    assert damaged
    assert run(path, "verify")[0] == 3
    code, out, err = run(path, "--json", "import", str(bundle))
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    assert result["objects_healed"] == len(damaged)
    assert result["objects"] == 0
    assert result["bytes"] > 0
    code, out, _ = run(path, "--json", "verify")
    assert code == 0, [f for f in json.loads(out)["findings"] if f["severity"] == "damage"]
    assert_restored(path, expected, tmp_path / "restored")
    total = result["objects_healed"] + result["objects_skipped"]
    again = json.loads(run(path, "--json", "import", str(bundle))[1])
    assert (again["objects_healed"], again["objects"], again["objects_skipped"]) == (0, 0, total)
    assert_one_record_each(path)
    return result


def assert_restored(path: Path, expected: Expected, out: Path) -> None:
    for snapshot_id, documents in expected.items():
        folder = out / snapshot_id
        code, _, err = run(path, "restore", snapshot_id, "--output", str(folder))
        assert code == 0, err
        restored = [json.loads(file.read_bytes()) for file in folder.glob("*.json")]
        assert {document["id"]: document for document in restored} == documents


def assert_one_record_each(path: Path) -> None:
    """No index file still names a superseded copy: nothing rests on which file is later."""
    seen: dict[str, str] = {}
    for file in sorted((path / INDEX_PREFIX).iterdir()):
        for digest in decode_index(file.read_bytes(), file.name):
            assert digest not in seen, f"{digest} in {seen.get(digest)} and {file.name}"
            seen[digest] = file.name
    # The same holds when every index file has one modification time (S3 keeps seconds).
    for file in (path / INDEX_PREFIX).iterdir():
        os.utime(file, (1_700_000_000, 1_700_000_000))
    assert verify_repository(Repository.open(LocalBackend(path))).ok


def test_import_heals_a_lost_pack(built: tuple[Path, Path, Expected], tmp_path: Path) -> None:
    _, bundle, expected = built
    path = tmp_path / "repo"
    assert run(path, "init")[0] == 0
    assert run(path, "import", str(bundle))[0] == 0
    (only,) = list(LocalBackend(path).list(PACK_PREFIX))
    (path / only.key).unlink()
    result = heal(path, bundle, expected, tmp_path)
    assert result["objects_skipped"] == 0  # every object was in the lost pack


def test_import_heals_a_damaged_frame_and_moves_its_neighbours_out(
    built: tuple[Path, Path, Expected], tmp_path: Path
) -> None:
    template, bundle, expected = built
    path = copy_of(template, tmp_path)
    index = packs_of(path).index()
    base = next(loc.base for loc in index.values() if loc.base and loc.base in index)
    damaged_pack = flip_inside(path, base)
    dependents = unreadable(path) - {base}
    assert dependents, "a delta against the damaged frame is unreadable too"
    heal(path, bundle, expected, tmp_path)
    # The damaged pack's intact objects were moved out: nothing names it any more.
    findings = json.loads(run(path, "--json", "verify")[1])["findings"]
    assert {"kind": "orphan-pack", "location": damaged_pack} in [
        {"kind": f["kind"], "location": f["location"]} for f in findings
    ]


def test_a_damaged_pack_is_rewritten_when_the_fresh_copy_has_its_very_name(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    repo = Repository.init(LocalBackend(source))
    clock = FakeClock()
    documents = tenants(70, 4)
    expected = {take(repo, documents, clock): json.loads(json.dumps(documents))}
    documents["newcomer"] = {"id": "newcomer", "plan": "free"}
    expected[take(repo, documents, clock)] = json.loads(json.dumps(documents))
    bundle = tmp_path / "b.casbak"
    assert run(source, "export", "--all", "-o", str(bundle))[0] == 0
    newcomer = repo.resolve("latest").manifest.entries["newcomer"].object
    key = flip_inside(source, newcomer)
    # A standalone frame compressed again is the same frame: the same pack, the same name.
    heal(source, bundle, expected, tmp_path)
    assert hash_bytes((source / key).read_bytes()) == key.rsplit("/", 1)[-1]


def test_import_heals_objects_whose_index_file_is_gone(
    built: tuple[Path, Path, Expected], tmp_path: Path
) -> None:
    template, bundle, expected = built
    path = copy_of(template, tmp_path)
    files = sorted(LocalBackend(path).list(INDEX_PREFIX), key=lambda info: info.mtime)
    (path / files[1].key).unlink()  # the second snapshot's records
    heal(path, bundle, expected, tmp_path)


def test_import_heals_a_delta_whose_base_record_is_gone(
    built: tuple[Path, Path, Expected], tmp_path: Path
) -> None:
    template, _, expected = built
    path = copy_of(template, tmp_path)
    repo = Repository.open(LocalBackend(path))
    oldest = min(repo.snapshots(), key=lambda snap: snap.header.timestamp)
    repo.delete_snapshot(oldest)  # its versions stay only as delta bases
    kept = {sid: documents for sid, documents in expected.items() if sid != oldest.id}
    bundle = tmp_path / "kept.casbak"
    assert run(path, "export", "--all", "-o", str(bundle))[0] == 0
    referenced = {e.object for snap in repo.snapshots() for e in snap.manifest.entries.values()}
    index = packs_of(path).index()
    base = next(
        loc.base for loc in index.values() if loc.base in index and loc.base not in referenced
    )
    assert base is not None
    drop_record(path, base)
    damaged = unreadable(path)
    assert damaged and base not in damaged
    heal(path, bundle, kept, tmp_path)


def test_a_healing_import_survives_a_crash_at_every_write_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "template"
    repo = Repository.init(LocalBackend(template))
    rng, clock = random.Random(7), FakeClock()
    documents = tenants(70, 3)
    expected: Expected = {}
    for number in range(2):
        if number:
            edit(documents, rng, 6)
        expected[take(repo, documents, clock)] = json.loads(json.dumps(documents))
    bundle = tmp_path / "b.casbak"
    assert run(template, "export", "--all", "-o", str(bundle))[0] == 0
    index = packs_of(template).index()
    flip_inside(template, next(loc.base for loc in index.values() if loc.base in index))
    before = unreadable(template)
    # The crashed "process" is this one; its lock must look like a dead process's.
    monkeypatch.setattr(locks_module, "_process_alive", lambda pid: False)

    def attempt(path: Path) -> None:
        import_bundle(Repository.open(LocalBackend(path)), lambda: bundle.open("rb"))

    scratch = tmp_path / "run"
    shutil.copytree(template, scratch)
    with injected() as counter:
        attempt(scratch)
    assert counter.count > 10
    for point in range(1, counter.count + 1):
        shutil.rmtree(scratch)
        shutil.copytree(template, scratch)
        with pytest.raises(Crash), injected(fail_at=point):
            attempt(scratch)
        assert unreadable(scratch) <= before, f"new damage after a crash at {point}"
        attempt(scratch)
        healed = Repository.open(LocalBackend(scratch))
        report = verify_repository(healed)
        assert report.ok, (point, [f for f in report.findings if f.severity == "damage"])
        assert_restores(healed, expected)


def test_healing_on_s3_where_modification_times_tie(s3_env: str, tmp_path: Path) -> None:
    """S3 keeps whole seconds: the fresh index file may look no newer than the one it replaces."""
    from casbak.backends.s3 import S3Backend
    from casbak.repository import backend_for
    from casbak.service import restore_documents
    from tests.test_cli import ROUND1, ROUND2

    assert run(s3_env, "init")[0] == 0
    assert run(s3_env, "snapshot", str(ROUND1))[0] == 0
    assert run(s3_env, "snapshot", str(ROUND2))[0] == 0
    bundle = tmp_path / "b.casbak"
    assert run(s3_env, "export", "--all", "-o", str(bundle))[0] == 0
    repo = Repository.open(backend_for(s3_env))
    expected = {snap.id: restore_documents(repo, snap.id)[1] for snap in repo.snapshots()}
    backend = S3Backend(s3_env)
    cut, lost = sorted(info.key for info in backend.list(PACK_PREFIX))
    backend.put(cut, backend.get(cut)[:-2], overwrite=True)
    backend.delete(lost)
    assert run(s3_env, "verify")[0] == 3
    code, out, err = run(s3_env, "--json", "import", str(bundle))
    assert code == 0, err
    assert json.loads(out)["objects_healed"] >= 2
    code, out, _ = run(s3_env, "--json", "verify")
    assert code == 0, json.loads(out)["findings"]
    healed = Repository.open(backend_for(s3_env))
    assert {sid: restore_documents(healed, sid)[1] for sid in expected} == expected
    named = [
        digest
        for info in backend.list(INDEX_PREFIX)
        for digest in decode_index(backend.get(info.key), info.key)
    ]
    assert len(named) == len(set(named))


@pytest.mark.parametrize("damage", ["lost", "flipped"])
def test_import_heals_objects_whose_dictionary_is_lost_or_damaged(
    built: tuple[Path, Path, Expected], tmp_path: Path, damage: str
) -> None:
    template, bundle, expected = built
    path = copy_of(template, tmp_path)
    (dictionary,) = (path / "dicts").iterdir()
    if damage == "lost":
        dictionary.unlink()
    else:
        data = bytearray(dictionary.read_bytes())
        data[len(data) // 2] ^= 0x01
        dictionary.write_bytes(bytes(data))
    heal(path, bundle, expected, tmp_path)
    # New snapshots neither use the damaged dictionary nor fail on it.
    documents = tenants(70, 8)
    take(Repository.open(LocalBackend(path)), documents, FakeClock())
    assert run(path, "verify")[0] == 0
