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
   format 5 config whose ``root`` names ``encrypted/``; `Repository.open`
   follows it from then on.
3. Every other top-level file (the plain repository) is removed.

A crash before 2 leaves the plain repository: a rerun unlocks the staged copy
with the password and imports again (what is there already is skipped; a
snapshot removed from the plain repository since goes from the copy too). A
crash after 2 leaves the encrypted repository with plain leftovers, which a
rerun removes (verify warns of them). Snapshot ids change, as ids are keyed:
the result maps each old id to its new one. Objects no snapshot references
are not carried over (gc would free them).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import datetime
from typing import IO

import msgspec

from casbak.backends.base import Backend
from casbak.backends.prefixed import PrefixedBackend
from casbak.bundleids import bundle_name, manifests_of, objects_of
from casbak.defaults import DEFAULT_LOCK_TIMEOUT
from casbak.errors import FormatVersionError, IntegrityError, PasswordMissing, Refused
from casbak.ids import Digest
from casbak.keyfile import DEFAULT_KDF, Kdf
from casbak.keyservice import init_encrypted
from casbak.keystore import Password
from casbak.layout import (
    CONFIG_KEY,
    ENCRYPTED_ROOT,
    MANIFEST_PREFIX,
    is_lock_key,
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
from casbak.transfer import export_bundle, import_bundle

Progress = Callable[[int, int, int], None]
OPERATION = "migrate --encrypt"


class EncryptResult(msgspec.Struct, frozen=True):
    """What ``migrate --encrypt`` did; sizes are of the stored files before and after.

    ``snapshot_ids`` maps each plain snapshot id to its id in the encrypted
    repository (keyed). A run that finds the repository converted already
    has ``from_version`` 5 and removes what an interrupted run left
    (``leftovers_removed``); with nothing left, ``nothing_to_do``.
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
        return _finish(location, lock_timeout)
    if version != REPOSITORY_VERSION:
        raise FormatVersionError(
            f"{backend.describe()} is a format {version} repository; run 'casbak migrate' first "
            f"(to format {REPOSITORY_VERSION}), then 'casbak migrate --encrypt'"
        )
    plain = Repository.open(backend)
    if plain.version == ENCRYPTED_VERSION:  # converted since it was located: nothing to read
        return _finish(locate(backend), lock_timeout)
    # The lock re-reads the config once held (Repository.open): a migration
    # that committed while this one waited is an error, not a second start.
    with plain.locks.exclusive(OPERATION, lock_timeout) as lock:
        staging = PrefixedBackend(backend, ENCRYPTED_ROOT)
        before = _stored_bytes(backend, skip=ENCRYPTED_ROOT)
        staged = _staged_copy(plain, staging, _given(password, backend), kdf, clock)
        ids, objects = _carry_over(plain, staged, lock, progress, lock_timeout)
        staged.view(store=True)  # its catalog, built now rather than by the first reader
        lock.confirm()
        _commit(backend, staged.config)
        removed = _remove_plain_files(backend, {lock.key}, lock.refresh)
    discard_plain(plain.config.repository_id)
    after = _stored_bytes(backend)
    return EncryptResult(
        REPOSITORY_VERSION,
        ENCRYPTED_VERSION,
        len(ids),
        objects,
        before,
        after,
        snapshot_ids=ids,
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
    else:
        _check_staged_config(plain.config, staging)
    return Repository.open(staging, password=password)


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
    with tempfile.TemporaryFile() as spool:
        exported = export_bundle(plain, snapshots, spool, progress=progress)
        lock.refresh()

        def rewind() -> IO[bytes]:
            spool.seek(0)
            return spool

        ids = _new_ids(staged, rewind, {bundle_name(snap): snap.id for snap in snapshots})
        _drop_others(staged, set(ids.values()), lock_timeout, lock.refresh)
        import_bundle(staged, rewind, progress=progress, lock_timeout=lock_timeout)
    missing = set(ids.values()) - staged.manifest_keys().keys()
    if missing:
        raise IntegrityError(
            f"{len(missing)} snapshots are not in the encrypted copy after the import "
            f"(e.g. {min(missing)}); nothing was committed, run migrate --encrypt again"
        )
    return ids, exported.objects


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
    """Every top-level key but the config, the encrypted folder and ``keep``."""
    return [
        key
        for key in backend.list_names("")
        if key != CONFIG_KEY and not key.startswith(ENCRYPTED_ROOT) and key not in keep
    ]


def _remove_plain_files(backend: Backend, keep: set[str], keepalive: Callable[[], None]) -> int:
    """Remove the plain repository's files (`_plain_files`); how many there were.

    Lock records of others go too: after the commit, a command that waited
    on the plain repository's lock gives up once it has it (its config changed).
    """
    removed = delete_keys(backend, _plain_files(backend, keep), keepalive)
    backend.sync()
    return removed


def _finish(location: Location, lock_timeout: float) -> EncryptResult:
    """An encrypted repository: remove what a converting run left, if anything.

    No password is needed: nothing here reads or writes a sealed file.
    """
    snapshots = sum(
        1
        for key in location.backend.list_names(MANIFEST_PREFIX)
        if snapshot_id_from_key(key, ENCRYPTED_VERSION) is not None
    )
    before = _stored_bytes(location.top)
    removed = 0
    if location.rooted:
        if _plain_files(location.top, set()):
            # So that two finishing runs do not both report the same files.
            with LockManager(location.backend).exclusive(OPERATION, lock_timeout) as lock:
                removed = _remove_plain_files(location.top, set(), lock.refresh)
        discard_plain(location.config.repository_id)
    after = _stored_bytes(location.top)
    return EncryptResult(
        ENCRYPTED_VERSION,
        ENCRYPTED_VERSION,
        snapshots,
        0,
        before,
        after,
        leftovers_removed=removed,
        nothing_to_do=removed == 0,
    )


def _stored_bytes(backend: Backend, skip: str | None = None) -> int:
    """Bytes of every stored file (lock records aside), but those under ``skip``."""
    total = 0
    for info in backend.list(""):
        if skip is not None and info.key.startswith(skip):
            continue
        if is_lock_key(info.key.removeprefix(ENCRYPTED_ROOT)):
            continue
        total += info.size
    return total
