"""Use cases: take a snapshot, get tenants back, count (comparing is in snapshotdiff).

Each function takes an open Repository and returns a result Struct that the
CLI renders as text or JSON and the Python API hands to callers.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, BinaryIO

import msgspec

from casbak.canonical import pretty
from casbak.defaults import DEFAULT_LOCK_TIMEOUT
from casbak.errors import (
    BackendError,
    CasbakError,
    InputError,
    IntegrityError,
    ObjectMissing,
    StaleCache,
    UsageError,
)
from casbak.ids import Digest
from casbak.layout import DICTIONARY_PREFIX, INDEX_PREFIX, MANIFEST_PREFIX, PACK_PREFIX
from casbak.model import Manifest, ManifestEntry, provenance_field, utc_now
from casbak.rawcache import RawCache
from casbak.repository import Repository, Snapshot
from casbak.snapshotplan import SnapshotPreview, preview, unchanged_snapshot
from casbak.snapshotsummary import SnapshotSummary
from casbak.sources import STDIN, TenantDocument, read_sources
from casbak.tenanthistory import pick

ALL_TENANTS = "all-tenants"

Progress = Callable[[int, int, int], None]
"""``progress(done, total, bytes)`` of a long step: files read, objects stored or read."""


MAX_LABEL = 256


class SnapshotResult(msgspec.Struct, frozen=True):
    """What a snapshot stored; when ``skipped``, the existing snapshot that already holds it all."""

    snapshot: SnapshotSummary
    path: str
    new_objects: int
    reused_objects: int
    bytes_added: int
    logical_bytes: int
    skipped: bool = False


def take_snapshot(
    repo: Repository,
    documents: Sequence[TenantDocument],
    *,
    operation: str = "manual",
    target_id: str | None = None,
    description: str = "",
    tags: Sequence[str] = (),
    meta: Mapping[str, str] | None = None,
    skip_if_unchanged: bool = False,
    clock: Callable[[], datetime] = utc_now,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    progress: Progress | None = None,
) -> SnapshotResult:
    """Store documents (each once) and then the manifest that names them.

    All objects are durable before the manifest is written, under a shared lock
    that keeps gc from sweeping objects this snapshot is about to reference.
    The manifest records its provenance (`collect_provenance`), with ``meta``
    as ``meta.KEY``. With ``skip_if_unchanged``, nothing is written when the
    target's newest snapshot holds exactly these tenants at these versions:
    the result names that snapshot and says ``skipped``. ``progress`` counts
    the new objects as they are compressed and written.
    """
    target_id = target_of(documents, target_id)
    _check_label("operation", operation)
    _check_label("target", target_id)
    for tag in tags:
        _check_label("tag", tag)
    from casbak.provenance import collect_provenance  # its imports cost every other command

    provenance = collect_provenance(meta)
    if skip_if_unchanged:
        existing = unchanged_snapshot(repo, target_id, documents)
        if existing is not None:
            return _skipped(repo, existing, documents)
    with repo.locks.shared(operation, lock_timeout) as lock:
        new_objects, bytes_added = _store_objects(
            repo, documents, target_id, _Counting(lock.refresh, progress)
        )
        lock.confirm()
        manifest = Manifest(
            description=description,
            entries={doc.tenant_id: ManifestEntry(doc.digest, doc.size) for doc in documents},
            operation=operation,
            tags=sorted(set(tags)),
            target_id=target_id,
            timestamp=clock(),
            provenance=provenance_field(provenance),
        )
        snapshot = repo.write_manifest(manifest)
    return SnapshotResult(
        snapshot=SnapshotSummary.of(snapshot),
        path=f"{repo.backend.describe()}/{snapshot.key}",
        new_objects=new_objects,
        reused_objects=len({doc.digest for doc in documents}) - new_objects,
        bytes_added=bytes_added,
        logical_bytes=sum(doc.size for doc in documents),
    )


def _store_objects(
    repo: Repository,
    documents: Sequence[TenantDocument],
    target_id: str,
    keepalive: _Counting,
) -> tuple[int, int]:
    """Make every document durable (each once); how many objects and bytes were new."""
    repo.objects.refresh()  # what another process stored or removed since
    unique = {doc.digest: doc.canonical for doc in documents}
    vouched = [digest for digest, canonical in unique.items() if canonical is None]
    if vouched and not _all_stored(repo, vouched):
        raise StaleCache("a cached document is no longer stored")
    packs = repo.objects
    keepalive.total = len(unique) - len(packs.locate_many(unique))
    bases = _earlier_versions(repo, target_id, documents) if keepalive.total else {}
    stored = packs.store(unique, bases, keepalive)
    repo.backend.sync()
    return stored.new_objects, stored.bytes_added


class _Counting:
    """A writer's keepalive, called once per new object, that also reports progress."""

    def __init__(self, keepalive: Callable[[], None], progress: Progress | None) -> None:
        self.keepalive, self.progress = keepalive, progress
        self.done = self.total = 0

    def __call__(self) -> None:
        self.keepalive()
        self.done += 1
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total, 0)


def target_of(documents: Sequence[TenantDocument], target_id: str | None) -> str:
    """The target a snapshot is of: as given, else the one tenant's id, else all-tenants."""
    if target_id is not None:
        return target_id
    return documents[0].tenant_id if len(documents) == 1 else ALL_TENANTS


def _skipped(
    repo: Repository, existing: Snapshot, documents: Sequence[TenantDocument]
) -> SnapshotResult:
    return SnapshotResult(
        snapshot=SnapshotSummary.of(existing),
        path=f"{repo.backend.describe()}/{existing.key}",
        new_objects=0,
        reused_objects=len({doc.digest for doc in documents}),
        bytes_added=0,
        logical_bytes=sum(doc.size for doc in documents),
        skipped=True,
    )


def preview_snapshot(
    repo: Repository, documents: Sequence[TenantDocument], *, target_id: str | None = None
) -> SnapshotPreview:
    """What `take_snapshot` would store, per tenant new, changed or unchanged; writes nothing."""
    target_id = target_of(documents, target_id)
    _check_label("target", target_id)
    return preview(repo, documents, target_id)


def preview_sources(
    repo: Repository,
    sources: Sequence[str],
    stdin: BinaryIO | None = None,
    *,
    use_cache: bool = True,
    target_id: str | None = None,
    recursive: bool = False,
    ids_from_names: bool = False,
    progress: Progress | None = None,
) -> SnapshotPreview:
    """`preview_snapshot` of files, folders or stdin (``progress``: files decoded).

    The raw-bytes cache may spare decoding but is not saved: what it would
    learn vouches for documents stored, and a dry run stores none.
    """
    cache = _raw_cache(repo, sources) if use_cache else None
    documents = read_sources(
        sources,
        stdin,
        cache,
        recursive=recursive,
        progress=progress,
        hasher=repo.hasher,
        ids_from_names=ids_from_names,
    )
    return preview_snapshot(repo, documents, target_id=target_id)


def snapshot_sources(
    repo: Repository,
    sources: Sequence[str],
    stdin: BinaryIO | None = None,
    *,
    use_cache: bool = True,
    recursive: bool = False,
    ids_from_names: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> SnapshotResult:
    """`take_snapshot` of files, folders or stdin, skipping the decoding of unchanged files.

    The raw-bytes cache is not used for stdin (it cannot be read twice), and
    a cache that vouches for a document no longer stored means a full re-read.
    ``progress`` counts files decoded, then objects stored.
    """
    cache = _raw_cache(repo, sources) if use_cache else None
    read: dict[str, Any] = {
        "recursive": recursive,
        "progress": progress,
        "hasher": repo.hasher,
        "ids_from_names": ids_from_names,
    }
    try:
        documents = read_sources(sources, stdin, cache, **read)
        result = take_snapshot(repo, documents, progress=progress, **options)
    except StaleCache:
        cache = None
        documents = read_sources(sources, stdin, **read)
        result = take_snapshot(repo, documents, progress=progress, **options)
    if cache is not None:
        cache.save(source_key(sources))
    return result


LONE_FILE_WITHOUT_CACHE = 1024 * 1024
"""A lone SOURCE file smaller than this is decoded, not looked up: loading and rewriting
the raw-bytes cache (every file of the last full exports) costs more than decoding it."""


def _raw_cache(repo: Repository, sources: Sequence[str]) -> RawCache | None:
    """The repository's raw-bytes cache, unless it cannot help: stdin, or one small file."""
    if STDIN in sources:
        return None
    if len(sources) == 1:
        try:
            info = os.stat(sources[0])
        except OSError:
            info = None  # reading it will say what is wrong
        small = info is not None and info.st_size < LONE_FILE_WITHOUT_CACHE
        if small and info is not None and stat.S_ISREG(info.st_mode):
            return None
    return RawCache.for_repository(repo.config.repository_id, repo.sealer)


def source_key(sources: Sequence[str]) -> str:
    """What the raw-bytes cache remembers a snapshot's sources by: their absolute paths."""
    return "\x00".join(os.path.abspath(source) for source in sources)


def _all_stored(repo: Repository, digests: list[Digest]) -> bool:
    return len(repo.objects.locate_many(digests)) == len(digests)


def _earlier_versions(
    repo: Repository, target_id: str, documents: Sequence[TenantDocument]
) -> dict[Digest, Digest]:
    """Per document, the tenant's version in the target's newest snapshot (a delta base)."""
    try:
        previous = repo.latest_of_target(target_id)
        entries = previous.manifest.entries if previous is not None else {}
    except CasbakError:
        return {}  # no base only costs space
    return {
        doc.digest: Digest(entries[doc.tenant_id].object)
        for doc in documents
        if doc.tenant_id in entries and entries[doc.tenant_id].object != doc.digest
    }


def _check_label(name: str, value: str) -> None:
    if not value or len(value) > MAX_LABEL or not value.isprintable():
        raise InputError(f"{name} must be 1 to {MAX_LABEL} printable characters, got {value!r}")


def list_snapshots(
    repo: Repository,
    *,
    target_id: str | None = None,
    operation: str | None = None,
    tag: str | None = None,
    limit: int | None = None,
) -> list[SnapshotSummary]:
    """Snapshots newest first, filtered by target, operation and tag; the newest ``limit``."""
    filtered = target_id is not None or operation is not None or tag is not None
    found = [
        SnapshotSummary.of(snap)
        for snap in repo.snapshots(None if filtered else limit)
        if (target_id is None or snap.header.target_id == target_id)
        and (operation is None or snap.header.operation == operation)
        and (tag is None or tag in snap.header.tags)
    ]
    return found if limit is None else found[:limit]


class TenantEntry(msgspec.Struct, frozen=True):
    """A tenant in `show`."""

    tenant_id: str
    object: str
    size: int


class SnapshotDetail(msgspec.Struct, frozen=True):
    """A snapshot as `show` presents it."""

    snapshot: SnapshotSummary
    tenants: list[TenantEntry]
    warnings: list[str] = []


def show_snapshot(repo: Repository, reference: str) -> SnapshotDetail:
    """Metadata and entries of one snapshot; for TENANT@REF, the snapshot and that tenant."""
    chosen = pick(repo, reference)
    return SnapshotDetail(
        SnapshotSummary.of(chosen.snapshot),
        [
            TenantEntry(tenant_id, digest, size)
            for tenant_id, (digest, size) in sorted(chosen.entries.items())
        ],
        chosen.warnings,
    )


def restore_documents(
    repo: Repository, reference: str, tenant_ids: Sequence[str] = ()
) -> tuple[Snapshot, dict[str, bytes]]:
    """The canonical bytes of the chosen tenants (all when none named), verified."""
    snapshot, documents, _ = restore_with_warnings(repo, reference, tenant_ids)
    return snapshot, documents


def restore_with_warnings(
    repo: Repository,
    reference: str,
    tenant_ids: Sequence[str] = (),
    progress: Progress | None = None,
) -> tuple[Snapshot, dict[str, bytes], list[str]]:
    """`restore_documents`, and a warning per tenant of which a newer snapshot holds another copy.

    ``reference`` may be TENANT@REF (`casbak.references`): that tenant's version.
    ``progress`` counts the objects read.
    """
    chosen = pick(repo, reference, tenant_ids)
    snapshot = chosen.snapshot
    # Read together, so a remote repository fetches them in parallel (pack by
    # pack); the first damaged one, in tenant order, is the error, named by
    # its tenant, because whoever restores thinks in tenants and needs the way out.
    found = _read_all(repo, [digest for digest, _ in chosen.entries.values()], progress)
    documents = {}
    for tenant_id, (digest, _) in chosen.entries.items():
        result = found[digest]
        if isinstance(result, BackendError) and not isinstance(result, ObjectMissing):
            raise result  # the storage failed (denied, unreachable): no damage, no repair
        if isinstance(result, CasbakError):
            raise IntegrityError(
                f"cannot restore tenant {tenant_id} of snapshot {snapshot.id[:12]}: {result}; "
                "repair it by importing a bundle that holds it (casbak import BUNDLE)"
            ) from result
        documents[tenant_id] = result
    return snapshot, documents, chosen.warnings


def _read_all(
    repo: Repository, digests: list[str], progress: Progress | None
) -> dict[Digest, bytes | CasbakError]:
    found: dict[Digest, bytes | CasbakError] = {}
    total, read = len(set(digests)), 0
    for digest, result in repo.objects.read_many(digests):
        found[digest] = result
        if progress is not None:
            read += len(result) if isinstance(result, bytes) else 0
            progress(len(found), total, read)
    return found


def render_restored(documents: dict[str, bytes]) -> bytes:
    """One JSON document for stdout: the tenant, or ``{"tenants": [...]}`` for several."""
    if len(documents) == 1:
        return pretty(next(iter(documents.values())))
    return pretty(b'{"tenants":[' + b",".join(documents.values()) + b"]}")


class RepositoryStats(msgspec.Struct, frozen=True):
    """How much the repository holds and how well it deduplicates and compresses."""

    snapshots: int
    tenants: int
    objects_stored: int
    """Distinct objects the snapshots reference (each stored once); what verify counts."""
    logical_bytes: int
    unique_bytes: int
    stored_object_bytes: int
    stored_manifest_bytes: int
    stored_bytes: int
    dedup_ratio: float
    compression_ratio: float


def repository_stats(repo: Repository, progress: Progress | None = None) -> RepositoryStats:
    """Count snapshots, tenants and bytes: as taken, as unique documents, as stored.

    ``progress`` counts the manifests read.
    """
    snapshots = repo.snapshots()
    tenants: set[str] = set()
    unique: dict[str, int] = {}
    logical = 0
    for done, snap in enumerate(snapshots, 1):
        if progress is not None:
            progress(done, len(snapshots), 0)
        for tenant_id, entry in snap.manifest.entries.items():
            tenants.add(tenant_id)
            unique[entry.object] = entry.size
            logical += entry.size
    stored_objects = sum(
        info.size
        for prefix in (PACK_PREFIX, INDEX_PREFIX, DICTIONARY_PREFIX)
        for info in repo.backend.list(prefix)
    )
    stored_manifests = sum(info.size for info in repo.backend.list(MANIFEST_PREFIX))
    unique_bytes = sum(unique.values())
    return RepositoryStats(
        snapshots=len(snapshots),
        tenants=len(tenants),
        objects_stored=len(unique),
        logical_bytes=logical,
        unique_bytes=unique_bytes,
        stored_object_bytes=stored_objects,
        stored_manifest_bytes=stored_manifests,
        stored_bytes=stored_objects + stored_manifests,
        dedup_ratio=round(logical / unique_bytes, 2) if unique_bytes else 1.0,
        compression_ratio=round(unique_bytes / stored_objects, 2) if stored_objects else 1.0,
    )


class Retagged(msgspec.Struct, frozen=True):
    """A snapshot given new tags: its old id and its new one (the same when unchanged)."""

    old: str
    new: str
    tags: list[str]
    changed: bool


def retag_snapshots(
    repo: Repository,
    references: Sequence[str],
    *,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> list[Retagged]:
    """Add and remove tags; a changed snapshot gets a new id (its tags are part of its content).

    Each new manifest is written durably before any old one is removed
    (through `Repository.delete_snapshots`, which rebases deltas of it), so a
    crash in between leaves both snapshots, each whole. The exclusive lock
    keeps a concurrent snapshot from choosing an old manifest as its delta parent.
    """
    if not references:
        raise UsageError("name at least one snapshot to tag")
    if not add and not remove:
        raise UsageError("give a tag to --add or to --remove")
    for tag in (*add, *remove):
        _check_label("tag", tag)
    both = sorted(set(add) & set(remove))
    if both:
        raise UsageError(f"tag {both[0]!r} is both added and removed")
    with repo.locks.exclusive("tag", lock_timeout) as lock:
        chosen = {snap.id: snap for snap in map(repo.resolve, references)}
        # Every manifest is read (and proven) before anything is written.
        manifests = {sid: snap.manifest for sid, snap in chosen.items()}
        results, old_keys = [], []
        for sid, manifest in manifests.items():
            tags = sorted((set(manifest.tags) | set(add)) - set(remove))
            if set(tags) == set(manifest.tags):
                results.append(Retagged(sid, sid, list(manifest.tags), False))
                continue
            new = repo.write_manifest(msgspec.structs.replace(manifest, tags=tags))
            results.append(Retagged(sid, new.id, tags, True))
            old_keys.append(chosen[sid].key)
            lock.refresh()
        repo.delete_snapshots(old_keys, lock.refresh)
    return results
