"""Data types: the manifest (the on-disk index entry) and the service API's types.

Pure: msgspec Structs and their encoding, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from casbak.defaults import DEFAULT_COMPRESSION_LEVEL, DEFAULT_RETENTION_DAYS
from casbak.errors import CorruptData, FormatVersionError
from casbak.names import slug, stamp

FORMAT_NAME = "casbak"
REPOSITORY_VERSION = 4
SUPPORTED_VERSIONS = (1, 2, 3, 4)
"""Versions a config may name; only REPOSITORY_VERSION is used, older ones are migrated."""
ENCRYPTED_VERSION = 5
"""The format of an encrypted repository (docs/ENCRYPTION-PLAN.md); plain ones stay at 4."""
POINTER_VERSION = 6
"""A top-level config saying the repository (format 5) lives under its ``root`` folder.

Its own number, so that a casbak that knows no ``root`` refuses it as a
newer format (exit 12, "upgrade casbak") before reading any field, rather
than as a damaged config; see docs/FORMAT.md, "Encrypted by migrate".
"""
MANIFEST_VERSION = 1

_ROOT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}/")
"""A config's ``root``: one folder of the layout's key rules, then ``/``."""

HexDigest = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class ManifestEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One tenant in a snapshot: the object holding its document and the document's size."""

    object: HexDigest
    size: NonNegative


Provenance = dict[str, str]
"""Who took a snapshot, where and why: ``user``, ``host``, ``casbak``, ``meta.*``, ``ci.*``."""


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One snapshot. Its id is the blake3 digest of its encoded bytes.

    Fields and keys are encoded in sorted order without whitespace, so the
    encoding is canonical JSON and the id is reproducible from the content.
    ``provenance`` (format 4) is declared last so positional construction
    keeps working, yet encoded in its sorted place; left unset it is not
    encoded at all, so a manifest without one hashes exactly as before.
    """

    description: str
    entries: dict[str, ManifestEntry]
    operation: str
    tags: list[str]
    target_id: str
    timestamp: datetime
    version: int = MANIFEST_VERSION
    provenance: Provenance | msgspec.UnsetType = msgspec.UNSET


class _VersionOnly(msgspec.Struct):
    version: Any = None


class Encryption(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How an encrypted repository seals its files and names its objects."""

    aead: str = "aes-256-gcm-siv"
    ids: str = "blake3-keyed"
    subkeys: str = "blake3-derive-key casbak 2026"


ENCRYPTION = Encryption()
"""The only scheme there is so far; a config naming another is refused."""


class RepositoryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The repository's ``config`` document, written once by ``init``."""

    created: datetime
    format: str
    repository_id: HexDigest
    version: int
    compression_level: Annotated[int, msgspec.Meta(ge=1, le=22)] = DEFAULT_COMPRESSION_LEVEL
    retention_days: Annotated[int, msgspec.Meta(ge=0)] = DEFAULT_RETENTION_DAYS
    encryption: Encryption | msgspec.UnsetType = msgspec.UNSET
    """Set in an encrypted repository (format 5) only; unset it is not encoded at all."""
    root: str | msgspec.UnsetType = msgspec.UNSET
    """Where the repository's files live when not at the top (``"encrypted/"``).

    Set in a pointer config (POINTER_VERSION) only: the top-level config of a
    repository that ``migrate --encrypt`` converted. Its data, and a config of
    its own (format 5, no root), live under this folder (docs/FORMAT.md,
    "Encrypted by migrate"). Unset it is not encoded.
    """


# "sorted" orders struct fields by name too, whatever their declaration order.
_MANIFEST_ENCODER = msgspec.json.Encoder(order="sorted")
_CONFIG_ENCODER = msgspec.json.Encoder(order="deterministic")
_MANIFEST_DECODER = msgspec.json.Decoder(Manifest)
_CONFIG_DECODER = msgspec.json.Decoder(RepositoryConfig)
_VERSION_DECODER = msgspec.json.Decoder(_VersionOnly)


def encode_manifest(manifest: Manifest) -> bytes:
    """Encode a manifest to the exact bytes its id is computed from."""
    return _MANIFEST_ENCODER.encode(manifest)


def provenance_field(provenance: Mapping[str, str] | None) -> Provenance | msgspec.UnsetType:
    """Provenance as a manifest holds it: sorted, and unset when there is none."""
    return dict(sorted(provenance.items())) if provenance else msgspec.UNSET


def decode_manifest(data: bytes, what: str) -> Manifest:
    """Decode manifest bytes, refusing unknown versions and malformed content."""
    _check_version(data, what, (MANIFEST_VERSION,), "manifest")
    try:
        manifest = _MANIFEST_DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CorruptData(what, f"not a valid manifest ({exc})") from exc
    if manifest.timestamp.tzinfo is None:
        raise CorruptData(what, "manifest timestamp has no timezone")
    return manifest


def encode_config(config: RepositoryConfig) -> bytes:
    """Encode the repository config (pretty, people read it)."""
    return msgspec.json.format(_CONFIG_ENCODER.encode(config), indent=2) + b"\n"


def decode_config(data: bytes, what: str) -> RepositoryConfig:
    """Decode the repository config, refusing unknown formats and versions."""
    _check_version(
        data, what, (*SUPPORTED_VERSIONS, ENCRYPTED_VERSION, POINTER_VERSION), "repository format"
    )
    try:
        config = _CONFIG_DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CorruptData(what, f"not a valid repository config ({exc})") from exc
    if config.format != FORMAT_NAME:
        raise CorruptData(what, f"format is {config.format!r}, not {FORMAT_NAME!r}")
    encrypted = config.encryption is not msgspec.UNSET
    if encrypted != (config.version in (ENCRYPTED_VERSION, POINTER_VERSION)):
        # Formats 5 and 6 mean encrypted: anything else with those numbers is
        # a format this casbak does not know (a newer one), not damage.
        raise FormatVersionError(
            f"{what}: repository format {config.version} "
            f"{'with' if encrypted else 'without'} encryption is not supported; upgrade casbak"
        )
    if encrypted and config.encryption != ENCRYPTION:
        raise FormatVersionError(
            f"{what}: an encryption scheme this casbak does not know; upgrade casbak"
        )
    pointer = config.version == POINTER_VERSION
    if pointer != (config.root is not msgspec.UNSET):
        raise CorruptData(
            what,
            f"a format {POINTER_VERSION} config names the root folder its repository lives "
            "under, and no other config does",
        )
    if pointer and not _ROOT.fullmatch(str(config.root)):
        raise CorruptData(what, f"root {str(config.root)[:80]!r} is not a folder name and '/'")
    return config


def _check_version(data: bytes, what: str, supported: tuple[int, ...], kind: str) -> None:
    try:
        version = _VERSION_DECODER.decode(data).version
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CorruptData(what, f"not JSON ({exc})") from exc
    if version is None or isinstance(version, bool) or not isinstance(version, int):
        raise CorruptData(what, f"has no valid {kind} version")
    if version not in supported:
        readable = " and ".join(map(str, supported))
        raise FormatVersionError(
            f"{what}: {kind} version {version!r} is not supported "
            f"(this casbak reads version {readable}); upgrade casbak"
        )


def utc_now() -> datetime:
    """The default clock: now, in UTC."""
    return datetime.now(UTC)


class TenantConfig(msgspec.Struct, kw_only=True):
    """A tenant as the original service modelled it."""

    id: str
    name: str
    description: str | None = None
    domains: list[str] = msgspec.field(default_factory=list)
    flow_ids: list[str] = msgspec.field(default_factory=list)
    enabled: bool = True


class BackupMetadata(msgspec.Struct):
    """What a snapshot is: when (UTC), why (operation), of what (target), and a note."""

    timestamp: datetime
    operation: str
    target_id: str
    description: str = ""


class TenantBackup(msgspec.Struct):
    """One tenant with the metadata of the snapshot that holds it."""

    metadata: BackupMetadata
    tenant: TenantConfig

    def filename(self) -> str:
        """The original service's file name: ``<UTC time>_<operation>_<target>.json``."""
        meta = self.metadata
        return f"{stamp(meta.timestamp)}_{slug(meta.operation)}_{slug(meta.target_id)}.json"
