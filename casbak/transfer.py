"""Use cases that move snapshots between repositories: export, import, bundle verify.

Import is two-phase: the whole bundle is read and checked first (every
object's hash and declared size, every manifest's id, every reference
resolvable), changing nothing; only then are objects written, made durable,
and finally manifests. A hostile or damaged bundle therefore leaves the
repository untouched, and an interrupted import leaves only unreferenced
objects, which verify reports as orphans and gc removes.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

import msgspec

from casbak.bundle import (
    BUNDLE_FORMAT,
    BundleHeader,
    BundleManifest,
    BundleWriter,
    CheckedManifest,
    CheckedObject,
    bundle_version,
    read_bundle,
)
from casbak.bundleids import bundle_entry, manifests_of, objects_of
from casbak.defaults import DEFAULT_LOCK_TIMEOUT
from casbak.errors import (
    BundleError,
    CasbakError,
    InputError,
    IntegrityError,
    ObjectMissing,
    PasswordMissing,
)
from casbak.ids import Digest, hash_bytes
from casbak.keyfile import DEFAULT_KDF, Kdf
from casbak.model import utc_now
from casbak.outfiles import atomic_output
from casbak.repository import Repository, Snapshot
from casbak.sealedbundle import SealedWriter, plain_bundles
from casbak.store import PackStore, standalone_frame

Progress = Callable[[int, int, int], None]


class ExportResult(msgspec.Struct, frozen=True):
    """What a bundle holds."""

    manifests: int
    objects: int
    bytes: int


class ImportResult(msgspec.Struct, frozen=True):
    """What an import changed; a second import of the same bundle changes nothing."""

    manifests: int
    manifests_skipped: int
    objects: int
    objects_skipped: int
    objects_healed: int
    bytes: int


IMPORT_BATCH_BYTES = 4 * 1024 * 1024
"""Objects an import gathers before writing them as one pack."""


def select_snapshots(
    repo: Repository,
    refs: Iterable[str] = (),
    *,
    target_id: str | None = None,
    everything: bool = False,
    since: timedelta | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> list[Snapshot]:
    """The snapshots an export names: by reference, by target, or all; oldest first."""
    chosen = [repo.resolve(ref) for ref in refs]
    if target_id is not None or everything:
        chosen += [
            snap for snap in repo.snapshots() if everything or snap.header.target_id == target_id
        ]
    if since is not None:
        cutoff = clock() - since
        chosen = [snap for snap in chosen if snap.header.timestamp >= cutoff]
    unique = {snap.id: snap for snap in chosen}
    if not unique:
        raise InputError("nothing to export: no snapshot matches")
    return sorted(unique.values(), key=lambda snap: (snap.header.timestamp, snap.id))


def export_bundle(
    repo: Repository,
    snapshots: list[Snapshot],
    stream: IO[bytes],
    *,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = utc_now,
    password: str | None = None,
    kdf: Kdf = DEFAULT_KDF,
) -> ExportResult:
    """Write a bundle of the snapshots and every object they need, each read and checked.

    With ``password`` the bundle is sealed for it (`casbak.sealedbundle`); a
    bundle of an encrypted repository always is. Inside, ids are plain blake3
    whatever the repository's: a bundle is read without the repository's key.
    """
    if repo.sealer is not None and password is None:
        raise PasswordMissing("a bundle of an encrypted repository is sealed: give its password")
    digests = sorted({e.object for s in snapshots for e in s.manifest.entries.values()})
    with tempfile.TemporaryFile() as spool:
        # Reading is the slow part, so it is what progress shows.
        spooled = _spool_standalone(repo.objects, digests, spool, progress)
        plain = {Digest(digest): plain_id for digest, (_, _, plain_id) in spooled.items()}
        listed = [bundle_entry(snap, plain if repo.hasher.keyed else None) for snap in snapshots]
        sizes: dict[str, int] = {plain_id: n for _, n, plain_id in spooled.values()}
        stored = _unspool(spool, spooled, digests)
        provenance = any(snap.header.provenance for snap in snapshots)
        if password is None:
            return _write_bundle(stream, listed, provenance, sizes, stored, clock)
        sealed = SealedWriter(stream, password, clock(), kdf)
        result = _write_bundle(sealed, listed, provenance, sizes, stored, clock)  # type: ignore[arg-type]
        sealed.close()
        return result


def _spool_standalone(
    packs: PackStore, digests: list[str], spool: IO[bytes], progress: Progress | None
) -> dict[str, tuple[int, int, Digest]]:
    """Read every object (pack by pack, in parallel) into ``spool`` as a standalone frame.

    The header, which comes first, needs every frame's size: the frames wait
    on disk, not in memory, and the repository is read once.
    """
    spooled: dict[str, tuple[int, int, Digest]] = {}
    written = 0
    for digest, result in packs.read_many(digests):
        if isinstance(result, CasbakError):
            raise result
        frame = standalone_frame(result)
        spooled[digest] = (written, len(frame), hash_bytes(result))
        spool.write(frame)
        written += len(frame)
        if progress is not None:
            progress(len(spooled), len(digests), written)
    return spooled


def _unspool(
    spool: IO[bytes], spooled: dict[str, tuple[int, int, Digest]], digests: list[str]
) -> Iterator[tuple[str, bytes]]:
    """The spooled frames by their plain ids, in the order of ``digests``."""
    for digest in digests:
        offset, length, plain_id = spooled[digest]
        spool.seek(offset)
        yield plain_id, spool.read(length)


def _write_bundle(
    stream: IO[bytes],
    listed: list[tuple[str, str, bytes]],
    provenance: bool,
    sizes: dict[str, int],
    stored_objects: Iterable[tuple[str, bytes]],
    clock: Callable[[], datetime],
) -> ExportResult:
    header = BundleHeader(
        format=BUNDLE_FORMAT,
        version=bundle_version(provenance),
        created=clock(),
        manifests=[BundleManifest(sid, name, len(data)) for sid, name, data in listed],
        objects=len(sizes),
        object_bytes=sum(sizes.values()),
    )
    writer = BundleWriter(stream, header)
    try:
        for _, name, data in listed:
            writer.add_manifest(name, data)
        written = 0
        for digest, stored in stored_objects:
            if len(stored) != sizes[digest]:
                raise IntegrityError(f"object {digest} changed while it was exported")
            writer.add_object(digest, stored)
            written += len(stored)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return ExportResult(len(listed), len(sizes), written)


def export_to_file(
    repo: Repository,
    snapshots: list[Snapshot],
    path: Path,
    *,
    force: bool = False,
    progress: Progress | None = None,
    password: str | None = None,
    kdf: Kdf = DEFAULT_KDF,
) -> ExportResult:
    """`export_bundle` into a file that appears only once complete; never overwrites unasked."""
    if path.exists() and not force:
        raise InputError(f"{path} exists; use --force to overwrite")
    with atomic_output(path) as handle:
        return export_bundle(repo, snapshots, handle, progress=progress, password=password, kdf=kdf)


@contextmanager
def seekable(source: str | Path, stdin: IO[bytes] | None) -> Iterator[Callable[[], IO[bytes]]]:
    """Give a way to read a bundle more than once; stdin is spooled to a temporary file."""
    if str(source) == "-":
        if stdin is None:
            raise InputError("- (stdin) is not available here")
        with tempfile.TemporaryFile() as spool:
            shutil.copyfileobj(stdin, spool)

            def rewind() -> IO[bytes]:
                spool.seek(0)
                return spool

            yield rewind
        return
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{path}: no such bundle file")
    handles: list[IO[bytes]] = []
    try:

        def reopen() -> IO[bytes]:
            handles.append(path.open("rb"))
            return handles[-1]

        yield reopen
    finally:
        for handle in handles:
            handle.close()


def check_bundle(
    open_stream: Callable[[], IO[bytes]], repo: Repository | None
) -> tuple[BundleHeader, set[str]]:
    """Read a whole bundle and check it; return its header and the objects it holds.

    References to objects the bundle lacks must be satisfied by ``repo`` with
    an intact copy; with no repository, the bundle must be self-contained.
    """
    header: BundleHeader | None = None
    referenced: dict[str, str] = {}
    held: set[str] = set()
    for item in read_bundle(open_stream()):
        if isinstance(item, BundleHeader):
            header = item
        elif isinstance(item, CheckedManifest):
            for entry in item.manifest.entries.values():
                referenced.setdefault(entry.object, item.name)
        else:
            held.add(item.digest)
    assert header is not None  # read_bundle yields the header first or raises
    for digest in sorted(referenced.keys() - held):
        where = f"manifest {referenced[digest]} references object {digest}"
        if repo is None:
            raise BundleError(f"{where}, which the bundle lacks")
        try:
            repo.objects.read(digest)
        except CasbakError:
            raise BundleError(f"{where}, which neither the bundle nor the repository has") from None
    return header, held


def import_bundle(
    repo: Repository,
    open_stream: Callable[[], IO[bytes]],
    *,
    progress: Progress | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    password: Callable[[], str] | None = None,
) -> ImportResult:
    """Check the whole bundle, then write its objects, then its manifests.

    Every object the bundle holds that the repository lacks or cannot read
    back is written; it counts as repaired when the repository had a copy
    (lost or damaged) or when a snapshot already in the repository needs it.
    A sealed bundle is opened with ``password``. Into an encrypted repository
    the bundle's plain ids are translated to keyed ones (the bundle must then
    hold every object its manifests name, as every export does).
    """
    open_stream = plain_bundles(open_stream, password)
    keyed = repo.hasher.keyed
    header, _ = check_bundle(open_stream, None if keyed else repo)
    skipped = healed = done = 0
    writer = _ObjectWriter(repo)
    translated: dict[Digest, Digest] = {}
    with repo.locks.shared("import", lock_timeout) as lock:
        writer.keepalive = lock.refresh
        needed = set() if keyed else _needed_by_present(open_stream, repo.manifest_keys())
        for item in objects_of(repo, open_stream, translated):
            state = _existing_state(repo, item.digest)
            writer.note(item.digest)
            if state == "intact":
                writer.reuse(item.digest)
                skipped += 1
            else:
                writer.write(item, damaged=state == "damaged")
                healed += state == "damaged" or item.digest in needed
            done += 1
            lock.refresh()
            if progress is not None:
                progress(done, header.objects, writer.written_bytes)
        writer.finish()
        repo.backend.sync()
        lock.confirm()
        present = repo.manifest_keys()
        imported = 0
        for manifest in manifests_of(repo, open_stream, translated):
            if manifest.id not in present:
                repo.write_manifest_bytes(manifest.id, manifest.data, manifest.manifest)
                imported += 1
    return ImportResult(
        manifests=imported,
        manifests_skipped=len(header.manifests) - imported,
        objects=done - skipped - healed,
        objects_skipped=skipped,
        objects_healed=healed,
        bytes=writer.written_bytes,
    )


def _needed_by_present(open_stream: Callable[[], IO[bytes]], present: Collection[str]) -> set[str]:
    """Objects that the bundle's snapshots already in the repository reference."""
    needed: set[str] = set()
    for item in read_bundle(open_stream()):
        if isinstance(item, CheckedObject):
            break
        if isinstance(item, CheckedManifest) and item.id in present:
            needed.update(entry.object for entry in item.manifest.entries.values())
    return needed


class _ObjectWriter:
    """Writes an import's objects, batched into packs.

    A repaired object is not merely added: its fresh copy must
    replace the broken record, and intact objects sharing a damaged pack are
    moved out of it (see `PackStore.repair` and `PackStore.rescue`).
    """

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.packs = repo.objects
        self.batch: dict[Digest, bytes] = {}
        self.repairs: dict[Digest, bytes] = {}
        self.batch_bytes = 0
        self.checked_packs: set[str] = set()
        self.damaged_packs: set[str] = set()
        self.written_bytes = 0
        self.keepalive: Callable[[], None] = lambda: None

    def note(self, digest: Digest) -> None:
        """Check the pack holding a bundle object, once, while it is still cached from reading."""
        location = self.packs.locate(digest)
        if location is None or location.pack in self.checked_packs:
            return
        self.checked_packs.add(location.pack)
        try:
            data = self.packs.pack_bytes(location.pack)
        except ObjectMissing:
            return  # lost whole: its objects are repaired one by one
        if hash_bytes(data) != location.pack:
            self.damaged_packs.add(location.pack)

    def reuse(self, digest: Digest) -> None:
        self.packs.refresh_objects([digest])

    def write(self, item: CheckedObject, *, damaged: bool) -> None:
        (self.repairs if damaged else self.batch)[item.digest] = item.canonical
        self.batch_bytes += len(item.canonical)
        if self.batch_bytes > IMPORT_BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            self.written_bytes += self.packs.store(self.batch, keepalive=self.keepalive).bytes_added
        if self.repairs:
            self.written_bytes += self.packs.repair(self.repairs, self.keepalive).bytes_added
        self.batch.clear()
        self.repairs.clear()
        self.batch_bytes = 0

    def finish(self) -> None:
        """Write what is pending; then move intact objects out of damaged packs."""
        self.flush()
        if self.damaged_packs:
            self.written_bytes += self.packs.rescue(self.damaged_packs, self.keepalive)


def _existing_state(repo: Repository, digest: Digest) -> str:
    if not repo.objects.contains(digest):
        return "absent"
    try:
        repo.objects.read(digest)
    except ObjectMissing:
        # An indexed object whose pack is gone is a lost copy, to be replaced.
        return "damaged"
    except IntegrityError:
        return "damaged"
    return "intact"
