"""Format 2 manifests as stored: full checkpoints and deltas against a parent.

Pure. A snapshot's id stays the blake3 of its format-1 manifest encoding (the
logical manifest: metadata plus every entry), so ids never change between
formats, bundles carry that encoding, and a reader proves a rebuilt delta by
hashing it. What is stored is smaller: a zstd frame holding a msgpack map
with the metadata, the parent's id and the entries that differ from it.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
import zstandard

from casbak.errors import CorruptData, FormatVersionError
from casbak.ids import Digest
from casbak.model import Manifest, ManifestEntry

STORED_MANIFEST_VERSION = 2
MAX_MANIFEST_BYTES = 512 * 1024 * 1024
FAST_ABOVE = 512 * 1024
_TIME = msgspec.json.Decoder(datetime)
_TIME_ENCODER = msgspec.json.Encoder()


class StoredEntry(msgspec.Struct, array_like=True, frozen=True):
    """A tenant as stored: id, object digest (32 bytes) and document size."""

    tenant_id: str
    object: bytes
    size: int


class Header(msgspec.Struct, frozen=True):
    """What `list` needs, readable without rebuilding the entries."""

    description: str
    operation: str
    tags: list[str]
    target_id: str
    timestamp: datetime
    tenants: int
    parent: Digest | None
    depth: int


class StoredManifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The stored document; ``parent`` empty means ``entries`` is the whole snapshot."""

    version: int
    snapshot: bytes
    description: str
    operation: str
    tags: list[str]
    target_id: str
    timestamp: str
    tenants: int
    parent: bytes
    depth: int
    entries: list[StoredEntry]
    removed: list[str]

    def header(self) -> Header:
        """The metadata part."""
        return Header(
            self.description,
            self.operation,
            list(self.tags),
            self.target_id,
            _TIME.decode(b'"' + self.timestamp.encode() + b'"'),
            self.tenants,
            Digest(self.parent.hex()) if self.parent else None,
            self.depth,
        )


def encode_stored(
    snapshot_id: Digest,
    manifest: Manifest,
    parent: tuple[Digest, dict[str, ManifestEntry], int] | None,
) -> bytes:
    """Store ``manifest`` whole, or as its differences from ``parent`` (id, entries, depth)."""
    if parent is None:
        changed = manifest.entries
        removed: list[str] = []
        parent_id, depth = b"", 0
    else:
        before = parent[1]
        changed = {
            tenant: entry
            for tenant, entry in manifest.entries.items()
            if before.get(tenant) != entry
        }
        removed = sorted(before.keys() - manifest.entries.keys())
        parent_id, depth = bytes.fromhex(parent[0]), parent[2] + 1
    document = StoredManifest(
        version=STORED_MANIFEST_VERSION,
        snapshot=bytes.fromhex(snapshot_id),
        description=manifest.description,
        operation=manifest.operation,
        tags=list(manifest.tags),
        target_id=manifest.target_id,
        timestamp=_TIME_ENCODER.encode(manifest.timestamp).decode()[1:-1],
        tenants=len(manifest.entries),
        parent=parent_id,
        depth=depth,
        entries=[
            StoredEntry(tenant, bytes.fromhex(entry.object), entry.size)
            for tenant, entry in sorted(changed.items())
        ],
        removed=removed,
    )
    encoded = msgspec.msgpack.encode(document)
    # Level 19 on a large manifest needs a window, and memory, of many MiB
    # for little gain over level 3 on what is mostly ids and digests.
    level = 19 if len(encoded) <= FAST_ABOVE else 3
    return zstandard.ZstdCompressor(level=level).compress(encoded)


def decode_stored(stored: bytes, what: str) -> StoredManifest:
    """Decode a stored manifest, refusing unknown versions and malformed content."""
    try:
        raw = zstandard.ZstdDecompressor().decompress(stored, max_output_size=MAX_MANIFEST_BYTES)
        document = msgspec.msgpack.decode(raw, type=StoredManifest)
    except (zstandard.ZstdError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CorruptData(what, f"not a valid manifest ({exc})") from exc
    if document.version != STORED_MANIFEST_VERSION:
        raise FormatVersionError(f"{what}: manifest version {document.version!r} is unknown")
    if (
        len(document.snapshot) != 32
        or len(document.parent) not in (0, 32)
        or any(len(entry.object) != 32 or entry.size < 0 for entry in document.entries)
    ):
        raise CorruptData(what, "malformed digest or size")
    try:
        document.header()
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CorruptData(what, f"bad timestamp ({exc})") from exc
    return document


def rebuild(document: StoredManifest, parent_entries: dict[str, ManifestEntry] | None) -> Manifest:
    """The logical manifest: the parent's entries (if any) with this document's changes."""
    entries = dict(parent_entries) if parent_entries is not None else {}
    for tenant in document.removed:
        entries.pop(tenant, None)
    for entry in document.entries:
        entries[entry.tenant_id] = ManifestEntry(Digest(entry.object.hex()), entry.size)
    header = document.header()
    return Manifest(
        description=header.description,
        entries=entries,
        operation=header.operation,
        tags=header.tags,
        target_id=header.target_id,
        timestamp=header.timestamp,
    )
