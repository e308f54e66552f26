"""The pack store's parts: base resolution, copies that keep their base, a view that keeps up."""

from __future__ import annotations

import json

import pytest
import zstandard

from casbak.backends.memory import MemoryBackend
from casbak.errors import CorruptData, ObjectMissing
from casbak.ids import Digest, hash_bytes
from casbak.layout import INDEX_PREFIX, pack_key
from casbak.store import Frame, PackStore
from casbak.store.frames import compression_params, raw_content

LEVEL = 3
BASE = json.dumps({"id": "a", "text": "a" * 400}).encode()
EDIT = json.dumps({"id": "a", "text": "a" * 400, "n": 1}).encode()
OTHER = json.dumps({"id": "b", "n": 2}).encode()
BASE_ID, EDIT_ID, OTHER_ID = hash_bytes(BASE), hash_bytes(EDIT), hash_bytes(OTHER)
# Same first 8 bytes as the base's id: the index cannot tell the two apart.
IMPOSTOR = Digest(BASE_ID[:16] + ("0" if BASE_ID[16] != "0" else "1") * 48)


def plain(canonical: bytes, digest: Digest | None = None) -> Frame:
    frame = zstandard.ZstdCompressor(compression_params=compression_params(LEVEL))
    return (digest or hash_bytes(canonical), frame.compress(canonical), None, len(canonical))


def delta(canonical: bytes, base: bytes, base_id: Digest) -> Frame:
    params = compression_params(LEVEL)
    frame = zstandard.ZstdCompressor(compression_params=params, dict_data=raw_content(base))
    return (hash_bytes(canonical), frame.compress(canonical), base_id, len(canonical))


def ambiguous(backend: MemoryBackend) -> None:
    """Two indexed objects share the base's prefix; the delta sits beside OTHER."""
    writer = PackStore(backend, LEVEL)
    writer.write_packs([plain(BASE), plain(BASE, IMPOSTOR)], None)
    writer.write_packs([delta(EDIT, BASE, BASE_ID), plain(OTHER)], None)


def test_a_base_with_one_match_is_a_full_id_once_loaded() -> None:
    backend = MemoryBackend()
    PackStore(backend, LEVEL).write_packs([plain(BASE), delta(EDIT, BASE, BASE_ID)], None)
    store = PackStore(backend, LEVEL)
    single = store.locate(EDIT_ID)  # by bisection, before the whole index is decoded
    assert single is not None
    assert (single.base, single.unresolved_base) == (BASE_ID, None)
    assert store.index()[EDIT_ID] == single
    assert store.chain_depth(EDIT_ID) == 1


def test_an_ambiguous_base_stays_explicitly_unresolved_and_reads_by_hash() -> None:
    backend = MemoryBackend()
    ambiguous(backend)
    store = PackStore(backend, LEVEL)
    location = store.locate(EDIT_ID)
    assert location is not None
    assert (location.base, location.unresolved_base) == (None, BASE_ID[:16])
    assert location.is_delta
    assert store.index()[EDIT_ID] == location
    assert store.read(EDIT_ID) == EDIT
    assert store.chain_depth(EDIT_ID) == 1


def test_a_missing_base_is_unresolved_and_the_delta_cannot_be_read() -> None:
    backend = MemoryBackend()
    PackStore(backend, LEVEL).write_packs([delta(EDIT, BASE, BASE_ID)], None)
    store = PackStore(backend, LEVEL)
    location = store.locate(EDIT_ID)
    assert location is not None
    assert (location.base, location.unresolved_base) == (None, BASE_ID[:16])
    with pytest.raises(CorruptData, match="missing or does not fit"):
        store.read(EDIT_ID)


def test_a_sweep_copies_a_delta_with_the_base_it_decodes_against() -> None:
    backend = MemoryBackend()
    ambiguous(backend)
    store = PackStore(backend, LEVEL)
    result = store.sweep([OTHER_ID])
    assert (result.objects_removed, result.packs_rewritten) == (1, 1)
    moved = store.locate(EDIT_ID)
    assert moved is not None
    assert moved.base == BASE_ID  # settled while copying, and the view was told
    fresh = PackStore(backend, LEVEL)
    assert fresh.read(EDIT_ID) == EDIT
    reloaded = fresh.locate(EDIT_ID)
    assert reloaded is not None
    assert reloaded.unresolved_base == BASE_ID[:16]  # the file records the prefix only


def test_a_rescue_moves_a_delta_with_an_unresolved_base_out_of_a_damaged_pack() -> None:
    backend = MemoryBackend()
    ambiguous(backend)
    store = PackStore(backend, LEVEL)
    damaged = store.index()[EDIT_ID].pack
    other = store.index()[OTHER_ID]
    data = bytearray(backend.get(pack_key(damaged)))
    data[other.offset] ^= 0xFF
    backend.put(pack_key(damaged), bytes(data), overwrite=True)
    assert store.rescue({damaged}) > 0
    fresh = PackStore(backend, LEVEL)
    assert fresh.index()[EDIT_ID].pack != damaged
    assert fresh.read(EDIT_ID) == EDIT
    assert fresh.index()[OTHER_ID].pack == damaged  # its own frame is bad: left for verify


def test_the_index_view_lists_again_when_another_writer_merged_its_files_away() -> None:
    backend = MemoryBackend()
    writer = PackStore(backend, LEVEL)
    writer.write_packs([plain(BASE)], None)
    writer.write_packs([plain(OTHER)], None)
    reader = PackStore(backend, LEVEL)
    old = sorted(info.key for info in backend.list(INDEX_PREFIX))
    assert reader.index_file_of(BASE_ID) in old
    merged = {**reader.read_index(old[0]), **reader.read_index(old[1])}
    PackStore(backend, LEVEL).write_index(merged)
    for key in old:
        backend.delete(key)
    with pytest.raises(ObjectMissing):
        reader.read_index(old[0])
    new = reader.index_file_of(BASE_ID)
    assert new is not None
    assert new not in old


def test_a_pack_written_again_over_a_damaged_copy_is_read_afresh() -> None:
    backend = MemoryBackend()
    store = PackStore(backend, LEVEL)
    store.write_packs([plain(BASE)], None)
    pack = store.index()[BASE_ID].pack
    backend.put(pack_key(pack), b"damaged", overwrite=True)
    assert store.pack_bytes(pack) == b"damaged"  # now cached
    store.write_packs([plain(BASE)], None)  # the same pack again: the write repairs it
    assert hash_bytes(store.pack_bytes(pack)) == pack
    assert store.read(BASE_ID) == BASE


def _many(count: int) -> list[bytes]:
    return [json.dumps({"id": f"t{number}", "n": number}).encode() for number in range(count)]


def test_many_lookups_resolve_only_what_they_return_and_agree_with_the_whole_index() -> None:
    from casbak.store.indexview import FEW

    backend = MemoryBackend()
    ambiguous(backend)
    others = _many(FEW + 5)
    PackStore(backend, LEVEL).write_packs([plain(doc) for doc in others], None)
    PackStore(backend, LEVEL).write_packs([delta(EDIT + b" ", BASE, BASE_ID)], None)
    wanted = [EDIT_ID, OTHER_ID, hash_bytes(EDIT + b" "), *map(hash_bytes, others)]
    wanted.append(Digest("ab" * 32))  # not stored
    store = PackStore(backend, LEVEL)
    found = store.locate_many(wanted)
    assert not store._view.decoded  # no record was resolved that was not asked for
    assert store.locate(hash_bytes(EDIT + b" ")) == found[hash_bytes(EDIT + b" ")]
    whole = PackStore(backend, LEVEL).index()
    assert found == {digest: whole[digest] for digest in wanted if digest in whole}
    assert found[EDIT_ID].unresolved_base == BASE_ID[:16]  # ambiguous: still said so


def test_many_lookups_see_a_base_written_after_the_records_were_read() -> None:
    from casbak.store.indexview import FEW

    backend = MemoryBackend()
    others = _many(FEW + 5)
    PackStore(backend, LEVEL).write_packs([plain(doc) for doc in others], None)
    PackStore(backend, LEVEL).write_packs([delta(EDIT, BASE, BASE_ID)], None)
    store = PackStore(backend, LEVEL)
    before = store.locate_many([EDIT_ID, *map(hash_bytes, others)])
    assert before[EDIT_ID].unresolved_base == BASE_ID[:16]  # its base is not stored yet
    store.write_packs([plain(BASE)], None)
    after = store.locate_many([EDIT_ID, *map(hash_bytes, others)])
    assert (after[EDIT_ID].base, after[EDIT_ID].unresolved_base) == (BASE_ID, None)
    assert store.read(EDIT_ID) == EDIT


def test_many_lookups_pass_over_an_index_file_with_a_record_naming_no_pack() -> None:
    import blake3
    import msgspec

    from casbak.layout import index_key
    from casbak.store.indexfile import _RECORD, INDEX_VERSION, PackRef, _IndexDocument
    from casbak.store.indexview import FEW

    backend = MemoryBackend()
    others = _many(FEW + 5)
    PackStore(backend, LEVEL).write_packs([plain(doc) for doc in others], None)
    stray = bytes.fromhex(hash_bytes(b"stray"))
    record = _RECORD.pack(stray, 7, 0, 10, 10, bytes(8))  # pack 7 of a file naming one
    document = _IndexDocument(INDEX_VERSION, [PackRef(bytes(32), b"")], record)
    stored = zstandard.ZstdCompressor().compress(msgspec.msgpack.encode(document))
    backend.put(index_key(blake3.blake3(stored).hexdigest()), stored)
    store = PackStore(backend, LEVEL)
    wanted = [Digest(stray.hex()), *map(hash_bytes, others)]
    assert set(store.locate_many(wanted)) == set(map(hash_bytes, others))
    assert Digest(stray.hex()) not in store.index()
    assert store._view.problems  # the whole index's decoding names the file
