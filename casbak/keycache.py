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
one with looser permissions, another owner or an expiry past is ignored (and
removed when expired). The file names the key slot that unlocked it; a
command checks the slot still exists, so ``casbak key remove`` of that slot
also ends what was remembered through it.
"""

from __future__ import annotations

import base64
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from casbak.outfiles import atomic_file

CACHE_VERSION = 1
KEY_CACHE_ENV = "CASBAK_KEY_CACHE_DIR"


class RememberedKey(msgspec.Struct, frozen=True):
    """One repository's remembered master key (``key`` is base64)."""

    version: int
    repository: str
    slot: str
    expires: datetime
    key: str

    @property
    def master_key(self) -> bytes:
        return base64.b64decode(self.key)


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
        return self.folder / f"{repository_id}.key"

    def remember(
        self, repository_id: str, slot_id: str, master_key: bytes, expires: datetime
    ) -> Path:
        """Keep ``master_key`` until ``expires``; returns the file written."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.folder, 0o700)  # mkdir's mode yields to the umask; this does not
        entry = RememberedKey(
            CACHE_VERSION,
            repository_id,
            slot_id,
            expires.astimezone(UTC),
            base64.b64encode(master_key).decode("ascii"),
        )
        path = self.path(repository_id)
        with atomic_file(path, durable=False) as handle:
            handle.write(msgspec.json.encode(entry))
        return path

    def recall(self, repository_id: str) -> RememberedKey | None:
        """The remembered key of a repository, if one is there, private and not expired."""
        path = self.path(repository_id)
        try:
            info = path.stat()
            if not _private(info) or not _private(self.folder.stat()):
                return None
            entry = msgspec.json.decode(path.read_bytes(), type=RememberedKey)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return None
        if entry.version != CACHE_VERSION or entry.repository != repository_id:
            return None
        if entry.expires <= self._current():
            self.forget(repository_id)
            return None
        try:
            if len(entry.master_key) != 64:
                return None
        except ValueError:
            return None
        return entry

    def forget(self, repository_id: str) -> bool:
        """Remove a repository's remembered key; whether there was one."""
        try:
            self.path(repository_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def _current(self) -> datetime:
        return self._now if self._now is not None else datetime.now(UTC)


def _private(info: os.stat_result) -> bool:
    """Owned by this user and unreadable by anyone else: otherwise not trusted."""
    owner_only = stat.S_IMODE(info.st_mode) & 0o077 == 0
    return owner_only and (not hasattr(os, "getuid") or info.st_uid == os.getuid())
