"""verify names the real place of format 2 damage, and restore says how to repair it.

A finding names the file (pack, index file), the object id, and the tenants
and snapshots it hurts; a pack that fails its check while snapshots need it is
damage. Everything runs through the CLI on real files.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from casbak.backends.local import LocalBackend
from casbak.ids import Digest
from casbak.layout import INDEX_PREFIX, PACK_PREFIX, pack_key
from casbak.repository import Repository
from tests.conftest import FakeClock
from tests.packed import flip_inside, packs_of
from tests.test_cli import run
from tests.test_format2 import edit, take, tenants


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three snapshots of 80 tenants, later ones partly deltas of earlier ones."""
    path = tmp_path_factory.mktemp("findings") / "repo"
    repo = Repository.init(LocalBackend(path))
    rng, clock = random.Random(11), FakeClock()
    documents = tenants(80, 6)
    for number in range(3):
        if number:
            edit(documents, rng, 8)
        take(repo, documents, clock)
    return path


@pytest.fixture
def path(template: Path, tmp_path: Path) -> Path:
    shutil.copytree(template, tmp_path / "repo")
    return tmp_path / "repo"


def users(path: Path, digest: str) -> tuple[list[str], list[str]]:
    """The snapshots and tenants that reference an object."""
    snapshots, tenant_ids = set(), set()
    for snap in Repository.open(LocalBackend(path)).snapshots():
        for tenant_id, entry in snap.manifest.entries.items():
            if entry.object == digest:
                snapshots.add(snap.id)
                tenant_ids.add(tenant_id)
    return sorted(snapshots), sorted(tenant_ids)


def verify(path: Path) -> tuple[int, list[dict[str, Any]]]:
    code, out, _ = run(path, "--json", "verify")
    return code, json.loads(out)["findings"]


def about(findings: list[dict[str, Any]], digest: str) -> dict[str, Any]:
    (found,) = [f for f in findings if f"object {digest} " in f["message"] + " "]
    return found


def a_base_and_its_delta(path: Path) -> tuple[Digest, Digest]:
    index = packs_of(path).index()
    delta, location = next(
        (d, loc) for d, loc in sorted(index.items()) if loc.base in index and users(path, d)[0]
    )
    assert location.base is not None
    return location.base, delta


def test_a_damaged_frame_is_named_by_its_pack_object_tenants_and_snapshots(path: Path) -> None:
    base, delta = a_base_and_its_delta(path)
    location = packs_of(path).index()[base]
    key = flip_inside(path, base)
    code, findings = verify(path)
    assert code == 3
    assert not [f for f in findings if f["location"].startswith("objects/")]
    damaged = about(findings, base)
    assert (damaged["kind"], damaged["severity"], damaged["location"]) == (
        "corrupt-object",
        "damage",
        key,
    )
    assert f"at offset {location.offset}" in damaged["message"]
    assert "indexed by index/" in damaged["message"]
    # It hurts the snapshots naming it and those needing the delta decoded against it.
    for digest in (base, delta):
        snapshots, tenants = users(path, digest)
        assert set(snapshots) <= set(damaged["snapshots"])
        assert set(tenants) <= set(damaged["tenants"])
    # The delta that cannot be decoded is named where it is, and blames its base.
    dependent = about(findings, delta)
    assert dependent["location"] == pack_key(packs_of(path).index()[delta].pack)
    assert f"its delta base {base} is damaged" in dependent["message"]
    assert (dependent["snapshots"], dependent["tenants"]) == users(path, delta)
    (pack,) = [f for f in findings if f["kind"] == "corrupt-pack"]
    assert (pack["location"], pack["severity"]) == (key, "damage")
    text = run(path, "verify")[1]
    assert f"DAMAGE corrupt-object {key}: object {base} at offset" in text


def test_a_damaged_base_no_snapshot_names_is_blamed_for_its_deltas(path: Path) -> None:
    repo = Repository.open(LocalBackend(path))
    repo.delete_snapshot(min(repo.snapshots(), key=lambda snap: snap.header.timestamp))
    referenced = {e.object for snap in repo.snapshots() for e in snap.manifest.entries.values()}
    index = packs_of(path).index()
    delta, location = next(
        (d, loc)
        for d, loc in sorted(index.items())
        if d in referenced and loc.base in index and loc.base not in referenced
    )
    assert location.base is not None
    key = flip_inside(path, location.base)
    code, findings = verify(path)
    assert code == 3
    damaged = about(findings, location.base)
    assert (damaged["kind"], damaged["location"]) == ("corrupt-object", key)
    snapshots, tenants = users(path, delta)
    assert set(snapshots) <= set(damaged["snapshots"]) and set(tenants) <= set(damaged["tenants"])
    assert f"its delta base {location.base} is damaged" in about(findings, delta)["message"]


def test_a_lost_index_file_leaves_objects_named_as_not_indexed_and_where(path: Path) -> None:
    files = sorted(LocalBackend(path).list(INDEX_PREFIX), key=lambda info: info.mtime)
    lost = packs_of(path).read_index(files[1].key)
    (path / files[1].key).unlink()
    code, findings = verify(path)
    assert code == 3
    loose = {pack_key(location.pack) for location in lost.values()}
    missing = [f for f in findings if f["kind"] == "missing-object"]
    assert missing
    for finding in missing:
        digest = finding["message"].split()[1]
        assert digest in lost
        assert finding["severity"] == "damage"
        assert finding["location"] == INDEX_PREFIX
        assert "is not indexed: no index file names it" in finding["message"]
        assert any(key in finding["message"] for key in loose), "says where its frame may be"
        assert (finding["snapshots"], finding["tenants"]) == users(path, digest)


def test_a_damaged_index_file_is_named_as_the_likely_cause(path: Path) -> None:
    key = next(iter(LocalBackend(path).list(INDEX_PREFIX))).key
    (path / key).write_bytes(b"not an index")
    code, findings = verify(path)
    assert code == 3
    (index,) = [f for f in findings if f["kind"] == "corrupt-index"]
    assert (index["location"], index["severity"]) == (key, "damage")
    missing = [f for f in findings if f["kind"] == "missing-object"]
    assert missing and all(f"damaged index files: {key}" in f["message"] for f in missing)


def test_objects_of_a_lost_pack_are_named_by_that_pack(path: Path) -> None:
    index = packs_of(path).index()
    pack = next(iter(LocalBackend(path).list(PACK_PREFIX))).key
    (path / pack).unlink()
    code, findings = verify(path)
    assert code == 3
    lost = [d for d, location in index.items() if pack_key(location.pack) == pack]
    referenced = [d for d in lost if users(path, d)[0]]
    assert referenced
    for digest in referenced:
        finding = about(findings, digest)
        assert (finding["kind"], finding["location"]) == ("missing-object", pack)
        assert finding["message"].endswith("the pack is missing")


def test_restoring_a_damaged_tenant_names_it_and_the_repair(path: Path, tmp_path: Path) -> None:
    base, _ = a_base_and_its_delta(path)
    (snapshot, *_), (tenant, *_) = users(path, base)
    flip_inside(path, base)
    out = tmp_path / "out"
    code, stdout, stderr = run(path, "restore", snapshot, "--tenant", tenant, "--output", str(out))
    assert code == 3
    assert stdout == ""
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert f"cannot restore tenant {tenant} of snapshot {snapshot[:12]}" in stderr
    assert "casbak import" in stderr
    assert not out.exists()
    code, _, stderr = run(path, "--json", "restore", snapshot, "--tenant", tenant, "--output", "-")
    assert code == 3
    assert json.loads(stderr)["code"] == 3


def test_a_damaged_pack_no_snapshot_needs_is_only_a_warning(path: Path) -> None:
    repo = Repository.open(LocalBackend(path))
    clock = FakeClock()
    clock.advance(days=3)
    take(repo, {"passing": {"id": "passing", "note": "x" * 300}}, clock)
    gone = repo.resolve("latest")
    key = pack_key(packs_of(path).index()[Digest(gone.manifest.entries["passing"].object)].pack)
    repo.delete_snapshot(gone)
    data = bytearray((path / key).read_bytes())
    data[-1] ^= 0x01
    (path / key).write_bytes(bytes(data))
    code, findings = verify(path)
    assert code == 0
    (pack,) = [f for f in findings if f["kind"] == "corrupt-pack"]
    assert (pack["location"], pack["severity"]) == (key, "warning")
