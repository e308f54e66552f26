"""The catalog (docs/FORMAT.md, Catalog): its encoding and folding, the answers history
gives from compacted parts and journal together, compaction and its lock, readers that
race a compaction, journal entries whose manifest never came, and a missing catalog."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from array import array
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import blake3
import msgspec
import pytest
import zstandard

import casbak.repository as repository_module
from casbak import catalog as catalog_module
from casbak import catalogcheck, catalogdata, history
from casbak.backends.local import LocalBackend
from casbak.backends.memory import MemoryBackend
from casbak.catalog import COMPACT_AFTER, GHOST_AFTER, STALE_COMPACTION, TELL_BY_REFERENCE
from casbak.catalogdata import (
    BUCKETS,
    CATALOG_VERSION,
    Added,
    Bucket,
    Chunk,
    Folding,
    Head,
    JournalEntry,
    bucket_of,
    decode_part,
    empty_bucket,
    encode_part,
    micros_of,
    part_name,
)
from casbak.errors import CorruptData, ObjectMissing
from casbak.ids import Digest
from casbak.layout import (
    CATALOG_HEAD_KEY,
    CATALOG_JOURNAL_PREFIX,
    CATALOG_LOCK_KEY,
    CATALOG_PART_PREFIX,
    catalog_part_key,
)
from casbak.model import Manifest
from casbak.repository import Repository
from casbak.service import list_snapshots
from casbak.sources import TenantDocument
from casbak.tenanthistory import tenant_log
from casbak.transfer import export_bundle, import_bundle, select_snapshots
from tests.catalogtools import Moments, assert_agrees, sid_of, snap, starts, told, version
from tests.conftest import FakeClock, tree_state
from tests.faulty import Crash

T0 = datetime(2025, 11, 17, 10, 30, tzinfo=UTC)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Chunks of 3 positions, so a few snapshots make many chunks."""
    for module in (catalogdata, catalog_module, history, catalogcheck):
        monkeypatch.setattr(module, "CHUNK", 3)
    return 3


@pytest.fixture
def compact_often(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(repository_module, "COMPACT_AFTER", 2)
    return 2


def journal_numbers(repo: Repository) -> list[int]:
    return [int(key.rsplit("/", 1)[1]) for key in repo.backend.list_names(CATALOG_JOURNAL_PREFIX)]


def stored_parts(repo: Repository) -> set[str]:
    return set(repo.backend.list_names(CATALOG_PART_PREFIX))


def named_parts(repo: Repository) -> set[str]:
    head = repo.catalog.head()
    assert head is not None
    return {catalog_part_key(name) for name in [*head.chunks, *head.buckets]}


# The pure parts: encoding, names, buckets, folding


def test_bucket_is_the_first_byte_of_the_names_blake3_mod_64() -> None:
    for name in ["acme-corp", "globex-us", "all-tenants", "", "ünïcode", "a" * 300]:
        assert bucket_of(name) == blake3.blake3(name.encode()).digest()[0] % BUCKETS
    # Pinned: another reader of the format must file names where casbak does.
    assert [bucket_of(n) for n in ["acme-corp", "globex-us", "all-tenants", ""]] == [36, 24, 39, 47]


def test_parts_are_zstd_of_msgpack_named_by_the_blake3_of_their_bytes() -> None:
    chunk = Chunk(sid_of(1), (5).to_bytes(8, "little"), b"\x01", [msgspec.Raw(b"\x90")])
    data = encode_part(chunk)
    assert part_name(data) == blake3.blake3(data).hexdigest()
    plain = zstandard.ZstdDecompressor().decompress(data)
    assert msgspec.msgpack.decode(plain) == [sid_of(1), (5).to_bytes(8, "little"), b"\x01", [[]]]
    assert decode_part(data, Chunk, "x").ids == sid_of(1)
    head = Head(CATALOG_VERSION, 7, 1, 1, ["c" * 64], ["b" * 64] * BUCKETS)
    assert msgspec.msgpack.decode(zstandard.ZstdDecompressor().decompress(encode_part(head))) == {
        "version": 1,
        "journal": 7,
        "positions": 1,
        "snapshots": 1,
        "chunks": ["c" * 64],
        "buckets": ["b" * 64] * BUCKETS,
    }
    entry = JournalEntry(CATALOG_VERSION, 1.5, added=[told(1, T0, tenants={"a": version(1)})])
    wire = msgspec.msgpack.decode(zstandard.ZstdDecompressor().decompress(encode_part(entry)))
    assert sorted(wire) == ["added", "removed", "version", "written"]
    record, micros, entries = wire["added"][0]
    assert record[:5] == [sid_of(1), told(1, T0).record.key, "2025-11-17T10:30:00Z", "op", "t"]
    assert (micros, entries) == (micros_of(T0), [["a", version(1), 7]])


def test_anything_else_is_corrupt_data_naming_the_file() -> None:
    for data in [b"junk", zstandard.ZstdCompressor().compress(msgspec.msgpack.encode([1, 2]))]:
        with pytest.raises(CorruptData, match="catalog part x: not a valid catalog part"):
            decode_part(data, Chunk, "catalog part x")


def folding(chunks: dict[int, Chunk] | None = None) -> Folding:
    head = Head(CATALOG_VERSION, 0, 0, 0, [], [""] * BUCKETS)
    return Folding(head, lambda index: (chunks or {})[index], lambda index: empty_bucket())


def test_folding_fills_chunks_in_order_and_shares_a_tenants_versions(small_chunks: int) -> None:
    fold = folding()
    objects = [version(1), version(1), version(2), version(2), version(1), version(3)]
    added = [
        told(n, T0 + timedelta(hours=n), "all" if n % 2 else "one", {"a": obj, f"only-{n}": obj})
        for n, obj in enumerate(objects)
    ]
    locate: dict[bytes, int] = {}
    fold.apply(JournalEntry(CATALOG_VERSION, 0.0, added=added[:4]), locate)
    fold.apply(JournalEntry(CATALOG_VERSION, 0.0, added=added[4:]), locate)
    fold.finish()
    assert (fold.positions, fold.snapshots) == (6, 6)
    assert sorted(fold.chunks) == [0, 1]
    assert [fold.chunks[0].id_at(i) for i in range(3)] == [sid_of(n) for n in range(3)]
    assert list(fold.chunks[1].times()) == [micros_of(T0 + timedelta(hours=n)) for n in (3, 4, 5)]
    assert fold.chunks[1].alive == b"\x01\x01\x01"
    assert list(fold.bucket(bucket_of("all")).target_positions("all")) == [1, 3, 5]
    tenant = fold.bucket(bucket_of("a")).tenant("a")
    assert tenant is not None
    assert tenant.objects == [version(1), version(2), version(3)]
    assert list(tenant.occurrences()) == [(0, 0), (1, 0), (2, 1), (3, 1), (4, 0), (5, 2)]


def test_a_snapshot_told_twice_is_one_and_a_removal_counts_once(small_chunks: int) -> None:
    fold = folding()
    locate: dict[bytes, int] = {}
    first, second = told(1, T0), told(2, T0 + timedelta(hours=1))
    fold.apply(JournalEntry(CATALOG_VERSION, 0.0, added=[first, second, first]), locate)
    fold.apply(JournalEntry(CATALOG_VERSION, 0.0, added=[second]), locate)
    assert (fold.positions, fold.snapshots) == (2, 2)
    removal = JournalEntry(CATALOG_VERSION, 0.0, removed=[sid_of(1), sid_of(1), sid_of(99)])
    fold.apply(removal, locate)
    fold.finish()
    assert (fold.positions, fold.snapshots, fold.chunks[0].alive) == (2, 1, b"\x00\x01")


# History answers: compacted parts and the journal after them, merged


def layout(repo: Repository, compacted: list[Added], journaled: list[Added]) -> None:
    """Tell the catalog of snapshots: the first ones folded into parts, the rest left in
    the journal. Their manifests are stand-ins: the catalog only looks for them."""
    for added in compacted + journaled:
        repo.backend.put(added.record.key, b"{}")
    for added in compacted:
        repo.catalog.append(JournalEntry(CATALOG_VERSION, 0.0, added=[added]))
    assert repo.catalog.compact()
    for added in journaled:
        repo.catalog.append(JournalEntry(CATALOG_VERSION, 0.0, added=[added]))


def history_of_snapshots() -> list[Added]:
    """Eight snapshots of two targets, learned in an order that is not their time order
    (an import brought older ones late), with tenant versions coming and going."""
    hours = [30, 40, 50, 1, 2, 3, 45, 60]
    tenants = [
        {"a": version(1), "b": version(10)},
        {"a": version(1)},
        {"a": version(2), "b": version(10)},
        {"a": version(0)},
        {"b": version(9)},
        {"a": version(0), "b": version(9)},
        {"a": version(1), "b": version(11)},
        {"a": version(2)},
    ]
    return [
        told(n, T0 + timedelta(hours=h), "all" if n % 3 else "a", held)
        for n, (h, held) in enumerate(zip(hours, tenants, strict=True))
    ]


@pytest.mark.parametrize("folded", [0, 3, 5, 8], ids=lambda n: f"{n}-compacted")
def test_history_answers_merge_parts_and_journal(small_chunks: int, folded: int) -> None:
    repo = Repository.init(MemoryBackend())
    everything = history_of_snapshots()
    layout(repo, everything[:folded], everything[folded:])
    # Told again (a retried append) and a journal entry whose manifest never came.
    repo.catalog.append(JournalEntry(CATALOG_VERSION, 0.0, added=everything[:2]))
    repo.catalog.append(JournalEntry(CATALOG_VERSION, time.time(), added=[told(50, T0)]))
    view = repo.view()
    order = sorted(everything, key=lambda a: (a.micros, a.record.id), reverse=True)
    ids = [a.record.id for a in order]
    assert [h.snapshot_id for h in history.newest(view)] == ids
    for limit in range(1, len(ids) + 2):
        assert [h.snapshot_id for h in history.newest(view, limit)] == ids[:limit]
    for target in ("all", "a", "nobody"):
        expected = [a.record.id for a in order if a.record.target_id == target]
        assert [h.snapshot_id for h in history.of_target(view, target)] == expected
    for tenant in ("a", "b"):
        held = [(a.record.id, e.object) for a in order for e in a.entries if e.tenant_id == tenant]
        answer = history.holding(view, tenant)
        assert [(h.holder.snapshot_id, h.version) for h in answer] == held
        runs = [[h.version for h in run] for run in history.versions(answer)]
        assert [v for run in runs for v in run] == [v for _, v in held]
        assert all(len(set(run)) == 1 for run in runs)
        assert all(a[0] != b[0] for a, b in pairwise(runs))
        newest = history.newest_holding(view, tenant)
        assert newest is not None and newest.version == held[0][1]
    assert history.newest_holding(view, "nobody") is None
    assert set(history.tenants(view)) == {"a", "b"}
    for cut in (0, 2, 35, 45, 100):
        moment = micros_of(T0 + timedelta(hours=cut))
        found = history.at_or_before(view, moment)
        earlier = [a.record.id for a in order if a.micros <= moment]
        assert (found.snapshot_id if found else None) == (earlier[0] if earlier else None)
    for added in everything:
        holder = history.find(view, added.record.id)
        assert holder is not None and history.record(view, holder) == added.record
        matches = history.with_prefix(view, added.record.id.hex()[:6])
        assert [h.snapshot_id for h in matches] == [added.record.id]
    assert history.find(view, sid_of(50)) is None
    assert history.find(view, sid_of(99)) is None
    assert repo.resolve("latest").id == ids[0].hex()
    assert (
        repo.resolve("latest:a~1").id
        == [a for a in order if a.record.target_id == "a"][1].record.hex_id
    )
    assert repo.resolve("@2025-11-18T17:00:00").id == sid_of(0).hex()  # T0 + 30h
    assert repo.resolve_tenant("b@latest~1").object == version(11).hex()


def test_removed_snapshots_are_left_out_of_every_answer(small_chunks: int) -> None:
    repo = Repository.init(MemoryBackend())
    everything = history_of_snapshots()
    layout(repo, everything[:5], everything[5:])
    gone = [everything[1].record, everything[6].record]  # one compacted, one journaled
    for record in gone:
        repo.backend.delete(record.key)
    removal = JournalEntry(CATALOG_VERSION, 0.0, removed=[r.id for r in gone])
    repo.catalog.append(removal)
    for compact in (False, True):
        if compact:
            assert repo.catalog.compact()
        view = repo.view()
        left = {h.snapshot_id for h in history.newest(view)}
        assert left == {a.record.id for a in everything} - {r.id for r in gone}
        assert all(history.find(view, r.id) is None for r in gone)
        held = {h.holder.snapshot_id for h in history.holding(view, "a")}
        assert held.isdisjoint(r.id for r in gone)
        assert {h.snapshot_id for h in history.of_target(view, "all")}.isdisjoint(
            r.id for r in gone
        )


def test_latest_is_right_after_older_snapshots_were_imported(
    small_chunks: int, tmp_path: Path
) -> None:
    """Chunks follow the order snapshots were learned in: an import adds old ones late."""
    repo = Repository.init(LocalBackend(tmp_path / "repo"))
    clock = FakeClock(datetime(2025, 6, 1, tzinfo=UTC))
    newest = [snap(repo, clock, {"id": "a", "v": n}) for n in range(3)][-1]
    for when, count in [
        (datetime(2024, 1, 1, tzinfo=UTC), 3),
        (datetime(2024, 12, 1, tzinfo=UTC), 1),
    ]:
        old = Repository.init(LocalBackend(tmp_path / f"old-{count}"))
        old_clock = FakeClock(when)
        for n in range(count):
            snap(old, old_clock, {"id": "old", "v": n})
        bundle = tmp_path / f"old-{count}.casbak"
        with bundle.open("wb") as handle:
            export_bundle(old, select_snapshots(old, everything=True), handle)
        import_bundle(repo, lambda path=bundle: path.open("rb"))  # type: ignore[misc]
        repo.catalog.compact()
    head = repo.catalog.head()
    assert head is not None and len(head.chunks) == 3
    assert repo.resolve("latest").id == newest
    assert [s.id for s in list_snapshots(repo, limit=1)] == [newest]
    assert_agrees(repo)


def test_the_newest_holder_of_a_version_breaks_ties_by_id_like_every_answer() -> None:
    repo = Repository.init(MemoryBackend())
    first = told(1, T0, tenants={"x": version(1)})
    second = told(2, T0, tenants={"x": version(2)})
    larger, smaller = sorted([first, second], key=lambda a: a.record.id, reverse=True)
    repo.catalog.write_fresh([larger, smaller], 0)  # the newer (larger id) at position 0
    view = repo.view()
    assert [h.snapshot_id for h in history.newest(view)] == [larger.record.id, smaller.record.id]
    newest = history.newest_holding(view, "x")
    assert newest is not None
    assert newest.version == history.holding(view, "x")[0].version == larger.entries[0].object


# Compaction


def test_compaction_folds_the_journal_and_deletes_what_it_replaced() -> None:
    repo = Repository.init(MemoryBackend())
    clock = FakeClock()
    before_compaction = None
    for n in range(COMPACT_AFTER + 3):
        snap(repo, clock, {"id": "a", "v": n % 4}, {"id": f"t{n % 5}", "v": n}, target=f"t{n % 2}")
        if n == COMPACT_AFTER - 2:
            before_compaction = assert_agrees(repo, checks=False)
            assert journal_numbers(repo) == list(range(1, COMPACT_AFTER))
    head = repo.catalog.head()
    assert head is not None and head.journal == COMPACT_AFTER
    assert journal_numbers(repo) == list(range(1, COMPACT_AFTER + 4))  # kept for slow readers
    assert stored_parts(repo) == named_parts(repo)
    listed = assert_agrees(repo)
    assert listed[-len(before_compaction or []) :] == before_compaction


def test_compaction_keeps_one_journal_behind_and_only_parts_its_head_names(
    compact_often: int,
) -> None:
    repo = Repository.init(MemoryBackend())
    clock = FakeClock()
    heads = []
    for n in range(9):
        snap(repo, clock, {"id": "a", "v": n})
        head = repo.catalog.head()
        assert head is not None
        if not heads or heads[-1] != head.journal:
            heads.append(head.journal)
        # Entries the head before this one folded are gone; those after it stay.
        previous = heads[-2] if len(heads) > 1 else 0
        assert journal_numbers(repo) == list(range(previous + 1, n + 2))
        assert stored_parts(repo) == named_parts(repo)
    assert heads == [0, 2, 4, 6, 8]
    assert_agrees(repo)


def test_one_repository_kept_open_caches_only_the_parts_its_head_names(
    compact_often: int, small_chunks: int
) -> None:
    # A process taking snapshot after snapshot once kept every part it ever
    # wrote: 13 GB after 80,000 snapshots.
    repo = Repository.init(MemoryBackend())
    clock = FakeClock()
    for n in range(40):
        snap(repo, clock, {"id": f"t{n % 7}", "v": n}, {"id": "a", "v": n % 3}, target=f"t{n % 7}")
        cached = set(repo.catalog._parts) | set(repo.catalog._held)
        assert {catalog_part_key(name) for name in cached} <= named_parts(repo)
    assert_agrees(repo)


def test_a_reader_whose_catalog_in_memory_was_let_go_rebuilds_it() -> None:
    # A catalog built in memory (no head stored) is let go of when another
    # is built in memory (a writer that found the compaction locked) or a
    # head is stored: its reader must rebuild, never ask for unstored parts.
    backend = MemoryBackend()
    other = Repository.init(backend)
    clock = FakeClock()
    for n in range(3):
        snap(other, clock, {"id": "a", "v": n})
    other.catalog.invalidate()
    reader = Repository.open(backend)
    assert len(reader.snapshots()) == 3  # built in memory
    backend.put(CATALOG_LOCK_KEY, b'{"since": 0}')
    snap(other, clock, {"id": "a", "v": 3})
    snap(reader, clock, {"id": "a", "v": 4})
    assert len(reader.snapshots()) == 5
    assert_agrees(reader)


def test_the_part_cache_keeps_at_most_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_module, "_PART_CACHE", 4)
    repo = Repository.init(MemoryBackend())
    clock = FakeClock()
    for n in range(6):
        snap(repo, clock, *({"id": f"t{k}", "v": n} for k in range(40)))
    repo.catalog.compact()
    assert len(repo.catalog._parts) <= 4
    assert_agrees(repo)


def test_a_fresh_compaction_lock_makes_compaction_skip_and_a_stale_one_is_taken_over() -> None:
    now = [1_000_000.0]
    backend = MemoryBackend(clock=lambda: now[0])
    repo = Repository.init(backend)
    clock = FakeClock()
    for n in range(3):
        snap(repo, clock, {"id": "a", "v": n})
    backend.put(CATALOG_LOCK_KEY, b'{"since": 0}')
    now[0] += STALE_COMPACTION - 1
    assert repo.catalog.compact() is False
    head = repo.catalog.head()
    assert head is not None and head.journal == 0
    assert backend.get(CATALOG_LOCK_KEY) == b'{"since": 0}'
    now[0] += 2
    assert repo.catalog.compact() is True
    head = repo.catalog.head()
    assert head is not None and head.journal == 3
    assert backend.stat(CATALOG_LOCK_KEY) is None
    assert_agrees(repo)


def test_a_reader_holding_an_old_head_whose_parts_were_replaced_asks_again() -> None:
    base = MemoryBackend()
    repo = Repository.init(base)
    clock = FakeClock()
    for n in range(3):
        snap(repo, clock, {"id": "a", "v": n})
    repo.catalog.compact()
    backend = Moments(base)
    reader = Repository.open(backend)

    def compaction() -> None:
        writer = Repository.open(base)
        snap(writer, clock, {"id": "a", "v": 9})
        assert writer.catalog.compact()

    # Between the reader's head and its first part, the parts are replaced.
    backend.at(starts("get catalog/parts/"), compaction)
    listed = [s.id for s in reader.snapshots()]
    assert backend.plans == []
    assert sum(1 for moment in backend.seen if moment == f"get {CATALOG_HEAD_KEY}") > 2
    assert listed == assert_agrees(repo)
    assert len(listed) == 4


def test_a_reader_misses_no_entry_when_two_compactions_pass_during_its_journal_read() -> None:
    base = MemoryBackend()
    repo = Repository.init(base)
    clock = FakeClock()
    snap(repo, clock, {"id": "a", "v": 0})
    repo.catalog.compact()
    backend = Moments(base)
    reader = Repository.open(backend)
    assert len(reader.snapshots()) == 1  # its parts are cached now
    snap(repo, clock, {"id": "a", "v": 1})

    def two_compactions() -> None:
        writer = Repository.open(base)
        for n in (2, 3):
            snap(writer, clock, {"id": "a", "v": n})
            assert writer.catalog.compact()

    # The second compaction deletes the entry the reader is about to read.
    backend.at(starts("get catalog/journal/"), two_compactions)
    assert [s.id for s in reader.snapshots()] == assert_agrees(repo)
    assert backend.plans == []


# A journal entry whose manifest never came


def test_a_journal_entry_whose_manifest_never_came_is_skipped_then_dropped(
    compact_often: int,
) -> None:
    base = MemoryBackend()
    repo = Repository.init(base)
    clock = FakeClock()
    snap(repo, clock, {"id": "a", "v": 0})
    backend = Moments(base)

    def die() -> None:
        raise Crash("between the journal entry and the manifest")

    backend.at(starts("put manifests/"), die)
    with pytest.raises(Crash):
        snap(Repository.open(backend), clock, {"id": "ghost", "v": 1})
    ghost_seq = max(journal_numbers(repo))
    ghost = decode_part(
        base.get(f"{CATALOG_JOURNAL_PREFIX}{ghost_seq:012d}"), JournalEntry, "x"
    ).added[0]
    assert base.stat(ghost.record.key) is None
    assert_agrees(repo)
    # Compaction waits for it (its writer may be slow, not dead) ...
    for n in range(1, 5):
        snap(repo, clock, {"id": "a", "v": n})
    head = repo.catalog.head()
    assert head is not None and head.journal == ghost_seq - 1
    assert_agrees(repo)
    # ... until GHOST_AFTER has passed: then it is dropped, and the rest folded.
    repo.catalog.clock = lambda: time.time() + GHOST_AFTER + 1
    assert repo.catalog.compact()
    head = repo.catalog.head()
    assert head is not None and head.journal == max(journal_numbers(repo))
    view = repo.catalog.view()
    assert view is not None and view.journal == []
    assert history.find(view, ghost.record.id) is None
    assert "ghost" not in set(history.tenants(view))
    assert_agrees(repo)


# A missing catalog


def test_a_missing_catalog_is_rebuilt_in_memory_by_readers_and_stored_by_the_next_snapshot(
    tmp_path: Path,
) -> None:
    from tests.test_cli import ROUND1, ROUND2, run

    path = tmp_path / "repo"
    run(path, "init")
    run(path, "snapshot", str(ROUND1))
    run(path, "snapshot", str(ROUND2), "--operation", "sync-apply")
    (path / CATALOG_HEAD_KEY).unlink()
    before = tree_state(path)
    code, out, _ = run(path, "--json", "list")
    assert code == 0 and len(json.loads(out)["snapshots"]) == 2
    for command in (["log", "globex-us"], ["show", "latest~1"], ["verify"]):
        assert run(path, *command)[0] == 0
    listed = subprocess.run(
        [sys.executable, "-m", "casbak", "--repo", str(path), "--json", "list"],
        capture_output=True,
        check=True,
    )
    assert len(json.loads(listed.stdout)["snapshots"]) == 2
    assert tree_state(path) == before  # readers write nothing
    run(path, "snapshot", str(ROUND1), "--operation", "tenant-update")
    assert (path / CATALOG_HEAD_KEY).exists()
    assert len(assert_agrees(Repository.open(LocalBackend(path)))) == 3


def test_a_catalog_missing_after_compactions_is_rebuilt_above_its_old_journal(
    compact_often: int,
) -> None:
    """A cleanup that crashed after taking the head down leaves later journal entries only."""
    repo = Repository.init(MemoryBackend())
    clock = FakeClock()
    for n in range(7):
        snap(repo, clock, {"id": "a", "v": n})
    left = journal_numbers(repo)
    assert left[0] > 1
    repo.catalog.invalidate()
    snap(repo, clock, {"id": "a", "v": 7})  # the writer stores a rebuilt catalog first
    head = repo.catalog.head()
    assert head is not None and head.journal >= max(left)
    assert len(assert_agrees(repo)) == 8


def test_a_rebuild_racing_a_writer_keeps_the_writers_snapshot() -> None:
    """Two writers find no catalog: one rebuilds while the other's manifest is on its way."""
    base = MemoryBackend()
    repo = Repository.init(base)
    clock = FakeClock()
    snap(repo, clock, {"id": "a", "v": 1})
    repo.catalog.invalidate()
    backend = Moments(base)
    backend.at(
        starts("put manifests/"),
        lambda: Repository.open(base).timeline.rebuild_catalog(store=True),
    )
    racing = snap(Repository.open(backend), clock, {"id": "b", "v": 1})
    assert backend.plans == []
    assert racing in assert_agrees(repo)


def test_forget_after_compactions_leaves_nothing_of_the_snapshot_in_the_journal(
    compact_often: int,
) -> None:
    from casbak.maintenance import forget

    repo = Repository.init(MemoryBackend())
    clock = FakeClock()
    ids = [snap(repo, clock, {"id": "a", "v": n}, description=f"run {n}") for n in range(7)]
    end = max(journal_numbers(repo))
    forget(repo, [ids[5]], grace=timedelta(0))
    assert journal_numbers(repo) == []
    head = repo.catalog.head()
    assert head is not None and head.journal == end  # numbering goes on, never back
    assert stored_parts(repo) == named_parts(repo)
    later = snap(repo, clock, {"id": "a", "v": 9})
    assert journal_numbers(repo) == [end + 1]
    listed = assert_agrees(repo)
    assert ids[5] not in listed and later == listed[0]


def test_the_head_records_each_chunks_newest_time_and_list_reads_only_what_it_needs(
    small_chunks: int, compact_often: int
) -> None:
    repo = Repository.init(MemoryBackend())
    clock = FakeClock()
    ids = [snap(repo, clock, {"id": "a", "v": number}) for number in range(10)]
    repo.catalog.compact()
    view = repo.view()
    assert len(view.head.newest) == len(view.head.chunks) > 2
    for index in range(len(view.head.chunks)):
        assert view.head.newest[index] == max(view.chunk(index).times())
    read: list[int] = []
    times = view.times
    view.times = lambda index: (read.append(index), times(index))[1]  # type: ignore[method-assign]
    assert [h.snapshot_id.hex() for h in history.newest(view, 2)] == ids[::-1][:2]
    last = len(view.head.chunks) - 1
    assert read == [last, last - 1]  # the chunks holding the newest two; no earlier one


def _sync(number: int, tenants: int = TELL_BY_REFERENCE) -> list[TenantDocument]:
    """A sync large enough to be told by reference: tenant ``t0000`` changes each time."""
    from casbak.sources import documents_from_values

    values = [{"id": f"t{index:04d}", "v": number if index == 0 else 1} for index in range(tenants)]
    return documents_from_values(values, "x")


def _stored(backend: MemoryBackend) -> dict[str, bytes]:
    return {key: backend.get(key) for key in backend.list_names("")}


def test_a_sync_of_many_tenants_is_told_by_reference(clock: FakeClock) -> None:
    """Its journal entry names the manifest, not every tenant again, and waits to be folded."""
    from casbak.service import take_snapshot
    from casbak.sources import documents_from_values

    repo = Repository.init(MemoryBackend())
    journal = "catalog/journal/"
    few = documents_from_values([{"id": "solo", "v": 1}], "x")
    take_snapshot(repo, few, operation="tenant-update", clock=clock)
    first = take_snapshot(repo, _sync(1), operation="sync-apply", clock=clock).snapshot
    second = take_snapshot(repo, _sync(2), operation="sync-apply", clock=clock).snapshot
    head = repo.catalog.head()
    assert head is not None and head.journal == 0  # nothing folded yet
    keys = sorted(repo.backend.list_names(journal))
    assert len(keys) == 3
    stored = repo.backend.get(keys[-1])
    entry = decode_part(stored, JournalEntry, "entry")
    assert entry.version == catalogdata.BY_REFERENCE
    assert [added.entries for added in entry.added] == [None]
    assert len(stored) < 1000  # told in full, 256 tenants took 12 KB
    reopened = Repository.open(repo.backend)
    assert reopened.resolve("latest").id == second.id
    assert [e.first.id for e in tenant_log(reopened, "t0000")] == [second.id, first.id]
    assert reopened.newest_versions(["t0001", "solo"]).keys() == {"t0001", "solo"}
    assert_agrees(repo)


class EarlierAdded(msgspec.Struct, array_like=True, frozen=True):
    """`Added` as casbak wrote and read it before additions could be told by reference."""

    record: catalogdata.SnapshotRecord
    micros: int
    entries: list[catalogdata.TenantEntry]


class EarlierEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: int
    written: float
    added: list[EarlierAdded] = []
    removed: list[bytes] = []


def test_a_casbak_that_knows_no_reference_refuses_the_entry_rather_than_misread_it() -> None:
    """An earlier casbak decodes `entries` as a list: nil is no list, so the entry is damaged."""
    record = told(1, T0).record
    entry = JournalEntry(catalogdata.BY_REFERENCE, 0.0, added=[Added(record, 1, None)])
    with pytest.raises(CorruptData):
        decode_part(encode_part(entry), EarlierEntry, "entry")


def test_a_journal_entry_of_an_unknown_version_is_refused(clock: FakeClock) -> None:
    repo = Repository.init(MemoryBackend())
    snap(repo, clock, {"id": "a"})
    repo.catalog.append(JournalEntry(9, 0.0, added=[told(2, T0)]))
    with pytest.raises(CorruptData, match="unknown catalog journal version"):
        Repository.open(repo.backend).snapshots()


def test_syncs_told_by_reference_are_folded_after_a_few(clock: FakeClock) -> None:
    from casbak.catalog import FOLD_SYNC_AFTER
    from casbak.service import take_snapshot

    repo = Repository.init(MemoryBackend())
    for number in range(1, FOLD_SYNC_AFTER + 1):
        head = repo.catalog.head()
        assert head is None or head.journal == 0  # each waits until enough do
        take_snapshot(repo, _sync(number), operation="sync-apply", clock=clock)
    head = repo.catalog.head()
    assert head is not None and head.journal == FOLD_SYNC_AFTER
    bucket = Repository.open(repo.backend).view().bucket(bucket_of("t0000"))
    folded = bucket.tenant("t0000")
    assert folded is not None and len(folded.objects) == FOLD_SYNC_AFTER
    assert_agrees(repo, tenants={"t0000", "t0001"})


def test_a_fold_that_finds_a_manifest_told_by_reference_gone_waits(clock: FakeClock) -> None:
    """Removed after the fold saw it: the journal stays as it is until the removal is told."""
    from casbak.service import take_snapshot

    repo = Repository.init(MemoryBackend())
    gone = take_snapshot(repo, _sync(1), operation="sync-apply", clock=clock).snapshot
    take_snapshot(repo, _sync(2), operation="sync-apply", clock=clock)
    assert isinstance(repo.backend, MemoryBackend)
    fresh = Repository.open(repo.backend)
    rebuild = fresh.rebuild

    def removed(snapshot_id: Digest, key: str) -> Manifest:
        if snapshot_id == gone.id:
            raise ObjectMissing(key)
        return rebuild(snapshot_id, key)

    fresh.timeline._rebuild = removed
    before = _stored(repo.backend)
    assert fresh.catalog.compact() is False
    assert _stored(repo.backend) == before
    assert Repository.open(repo.backend).catalog.compact() is True
    assert_agrees(repo)


def _damage_manifest(repo: Repository, key: str) -> None:
    """One entry's size changed: the header still reads, the rebuilt manifest fails its hash."""
    from casbak.storedmanifest import decode_manifest_file, encode_stored_document

    document = decode_manifest_file(key, repo.backend.get(key))
    first = document.entries[0]
    entries = [msgspec.structs.replace(first, size=first.size + 1), *document.entries[1:]]
    damaged = msgspec.structs.replace(document, entries=entries)
    repo.backend.put(key, encode_stored_document(damaged), overwrite=True)


def test_a_damaged_manifest_told_by_reference_stops_no_other_question(clock: FakeClock) -> None:
    """Readers, compaction and forget take it as holding no tenants; verify names it."""
    from casbak.maintenance import forget
    from casbak.service import take_snapshot
    from casbak.sources import documents_from_values

    def solo(number: int) -> list[TenantDocument]:
        return documents_from_values([{"id": "solo", "v": number}], "x")

    repo = Repository.init(MemoryBackend())
    take_snapshot(repo, solo(1), target_id="other", operation="tenant-update", clock=clock)
    clock.advance(hours=1)
    big = take_snapshot(repo, _sync(1), target_id="big", operation="sync-apply", clock=clock)
    _damage_manifest(repo, repo.manifest_keys()[Digest(big.snapshot.id)])
    fresh = Repository.open(repo.backend)
    assert len(tenant_log(fresh, "solo")) == 1
    assert fresh.newest_versions(["solo", "t0001"]).keys() == {"solo"}
    for number in range(2, 40):
        clock.advance(hours=1)
        take_snapshot(repo, solo(number), target_id="other", operation="tenant-update", clock=clock)
    head = repo.catalog.head()
    assert head is not None and head.journal >= COMPACT_AFTER  # folded past the damaged one
    victim = Repository.open(repo.backend).resolve("latest").id
    forget(Repository.open(repo.backend), [victim], force=True, prune=False)
    after = Repository.open(repo.backend)
    assert after.catalog.head() is not None
    assert len(tenant_log(after, "solo")) == 38
    assert len(after.snapshots()) == 39
    from casbak.verify import verify_repository

    report = verify_repository(after, quick=True)
    assert not report.ok
    assert any(big.snapshot.id in finding.snapshots for finding in report.findings)


def test_a_reader_retries_when_a_manifest_told_by_reference_went_meanwhile(
    clock: FakeClock,
) -> None:
    from casbak.service import take_snapshot

    repo = Repository.init(MemoryBackend())
    take_snapshot(repo, _sync(1), operation="sync-apply", clock=clock)
    fresh = Repository.open(repo.backend)
    rebuild = fresh.rebuild
    failures: list[str] = []

    def once_gone(snapshot_id: Digest, key: str) -> Manifest:
        if not failures:
            failures.append(key)
            raise ObjectMissing(key)
        return rebuild(snapshot_id, key)

    fresh.timeline._rebuild = once_gone
    assert len(tenant_log(fresh, "t0000")) == 1
    assert failures


def _as_written_before_gaps(repo: Repository) -> None:
    """Rewrite the stored catalog as a version 1 head, whose buckets keep positions."""
    head = repo.catalog.head()
    assert head is not None
    buckets = []
    for name in head.buckets:
        bucket = repo.catalog.part(name, Bucket)
        tenants = {}
        for tenant_id in bucket.tenants:
            history = bucket.tenant(tenant_id)
            assert history is not None
            tenants[tenant_id] = msgspec.Raw(msgspec.msgpack.encode(history))
        data = encode_part(Bucket(tenants, dict(bucket.targets)))
        repo.backend.put(catalog_part_key(part_name(data)), data, overwrite=True)
        buckets.append(part_name(data))
    old = msgspec.structs.replace(head, version=CATALOG_VERSION, buckets=buckets)
    repo.backend.put(CATALOG_HEAD_KEY, encode_part(old), overwrite=True)


def test_tenant_histories_keep_gaps_so_a_tenant_in_every_sync_costs_almost_nothing(
    clock: FakeClock,
) -> None:
    from casbak.catalog import FOLD_SYNC_AFTER
    from casbak.service import take_snapshot

    repo = Repository.init(MemoryBackend())
    sizes = []
    for rounds in (FOLD_SYNC_AFTER, 4 * FOLD_SYNC_AFTER):
        while (repo.catalog.head() or Head(2, 0, 0, 0, [], [])).journal < rounds:
            take_snapshot(repo, _sync(1), operation="sync-apply", clock=clock)
        head = repo.catalog.head()
        assert head is not None and head.version == catalogdata.HEAD_VERSION
        sizes.append(sum(len(repo.backend.get(catalog_part_key(n))) for n in set(head.buckets)))
        stored = repo.catalog.part(head.buckets[bucket_of("t0001")], Bucket)
        assert stored.gaps
        kept = stored.stored_tenant("t0001")
        assert kept is not None
        assert list(kept.occurrences())[1:] == [(1, 0)] * (rounds - 1)
    # Four times the syncs, not four times the bytes: each adds a gap of 1 per tenant.
    assert sizes[1] < sizes[0] * 1.3
    assert_agrees(repo, tenants={"t0000", "t0001"})


def test_a_catalog_whose_buckets_keep_positions_is_read_and_folded_into_gaps(
    clock: FakeClock,
) -> None:
    from casbak.service import take_snapshot

    repo = Repository.init(MemoryBackend())
    for number in (1, 2):
        snap(repo, clock, {"id": "a", "v": number}, {"id": "b"})
        take_snapshot(repo, _sync(number), operation="sync-apply", clock=clock)
    repo.catalog.compact()
    _as_written_before_gaps(repo)
    head = repo.catalog.head()
    assert head is not None and head.version == CATALOG_VERSION
    assert_agrees(repo)
    snap(repo, clock, {"id": "a", "v": 3}, {"id": "b"})
    assert repo.catalog.compact()
    head = repo.catalog.head()
    assert head is not None and head.version == catalogdata.HEAD_VERSION
    changed = repo.catalog.part(head.buckets[bucket_of("a")], Bucket)
    assert changed.gaps
    assert_agrees(repo)


def test_gaps_that_run_past_the_largest_position_are_damage() -> None:
    gaps = array("I", [2**32 - 2, 5]).tobytes()
    with pytest.raises(CorruptData):
        catalogdata.positions_of_gaps(gaps, "t")
    positions = array("I", [3, 4, 9, 100]).tobytes()
    assert catalogdata.positions_of_gaps(catalogdata.gaps_of_positions(positions)) == positions


def test_a_bucket_that_keeps_positions_with_an_unsound_history_is_damage_when_folded() -> None:
    history = catalogdata.TenantHistory(
        [version(1)], [1], array("I", [5, 3]).tobytes(), array("I", [0, 0]).tobytes()
    )
    old = Bucket({"a": msgspec.Raw(msgspec.msgpack.encode(history))}, {})
    head = Head(CATALOG_VERSION, 0, 6, 6, [], ["b" * 64] * BUCKETS)
    folding = Folding(head, lambda index: Chunk(b"", b"", b"", []), lambda index: old)
    with pytest.raises(CorruptData, match="history of 'a' is unsound"):
        folding.bucket(bucket_of("a"))
