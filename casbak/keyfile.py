"""Key slots: the master key wrapped by keys derived from passwords.

Pure. A slot is one small JSON file (``keys/<slot id>.json``,
docs/ENCRYPTION-PLAN.md "Key files"): the KDF with its parameters and salt,
and the master key encrypted with AES-256-GCM under the key the KDF derives
from the password. Changing a password writes one new slot; the master key,
and so every sealed byte, stays the same. The KDF cost is an argument so that
tests can pass a cheap one; defaults are memory-hard.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated

import msgspec

from casbak.errors import CorruptData, FormatVersionError, WrongPassword
from casbak.sealer import MASTER_KEY_LENGTH
from casbak.tokens import random_bytes, random_hex

SLOT_VERSION = 1
SLOT_ID_LENGTH = 16
_SLOT_ID = re.compile(r"[0-9a-f]{16}")
_SALT = Annotated[bytes, msgspec.Meta(min_length=16, max_length=64)]
_KEK_LENGTH = 32
_NONCE_LENGTH = 12
_AEAD = "aes-256-gcm"
_MAX_KDF_MEMORY = 4 << 30
"""Bytes of memory a slot's KDF may ask for at most (Argon2id's bound is in its field)."""


class Argon2id(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="name", tag="argon2id"
):
    """Argon2id (RFC 9106); the limits keep a hostile key file from exhausting memory."""

    iterations: Annotated[int, msgspec.Meta(ge=1, le=64)] = 3
    memory_kib: Annotated[int, msgspec.Meta(ge=8, le=4 * 1024 * 1024)] = 64 * 1024
    lanes: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    salt: _SALT | None = None
    """Random per slot; None only in a cost given to `make_slot`, which fills it in."""


class Scrypt(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="name", tag="scrypt"
):
    """scrypt (RFC 7914), for where Argon2id is not available; ``n`` is a power of two."""

    n: Annotated[int, msgspec.Meta(ge=2, le=1 << 22)] = 1 << 17
    r: Annotated[int, msgspec.Meta(ge=1, le=32)] = 8
    p: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1
    salt: _SALT | None = None


Kdf = Argon2id | Scrypt
DEFAULT_KDF: Kdf = Argon2id()
"""Argon2id, 3 passes over 64 MiB in 4 lanes: about a second of one core per unlock."""


class KeySlot(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One way in: the master key wrapped under a password-derived key."""

    version: int
    id: str
    created: datetime
    label: str
    kdf: Kdf
    aead: str
    nonce: bytes
    wrapped: bytes


_ENCODER = msgspec.json.Encoder(order="deterministic")
_DECODER = msgspec.json.Decoder(KeySlot)


def derive_kek(kdf: Kdf, password: str) -> bytes:
    """The key-encryption key a password gives under a slot's KDF."""
    if kdf.salt is None:
        raise ValueError("a KDF without a salt cannot derive a key")
    import unicodedata

    secret = unicodedata.normalize("NFC", password).encode("utf-8")
    # cryptography is imported only where a key is made or opened: every
    # command of a plain repository would otherwise load OpenSSL's bindings.
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id as _Argon2id
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt as _Scrypt

    if isinstance(kdf, Argon2id):
        return _Argon2id(
            salt=kdf.salt,
            length=_KEK_LENGTH,
            iterations=kdf.iterations,
            lanes=kdf.lanes,
            memory_cost=kdf.memory_kib,
        ).derive(secret)
    return _Scrypt(salt=kdf.salt, length=_KEK_LENGTH, n=kdf.n, r=kdf.r, p=kdf.p).derive(secret)


def _slot_ad(repository_id: str, slot_id: str) -> bytes:
    # Bound to the repository and the slot's own id: a slot copied into
    # another repository, or renamed, does not open.
    return f"casbak-key-slot\x00{repository_id}\x00{slot_id}".encode("ascii")


def make_slot(
    master_key: bytes,
    password: str,
    repository_id: str,
    created: datetime,
    *,
    label: str = "",
    kdf: Kdf = DEFAULT_KDF,
) -> KeySlot:
    """A new slot wrapping ``master_key`` for ``password`` (fresh salt, nonce and id)."""
    if len(master_key) != MASTER_KEY_LENGTH:
        raise ValueError(f"a master key is {MASTER_KEY_LENGTH} bytes, not {len(master_key)}")
    kdf = msgspec.structs.replace(kdf, salt=random_bytes(16))
    slot_id = random_hex(SLOT_ID_LENGTH // 2)
    nonce = random_bytes(_NONCE_LENGTH)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    wrapped = AESGCM(derive_kek(kdf, password)).encrypt(
        nonce, master_key, _slot_ad(repository_id, slot_id)
    )
    return KeySlot(SLOT_VERSION, slot_id, created, label, kdf, _AEAD, nonce, wrapped)


def unwrap(slot: KeySlot, password: str, repository_id: str) -> bytes | None:
    """The master key if ``password`` opens ``slot``, else None."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    kek = derive_kek(slot.kdf, password)
    try:
        master = AESGCM(kek).decrypt(slot.nonce, slot.wrapped, _slot_ad(repository_id, slot.id))
    except InvalidTag:
        return None
    return master if len(master) == MASTER_KEY_LENGTH else None


def unlock(
    slots: Iterable[KeySlot],
    password: str,
    repository_id: str,
    unwrap_slot: Callable[[KeySlot, str, str], bytes | None] = unwrap,
) -> tuple[KeySlot, bytes]:
    """The first slot ``password`` opens and the master key; WrongPassword if none does."""
    tried = 0
    for slot in slots:
        tried += 1
        master = unwrap_slot(slot, password, repository_id)
        if master is not None:
            return slot, master
    if not tried:
        raise WrongPassword("the repository has no key slots: it cannot be unlocked")
    raise WrongPassword(f"wrong password: it opens none of the {tried} key slot(s)")


def encode_slot(slot: KeySlot) -> bytes:
    """A slot's file (one JSON line)."""
    return _ENCODER.encode(slot) + b"\n"


def decode_slot(data: bytes, what: str) -> KeySlot:
    """A slot from its file; CorruptData if malformed, FormatVersionError if too new."""
    try:
        slot = _DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CorruptData(what, f"not a valid key slot ({exc})") from None
    if slot.version != SLOT_VERSION:
        raise FormatVersionError(f"{what}: key slot version {slot.version} is not supported")
    if slot.aead != _AEAD or slot.kdf.salt is None or not _SLOT_ID.fullmatch(slot.id):
        raise CorruptData(what, "not a valid key slot (cipher, salt or id)")
    if isinstance(slot.kdf, Argon2id) and slot.kdf.memory_kib < 8 * slot.kdf.lanes:
        raise CorruptData(what, "not a valid key slot (argon2id needs 8 KiB of memory a lane)")
    if isinstance(slot.kdf, Scrypt) and (
        slot.kdf.n & (slot.kdf.n - 1) or 128 * slot.kdf.n * slot.kdf.r > _MAX_KDF_MEMORY
    ):
        raise CorruptData(what, "not a valid key slot (scrypt n not a power of two, or too big)")
    if len(slot.nonce) != _NONCE_LENGTH or len(slot.wrapped) != MASTER_KEY_LENGTH + 16:
        raise CorruptData(what, "not a valid key slot (nonce or wrapped key length)")
    return slot
