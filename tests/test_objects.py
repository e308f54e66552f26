from __future__ import annotations

import pytest
import zstandard

from casbak.backends.memory import MemoryBackend
from casbak.errors import ChecksumMismatch, CorruptData, ObjectMissing
from casbak.ids import hash_bytes
from casbak.layout import object_id_from_key as digest_from_key
from casbak.layout import object_key
from casbak.objects import MAX_OBJECT_BYTES, ObjectStore, decompress_object


@pytest.fixture
def store() -> ObjectStore:
    ticks = iter(range(1000, 100000))
    return ObjectStore(MemoryBackend(clock=lambda: float(next(ticks))), compression_level=3)


def test_add_then_read_rehashes(store: ObjectStore) -> None:
    data = b'{"id":"t1","name":"x"}'
    digest = hash_bytes(data)
    assert store.add(digest, data) > 0
    assert store.read(digest) == data
    assert store.contains(digest)
    assert [d for d, _ in store.list()] == [digest]


def test_second_add_writes_nothing_and_refreshes_only_old_objects() -> None:
    from casbak.objects import REFRESH_AFTER

    now = [1000.0]
    store = ObjectStore(MemoryBackend(clock=lambda: now[0]), compression_level=3)
    data = b'{"id":"t1"}'
    digest = hash_bytes(data)
    store.add(digest, data)
    now[0] += 60
    assert store.add(digest, data) == 0
    young = store.backend.stat(object_key(digest))
    assert young is not None and young.mtime == 1000.0  # within the grace already: no write
    now[0] += REFRESH_AFTER
    assert list(store.add_many([(digest, data)])) == [0]
    old = store.backend.stat(object_key(digest))
    assert old is not None and old.mtime == now[0]
    assert old.size == young.size


def test_add_many_lists_once_for_many_documents() -> None:
    class Remote(MemoryBackend):
        concurrency = 4
        stats = 0

        def stat(self, key: str):  # type: ignore[no-untyped-def]
            Remote.stats += 1
            return super().stat(key)

    store = ObjectStore(Remote(), compression_level=3)
    docs = [(hash_bytes(b"{%d}" % i), b"{%d}" % i) for i in range(100)]
    assert sum(store.add_many(docs[:50])) > 0
    Remote.stats = 0
    added = list(store.add_many(docs))
    assert Remote.stats == 0
    assert added[:50] == [0] * 50
    assert all(added[50:])
    assert {d for d, _ in store.list()} == {d for d, _ in docs}


def test_objects_are_zstd_frames_named_by_uncompressed_digest(store: ObjectStore) -> None:
    data = b'{"id":"t1","pad":"' + b"a" * 1000 + b'"}'
    digest = hash_bytes(data)
    store.add(digest, data)
    stored = store.backend.get(f"objects/{digest[:2]}/{digest}")
    assert len(stored) < len(data)
    assert zstandard.ZstdDecompressor().decompress(stored) == data


def test_flipped_bit_is_an_integrity_error_naming_the_object(store: ObjectStore) -> None:
    data = b'{"id":"t1","name":"some tenant name"}'
    digest = hash_bytes(data)
    store.add(digest, data)
    key = object_key(digest)
    stored = bytearray(store.backend.get(key))
    stored[-3] ^= 0x01
    store.backend.put(key, bytes(stored), overwrite=True)
    with pytest.raises((ChecksumMismatch, CorruptData)) as caught:
        store.read(digest)
    assert digest in str(caught.value)


def test_other_valid_object_under_wrong_name_is_detected(store: ObjectStore) -> None:
    one, two = b'{"id":"1"}', b'{"id":"2"}'
    store.add(hash_bytes(one), one)
    store.add(hash_bytes(two), two)
    store.backend.put(
        object_key(hash_bytes(one)), store.backend.get(object_key(hash_bytes(two))), overwrite=True
    )
    with pytest.raises(ChecksumMismatch) as caught:
        store.read(hash_bytes(one))
    assert caught.value.expected == hash_bytes(one)
    assert caught.value.actual == hash_bytes(two)


def test_not_zstd_and_truncated(store: ObjectStore) -> None:
    data = b'{"id":"t1"}' * 20
    digest = hash_bytes(data)
    with pytest.raises(CorruptData, match="not a zstd frame"):
        decompress_object(digest, b"plain text")
    compressed = zstandard.ZstdCompressor().compress(data)
    with pytest.raises(CorruptData, match="cannot decompress"):
        decompress_object(digest, compressed[: len(compressed) // 2])


def test_decompression_bomb_is_refused_before_inflating() -> None:
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (MAX_OBJECT_BYTES + 1))
    with pytest.raises(CorruptData, match="declares 67108865 bytes"):
        decompress_object("0" * 64, bomb)


def test_missing_object(store: ObjectStore) -> None:
    with pytest.raises(ObjectMissing):
        store.read("0" * 64)


def test_digest_from_key() -> None:
    digest = "ab" + "0" * 62
    assert digest_from_key(object_key(digest)) == digest
    assert digest_from_key(f"objects/cd/{digest}") is None
    assert digest_from_key("objects/ab/short") is None
    assert digest_from_key("manifests/x") is None


def test_put_race_counts_as_dedup(store: ObjectStore) -> None:
    data = b'{"id":"race"}'
    digest = hash_bytes(data)

    class RacingBackend(MemoryBackend):
        def stat(self, key: str):  # type: ignore[no-untyped-def]
            return None  # pretend another writer got there between stat and put

    racing = ObjectStore(RacingBackend(), 3)
    racing.backend.put(object_key(digest), zstandard.ZstdCompressor().compress(data))
    assert racing.add(digest, data) == 0
