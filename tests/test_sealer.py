"""The sealer: sealed bytes open only as their own kind and name; damage is DecryptionFailed."""

from __future__ import annotations

import blake3
import pytest

from casbak.errors import CorruptData, DecryptionFailed, IntegrityError
from casbak.ids import PLAIN, Hasher, hash_bytes
from casbak.sealer import (
    FRAME_OVERHEAD,
    MASTER_KEY_LENGTH,
    NONCE_LENGTH,
    OVERHEAD,
    Sealer,
    _aes_gcm_siv_class,
    associated_data,
    new_master_key,
    subkey,
)

MASTER = bytes(range(MASTER_KEY_LENGTH))
SECRET = b'{"tenant":"acme-corp-secret","domain":"sso.acme.example"}'
OBJECT_ID = bytes.fromhex(hash_bytes(SECRET))


@pytest.fixture
def sealer() -> Sealer:
    return Sealer(MASTER)


def test_seal_opens_to_the_plaintext_and_hides_it(sealer: Sealer) -> None:
    sealed = sealer.seal("manifest", b"id-1", SECRET)
    assert len(sealed) == len(SECRET) + OVERHEAD
    assert b"acme" not in sealed
    assert sealer.open("manifest", b"id-1", sealed, "manifest x") == SECRET


def test_each_seal_uses_a_fresh_nonce(sealer: Sealer) -> None:
    first = sealer.seal("index", b"", SECRET)
    second = sealer.seal("index", b"", SECRET)
    assert first[:12] != second[:12]
    assert first != second


@pytest.mark.parametrize(("kind", "name"), [("index", b"id-1"), ("manifest", b"id-2")])
def test_another_kind_or_name_does_not_open(sealer: Sealer, kind: str, name: bytes) -> None:
    sealed = sealer.seal("manifest", b"id-1", SECRET)
    with pytest.raises(DecryptionFailed, match=r"^stored as x: does not decrypt"):
        sealer.open(kind, name, sealed, "stored as x")


def test_a_flipped_byte_anywhere_is_damage(sealer: Sealer) -> None:
    sealed = sealer.seal("catalog-head", b"", SECRET)
    for position in (0, 11, 12, len(sealed) // 2, len(sealed) - 1):
        damaged = bytearray(sealed)
        damaged[position] ^= 0x01
        with pytest.raises(DecryptionFailed):
            sealer.open("catalog-head", b"", bytes(damaged), "catalog/head")


@pytest.mark.parametrize("keep", [0, 5, OVERHEAD - 1, OVERHEAD, OVERHEAD + 3])
def test_a_truncated_file_is_damage(sealer: Sealer, keep: int) -> None:
    sealed = sealer.seal("dict", b"", SECRET)
    with pytest.raises(DecryptionFailed) as caught:
        sealer.open("dict", b"", sealed[:keep], "dicts/ab")
    assert caught.value.what == "dicts/ab"


def test_another_master_key_does_not_open(sealer: Sealer) -> None:
    sealed = sealer.seal("rawcache", b"repo", SECRET)
    with pytest.raises(DecryptionFailed):
        Sealer(new_master_key()).open("rawcache", b"repo", sealed, "cache")


def test_decryption_failed_is_damage_with_exit_code_3() -> None:
    assert issubclass(DecryptionFailed, CorruptData)
    assert issubclass(DecryptionFailed, IntegrityError)
    assert DecryptionFailed("x", "y").exit_code == 3


def test_frames_store_no_nonce_and_are_deterministic(sealer: Sealer) -> None:
    sealed = sealer.seal_frame(OBJECT_ID, SECRET)
    assert len(sealed) == len(SECRET) + FRAME_OVERHEAD
    assert sealer.seal_frame(OBJECT_ID, SECRET) == sealed
    assert b"acme" not in sealed
    assert sealer.open_frame(OBJECT_ID, sealed, "object") == SECRET


def test_a_frame_moved_to_another_object_or_damaged_does_not_open(sealer: Sealer) -> None:
    sealed = sealer.seal_frame(OBJECT_ID, SECRET)
    other = bytes(32)
    with pytest.raises(DecryptionFailed):
        sealer.open_frame(other, sealed, "object 00")
    with pytest.raises(DecryptionFailed):
        sealer.open_frame(OBJECT_ID, sealed[:-1], "object")
    with pytest.raises(DecryptionFailed, match="cut short"):
        sealer.open_frame(OBJECT_ID, sealed[: FRAME_OVERHEAD - 1], "object")
    flipped = bytes([sealed[0] ^ 0x80]) + sealed[1:]
    with pytest.raises(DecryptionFailed):
        sealer.open_frame(OBJECT_ID, flipped, "object")


def test_a_sealed_file_is_not_a_frame(sealer: Sealer) -> None:
    sealed = sealer.seal("index", b"", SECRET)
    with pytest.raises(DecryptionFailed):
        sealer.open_frame(OBJECT_ID, sealed, "object")


def test_unknown_kinds_are_a_programming_error(sealer: Sealer) -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        sealer.seal("pack", b"", b"")
    with pytest.raises(ValueError, match="unknown kind"):
        associated_data("Manifest", b"")


def test_associated_data_separates_kind_and_name() -> None:
    assert associated_data("index", b"") != associated_data("dict", b"")
    assert associated_data("manifest", b"\x00a") == b"casbak\x00manifest\x00\x00a"


def test_master_keys_have_one_length() -> None:
    assert len(new_master_key()) == MASTER_KEY_LENGTH
    assert new_master_key() != new_master_key()
    with pytest.raises(ValueError, match="64 bytes"):
        Sealer(b"short")


def test_subkeys_differ_by_purpose_and_use_blake3_derive_key() -> None:
    seal, ids = subkey(MASTER, "seal key"), subkey(MASTER, "id key")
    assert seal != ids
    assert len(seal) == len(ids) == 32
    expected = blake3.blake3(MASTER, derive_key_context="casbak 2026 id key v1").digest()
    assert ids == expected


def test_keyed_ids_differ_from_plain_ids_and_follow_blake3_keyed_mode(sealer: Sealer) -> None:
    keyed = sealer.hasher(SECRET)
    assert sealer.hasher.keyed
    assert not PLAIN.keyed
    assert PLAIN(SECRET) == hash_bytes(SECRET)
    assert keyed != hash_bytes(SECRET)
    assert keyed == blake3.blake3(SECRET, key=subkey(MASTER, "id key")).hexdigest()
    assert Sealer(new_master_key()).hasher(SECRET) != keyed


def test_a_hasher_refuses_a_key_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Hasher(b"too short")


def test_the_fast_loaded_cipher_is_the_public_aes_gcm_siv() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

    assert _aes_gcm_siv_class() is AESGCMSIV


def test_sealed_bytes_open_with_the_public_cipher_and_the_documented_keys(sealer: Sealer) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

    sealed = sealer.seal("manifest", b"m1", b"tenant data")
    reader = AESGCMSIV(subkey(MASTER, "seal key"))
    nonce, body = sealed[:NONCE_LENGTH], sealed[NONCE_LENGTH:]
    plain = reader.decrypt(nonce, body, associated_data("manifest", b"m1"))
    assert plain == b"tenant data"
