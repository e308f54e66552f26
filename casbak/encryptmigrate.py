"""migrate --encrypt: turn a plain repository (format 4) into an encrypted one (format 5).

The sealed files cannot go beside the plain ones: plain readers take no lock,
and would call every sealed index file or manifest damage. So, under the
plain repository's exclusive lock:

1. A complete encrypted repository is built in the folder ``encrypted/`` of
   the same location (a `PrefixedBackend`): its config (format 5, the plain
   repository's id, so its key slot is bound to the same id) and first key
   slot, then every snapshot, carried over as a plain bundle spooled to a
   temporary file (`transfer.export_bundle`, then `transfer.import_bundle`,
   which computes the keyed ids). Plain readers see that folder as one
   warning; the plain repository stays whole and in use.
2. The commit: the top-level ``config`` is replaced (one atomic write) by a
   pointer config (format 6) whose ``root`` names ``encrypted/``;
   `Repository.open` follows it from then on.
3. The files of the plain layout at the top level are removed: manifests
   first (deepest delta first), then the catalog and index files, then the
   rest. Any other file there is not casbak's and stays.

A crash before 2 leaves the plain repository: a rerun unlocks the staged copy
with the password and imports again (what is there already is skipped; a
snapshot removed from the plain repository since goes from the copy too). A
crash after 2 leaves the encrypted repository with plain leftovers, which a
rerun removes (verify warns of them). Before removing them, every plain
snapshot still at the top level is carried over (import skips those there
already): a casbak older than the config re-read of every lock, which waited
on this command's lock with the plain repository open, writes its snapshot
there once the lock is free, and it must not be lost. Manifests go first so
that a plain manifest left by a crash always reads (its parent and objects
are still there). Snapshot ids change, as ids are keyed: the result maps each
old id to its new one. Objects no snapshot references are not carried over
(gc would free them).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import datetime
from itertools import groupby
from typing import IO

import msgspec

from casbak.backends.base import Backend
from casbak.backends.local import LocalBackend
from casbak.backends.prefixed import PrefixedBackend
from casbak.bundleids import bundle_name, manifests_of, objects_of
from casbak.defaults import DEFAULT_LOCK_TIMEOUT
from casbak.errors import (
    FormatVersionError,
    IntegrityError,
    PasswordMissing,
    Refused,
    TempSpaceError,
    WrongPassword,
)
from casbak.ids import Digest
from casbak.keyfile import DEFAULT_KDF, Kdf
from casbak.keyservice import init_encrypted
from casbak.keystore import Password
from casbak.layout import (
    CATALOG_JOURNAL_PREFIX,
    CATALOG_PART_PREFIX,
    CATALOG_PREFIX,
    CONFIG_KEY,
    DICTIONARY_PREFIX,
    ENCRYPTED_ROOT,
    INDEX_PREFIX,
    LOCK_PREFIX,
    MANIFEST_PREFIX,
    PACK_PREFIX,
    belongs_to_layout,
    is_lock_key,
    is_plain_leftover,
    snapshot_id_from_key,
)
from casbak.locks import Lock, LockManager
from casbak.model import (
    ENCRYPTED_VERSION,
    POINTER_VERSION,
    REPOSITORY_VERSION,
    RepositoryConfig,
    decode_config,
    encode_config,
    utc_now,
)
from casbak.objects import delete_keys
from casbak.rawcache import discard_plain
from casbak.repository import Location, Repository, locate
from casbak.timeline import Snapshot
from casbak.transfer import export_bundle, import_bundle

Progress = Callable[[int, int, int], None]
OPERATION = "migrate --encrypt"


class EncryptResult(msgspec.Struct, frozen=True):
    """What ``migrate --encrypt`` did; sizes are of the stored files before and after.

    ``snapshot_ids`` maps each plain snapshot id to its id in the encrypted
    repository (keyed). A run that finds the repository converted already
    has ``from_version`` 5: it carries over any plain snapshot still at the
    top level (``snapshot_ids``), then removes the files of the plain layout
    there (``leftovers_removed``, how many); with neither, ``nothing_to_do``.
    """

    from_version: int
    to_version: int
    snapshots: int
    objects: int
    bytes_before: int
    bytes_after: int
    encrypted: bool = True
    snapshot_ids: dict[str, str] = msgspec.field(default_factory=dict)
    leftovers_removed: int = 0
    nothing_to_do: bool = False


def migrate_encrypt(
    backend: Backend,
    password: Password,
    *,
    kdf: Kdf = DEFAULT_KDF,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> EncryptResult:
    """Convert the plain repository at ``backend`` to an encrypted one, or finish doing so.

    ``password`` (or a function giving it, called only for a plain
    repository) opens the staged copy a previous run left, or becomes the
    first key slot's. Formats 1-3 are refused: 'casbak migrate' first.
    """
    location = locate(backend)
    version = location.config.version
    if version == ENCRYPTED_VERSION:
        return _finish(location, password, lock_timeout, progress)
    if version != REPOSITORY_VERSION:
        raise FormatVersionError(
            f"{backend.describe()} is a format {version} repository; run 'casbak migrate' first "
            f"(to format {REPOSITORY_VERSION}), then 'casbak migrate --encrypt'"
        )
    plain = Repository.open(backend)
    if plain.version == ENCRYPTED_VERSION:  # converted since it was located: nothing to read
        return _finish(locate(backend), password, lock_timeout, progress)
    # The lock re-reads the config once held (Repository.open): a migration
    # that committed while this one waited is an error, not a second start.
    with plain.locks.exclusive(OPERATION, lock_timeout) as lock:
        staging = PrefixedBackend(backend, ENCRYPTED_ROOT)
        before = _stored_bytes(backend, skip=ENCRYPTED_ROOT)
        staged = _staged_copy(plain, staging, _given(password, backend), kdf, clock)
        ids, objects = _carry_over(plain, staged, lock, progress, lock_timeout)
        staged.view(store=True)  # its catalog, built now rather than by the first reader
        lock.refresh()
        lock.confirm()
        _commit(backend, staged.config)
        late, late_objects = _carry_late(plain, staged, set(ids), lock, progress, lock_timeout)
        removed = _remove_plain_files(plain, lock)
    _prune(backend, (LOCK_PREFIX,), temporary=False)  # emptied only once the lock went
    discard_plain(plain.config.repository_id)
    after = _stored_bytes(backend)
    return EncryptResult(
        REPOSITORY_VERSION,
        ENCRYPTED_VERSION,
        len(ids) + len(late),
        objects + late_objects,
        before,
        after,
        snapshot_ids=ids | late,
        leftovers_removed=removed,
    )


def _given(password: Password, backend: Backend) -> str:
    given = password() if callable(password) else password
    if given is None:
        raise PasswordMissing(
            f"migrate --encrypt of {backend.describe()} needs a password "
            "(--password-file, CASBAK_PASSWORD or CASBAK_PASSWORD_COMMAND)"
        )
    return given


def _staged_copy(
    plain: Repository, staging: Backend, password: str, kdf: Kdf, clock: Callable[[], datetime]
) -> Repository:
    """The encrypted repository under ``encrypted/``: made now, or the one a previous run made.

    Without a config there, whatever is there is a previous run's that died
    before writing it: its key slot may wrap a master key no config goes with
    (and that the same password would open), so all of it goes first.
    """
    if staging.stat(CONFIG_KEY) is None:
        delete_keys(staging, list(staging.list_names("")))
        staging.sync()
        init_encrypted(
            staging,
            password,
            retention_days=plain.config.retention_days,
            compression_level=plain.config.compression_level,
            kdf=kdf,
            clock=clock,
            repository_id=plain.config.repository_id,
            created=plain.config.created,
        )
        return Repository.open(staging, password=password)
    _check_staged_config(plain.config, staging)
    try:
        return Repository.open(staging, password=password)
    except WrongPassword:
        raise WrongPassword(
            f"the encrypted copy in {staging.describe()} was started by an earlier "
            "migrate --encrypt with another password: give that one to continue, or delete "
            f"{ENCRYPTED_ROOT} to start over (the plain repository is whole; nothing was changed)"
        ) from None


def _check_staged_config(plain: RepositoryConfig, staging: Backend) -> None:
    what = f"{staging.describe()}/{CONFIG_KEY}"
    staged = decode_config(staging.get(CONFIG_KEY), what)
    if (
        staged.repository_id != plain.repository_id
        or staged.version != ENCRYPTED_VERSION
        or staged.root is not msgspec.UNSET
    ):
        raise Refused(
            f"{what} is not an encrypted copy of this repository (another id or format); "
            "move that folder away and run migrate --encrypt again; nothing was changed"
        )


def _carry_over(
    plain: Repository,
    staged: Repository,
    lock: Lock,
    progress: Progress | None,
    lock_timeout: float,
) -> tuple[dict[str, str], int]:
    """Every plain snapshot into the staged copy; old id to new id, and how many objects.

    The staged copy ends up with exactly the plain repository's snapshots:
    one a previous run carried over and that was removed (or retagged) from
    the plain repository since is removed from the copy.
    """
    snapshots = sorted(plain.snapshots(), key=lambda snap: (snap.header.timestamp, snap.id))
    if not snapshots:
        _drop_others(staged, set(), lock_timeout, lock.refresh)
        return {}, 0

    def drop_others(wanted: set[str]) -> None:
        _drop_others(staged, wanted, lock_timeout, lock.refresh)

    return _transfer(
        plain,
        staged,
        snapshots,
        lock,
        progress,
        lock_timeout,
        before_import=drop_others,
        failed=(
            "nothing was committed (the plain repository is whole and in use); "
            "run migrate --encrypt again to continue"
        ),
    )


def _carry_late(
    plain: Repository,
    encrypted: Repository,
    known: set[str],
    lock: Lock,
    progress: Progress | None,
    lock_timeout: float,
) -> tuple[dict[str, str], int]:
    """Every plain snapshot at the top level not in ``known`` into the encrypted repository.

    After the commit: snapshots an older casbak wrote there after waiting for
    the lock, and those a crash left before their removal (import skips
    them). Read by listing, not through the plain catalog, which may not know
    them. Old id to new of those the encrypted repository lacked, and objects.
    """
    wanted = {sid: key for sid, key in plain.manifest_keys().items() if sid not in known}
    if not wanted:
        return {}, 0
    present = encrypted.manifest_keys().keys()
    snapshots = [plain.load(sid, key) for sid, key in sorted(wanted.items())]
    snapshots.sort(key=lambda snap: (snap.header.timestamp, snap.id))
    ids, objects = _transfer(
        plain,
        encrypted,
        snapshots,
        lock,
        progress,
        lock_timeout,
        failed="the plain files stay, run migrate --encrypt again",
    )
    return {old: new for old, new in ids.items() if new not in present}, objects


def _transfer(
    plain: Repository,
    staged: Repository,
    snapshots: list[Snapshot],
    lock: Lock,
    progress: Progress | None,
    lock_timeout: float,
    *,
    failed: str,
    before_import: Callable[[set[str]], None] | None = None,
) -> tuple[dict[str, str], int]:
    """``snapshots`` of ``plain`` into ``staged`` by a spooled bundle; old id to new, objects.

    The plain repository's lock is refreshed all along (reading each object,
    and each read of the bundle: the import's check, the id translation,
    the import itself): a conversion takes longer than a lock's stale time,
    and another writer must not take it for a dead one's.
    """
    try:
        with _spool() as spool:
            exported = export_bundle(plain, snapshots, spool, progress=_kept_alive(progress, lock))
            lock.refresh()

            def rewind() -> IO[bytes]:
                spool.seek(0)
                return _KeptAlive(spool, lock.refresh)  # type: ignore[return-value]

            ids = _new_ids(staged, rewind, {bundle_name(snap): snap.id for snap in snapshots})
            if before_import is not None:
                before_import(set(ids.values()))
            import_bundle(
                staged, rewind, progress=_kept_alive(progress, lock), lock_timeout=lock_timeout
            )
    except OSError as exc:
        # The backends word their own errors (BackendError): a bare OSError
        # here is the temporary folder's, where the bundle is spooled.
        raise TempSpaceError(
            f"cannot spool the snapshots' bundle in the temporary folder "
            f"{tempfile.gettempdir()}: {exc.strerror or exc}; free space there or set TMPDIR "
            f"to a folder with room for an 'export --all' of the repository; {failed}"
        ) from None
    missing = set(ids.values()) - staged.manifest_keys().keys()
    if missing:
        raise IntegrityError(
            f"{len(missing)} snapshots are not in the encrypted copy after the import "
            f"(e.g. {min(missing)}); {failed}"
        )
    return ids, exported.objects


def _spool() -> IO[bytes]:
    """A temporary file for the bundle (in the temporary folder: TMPDIR chooses it)."""
    return tempfile.TemporaryFile()


def _kept_alive(progress: Progress | None, lock: Lock) -> Progress:
    def each(done: int, total: int, size: int) -> None:
        lock.refresh()
        if progress is not None:
            progress(done, total, size)

    return each


class _KeptAlive:
    """A stream that refreshes a lock (throttled by `Lock.refresh`) on every read."""

    def __init__(self, stream: IO[bytes], keepalive: Callable[[], None]) -> None:
        self._stream = stream
        self._keepalive = keepalive

    def read(self, size: int = -1) -> bytes:
        self._keepalive()
        return self._stream.read(size)


def _new_ids(
    staged: Repository, rewind: Callable[[], IO[bytes]], plain_ids: dict[str, Digest]
) -> dict[str, str]:
    """Each snapshot's plain id with the keyed id it gets in the staged copy."""
    keyed: dict[Digest, Digest] = {}
    for _ in objects_of(staged, rewind, keyed):
        pass
    return {plain_ids[item.name]: item.id for item in manifests_of(staged, rewind, keyed)}


def _drop_others(
    staged: Repository, wanted: set[str], lock_timeout: float, keepalive: Callable[[], None]
) -> None:
    # Taken even with nothing to remove: it clears the lock records a crashed
    # run left in the copy, which no shared lock would.
    with staged.locks.exclusive(OPERATION, lock_timeout):
        others = [key for sid, key in staged.manifest_keys().items() if sid not in wanted]
        if others:
            staged.delete_snapshots(others, keepalive)


def _commit(backend: Backend, staged: RepositoryConfig) -> None:
    """The single commit point: the top-level config now says the files live in the copy."""
    top = msgspec.structs.replace(staged, version=POINTER_VERSION, root=ENCRYPTED_ROOT)
    backend.put(CONFIG_KEY, encode_config(top), overwrite=True)
    backend.sync()


def _plain_files(backend: Backend, keep: set[str]) -> list[str]:
    """The top-level keys of the plain layout (`is_plain_leftover`) but ``keep``."""
    return [key for key in backend.list_names("") if is_plain_leftover(key) and key not in keep]


def _remove_plain_files(plain: Repository, lock: Lock) -> int:
    """Remove the plain repository's files (`_plain_files`); how many there were.

    Manifests first, each depth of deltas before the one above, so that one
    left by a crash still reads for the rerun to carry over; index files
    before packs, so that an older casbak writing after a crash reuses no
    object whose pack is gone. Lock records of others go too: after the
    commit, a command that waited on the plain repository's lock gives up
    once it has it (its config changed). Empty folders of the layout go last
    (a local folder only).
    """
    top = plain.backend
    keep = {lock.key}
    depths = {}
    for sid, key in plain.manifest_keys().items():
        depths[key] = plain.load(sid, key).header.depth
        lock.refresh()
    removed = 0
    for _, same_depth in groupby(sorted(depths, key=depths.__getitem__, reverse=True), depths.get):
        removed += delete_keys(top, list(same_depth), lock.refresh)
        top.sync()
    indexes = [key for key in _plain_files(top, keep) if key.startswith(_INDEXES)]
    removed += delete_keys(top, indexes, lock.refresh)
    top.sync()
    removed += delete_keys(top, _plain_files(top, keep), lock.refresh)
    top.sync()
    _prune(top, _PLAIN_FOLDERS, temporary=True)
    return removed


_INDEXES = (CATALOG_PREFIX, INDEX_PREFIX)
"""What says which objects and snapshots there are, removed before what they name."""
_PLAIN_FOLDERS = (
    *(f"{PACK_PREFIX}{high}{low}/" for high in "0123456789abcdef" for low in "0123456789abcdef"),
    PACK_PREFIX,
    INDEX_PREFIX,
    DICTIONARY_PREFIX,
    MANIFEST_PREFIX,
    CATALOG_JOURNAL_PREFIX,
    CATALOG_PART_PREFIX,
    CATALOG_PREFIX,
    LOCK_PREFIX,
)
"""Every folder of the plain layout, deepest first."""


def _prune(backend: Backend, folders: tuple[str, ...], *, temporary: bool) -> None:
    """Empty folders of the plain layout at a local top level go (object storage has none)."""
    if isinstance(backend, LocalBackend):
        backend.prune(folders, temporary=temporary)
        backend.sync()


def _plain_view(location: Location) -> tuple[Repository, LockManager]:
    """The plain repository's files at the top level of a converted one, and its locks.

    Its config is the one the plain repository had (the encrypted one kept
    its id, creation time and settings). Its lock is the one an older casbak
    takes there, re-reading the config once held.
    """
    config = msgspec.structs.replace(
        location.top_config,
        version=REPOSITORY_VERSION,
        encryption=msgspec.UNSET,
        root=msgspec.UNSET,
    )
    plain = Repository(location.top, config, watch_config=False)
    return plain, LockManager(location.top, on_acquire=location.check_unchanged)


def _finish(
    location: Location, password: Password, lock_timeout: float, progress: Progress | None
) -> EncryptResult:
    """An encrypted repository: finish what a converting run left, if anything.

    A plain snapshot still at the top level is carried over first (that needs
    the password); then the plain files are removed (that does not).
    """
    top = location.top
    before = _stored_bytes(top)
    ids: dict[str, str] = {}
    objects = removed = 0
    if location.rooted and _plain_files(top, set()):
        plain, locks = _plain_view(location)
        # Taken where an older casbak would: none writes there meanwhile, and
        # two finishing runs do not both report the same files.
        with locks.exclusive(OPERATION, lock_timeout) as lock:
            if plain.manifest_keys():
                encrypted = Repository.open(top, password=lambda: _given(password, top))
                ids, objects = _carry_late(plain, encrypted, set(), lock, progress, lock_timeout)
            removed = _remove_plain_files(plain, lock)
    if location.rooted:
        _prune(top, _PLAIN_FOLDERS, temporary=False)
        discard_plain(location.config.repository_id)
    snapshots = sum(
        1
        for key in location.backend.list_names(MANIFEST_PREFIX)
        if snapshot_id_from_key(key, ENCRYPTED_VERSION) is not None
    )
    after = _stored_bytes(top)
    return EncryptResult(
        ENCRYPTED_VERSION,
        ENCRYPTED_VERSION,
        snapshots,
        objects,
        before,
        after,
        snapshot_ids=ids,
        leftovers_removed=removed,
        nothing_to_do=removed == 0 and not ids,
    )


def _stored_bytes(backend: Backend, skip: str | None = None) -> int:
    """Bytes of the repository's files at ``backend`` (lock records aside), but under ``skip``.

    The plain layout's at the top level, the encrypted one's under its root;
    files that are not casbak's do not count.
    """
    total = 0
    for info in backend.list(""):
        if skip is not None and info.key.startswith(skip):
            continue
        inner = info.key.removeprefix(ENCRYPTED_ROOT)
        version = ENCRYPTED_VERSION if inner != info.key else REPOSITORY_VERSION
        if is_lock_key(inner) or not belongs_to_layout(inner, version):
            continue
        total += info.size
    return total
