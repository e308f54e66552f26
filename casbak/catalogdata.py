"""The catalog's content: snapshot records, tenant and target histories. Pure.

The catalog is a derived cache of what the manifests say (docs/FORMAT.md,
Catalog): never the only copy of anything, rebuilt from the manifests when
missing. Its content is split so that a question reads little:

- records of snapshots, by *position* (assigned in the order the catalog
  learns of them, never reused), in chunks of `CHUNK`; each chunk keeps the
  ids and times of its positions as flat arrays, and every record as raw
  bytes decoded only when shown;
- `BUCKETS` buckets, a tenant or target in the one its name hashes to:
  per tenant, every (position, version) that holds it; per target, the
  positions of its snapshots.

New snapshots and removals reach it first as journal entries, which a
compaction folds into new parts (`fold`).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from datetime import datetime
from itertools import accumulate
from operator import sub
from typing import TypeVar

import blake3
import msgspec
import zstandard

from casbak import unzstd
from casbak.errors import CorruptData

CATALOG_VERSION = 1
HEAD_VERSION = 2
"""A head naming buckets whose tenant histories keep gaps between positions (`Bucket.gaps`);
version 1 heads name only buckets that keep the positions themselves."""
HEAD_VERSIONS = (CATALOG_VERSION, HEAD_VERSION)
BY_REFERENCE = 2
"""Journal version of an entry with an addition whose tenants are in its manifest only."""
JOURNAL_VERSIONS = (CATALOG_VERSION, BY_REFERENCE)
BUCKETS = 64
CHUNK = 4096
_TIME = msgspec.json.Decoder(datetime)
_ZSTD_LEVEL = 3


class SnapshotRecord(msgspec.Struct, array_like=True, frozen=True):
    """One snapshot as `list` and `log` show it, and where its manifest is."""

    id: bytes
    key: str
    timestamp: str
    operation: str
    target_id: str
    description: str
    tags: list[str]
    tenants: int
    parent: bytes
    depth: int
    provenance: dict[str, str] = {}

    @property
    def hex_id(self) -> str:
        """The snapshot id as it is written everywhere else."""
        return self.id.hex()

    def time(self) -> datetime:
        """The manifest's timestamp."""
        return _TIME.decode(b'"' + self.timestamp.encode() + b'"')


class TenantEntry(msgspec.Struct, array_like=True, frozen=True):
    """A tenant a journaled snapshot holds: id, object digest (32 bytes), size."""

    tenant_id: str
    object: bytes
    size: int


class Added(msgspec.Struct, array_like=True, frozen=True):
    """A snapshot the catalog learns of, with every tenant it holds.

    ``entries`` is None in a journal entry of version `BY_REFERENCE`: the
    tenants are those of the manifest the record names. A sync of thousands
    of tenants would otherwise be told twice, in its manifest and here.
    """

    record: SnapshotRecord
    micros: int
    entries: list[TenantEntry] | None


class JournalEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one writer tells the catalog: snapshots added, snapshot ids removed."""

    version: int
    written: float
    added: list[Added] = []
    removed: list[bytes] = []


class Chunk(msgspec.Struct, array_like=True):
    """`CHUNK` positions: ids (32 bytes each), times (µs), alive flags, raw records."""

    ids: bytes
    micros: bytes
    alive: bytes
    records: list[msgspec.Raw]

    def times(self) -> array[int]:
        """The times of the chunk's positions, in µs since the epoch."""
        found = array("q")
        found.frombytes(self.micros)
        return found

    def id_at(self, index: int) -> bytes:
        """The snapshot id at an index of this chunk."""
        return self.ids[index * 32 : index * 32 + 32]


class TenantHistory(msgspec.Struct, array_like=True):
    """Every snapshot that holds a tenant: parallel arrays of positions and versions.

    Stored in a bucket that keeps gaps, ``positions`` holds the first position
    and then each one's distance from the one before: a tenant in every sync
    is a run of equal gaps, which compresses to almost nothing, where the
    positions themselves took a few bytes each. `Bucket.tenant` gives them back
    as positions.
    """

    objects: list[bytes]
    sizes: list[int]
    positions: bytes
    versions: bytes

    def occurrences(self) -> Iterator[tuple[int, int]]:
        """(position, index into ``objects``) for each snapshot that holds the tenant."""
        positions, versions = array("I"), array("I")
        positions.frombytes(self.positions)
        versions.frombytes(self.versions)
        return zip(positions, versions, strict=True)


class Bucket(msgspec.Struct, array_like=True):
    """Tenants and targets whose names hash here; tenants stay raw until asked for.

    ``gaps``: the tenant histories keep gaps between positions (`TenantHistory`);
    absent, in buckets written under a version 1 head, they keep positions.
    """

    tenants: dict[str, msgspec.Raw]
    targets: dict[str, bytes]
    gaps: bool = False

    def target_positions(self, target_id: str) -> array[int]:
        """Positions of the target's snapshots."""
        found = array("I")
        found.frombytes(self.targets.get(target_id, b""))
        return found

    def tenant(self, tenant_id: str) -> TenantHistory | None:
        """The tenant's history (with positions, however stored), if any snapshot holds it."""
        history = self.stored_tenant(tenant_id)
        if history is not None and self.gaps:
            history.positions = positions_of_gaps(history.positions, tenant_id)
        return history

    def stored_tenant(self, tenant_id: str) -> TenantHistory | None:
        """The tenant's history as stored (gaps in a bucket that keeps gaps)."""
        raw = self.tenants.get(tenant_id)
        return None if raw is None else _HISTORY.decode(raw)


def positions_of_gaps(gaps: bytes, tenant_id: str = "") -> bytes:
    """Positions (4-byte unsigned each) from the gaps a bucket keeps of them."""
    found = array("I")
    found.frombytes(gaps)
    try:
        return array("I", accumulate(found)).tobytes()
    except OverflowError:
        raise CorruptData(f"catalog history of {tenant_id!r}", "positions past 2**32") from None


def gaps_of_positions(positions: bytes) -> bytes:
    """The first position and each one's distance from the one before (they only grow)."""
    found = array("I")
    found.frombytes(positions)
    if not found:
        return b""
    gaps = array("I", found[:1])
    gaps.extend(map(sub, found[1:], found[:-1]))
    return gaps.tobytes()


class Head(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The catalog's entry point: which parts hold it, and how much journal is folded in."""

    version: int
    journal: int
    positions: int
    snapshots: int
    chunks: list[str]
    buckets: list[str]
    newest: list[int] = []
    """Per chunk, the newest time (µs) it holds, so `list -n` reads only the chunks that
    can hold the newest snapshots; empty in a head written before it existed."""


_HISTORY = msgspec.msgpack.Decoder(TenantHistory)
_ENCODER = msgspec.msgpack.Encoder()
_DECODERS: dict[type, msgspec.msgpack.Decoder[object]] = {}
T = TypeVar("T")


def bucket_of(name: str) -> int:
    """The bucket a tenant or target id belongs to."""
    return blake3.blake3(name.encode("utf-8", "surrogatepass")).digest(1)[0] % BUCKETS


def encode_part(part: Chunk | Bucket | JournalEntry | Head) -> bytes:
    """A part or journal entry as stored: zstd of msgpack."""
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(_ENCODER.encode(part))


def decode_part(data: bytes, kind: type[T], what: str) -> T:
    """Decode a stored part, or raise CorruptData naming it."""
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.msgpack.Decoder(kind)
    try:
        value = decoder.decode(unzstd.decompress(data))
    except (zstandard.ZstdError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CorruptData(what, "not a valid catalog part") from exc
    assert isinstance(value, kind)
    return value


def part_name(data: bytes) -> str:
    """Parts are named by the hash of their bytes, so an unchanged part keeps its name."""
    return blake3.blake3(data).hexdigest()


def decode_record(raw: msgspec.Raw | bytes) -> SnapshotRecord:
    """A record kept raw in a chunk."""
    return _RECORD.decode(raw)


_RECORD = msgspec.msgpack.Decoder(SnapshotRecord)


def empty_chunk() -> Chunk:
    """A chunk with no positions yet."""
    return Chunk(b"", b"", b"", [])


def empty_bucket() -> Bucket:
    """A bucket with no tenants or targets yet."""
    return Bucket({}, {}, gaps=True)


class _Growing:
    """A chunk being added to: buffers that grow in place, made bytes again at the end."""

    def __init__(self, chunk: Chunk) -> None:
        self.chunk = chunk
        self.ids = bytearray(chunk.ids)
        self.micros = array("q")
        self.micros.frombytes(chunk.micros)
        self.alive = bytearray(chunk.alive)

    def freeze(self) -> Chunk:
        self.chunk.ids = bytes(self.ids)
        self.chunk.micros = self.micros.tobytes()
        self.chunk.alive = bytes(self.alive)
        return self.chunk


class _TenantGrowing:
    """A tenant history (kept as gaps) being added to, with the index of each of its versions."""

    def __init__(self, history: TenantHistory) -> None:
        self.history = history
        self.index = {digest: number for number, digest in enumerate(history.objects)}
        self.gaps = array("I")
        self.gaps.frombytes(history.positions)
        self.last = sum(self.gaps)
        self.versions = array("I")
        self.versions.frombytes(history.versions)

    def add(self, position: int, digest: bytes, size: int) -> None:
        version = self.index.get(digest)
        if version is None:
            version = self.index[digest] = len(self.history.objects)
            self.history.objects.append(digest)
            self.history.sizes.append(size)
        self.gaps.append(position - self.last if self.gaps else position)
        self.last = position
        self.versions.append(version)

    def freeze(self) -> TenantHistory:
        self.history.positions = self.gaps.tobytes()
        self.history.versions = self.versions.tobytes()
        return self.history


def own_entries(added: Added) -> list[TenantEntry]:
    """The tenants an addition names itself; CorruptData for one told by reference."""
    if added.entries is None:
        raise CorruptData(added.record.key, "its tenants are told by reference only")
    return added.entries


class Folding:
    """Applies journal entries to parts loaded on demand; says which parts changed.

    Positions of removed snapshots are marked dead in their chunk and left in
    tenant histories, where readers skip them. Parts grow in place while
    entries are applied (appending to bytes would copy them each time);
    `finish` makes them parts again.
    """

    def __init__(
        self,
        head: Head,
        load_chunk: Callable[[int], Chunk],
        load_bucket: Callable[[int], Bucket],
    ) -> None:
        self.positions = head.positions
        self.snapshots = head.snapshots
        self._load_chunk = load_chunk
        self._load_bucket = load_bucket
        self._chunks: dict[int, _Growing] = {}
        self.chunks: dict[int, Chunk] = {}
        self.buckets: dict[int, Bucket] = {}
        self._targets: dict[str, array[int]] = {}
        self._histories: dict[str, _TenantGrowing] = {}
        self._chunk_count = len(head.chunks)

    def _chunk(self, index: int) -> _Growing:
        growing = self._chunks.get(index)
        if growing is None:
            chunk = self._load_chunk(index) if index < self._chunk_count else empty_chunk()
            growing = self._chunks[index] = _Growing(chunk)
        return growing

    def bucket(self, index: int) -> Bucket:
        """A bucket to change (loaded once), its histories kept as gaps from now on."""
        if index not in self.buckets:
            bucket = self._load_bucket(index)
            if not bucket.gaps:
                for tenant_id in list(bucket.tenants):
                    try:
                        history = bucket.stored_tenant(tenant_id)
                        assert history is not None
                        history.positions = gaps_of_positions(history.positions)
                    except (msgspec.DecodeError, ValueError, OverflowError):
                        raise CorruptData(
                            f"catalog bucket {index}", f"history of {tenant_id!r} is unsound"
                        ) from None
                    bucket.tenants[tenant_id] = msgspec.Raw(_ENCODER.encode(history))
                bucket.gaps = True
            self.buckets[index] = bucket
        return self.buckets[index]

    def apply(
        self,
        entry: JournalEntry,
        locate: dict[bytes, int],
        entries_of: Callable[[Added], list[TenantEntry]] = own_entries,
    ) -> None:
        """Fold one journal entry in; ``locate`` maps every known id to its position.

        ``entries_of`` gives the tenants of an addition told by reference.
        """
        for added in entry.added:
            if added.record.id in locate:
                continue  # a snapshot told twice (a retried append) is one snapshot
            self._add(added, entries_of(added), locate)
        for removed in entry.removed:
            position = locate.pop(removed, None)
            if position is not None:
                growing = self._chunk(position // CHUNK)
                if growing.alive[position % CHUNK]:
                    growing.alive[position % CHUNK] = 0
                    self.snapshots -= 1

    def _add(self, added: Added, entries: list[TenantEntry], locate: dict[bytes, int]) -> None:
        position = self.positions
        self.positions += 1
        self.snapshots += 1
        locate[added.record.id] = position
        growing = self._chunk(position // CHUNK)
        growing.ids += added.record.id
        growing.micros.append(added.micros)
        growing.alive.append(1)
        growing.chunk.records.append(msgspec.Raw(_ENCODER.encode(added.record)))
        self._target(added.record.target_id).append(position)
        for entry in entries:
            self._history(entry.tenant_id).add(position, entry.object, entry.size)

    def _target(self, target_id: str) -> array[int]:
        found = self._targets.get(target_id)
        if found is None:
            found = self._targets[target_id] = array("I")
            found.frombytes(self.bucket(bucket_of(target_id)).targets.get(target_id, b""))
        return found

    def _history(self, tenant_id: str) -> _TenantGrowing:
        found = self._histories.get(tenant_id)
        if found is None:
            history = self.bucket(bucket_of(tenant_id)).stored_tenant(tenant_id) or TenantHistory(
                [], [], b"", b""
            )
            found = self._histories[tenant_id] = _TenantGrowing(history)
        return found

    def finish(self) -> None:
        """Make every changed chunk, target and tenant history a part again."""
        for index, growing in self._chunks.items():
            self.chunks[index] = growing.freeze()
        for target_id, positions in self._targets.items():
            self.bucket(bucket_of(target_id)).targets[target_id] = positions.tobytes()
        for tenant_id, growing_history in self._histories.items():
            bucket = self.bucket(bucket_of(tenant_id))
            bucket.tenants[tenant_id] = msgspec.Raw(_ENCODER.encode(growing_history.freeze()))
        self._chunks.clear()
        self._targets.clear()
        self._histories.clear()


def micros_of(moment: datetime) -> int:
    """µs since the epoch, the catalog's sortable time."""
    return round(moment.timestamp() * 1_000_000)
