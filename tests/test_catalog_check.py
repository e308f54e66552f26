"""verify compares the catalog with the manifests (warnings, never damage); gc, cleanup and
forget work from the manifests and write the catalog afresh when it disagrees; the same on S3."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

import casbak.repository as repository_module
from casbak import history
from casbak.backends.base import Backend
from casbak.backends.local import LocalBackend
from casbak.backends.memory import MemoryBackend
from casbak.catalogdata import (
    CATALOG_VERSION,
    Bucket,
    Chunk,
    JournalEntry,
    bucket_of,
    encode_part,
    micros_of,
    part_name,
)
from casbak.findings import Finding
from casbak.layout import (
    CATALOG_HEAD_KEY,
    CATALOG_JOURNAL_PREFIX,
    CATALOG_LOCK_KEY,
    CATALOG_PART_PREFIX,
    catalog_journal_key,
    catalog_part_key,
)
from casbak.maintenance import cleanup, collect_garbage, forget
from casbak.repository import Repository, backend_for
from casbak.retention import RetentionPolicy
from casbak.service import restore_documents
from casbak.verify import verify_repository
from tests.catalogtools import CATALOG_KINDS, Moments, assert_agrees, snap, starts
from tests.conftest import FakeClock, tree_state
from tests.test_cli import run

WAY_OUT = "the catalog is a cache of the manifests"


def three(repo: Repository) -> list[str]:
    """Three snapshots of two targets; the middle one holds a tenant of its own."""
    clock = FakeClock()
    return [
        snap(repo, clock, {"id": "a", "v": 1}, target="a"),
        snap(repo, clock, {"id": "a", "v": 1}, {"id": "own", "pad": "p" * 200}, target="b"),
        snap(repo, clock, {"id": "a", "v": 2}, target="a"),
    ]


def rewrite(repo: Repository, change: Callable[[list[Any]], list[Any]]) -> None:
    """Write the catalog afresh from what it holds now, changed by ``change``."""
    added = history.everything_but(repo.view(), set(), {})
    repo.catalog.write_fresh(change(added), repo.catalog.journal_end(), purge=True)


def without(snapshot_id: str) -> Callable[[list[Any]], list[Any]]:
    return lambda added: [a for a in added if a.record.hex_id != snapshot_id]


def catalog_findings(repo: Repository) -> list[Finding]:
    report = verify_repository(Repository.open(repo.backend))
    assert report.ok, "a catalog problem is never damage"
    found = [f for f in report.findings if f.kind in CATALOG_KINDS]
    assert all(f.severity == "warning" and WAY_OUT in f.message for f in found)
    return found


def test_verify_names_snapshots_the_catalog_lacks_or_invents(tmp_path: Path) -> None:
    repo = Repository.init(LocalBackend(tmp_path / "repo"))
    ids = three(repo)
    rewrite(repo, without(ids[1]))
    (found,) = catalog_findings(repo)
    assert (found.kind, found.location, found.snapshots) == (
        "stale-catalog",
        "catalog/head",
        [ids[1]],
    )
    assert found.message.startswith(
        "the catalog lacks snapshots whose manifests exist (1 snapshot)"
    )
    assert "'casbak gc' writes it afresh" in found.message
    before = tree_state(tmp_path / "repo")
    code, out, _ = run(tmp_path / "repo", "--json", "verify")
    assert code == 0
    assert [f["kind"] for f in json.loads(out)["findings"]] == ["stale-catalog"]
    code, out, _ = run(tmp_path / "repo", "verify")
    assert "warning stale-catalog catalog/head: the catalog lacks" in out
    assert out.rstrip().endswith("no damage")
    assert tree_state(tmp_path / "repo") == before  # verify never changes the repository
    repo.backend.delete(repo.resolve(ids[2]).key)  # a manifest removed by hand
    kinds = {(f.message.split(" (")[0], tuple(f.snapshots)) for f in catalog_findings(repo)}
    assert kinds == {
        ("the catalog lacks snapshots whose manifests exist", (ids[1],)),
        ("the catalog lists snapshots that no manifest holds", (ids[2],)),
    }


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("description", {"description": "not what the manifest says"}),
        ("parent", {"parent": b"\x01" * 32, "depth": 1}),
        ("provenance", {"provenance": {"user": "mallory"}}),
        ("key", {"key": "manifests/elsewhere.json"}),
    ],
)
def test_verify_names_records_that_differ_from_the_manifests(
    field: str, change: dict[str, Any]
) -> None:
    repo = Repository.init(MemoryBackend())
    ids = three(repo)

    def alter(added: list[Any]) -> list[Any]:
        return [
            msgspec.structs.replace(a, record=msgspec.structs.replace(a.record, **change))
            if a.record.hex_id == ids[0]
            else a
            for a in added
        ]

    rewrite(repo, alter)
    found = catalog_findings(repo)
    assert [(f.message.split(";")[0], f.snapshots) for f in found][:1] == [
        (f"the catalog records differ from the manifests in {field} (1 snapshot)", [ids[0]])
    ]


def test_verify_names_the_tenants_and_times_the_catalog_has_wrong() -> None:
    repo = Repository.init(MemoryBackend())
    ids = three(repo)

    def alter(added: list[Any]) -> list[Any]:
        changed = []
        for told in added:
            new = told
            if told.record.hex_id == ids[1]:
                new = msgspec.structs.replace(told, entries=told.entries[:1])
            if told.record.hex_id == ids[2]:  # a time of its own, told consistently
                record = msgspec.structs.replace(told.record, timestamp="2020-01-01T00:00:00Z")
                new = msgspec.structs.replace(told, record=record, micros=micros_of(record.time()))
            changed.append(new)
        return changed

    rewrite(repo, alter)
    found = {f.message.split(" (")[0]: f.snapshots for f in catalog_findings(repo)}
    assert found == {
        "the catalog records differ from the manifests in tenants held": [ids[1]],
        "the catalog records differ from the manifests in timestamp": [ids[2]],
    }


def _break_head(repo: Repository) -> str:
    repo.backend.put(CATALOG_HEAD_KEY, b"not a head", overwrite=True)
    return CATALOG_HEAD_KEY


def _lose_a_part(repo: Repository) -> str:
    head = repo.catalog.head()
    assert head is not None
    key = catalog_part_key(head.chunks[0])
    repo.backend.delete(key)
    return key


def _flip_a_part(repo: Repository) -> str:
    head = repo.catalog.head()
    assert head is not None
    key = catalog_part_key(head.buckets[bucket_of("a")])
    data = bytearray(repo.backend.get(key))
    data[-3] ^= 0xFF
    repo.backend.put(key, bytes(data), overwrite=True)
    return key


def _break_a_journal_entry(repo: Repository) -> str:
    head = repo.catalog.head()
    assert head is not None
    key = catalog_journal_key(head.journal + 1)
    repo.backend.put(key, encode_part(JournalEntry(CATALOG_VERSION, 0.0))[:-4])
    return key


def _misfile_a_target(repo: Repository) -> str:
    """A bucket, soundly encoded and named, whose target list names another's snapshot."""
    head = repo.catalog.head()
    assert head is not None
    index = bucket_of("a")
    old = repo.catalog.part(head.buckets[index], Bucket)
    targets = dict(old.targets)
    targets["a"] = targets["a"] + (1).to_bytes(4, "little")  # position 1 is target b's
    data = encode_part(Bucket(dict(old.tenants), targets, old.gaps))
    repo.backend.put(catalog_part_key(part_name(data)), data)
    buckets = list(head.buckets)
    buckets[index] = part_name(data)
    new_head = msgspec.structs.replace(head, buckets=buckets)
    repo.backend.put(CATALOG_HEAD_KEY, encode_part(new_head), overwrite=True)
    return catalog_part_key(part_name(data))


@pytest.mark.parametrize(
    ("damage", "kind", "what"),
    [
        (_break_head, "corrupt-catalog", "not a valid catalog part"),
        (_lose_a_part, "corrupt-catalog", "is missing"),
        (_flip_a_part, "corrupt-catalog", "does not hash to its name"),
        (_break_a_journal_entry, "corrupt-catalog", "is not a sound journal entry"),
        (_misfile_a_target, "stale-catalog", "list of target 'a' is wrong"),
    ],
)
def test_a_damaged_catalog_is_a_warning_and_gc_writes_it_afresh(
    tmp_path: Path, damage: Callable[[Repository], str], kind: str, what: str
) -> None:
    path = tmp_path / "repo"
    repo = Repository.init(LocalBackend(path))
    ids = three(repo)
    repo.catalog.compact()
    location = damage(repo)
    before = tree_state(path)
    code, out, _ = run(path, "--json", "verify")
    assert code == 0
    findings = [f for f in json.loads(out)["findings"] if f["kind"] in CATALOG_KINDS]
    assert [(f["kind"], f["severity"], f["location"]) for f in findings] == [
        (kind, "warning", location)
    ]
    assert (
        what in findings[0]["message"] and "'casbak gc' writes it afresh" in findings[0]["message"]
    )
    assert tree_state(path) == before
    code, out, _ = run(path, "gc", "--grace", "0s")
    assert code == 0
    assert "wrote the catalog afresh from the manifests" in out
    assert assert_agrees(repo) == ids[::-1]
    assert {info.key for info in repo.backend.list(CATALOG_PART_PREFIX)} == {
        catalog_part_key(name) for name in _named(repo)
    }
    assert list(repo.backend.list_names(CATALOG_JOURNAL_PREFIX)) == []
    code, out, _ = run(path, "--json", "gc")
    assert json.loads(out)["catalog_rebuilt"] is False


def _named(repo: Repository) -> set[str]:
    head = repo.catalog.head()
    assert head is not None
    return {*head.chunks, *head.buckets}


def test_what_a_crash_leaves_is_no_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Repository.init(MemoryBackend())
    three(repo)
    ghost = history.everything_but(repo.view(), set(), {})[0]
    renamed = msgspec.structs.replace(
        ghost, record=msgspec.structs.replace(ghost.record, id=b"\x07" * 32, key="manifests/x.json")
    )
    repo.catalog.append(JournalEntry(CATALOG_VERSION, time.time() - 10**6, added=[renamed]))
    assert catalog_findings(repo) == []  # a journal entry whose manifest never came
    repo.catalog.invalidate()
    assert catalog_findings(repo) == []  # no catalog at all: readers rebuild one
    assert repo.backend.stat(CATALOG_HEAD_KEY) is None


def test_verify_beside_a_writer_and_a_cleanup_reports_nothing(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    repo = Repository.init(LocalBackend(path))
    ids = three(repo)
    clock = FakeClock()
    clock.advance(days=1)
    backend = Moments(LocalBackend(path))
    # A snapshot lands after verify listed the manifests; a forget removes one as verify
    # turns to the catalog, and another snapshot lands during its second look.
    backend.at(
        starts("listed manifests/"),
        lambda: snap(Repository.open(LocalBackend(path)), clock, {"id": "new", "v": 1}),
    )
    backend.at(
        starts(f"get {CATALOG_HEAD_KEY}"),
        lambda: forget(Repository.open(LocalBackend(path)), [ids[0]], grace=timedelta(0)),
    )
    report = verify_repository(Repository.open(backend))
    assert backend.plans == []
    assert report.ok and [f for f in report.findings if f.kind in CATALOG_KINDS] == []
    assert len(assert_agrees(repo)) == 3


def test_a_real_disagreement_is_still_reported_while_a_writer_works(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    repo = Repository.init(LocalBackend(path))
    ids = three(repo)
    rewrite(repo, without(ids[1]))
    clock = FakeClock()
    clock.advance(days=1)
    backend = Moments(LocalBackend(path))
    backend.at(
        starts("listed manifests/"),
        lambda: snap(Repository.open(LocalBackend(path)), clock, {"id": "new", "v": 1}),
    )
    found = verify_repository(Repository.open(backend)).findings
    assert [(f.kind, f.snapshots) for f in found if f.kind in CATALOG_KINDS] == [
        ("stale-catalog", [ids[1]])
    ]


# gc, cleanup and forget work from the manifests, and reconcile the catalog


def test_gc_never_sweeps_the_objects_of_a_snapshot_the_catalog_lacks() -> None:
    repo = Repository.init(MemoryBackend())
    ids = three(repo)
    rewrite(repo, without(ids[1]))
    assert ids[1] not in [s.id for s in repo.snapshots()]
    report = collect_garbage(repo, grace=timedelta(0))
    assert (report.objects_removed, report.snapshots_kept, report.catalog_rebuilt) == (0, 3, True)
    assert restore_documents(repo, ids[1])[1]["own"].startswith(b'{"id":"own"')
    assert assert_agrees(repo) == ids[::-1]
    assert collect_garbage(repo, grace=timedelta(0)).catalog_rebuilt is False


def test_cleanup_and_forget_see_what_the_catalog_lacks_and_write_it_afresh() -> None:
    repo = Repository.init(MemoryBackend())
    ids = three(repo)
    rewrite(repo, without(ids[1]))
    report = cleanup(repo, RetentionPolicy(keep_last=5, group_by="none"), grace=timedelta(0))
    assert (report.snapshots_kept, report.objects_removed, report.catalog_rebuilt) == (3, 0, True)
    rewrite(repo, without(ids[1]))
    report = forget(repo, [ids[1]], grace=timedelta(0), force=True)
    removed = [s.id for s in report.removed]
    assert (removed, report.catalog_rebuilt, report.objects_removed) == ([ids[1]], True, 1)
    assert assert_agrees(repo) == [ids[2], ids[0]]


def test_gc_clears_what_a_sound_catalog_left_behind() -> None:
    repo = Repository.init(MemoryBackend())
    three(repo)
    repo.catalog.compact()
    head = repo.catalog.head()
    assert head is not None
    leftovers = [catalog_part_key("ab" * 32)]  # left by a compaction that crashed
    repo.backend.put(leftovers[0], b"left by a crash")
    leftovers += [catalog_journal_key(seq) for seq in range(1, head.journal + 1)]
    assert all(repo.backend.stat(key) is not None for key in leftovers)
    repo.backend.put(CATALOG_LOCK_KEY, b'{"since": 0}')
    dry = collect_garbage(repo, grace=timedelta(0), dry_run=True)
    assert dry.catalog_rebuilt is False and repo.backend.stat(leftovers[0]) is not None
    assert collect_garbage(repo, grace=timedelta(0)).catalog_rebuilt is False
    assert repo.catalog.head() == head
    assert all(repo.backend.stat(key) is None for key in [*leftovers, CATALOG_LOCK_KEY])
    assert_agrees(repo)


def test_gc_dry_run_says_it_would_write_the_catalog_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    repo = Repository.init(LocalBackend(path))
    three(repo)
    (path / CATALOG_HEAD_KEY).unlink()
    before = tree_state(path)
    code, out, _ = run(path, "gc", "--dry-run")
    assert code == 0 and "would write the catalog afresh from the manifests" in out
    assert tree_state(path) == before
    done = subprocess.run(
        [sys.executable, "-m", "casbak", "--repo", str(path), "--json", "gc"],
        capture_output=True,
        check=True,
    )
    assert json.loads(done.stdout)["catalog_rebuilt"] is True
    assert (path / CATALOG_HEAD_KEY).exists()
    assert len(assert_agrees(repo)) == 3


# The same contract on S3


def key_state(backend: Backend) -> dict[str, tuple[int, bytes]]:
    return {info.key: (info.size, backend.get(info.key)) for info in backend.list("")}


def test_catalog_on_s3(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repository_module, "COMPACT_AFTER", 2)
    repo = Repository.init(backend_for(s3_env))
    clock = FakeClock()
    ids = [snap(repo, clock, {"id": "a", "v": n % 3}, {"id": f"t{n}"}) for n in range(5)]
    head = repo.catalog.head()
    assert head is not None and head.journal == 4  # compacted twice on the way
    code, out, _ = run(s3_env, "--json", "list")  # type: ignore[arg-type]
    assert [s["id"] for s in json.loads(out)["snapshots"]] == ids[::-1]
    report = forget(repo, [ids[1]], grace=timedelta(0))
    assert [s.id for s in report.removed] == [ids[1]]
    assert list(repo.backend.list_names(CATALOG_JOURNAL_PREFIX)) == []
    assert assert_agrees(repo) == [ids[4], ids[3], ids[2], ids[0]]
    repo.catalog.invalidate()
    before = key_state(repo.backend)
    code, out, _ = run(s3_env, "--json", "list")  # type: ignore[arg-type]
    assert code == 0 and len(json.loads(out)["snapshots"]) == 4
    assert key_state(repo.backend) == before  # rebuilt in memory only
    code, out, _ = run(s3_env, "--json", "verify")  # type: ignore[arg-type]
    assert (
        code == 0 and [f for f in json.loads(out)["findings"] if f["kind"] in CATALOG_KINDS] == []
    )
    code, out, _ = run(s3_env, "--json", "gc")  # type: ignore[arg-type]
    assert json.loads(out)["catalog_rebuilt"] is True
    assert repo.backend.stat(CATALOG_HEAD_KEY) is not None
    assert assert_agrees(repo) == [ids[4], ids[3], ids[2], ids[0]]


def _swap(repo: Repository, part: Any, chunk: int | None = None, bucket: int | None = None) -> str:
    """Store ``part`` under its proper name and make the head name it: sound files whose
    contents do not agree with one another. Returns the part's key."""
    head = repo.catalog.head()
    assert head is not None
    data = encode_part(part)
    repo.backend.put(catalog_part_key(part_name(data)), data)
    chunks, buckets = list(head.chunks), list(head.buckets)
    if chunk is not None:
        chunks[chunk] = part_name(data)
    if bucket is not None:
        buckets[bucket] = part_name(data)
    changed = msgspec.structs.replace(head, chunks=chunks, buckets=buckets)
    repo.backend.put(CATALOG_HEAD_KEY, encode_part(changed), overwrite=True)
    return catalog_part_key(part_name(data))


def _chunk(repo: Repository) -> Chunk:
    head = repo.catalog.head()
    assert head is not None
    return repo.catalog.part(head.chunks[0], Chunk)


def _bucket(repo: Repository, name: str) -> Bucket:
    head = repo.catalog.head()
    assert head is not None
    return repo.catalog.part(head.buckets[bucket_of(name)], Bucket)


def _short_ids(repo: Repository) -> str:
    old = _chunk(repo)
    return _swap(repo, Chunk(old.ids[:-1], old.micros, old.alive, old.records), chunk=0)


def _swapped_records(repo: Repository) -> str:
    old = _chunk(repo)
    records = [old.records[1], old.records[0], *old.records[2:]]
    return _swap(repo, Chunk(old.ids, old.micros, old.alive, records), chunk=0)


def _counts(repo: Repository) -> str:
    head = repo.catalog.head()
    assert head is not None
    changed = msgspec.structs.replace(head, snapshots=head.snapshots + 1)
    repo.backend.put(CATALOG_HEAD_KEY, encode_part(changed), overwrite=True)
    return CATALOG_HEAD_KEY


def _tenant(repo: Repository, history_of: Callable[[Any], Any]) -> str:
    old = _bucket(repo, "a")
    tenants = dict(old.tenants)
    tenants["a"] = history_of(old.tenant("a"))
    return _swap(repo, Bucket(tenants, dict(old.targets)), bucket=bucket_of("a"))


def _unreadable_tenant(repo: Repository) -> str:
    return _tenant(repo, lambda held: msgspec.Raw(msgspec.msgpack.encode("no history")))


def _unsound_tenant(repo: Repository) -> str:
    def beyond(held: Any) -> Any:
        versions = (7).to_bytes(4, "little") * (len(held.versions) // 4)
        return msgspec.Raw(msgspec.msgpack.encode(msgspec.structs.replace(held, versions=versions)))

    return _tenant(repo, beyond)


def _unsound_target(repo: Repository) -> str:
    old = _bucket(repo, "a")
    targets = {**old.targets, "a": b"\x01\x02\x03"}
    return _swap(repo, Bucket(dict(old.tenants), targets), bucket=bucket_of("a"))


def _misfiled(repo: Repository) -> str:
    stranger = next(f"t{n}" for n in range(99) if bucket_of(f"t{n}") != bucket_of("a"))
    old = _bucket(repo, "a")
    tenants = {**old.tenants, stranger: old.tenants["a"]}
    return _swap(repo, Bucket(tenants, dict(old.targets)), bucket=bucket_of("a"))


def _unsound_journal_entry(repo: Repository) -> str:
    head = repo.catalog.head()
    assert head is not None
    added = history.everything_but(repo.view(), set(), {})[0]
    wrong = msgspec.structs.replace(added, micros=added.micros + 1)
    key = catalog_journal_key(head.journal + 1)
    repo.backend.put(key, encode_part(JournalEntry(CATALOG_VERSION, 0.0, added=[wrong])))
    return key


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (_short_ids, "has arrays of different lengths"),
        (_swapped_records, "record 0 does not match its position"),
        (_counts, "counts differ from what its parts hold"),
        (_unreadable_tenant, "history of tenant 'a' is unreadable"),
        (_unsound_tenant, "history of tenant 'a' is unsound"),
        (_unsound_target, "list of target 'a' is unsound"),
        (_misfiled, "holds a name of another bucket"),
        (_unsound_journal_entry, "is not a sound journal entry"),
    ],
)
def test_catalog_files_that_disagree_with_one_another_are_reported_and_repaired(
    damage: Callable[[Repository], str], what: str
) -> None:
    repo = Repository.init(MemoryBackend())
    ids = three(repo)
    repo.catalog.compact()
    location = damage(repo)
    found = catalog_findings(repo)
    assert [(f.kind, f.location) for f in found] == [("corrupt-catalog", location)]
    assert found[0].message.startswith(f"catalog file {what}; ")
    assert collect_garbage(repo, grace=timedelta(0)).catalog_rebuilt is True
    assert assert_agrees(repo) == ids[::-1]
