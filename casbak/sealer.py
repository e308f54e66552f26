"""Sealing: authenticated encryption of everything an encrypted repository stores.

Pure. One master key gives three subkeys (blake3's key derivation, one
context each): the AEAD key, the key of keyed ids, and the key that derives
pack frames' nonces. Sealed bytes are AES-256-GCM-SIV with associated data
naming what the bytes are (a kind) and which one (a name), so a file moved to
another name or kind fails its tag (docs/ENCRYPTION-PLAN.md, "Associated data").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import blake3

from casbak.errors import DecryptionFailed
from casbak.ids import Hasher
from casbak.tokens import random_bytes

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

MASTER_KEY_LENGTH = 64
NONCE_LENGTH = 12
TAG_LENGTH = 16
OVERHEAD = NONCE_LENGTH + TAG_LENGTH
"""Bytes a sealed file has beyond its plaintext (nonce and tag)."""
FRAME_OVERHEAD = TAG_LENGTH
"""Bytes a sealed pack frame has beyond its plaintext: its nonce is derived, not stored."""

KINDS = frozenset(
    {
        "frame",
        "index",
        "dict",
        "manifest",
        "catalog-head",
        "catalog-part",
        "catalog-journal",
        "rawcache",
        "bundle-chunk",
    }
)
"""Every kind of sealed thing; a kind outside this set is a programming error."""

_CONTEXT = "casbak 2026 {} v1"


def new_master_key() -> bytes:
    """A fresh random master key."""
    return random_bytes(MASTER_KEY_LENGTH)


def subkey(master_key: bytes, purpose: str) -> bytes:
    """The 32-byte key for one purpose, derived from the master key (blake3 derive_key mode)."""
    context = _CONTEXT.format(purpose)
    return blake3.blake3(master_key, derive_key_context=context).digest()


def associated_data(kind: str, name: bytes) -> bytes:
    """What a sealed thing is bound to: its kind and its name."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of sealed data: {kind!r}")
    return b"casbak\x00" + kind.encode("ascii") + b"\x00" + name


def _aes_gcm_siv_class() -> type[AESGCMSIV]:
    """Cryptography's AES-GCM-SIV class, loaded only when a key is in use.

    Not at module level: every module that opens a repository names Sealer,
    and loading OpenSSL's bindings cost a plain repository's commands 50 ms
    of start-up each. The public module's parent packages load another 20
    modules (the cipher registry, modes, typing) that an encrypted
    repository's every command paid for (10-15 ms of a one-tenant snapshot),
    so the bindings' own module is tried first; the public name is the same
    class (tests/test_sealer.py), and the fallback keeps a release that moves
    it working.
    """
    try:
        from cryptography.hazmat.bindings._rust import openssl

        return openssl.aead.AESGCMSIV
    except (ImportError, AttributeError):  # pragma: no cover - a release that moved it
        from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV as public

        return public


class Sealer:
    """Seals and opens the bytes of one encrypted repository (or bundle)."""

    __slots__ = ("_aead", "_nonce_key", "hasher")

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != MASTER_KEY_LENGTH:
            raise ValueError(f"a master key is {MASTER_KEY_LENGTH} bytes, not {len(master_key)}")
        self._aead = _aes_gcm_siv_class()(subkey(master_key, "seal key"))
        self._nonce_key = subkey(master_key, "frame nonce key")
        self.hasher = Hasher(subkey(master_key, "id key"))
        """The repository's id function: blake3 keyed with the id subkey."""

    def seal(self, kind: str, name: bytes, data: bytes) -> bytes:
        """``data`` encrypted and authenticated, a random nonce first."""
        nonce = random_bytes(NONCE_LENGTH)
        return nonce + self._aead.encrypt(nonce, data, associated_data(kind, name))

    def open(self, kind: str, name: bytes, sealed: bytes, what: str) -> bytes:
        """The plaintext of ``sealed``; DecryptionFailed (naming ``what``) if it is not intact."""
        ad = associated_data(kind, name)
        if len(sealed) < OVERHEAD:
            raise DecryptionFailed(what, f"sealed data cut short ({len(sealed)} bytes)")
        return self._decrypt(sealed[:NONCE_LENGTH], sealed[NONCE_LENGTH:], ad, what)

    def seal_frame(self, object_id: bytes, frame: bytes) -> bytes:
        """A pack frame sealed for the object it holds; its nonce derives from the object id.

        GCM-SIV tolerates the nonce repeating when the same object is stored
        again as other frame bytes: that reveals only whether two sealings of
        one object are equal, never the key stream.
        """
        ad = associated_data("frame", object_id)
        return self._aead.encrypt(self._frame_nonce(ad), frame, ad)

    def open_frame(self, object_id: bytes, sealed: bytes, what: str) -> bytes:
        """The frame a sealed pack frame holds; DecryptionFailed if it is not intact."""
        ad = associated_data("frame", object_id)
        if len(sealed) < FRAME_OVERHEAD:
            raise DecryptionFailed(what, f"sealed frame cut short ({len(sealed)} bytes)")
        return self._decrypt(self._frame_nonce(ad), sealed, ad, what)

    def _frame_nonce(self, ad: bytes) -> bytes:
        return blake3.blake3(ad, key=self._nonce_key).digest(NONCE_LENGTH)

    def _decrypt(self, nonce: bytes, body: bytes, ad: bytes, what: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(nonce, body, ad)
        except InvalidTag:
            raise DecryptionFailed(
                what, "does not decrypt: damaged, cut short, or not the file this name should hold"
            ) from None
