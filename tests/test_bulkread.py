"""Bulk reads of format 2 objects: pack by pack, ranged or whole, bases first, damage per object."""

from __future__ import annotations

import base64
import json
import random
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import zstandard

import casbak.store.bulkread as packs_module
from casbak.backends.local import LocalBackend
from casbak.errors import CasbakError, CorruptData, IntegrityError, ObjectMissing
from casbak.ids import Digest, hash_bytes
from casbak.layout import PACK_PREFIX, pack_key
from casbak.maintenance import cleanup
from casbak.objects import parallel_map
from casbak.repository import Repository
from casbak.retention import RetentionPolicy
from casbak.service import restore_documents, take_snapshot
from casbak.sources import documents_from_values
from casbak.store import RANGE_GAP, PackStore
from casbak.store.bulkread import _bases_first
from casbak.transfer import export_bundle, select_snapshots
from casbak.verify import verify_repository
from tests.conftest import FakeClock
from tests.test_format2 import history


class CountingBackend(LocalBackend):
    """A local repository that records every read of a pack: (key, offset, length or None)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[tuple[str, int, int | None]] = []
        self._guard = threading.Lock()

    def get(self, key: str) -> bytes:
        if key.startswith(PACK_PREFIX):
            with self._guard:
                self.reads.append((key, 0, None))
        return super().get(key)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        with self._guard:
            self.reads.append((key, offset, length))
        return super().get_range(key, offset, length)


def reopen(path: Path) -> tuple[CountingBackend, PackStore]:
    backend = CountingBackend(path)
    store = Repository.open(backend).objects
    assert isinstance(store, PackStore)
    return backend, store


@pytest.fixture
def packed(tmp_path: Path) -> Path:
    """Six snapshots of a changing set of tenants: six packs, deltas spread across them."""
    path = tmp_path / "repo"
    history(Repository.init(LocalBackend(path)), rounds=6)
    return path


def test_every_object_read_with_each_pack_fetched_once(packed: Path) -> None:
    backend, store = reopen(packed)
    index = store.index()
    assert sum(1 for location in index.values() if location.base) >= 10
    found = dict(store.read_many(sorted(index)))
    single = Repository.open(LocalBackend(packed)).objects
    assert found == {digest: single.read(digest) for digest in index}
    # Bases decoded first and kept: no pack is fetched a second time, none whole.
    assert sorted(key for key, _, _ in backend.reads) == sorted(
        {pack_key(location.pack) for location in index.values()}
    )
    assert all(length is not None for _, _, length in backend.reads)
    backend.reads.clear()
    assert list(store.read_many([])) == [] and backend.reads == []


def test_each_pack_reads_packs_whole_and_hands_them_over(packed: Path) -> None:
    backend, store = reopen(packed)
    index = store.index()
    hashed: dict[str, str] = {}
    found = dict(
        store.read_many(index, each_pack=lambda p, data: hashed.setdefault(p, hash_bytes(data)))
    )
    assert len(found) == len(index)
    assert hashed == {location.pack: location.pack for location in index.values()}
    assert sorted(backend.reads) == sorted((pack_key(p), 0, None) for p in hashed)


def big_tenants(count: int) -> list[dict[str, Any]]:
    """Tenants whose documents do not compress: a pack of them is far wider than RANGE_GAP."""
    rng = random.Random(7)
    return [
        {"id": f"big-{number:03d}", "blob": base64.b64encode(rng.randbytes(12_000)).decode()}
        for number in range(count)
    ]


def test_a_few_objects_are_read_as_ranges_of_just_their_frames(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    repo = Repository.init(LocalBackend(path))
    values = big_tenants(60)
    take_snapshot(repo, documents_from_values(values, "t"), clock=FakeClock())
    values[30] = dict(values[30], edited=True)
    take_snapshot(repo, documents_from_values(values, "t"), clock=FakeClock())
    backend, store = reopen(path)
    index = store.index()
    first_pack = Counter(location.pack for location in index.values()).most_common(1)[0][0]
    in_order = sorted(
        (d for d, location in index.items() if location.pack == first_pack),
        key=lambda d: index[d].offset,
    )
    assert index[in_order[-1]].offset - index[in_order[0]].offset > 2 * RANGE_GAP

    far_apart = [in_order[0], in_order[-1]]
    assert [json.loads(doc)["id"] for _, doc in store.read_many(far_apart)]
    assert sorted(backend.reads) == sorted(
        (pack_key(first_pack), index[d].offset, index[d].length) for d in far_apart
    )

    backend.reads.clear()
    neighbours = in_order[10:12]
    assert len(dict(store.read_many(neighbours))) == 2
    start = index[neighbours[0]].offset
    assert backend.reads == [
        (pack_key(first_pack), start, sum(index[d].length for d in neighbours))
    ]

    # A delta brings the range of its base's frame too, from the base's pack.
    backend.reads.clear()
    delta = next(d for d, location in index.items() if location.base)
    base = index[delta].base
    assert base is not None
    (found,) = store.read_many([delta])
    assert json.loads(found[1])["edited"] is True
    assert sorted(backend.reads) == sorted(
        (pack_key(index[d].pack), index[d].offset, index[d].length) for d in (delta, base)
    )


def test_restore_and_export_read_each_pack_once(packed: Path) -> None:
    backend = CountingBackend(packed)
    repo = Repository.open(backend)
    _, documents = restore_documents(repo, "latest")
    assert documents and len(backend.reads) == len({key for key, _, _ in backend.reads})
    backend.reads.clear()
    seen: list[tuple[int, int, int]] = []
    stream = _Sink()
    result = export_bundle(
        repo, select_snapshots(repo, everything=True), stream, progress=lambda *a: seen.append(a)
    )
    assert result.objects == seen[-1][1] == seen[-1][0]
    packs = {key for key, _, _ in backend.reads}
    assert len(backend.reads) == len(packs) == len(list(repo.backend.list(PACK_PREFIX)))


class _Sink:
    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_damage_stops_only_the_objects_it_touches(packed: Path) -> None:
    _, store = reopen(packed)
    index = store.index()
    delta, location = next(
        (d, loc) for d, loc in index.items() if loc.base and not index[loc.base].base
    )
    assert location.base is not None
    base = index[location.base]
    flip(packed / pack_key(base.pack), base.offset + base.length // 2)
    _, store = reopen(packed)
    found = dict(store.read_many([*index, "f" * 64]))
    assert isinstance(found[location.base], IntegrityError)
    assert isinstance(found[delta], IntegrityError)  # its base is damaged
    assert isinstance(found[Digest("f" * 64)], ObjectMissing)
    damaged = {d for d, result in found.items() if isinstance(result, CasbakError)}
    assert damaged <= {location.base, "f" * 64} | {d for d in index if index[d].base}
    single = Repository.open(LocalBackend(packed)).objects
    for digest in damaged - {"f" * 64}:
        with pytest.raises(IntegrityError):
            single.read(digest)
    assert all(found[d] == single.read(d) for d in index.keys() - damaged)


def test_export_of_damaged_objects_fails_before_writing_anything(packed: Path) -> None:
    _, store = reopen(packed)
    location = next(iter(store.index().values()))
    flip(packed / pack_key(location.pack), location.offset + location.length // 2)
    repo = Repository.open(LocalBackend(packed))
    stream = _Sink()
    with pytest.raises(IntegrityError):
        export_bundle(repo, select_snapshots(repo, everything=True), stream)
    assert stream.size == 0


def test_a_pack_cut_short_or_gone_is_reported_per_object(packed: Path) -> None:
    _, store = reopen(packed)
    index = store.index()
    by_pack: dict[str, list[str]] = {}
    for digest, location in index.items():
        by_pack.setdefault(location.pack, []).append(digest)
    cut, gone = sorted(by_pack, key=lambda p: -len(by_pack[p]))[:2]
    path = packed / pack_key(cut)
    path.write_bytes(path.read_bytes()[: max(index[d].offset for d in by_pack[cut])])
    (packed / pack_key(gone)).unlink()
    _, store = reopen(packed)
    found = dict(store.read_many(index))
    last = max(by_pack[cut], key=lambda d: index[d].offset)
    assert isinstance(found[last], CorruptData) and "cut short" in str(found[last])
    assert all(isinstance(found[d], ObjectMissing) for d in by_pack[gone])
    report = verify_repository(Repository.open(LocalBackend(packed)))
    damaged = [
        f for f in report.findings if f.severity == "damage" and f"object {last}" in f.message
    ]
    assert [(f.kind, f.location) for f in damaged] == [("corrupt-object", pack_key(cut))]
    assert not report.ok


def test_an_unreadable_pack_stops_only_its_objects(packed: Path) -> None:
    _, store = reopen(packed)
    index = store.index()
    victim = Counter(location.pack for location in index.values()).most_common()[-1][0]
    path = packed / pack_key(victim)
    path.unlink()
    path.mkdir()  # a read of it fails for real (EISDIR), as a bad disk sector would
    _, store = reopen(packed)
    found = dict(store.read_many(index))
    mine = {d for d, location in index.items() if location.pack == victim}
    assert all("cannot read" in str(found[d]) for d in mine)
    report = verify_repository(Repository.open(LocalBackend(packed)), snapshot_refs=["latest"])
    assert "unreadable-object" in {f.kind for f in report.findings}


def test_a_base_in_a_pack_still_to_come_is_read_singly(tmp_path: Path) -> None:
    """Two packs, each holding a delta of the other's object: a cycle only repacking makes."""
    path = tmp_path / "repo"
    store = Repository.init(LocalBackend(path)).objects
    assert isinstance(store, PackStore)
    docs = {name: json.dumps({"id": name, "text": name * 300}).encode() for name in "ab"}
    edits = {name: json.dumps({"id": name, "text": name * 301}).encode() for name in "ab"}
    ids = {
        name: hash_bytes(doc)
        for name, doc in {**docs, **{k + "2": v for k, v in edits.items()}}.items()
    }

    def delta(name: str) -> bytes:
        raw = zstandard.ZstdCompressionDict(docs[name], dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        return zstandard.ZstdCompressor(compression_params=store._params(), dict_data=raw).compress(
            edits[name]
        )

    def plain(name: str) -> bytes:
        return zstandard.ZstdCompressor(compression_params=store._params()).compress(docs[name])

    store.write_packs(
        [
            (ids["a"], plain("a"), None, len(docs["a"])),
            (ids["b2"], delta("b"), ids["b"], len(edits["b"])),
        ],
        None,
    )
    store.write_packs(
        [
            (ids["b"], plain("b"), None, len(docs["b"])),
            (ids["a2"], delta("a"), ids["a"], len(edits["a"])),
        ],
        None,
    )
    backend, store = reopen(path)
    located = store.index()
    assert len(_bases_first(located)) == 2
    found = dict(store.read_many([ids["a2"], ids["b2"]]))
    assert found == {ids["a2"]: edits["a"], ids["b2"]: edits["b"]}
    # One base came from the pack read second: it was read (whole) once more, singly.
    assert sum(1 for _, _, length in backend.reads if length is None) == 1


def test_deltas_before_their_base_in_one_pack(tmp_path: Path) -> None:
    """A pack may hold deltas ahead of their base (repacking copies frames in any order)."""
    path = tmp_path / "repo"
    store = Repository.init(LocalBackend(path)).objects
    assert isinstance(store, PackStore)
    base = json.dumps({"id": "a", "text": "a" * 400}).encode()
    edits = [json.dumps({"id": "a", "text": "a" * 400, "n": n}).encode() for n in range(2)]
    raw = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    compressor = zstandard.ZstdCompressor(compression_params=store._params(), dict_data=raw)
    plain = zstandard.ZstdCompressor(compression_params=store._params())
    base_id = hash_bytes(base)
    store.write_packs(
        [
            *((hash_bytes(e), compressor.compress(e), base_id, len(e)) for e in edits),
            (base_id, plain.compress(base), None, len(base)),
        ],
        None,
    )
    backend, store = reopen(path)
    found = dict(store.read_many(hash_bytes(e) for e in edits))
    assert found == {hash_bytes(e): e for e in edits}  # the base was not asked for
    assert len(backend.reads) == 1


def test_bases_first_orders_packs_by_what_their_deltas_need() -> None:
    from casbak.store import Location

    def at(pack: str, base: str | None = None) -> Location:
        return Location(Digest(pack * 64), 0, 1, 1, Digest(base * 64) if base else None, None)

    # b holds a delta of an object in c, c one of an object in a: so a, c, b, not id order.
    located = {
        Digest("1" * 64): at("a"),
        Digest("2" * 64): at("c", "1"),
        Digest("3" * 64): at("b", "2"),
        Digest("4" * 64): at("d"),
    }
    assert _bases_first(located) == [Digest(p * 64) for p in "acbd"]
    # a and b hold deltas of each other and c one of a: the cycle is broken at a.
    located = {
        Digest("1" * 64): at("a", "2"),
        Digest("2" * 64): at("b", "1"),
        Digest("3" * 64): at("c", "1"),
    }
    assert _bases_first(located) == [Digest(p * 64) for p in "abc"]


def test_bases_kept_past_the_budget_are_read_again_singly(
    packed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packs_module, "_KEPT_BASES", 0)
    backend, store = reopen(packed)
    index = store.index()
    found = dict(store.read_many(index))
    single = Repository.open(LocalBackend(packed)).objects
    assert found == {digest: single.read(digest) for digest in index}
    assert any(length is None for _, _, length in backend.reads)


def test_objects_a_gc_moved_during_the_read_are_found_in_their_new_pack(packed: Path) -> None:
    reader = Repository.open(LocalBackend(packed))
    store = reader.objects
    assert isinstance(store, PackStore)
    before = store.index()  # loaded now; the gc below moves what it names
    writer = Repository.open(LocalBackend(packed))
    ordered = sorted(writer.snapshots(), key=lambda snap: snap.header.timestamp)
    cleanup(
        writer,
        RetentionPolicy(keep_last=1),
        grace=timedelta(0),
        clock=lambda: ordered[-1].header.timestamp,
    )
    live = {entry.object for entry in writer.resolve("latest").manifest.entries.values()}
    assert any(not (packed / pack_key(before[Digest(d)].pack)).exists() for d in live)
    found = dict(store.read_many(live))
    fresh = Repository.open(LocalBackend(packed)).objects
    assert found == {digest: fresh.read(digest) for digest in live}


def test_parallel_map_holds_at_most_its_budget_of_results() -> None:
    started: list[int] = []
    guard = threading.Lock()

    def work(item: int) -> int:
        with guard:
            started.append(item)
        return item * 2

    taken = []
    for result in parallel_map(work, range(40), 4, cost=lambda _: 10, budget=25):
        with guard:
            # Taken so far, plus at most two results of cost 10 within 25.
            assert len(started) <= len(taken) + 1 + 2
        taken.append(result)
    assert taken == [item * 2 for item in range(40)]


def test_parallel_map_stopped_early_raises_nothing_from_results_not_taken() -> None:
    def work(item: int) -> int:
        if item:
            raise RuntimeError("never taken")
        return item

    results = parallel_map(work, range(10), 3)
    assert next(results) == 0
    results.close()
