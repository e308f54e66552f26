"""The Python API callers already use: `BackupService`.

It keeps the original service's contract (default folder
``~/.descope-mgmt/backups``, 30-day retention, manifest paths returned) on top
of the content-addressed repository.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from casbak.canonical import decode_canonical
from casbak.defaults import DEFAULT_LOCK_TIMEOUT, DEFAULT_RETENTION_DAYS, default_repository
from casbak.errors import RepositoryNotFound
from casbak.model import BackupMetadata, TenantConfig, utc_now
from casbak.repository import Repository, local_backend
from casbak.service import (
    ALL_TENANTS,
    restore_documents,
    take_snapshot,
)
from casbak.sources import documents_from_values


class LoadedBackup(msgspec.Struct, frozen=True):
    """A snapshot read back: its metadata, tags, tenant documents by id, and provenance."""

    snapshot_id: str
    metadata: BackupMetadata
    tags: list[str]
    tenants: dict[str, Any]
    provenance: dict[str, str] = msgspec.field(default_factory=dict)


TenantLike = TenantConfig | Mapping[str, Any]


class BackupService:
    """Backups of tenants before destructive changes.

    Args:
        backup_dir: repository folder; created and initialized on first use.
        retention_days: how long `cleanup_old_backups` keeps snapshots.
        clock: returns the current time (UTC); tests pass a fixed one.
        lock_timeout: seconds to wait for a lock before RepositoryLocked.
        password: the password of an encrypted repository; with it, a new
            repository is created encrypted. Wrong or missing: a KeyProblem.

    """

    def __init__(
        self,
        backup_dir: Path | None = None,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        *,
        clock: Callable[[], datetime] = utc_now,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        password: str | None = None,
    ) -> None:
        self.backup_dir = Path(backup_dir) if backup_dir is not None else default_repository()
        self._password = password
        self.retention_days = retention_days
        self.clock = clock
        self.lock_timeout = lock_timeout
        self._repo: Repository | None = None

    @property
    def repository(self) -> Repository:
        """The repository, opened (or created) on first use."""
        if self._repo is None:
            backend = local_backend(self.backup_dir)
            try:
                self._repo = Repository.open(backend, password=self._password)
            except RepositoryNotFound:
                if self._password is None:
                    self._repo = Repository.init(
                        backend, retention_days=self.retention_days, clock=self.clock
                    )
                else:
                    from casbak.keyservice import init_encrypted

                    init_encrypted(
                        backend,
                        self._password,
                        retention_days=self.retention_days,
                        clock=self.clock,
                    )
                    self._repo = Repository.open(backend, password=self._password)
        return self._repo

    def create_tenant_backup(
        self,
        tenant: TenantLike,
        operation: str,
        description: str = "",
        *,
        meta: Mapping[str, str] | None = None,
    ) -> Path:
        """Back up one tenant; returns the manifest file's path.

        Like every snapshot it records who took it and where; ``meta`` adds
        the caller's own pairs (kept as ``meta.KEY``).
        """
        return self.create_backup(
            [tenant], operation, target_id=None, description=description, meta=meta
        )

    def create_backup(
        self,
        tenants: Iterable[TenantLike],
        operation: str,
        target_id: str | None = ALL_TENANTS,
        description: str = "",
        tags: Sequence[str] = (),
        *,
        meta: Mapping[str, str] | None = None,
    ) -> Path:
        """Back up many tenants as one snapshot (the ``sync-apply`` case), with provenance."""
        values = [
            msgspec.to_builtins(tenant) if isinstance(tenant, TenantConfig) else tenant
            for tenant in tenants
        ]
        documents = documents_from_values(values, "tenants", self.repository.hasher)
        result = take_snapshot(
            self.repository,
            documents,
            operation=operation,
            target_id=target_id,
            description=description,
            tags=tags,
            meta=meta,
            clock=self.clock,
            lock_timeout=self.lock_timeout,
        )
        return Path(result.path)

    def list_backups(self, target_id: str | None = None) -> list[Path]:
        """Manifest paths, newest first, optionally of one target."""
        return [
            self.backup_dir / snap.key
            for snap in self.repository.snapshots()
            if target_id is None or snap.header.target_id == target_id
        ]

    def cleanup_old_backups(self) -> int:
        """Apply ``retention_days``, collect garbage; return how many snapshots were removed.

        The newest snapshot of every target stays whatever its age.
        """
        from datetime import timedelta

        from casbak.maintenance import cleanup
        from casbak.retention import RetentionPolicy

        policy = RetentionPolicy(keep_within=timedelta(days=self.retention_days))
        report = cleanup(self.repository, policy, clock=self.clock, lock_timeout=self.lock_timeout)
        return report.snapshots_removed

    def create_backup_from_descope(
        self,
        client: Any,
        operation: str,
        tenant_ids: Sequence[str] = (),
        *,
        with_settings: bool = False,
        with_sso: bool = False,
        description: str = "",
        meta: Mapping[str, str] | None = None,
    ) -> Path:
        """Pull tenants through a `TenantApi` (e.g. `SdkTenantApi()`) into one snapshot."""
        from casbak.descope_live import pull_snapshot

        result = pull_snapshot(
            self.repository,
            client,
            tenant_ids,
            with_settings=with_settings,
            with_sso=with_sso,
            operation=operation,
            target_id=tenant_ids[0] if len(tenant_ids) == 1 else ALL_TENANTS,
            description=description,
            meta=meta,
            clock=self.clock,
            lock_timeout=self.lock_timeout,
        )
        return Path(result.path)

    def restore_to_descope(
        self, path_or_id: Path | str, tenant_id: str, client: Any, *, dry_run: bool = False
    ) -> Any:
        """Put a backed-up tenant back through a `TenantApi`; returns a `LiveRestore`."""
        from casbak.descope_live import restore_to_descope

        return restore_to_descope(
            self.repository, client, str(path_or_id), tenant_id, dry_run=dry_run, clock=self.clock
        )

    def load_backup(self, path_or_id: Path | str) -> LoadedBackup:
        """Read a snapshot back by manifest path, id, id prefix or ``latest``."""
        snapshot, documents = restore_documents(self.repository, str(path_or_id))
        manifest = snapshot.manifest
        return LoadedBackup(
            snapshot_id=snapshot.id,
            metadata=BackupMetadata(
                manifest.timestamp, manifest.operation, manifest.target_id, manifest.description
            ),
            tags=list(manifest.tags),
            tenants={tenant_id: decode_canonical(data) for tenant_id, data in documents.items()},
            provenance=dict(snapshot.header.provenance),
        )

    def forget_backups(self, *paths_or_ids: Path | str, force: bool = False) -> int:
        """Remove the named snapshots and the objects only they used; how many were removed.

        The newest snapshot of a target is refused (`Refused`) unless ``force``.
        """
        from casbak.maintenance import forget

        report = forget(
            self.repository,
            [str(reference) for reference in paths_or_ids],
            force=force,
            clock=self.clock,
            lock_timeout=self.lock_timeout,
        )
        return report.snapshots_removed

    def report(
        self,
        path: Path | str,
        *,
        tenants: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        top: int = 10,
        verify_json: Path | str | None = None,
    ) -> Path:
        """Write the HTML report `casbak report` writes to ``path``; returns the path.

        ``tenants`` get their whole history (else the ``top`` busiest get a
        section); ``verify_json`` is a file holding a ``casbak verify --json`` result.
        """
        from casbak.report import gather, read_verify, write_report

        data = gather(
            self.repository,
            tenant_ids=tenants,
            since=since,
            until=until,
            top=top,
            verify=read_verify(str(verify_json)) if verify_json is not None else None,
            clock=self.clock,
        )
        return Path(write_report(Path(path), data).path)

    def tag_backup(
        self, path_or_id: Path | str, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> Path:
        """Change a snapshot's tags; returns its manifest path, which is new if they changed."""
        from casbak.service import retag_snapshots

        (result,) = retag_snapshots(
            self.repository,
            [str(path_or_id)],
            add=add,
            remove=remove,
            lock_timeout=self.lock_timeout,
        )
        return self.backup_dir / self.repository.resolve(result.new).key
