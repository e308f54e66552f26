"""Writing restored tenants to files: one named file, or ``<tenant>.json`` files in a folder.

Every file is written whole or not at all (`casbak.outfiles`), and an
existing file is never replaced without ``force``.
"""

from __future__ import annotations

import os
from pathlib import Path

from casbak.canonical import pretty
from casbak.errors import BackendError, InputError, UsageError
from casbak.names import tenant_filename
from casbak.outfiles import atomic_file, atomic_output, sync_folder


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
    try:
        # Without force the new file takes the name only if it is still free
        # then: a file that appeared since any check is never replaced.
        with atomic_file(path, durable=False, replace=force) as handle:
            handle.write(pretty(document))
    except FileExistsError:
        raise InputError(f"{path} exists; use --force to overwrite") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder") from None
    except OSError as exc:
        raise BackendError(f"cannot write {path}: {exc.strerror or exc}") from exc
    sync_folder(path.parent)
    return path


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
    _make_folder(out_dir)
    # Each file appears whole or not at all; they are not forced to disk one
    # by one (a journal flush each): the repository holds the durable copy.
    for tenant_id, path in targets.items():
        with atomic_output(path, durable=False) as handle:
            handle.write(pretty(documents[tenant_id]))
    sync_folder(out_dir)
    return list(targets.values())


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackendError(f"cannot create {folder}: {exc.strerror or exc}") from exc
