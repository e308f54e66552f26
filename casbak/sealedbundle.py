"""Sealed bundles: a whole bundle encrypted as one stream, for a password.

A bundle of an encrypted repository must reveal no more than the repository
does. The plain bundle (a tar archive, `casbak.bundle`) is written into a
`SealedWriter`, which cuts it into chunks and seals each with a random bundle
key; the key is wrapped for a password in one key slot, in a plain header line
(docs/FORMAT.md, "Sealed bundles"). Member names and sizes are inside the
ciphertext. Reading undoes it chunk by chunk, so every check of the plain
reader still applies, and a truncated, reordered or altered chunk fails its
tag (BundleError, nothing used).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import IO

import msgspec

from casbak.errors import BundleError, DecryptionFailed, PasswordMissing
from casbak.keyfile import DEFAULT_KDF, Kdf, KeySlot, make_slot, unlock
from casbak.sealer import Sealer, new_master_key

SEALED_FORMAT = "casbak-sealed-bundle"
SEALED_VERSION = 1
CHUNK_BYTES = 1024 * 1024
"""Plaintext bytes per sealed chunk."""
_MAX_HEADER = 64 * 1024
_PREFIX_BYTES = 5
"""Before each sealed chunk: 1 if it is the last (else 0), then its length, 4 bytes big-endian."""
_MAX_SEALED_CHUNK = CHUNK_BYTES + 64


class SealedHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The plain first line of a sealed bundle: what it is and the slot its key is in."""

    format: str
    version: int
    id: str
    """Random per bundle (64 hex); the slot is bound to it."""
    slot: KeySlot


def _chunk_name(number: int, final: bool) -> bytes:
    # The number orders the chunks and the flag marks the last: a chunk moved,
    # dropped or cut off at the end fails its tag.
    return number.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


class SealedWriter:
    """A binary stream that seals what is written to it into ``stream``."""

    def __init__(
        self,
        stream: IO[bytes],
        password: str,
        created: datetime,
        kdf: Kdf = DEFAULT_KDF,
    ) -> None:
        key = new_master_key()
        bundle_id = secrets.token_hex(32)
        slot = make_slot(key, password, bundle_id, created, kdf=kdf)
        header = SealedHeader(SEALED_FORMAT, SEALED_VERSION, bundle_id, slot)
        self._stream = stream
        self._sealer = Sealer(key)
        self._buffer = bytearray()
        self._number = 0
        stream.write(msgspec.json.encode(header) + b"\n")

    def write(self, data: bytes) -> int:
        self._buffer += data
        while len(self._buffer) > CHUNK_BYTES:
            self._emit(bytes(self._buffer[:CHUNK_BYTES]), final=False)
            del self._buffer[:CHUNK_BYTES]
        return len(data)

    def close(self) -> None:
        """Seal what is left as the final chunk (a bundle without one is truncated)."""
        self._emit(bytes(self._buffer), final=True)
        self._buffer.clear()

    def _emit(self, plain: bytes, *, final: bool) -> None:
        sealed = self._sealer.seal("bundle-chunk", _chunk_name(self._number, final), plain)
        prefix = (b"\x01" if final else b"\x00") + len(sealed).to_bytes(4, "big")
        self._stream.write(prefix + sealed)
        self._number += 1


def plain_bundles(
    open_stream: Callable[[], IO[bytes]], password: Callable[[], str] | None
) -> Callable[[], IO[bytes]]:
    """``open_stream`` made to give the plain bundle, whether the bundle is sealed or not.

    A sealed bundle's key is unlocked (and the password asked) once, however
    often the bundle is read again. Without ``password`` a sealed bundle is
    PasswordMissing.
    """
    keys: dict[str, bytes] = {}

    def reopen() -> IO[bytes]:
        stream = open_stream()
        first = stream.read(1)
        if first != b"{":  # a tar archive: a plain bundle
            return _Prefixed(first, stream)  # type: ignore[return-value]
        header = _read_header(first + stream.readline(_MAX_HEADER))
        if header.id not in keys:
            if password is None:
                raise PasswordMissing("the bundle is sealed: give its password")
            keys[header.id] = unlock([header.slot], password(), header.id)[1]
        return _SealedReader(stream, Sealer(keys[header.id]))  # type: ignore[return-value]

    return reopen


class _Prefixed:
    """A stream with a byte already read from it put back in front."""

    def __init__(self, first: bytes, stream: IO[bytes]) -> None:
        self._first = first
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        first, self._first = self._first, b""
        if size < 0:
            return first + self._stream.read()
        return first + self._stream.read(size - len(first)) if size else b""


def _read_header(line: bytes) -> SealedHeader:
    if not line.endswith(b"\n"):
        raise BundleError("sealed bundle header is cut short or too long")
    try:
        header = msgspec.json.decode(line, type=SealedHeader)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BundleError(f"sealed bundle header is malformed ({exc})") from None
    if header.format != SEALED_FORMAT or header.version != SEALED_VERSION:
        raise BundleError(
            f"sealed bundle format {header.format!r} version {header.version!r} "
            "is not supported; upgrade casbak"
        )
    return header


class _SealedReader:
    """The plaintext of the chunks that follow a sealed bundle's header, read as a stream."""

    def __init__(self, stream: IO[bytes], sealer: Sealer) -> None:
        self._stream = stream
        self._sealer = sealer
        self._buffer = bytearray()
        self._number = 0
        self._ended = False

    def read(self, size: int = -1) -> bytes:
        while not self._ended and (size < 0 or len(self._buffer) < size):
            self._next_chunk()
        if size < 0:
            size = len(self._buffer)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _next_chunk(self) -> None:
        what = f"sealed bundle chunk {self._number}"
        prefix = self._stream.read(_PREFIX_BYTES)
        if len(prefix) != _PREFIX_BYTES:
            raise BundleError("sealed bundle is truncated (its last chunk is missing)")
        # The flag and length are not secret; the flag is checked by the tag (the AD).
        final, length = prefix[0] == 1, int.from_bytes(prefix[1:], "big")
        if length > _MAX_SEALED_CHUNK:
            raise BundleError(f"{what} declares {length} bytes")
        sealed = self._stream.read(length)
        try:
            plain = self._sealer.open(
                "bundle-chunk", _chunk_name(self._number, final), sealed, what
            )
        except DecryptionFailed as exc:
            raise BundleError(f"{what}: {exc.reason}") from None
        self._buffer += plain
        self._number += 1
        if final:
            self._ended = True
            if self._stream.read(1):
                raise BundleError("sealed bundle has data after its last chunk")
