"""Index files: which object lives where, encoded and decoded.

Pure: bytes in, records out. An index file is a zstd frame holding a msgpack
map (see docs/FORMAT.md): the packs it covers, each with the dictionary its
standalone objects were compressed with, and one fixed-width record per
object, sorted by digest. The file is named by the blake3 of its stored bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterable
from itertools import repeat
from typing import Annotated

import msgspec
import zstandard

from casbak import unzstd
from casbak.errors import CorruptData, FormatVersionError
from casbak.ids import Digest

INDEX_VERSION = 2
MAX_INDEX_BYTES = 256 * 1024 * 1024
FAST_ABOVE = 512 * 1024
BASE_PREFIX_BYTES = 8
"""A delta's base is recorded by the first 8 bytes of its id; readers resolve it
against the whole index, and the hash check of the decompressed object settles
the (astronomically rare) case of two candidates."""
_RECORD = struct.Struct(f">32sIIII{BASE_PREFIX_BYTES}s")
_NO_BASE = bytes(BASE_PREFIX_BYTES)


class PackRef(msgspec.Struct, array_like=True, frozen=True):
    """A pack an index covers: its id and its dictionary's id (empty for none)."""

    pack: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    dictionary: Annotated[bytes, msgspec.Meta(max_length=32)]
    """Empty or 32 bytes; any other length is found when the reference is used."""


class _IndexDocument(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    packs: list[PackRef]
    records: bytes


class Location(msgspec.Struct, frozen=True, array_like=True):
    """Where one object is stored and how to decompress it."""

    pack: Digest
    offset: int
    length: int
    size: int
    base: Digest | None
    """The full id of the delta base this frame decompresses against; None when the
    frame is no delta, or when its base is unresolved (see ``unresolved_base``)."""
    dictionary: Digest | None
    unresolved_base: str | None = None
    """For a delta whose base is not known as one object id, the 16-hex-digit prefix
    the index file records for it (``base`` is then None). Index files record only
    prefixes: everything just decoded from one is unresolved, until the index view
    finds the one indexed object that starts with it. It stays unresolved when no
    object does (the base is missing) or several do (the hash check of the decoded
    object settles which, as it is read)."""

    @property
    def is_delta(self) -> bool:
        """Whether the frame decompresses against another object."""
        return self.base is not None or self.unresolved_base is not None

    def resolved(self, matches: Collection[Digest]) -> Location:
        """The location with its base settled, when exactly one object id matches it."""
        if self.unresolved_base is None or len(matches) != 1:
            return self
        (match,) = matches
        return msgspec.structs.replace(self, base=match, unresolved_base=None)


def encode_index(locations: Iterable[tuple[Digest, Location]]) -> bytes:
    """Encode locations as a compressed index document."""
    packs: dict[tuple[str, str], int] = {}
    rows = []
    for digest, loc in sorted(locations, key=lambda pair: pair[0]):
        number = packs.setdefault((loc.pack, loc.dictionary or ""), len(packs))
        recorded = loc.base or loc.unresolved_base
        base = bytes.fromhex(recorded)[:BASE_PREFIX_BYTES] if recorded else _NO_BASE
        rows.append(
            _RECORD.pack(bytes.fromhex(digest), number, loc.offset, loc.length, loc.size, base)
        )
    document = _IndexDocument(
        INDEX_VERSION,
        [PackRef(bytes.fromhex(pack), bytes.fromhex(dictionary)) for pack, dictionary in packs],
        b"".join(rows),
    )
    encoded = msgspec.msgpack.encode(document)
    # Records are mostly random digests: past small files, a slower level
    # buys almost nothing and merged indexes would cost seconds to write.
    level = 19 if len(encoded) <= FAST_ABOVE else 3
    return zstandard.ZstdCompressor(level=level).compress(encoded)


class IndexFile:
    """One decoded index file: found record by record (bisection) or all at once."""

    def __init__(self, packs: list[PackRef], records: bytes, what: str):
        self._refs = packs
        self._named: dict[int, tuple[Digest, Digest | None]] = {}
        """Pack references turned into ids when first used: an index names thousands of packs."""
        self.records = records
        self.what = what
        self.count = len(records) // _RECORD.size

    @property
    def packs(self) -> list[tuple[Digest, Digest | None]]:
        """Every pack this file names, with its dictionary."""
        return [self._pack(number) for number in range(len(self._refs))]

    def _pack(self, number: int) -> tuple[Digest, Digest | None]:
        named = self._named.get(number)
        if named is None:
            ref = self._refs[number]
            if len(ref.dictionary) not in (0, 32):
                raise CorruptData(self.what, "malformed pack reference")
            named = self._named[number] = (
                Digest(ref.pack.hex()),
                Digest(ref.dictionary.hex()) or None,
            )
        return named

    def _location(self, number: int, offset: int, length: int, size: int, base: bytes) -> Location:
        if number >= len(self._refs) or length == 0:
            raise CorruptData(self.what, "record names no pack or is empty")
        pack, dictionary = self._pack(number)
        unresolved = None if base == _NO_BASE else base.hex()
        return Location(pack, offset, length, size, None, dictionary, unresolved)

    def numbered(self) -> dict[Digest, tuple[IndexFile, int]]:
        """Every record's object id, with this file and its number (`record`), none decoded.

        Checked as `locations` checks them, for a third of its cost: a sync
        looks up a few thousand of the tens of thousands of records.
        """
        used = set()
        for _, number, _, length, _, _ in _RECORD.iter_unpack(self.records):
            if length == 0:
                raise CorruptData(self.what, "record names no pack or is empty")
            used.add(number)
        if used and max(used) >= len(self._refs):
            raise CorruptData(self.what, "record names no pack or is empty")
        for number in used:
            self._pack(number)
        size, records = _RECORD.size, self.records
        digests = [Digest(records[at : at + 32].hex()) for at in range(0, len(records), size)]
        return dict(zip(digests, zip(repeat(self), range(self.count)), strict=True))

    def record(self, number: int) -> Location:
        """The record of a number `numbered` gave."""
        _, *rest = _RECORD.unpack_from(self.records, number * _RECORD.size)
        return self._location(*rest)

    def locations(self) -> dict[Digest, Location]:
        """Every record."""
        return {
            Digest(digest.hex()): self._location(*rest)
            for digest, *rest in _RECORD.iter_unpack(self.records)
        }

    def starting_with(self, prefix: str) -> list[Digest]:
        """Object ids that start with a hex prefix (bisection, then a short scan)."""
        key = bytes.fromhex(prefix)
        size, records = _RECORD.size, self.records
        low, high = 0, self.count
        while low < high:
            middle = (low + high) // 2
            if records[middle * size : middle * size + len(key)] < key:
                low = middle + 1
            else:
                high = middle
        found = []
        while low < self.count and records[low * size : low * size + len(key)] == key:
            found.append(Digest(records[low * size : low * size + 32].hex()))
            low += 1
        return found

    def find(self, digest: str) -> Location | None:
        """One record, by bisection over the sorted records (no full decode)."""
        key = bytes.fromhex(digest)
        size, records = _RECORD.size, self.records
        low, high = 0, self.count
        while low < high:
            middle = (low + high) // 2
            if records[middle * size : middle * size + 32] < key:
                low = middle + 1
            else:
                high = middle
        if low < self.count and records[low * size : low * size + 32] == key:
            _, *rest = _RECORD.unpack_from(records, low * size)
            return self._location(*rest)
        return None


def parse_index(stored: bytes, what: str) -> IndexFile:
    """Decompress and decode an index document's frame; records are decoded on demand."""
    try:
        raw = unzstd.decompress(stored, max_output_size=MAX_INDEX_BYTES)
        document = msgspec.msgpack.decode(raw, type=_IndexDocument)
    except (zstandard.ZstdError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CorruptData(what, f"not a valid pack index ({exc})") from exc
    if document.version != INDEX_VERSION:
        raise FormatVersionError(f"{what}: pack index version {document.version!r} is unknown")
    if len(document.records) % _RECORD.size:
        raise CorruptData(what, "records are cut short")
    return IndexFile(document.packs, document.records, what)


def decode_index(stored: bytes, what: str) -> dict[Digest, Location]:
    """Decode an index document; every malformed shape is CorruptData."""
    return parse_index(stored, what).locations()
