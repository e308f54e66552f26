"""A repository: config, the pack store, manifests and locks on one backend.

Layout in `casbak.layout`, format in docs/FORMAT.md. Only the current format
is opened for use; older ones only for `casbak migrate`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime
from itertools import groupby
from pathlib import Path
from typing import NamedTuple

import msgspec

from casbak import history
from casbak.backends.base import Backend
from casbak.backends.local import LocalBackend
from casbak.backends.prefixed import PrefixedBackend
from casbak.catalog import COMPACT_AFTER, FOLD_SYNC_AFTER, TELL_BY_REFERENCE, CatalogView
from casbak.catalogdata import (
    BY_REFERENCE,
    CATALOG_VERSION,
    JournalEntry,
)
from casbak.defaults import DEFAULT_COMPRESSION_LEVEL, DEFAULT_RETENTION_DAYS
from casbak.errors import (
    AlreadyExists,
    CasbakError,
    ChecksumMismatch,
    CorruptData,
    FormatVersionError,
    InputError,
    ObjectMissing,
    Refused,
    RepositoryExists,
    RepositoryNotFound,
)
from casbak.ids import PLAIN, Digest, Hasher
from casbak.keystore import Password, RememberedKeys, open_sealer
from casbak.layout import (
    CONFIG_KEY,
    MANIFEST_PREFIX,
    manifest_key,
    snapshot_id_from_key,
)
from casbak.locks import LockManager
from casbak.manifestchain import ManifestChains
from casbak.model import (
    ENCRYPTED_VERSION,
    FORMAT_NAME,
    REPOSITORY_VERSION,
    Manifest,
    ManifestEntry,
    RepositoryConfig,
    decode_config,
    encode_config,
    encode_manifest,
    utc_now,
)
from casbak.objects import delete_keys
from casbak.sealer import Sealer
from casbak.store import PackStore
from casbak.storedmanifest import (
    Header,
    StoredManifest,
    decode_manifest_file,
    encode_stored,
)
from casbak.timeline import Snapshot, TenantVersion, Timeline
from casbak.tokens import random_hex

__all__ = [
    "Location",
    "Repository",
    "Snapshot",
    "TenantVersion",
    "backend_for",
    "local_backend",
    "locate",
]

MAX_DELTA_DEPTH = 64
"""A manifest this many deltas from a whole one is stored whole again."""
DELTA_FROM = 32
"""Snapshots of fewer tenants are stored full: a delta would save nothing."""
SEALED_TARGET = "sealed"
"""What an encrypted repository's manifest names say in place of the target."""


def header_of(manifest: Manifest) -> Header:
    """The metadata of a whole manifest (format 1 keeps no separate header)."""
    return Header(
        manifest.description,
        manifest.operation,
        list(manifest.tags),
        manifest.target_id,
        manifest.timestamp,
        len(manifest.entries),
        None,
        0,
        dict(manifest.provenance) if isinstance(manifest.provenance, dict) else {},
    )


def _idle() -> None:
    pass


class Location(NamedTuple):
    """Where a repository is: its top-level config, and where its files live.

    ``backend`` and ``config`` are the repository's own; they differ from
    ``top`` and ``top_config`` only when the top-level config names a
    ``root`` (a repository that ``migrate --encrypt`` converted).
    """

    top: Backend
    top_config: RepositoryConfig
    backend: Backend
    config: RepositoryConfig

    @property
    def rooted(self) -> bool:
        """Whether the files live under a root folder rather than at the top."""
        return self.backend is not self.top

    def check_unchanged(self) -> None:
        """Refuse to go on if the top-level config changed since this location was read.

        Every lock calls it once held (``LockManager(on_acquire=)``): a
        command that read a plain repository's config and then waited for its
        lock while ``migrate --encrypt`` converted it would otherwise write
        plain files into an encrypted repository's location.
        """
        top = self.top
        try:
            current = decode_config(top.get(CONFIG_KEY), f"{top.describe()}/{CONFIG_KEY}")
        except ObjectMissing:
            raise RepositoryNotFound(
                f"the repository at {top.describe()} was removed while this command waited "
                "for its lock"
            ) from None
        if current != self.top_config:
            raise FormatVersionError(
                f"{top.describe()} was migrated (its config changed) while this command waited "
                "for its lock; nothing was done, run it again"
            )


def locate(backend: Backend) -> Location:
    """Read the config at ``backend`` and follow its ``root``; RepositoryNotFound if none.

    A pointer config (format 6) names the root; the config there must be the
    same repository's, an encrypted one (format 5) naming no root of its own:
    anything else is damage (exit 3).
    """
    try:
        data = backend.get(CONFIG_KEY)
    except ObjectMissing:
        raise RepositoryNotFound(
            f"no casbak repository at {backend.describe()} (create one with 'casbak init')"
        ) from None
    what = f"{backend.describe()}/{CONFIG_KEY}"
    config = decode_config(data, what)
    if config.root is msgspec.UNSET:
        return Location(backend, config, backend, config)
    inner = PrefixedBackend(backend, config.root)
    inner_what = f"{inner.describe()}/{CONFIG_KEY}"
    try:
        inner_data = inner.get(CONFIG_KEY)
    except ObjectMissing:
        raise CorruptData(
            what, f"its files live under {config.root}, which holds no config"
        ) from None
    inner_config = decode_config(inner_data, inner_what)
    if (
        inner_config.root is not msgspec.UNSET
        or inner_config.repository_id != config.repository_id
        or inner_config.version != ENCRYPTED_VERSION
    ):
        raise CorruptData(
            inner_what,
            f"not the config of the repository {what} names (same id and format "
            f"{ENCRYPTED_VERSION} expected)",
        )
    return Location(backend, config, inner, inner_config)


class Repository:
    """The operations every higher layer builds on."""

    def __init__(
        self,
        backend: Backend,
        config: RepositoryConfig,
        sealer: Sealer | None = None,
        *,
        top: Location | None = None,
        watch_config: bool = True,
    ) -> None:
        self.backend = backend
        self.config = config
        self.version = config.version
        self.sealer = sealer
        """Seals what an encrypted repository stores; None for a plain one."""
        self.hasher: Hasher = sealer.hasher if sealer is not None else PLAIN
        """The id function of objects and snapshots (keyed in an encrypted repository)."""
        self.location = top or Location(backend, config, backend, config)
        """The top-level config as opened, and where the files live."""
        self.outer: Backend | None = self.location.top if self.location.rooted else None
        """The location's top level when the files live under a root folder (else None)."""
        self.objects = PackStore(backend, config.compression_level, sealer)
        self.locks = LockManager(
            backend, on_acquire=self.location.check_unchanged if watch_config else None
        )
        self._keys: dict[Digest, str] | None = None
        self.timeline = Timeline(
            backend,
            load=self.load,
            manifest_keys=self.manifest_keys,
            rebuild=self.rebuild,
            sealer=sealer,
        )
        self.catalog = self.timeline.catalog
        self._chains = ManifestChains(
            self._read_document, self._keys_naming, self.manifest_keys, self.hasher
        )

    @classmethod
    def init(
        cls,
        backend: Backend,
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        compression_level: int = DEFAULT_COMPRESSION_LEVEL,
        clock: Callable[[], datetime] = utc_now,
    ) -> Repository:
        """Create a repository of the current format; raise RepositoryExists if one is there."""
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
        repo = cls(backend, config)
        repo.catalog.write_fresh([], 0)
        return repo

    @classmethod
    def open(
        cls,
        backend: Backend,
        *,
        for_migration: bool = False,
        password: Password = None,
        remembered: RememberedKeys | None = None,
    ) -> Repository:
        """Open an existing repository; raise RepositoryNotFound when there is none.

        A repository of an older format is refused with a pointer to
        ``casbak migrate``, which alone opens it (``for_migration``). An
        encrypted one needs ``password`` (or a function giving it, called only
        then): PasswordMissing or WrongPassword (exit 13) otherwise, unless
        ``remembered`` holds a key (``casbak key remember``). A config
        naming a ``root`` is followed there (`locate`). Every lock taken later
        first checks that the config is still the one opened here.
        """
        location = locate(backend)
        config = location.config
        if config.version == ENCRYPTED_VERSION:
            sealer = open_sealer(location.backend, config, password, remembered)
            return cls(location.backend, config, sealer, top=location)
        if config.version != REPOSITORY_VERSION and not for_migration:
            raise FormatVersionError(
                f"{backend.describe()} is a format {config.version} repository; run "
                f"'casbak migrate' to convert it to format {REPOSITORY_VERSION} (ids stay the same)"
            )
        # migrate watches the config itself: another migrate may have finished it.
        return cls(backend, config, top=location, watch_config=not for_migration)

    def write_manifest(self, manifest: Manifest) -> Snapshot:
        """Store a manifest durably; its objects must already be durable."""
        data = encode_manifest(manifest)
        return self.write_manifest_bytes(self.hasher(data), data, manifest)

    def write_manifest_bytes(
        self, snapshot_id: Digest, data: bytes, manifest: Manifest
    ) -> Snapshot:
        """Store a manifest whose logical encoding ``data`` hashes to ``snapshot_id``.

        It is stored whole or as a delta of the newest earlier snapshot of the
        same target (docs/FORMAT.md, Manifests).
        """
        # An encrypted repository's names say when and what kind, not of what
        # target (docs/ENCRYPTION-PLAN.md, "Manifest names").
        target = SEALED_TARGET if self.sealer is not None else manifest.target_id
        key = manifest_key(manifest.timestamp, manifest.operation, target, snapshot_id)
        header = header_of(manifest)
        parent = self._delta_parent(manifest)
        data = self._seal_manifest(snapshot_id, encode_stored(snapshot_id, manifest, parent))
        if parent is not None:
            header = msgspec.structs.replace(header, parent=parent[0], depth=parent[2] + 1)
        # The catalog hears of the snapshot first: a crash before the put
        # leaves a journal entry naming a manifest that is not there, which
        # readers skip; the other order could leave a snapshot it never shows.
        if self.catalog.head() is None:
            self.view(store=True)  # journal entries need a head to be folded into
        # A sync of many tenants is told by reference: its manifest already
        # names them, and told in full it would be the largest file of a round.
        by_reference = len(manifest.entries) >= TELL_BY_REFERENCE
        told = history.added_of(snapshot_id, key, header, manifest, by_reference=by_reference)
        version = BY_REFERENCE if by_reference else CATALOG_VERSION
        waiting = self.catalog.append(JournalEntry(version, self.catalog.clock(), added=[told]))
        try:
            self.backend.put(key, data)
        except AlreadyExists:
            pass  # the same content under the same name: that snapshot is already stored
        self.backend.sync()
        if self._keys is not None:
            self._keys[snapshot_id] = key
        if waiting >= (FOLD_SYNC_AFTER if by_reference else COMPACT_AFTER):
            self.catalog.compact()
        return Snapshot(snapshot_id, key, header, manifest)

    def snapshots(self, limit: int | None = None) -> list[Snapshot]:
        """Snapshots newest first (the newest ``limit``); see `Timeline.snapshots`."""
        return self.timeline.snapshots(limit)

    def resolve(self, reference: str, now: datetime | None = None) -> Snapshot:
        """One snapshot by reference (`casbak.references`); see `Timeline.resolve`."""
        return self.timeline.resolve(reference, now)

    def resolve_tenant(self, reference: str, now: datetime | None = None) -> TenantVersion:
        """A tenant's version by TENANT@REF; see `Timeline.resolve_tenant`."""
        return self.timeline.resolve_tenant(reference, now)

    def latest_of_target(self, target_id: str, before: datetime | None = None) -> Snapshot | None:
        """The newest snapshot of a target (at or before ``before``)."""
        return self.timeline.latest_of_target(target_id, before)

    def view(self, *, store: bool = False) -> CatalogView:
        """A reading of the catalog (rebuilt from the manifests when there is none)."""
        return self.timeline.view(store=store)

    def newest_versions(self, tenant_ids: Iterable[str]) -> dict[str, Digest]:
        """Each tenant's object in the newest snapshot holding it; a tenant none holds is absent."""
        return self.timeline.newest_versions(tenant_ids)

    def _delta_parent(
        self, manifest: Manifest
    ) -> tuple[Digest, dict[str, ManifestEntry], int] | None:
        if len(manifest.entries) < DELTA_FROM:
            return None
        snap = self.latest_of_target(manifest.target_id, manifest.timestamp)
        if snap is None or snap.header.depth + 1 > MAX_DELTA_DEPTH:
            return None
        try:
            entries = snap.manifest.entries
        except CasbakError:
            return None
        changes = sum(
            1 for tenant, entry in manifest.entries.items() if entries.get(tenant) != entry
        )
        if changes + len(entries.keys() - manifest.entries.keys()) > len(manifest.entries) // 2:
            return None
        return snap.id, entries, snap.header.depth

    def manifest_keys(self) -> dict[Digest, str]:
        """Every snapshot id with its manifest key (without reading manifests)."""
        found = {}
        for key in self.backend.list_names(MANIFEST_PREFIX):
            snapshot_id = snapshot_id_from_key(key, self.version)
            if snapshot_id is not None:
                found[snapshot_id] = key
        self._keys = found
        return found

    def load(self, snapshot_id: Digest, key: str) -> Snapshot:
        """Read a manifest's header; its entries are rebuilt and proven when asked for."""
        data = self.backend.get(key)
        document = self._decode_stored(snapshot_id, key, data)
        return Snapshot(
            snapshot_id, key, document.header(), loader=lambda: self.rebuild(snapshot_id, key)
        )

    def _seal_manifest(self, snapshot_id: str, data: bytes) -> bytes:
        if self.sealer is None:
            return data
        return self.sealer.seal("manifest", bytes.fromhex(snapshot_id), data)

    def manifest_file(self, key: str, data: bytes) -> bytes:
        """A manifest file's stored bytes opened (as they are in a plain repository).

        A sealed manifest is bound to the snapshot id its name carries, so one
        renamed or swapped for another is DecryptionFailed.
        """
        if self.sealer is None:
            return data
        snapshot_id = snapshot_id_from_key(key) or ""
        return self.sealer.open("manifest", bytes.fromhex(snapshot_id), data, f"manifest {key}")

    def _decode_stored(self, snapshot_id: Digest, key: str, data: bytes) -> StoredManifest:
        document = decode_manifest_file(key, self.manifest_file(key, data))
        if document.snapshot.hex() != snapshot_id:
            raise ChecksumMismatch(f"manifest {key}", snapshot_id, document.snapshot.hex())
        return document

    def rebuild(self, snapshot_id: Digest, key: str) -> Manifest:
        """A manifest with every entry, proven by hashing it to its id (see `ManifestChains`)."""
        return self._chains.rebuild(snapshot_id, key)

    def _read_document(self, snapshot_id: Digest, key: str) -> StoredManifest:
        return self._decode_stored(snapshot_id, key, self.backend.get(key))

    def _keys_naming(self, snapshot_id: Digest) -> dict[Digest, str]:
        """Manifest keys naming ``snapshot_id`` if it exists: the catalog's, else a listing."""
        if self._keys and snapshot_id in self._keys:
            return self._keys
        view = self.catalog.view()
        holder = history.find(view, bytes.fromhex(snapshot_id)) if view is not None else None
        if view is not None and holder is not None:
            return {snapshot_id: history.record(view, holder).key}
        return self.manifest_keys()

    def delete_snapshot(self, snapshot: Snapshot) -> None:
        """Remove a manifest (its objects stay until gc)."""
        self.delete_snapshots([snapshot.key])

    def delete_snapshots(
        self,
        keys: Collection[str],
        keepalive: Callable[[], None] = _idle,
        headers: Mapping[Digest, Header] | None = None,
    ) -> int:
        """Remove manifests, first rebasing every kept delta whose parent goes; how many rebased.

        The caller holds the exclusive lock. A kept delta manifest whose
        parent is removed is rewritten (same key, same id: same logical
        content) as a delta of its nearest kept ancestor, or whole; only after
        those rewrites are durable do the removals start, so every manifest
        stays readable at every moment. The catalog is taken down first and
        written again without the removed snapshots last, so it keeps nothing
        of them (a crash in between leaves no catalog: the next reader builds one).
        ``headers`` are the manifests' headers by snapshot id, when the caller
        has read them already (gc and cleanup have): the rest are read here.
        """
        if not keys:
            return 0
        removing = set(keys)
        by_id = self.manifest_keys()
        view = self.view(store=True)
        known = headers or {}
        headers = {
            sid: known[sid] if sid in known else self.load(sid, key).header
            for sid, key in by_id.items()
        }
        # A delta goes before its parent (it is one deeper), so a crash between
        # removals never leaves a manifest whose parent is gone.
        depths = {key: headers[sid].depth for sid, key in by_id.items()}
        keys = sorted(keys, key=lambda key: depths.get(key, 0), reverse=True)
        journal_end = self.catalog.journal_end()
        # Down before the first rewrite: a crash from here on leaves no
        # catalog (rebuilt by the next reader), never one that disagrees.
        self.catalog.invalidate()
        rebased: dict[bytes, tuple[bytes, int]] = {}
        for sid, key in sorted(by_id.items(), key=lambda item: item[1]):
            parent = headers[sid].parent
            if key in removing or parent is None or by_id.get(parent) not in removing:
                continue
            while parent is not None and by_id.get(parent) in removing:
                parent = headers[parent].parent if parent in headers else None
            manifest = self.rebuild(sid, key)
            base = None
            if parent is not None and parent in by_id:
                base = (parent, self.rebuild(parent, by_id[parent]).entries, headers[parent].depth)
            data = self._seal_manifest(sid, encode_stored(sid, manifest, base))
            self.backend.put(key, data, overwrite=True)
            rebased[bytes.fromhex(sid)] = (
                (bytes.fromhex(base[0]), base[2] + 1) if base is not None else (b"", 0)
            )
            keepalive()
        self.backend.sync()
        removed_ids = {bytes.fromhex(sid) for sid, key in by_id.items() if key in removing}
        survivors = history.everything_but(view, removed_ids, rebased)
        # Deepest first, each depth wholly gone before the next one starts.
        for _, same_depth in groupby(keys, key=lambda key: depths.get(key, 0)):
            delete_keys(self.backend, same_depth, keepalive)
        self.backend.sync()
        self._keys = None
        self.catalog.write_fresh(survivors, journal_end, purge=True)
        return len(rebased)


def sort_newest_first(snapshots: Iterable[Snapshot]) -> list[Snapshot]:
    """Order by manifest timestamp, newest first; ties by id so the order is stable."""
    ordered = sorted(snapshots, key=lambda snap: snap.id, reverse=True)
    ordered.sort(key=lambda snap: snap.header.timestamp, reverse=True)
    return ordered


def backend_for(location: str | Path) -> Backend:
    """The backend of a repository location: ``s3://BUCKET/PREFIX`` or a local folder."""
    if str(location).startswith("s3://"):
        from casbak.backends.s3 import S3Backend

        return S3Backend(str(location))
    return local_backend(location)


def refuse_occupied_folder(backend: Backend) -> None:
    """Refuse `init` in a local folder that holds files but is not a repository.

    A repository created among other files would have them reported as
    damage by every verify, and a mistyped path would go unnoticed. An empty
    or missing folder is fine; an existing repository is for `Repository.init`
    to refuse.
    """
    if not isinstance(backend, LocalBackend) or backend.stat(CONFIG_KEY) is not None:
        return
    try:
        with os.scandir(backend.root) as listing:
            occupied = next(listing, None) is not None
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputError(f"cannot list {backend.root}: {exc.strerror or exc}") from None
    if occupied:
        raise Refused(
            f"{backend.root} is not empty and is not a casbak repository; "
            "choose an empty or new folder, or use --force to create one there anyway"
        )


def local_backend(location: str | Path) -> LocalBackend:
    """A backend for a local repository path; refuses a path that is a file."""
    path = Path(location).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"repository path {path} is a file, not a folder")
    return LocalBackend(path)
