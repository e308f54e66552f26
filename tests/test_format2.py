"""Format 2: packs, dictionary and delta objects, delta manifests, migrate, bundles."""

from __future__ import annotations

import io
import json
import random
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import casbak.locks as locks_module
import casbak.repository as repository_module
from casbak.backends.local import LocalBackend
from casbak.errors import CasbakError
from casbak.gc import rebase_targets
from casbak.layout import INDEX_PREFIX, MANIFEST_PREFIX, PACK_PREFIX
from casbak.maintenance import cleanup, collect_garbage
from casbak.migrate import migrate
from casbak.repository import Repository
from casbak.retention import RetentionPolicy
from casbak.service import restore_documents, take_snapshot
from casbak.sources import documents_from_values
from casbak.store import MERGE_INDEXES_OVER, PackStore
from casbak.store.indexfile import decode_index
from casbak.storedmanifest import decode_stored
from casbak.transfer import export_bundle, import_bundle, select_snapshots
from casbak.verify import verify_repository
from tests.conftest import FakeClock, tree_state
from tests.faulty import Crash, injected
from tests.oldformats import as_format_1, as_format_2, as_format_3, without_provenance
from tests.test_cli import run


def tenants(count: int, seed: int) -> dict[str, dict[str, Any]]:
    """Tenants of one shape with random content, as an export would hold."""
    rng = random.Random(seed)
    found = {}
    for number in range(count):
        tenant_id = f"T{number:04d}{rng.getrandbits(40):010x}"
        found[tenant_id] = {
            "id": tenant_id,
            "name": f"Tenant {number}",
            "selfProvisioningDomains": [f"d{rng.getrandbits(24):06x}.example.com"],
            "customAttributes": {"plan": rng.choice(["free", "pro", "enterprise"]), "n": number},
            "settings": {"sessionTimeout": rng.randint(1, 90), "enabled": True},
            "secret": "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=120)),
        }
    return found


def edit(documents: dict[str, dict[str, Any]], rng: random.Random, share: int) -> None:
    for tenant_id in rng.sample(sorted(documents), share):
        documents[tenant_id]["settings"]["sessionTimeout"] += 1


def take(repo: Repository, documents: dict[str, dict[str, Any]], clock: FakeClock) -> str:
    clock.advance(hours=1)
    docs = documents_from_values(list(documents.values()), "t")
    return take_snapshot(repo, docs, clock=clock, operation="sync-apply").snapshot.id


def history(
    repo: Repository, rounds: int = 5, count: int = 80
) -> dict[str, dict[str, dict[str, Any]]]:
    """Snapshots of a changing set of tenants; returns what each snapshot must restore."""
    rng, clock = random.Random(3), FakeClock()
    documents = tenants(count, 1)
    expected = {}
    for number in range(rounds):
        if number:
            edit(documents, rng, 4)
            documents.pop(sorted(documents)[number])
        expected[take(repo, documents, clock)] = json.loads(json.dumps(documents))
    return expected


def assert_restores(repo: Repository, expected: dict[str, dict[str, dict[str, Any]]]) -> None:
    for snapshot_id, documents in expected.items():
        restored = restore_documents(repo, snapshot_id)[1]
        assert {k: json.loads(v) for k, v in restored.items()} == documents


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.init(LocalBackend(tmp_path / "repo"))


def test_history_round_trips_with_packs_deltas_and_a_dictionary(repo: Repository) -> None:
    expected = history(repo)
    assert_restores(repo, expected)
    report = verify_repository(repo)
    assert report.ok and not report.findings
    packs = repo.objects
    assert isinstance(packs, PackStore)
    index = packs.index()
    assert any(location.base for location in index.values()), "edits stored as deltas"
    assert any(location.dictionary for location in index.values()), "a dictionary was trained"
    depths = sorted(snap.header.depth for snap in repo.snapshots())
    assert depths == [0, 1, 2, 3, 4]
    # One pack per snapshot that added objects, never one file per object.
    assert len(list(repo.backend.list(PACK_PREFIX))) == 5


def test_a_full_manifest_every_max_depth(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repository_module, "MAX_DELTA_DEPTH", 2)
    expected = history(repo, rounds=6)
    snapshots = sorted(repo.snapshots(), key=lambda snap: snap.header.timestamp)
    assert [snap.header.depth for snap in snapshots] == [0, 1, 2, 0, 1, 2]
    assert_restores(repo, expected)


def test_small_snapshots_are_stored_whole(repo: Repository) -> None:
    clock = FakeClock()
    for version in range(3):
        take(repo, {"a": {"id": "a", "v": version}}, clock)
    assert {snap.header.parent for snap in repo.snapshots()} == {None}


def test_verify_finds_a_flipped_byte_in_a_pack(repo: Repository, tmp_path: Path) -> None:
    expected = history(repo, rounds=2)
    newest = max(repo.backend.list(PACK_PREFIX), key=lambda info: info.mtime)
    path = tmp_path / "repo" / newest.key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    code, out, _ = run(tmp_path / "repo", "--json", "verify")
    assert code == 3
    kinds = {finding["kind"] for finding in json.loads(out)["findings"]}
    assert "corrupt-object" in kinds and "corrupt-pack" in kinds
    victim = next(f for f in json.loads(out)["findings"] if f["kind"] == "corrupt-object")
    assert set(victim["snapshots"]) <= set(expected) and victim["tenants"]


def test_verify_finds_a_missing_pack_index_and_dictionary(tmp_path: Path) -> None:
    for removed in (PACK_PREFIX, INDEX_PREFIX, "dicts/"):
        path = tmp_path / removed.strip("/")
        repo = Repository.init(LocalBackend(path))
        history(repo, rounds=2)
        first = next(iter(repo.backend.list(removed)))
        repo.backend.delete(first.key)
        report = verify_repository(Repository.open(LocalBackend(path)))
        assert not report.ok, removed
        assert {f.kind for f in report.findings} & {"missing-object", "corrupt-object"}


def test_verify_finds_a_damaged_index_file(repo: Repository, tmp_path: Path) -> None:
    history(repo, rounds=2)
    key = next(iter(repo.backend.list(INDEX_PREFIX))).key
    (tmp_path / "repo" / key).write_bytes(b"not an index")
    report = verify_repository(Repository.open(LocalBackend(tmp_path / "repo")))
    assert "corrupt-index" in {f.kind for f in report.findings}
    assert not report.ok


def test_a_tampered_delta_manifest_is_caught(repo: Repository, tmp_path: Path) -> None:
    history(repo, rounds=3)
    newest = max(repo.snapshots(), key=lambda snap: snap.header.timestamp)
    stored = json.loads(repo.backend.get(newest.key))
    stored["description"] = "forged"
    repo.backend.put(newest.key, json.dumps(stored).encode(), overwrite=True)
    code, out, _ = run(tmp_path / "repo", "--json", "verify")
    assert code == 3
    assert json.loads(out)["findings"][0]["kind"] == "tampered-manifest"


def test_a_missing_parent_manifest_is_damage(repo: Repository, tmp_path: Path) -> None:
    history(repo, rounds=3)
    oldest = min(repo.snapshots(), key=lambda snap: snap.header.timestamp)
    (tmp_path / "repo" / oldest.key).unlink()
    code, out, _ = run(tmp_path / "repo", "--json", "verify")
    assert code == 3
    damage = [f for f in json.loads(out)["findings"] if f["severity"] == "damage"]
    assert {f["kind"] for f in damage} == {"corrupt-manifest"}
    assert "parent" in damage[0]["message"]


def test_cleanup_rebases_kept_deltas_and_gc_rewrites_packs(
    repo: Repository, tmp_path: Path
) -> None:
    expected = history(repo, rounds=6)
    ordered = sorted(repo.snapshots(), key=lambda snap: snap.header.timestamp)
    report = cleanup(
        repo,
        RetentionPolicy(keep_last=2),
        grace=timedelta(0),
        clock=lambda: ordered[-1].header.timestamp,
    )
    assert report.snapshots_removed == 4
    kept = {snap.id for snap in repo.snapshots()}
    assert kept == {ordered[4].id, ordered[5].id}
    headers = {snap.id: snap.header for snap in repo.snapshots()}
    assert headers[ordered[4].id].parent is None  # its parents went: stored whole now
    assert headers[ordered[5].id].parent == ordered[4].id
    assert_restores(repo, {sid: expected[sid] for sid in kept})
    assert verify_repository(repo).ok
    again = collect_garbage(repo, grace=timedelta(0))
    assert again.objects_removed == 0
    report = verify_repository(repo)
    assert report.ok and not [f for f in report.findings if f.kind != "orphan-object"]


def test_gc_sweeps_unreferenced_objects_out_of_shared_packs(repo: Repository) -> None:
    clock = FakeClock()
    base = tenants(70, 5)
    first = take(repo, base, clock)
    extra = dict(base, extra={"id": "extra", "payload": "x" * 500})
    doomed = take(repo, extra, clock)
    final = dict(base)
    final.pop(sorted(final)[0])
    last = take(repo, final, clock)
    for snap in repo.snapshots():
        if snap.id in (first, doomed):
            repo.delete_snapshot(snap)
    before = sum(info.size for info in repo.backend.list(PACK_PREFIX))
    report = collect_garbage(repo, grace=timedelta(0))
    assert report.objects_removed == 2  # "extra" and the tenant the last round dropped
    after = sum(info.size for info in repo.backend.list(PACK_PREFIX))
    assert after < before
    assert len(list(repo.backend.list(INDEX_PREFIX))) == 1
    assert_restores(repo, {last: json.loads(json.dumps(final))})
    assert verify_repository(repo).ok


def test_gc_keeps_a_rewritten_pack_that_is_named_like_the_old_one(repo: Repository) -> None:
    # Two tenants whose ids differ only in one character get byte-identical
    # delta frames, so two snapshots store the same pack. Removing one object
    # rewrites that pack into exactly its old bytes, under its old name.
    clock, expected = FakeClock(), {}
    for version in (0, 1):
        for who in ("a", "b"):
            documents = {f"{who}-t": {"id": f"{who}-t", "v": version}}
            expected[(who, version)] = (take(repo, documents, clock), documents)
    index = repo.objects.index()  # type: ignore[union-attr]
    latest = [repo.resolve(expected[(who, 1)][0]).manifest.entries[f"{who}-t"] for who in "ab"]
    assert len({index[entry.object].pack for entry in latest}) == 1  # one pack holds both
    for snap in repo.snapshots():
        if snap.id == expected[("a", 1)][0]:
            repo.delete_snapshot(snap)
    assert collect_garbage(repo, grace=timedelta(0)).objects_removed == 1
    fresh = Repository.open(repo.backend)
    assert_restores(fresh, {sid: docs for key, (sid, docs) in expected.items() if key != ("a", 1)})
    assert verify_repository(fresh).ok


def test_gc_removes_packs_a_crashed_writer_left_unindexed(repo: Repository) -> None:
    history(repo, rounds=1)
    repo.backend.put(f"{PACK_PREFIX}ab/ab" + "0" * 62, b"half a pack")
    assert "orphan-pack" in {f.kind for f in verify_repository(repo).findings}
    collect_garbage(repo, grace=timedelta(hours=1))
    assert repo.backend.stat(f"{PACK_PREFIX}ab/ab" + "0" * 62) is not None  # young: spared
    collect_garbage(repo, grace=timedelta(0))
    assert repo.backend.stat(f"{PACK_PREFIX}ab/ab" + "0" * 62) is None


def test_index_files_are_merged_when_many(repo: Repository) -> None:
    clock = FakeClock()
    for number in range(MERGE_INDEXES_OVER + 3):
        take(repo, {"t": {"id": "t", "v": number}}, clock)
    assert len(list(repo.backend.list(INDEX_PREFIX))) <= MERGE_INDEXES_OVER
    fresh = Repository.open(repo.backend)
    assert len(fresh.objects.index()) == MERGE_INDEXES_OVER + 3  # type: ignore[union-attr]
    assert verify_repository(fresh).ok


OLD_FORMATS = {1: as_format_1, 2: as_format_2, 3: as_format_3}


def old_repository(path: Path, version: int, **history_options: int) -> dict[str, Any]:
    with without_provenance():
        expected = history(Repository.init(LocalBackend(path)), **history_options)
    OLD_FORMATS[version](path)
    return expected


@pytest.mark.parametrize("version", [1, 2, 3])
def test_older_formats_are_refused_with_a_pointer_to_migrate(tmp_path: Path, version: int) -> None:
    old_repository(tmp_path / "old", version, rounds=2)
    before = tree_state(tmp_path / "old")
    for command in (["list"], ["snapshot", "-"], ["verify"], ["gc"]):
        code, _, err = run(tmp_path / "old", *command)
        assert code == 12
        assert f"format {version} repository; run 'casbak migrate'" in err
    assert tree_state(tmp_path / "old") == before


@pytest.mark.parametrize("version", [1, 2, 3])
def test_migrate_keeps_ids_and_content(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old"
    expected = old_repository(path, version)
    code, out, _ = run(path, "--json", "migrate")
    assert code == 0, out
    result = json.loads(out)
    assert (result["from_version"], result["to_version"]) == (version, 4)
    assert result["snapshots"] == 5
    if version == 1:
        assert result["bytes_after"] < result["bytes_before"]
    repo = Repository.open(LocalBackend(path))
    assert repo.version == 4
    assert {snap.id for snap in repo.snapshots()} == set(expected)
    assert_restores(repo, expected)
    assert list(repo.backend.list("objects/")) == []
    assert not [key for key in repo.backend.list_names(MANIFEST_PREFIX) if key.endswith(".snap")]
    report = verify_repository(repo)
    assert report.ok and not report.findings
    before = tree_state(path)
    assert run(path, "migrate")[0] == 0
    assert tree_state(path).keys() == before.keys()
    later = FakeClock()
    later.advance(hours=100)
    take(Repository.open(LocalBackend(path)), {"new": {"id": "new"}}, later)
    assert verify_repository(Repository.open(LocalBackend(path))).ok


@pytest.mark.parametrize("version", [1, 2, 3])
def test_migrate_interrupted_at_every_write_point_is_safe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    # The crashed "process" is this one; its lock must look like a dead process's.
    monkeypatch.setattr(locks_module, "_process_alive", lambda pid: False)
    template = tmp_path / "template"
    expected = old_repository(template, version, rounds=3, count=70)
    original = tree_state(template)
    old_files = [
        key for key in original if key == "config" or key.startswith(("objects/", "manifests/"))
    ]
    point = 0
    while True:
        point += 1
        path = tmp_path / f"run-{point}"
        shutil.copytree(template, path)
        finished = True
        with injected(fail_at=point):
            try:
                migrate(Repository.open(LocalBackend(path), for_migration=True), lock_timeout=0)
            except (Crash, CasbakError):
                finished = False
        repo = Repository.open(LocalBackend(path), for_migration=True)
        if repo.version == 4:
            report = verify_repository(repo)
            assert not [f for f in report.findings if f.severity == "damage"], (point, report)
            assert_restores(repo, expected)
        else:
            # Not yet committed: every file of the old format is as it was.
            now = tree_state(path)
            assert {k: v for k, v in original.items() if k in old_files} == {
                k: now[k] for k in old_files
            }, point
        migrate(Repository.open(LocalBackend(path), for_migration=True), lock_timeout=0)
        repo = Repository.open(LocalBackend(path))
        assert repo.version == 4
        assert verify_repository(repo).ok
        assert_restores(repo, expected)
        shutil.rmtree(path)
        if finished:
            break
    assert point > (20 if version == 1 else 3)


def test_import_heals_a_damaged_packed_object(repo: Repository, tmp_path: Path) -> None:
    expected = history(repo, rounds=2)
    bundle = io.BytesIO()
    export_bundle(repo, select_snapshots(repo, everything=True), bundle)
    first = min(repo.backend.list(PACK_PREFIX), key=lambda info: info.mtime)
    path = tmp_path / "repo" / first.key
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    assert not verify_repository(Repository.open(repo.backend)).ok
    result = import_bundle(Repository.open(repo.backend), lambda: io.BytesIO(bundle.getvalue()))
    assert result.objects_healed >= 1
    healed = Repository.open(repo.backend)
    report = verify_repository(healed)
    assert report.ok, report.findings
    assert_restores(healed, expected)


@settings(max_examples=200, deadline=2000)
@given(st.binary(max_size=400))
def test_index_and_manifest_decoders_refuse_garbage_cleanly(data: bytes) -> None:
    for decoder in (decode_index, decode_stored):
        try:
            decoder(data, "fuzz")
        except CasbakError:
            pass


def test_a_base_prefix_with_two_candidates_is_settled_by_the_hash(repo: Repository) -> None:
    clock = FakeClock()
    documents = tenants(70, 9)
    take(repo, documents, clock)
    edit(documents, random.Random(1), 3)
    take(repo, documents, clock)
    packs = repo.objects
    assert isinstance(packs, PackStore)
    index = packs.index()
    delta, location = next((d, loc) for d, loc in index.items() if loc.base)
    assert location.base is not None
    base = location.base
    impostor = base[:16] + ("0" if base[16] != "0" else "1") * 48
    index[impostor] = index[base]  # same bytes, so it cannot hash to the impostor's name
    index[delta] = msgspec.structs.replace(location, base=None, unresolved_base=base[:16])
    packs._bases.clear()
    canonical = packs.read(delta)
    assert json.loads(canonical)["id"] in documents
    # gc cannot tell which candidate is the base: losing either means a standalone copy.
    assert rebase_targets(index, {delta, base}, {impostor}) == {delta: None}
    assert rebase_targets(index, {delta, base, impostor}, ()) == {}
    index[delta] = msgspec.structs.replace(location, base=None, unresolved_base="ab" * 8)
    packs._bases.clear()
    with pytest.raises(CasbakError, match="delta base"):
        packs.read(delta)
