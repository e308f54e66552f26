"""Tenants seen for the first time are compressed against the most similar one of their batch."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

from casbak.backends.local import LocalBackend
from casbak.backends.memory import MemoryBackend
from casbak.canonical import canonicalize
from casbak.ids import Digest, hash_bytes
from casbak.kinship import MIN_SHARED, POOL, SKETCH_SIZE, Kin, sketch
from casbak.layout import pack_key
from casbak.maintenance import cleanup
from casbak.repository import Repository
from casbak.retention import RetentionPolicy
from casbak.service import restore_documents, take_snapshot
from casbak.sources import documents_from_values
from casbak.store import MAX_CHAIN, Location, PackStore
from casbak.verify import verify_repository
from tests.conftest import FakeClock


def realm(name: str, seed: int, clients: int = 30) -> dict[str, Any]:
    """A realm-like tenant: a large shared skeleton, a few values of its own."""
    rng = random.Random(seed)
    return {
        "id": name,
        "realm": name,
        "displayName": f"{name} realm {rng.randrange(10**6)}",
        "clients": [
            {
                "clientId": f"client-{n}",
                "redirectUris": [f"https://{name}.example/{n}/*"],
                "protocolMappers": [
                    {"name": f"mapper-{m}", "config": {"claim": f"c{m}"}} for m in range(6)
                ],
            }
            for n in range(clients)
        ],
        "authenticationFlows": [
            {"alias": f"flow-{n}", "builtIn": True, "executions": [{"step": s} for s in range(8)]}
            for n in range(12)
        ],
        "secret": "".join(rng.choice("abcdefghijklmnop") for _ in range(40)),
    }


def canonical(document: dict[str, Any]) -> bytes:
    return canonicalize(json.loads(json.dumps(document)))


# The sketch and the choice


def test_alike_documents_share_most_of_their_sketch_and_unlike_ones_little() -> None:
    one, other = canonical(realm("acme", 1)), canonical(realm("globex", 2))
    unlike = canonical({"id": "x", "values": [str(n) * 7 for n in range(400)]})
    assert sketch(one) == sketch(one)
    assert MIN_SHARED < len(sketch(one)) <= SKETCH_SIZE
    assert len(sketch(one) & sketch(other)) >= 2 * MIN_SHARED
    assert len(sketch(one) & sketch(unlike)) < MIN_SHARED


def test_the_nearest_is_the_most_alike_and_none_below_the_threshold() -> None:
    kin = Kin(max_depth=MAX_CHAIN)
    assert kin.nearest(sketch(canonical(realm("a", 1)))) is None
    unlike = canonical({"id": "x", "values": [str(n) * 7 for n in range(400)]})
    kin.add(Digest("u" * 64), sketch(unlike), 0)
    assert kin.nearest(sketch(canonical(realm("a", 1)))) is None
    kin.add(Digest("r" * 64), sketch(canonical(realm("b", 2))), 0)
    near_copy = {**realm("a", 1), "displayName": "another name", "secret": "another"}
    kin.add(Digest("s" * 64), sketch(canonical(near_copy)), 0)
    kin.add(Digest("t" * 64), sketch(canonical(realm("c", 3))), 0)
    assert kin.nearest(sketch(canonical(realm("a", 1)))) == "s" * 64


def test_a_document_at_the_chain_bound_is_never_a_base_and_the_pool_is_bounded() -> None:
    kin = Kin(max_depth=2)
    shape = sketch(canonical(realm("a", 1)))
    kin.add(Digest("d" * 64), shape, 2)
    assert kin.nearest(shape) is None
    assert kin.depths == {"d" * 64: 2}
    for number in range(POOL + 1):
        kin.add(Digest(f"{number:064d}"), shape, 0)
    assert kin.nearest(shape) != f"{0:064d}"  # the oldest left the pool


# In the pack store


def depth(index: dict[Digest, Location], digest: Digest) -> int:
    steps = 0
    while (base := index[digest].base) is not None:
        digest, steps = base, steps + 1
    return steps


def test_a_batch_of_new_tenants_is_stored_as_deltas_of_each_other_and_reads_back() -> None:
    store = PackStore(MemoryBackend(), 10)
    documents = {}
    for number in range(40):
        data = canonical(realm(f"tenant-{number}", number))
        documents[hash_bytes(data)] = data
    added = store.store(documents).bytes_added
    index = store.index()
    deltas = [digest for digest in documents if index[digest].base is not None]
    assert len(deltas) >= 30
    assert all(index[digest].base in documents for digest in deltas)
    assert max(depth(index, digest) for digest in documents) <= MAX_CHAIN
    for digest, data in documents.items():
        assert store.read(digest) == data
    alone = PackStore(MemoryBackend(), 10)
    one_by_one = sum(alone.store({d: data}).bytes_added for d, data in documents.items())
    assert added < one_by_one / 2


def test_a_version_of_its_own_is_still_the_base_of_a_known_tenant() -> None:
    store = PackStore(MemoryBackend(), 10)
    first = {hash_bytes(data): data for data in (canonical(realm(f"t{n}", n)) for n in range(5))}
    store.store(first)
    earlier = next(iter(first))
    newer = canonical({**json.loads(first[earlier]), "displayName": "changed"})
    others = {hash_bytes(d): d for d in (canonical(realm(f"u{n}", 50 + n)) for n in range(3))}
    store.store({hash_bytes(newer): newer, **others}, {hash_bytes(newer): earlier})
    assert store.index()[hash_bytes(newer)].base == earlier


def test_cleanup_removing_a_base_of_another_tenant_keeps_that_tenant_whole(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    repo = Repository.init(LocalBackend(path))
    clock = FakeClock()
    tenants = [realm(f"tenant-{n}", n) for n in range(6)]
    clock.advance(hours=1)
    take_snapshot(repo, documents_from_values(tenants, "t"), clock=clock)
    packs = repo.objects
    assert isinstance(packs, PackStore)
    assert any(location.base for location in packs.index().values())
    # Every tenant changes but the last, whose base (another tenant) is now unreferenced.
    changed = [{**tenant, "displayName": "renamed"} for tenant in tenants[:-1]] + tenants[-1:]
    clock.advance(hours=1)
    final = take_snapshot(repo, documents_from_values(changed, "t"), clock=clock).snapshot.id
    expected = restore_documents(repo, final)[1]

    report = cleanup(repo, RetentionPolicy(keep_last=1), grace=timedelta(0), clock=clock)

    assert report.snapshots_removed == 1
    fresh = Repository.open(LocalBackend(path))
    assert restore_documents(fresh, final)[1] == expected
    checked = verify_repository(fresh)
    assert checked.ok and checked.findings == []


def test_a_long_history_restarts_its_chain_against_the_root_not_whole() -> None:
    store = PackStore(MemoryBackend(), 10)
    document = realm("long", 1)
    previous = None
    stored = {}
    for version in range(3 * MAX_CHAIN):
        document = {**document, "displayName": f"version {version}"}
        data = canonical(document)
        digest = hash_bytes(data)
        store.store({digest: data}, {digest: previous} if previous else None)
        stored[digest] = data
        previous = digest
    index = store.index()
    first = next(iter(stored))
    assert index[first].base is None
    assert all(index[digest].base is not None for digest in list(stored)[1:])
    assert max(depth(index, digest) for digest in stored) <= MAX_CHAIN
    assert sum(1 for digest in stored if index[digest].base == first) >= 3
    for digest, data in stored.items():
        assert store.read(digest) == data


def test_storing_one_new_object_keeps_the_lock_alive() -> None:
    store = PackStore(MemoryBackend(), 10)
    calls = []
    data = canonical(realm("one", 1))
    store.store({hash_bytes(data): data}, keepalive=lambda: calls.append(1))
    assert calls == [1]


def test_a_chain_root_taken_as_a_base_is_refreshed_like_a_reused_object() -> None:
    wall = [1_000_000.0]
    backend = MemoryBackend(clock=lambda: wall[0])
    store = PackStore(backend, 10)
    document = realm("long", 1)
    versions = []
    for version in range(MAX_CHAIN + 2):
        document = {**document, "displayName": f"version {version}"}
        data = canonical(document)
        digest = hash_bytes(data)
        if version == MAX_CHAIN + 1:
            wall[0] += 10 * 24 * 3600  # the root's pack is now old
            root_pack = store.index()[versions[0]].pack
            before = backend.stat(pack_key(root_pack))
        store.store({digest: data}, {digest: versions[-1]} if versions else None)
        versions.append(digest)
    assert store.index()[versions[-1]].base == versions[0]
    after = backend.stat(pack_key(root_pack))
    assert before is not None and after is not None and after.mtime > before.mtime
