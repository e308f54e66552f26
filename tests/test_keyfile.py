"""Key slots: wrap and unwrap the master key, refuse wrong passwords and malformed files."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import msgspec
import pytest

from casbak.errors import CorruptData, FormatVersionError, WrongPassword
from casbak.keyfile import (
    DEFAULT_KDF,
    Argon2id,
    KeySlot,
    Scrypt,
    decode_slot,
    derive_kek,
    encode_slot,
    make_slot,
    unlock,
    unwrap,
)
from casbak.sealer import new_master_key

CHEAP = Argon2id(iterations=1, memory_kib=8, lanes=1)
CHEAP_SCRYPT = Scrypt(n=4, r=1, p=1)
REPO = "ab" * 32
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def master() -> bytes:
    return new_master_key()


@pytest.mark.parametrize("kdf", [CHEAP, CHEAP_SCRYPT], ids=["argon2id", "scrypt"])
def test_a_slot_opens_with_its_password_only(master: bytes, kdf: Argon2id | Scrypt) -> None:
    slot = make_slot(master, "correct horse", REPO, WHEN, label="alice", kdf=kdf)
    assert unwrap(slot, "correct horse", REPO) == master
    assert unwrap(slot, "correct horsE", REPO) is None
    assert unwrap(slot, "correct horse", "cd" * 32) is None
    assert slot.label == "alice"
    assert master not in encode_slot(slot)


def test_a_slot_renamed_does_not_open(master: bytes) -> None:
    slot = make_slot(master, "pw", REPO, WHEN, kdf=CHEAP)
    renamed = msgspec.structs.replace(slot, id="0" * 16)
    assert unwrap(renamed, "pw", REPO) is None


def test_each_slot_has_its_own_salt_nonce_and_id(master: bytes) -> None:
    one = make_slot(master, "pw", REPO, WHEN, kdf=CHEAP)
    two = make_slot(master, "pw", REPO, WHEN, kdf=CHEAP)
    assert one.id != two.id
    assert one.nonce != two.nonce
    assert one.kdf.salt != two.kdf.salt
    assert one.wrapped != two.wrapped


def test_the_password_is_compared_after_unicode_normalisation(master: bytes) -> None:
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    slot = make_slot(master, composed, REPO, WHEN, kdf=CHEAP)
    assert unwrap(slot, decomposed, REPO) == master


def test_the_file_records_the_kdf_and_its_parameters(master: bytes) -> None:
    slot = make_slot(master, "pw", REPO, WHEN, label="ci", kdf=CHEAP)
    data = encode_slot(slot)
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    document = json.loads(data)
    assert document["version"] == 1
    assert document["aead"] == "aes-256-gcm"
    assert document["kdf"]["name"] == "argon2id"
    assert document["kdf"]["iterations"] == 1
    assert document["kdf"]["memory_kib"] == 8
    assert len(base64.b64decode(document["kdf"]["salt"])) == 16
    assert len(base64.b64decode(document["wrapped"])) == 64 + 16
    assert decode_slot(data, "keys/x.json") == slot


def test_scrypt_slots_round_trip(master: bytes) -> None:
    slot = make_slot(master, "pw", REPO, WHEN, kdf=CHEAP_SCRYPT)
    decoded = decode_slot(encode_slot(slot), "k")
    assert json.loads(encode_slot(slot))["kdf"] == {
        "name": "scrypt",
        "n": 4,
        "r": 1,
        "p": 1,
        "salt": base64.b64encode(slot.kdf.salt or b"").decode(),
    }
    assert unwrap(decoded, "pw", REPO) == master


def test_the_default_kdf_is_memory_hard() -> None:
    assert isinstance(DEFAULT_KDF, Argon2id)
    assert DEFAULT_KDF.memory_kib >= 64 * 1024
    assert DEFAULT_KDF.salt is None


def test_unlock_tries_every_slot_and_names_how_many(master: bytes) -> None:
    slots = [make_slot(master, f"pw{n}", REPO, WHEN, kdf=CHEAP) for n in range(3)]
    found, key = unlock(slots, "pw2", REPO)
    assert (found, key) == (slots[2], master)
    with pytest.raises(WrongPassword, match="none of the 3 key slot"):
        unlock(slots, "nope", REPO)
    with pytest.raises(WrongPassword, match="no key slots"):
        unlock([], "pw0", REPO)
    assert WrongPassword("x").exit_code == 13


def test_derive_kek_needs_a_salt() -> None:
    with pytest.raises(ValueError, match="salt"):
        derive_kek(CHEAP, "pw")


def test_make_slot_refuses_a_master_key_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        make_slot(b"short", "pw", REPO, WHEN, kdf=CHEAP)


def _edited(master: bytes, **changes: object) -> bytes:
    document = json.loads(encode_slot(make_slot(master, "pw", REPO, WHEN, kdf=CHEAP)))
    for path, value in changes.items():
        target = document
        *parents, last = path.split("__")
        for parent in parents:
            target = target[parent]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"aead": "chacha"}, "cipher, salt or id"),
        ({"id": "ZZ" * 8}, "cipher, salt or id"),
        ({"kdf__salt": None}, "cipher, salt or id"),
        ({"kdf__salt": base64.b64encode(b"short").decode()}, "not a valid key slot"),
        ({"kdf__name": "pbkdf2"}, "not a valid key slot"),
        ({"kdf__memory_kib": 1 << 30}, "not a valid key slot"),
        ({"kdf__iterations": 0}, "not a valid key slot"),
        ({"kdf__lanes": 4}, "8 KiB of memory a lane"),
        ({"nonce": base64.b64encode(b"x" * 8).decode()}, "nonce or wrapped"),
        ({"wrapped": base64.b64encode(b"x" * 8).decode()}, "nonce or wrapped"),
        ({"extra": 1}, "not a valid key slot"),
        ({"label": None}, "not a valid key slot"),
    ],
)
def test_malformed_slots_are_refused(
    master: bytes, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(CorruptData, match=message) as caught:
        decode_slot(_edited(master, **changes), "keys/0123.json")
    assert caught.value.what == "keys/0123.json"


@pytest.mark.parametrize(
    "kdf",
    [
        {"name": "scrypt", "n": 6, "r": 1, "p": 1},
        {"name": "scrypt", "n": 1 << 22, "r": 32, "p": 1},
    ],
)
def test_hostile_scrypt_parameters_are_refused(master: bytes, kdf: dict[str, object]) -> None:
    document = json.loads(encode_slot(make_slot(master, "pw", REPO, WHEN, kdf=CHEAP_SCRYPT)))
    document["kdf"] = {**kdf, "salt": document["kdf"]["salt"]}
    with pytest.raises(CorruptData, match="scrypt"):
        decode_slot(json.dumps(document).encode(), "k")


def test_a_newer_slot_version_is_a_format_error(master: bytes) -> None:
    with pytest.raises(FormatVersionError, match="key slot version 2"):
        decode_slot(_edited(master, version=2), "keys/x.json")


def test_garbage_is_not_a_slot() -> None:
    with pytest.raises(CorruptData, match="not a valid key slot"):
        decode_slot(b"\x00\xff", "keys/x.json")
    assert KeySlot.__struct_config__.forbid_unknown_fields
