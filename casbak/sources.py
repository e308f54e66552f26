"""Reading tenant documents from files, folders, stdin and Python values.

Everything is read, decoded, checked and canonicalized before the repository
is touched, so bad input can never leave a partial snapshot behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from casbak.canonical import canonicalize, canonicalize_untrusted, decode_json
from casbak.errors import InputError
from casbak.ids import PLAIN, Digest, Hasher
from casbak.rawcache import RawCache
from casbak.tenantdocs import MAX_TENANT_ID_LENGTH, id_problem, split_tenants, tenant_id_of

STDIN = "-"

Progress = Callable[[int, int, int], None]
"""``progress(done, total, bytes read)``: files, or the tenants of a lone file."""


class TenantDocument(msgspec.Struct, frozen=True):
    """A tenant document ready to store: canonical bytes, digest, and where it came from.

    ``canonical`` is None when a raw-bytes cache vouched for the digest: the
    document was stored before, and the snapshot checks it still is.
    """

    tenant_id: str
    canonical: bytes | None
    digest: Digest
    origin: str
    size: int = -1

    @classmethod
    def of(
        cls, tenant_id: str, canonical: bytes, origin: str, hasher: Hasher = PLAIN
    ) -> TenantDocument:
        """A document from its canonical bytes, named by the repository's id function."""
        return cls(tenant_id, canonical, hasher(canonical), origin, len(canonical))


def read_sources(
    sources: Sequence[str],
    stdin: BinaryIO | None = None,
    cache: RawCache | None = None,
    *,
    recursive: bool = False,
    progress: Progress | None = None,
    hasher: Hasher = PLAIN,
    ids_from_names: bool = False,
) -> list[TenantDocument]:
    """Read every SOURCE (file, folder of ``*.json``, or ``-``) into checked documents.

    With ``ids_from_names`` each file is one tenant, whatever its document
    holds, named by its path in the folder (or its own name) without ``.json``:
    configurations that carry no tenant id of their own (a Keycloak realm
    export) are stored as they are.

    With a cache, a file whose raw bytes were read before is not decoded again.
    A folder's sub-folders are read only when ``recursive``; without it a
    sub-folder holding ``*.json`` files is an error rather than skipped unseen.
    ``progress`` counts the files as they are decoded, or the tenants of a
    lone file.
    """
    if not sources:
        raise InputError("no source given: name JSON files, folders, or - for stdin")
    if ids_from_names and STDIN in sources:
        raise InputError("- (stdin) has no file name to name its tenant: give files or folders")
    documents: list[TenantDocument] = []
    files = [item for source in sources for item in _read_source(source, stdin, recursive)]
    read = 0
    for done, (where, data, name) in enumerate(files, 1):
        read += len(data)
        if progress is not None and len(files) > 1:
            progress(done, len(files), read)
        named = _name_of(where, name) if ids_from_names else None
        if cache is not None:
            key, known = cache.lookup(data, WHOLE_FILE if ids_from_names else b"")
            if known is not None:
                documents += [TenantDocument(named or t, None, d, where, n) for t, d, n in known]
                continue
        if named is not None:
            found = [_whole_document(data, where, named, hasher)]
        else:
            found = _canonical_documents(data, where, progress if len(files) == 1 else None, hasher)
        if cache is not None:
            cache.remember(key, [(doc.tenant_id, doc.digest, doc.size) for doc in found])
        documents += found
    return check_unique(documents)


WHOLE_FILE = b"casbak: one tenant per file, named by the file\x00"
"""Raw-cache namespace of files read with ``ids_from_names``: the same bytes read
the usual way may hold other tenants."""


def _name_of(where: str, name: str) -> str:
    """A tenant id from a file's ``name`` (relative to its folder SOURCE), without ``.json``."""
    tenant_id = name.removesuffix(".json")
    if not tenant_id or len(tenant_id) > MAX_TENANT_ID_LENGTH:
        raise InputError(
            f"{where}: a tenant named by its file needs a name of 1 to "
            f"{MAX_TENANT_ID_LENGTH} characters before .json"
        )
    try:
        tenant_id.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{where!a}: a tenant named by its file needs a UTF-8 file name") from None
    if not tenant_id.isprintable():
        raise InputError(
            f"{where!r}: a tenant named by its file needs a name without control characters"
        )
    return tenant_id


def _whole_document(data: bytes, where: str, tenant_id: str, hasher: Hasher) -> TenantDocument:
    value = decode_json(data, where)
    if not isinstance(value, dict):
        raise InputError(f"{where}: a tenant named by its file must be a JSON object")
    return TenantDocument.of(tenant_id, canonicalize(value), where, hasher)


def _canonical_documents(
    data: bytes, where: str, progress: Progress | None, hasher: Hasher
) -> list[TenantDocument]:
    tenants = split_tenants(decode_json(data, where), where)
    found = []
    for done, (tenant_id, document) in enumerate(tenants, 1):
        found.append(TenantDocument.of(tenant_id, canonicalize(document), where, hasher))
        if progress is not None:
            progress(done, len(tenants), len(data))
    return found


def documents_from_values(
    values: Iterable[Mapping[str, Any]], where: str, hasher: Hasher = PLAIN
) -> list[TenantDocument]:
    """Check and canonicalize tenant documents handed in as Python values.

    ``hasher`` is the id function of the repository they go into.
    """
    documents = []
    for index, value in enumerate(values):
        if not isinstance(value, Mapping):
            raise InputError(f"{where}[{index}]: a tenant must be a mapping")
        document = dict(value)
        tenant_id = tenant_id_of(document)
        if tenant_id is None:
            raise InputError(f"{where}[{index}]: {id_problem(document)}")
        canonical = canonicalize_untrusted(document, f"{where} tenant {tenant_id!r}")
        documents.append(TenantDocument.of(tenant_id, canonical, f"{where}[{index}]", hasher))
    return check_unique(documents)


def check_unique(documents: list[TenantDocument]) -> list[TenantDocument]:
    """Refuse an empty set and two tenants with the same id in one snapshot."""
    if not documents:
        raise InputError("empty source: no tenants found")
    seen: dict[str, str] = {}
    for document in documents:
        if document.tenant_id in seen:
            raise InputError(
                f"tenant id {document.tenant_id!r} appears twice in one snapshot "
                f"({seen[document.tenant_id]} and {document.origin})"
            )
        seen[document.tenant_id] = document.origin
    return documents


def _read_source(
    source: str, stdin: BinaryIO | None, recursive: bool
) -> list[tuple[str, bytes, str]]:
    """(where, bytes, name) of each file: name is the path inside a folder SOURCE."""
    if source == STDIN:
        if stdin is None:
            raise InputError("- (stdin) is not available here")
        return [("<stdin>", stdin.read(), "")]
    path = Path(source)
    if path.is_dir():
        names = _folder_files(path, recursive)
        if not names:
            raise InputError(f"{path}: folder holds no *.json files")
        folder = os.path.join(source, "")
        return [(folder + name, _read_file(folder + name), name) for name in names]
    return [(str(path), _read_file(str(path)), path.name)]


def _folder_files(folder: Path, recursive: bool) -> list[str]:
    """A folder's ``*.json`` files (``recursive``: at any depth) as sorted relative paths.

    Names starting with a dot (files and folders) are skipped, as editors and
    version control keep their own files there. Paths sort by their parts, so
    the order is the same on every system.
    """
    found: list[tuple[str, ...]] = []
    pending: list[tuple[str, ...]] = [()]
    while pending:
        parts = pending.pop()
        files, subfolders = _list_folder(folder.joinpath(*parts))
        found += [(*parts, name) for name in files]
        below = [(*parts, name) for name in subfolders]
        if recursive:
            pending += below
        else:
            _refuse_skipped(folder, sorted(below))
    return ["/".join(parts) for parts in sorted(found)]


def _refuse_skipped(folder: Path, subfolders: list[tuple[str, ...]]) -> None:
    """Name the first sub-folder holding ``*.json`` files (at any depth): a plain read skips it."""
    for parts in subfolders:
        if _folder_files(folder.joinpath(*parts), recursive=True):
            raise InputError(
                f"{folder}: sub-folder {folder.joinpath(*parts)} holds *.json files that "
                "would be skipped; use --recursive (-r) to read sub-folders too"
            )


def _list_folder(folder: Path) -> tuple[list[str], list[str]]:
    """A folder's visible ``*.json`` files and visible sub-folders (symlinks not followed)."""
    files, subfolders = [], []
    try:
        with os.scandir(folder) as listing:
            for entry in listing:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(entry.name)
                elif entry.name.endswith(".json") and entry.is_file():
                    files.append(entry.name)
    except OSError as exc:
        raise InputError(f"{folder}: cannot list: {exc.strerror or exc}") from None
    return files, subfolders


def _read_file(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
