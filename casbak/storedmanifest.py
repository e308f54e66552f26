"""Manifests as stored: full checkpoints and deltas against a parent.

Pure. A snapshot's id stays the blake3 of its logical manifest encoding
(metadata plus every entry, `model.encode_manifest`), so ids never change
between formats, bundles carry that encoding, and a reader proves a rebuilt
delta by hashing it. What is stored (format 4) is a small JSON document people
and scripts can read: the metadata, the provenance and the parent's id in the
clear, and the entries that differ from the parent as one base64 field holding
a zstd frame of msgpack (hex digests in JSON would make the repository a tenth
larger). Format 3 files are the same document without provenance, and are
read as they are. Format 2 stored the same fields as one zstd frame of
msgpack; only ``casbak migrate`` reads it (`decode_stored_v2`).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

import msgspec
import zstandard

from casbak import unzstd
from casbak.errors import CorruptData, FormatVersionError
from casbak.ids import Digest, hash_bytes
from casbak.model import (
    MANIFEST_VERSION,
    Manifest,
    ManifestEntry,
    Provenance,
    decode_manifest,
)

STORED_MANIFEST_VERSION = 4
FORMAT_3_MANIFEST_VERSION = 3
"""Format 3's manifest file: format 4's without provenance, read as it is."""
FORMAT_2_MANIFEST_VERSION = 2
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
    provenance: Provenance = msgspec.field(default_factory=dict)


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
    provenance: Provenance | msgspec.UnsetType = msgspec.UNSET

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
            dict(self.provenance) if isinstance(self.provenance, dict) else {},
        )


class _Changes(msgspec.Struct, array_like=True, frozen=True):
    entries: list[StoredEntry]
    removed: list[str]


class _Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The JSON document of a manifest file; the metadata comes first for people.

    Encoded in declaration order; ``provenance`` is left out when unset, as in
    every format 3 file.
    """

    version: int
    snapshot: str
    timestamp: str
    operation: str
    target_id: str
    description: str
    tags: list[str]
    provenance: Provenance | msgspec.UnsetType = msgspec.UNSET
    tenants: int
    parent: str | None
    depth: int
    changes: str


class _Version(msgspec.Struct):
    version: object = None


_WIRE_DECODER = msgspec.json.Decoder(_Wire)
# Declaration order for the fields (people read them), sorted keys inside provenance.
_WIRE_ENCODER = msgspec.json.Encoder(order="deterministic")
_VERSION_DECODER = msgspec.json.Decoder(_Version)


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
        provenance=manifest.provenance,
    )
    return encode_stored_document(document)


def encode_stored_document(document: StoredManifest) -> bytes:
    """The current format's file of a stored manifest (whatever format it was read from)."""
    packed = msgspec.msgpack.encode(_Changes(document.entries, document.removed))
    # Level 19 on a large manifest needs a window, and memory, of many MiB
    # for little gain over level 3 on what is mostly ids and digests.
    level = 19 if len(packed) <= FAST_ABOVE else 3
    wire = _Wire(
        changes=base64.b64encode(zstandard.ZstdCompressor(level=level).compress(packed)).decode(),
        depth=document.depth,
        description=document.description,
        operation=document.operation,
        parent=document.parent.hex() if document.parent else None,
        provenance=document.provenance,
        snapshot=document.snapshot.hex(),
        tags=list(document.tags),
        target_id=document.target_id,
        tenants=document.tenants,
        timestamp=document.timestamp,
        version=STORED_MANIFEST_VERSION,
    )
    return _WIRE_ENCODER.encode(wire) + b"\n"


def decode_stored(stored: bytes, what: str) -> StoredManifest:
    """Decode a manifest file of the current format, or of format 3 (the same without provenance).

    A file whose ``version`` is 1 is a whole manifest in its logical encoding,
    as format 1 wrote it (``casbak migrate`` keeps those files): its id is the
    hash of its bytes.
    """
    try:
        version = _VERSION_DECODER.decode(stored).version
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CorruptData(what, "not a valid manifest (not a JSON object)") from exc
    if version == MANIFEST_VERSION and not isinstance(version, bool):
        return _from_logical(stored, what)
    if isinstance(version, bool) or version not in (
        STORED_MANIFEST_VERSION,
        FORMAT_3_MANIFEST_VERSION,
    ):
        raise FormatVersionError(f"{what}: manifest version {version!r} is unknown")
    try:
        wire = _WIRE_DECODER.decode(stored)
        packed = unzstd.decompress(
            base64.b64decode(wire.changes, validate=True), max_output_size=MAX_MANIFEST_BYTES
        )
        changes = msgspec.msgpack.decode(packed, type=_Changes)
        snapshot = bytes.fromhex(wire.snapshot)
        parent = bytes.fromhex(wire.parent) if wire.parent is not None else b""
    except (
        zstandard.ZstdError,
        msgspec.DecodeError,
        msgspec.ValidationError,
        binascii.Error,
        ValueError,
    ) as exc:
        raise CorruptData(what, "not a valid manifest (malformed field)") from exc
    if wire.version == FORMAT_3_MANIFEST_VERSION and wire.provenance is not msgspec.UNSET:
        raise CorruptData(what, "a format 3 manifest has no provenance")
    document = StoredManifest(
        wire.version,
        snapshot,
        wire.description,
        wire.operation,
        wire.tags,
        wire.target_id,
        wire.timestamp,
        wire.tenants,
        parent,
        wire.depth,
        changes.entries,
        changes.removed,
        wire.provenance,
    )
    return _checked(document, what)


def decode_manifest_file(key: str, stored: bytes) -> StoredManifest:
    """Decode a manifest file of any format, told apart by its name and content.

    A ``.snap`` file is format 2's; a ``.json`` file holds format 3's stored
    form, or a whole logical manifest as format 1 wrote it.
    """
    what = f"manifest {key}"
    if key.endswith(".snap"):
        return decode_stored_v2(stored, what)
    return decode_stored(stored, what)


def decode_stored_v2(stored: bytes, what: str) -> StoredManifest:
    """Decode a format 2 ``.snap`` file (one zstd frame of msgpack); for migrate."""
    try:
        raw = unzstd.decompress(stored, max_output_size=MAX_MANIFEST_BYTES)
        document = msgspec.msgpack.decode(raw, type=StoredManifest)
    except (zstandard.ZstdError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CorruptData(what, "not a valid format 2 manifest") from exc
    if document.version != FORMAT_2_MANIFEST_VERSION:
        raise FormatVersionError(f"{what}: manifest version {document.version!r} is unknown")
    return _checked(document, what)


def _from_logical(stored: bytes, what: str) -> StoredManifest:
    manifest = decode_manifest(stored, what)
    return StoredManifest(
        MANIFEST_VERSION,
        bytes.fromhex(hash_bytes(stored)),
        manifest.description,
        manifest.operation,
        list(manifest.tags),
        manifest.target_id,
        _TIME_ENCODER.encode(manifest.timestamp).decode()[1:-1],
        len(manifest.entries),
        b"",
        0,
        [
            StoredEntry(tenant, bytes.fromhex(entry.object), entry.size)
            for tenant, entry in sorted(manifest.entries.items())
        ],
        [],
        manifest.provenance,
    )


def _checked(document: StoredManifest, what: str) -> StoredManifest:
    if (
        len(document.snapshot) != 32
        or len(document.parent) not in (0, 32)
        or any(len(entry.object) != 32 or entry.size < 0 for entry in document.entries)
    ):
        raise CorruptData(what, "malformed digest or size")
    try:
        document.header()
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CorruptData(what, "bad timestamp") from exc
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
        provenance=document.provenance,
    )
