"""migrate: bring a repository of an older format to the current one, ids unchanged.

Under the exclusive lock. From format 1: every object is read (and so
verified) and stored into packs, each new version compressed against its
tenant's previous one; the format 1 manifests stay as they are (format 4 reads
a version 1 manifest file as a whole manifest). From format 2: every ``.snap``
manifest is rewritten as a ``.json`` file with the same content. From format
3: nothing is rewritten, as format 4 reads format 3 manifest files as they are
(they just hold no provenance); every one is read first, to be sure of that.
Only when all of that is durable is the config rewritten, the single commit
point; the old files are removed after it. A crash before the commit leaves
the old repository (plus files a rerun reuses); a crash after it leaves a
current one whose leftovers a rerun removes.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from casbak.defaults import DEFAULT_LOCK_TIMEOUT
from casbak.errors import FormatVersionError, IntegrityError, ObjectMissing
from casbak.ids import Digest
from casbak.layout import (
    CONFIG_KEY,
    DICTIONARY_PREFIX,
    INDEX_PREFIX,
    MANIFEST_PREFIX,
    OBJECT_PREFIX,
    PACK_PREFIX,
    snapshot_id_from_key,
)
from casbak.model import ENCRYPTED_VERSION, REPOSITORY_VERSION, decode_config, encode_config
from casbak.objects import ObjectStore
from casbak.repository import Repository
from casbak.storedmanifest import decode_manifest_file, decode_stored_v2, encode_stored_document

Progress = Callable[[int, int, int], None]


class MigrateResult(msgspec.Struct, frozen=True):
    """What a migration did; sizes are of the stored files before and after.

    ``damaged_manifests``: format 3 manifest files that could not be read;
    they are as damaged after the migration as before (verify names them).
    ``nothing_to_do``: the repository was current, with nothing left by an
    interrupted run; nothing was changed.
    """

    from_version: int
    to_version: int
    snapshots: int
    objects: int
    bytes_before: int
    bytes_after: int
    damaged_manifests: int = 0
    nothing_to_do: bool = False


def _stored_bytes(repo: Repository) -> int:
    return sum(
        info.size
        for prefix in (OBJECT_PREFIX, PACK_PREFIX, INDEX_PREFIX, DICTIONARY_PREFIX, MANIFEST_PREFIX)
        for info in repo.backend.list(prefix)
    )


def migrate(
    repo: Repository,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    progress: Progress | None = None,
) -> MigrateResult:
    """Migrate ``repo`` to the current format; on a current one, finish an interrupted run."""
    with repo.locks.exclusive("migrate", lock_timeout) as lock:
        before = _stored_bytes(repo)
        from_version = _current_version(repo)
        snapshots, objects, damaged = len(repo.manifest_keys()), 0, 0
        # An encrypted repository (format 5) is current: it was made so.
        current = from_version in (REPOSITORY_VERSION, ENCRYPTED_VERSION)
        if current and not _old_files(repo):
            return MigrateResult(
                from_version, from_version, snapshots, 0, before, before, nothing_to_do=True
            )
        if from_version == 1:
            snapshots, objects = _copy_objects_to_packs(repo, lock.refresh, progress)
        elif from_version == 2:
            snapshots = _rewrite_format_2_manifests(repo, lock.refresh)
        elif from_version == 3:
            damaged = _check_format_3_manifests(repo, lock.refresh)
        if from_version != REPOSITORY_VERSION:
            config = msgspec.structs.replace(repo.config, version=REPOSITORY_VERSION)
            repo.backend.put(CONFIG_KEY, encode_config(config), overwrite=True)
            repo.backend.sync()
        # Older formats have no catalog: build it now, under this lock, rather
        # than leave the first reader to read every manifest.
        # (An encrypted repository's format never changes: it stays open as it is.)
        reopened = repo if repo.sealer is not None else Repository.open(repo.backend)
        reopened.view(store=True)
        _remove_old_files(repo, lock.refresh)
        after = _stored_bytes(repo)
    return MigrateResult(
        from_version, REPOSITORY_VERSION, snapshots, objects, before, after, damaged
    )


def _current_version(repo: Repository) -> int:
    """The format as the config says now, under the lock: another migrate may have finished."""
    version = decode_config(repo.backend.get(CONFIG_KEY), CONFIG_KEY).version
    if version not in (repo.version, REPOSITORY_VERSION):
        raise FormatVersionError(
            f"{repo.backend.describe()} changed from format {repo.version} to {version} "
            "while migrate waited for its lock; run migrate again"
        )
    return version


def _check_format_3_manifests(repo: Repository, keepalive: Callable[[], None]) -> int:
    """Read every manifest file as format 4 will; how many are damaged.

    A version format 4 cannot read stops the migration before anything
    changes; a damaged file is no reason to stay at format 3, where it is
    just as damaged.
    """
    damaged = 0
    for key in repo.manifest_keys().values():
        try:
            decode_manifest_file(key, repo.backend.get(key))
        except FormatVersionError as exc:
            raise FormatVersionError(
                f"{exc}; nothing was changed (the repository stays at format 3)"
            ) from None
        except (IntegrityError, ObjectMissing):
            damaged += 1
        keepalive()
    return damaged


def _rewrite_format_2_manifests(repo: Repository, keepalive: Callable[[], None]) -> int:
    """Each ``.snap`` file again as a ``.json`` file: same fields, same parent, same id.

    A ``.json`` file left by an interrupted run whose ``.snap`` is gone (an
    older casbak removed that snapshot since) goes too, or the snapshot would
    come back without its objects.
    """
    count = 0
    names = list(repo.backend.list_names(MANIFEST_PREFIX))
    snaps = {key.removesuffix(".snap") for key in names if key.endswith(".snap")}
    for key in names:
        if key.endswith(".json") and key.removesuffix(".json") not in snaps:
            repo.backend.delete(key)
            continue
        if snapshot_id_from_key(key, 2) is None:
            continue
        document = decode_stored_v2(repo.backend.get(key), f"manifest {key}")
        new_key = key.removesuffix(".snap") + ".json"
        repo.backend.put(new_key, encode_stored_document(document), overwrite=True)
        count += 1
        keepalive()
    repo.backend.sync()
    return count


def _copy_objects_to_packs(
    repo: Repository, keepalive: Callable[[], None], progress: Progress | None
) -> tuple[int, int]:
    # Format 1's one-file-per-object store is read here and nowhere else.
    old_objects = ObjectStore(repo.backend, repo.config.compression_level)
    packs = repo.objects
    snapshots = sorted(repo.snapshots(), key=lambda snap: (snap.header.timestamp, snap.id))
    everything = [digest for digest, _ in old_objects.list()]
    done: set[Digest] = set()
    batch: dict[Digest, bytes] = {}
    bases: dict[Digest, Digest] = {}
    previous: dict[str, dict[str, str]] = {}

    def flush() -> None:
        packs.store(batch, bases, keepalive)
        batch.clear()
        bases.clear()
        if progress is not None:
            progress(len(done), len(everything), 0)

    for snap in snapshots:
        earlier = previous.get(snap.header.target_id, {})
        for tenant_id, entry in snap.manifest.entries.items():
            digest = Digest(entry.object)
            if digest in done:
                continue
            batch[digest] = old_objects.read(digest)
            done.add(digest)
            base = earlier.get(tenant_id)
            if base is not None and base != digest:
                bases[digest] = Digest(base)
        previous[snap.header.target_id] = {t: e.object for t, e in snap.manifest.entries.items()}
        flush()  # so the next snapshot's versions can be stored as deltas of these
    for digest in everything:
        if digest not in done:
            batch[digest] = old_objects.read(digest)  # unreferenced: kept, gc decides
            done.add(digest)
    flush()
    return len(snapshots), len(done)


def _old_files(repo: Repository) -> list[str]:
    """Files of older formats: all of them once migrated, or left by an interrupted run."""
    leftovers = [info.key for info in repo.backend.list(OBJECT_PREFIX)]
    leftovers += [key for key in repo.backend.list_names(MANIFEST_PREFIX) if key.endswith(".snap")]
    return leftovers


def _remove_old_files(repo: Repository, keepalive: Callable[[], None]) -> None:
    for key in _old_files(repo):
        try:
            repo.backend.delete(key)
        except ObjectMissing:
            pass
        keepalive()
    repo.backend.sync()
