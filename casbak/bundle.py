"""The bundle format: a tar archive of manifests and the objects they need.

Members, in this order, all regular files: ``casbak-bundle.json`` (the header:
format, version, the manifests by id and name, the object count and bytes),
then ``manifests/<name>`` for each manifest, then ``objects/<2 hex>/<id>`` for
each object, stored exactly as in a repository (zstd). See docs/FORMAT.md.

Reading is a stream: one member in memory at a time, every name, type, size
and hash checked against the header and the manifests before it is used.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from datetime import datetime
from typing import IO

import msgspec

from casbak.errors import BundleError, CasbakError
from casbak.ids import Digest, hash_bytes
from casbak.layout import MANIFEST_PREFIX, object_id_from_key, snapshot_id_from_key
from casbak.model import Manifest, decode_manifest
from casbak.objects import MAX_OBJECT_BYTES, decompress_object

BUNDLE_FORMAT = "casbak-bundle"
BUNDLE_VERSION = 2
"""Version 2 may hold manifests with provenance (format 4); otherwise it is version 1."""
READABLE_BUNDLE_VERSIONS = (1, 2)
HEADER_NAME = "casbak-bundle.json"
MAX_HEADER_BYTES = 64 * 1024 * 1024
MAX_MANIFEST_BYTES = 256 * 1024 * 1024


class BundleManifest(msgspec.Struct, frozen=True):
    """A manifest as the header lists it."""

    id: str
    name: str
    size: int


class BundleHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The first member: enough to tell a complete bundle from a truncated one."""

    format: str
    version: int
    created: datetime
    manifests: list[BundleManifest]
    objects: int
    object_bytes: int


def bundle_version(with_provenance: bool) -> int:
    """The version a bundle is written as: 1 unless a manifest carries provenance.

    A casbak older than format 4 rejects a manifest with a field it does not
    know; for such a bundle it then says "upgrade casbak" (the version), not
    that the bundle is damaged, and it still reads every bundle it could before.
    """
    return BUNDLE_VERSION if with_provenance else 1


class BundleWriter:
    """Writes a bundle to a binary stream, member by member (tar stream mode)."""

    def __init__(self, stream: IO[bytes], header: BundleHeader) -> None:
        self._sink = _Sink(stream)
        # Held open across calls by design; `close` ends the archive, `abort` drops it.
        self._tar = tarfile.open(fileobj=self._sink, mode="w|", format=tarfile.PAX_FORMAT)  # type: ignore[call-overload]  # noqa: SIM115
        self._mtime = int(header.created.timestamp())
        self._add(HEADER_NAME, msgspec.json.encode(header))

    def add_manifest(self, name: str, data: bytes) -> None:
        self._add(f"manifests/{name}", data)

    def add_object(self, digest: str, stored: bytes) -> None:
        self._add(f"objects/{digest[:2]}/{digest}", stored)

    def close(self) -> None:
        self._tar.close()

    def abort(self) -> None:
        """Stop without finishing the archive (the caller discards the output)."""
        self._sink.aborted = True
        self._tar.close()

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o600
        info.mtime = self._mtime
        self._tar.addfile(info, _BytesReader(data))


class _Sink:
    """The output stream, which stops taking writes once the bundle is aborted."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.aborted = False

    def write(self, data: bytes) -> int:
        return len(data) if self.aborted else self._stream.write(data)


class _BytesReader:
    """The minimal file object tarfile.addfile reads member data from."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size >= len(self._view):
            chunk, self._view = bytes(self._view), self._view[len(self._view) :]
        else:
            chunk, self._view = bytes(self._view[:size]), self._view[size:]
        return chunk


class CheckedManifest(msgspec.Struct, frozen=True):
    """A manifest member whose bytes hash to its id."""

    id: Digest
    name: str
    data: bytes
    manifest: Manifest


class CheckedObject(msgspec.Struct, frozen=True):
    """An object member that decompresses to its declared size and hashes to its name."""

    digest: Digest
    stored: bytes
    canonical: bytes


def read_bundle(stream: IO[bytes]) -> Iterator[BundleHeader | CheckedManifest | CheckedObject]:
    """Yield the header, then each manifest, then each object, all checked.

    Raises:
        BundleError: naming the member and what is wrong with it.
    """
    try:
        tar = tarfile.open(fileobj=stream, mode="r|")  # noqa: SIM115 - closed below
    except (tarfile.TarError, EOFError, UnicodeError, ValueError) as exc:
        raise BundleError(f"not a casbak bundle (not a tar archive: {exc})") from None
    try:
        yield from _read_members(tar)
    except (tarfile.TarError, EOFError, OSError, UnicodeError, ValueError) as exc:
        raise BundleError(f"bundle is truncated or damaged ({exc})") from None
    finally:
        tar.close()


def _read_members(
    tar: tarfile.TarFile,
) -> Iterator[BundleHeader | CheckedManifest | CheckedObject]:
    members = iter(tar)
    first = next(members, None)
    if first is None or first.name != HEADER_NAME:
        raise BundleError(f"not a casbak bundle (first member is not {HEADER_NAME})")
    header = _decode_header(_member_bytes(tar, first, MAX_HEADER_BYTES))
    yield header
    listed = {entry.id: entry for entry in header.manifests}
    expected_sizes: dict[str, int] = {}
    seen_manifests: set[str] = set()
    seen_objects: set[str] = set()
    object_bytes = 0
    for member in members:
        name = member.name
        if name.startswith(MANIFEST_PREFIX) and name.endswith(".json"):
            if seen_objects:
                raise BundleError(f"{name}: manifest after objects (not a casbak bundle order)")
            checked = _check_manifest(tar, member, listed, seen_manifests)
            for entry in checked.manifest.entries.values():
                if expected_sizes.setdefault(entry.object, entry.size) != entry.size:
                    raise BundleError(f"{name}: object {entry.object} declared with two sizes")
            yield checked
        elif object_id_from_key(name, any_shard=True) is not None:
            checked_object = _check_object(tar, member, expected_sizes, seen_objects)
            object_bytes += len(checked_object.stored)
            yield checked_object
        else:
            raise BundleError(f"unexpected member {name[:200]!r} (unsafe or unknown name)")
    if seen_manifests != listed.keys():
        raise BundleError(
            f"bundle is truncated: {len(seen_manifests)} of {len(listed)} manifests present"
        )
    if len(seen_objects) != header.objects or object_bytes != header.object_bytes:
        raise BundleError(
            f"bundle is truncated or altered: {len(seen_objects)} of {header.objects} objects, "
            f"{object_bytes} of {header.object_bytes} bytes"
        )


def _check_object(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    expected_sizes: dict[str, int],
    seen: set[str],
) -> CheckedObject:
    name = member.name
    digest = object_id_from_key(name)
    if digest is None:
        raise BundleError(f"{name}: object in the wrong folder")
    if digest in seen:
        raise BundleError(f"{name}: duplicate member")
    if digest not in expected_sizes:
        raise BundleError(f"{name}: object no manifest in the bundle references")
    stored = _member_bytes(tar, member, MAX_OBJECT_BYTES)
    try:
        canonical = decompress_object(digest, stored, expected_sizes[digest])
    except CasbakError as exc:
        raise BundleError(f"{name}: {exc}") from None
    seen.add(digest)
    return CheckedObject(digest, stored, canonical)


def _decode_header(data: bytes) -> BundleHeader:
    try:
        raw = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"bundle header is not JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != BUNDLE_FORMAT:
        raise BundleError("not a casbak bundle (header format is not casbak-bundle)")
    version = raw.get("version")
    if isinstance(version, bool) or version not in READABLE_BUNDLE_VERSIONS:
        raise BundleError(
            f"bundle version {version!r} is not supported "
            f"(this casbak reads versions 1 and {BUNDLE_VERSION}); upgrade casbak"
        )
    try:
        return msgspec.convert(raw, BundleHeader)
    except msgspec.ValidationError as exc:
        raise BundleError(f"bundle header is malformed ({exc})") from None


def _check_manifest(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    listed: dict[str, BundleManifest],
    seen: set[str],
) -> CheckedManifest:
    name = member.name
    snapshot_id = snapshot_id_from_key(name, 1)
    if snapshot_id is None:
        raise BundleError(f"{name}: not a manifest name")
    if snapshot_id in seen:
        raise BundleError(f"{name}: duplicate member")
    if snapshot_id not in listed:
        raise BundleError(f"{name}: manifest the header does not list")
    data = _member_bytes(tar, member, MAX_MANIFEST_BYTES)
    actual = hash_bytes(data)
    if actual != snapshot_id:
        raise BundleError(f"{name}: content hashes to {actual}, not to its id")
    try:
        manifest = decode_manifest(data, name)
    except CasbakError as exc:
        raise BundleError(f"{name}: {exc}") from None
    seen.add(snapshot_id)
    return CheckedManifest(snapshot_id, name.removeprefix("manifests/"), data, manifest)


def _check_regular(member: tarfile.TarInfo) -> None:
    if not member.isreg():
        raise BundleError(f"{member.name}: not a regular file (links and devices are refused)")


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    _check_regular(member)
    if member.size > limit:
        raise BundleError(f"{member.name}: {member.size} bytes, over the {limit}-byte limit")
    handle = tar.extractfile(member)
    if handle is None:  # pragma: no cover - regular members always have data
        raise BundleError(f"{member.name}: no data")
    data = handle.read()
    if len(data) != member.size:
        raise BundleError(f"{member.name}: truncated")
    return data
