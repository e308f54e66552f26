"""A repository: config, objects, manifests and locks on one backend.

Layout (see docs/FORMAT.md): ``config``, ``objects/<2 hex>/<digest>``,
``manifests/<time>_<operation>_<target>_<snapshot id>.json``, ``locks/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

import msgspec

from casbak.backends.base import Backend
from casbak.backends.local import LocalBackend
from casbak.errors import (
    AlreadyExists,
    AmbiguousError,
    ChecksumMismatch,
    InputError,
    NotFoundError,
    ObjectMissing,
    RepositoryExists,
    RepositoryNotFound,
)
from casbak.ids import Digest, hash_bytes
from casbak.locks import LockManager
from casbak.model import (
    FORMAT_NAME,
    REPOSITORY_VERSION,
    Manifest,
    RepositoryConfig,
    decode_config,
    decode_manifest,
    encode_config,
    encode_manifest,
    utc_now,
)
from casbak.names import MANIFEST_PREFIX, manifest_key, snapshot_id_from_key
from casbak.objects import ObjectStore
from casbak.tokens import random_hex

CONFIG_KEY = "config"
MIN_PREFIX = 4


class Snapshot(msgspec.Struct, frozen=True):
    """A manifest with its id and storage key."""

    id: Digest
    key: str
    manifest: Manifest


class Repository:
    """The operations every higher layer builds on."""

    def __init__(self, backend: Backend, config: RepositoryConfig) -> None:
        self.backend = backend
        self.config = config
        self.objects = ObjectStore(backend, config.compression_level)
        self.locks = LockManager(backend)

    @classmethod
    def init(
        cls,
        backend: Backend,
        *,
        retention_days: int = 30,
        compression_level: int = 10,
        clock: Callable[[], datetime] = utc_now,
    ) -> Repository:
        """Create a repository; raise RepositoryExists if one is there already."""
        config = RepositoryConfig(
            created=clock(),
            format=FORMAT_NAME,
            repository_id=random_hex(32),
            version=REPOSITORY_VERSION,
            compression_level=compression_level,
            retention_days=retention_days,
        )
        try:
            backend.put(CONFIG_KEY, encode_config(config))
        except AlreadyExists:
            raise RepositoryExists(f"{backend.describe()} is already a casbak repository") from None
        backend.sync()
        return cls(backend, config)

    @classmethod
    def open(cls, backend: Backend) -> Repository:
        """Open an existing repository; raise RepositoryNotFound when there is none."""
        try:
            data = backend.get(CONFIG_KEY)
        except ObjectMissing:
            raise RepositoryNotFound(
                f"no casbak repository at {backend.describe()} (create one with 'casbak init')"
            ) from None
        return cls(backend, decode_config(data, f"{backend.describe()}/{CONFIG_KEY}"))

    def write_manifest(self, manifest: Manifest) -> Snapshot:
        """Store a manifest durably; its objects must already be durable."""
        data = encode_manifest(manifest)
        return self.write_manifest_bytes(hash_bytes(data), data, manifest)

    def write_manifest_bytes(
        self, snapshot_id: Digest, data: bytes, manifest: Manifest
    ) -> Snapshot:
        """Store manifest bytes checked elsewhere (an import) exactly as they are."""
        key = manifest_key(manifest.timestamp, manifest.operation, manifest.target_id, snapshot_id)
        try:
            self.backend.put(key, data)
        except AlreadyExists:
            pass  # the same content under the same name: that snapshot is already stored
        self.backend.sync()
        return Snapshot(snapshot_id, key, manifest)

    def manifest_keys(self) -> dict[Digest, str]:
        """Every snapshot id with its manifest key (without reading manifests)."""
        found = {}
        for info in self.backend.list(MANIFEST_PREFIX):
            snapshot_id = snapshot_id_from_key(info.key)
            if snapshot_id is not None:
                found[snapshot_id] = info.key
        return found

    def load(self, snapshot_id: Digest, key: str) -> Snapshot:
        """Read a manifest and check that it hashes to its id."""
        data = self.backend.get(key)
        actual = hash_bytes(data)
        if actual != snapshot_id:
            raise ChecksumMismatch(f"manifest {key}", snapshot_id, actual)
        return Snapshot(snapshot_id, key, decode_manifest(data, f"manifest {key}"))

    def snapshots(self) -> list[Snapshot]:
        """Every snapshot, newest first by the timestamp inside the manifest."""
        return sort_newest_first(self.load(sid, key) for sid, key in self.manifest_keys().items())

    def resolve(self, reference: str) -> Snapshot:
        """Find one snapshot by full id, unique prefix, ``latest`` or ``latest:TARGET``.

        A manifest file name or path also works, so paths returned by the
        Python API can be handed back.
        """
        keys = self.manifest_keys()
        name = Path(reference).name
        by_name = snapshot_id_from_key(MANIFEST_PREFIX + name) if name.endswith(".json") else None
        if by_name is not None and by_name in keys:
            return self.load(by_name, keys[by_name])
        if reference == "latest" or reference.startswith("latest:"):
            target = reference.partition(":")[2] or None
            candidates = [
                snap
                for snap in self.snapshots()
                if target is None or snap.manifest.target_id == target
            ]
            if not candidates:
                what = f" of target {target!r}" if target else ""
                raise NotFoundError(f"no snapshot{what} in {self.backend.describe()}")
            return candidates[0]
        if len(reference) < MIN_PREFIX:
            raise InputError(
                f"snapshot reference {reference!r} is too short: give {MIN_PREFIX}+ hex characters"
            )
        matches = [sid for sid in keys if sid.startswith(reference.lower())]
        if not matches:
            raise NotFoundError(f"no snapshot matches {reference!r}")
        if len(matches) > 1:
            raise AmbiguousError(
                f"{reference!r} matches {len(matches)} snapshots; give more characters"
            )
        return self.load(matches[0], keys[matches[0]])

    def delete_snapshot(self, snapshot: Snapshot) -> None:
        """Remove a manifest (its objects stay until gc)."""
        self.backend.delete(snapshot.key)


def sort_newest_first(snapshots: Iterable[Snapshot]) -> list[Snapshot]:
    """Order by manifest timestamp, newest first; ties by id so the order is stable."""
    ordered = sorted(snapshots, key=lambda snap: snap.id, reverse=True)
    ordered.sort(key=lambda snap: snap.manifest.timestamp, reverse=True)
    return ordered


def backend_for(location: str | Path) -> Backend:
    """The backend of a repository location: ``s3://BUCKET/PREFIX`` or a local folder."""
    if str(location).startswith("s3://"):
        from casbak.backends.s3 import S3Backend

        return S3Backend(str(location))
    return local_backend(location)


def local_backend(location: str | Path) -> LocalBackend:
    """A backend for a local repository path; refuses a path that is a file."""
    path = Path(location).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"repository path {path} is a file, not a folder")
    return LocalBackend(path)
