"""Snapshots as history: answered from the catalog, rebuilt from the manifests without one.

`Timeline` is the repository's reading side for everything but entries:
listing, references (`casbak.references`), a target's newest snapshot and a
tenant's versions. Every answer comes from one catalog reading (`ask`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import msgspec

from casbak import history
from casbak.backends.base import Backend
from casbak.catalog import Catalog, CatalogView
from casbak.catalogdata import Head, SnapshotRecord, TenantEntry, micros_of
from casbak.errors import (
    AmbiguousError,
    CasbakError,
    FormatVersionError,
    InputError,
    NotFoundError,
    ObjectMissing,
)
from casbak.history import Holder
from casbak.ids import Digest
from casbak.layout import CATALOG_PART_PREFIX, MANIFEST_PREFIX, snapshot_id_from_key
from casbak.model import Manifest, utc_now
from casbak.references import Reference, parse_reference
from casbak.sealer import Sealer
from casbak.storedmanifest import Header
from casbak.wording import count

T = TypeVar("T")
MIN_PREFIX = 4
_CATALOG_ATTEMPTS = 4


class Snapshot:
    """A snapshot: id, storage key, metadata, and its manifest (rebuilt on demand)."""

    __slots__ = ("_loader", "_manifest", "header", "id", "key")

    def __init__(
        self,
        snapshot_id: Digest,
        key: str,
        header: Header,
        manifest: Manifest | None = None,
        loader: Callable[[], Manifest] | None = None,
    ) -> None:
        self.id = snapshot_id
        self.key = key
        self.header = header
        self._manifest = manifest
        self._loader = loader

    @property
    def manifest(self) -> Manifest:
        """Every entry; format 2 rebuilds it from deltas (verified) each time it is asked."""
        if self._manifest is not None:
            return self._manifest
        assert self._loader is not None
        return self._loader()

    def __repr__(self) -> str:
        return f"Snapshot({self.id[:12]}, {self.key!r})"


class TenantVersion(msgspec.Struct, frozen=True):
    """A tenant's version named by TENANT@REF: the snapshot holding it, and a newer copy."""

    tenant_id: str
    object: Digest
    size: int
    snapshot: Snapshot
    newer: Snapshot | None
    """The newest snapshot holding the tenant, when it holds another version."""


class Timeline:
    """The catalog-backed reading side of a repository."""

    def __init__(
        self,
        backend: Backend,
        *,
        load: Callable[[Digest, str], Snapshot],
        manifest_keys: Callable[[], dict[Digest, str]],
        rebuild: Callable[[Digest, str], Manifest],
        sealer: Sealer | None = None,
    ) -> None:
        self.backend = backend
        self.catalog = Catalog(backend, sealer=sealer, manifest_entries=self._told_entries)
        self._load = load
        self._manifest_keys = manifest_keys
        self._rebuild = rebuild
        self._memory_head: Head | None = None

    def _told_entries(self, record: SnapshotRecord) -> list[TenantEntry]:
        return history.tenant_entries(self._rebuild(Digest(record.hex_id), record.key))

    def latest_of_target(self, target_id: str, before: datetime | None = None) -> Snapshot | None:
        """The newest snapshot of a target (at or before ``before``), from the catalog."""
        limit = None if before is None else micros_of(before)

        def newest_of_target(view: CatalogView) -> Snapshot | None:
            for holder in history.of_target(view, target_id):
                if limit is None or holder.micros <= limit:
                    return self.snapshot_of(view, holder)
            return None

        return self.ask(newest_of_target)

    def view(self, *, store: bool = False) -> CatalogView:
        """A reading of the catalog; one is rebuilt from the manifests when there is none.

        Only a writer (``store``, holding a lock) stores the rebuilt catalog;
        for a reader it lives in memory, so reading never changes a repository.
        """
        view = self.catalog.view()
        if view is not None:
            self._memory_head = None
            return view
        if self._memory_head is not None and not store and self.catalog.holds(self._memory_head):
            return self.catalog.view_of(self._memory_head)
        return self.rebuild_catalog(store=store)

    def snapshot_of(self, view: CatalogView, holder: Holder) -> Snapshot:
        """The snapshot a catalog answer names; its manifest is read when asked for."""
        found = history.record(view, holder)
        snapshot_id = Digest(found.hex_id)
        return Snapshot(
            snapshot_id,
            found.key,
            history.header_of_record(found),
            loader=lambda: self._rebuild(snapshot_id, found.key),
        )

    def rebuild_catalog(self, *, store: bool) -> CatalogView:
        """Read every manifest and build a new catalog of them (used when there is none).

        A snapshot that cannot be read is left out (verify names it). With
        ``store`` (the caller holds a lock) the catalog is written; else it
        serves this process alone. A snapshot whose journal entry is written
        but whose manifest is not yet (another writer's) is not in the listing:
        the new catalog stops before that entry, so it is read on top.
        """
        journal_end = self.catalog.journal_end(settled=True)
        added = []
        for snapshot_id, key in sorted(self._manifest_keys().items(), key=lambda item: item[1]):
            try:
                snap = self._load(snapshot_id, key)
                added.append(history.added_of(snapshot_id, key, snap.header, snap.manifest))
            except FormatVersionError:
                raise  # written by a newer casbak: this one must not hide it
            except CasbakError:
                continue  # removed meanwhile, or damaged (verify names it)
        if store:
            return self.catalog.write_fresh(added, journal_end)
        view = self.catalog.build_fresh(added, journal_end)
        self._memory_head = view.head
        return view

    def snapshots(self, limit: int | None = None) -> list[Snapshot]:
        """Snapshots newest first by the timestamp inside the manifest (the newest ``limit``).

        They come from the catalog; a manifest is read only when a snapshot's
        entries are asked for.
        """
        return self.ask(
            lambda view: [self.snapshot_of(view, holder) for holder in history.newest(view, limit)]
        )

    def ask(self, question: Callable[[CatalogView], T]) -> T:
        """Answer a question from one catalog reading.

        A compaction or cleanup that replaced the catalog meanwhile shows as a
        part of the old one gone, a snapshot removed meanwhile as its manifest
        gone (when the catalog was told its tenants by reference): the
        question is asked again of the new reading.
        """
        for attempt in range(1, _CATALOG_ATTEMPTS + 1):
            try:
                return question(self.view())
            except ObjectMissing as exc:
                moved = exc.key.startswith((CATALOG_PART_PREFIX, MANIFEST_PREFIX))
                if not moved or attempt == _CATALOG_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def newest_versions(self, tenant_ids: Iterable[str]) -> dict[str, Digest]:
        """Each tenant's object in the newest snapshot holding it; a tenant none holds is absent."""
        return {tenant: digest for tenant, (digest, _) in self.newest_copies(tenant_ids).items()}

    def newest_copies(self, tenant_ids: Iterable[str]) -> dict[str, tuple[Digest, Snapshot]]:
        """Each tenant's object and the newest snapshot holding it; absent when none holds it."""

        def answer(view: CatalogView) -> dict[str, tuple[Digest, Snapshot]]:
            found = {}
            for tenant_id in dict.fromkeys(tenant_ids):
                newest = history.newest_holding(view, tenant_id)
                if newest is not None:
                    snapshot = self.snapshot_of(view, newest.holder)
                    found[tenant_id] = (Digest(newest.version.hex()), snapshot)
            return found

        return self.ask(answer)

    def resolve(self, reference: str, now: datetime | None = None) -> Snapshot:
        """One snapshot by any reference `casbak.references` describes, but TENANT@REF.

        A manifest file name or path also works, so paths returned by the
        Python API can be handed back.
        """
        if reference.endswith((".json", ".snap")):
            by_name = snapshot_id_from_key(MANIFEST_PREFIX + Path(reference).name)
            if by_name is not None:
                reference = by_name
        parsed = parse_reference(reference, now or utc_now())
        if parsed.tenant is not None:
            raise InputError(
                f"{reference!r} names a version of tenant {parsed.tenant!r}; "
                "this needs a snapshot (drop the 'TENANT@' part)"
            )
        return self.ask(lambda view: self.snapshot_of(view, self._holder(view, parsed)))

    def resolve_tenant(self, reference: str, now: datetime | None = None) -> TenantVersion:
        """The version of a tenant that a TENANT@REF reference names, and a newer one if any."""
        parsed = parse_reference(reference, now or utc_now())
        tenant_id = parsed.tenant
        if tenant_id is None:
            raise InputError(f"{reference!r} names no tenant: write TENANT@{reference}")

        def answer(view: CatalogView) -> TenantVersion:
            base = msgspec.structs.replace(parsed, back=0, tenant=None)
            limit = None if base.base == "latest" else self._holder(view, base)
            holders = history.holding(view, tenant_id)
            if not holders:
                raise NotFoundError(f"no snapshot holds tenant {tenant_id!r}")
            older = [
                h for h in holders if limit is None or history.is_at_or_before(h.holder, limit)
            ]
            runs = history.versions(older)
            if parsed.back >= len(runs):
                raise NotFoundError(
                    f"{reference!r}: tenant {tenant_id!r} has {count(len(runs), 'version')} "
                    f"at or before {base.text.split('@', 1)[-1] or 'latest'}"
                )
            chosen = runs[parsed.back][0]
            newest = holders[0]
            return TenantVersion(
                tenant_id,
                Digest(chosen.version.hex()),
                chosen.size,
                self.snapshot_of(view, chosen.holder),
                self.snapshot_of(view, newest.holder) if newest.version != chosen.version else None,
            )

        return self.ask(answer)

    def _holder(self, view: CatalogView, parsed: Reference) -> Holder:
        if parsed.time is not None:
            found = history.at_or_before(view, micros_of(parsed.time))
            if found is None:
                raise NotFoundError(f"no snapshot at or before {parsed.time:%Y-%m-%d %H:%M:%S} UTC")
        elif parsed.base == "latest" or parsed.base.startswith("latest:"):
            target = parsed.base.partition(":")[2] or None
            candidates = history.of_target(view, target) if target else history.newest(view, 1)
            if not candidates:
                what = f" of target {target!r}" if target else ""
                raise NotFoundError(f"no snapshot{what} in {self.backend.describe()}")
            found = candidates[0]
        else:
            found = self._by_prefix(view, parsed.base)
        if parsed.back:
            target_id = history.record(view, found).target_id
            line = history.of_target(view, target_id)
            position = next(i for i, h in enumerate(line) if h.snapshot_id == found.snapshot_id)
            if position + parsed.back >= len(line):
                earlier = len(line) - 1 - position
                raise NotFoundError(
                    f"{parsed.text!r}: target {target_id!r} has {count(earlier, 'snapshot')} "
                    f"before {found.snapshot_id.hex()[:12]}"
                )
            found = line[position + parsed.back]
        return found

    def _by_prefix(self, view: CatalogView, prefix: str) -> Holder:
        is_hex = all(c in "0123456789abcdefABCDEF" for c in prefix)
        if is_hex and len(prefix) < MIN_PREFIX:
            raise InputError(
                f"snapshot reference {prefix!r} is too short: give {MIN_PREFIX}+ hex characters"
            )
        if not is_hex:
            raise InputError(
                f"snapshot reference {prefix!r} is not an id, a prefix of {MIN_PREFIX}+ hex "
                "digits, latest, latest:TARGET or @TIME (see casbak --help)"
            )
        matches = history.with_prefix(view, prefix.lower())
        if not matches:
            raise NotFoundError(f"no snapshot matches {prefix!r}")
        if len(matches) > 1:
            raise AmbiguousError(f"{prefix!r} matches several snapshots; give more characters")
        return matches[0]
