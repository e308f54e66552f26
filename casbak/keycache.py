"""Remembered keys: an encrypted repository's master key kept for a while, outside it.

Deriving a key-encryption key from a password is slow on purpose (Argon2id,
64 MiB, about a third of a second), and a script that runs one casbak command
per tenant change pays it every time. ``casbak key remember`` unlocks once and
keeps the master key in a file of this user's for a limited time (15 minutes
unless told); commands on that repository then use it instead of a password,
as ``sudo`` remembers that its user typed one. ``casbak key forget`` removes it
at once. It is opt-in: nothing is remembered unless asked.

What the file is worth to an attacker is what a password file is worth: it
opens the repository. So it is written 0600 in a 0700 folder, by default
``$XDG_RUNTIME_DIR/casbak`` (memory only, removed at logout) where the system
has one, else ``~/.cache/casbak/keys`` (``CASBAK_KEY_CACHE_DIR`` chooses), and
one with looser permissions, another owner, an expiry past or a check value
that does not match its key is ignored (and removed, as is every expired file
in the folder whenever one is read or written). The file names the key slot
that unlocked it; a command checks the slot still exists, so ``casbak key
remove`` of that slot also ends (and deletes) what was remembered through it.
The check value (a keyed hash, under a key derived from the master key, of
what the file says) catches a damaged file before a wrong key could write
into the repository.
"""

from __future__ import annotations

import base64
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import blake3
import msgspec

from casbak.errors import InputError
from casbak.outfiles import atomic_file

CACHE_VERSION = 1
KEY_CACHE_ENV = "CASBAK_KEY_CACHE_DIR"
LONGEST = timedelta(days=30)
"""The longest a key may be remembered: long enough for a project, not forever."""
_CHECK_CONTEXT = "casbak 2026 remembered key check v1"
_SUFFIX = ".key"


class RememberedKey(msgspec.Struct, frozen=True):
    """One repository's remembered master key (``key`` is base64)."""

    version: int
    repository: str
    slot: str
    expires: datetime
    key: str
    check: str = ""
    """Hex keyed blake3 of repository, slot and expiry under a key derived from the master key."""

    @property
    def master_key(self) -> bytes:
        return base64.b64decode(self.key)


def _check(repository_id: str, slot_id: str, expires: datetime, master_key: bytes) -> str:
    key = blake3.blake3(master_key, derive_key_context=_CHECK_CONTEXT).digest()
    said = f"{repository_id}\x00{slot_id}\x00{expires.isoformat()}".encode()
    return blake3.blake3(said, key=key).hexdigest()


def key_cache_folder(environ: dict[str, str] | None = None) -> Path:
    """Where remembered keys go: ``CASBAK_KEY_CACHE_DIR``, the runtime folder, or the cache."""
    env = os.environ if environ is None else environ
    explicit = env.get(KEY_CACHE_ENV)
    if explicit:
        return Path(explicit)
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "casbak"
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "casbak" / "keys"


class KeyCache:
    """Remembered keys in one folder, one file per repository id."""

    def __init__(self, folder: Path, now: datetime | None = None) -> None:
        self.folder = folder
        self._now = now

    def path(self, repository_id: str) -> Path:
        return self.folder / f"{repository_id}{_SUFFIX}"

    def remember(
        self, repository_id: str, slot_id: str, master_key: bytes, expires: datetime
    ) -> Path:
        """Keep ``master_key`` until ``expires``; returns the file written.

        Raises InputError when the folder cannot be made private or written.
        """
        self._private_folder()
        when = expires.astimezone(UTC)
        entry = RememberedKey(
            CACHE_VERSION,
            repository_id,
            slot_id,
            when,
            base64.b64encode(master_key).decode("ascii"),
            _check(repository_id, slot_id, when, master_key),
        )
        path = self.path(repository_id)
        try:
            with atomic_file(path, durable=False) as handle:
                handle.write(msgspec.json.encode(entry))
        except OSError as exc:
            raise InputError(
                f"cannot write the remembered key in {self.folder}: {exc.strerror or exc}"
            ) from None
        self._drop_expired()
        return path

    def recall(self, repository_id: str) -> RememberedKey | None:
        """The remembered key of a repository, if one is there, private, current and whole."""
        self._drop_expired()
        path = self.path(repository_id)
        try:
            if not _private(path.stat()) or not _private(self.folder.stat()):
                return None
            stored = path.read_bytes()
        except OSError:
            return None
        try:
            entry = msgspec.json.decode(stored, type=RememberedKey)
            master = entry.master_key
        except (ValueError, msgspec.DecodeError, msgspec.ValidationError):
            self.forget(repository_id)
            return None
        if (
            entry.version != CACHE_VERSION
            or entry.repository != repository_id
            or len(master) != 64
            or entry.check != _check(entry.repository, entry.slot, entry.expires, master)
        ):
            self.forget(repository_id)  # damaged: a wrong key must never seal anything
            return None
        if entry.expires <= self._current():
            self.forget(repository_id)
            return None
        return entry

    def remembered(self, repository_id: str) -> tuple[str, bytes] | None:
        """`recall` as the (slot id, master key) that opening a repository needs."""
        entry = self.recall(repository_id)
        return None if entry is None else (entry.slot, entry.master_key)

    def forget(self, repository_id: str) -> bool:
        """Remove a repository's remembered key; whether there was one."""
        try:
            self.path(repository_id).unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise InputError(
                f"cannot remove the remembered key in {self.folder}: {exc.strerror or exc}"
            ) from None
        return True

    def _private_folder(self) -> None:
        """Create the folder 0700, or accept an existing one only if it is already private."""
        try:
            self.folder.mkdir(parents=True, mode=0o700)
            # mkdir's mode yields to the umask; a folder made here is set exactly.
            os.chmod(self.folder, 0o700)
            return
        except FileExistsError:
            pass
        except OSError as exc:
            raise InputError(f"cannot create {self.folder}: {exc.strerror or exc}") from None
        try:
            info = self.folder.stat()
        except OSError as exc:
            raise InputError(f"cannot use {self.folder}: {exc.strerror or exc}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise InputError(f"{self.folder} is not a folder (set {KEY_CACHE_ENV} to one)")
        if not _private(info):
            mode = stat.S_IMODE(info.st_mode)
            raise InputError(
                f"{self.folder} is open to others (mode {mode:o}); remembered keys go only "
                f"in a private folder: chmod 700 it or set {KEY_CACHE_ENV} to another"
            )

    def _drop_expired(self) -> None:
        """Delete every expired key file in the folder: a key should not outlive its time."""
        now = self._current()
        try:
            names = [entry for entry in os.scandir(self.folder) if entry.name.endswith(_SUFFIX)]
        except OSError:
            return
        for entry in names:
            try:
                remembered = msgspec.json.decode(Path(entry.path).read_bytes(), type=RememberedKey)
                if remembered.expires <= now:
                    os.unlink(entry.path)
            except (OSError, msgspec.DecodeError, msgspec.ValidationError):
                continue

    def _current(self) -> datetime:
        return self._now if self._now is not None else datetime.now(UTC)


def _private(info: os.stat_result) -> bool:
    """Owned by this user and unreadable by anyone else: otherwise not trusted."""
    owner_only = stat.S_IMODE(info.st_mode) & 0o077 == 0
    return owner_only and (not hasattr(os, "getuid") or info.st_uid == os.getuid())
