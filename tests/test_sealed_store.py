"""An encrypted repository's pack store: keyed ids, sealed frames, index files, dictionaries."""

from __future__ import annotations

import json

import pytest

from casbak.backends.memory import MemoryBackend
from casbak.errors import ChecksumMismatch, DecryptionFailed
from casbak.ids import PLAIN, Digest
from casbak.layout import DICTIONARY_PREFIX, INDEX_PREFIX, PACK_PREFIX
from casbak.sealer import FRAME_OVERHEAD, Sealer
from casbak.sources import TenantDocument, documents_from_values
from casbak.store import PackStore
from casbak.store.dictionaries import TRAIN_FROM

LEVEL = 3
SECRET = "acme-sso-secret-domain.example"


def _documents(sealer: Sealer, count: int) -> dict[Digest, bytes]:
    values = [
        {"id": f"T{n:04d}", "name": f"{SECRET} tenant {n}", "selfProvisioningDomains": [SECRET]}
        for n in range(count)
    ]
    return {
        doc.digest: doc.canonical or b""
        for doc in documents_from_values(values, "t", sealer.hasher)
    }


@pytest.fixture
def sealer() -> Sealer:
    return Sealer(b"k" * 64)


def _files(backend: MemoryBackend, prefix: str) -> dict[str, bytes]:
    return {key: backend.get(key) for key in backend.list_names(prefix)}


def test_keyed_ids_differ_from_plain_ones_and_between_keys(sealer: Sealer) -> None:
    canonical = b'{"id":"T1"}'
    keyed = TenantDocument.of("T1", canonical, "x", sealer.hasher).digest
    assert keyed != PLAIN(canonical)
    assert keyed != TenantDocument.of("T1", canonical, "x", Sealer(b"o" * 64).hasher).digest
    assert TenantDocument.of("T1", canonical, "x").digest == PLAIN(canonical)


def test_sealed_objects_read_back_and_nothing_is_readable_without_the_key(
    sealer: Sealer,
) -> None:
    backend = MemoryBackend()
    documents = _documents(sealer, TRAIN_FROM + 6)  # enough to train a dictionary
    PackStore(backend, LEVEL, sealer).store(documents)
    first = next(iter(documents))
    edited = dict(json.loads(documents[first]), note="changed")
    (new,) = documents_from_values([edited], "t", sealer.hasher)
    assert new.canonical is not None
    PackStore(backend, LEVEL, sealer).store({new.digest: new.canonical}, {new.digest: first})
    fresh = PackStore(backend, LEVEL, sealer)
    assert fresh.index()[new.digest].base == first  # stored as a delta, sealed all the same
    assert fresh.read(new.digest) == new.canonical
    got = dict(fresh.read_many([*documents, new.digest]))
    assert got == {**documents, new.digest: new.canonical}
    assert _files(backend, DICTIONARY_PREFIX)
    # Without the key neither index files nor dictionaries open.
    blind = PackStore(backend, LEVEL)
    assert blind.index() == {}
    assert {key for key, _ in blind.index_problems} == set(_files(backend, INDEX_PREFIX))
    everything = b"".join(
        data
        for prefix in ("packs/", INDEX_PREFIX, DICTIONARY_PREFIX)
        for data in _files(backend, prefix).values()
    )
    for plain_text in (SECRET.encode(), b"T0001", *(bytes.fromhex(d) for d in documents)):
        assert plain_text not in everything


def test_a_sealed_frame_costs_sixteen_bytes(sealer: Sealer) -> None:
    canonical = json.dumps({"id": "T1", "text": "x" * 300}).encode()
    plain_store, sealed_store = (
        PackStore(MemoryBackend(), LEVEL),
        PackStore(MemoryBackend(), LEVEL, sealer),
    )
    plain_store.store({PLAIN(canonical): canonical})
    sealed_store.store({sealer.hasher(canonical): canonical})
    plain_length = plain_store.index()[PLAIN(canonical)].length
    assert sealed_store.index()[sealer.hasher(canonical)].length == plain_length + FRAME_OVERHEAD


def test_a_flipped_byte_in_a_sealed_frame_is_decryption_failed(sealer: Sealer) -> None:
    backend = MemoryBackend()
    documents = _documents(sealer, 3)
    PackStore(backend, LEVEL, sealer).store(documents)
    ((key, data),) = _files(backend, PACK_PREFIX).items()
    backend.put(key, data[:5] + bytes([data[5] ^ 1]) + data[6:], overwrite=True)
    store = PackStore(backend, LEVEL, sealer)
    results = dict(store.read_many(documents))
    damaged = [digest for digest, result in results.items() if isinstance(result, Exception)]
    assert len(damaged) == 1
    assert isinstance(results[damaged[0]], DecryptionFailed)
    assert f"object {damaged[0]}" in str(results[damaged[0]])


def test_a_frame_of_another_object_does_not_open(sealer: Sealer) -> None:
    backend = MemoryBackend()
    documents = _documents(sealer, 2)
    store = PackStore(backend, LEVEL, sealer)
    store.store(documents)
    one, other = list(documents)
    location = store.index()[one]
    # The other object's id on this one's frame: the associated data differs.
    with pytest.raises(DecryptionFailed):
        store.decode_frame(other, location, store.frame(one)[1])


def test_a_sealed_index_file_still_checks_its_name(sealer: Sealer) -> None:
    backend = MemoryBackend()
    PackStore(backend, LEVEL, sealer).store(_documents(sealer, 2))
    ((key, data),) = _files(backend, INDEX_PREFIX).items()
    backend.put(key, data + b"x", overwrite=True)
    store = PackStore(backend, LEVEL, sealer)
    assert store.index() == {}
    assert isinstance(store.index_problems[0][1], ChecksumMismatch)
