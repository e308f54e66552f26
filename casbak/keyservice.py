"""Key management use cases: create an encrypted repository, list, add, remove and change keys.

Every change unlocks first (the password proves the caller may change
keys), under the exclusive lock, so two changes never race to remove the
last slots. Nothing is changed when the password is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import msgspec

from casbak.backends.base import Backend
from casbak.defaults import DEFAULT_COMPRESSION_LEVEL, DEFAULT_LOCK_TIMEOUT, DEFAULT_RETENTION_DAYS
from casbak.errors import (
    AlreadyExists,
    AmbiguousError,
    InputError,
    NotFoundError,
    Refused,
    RepositoryExists,
    RepositoryNotFound,
)
from casbak.keycache import LONGEST, KeyCache
from casbak.keyfile import DEFAULT_KDF, Kdf, KeySlot, make_slot
from casbak.keystore import delete_slot, read_slots, unlock_repository, write_slot
from casbak.layout import CONFIG_KEY
from casbak.locks import LockManager
from casbak.model import (
    ENCRYPTED_VERSION,
    ENCRYPTION,
    FORMAT_NAME,
    RepositoryConfig,
    encode_config,
    utc_now,
)
from casbak.repository import Location, locate
from casbak.sealer import new_master_key
from casbak.tokens import random_hex

MIN_PREFIX = 4
"""Shortest slot id prefix `remove` accepts."""


class KeyInfo(msgspec.Struct, frozen=True):
    """A key slot as commands show it (never its salt or wrapped key)."""

    id: str
    label: str
    created: datetime
    kdf: str
    current: bool = False
    """Whether the password given opens this slot."""


class KeyList(msgspec.Struct, frozen=True):
    """The slots of a repository, and files in ``keys/`` that are not readable slots."""

    repository: str
    keys: list[KeyInfo]
    damaged: dict[str, str]


class KeyChange(msgspec.Struct, frozen=True):
    """What a key command changed: the slot it added and the one it removed."""

    repository: str
    added: KeyInfo | None = None
    removed: str | None = None


def _info(slot: KeySlot, current: KeySlot | None = None) -> KeyInfo:
    kdf = type(slot.kdf).__name__.lower()
    return KeyInfo(slot.id, slot.label, slot.created, kdf, current is not None and current == slot)


def encrypted_config(backend: Backend) -> RepositoryConfig:
    """The config of the encrypted repository at ``backend``; an error if it is not one."""
    return _encrypted(backend).config


def _encrypted(backend: Backend) -> Location:
    """Where the encrypted repository at ``backend`` keeps its files (its root), and its config."""
    try:
        location = locate(backend)
    except RepositoryNotFound:
        raise RepositoryNotFound(f"no casbak repository at {backend.describe()}") from None
    if location.config.version != ENCRYPTED_VERSION:
        raise InputError(
            f"{backend.describe()} is not an encrypted repository "
            "(create one with 'casbak init --encrypt', or convert it with "
            "'casbak migrate --encrypt')"
        )
    return location


def _locks(location: Location) -> LockManager:
    """The repository's locks; each, once held, re-reads the config (as every lock does)."""
    return LockManager(location.backend, on_acquire=location.check_unchanged)


def init_encrypted(
    backend: Backend,
    password: str,
    *,
    retention_days: int = DEFAULT_RETENTION_DAYS,
    compression_level: int = DEFAULT_COMPRESSION_LEVEL,
    label: str = "",
    kdf: Kdf = DEFAULT_KDF,
    clock: Callable[[], datetime] = utc_now,
    repository_id: str | None = None,
    created: datetime | None = None,
) -> tuple[RepositoryConfig, KeyInfo]:
    """Create an encrypted repository: a random master key wrapped for ``password``.

    The slot is written before the config, so a crash never leaves an
    encrypted config that no password opens; the config stays the commit point.
    ``repository_id`` and ``created`` are a plain repository's when
    ``migrate --encrypt`` makes its encrypted copy (new ones otherwise).
    """
    if backend.stat(CONFIG_KEY) is not None:
        raise RepositoryExists(f"{backend.describe()} is already a casbak repository")
    config = RepositoryConfig(
        created=created or clock(),
        format=FORMAT_NAME,
        repository_id=repository_id or random_hex(32),
        version=ENCRYPTED_VERSION,
        compression_level=compression_level,
        retention_days=retention_days,
        encryption=ENCRYPTION,
    )
    slot = make_slot(
        new_master_key(), password, config.repository_id, clock(), label=label, kdf=kdf
    )
    write_slot(backend, slot)
    try:
        backend.put(CONFIG_KEY, encode_config(config))
    except AlreadyExists:
        delete_slot(backend, slot.id)
        raise RepositoryExists(f"{backend.describe()} is already a casbak repository") from None
    backend.sync()
    return config, _info(slot, slot)


def list_keys(backend: Backend, password: str) -> KeyList:
    """Every slot, marking the one ``password`` opens (WrongPassword if none does)."""
    where = backend.describe()
    location = _encrypted(backend)
    backend, config = location.backend, location.config
    current, _master = unlock_repository(backend, config, password)
    files = read_slots(backend)
    keys = [_info(slot, current) for slot in files.slots]
    return KeyList(where, keys, files.damaged)


def add_key(
    backend: Backend,
    password: str,
    new_password: str,
    *,
    label: str = "",
    kdf: Kdf = DEFAULT_KDF,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    clock: Callable[[], datetime] = utc_now,
) -> KeyChange:
    """Add a slot for ``new_password`` wrapping the master key ``password`` unlocks."""
    where = backend.describe()
    location = _encrypted(backend)
    backend, config = location.backend, location.config
    with _locks(location).exclusive("key add", lock_timeout):
        _current, master = unlock_repository(backend, config, password)
        slot = make_slot(master, new_password, config.repository_id, clock(), label=label, kdf=kdf)
        write_slot(backend, slot)
    return KeyChange(where, added=_info(slot))


def remove_key(
    backend: Backend,
    password: str,
    slot_id: str,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> KeyChange:
    """Remove the slot ``slot_id`` (or a unique prefix of it); the last slot is never removed."""
    where = backend.describe()
    location = _encrypted(backend)
    backend, config = location.backend, location.config
    with _locks(location).exclusive("key remove", lock_timeout):
        unlock_repository(backend, config, password)
        slots = read_slots(backend).slots
        target = _find_slot(slots, slot_id)
        if len(slots) == 1:
            raise Refused(
                f"key slot {target.id} is the repository's last: without it nothing opens "
                "the repository (add another key first)"
            )
        delete_slot(backend, target.id)
    return KeyChange(where, removed=target.id)


def change_password(
    backend: Backend,
    password: str,
    new_password: str,
    *,
    kdf: Kdf = DEFAULT_KDF,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    clock: Callable[[], datetime] = utc_now,
) -> KeyChange:
    """Replace the slot ``password`` opens by one for ``new_password`` (same label).

    The new slot is durable before the old one goes: a crash in between
    leaves both passwords working, never neither.
    """
    where = backend.describe()
    location = _encrypted(backend)
    backend, config = location.backend, location.config
    with _locks(location).exclusive("key passwd", lock_timeout):
        old, master = unlock_repository(backend, config, password)
        slot = make_slot(
            master, new_password, config.repository_id, clock(), label=old.label, kdf=kdf
        )
        write_slot(backend, slot)
        delete_slot(backend, old.id)
    return KeyChange(where, added=_info(slot), removed=old.id)


def _find_slot(slots: list[KeySlot], slot_id: str) -> KeySlot:
    if len(slot_id) < MIN_PREFIX:
        raise InputError(f"key slot id {slot_id!r} is too short: give at least {MIN_PREFIX} hex")
    found = [slot for slot in slots if slot.id.startswith(slot_id.lower())]
    if not found:
        raise NotFoundError(f"no key slot {slot_id} (see 'casbak key list')")
    if len(found) > 1:
        raise AmbiguousError(f"key slot prefix {slot_id} matches {len(found)} slots")
    return found[0]


class Remembered(msgspec.Struct, frozen=True):
    """What ``key remember`` and ``key forget`` did (never the key itself)."""

    repository: str
    remembered: bool
    slot: str = ""
    expires: datetime | None = None
    file: str = ""
    removed: bool = False
    """``key forget``: whether a remembered key was there to remove."""


def remember_key(
    backend: Backend, password: str, cache: KeyCache, duration: timedelta
) -> Remembered:
    """Unlock once and keep the master key in ``cache`` for ``duration``."""
    if not timedelta(0) < duration <= LONGEST:
        raise InputError(f"a key can be remembered for more than 0 and at most {LONGEST.days} days")
    location = _encrypted(backend)
    slot, master = unlock_repository(location.backend, location.config, password)
    config = location.config
    expires = utc_now() + duration
    path = cache.remember(config.repository_id, slot.id, master, expires)
    return Remembered(config.repository_id, True, slot.id, expires, str(path))


def forget_key(backend: Backend, cache: KeyCache) -> Remembered:
    """Remove a repository's remembered key (no password needed: it only takes away)."""
    config = encrypted_config(backend)
    path = cache.path(config.repository_id)
    removed = cache.forget(config.repository_id)
    return Remembered(config.repository_id, False, file=str(path), removed=removed)
