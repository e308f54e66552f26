"""Ids across bundles: plain blake3 inside every bundle, keyed in an encrypted repository.

A bundle is read without any repository's key, so it names objects and
snapshots by plain blake3. Export from an encrypted repository rewrites its
manifests with plain object ids (it reads every object's canonical bytes
anyway); import into one computes its keyed ids from the canonical bytes, then
rewrites and re-hashes the manifests (docs/FORMAT.md, "Sealed bundles").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import IO

import msgspec

from casbak.bundle import CheckedManifest, CheckedObject, read_bundle
from casbak.ids import Digest, hash_bytes
from casbak.layout import manifest_name
from casbak.model import encode_manifest
from casbak.repository import Repository, Snapshot


def bundle_entry(snap: Snapshot, plain: dict[Digest, Digest] | None) -> tuple[str, str, bytes]:
    """A snapshot as a bundle holds it: its id, member name and logical manifest.

    ``plain`` maps an encrypted repository's keyed object ids to plain ones:
    the manifest is then rewritten with them, and its id is its plain hash.
    """
    manifest = snap.manifest
    if plain is None:
        return snap.id, bundle_name(snap), encode_manifest(manifest)
    entries = {
        tenant: msgspec.structs.replace(entry, object=plain[Digest(entry.object)])
        for tenant, entry in manifest.entries.items()
    }
    data = encode_manifest(msgspec.structs.replace(manifest, entries=entries))
    snapshot_id = hash_bytes(data)
    header = snap.header
    name = manifest_name(header.timestamp, header.operation, header.target_id, snapshot_id, 1)
    return snapshot_id, name, data


def bundle_name(snap: Snapshot) -> str:
    """Bundles name manifests as format 1 does, whatever the repository's format."""
    header = snap.header
    return manifest_name(header.timestamp, header.operation, header.target_id, snap.id, 1)


def objects_of(
    repo: Repository, open_stream: Callable[[], IO[bytes]], keyed_ids: dict[Digest, Digest]
) -> Iterator[CheckedObject]:
    """The bundle's objects under the repository's ids (keyed ones recorded in ``keyed_ids``)."""
    for item in read_bundle(open_stream()):
        if not isinstance(item, CheckedObject):
            continue
        if repo.hasher.keyed:
            keyed = keyed_ids[item.digest] = repo.hasher(item.canonical)
            yield msgspec.structs.replace(item, digest=keyed)
        else:
            yield item


def manifests_of(
    repo: Repository, open_stream: Callable[[], IO[bytes]], keyed_ids: dict[Digest, Digest]
) -> Iterator[CheckedManifest]:
    """The bundle's manifests under the repository's ids (after `objects_of` ran)."""
    for item in read_bundle(open_stream()):
        if isinstance(item, CheckedObject):
            break  # manifests all come before the first object
        if isinstance(item, CheckedManifest):
            yield translated(repo, item, keyed_ids) if repo.hasher.keyed else item


def translated(
    repo: Repository, item: CheckedManifest, keyed: dict[Digest, Digest]
) -> CheckedManifest:
    """A bundle's manifest with the repository's keyed object ids, and its keyed id."""
    entries = {
        tenant: msgspec.structs.replace(entry, object=keyed[Digest(entry.object)])
        for tenant, entry in item.manifest.entries.items()
    }
    manifest = msgspec.structs.replace(item.manifest, entries=entries)
    data = encode_manifest(manifest)
    return CheckedManifest(repo.hasher(data), item.name, data, manifest)
