"""Files written for the user outside any repository: restored tenants, bundles.

Each is written to a temporary file in its own folder, fsynced and renamed into
place, so a reader never sees half a file and a failure leaves nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from casbak.errors import BackendError
from casbak.tokens import random_hex


@contextmanager
def atomic_output(path: Path, *, durable: bool = True) -> Iterator[IO[bytes]]:
    """Yield a binary handle whose content replaces ``path`` when the block ends cleanly.

    With ``durable=False`` the file is not forced to disk (no fsync): still
    atomic, for copies whose durable original is elsewhere (restored tenants).

    Raises:
        BackendError: naming the path when the file system refuses.
    """
    temp = path.with_name(f".{path.name}.{random_hex(4)}.tmp")
    try:
        with temp.open("wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise BackendError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise


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
