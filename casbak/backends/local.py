"""A repository in a local directory.

Writes go to a temporary file in the target's own folder, are fsynced, then
renamed (or hard-linked, for create-only puts) into place; the folders touched
are fsynced by `sync`, so a crash leaves either the old state or the new one.
Files are created 0600 and folders 0700 whatever the umask: tenant documents
can hold sensitive configuration.
"""

from __future__ import annotations

import errno
import os
import re
import stat as stat_module
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from casbak.backends.base import (
    ObjectInfo,
    StorageIssue,
    validate_key,
    validate_prefix,
    validate_range,
)
from casbak.errors import AlreadyExists, BackendError, ObjectMissing
from casbak.outfiles import TEMP_PREFIX, atomic_file

DIR_MODE = 0o700
TEMP_IN_FLIGHT = 600.0
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + "[0-9a-f]{16}")
"""What `casbak.outfiles.atomic_file` names a write in progress."""
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class LocalBackend:
    """Keys are paths relative to ``root``; see `casbak.backends.base` for the contract."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirty: set[Path] = set()
        self._link_free: set[Path] = set()
        self._readable_folders: set[str] = set()
        """Key folders already checked for links: a read there skips building a Path."""

    def describe(self) -> str:
        return str(self.root)

    def now(self) -> float:
        return time.time()

    def audit(self) -> Iterator[StorageIssue]:
        """Leftover temporary files, symlinks, odd file types, loose permissions.

        Entries that vanish while they are looked at (a concurrent write or gc)
        are skipped, and temporary files younger than TEMP_IN_FLIGHT seconds
        are taken for writes in progress.
        """
        if not self.root.is_dir():
            return
        now = time.time()
        for folder, folders, files in os.walk(self.root):
            base = Path(folder)
            info = _lstat(base)
            if info is not None and stat_module.S_IMODE(info.st_mode) & 0o077:
                mode = stat_module.S_IMODE(info.st_mode)
                yield StorageIssue(
                    "wrong-permissions", folder, f"folder mode {mode:04o}, want 0700"
                )
            for name in folders + files:
                path = base / name
                info = _lstat(path)
                if info is None:
                    continue
                mode = stat_module.S_IMODE(info.st_mode)
                if stat_module.S_ISLNK(info.st_mode):
                    yield StorageIssue("symlink", str(path), "symbolic link (never followed)")
                elif name in files and not stat_module.S_ISREG(info.st_mode):
                    yield StorageIssue("unknown-file", str(path), "not a regular file")
                elif name.startswith(TEMP_PREFIX):
                    if now - info.st_mtime > TEMP_IN_FLIGHT:
                        yield StorageIssue(
                            "temp-file", str(path), "temporary file of an unfinished write"
                        )
                elif name.startswith("."):
                    yield StorageIssue("unknown-file", str(path), "hidden name, not casbak's")
                elif name in files and mode & 0o077:
                    yield StorageIssue(
                        "wrong-permissions", str(path), f"file mode {mode:04o}, want 0600"
                    )

    def _path(self, key: str) -> Path:
        path = self.root / validate_key(key)
        if path.parent not in self._link_free:
            self._refuse_links(path.parent)
        return path

    def _refuse_links(self, folder: Path) -> None:
        # O_NOFOLLOW guards only the last component; a folder inside the
        # repository replaced by a symlink could otherwise lead reads and
        # writes out of it. Folders already checked are remembered.
        current = folder
        while current != self.root and current not in self._link_free:
            if current.is_symlink():
                raise BackendError(f"refusing to follow a symbolic link: {current}")
            current = current.parent
        self._link_free.add(folder)

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> None:
        path = self._path(key)
        self._ensure_folder(path.parent)
        try:
            # Create-only puts (locks, manifests) must never replace a file.
            with atomic_file(path, replace=overwrite) as handle:
                handle.write(data)
        except FileExistsError:
            raise AlreadyExists(key) from None
        except OSError as exc:
            _raise_os_error(exc, "write", path)
        self._dirty.add(path.parent)

    def _open_for_read(self, key: str) -> tuple[int, Path | str]:
        # Bulk reads open one file per object: the checked-folder shortcut
        # keeps path building out of the way (the key is still validated).
        folder = key.rpartition("/")[0]
        path: Path | str
        if folder in self._readable_folders:
            path = f"{self.root}/{validate_key(key)}"
        else:
            path = self._path(key)
            self._readable_folders.add(folder)
        try:
            return os.open(path, _READ_FLAGS), path
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        except OSError as exc:
            _raise_os_error(exc, "read", path)

    def get(self, key: str) -> bytes:
        fd, path = self._open_for_read(key)
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as exc:
            _raise_os_error(exc, "read", path)
        finally:
            os.close(fd)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        validate_range(offset, length)
        fd, path = self._open_for_read(key)
        try:
            chunks = []
            while length > 0 and (chunk := os.pread(fd, min(length, 1 << 20), offset)):
                chunks.append(chunk)
                offset += len(chunk)
                length -= len(chunk)
            return b"".join(chunks)
        except OSError as exc:
            _raise_os_error(exc, "read", path)
        finally:
            os.close(fd)

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            found = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            _raise_os_error(exc, "stat", path)
        if not stat_module.S_ISREG(found.st_mode):
            return None
        return ObjectInfo(key, found.st_size, found.st_mtime)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        found: list[ObjectInfo] = []
        self._walk(self.root / prefix if prefix else self.root, prefix, found.append)
        found.sort(key=lambda info: info.key)
        yield from found

    def list_names(self, prefix: str) -> Iterator[str]:
        validate_prefix(prefix)
        found: list[str] = []
        self._walk(self.root / prefix if prefix else self.root, prefix, found.append, stat=False)
        yield from sorted(found)

    def _walk(
        self, folder: Path, prefix: str, emit: Callable[[Any], None], *, stat: bool = True
    ) -> None:
        if folder.is_symlink():
            return
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return
        except OSError as exc:
            _raise_os_error(exc, "list", folder)
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                self._walk(Path(entry.path), f"{prefix}{entry.name}/", emit, stat=stat)
            elif entry.is_file(follow_symlinks=False) and not stat:
                emit(f"{prefix}{entry.name}")
            elif entry.is_file(follow_symlinks=False):
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed since the folder was read (a concurrent gc)
                emit(ObjectInfo(f"{prefix}{entry.name}", info.st_size, info.st_mtime))

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        except OSError as exc:
            _raise_os_error(exc, "delete", path)
        self._dirty.add(path.parent)

    def touch(self, key: str) -> None:
        path = self._path(key)
        try:
            os.utime(path, follow_symlinks=False)
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        except OSError as exc:
            _raise_os_error(exc, "touch", path)

    def sync(self) -> None:
        while self._dirty:
            folder = self._dirty.pop()
            try:
                fd = os.open(folder, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                _raise_os_error(exc, "sync", folder)

    def prune(self, folders: Iterable[str], *, temporary: bool = True) -> int:
        """Remove each of ``folders`` (``a/b/``, deepest first as given) that is empty; how many.

        With ``temporary``, casbak's own temporary files in them go first:
        writes that never finished (the caller holds the lock that rules out
        one in progress). A folder holding anything else stays, as does one
        that is missing or a link. `casbak migrate --encrypt` tidies the
        folders a converted repository's plain files were in; object storage
        has no folders, so no other backend has this.
        """
        removed = 0
        for folder in folders:
            path = self.root / validate_prefix(folder)
            if path == self.root or self._through_link(path) or not path.is_dir():
                continue
            if temporary:
                try:
                    entries = list(os.scandir(path))
                except OSError as exc:
                    _raise_os_error(exc, "list", path)
                for entry in entries:
                    if _TEMP_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                        self._unlink_quietly(Path(entry.path))
            try:
                os.rmdir(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    continue
                _raise_os_error(exc, "remove folder", path)
            # Nothing left to sync in it: its removal is its parent's change.
            self._dirty = {dirty for dirty in self._dirty if not dirty.is_relative_to(path)}
            self._dirty.add(path.parent)
            removed += 1
        return removed

    def _through_link(self, path: Path) -> bool:
        current = path
        while current != self.root:
            if current.is_symlink():
                return True
            current = current.parent
        return False

    def _unlink_quietly(self, path: Path) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            _raise_os_error(exc, "delete", path)
        self._dirty.add(path.parent)

    def _ensure_folder(self, folder: Path) -> None:
        if folder.is_dir():
            return
        self._ensure_folder(folder.parent)
        try:
            os.mkdir(folder, DIR_MODE)
            os.chmod(folder, DIR_MODE)
        except FileExistsError:
            if not folder.is_dir():
                raise BackendError(f"{folder} exists and is not a folder") from None
            return
        except OSError as exc:
            _raise_os_error(exc, "create folder", folder)
        self._dirty.add(folder.parent)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _raise_os_error(exc: OSError, action: str, path: Path | str) -> NoReturn:
    reasons = {
        errno.ENOSPC: "no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "read-only file system",
        errno.ELOOP: "refusing to follow a symbolic link",
        errno.ENOTDIR: "a path component is not a folder",
    }
    reason = reasons.get(exc.errno or 0, exc.strerror or str(exc))
    raise BackendError(f"cannot {action} {path}: {reason}") from exc
