"""Retention forgets: once gc removes a version, its bytes leave the repository.

A kept version is often a delta against the versions retention removes; gc
re-encodes it (against a kept ancestor, or standalone) instead of keeping them.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from casbak.backends.local import LocalBackend
from casbak.backends.memory import MemoryBackend
from casbak.gc import rebase_targets
from casbak.ids import Digest
from casbak.layout import PACK_PREFIX
from casbak.maintenance import cleanup, collect_garbage
from casbak.repository import Repository
from casbak.retention import RetentionPolicy
from casbak.service import repository_stats, restore_documents, take_snapshot
from casbak.sources import documents_from_values
from casbak.store import MAX_CHAIN, Location, PackStore
from casbak.verify import verify_repository
from tests.conftest import FakeClock

SECRET_BYTES = 4096
"""Random bytes in each secret: no encoding stores one in fewer bytes than this."""


def secret() -> str:
    return base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def backup(repo: Repository, clock: FakeClock, tenant: dict[str, Any], **options: Any) -> str:
    clock.advance(hours=1)
    docs = documents_from_values([tenant], "t")
    return take_snapshot(repo, docs, clock=clock, **options).snapshot.id


def repository_files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()
    }


def packs_of(repo: Repository) -> PackStore:
    assert isinstance(repo.objects, PackStore)
    return repo.objects


def test_retention_removes_the_bytes_of_removed_versions(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    repo = Repository.init(LocalBackend(path))
    clock = FakeClock()
    secrets = [secret() for _ in range(6)]
    for number, leaked in enumerate(secrets):
        backup(repo, clock, {"id": "acme", "v": number, "oidc": {"clientSecret": leaked}})
    final = backup(repo, clock, {"id": "acme", "v": 6, "oidc": {}})
    expected = restore_documents(repo, final)[1]
    before = sum(map(len, repository_files(path).values()))
    assert before > len(secrets) * SECRET_BYTES

    report = cleanup(repo, RetentionPolicy(keep_last=1), grace=timedelta(0), clock=clock)

    assert report.snapshots_removed == 6
    assert report.objects_removed == 6
    assert report.objects_reencoded == 1
    files = repository_files(path)
    # Not even one removed secret fits in what is left, in any encoding.
    assert sum(map(len, files.values())) < SECRET_BYTES
    for data in files.values():
        for leaked in secrets:
            assert leaked.encode()[:64] not in data
    fresh = Repository.open(LocalBackend(path))
    assert restore_documents(fresh, final)[1] == expected
    checked = verify_repository(fresh)
    assert checked.ok and checked.findings == []
    assert checked.objects_stored == repository_stats(fresh).objects_stored == 1
    assert collect_garbage(fresh, grace=timedelta(0)).objects_reencoded == 0


class Wall:
    """Wall clock of a memory backend, so packs can be aged."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_grace_spares_a_young_delta_and_keeps_it_readable_without_its_old_base() -> None:
    wall = Wall()
    repo = Repository.init(MemoryBackend(clock=wall))
    clock = FakeClock()
    old = backup(repo, clock, {"id": "acme", "v": 1, "key": secret()})
    wall.now += 2 * 3600
    # A concurrent snapshot stored a new version (a delta of the old one) and
    # has not written its manifest yet: only its young pack protects it.
    packs = packs_of(repo)
    pending = documents_from_values([{"id": "acme", "v": 2}], "t")[0]
    assert pending.canonical is not None
    base = repo.resolve(old).manifest.entries["acme"].object
    packs.store({pending.digest: pending.canonical}, {pending.digest: Digest(base)})
    assert packs.index()[pending.digest].base == base
    repo.delete_snapshot(repo.resolve(old))

    report = collect_garbage(repo, grace=timedelta(hours=1))

    assert report.objects_removed == 1
    assert report.objects_spared_young == 1
    assert report.objects_reencoded == 1
    fresh = Repository.open(repo.backend)
    assert fresh.objects.read(pending.digest) == pending.canonical
    assert not fresh.objects.contains(base)


def test_a_kept_version_is_rebased_on_its_nearest_kept_ancestor(tmp_path: Path) -> None:
    repo = Repository.init(LocalBackend(tmp_path / "repo"))
    clock = FakeClock()
    body = {"id": "acme", "domains": [f"d{n}.example.com" for n in range(200)]}
    first = backup(repo, clock, dict(body, v=0), tags=["pinned"])
    for number in range(1, 5):
        backup(repo, clock, dict(body, v=number, note=secret()))
    last = backup(repo, clock, dict(body, v=5))
    expected = {sid: restore_documents(repo, sid)[1] for sid in (first, last)}
    policy = RetentionPolicy(keep_last=1, keep_tags=("pinned",))

    report = cleanup(repo, policy, grace=timedelta(0), clock=clock)

    assert report.snapshots_removed == 4
    assert report.objects_reencoded == 1
    index = packs_of(repo).index()
    kept = repo.resolve(last).manifest.entries["acme"].object
    pinned = repo.resolve(first).manifest.entries["acme"].object
    assert index[Digest(kept)].base == pinned  # a delta again, skipping the removed versions
    assert len(index) == 2
    fresh = Repository.open(repo.backend)
    for sid, documents in expected.items():
        assert restore_documents(fresh, sid)[1] == documents
    assert verify_repository(fresh).findings == []


def location(base: str | None) -> Location:
    return Location(Digest("00" * 32), 0, 1, 1, None if base is None else Digest(base), None)


def test_rebase_targets_keep_the_chain_bound() -> None:
    chain = [Digest(f"{n:02x}" * 32) for n in range(MAX_CHAIN + 3)]
    index = {chain[0]: location(None)}
    index.update({digest: location(chain[n]) for n, digest in enumerate(chain[1:])})
    everything = set(chain)
    # The kept ancestor is MAX_CHAIN deltas deep: a delta on it would pass the bound.
    deepest = chain[MAX_CHAIN]
    assert rebase_targets(index, everything - {chain[-2]}, {chain[-2]}) == {chain[-1]: None}
    # One step shallower, it may be the new base.
    assert rebase_targets(index, everything - {deepest}, {deepest}) == {
        chain[-2]: chain[MAX_CHAIN - 1]
    }
    # Rebasing an ancestor first shortens the chain its descendants are counted on.
    kept = {chain[0], chain[2], deepest, chain[-1]}
    targets = rebase_targets(index, kept, everything - kept)
    assert targets == {chain[2]: chain[0], deepest: chain[2], chain[-1]: deepest}


@pytest.mark.parametrize("command", ["cleanup", "gc"])
def test_verify_and_stats_count_the_same_objects(tmp_path: Path, command: str) -> None:
    from tests.test_cli import run

    path = tmp_path / "repo"
    run(path, "init")
    for number in range(4):
        tenant = {"id": "acme", "v": number, "secret": secret()}
        run(path, "snapshot", "-", input=json.dumps(tenant))
    repo = Repository.open(LocalBackend(path))
    for snap in sorted(repo.snapshots(), key=lambda s: s.header.timestamp)[:-1]:
        repo.delete_snapshot(snap)  # no gc yet: the removed versions are still stored
    for when in ("before", "after"):
        stats = json.loads(run(path, "--json", "stats")[1])
        checked = json.loads(run(path, "--json", "verify")[1])
        assert stats["objects_stored"] == checked["objects_stored"] == 1, when
        assert "objects stored     1" in run(path, "stats")[1]
        assert ", 1 object stored (" in run(path, "verify")[1]
        run(path, command, "--grace", "0s", *(["--keep-last", "1"] if command == "cleanup" else []))
    assert len(list(repo.backend.list(PACK_PREFIX))) == 1


def test_a_reader_that_located_an_object_before_gc_re_encoded_it_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    repo = Repository.init(LocalBackend(path))
    clock = FakeClock()
    old = backup(repo, clock, {"id": "vault", "v": 1, "secret": secret()})
    clock.advance(hours=1)
    docs = documents_from_values([{"id": "vault", "v": 2}, {"id": "other"}], "t")
    take_snapshot(repo, docs, clock=clock, target_id="vault")
    reader = Repository.open(LocalBackend(path))
    entries = reader.resolve("latest").manifest.entries
    reader.objects.read(entries["other"].object)  # its pack, with the vault delta, is cached
    repo.delete_snapshot(repo.resolve(old))
    assert collect_garbage(repo, grace=timedelta(0)).objects_reencoded == 1
    # The reader still has the old location, a delta against a base that is gone.
    assert json.loads(reader.objects.read(entries["vault"].object)) == {"id": "vault", "v": 2}
