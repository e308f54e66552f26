"""The one way casbak writes a file: whole or not at all.

Repository files (through the local backend), files written for the user
(restored tenants, bundles) and the raw-bytes cache all go through
`atomic_file`: a temporary file in the destination's own folder, created 0600
whatever the umask (tenant documents can hold secrets), written, fsynced when
the file must survive a crash, then renamed over the destination, or
hard-linked to it when an existing file must not be replaced. A reader never
sees half a file, and a failure leaves no temporary file behind. Making the
rename itself durable (fsync of the folder) is the caller's: a repository
syncs its folders once per batch of writes, not once per file.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from casbak.errors import BackendError
from casbak.tokens import random_hex

FILE_MODE = 0o600
TEMP_PREFIX = ".tmp-"
"""Names starting with a dot are writes in progress; readers of a repository skip them."""
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


@contextmanager
def atomic_file(
    path: Path, *, durable: bool = True, replace: bool = True, mode: int = FILE_MODE
) -> Iterator[IO[bytes]]:
    """Yield a binary handle whose content becomes ``path`` when the block ends cleanly.

    Args:
        path: the destination; its folder must exist.
        durable: fsync the content before it takes the name (False for copies
            whose durable original is elsewhere, and for caches).
        replace: rename over an existing file; with False an existing file is
            kept and FileExistsError raised (a hard link fails atomically when
            the name exists, which a rename cannot promise).
        mode: permission bits, applied whatever the umask.

    Raises:
        OSError: as the file system raised it; callers word it.

    """
    temp = path.parent / f"{TEMP_PREFIX}{random_hex(8)}"
    try:
        fd = os.open(temp, _CREATE_FLAGS, mode)
        with open(fd, "wb") as handle:
            os.fchmod(fd, mode)
            yield handle
            handle.flush()
            if durable:
                os.fsync(fd)
        if replace:
            os.replace(temp, path)
        else:
            _link_new(temp, path)
    except BaseException:
        _remove_quietly(temp)
        raise


@contextmanager
def atomic_output(path: Path, *, durable: bool = True) -> Iterator[IO[bytes]]:
    """`atomic_file` for a file the user asked for, with errors as BackendError naming it."""
    try:
        with atomic_file(path, durable=durable) as handle:
            yield handle
    except OSError as exc:
        raise BackendError(f"cannot write {path}: {exc.strerror or exc}") from exc


def sync_folder(folder: Path) -> None:
    """Make a folder's entries (the renames into it) durable."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise BackendError(f"cannot sync {folder}: {exc.strerror or exc}") from exc


def _link_new(temp: Path, path: Path) -> None:
    try:
        os.link(temp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        # File systems without hard links: rename, after checking the name is free.
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
        os.rename(temp, path)
        return
    os.unlink(temp)


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
