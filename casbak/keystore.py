"""The key slots of an encrypted repository in its storage, and unlocking with a password.

Each slot is its own file ``keys/<slot id>.json`` (`casbak.keyfile`), so adding
a slot writes one file and removing one deletes one; no file is ever rewritten
in place, and a crash leaves every slot that was there or was being added.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from casbak.backends.base import Backend
from casbak.errors import CasbakError, InputError, ObjectMissing, PasswordMissing
from casbak.keyfile import KeySlot, decode_slot, encode_slot, unlock, unwrap
from casbak.layout import KEY_PREFIX, key_slot_key, slot_id_from_key
from casbak.model import RepositoryConfig
from casbak.sealer import Sealer

Unwrap = Callable[[KeySlot, str, str], bytes | None]
Password = str | Callable[[], str] | None
"""A password, or where to get one only when it is needed (a prompt, a file)."""


class RememberedKeys(Protocol):
    """Master keys remembered outside the repository (`casbak.keycache.KeyCache`)."""

    def remembered(self, repository_id: str) -> tuple[str, bytes] | None:
        """The (slot id, master key) remembered for a repository, or None."""

    def forget(self, repository_id: str) -> bool:
        """Drop what is remembered for a repository."""


class SlotFiles:
    """What the ``keys/`` folder holds: readable slots, and files that are not."""

    def __init__(self, slots: list[KeySlot], damaged: dict[str, str]) -> None:
        self.slots = slots
        self.damaged = damaged
        """Key of each file that is not a readable slot, with why."""


def read_slots(backend: Backend) -> SlotFiles:
    """Every slot, in slot id order; a damaged file is set aside, not fatal (others may open)."""
    slots: list[KeySlot] = []
    damaged: dict[str, str] = {}
    for key in backend.list_names(KEY_PREFIX):
        slot_id = slot_id_from_key(key)
        if slot_id is None:
            damaged[key] = "not a key slot's name"
            continue
        try:
            slot = decode_slot(backend.get(key), key)
        except ObjectMissing:
            continue  # removed since the listing
        except CasbakError as exc:
            damaged[key] = str(exc)
            continue
        if slot.id != slot_id:
            damaged[key] = f"holds slot {slot.id}"
            continue
        slots.append(slot)
    return SlotFiles(slots, damaged)


def write_slot(backend: Backend, slot: KeySlot) -> None:
    """Store a new slot durably (create-only: slot ids are random)."""
    backend.put(key_slot_key(slot.id), encode_slot(slot))
    backend.sync()


def delete_slot(backend: Backend, slot_id: str) -> None:
    """Remove a slot durably."""
    backend.delete(key_slot_key(slot_id))
    backend.sync()


def unlock_repository(
    backend: Backend, config: RepositoryConfig, password: str, unwrap_slot: Unwrap = unwrap
) -> tuple[KeySlot, bytes]:
    """The slot the password opens and the master key; WrongPassword if none does."""
    if config.version < 5:
        raise InputError(
            f"{backend.describe()} is not an encrypted repository "
            "(create one with 'casbak init --encrypt')"
        )
    return unlock(read_slots(backend).slots, password, config.repository_id, unwrap_slot)


def open_sealer(
    backend: Backend,
    config: RepositoryConfig,
    password: Password,
    remembered: RememberedKeys | None = None,
) -> Sealer:
    """The sealer of an encrypted repository, its master key unlocked by ``password``.

    ``password`` may be a function, asked only now that a password is known
    to be needed (a plain repository never prompts); None is PasswordMissing.
    ``remembered`` may give a remembered master key instead: used only while
    the slot that unlocked it still exists, so removing a slot ends (and
    deletes) what it unlocked.
    """
    found = remembered.remembered(config.repository_id) if remembered is not None else None
    if found is not None and remembered is not None:
        slot_id, master = found
        if backend.stat(key_slot_key(slot_id)) is not None:
            return Sealer(master)
        remembered.forget(config.repository_id)
    given = password() if callable(password) else password
    if given is None:
        raise PasswordMissing(
            f"{backend.describe()} is an encrypted repository: give its password "
            "(--password-file, CASBAK_PASSWORD or CASBAK_PASSWORD_COMMAND)"
        )
    _slot, master = unlock_repository(backend, config, given)
    return Sealer(master)
