"""migrate: turn a format 1 repository into format 2 in place, ids unchanged.

Under the exclusive lock: every object is read (and so verified) and stored
into packs, each new version compressed against its tenant's previous one;
every manifest is stored in format 2 under the same snapshot id. Only when
all of that is durable is the config rewritten to version 2, the single
commit point; the format 1 files are removed after it. A crash before the
commit leaves a format 1 repository (plus files a rerun reuses); a crash
after it leaves a format 2 repository whose leftovers a rerun removes.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from casbak.errors import ObjectMissing
from casbak.ids import Digest
from casbak.locks import DEFAULT_LOCK_TIMEOUT
from casbak.model import encode_config, encode_manifest
from casbak.names import MANIFEST_PREFIX, snapshot_id_from_key
from casbak.objects import OBJECT_PREFIX, ObjectStore
from casbak.packs import PackStore
from casbak.repository import CONFIG_KEY, Repository

Progress = Callable[[int, int, int], None]


class MigrateResult(msgspec.Struct, frozen=True):
    """What a migration did; sizes are of the stored files before and after."""

    from_version: int
    to_version: int
    snapshots: int
    objects: int
    bytes_before: int
    bytes_after: int


def _stored_bytes(repo: Repository) -> int:
    return sum(
        info.size
        for prefix in ("objects/", "packs/", "index/", "dicts/", MANIFEST_PREFIX)
        for info in repo.backend.list(prefix)
    )


def migrate(
    repo: Repository,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    progress: Progress | None = None,
) -> MigrateResult:
    """Migrate ``repo`` to format 2; on a format 2 repository, finish an interrupted run."""
    with repo.locks.exclusive("migrate", lock_timeout) as lock:
        before = _stored_bytes(repo)
        if repo.version == 1:
            snapshots, objects = _copy_to_format_2(repo, lock.refresh, progress)
            config = msgspec.structs.replace(repo.config, version=2)
            repo.backend.put(CONFIG_KEY, encode_config(config), overwrite=True)
            repo.backend.sync()
        else:
            snapshots, objects = len(repo.manifest_keys()), 0
        _remove_format_1_files(repo, lock.refresh)
        after = _stored_bytes(repo)
    return MigrateResult(1, 2, snapshots, objects, before, after)


def _copy_to_format_2(
    repo: Repository, keepalive: Callable[[], None], progress: Progress | None
) -> tuple[int, int]:
    old_objects = repo.objects
    assert isinstance(old_objects, ObjectStore)
    new = Repository(repo.backend, msgspec.structs.replace(repo.config, version=2))
    packs = new.objects
    assert isinstance(packs, PackStore)
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
    for snap in snapshots:
        new.write_manifest_bytes(snap.id, encode_manifest(snap.manifest), snap.manifest)
        keepalive()
    return len(snapshots), len(done)


def _remove_format_1_files(repo: Repository, keepalive: Callable[[], None]) -> None:
    leftovers = [info.key for info in repo.backend.list(OBJECT_PREFIX)]
    leftovers += [
        info.key
        for info in repo.backend.list(MANIFEST_PREFIX)
        if snapshot_id_from_key(info.key, 1) is not None
    ]
    for key in leftovers:
        try:
            repo.backend.delete(key)
        except ObjectMissing:
            pass
        keepalive()
    repo.backend.sync()
