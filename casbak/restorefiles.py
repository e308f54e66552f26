"""Writing restored tenants to files: one named file, or ``<tenant>.json`` files in a folder.

Every file is written whole or not at all (`casbak.outfiles`), and an
existing file is never replaced without ``force``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from casbak.canonical import pretty
from casbak.errors import BackendError, InputError, UsageError
from casbak.names import tenant_filename
from casbak.outfiles import (
    FILE_MODE,
    TEMP_PREFIX,
    atomic_file,
    sync_folder,
)
from casbak.tokens import random_hex

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def names_file(out: Path) -> bool:
    """True when ``out`` is meant as one file: it ends in ``.json`` and is not a folder."""
    return out.suffix.lower() == ".json" and not out.is_dir()


def write_restored_to(documents: dict[str, bytes], out: Path, *, force: bool) -> list[Path]:
    """Write one tenant to ``out`` if it `names_file`, else ``<tenant>.json`` files into ``out``.

    Several tenants to a ``.json`` path is refused: a folder of that name is
    never what was meant.
    """
    if not names_file(out):
        return write_restored(documents, out, force=force)
    if len(documents) != 1:
        raise UsageError(
            f"--out {out} names one file but {len(documents)} tenants are restored; "
            "pick one with --tenant ID, or give a folder"
        )
    return [write_restored_file(next(iter(documents.values())), out, force=force)]


def write_restored_file(document: bytes, path: Path, *, force: bool) -> Path:
    """Write one tenant as ``path``; an existing file is kept (and refused) unless ``force``."""
    _make_folder(path.parent)
    _write_one(document, path, force=force)
    sync_folder(path.parent)
    return path


def _write_one(document: bytes, path: Path, *, force: bool) -> None:
    try:
        # Without force the new file takes the name only if it is still free
        # then: a file that appeared since any check is never replaced. Not
        # forced to disk one by one (a journal flush each): the repository
        # holds the durable copy.
        with atomic_file(path, durable=False, replace=force) as handle:
            handle.write(pretty(document))
    except FileExistsError:
        raise InputError(f"{path} exists; use --force to overwrite") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder") from None
    except OSError as exc:
        raise BackendError(f"cannot write {path}: {exc.strerror or exc}") from exc


def write_restored(documents: dict[str, bytes], out_dir: Path, *, force: bool) -> list[Path]:
    """Write ``<tenant>.json`` files; nothing is written if any would overwrite without force."""
    targets = {tenant_id: out_dir / tenant_filename(tenant_id) for tenant_id in documents}
    if not force:
        existing = [str(path) for path in targets.values() if os.path.lexists(path)]
        if existing:
            raise InputError(
                f"{existing[0]} exists; use --force to overwrite"
                + (f" ({len(existing) - 1} more)" if len(existing) > 1 else "")
            )
    if not os.path.lexists(out_dir) and _write_new_folder(documents, targets, out_dir):
        return list(targets.values())
    _make_folder(out_dir)
    for tenant_id, path in targets.items():
        _write_one(documents[tenant_id], path, force=force)
    sync_folder(out_dir)
    return list(targets.values())


def _write_new_folder(documents: dict[str, bytes], targets: dict[str, Path], out: Path) -> bool:
    """Write a folder that does not exist yet whole: files in a hidden folder, renamed at the end.

    The folder appears with every file or not at all (for a process that
    dies; the files are not fsynced), so each file needs no temporary name of
    its own (a rename each: most of a restore's time when thousands of tenants
    are written). An empty folder created at ``out`` meanwhile is replaced by
    the rename; False when a non-empty one appeared (nothing of this attempt
    is left): the caller writes file by file.
    """
    _make_folder(out.parent)
    building = out.parent / f"{TEMP_PREFIX}{random_hex(8)}"
    try:
        os.mkdir(building)
        for tenant_id, path in targets.items():
            fd = os.open(os.path.join(building, path.name), _NEW_FILE, FILE_MODE)
            with open(fd, "wb") as handle:
                os.fchmod(fd, FILE_MODE)
                handle.write(pretty(documents[tenant_id]))
        sync_folder(building)
        os.rename(building, out)
    except OSError as exc:
        shutil.rmtree(building, ignore_errors=True)
        if os.path.lexists(out):
            return False
        raise BackendError(f"cannot write {out}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    sync_folder(out.parent)
    return True


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackendError(f"cannot create {folder}: {exc.strerror or exc}") from exc
