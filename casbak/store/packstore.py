"""The pack store: content-addressed documents in packs, found through index files.

`PackStore` is what the repository, gc, verify and import talk to. It owns
no state of its own: each part of the engine below keeps its own (and its
caches valid), and this composes them.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping

import zstandard

from casbak.backends.base import Backend, ObjectInfo
from casbak.errors import CasbakError
from casbak.ids import Digest
from casbak.layout import PACK_PREFIX, pack_key
from casbak.sealer import Sealer
from casbak.store.bulkread import LOCAL_CONCURRENCY, BulkReader
from casbak.store.dictionaries import Dictionaries
from casbak.store.encoder import FrameEncoder
from casbak.store.frames import Frame
from casbak.store.indexfile import Location
from casbak.store.indexview import IndexView
from casbak.store.reader import BaseOf, ObjectReader, RecentBytes
from casbak.store.repair import Repairer
from casbak.store.sweep import Sweeper, SweepResult
from casbak.store.writer import PackWriter, Parts, StoreResult


class PackStore:
    """Content-addressed documents in packs; the format 2 and 3 counterpart of ObjectStore."""

    def __init__(
        self, backend: Backend, compression_level: int, sealer: Sealer | None = None
    ) -> None:
        """``sealer`` seals frames, index files and dictionaries (an encrypted repository)."""
        self.backend = backend
        self.concurrency: int = getattr(backend, "concurrency", LOCAL_CONCURRENCY)
        view = self._view = IndexView(backend, sealer)
        dictionaries = self._dictionaries = Dictionaries(backend, sealer)
        reader = self._reader = ObjectReader(backend, view, dictionaries, sealer)
        self._bulk = BulkReader(backend, view, reader, self.concurrency)
        encoder = self._encoder = FrameEncoder(
            compression_level, view, reader, dictionaries, sealer
        )
        parts = Parts(backend, view, reader, encoder, dictionaries)
        writer = self._writer = PackWriter(parts)
        self._repairer = Repairer(parts, writer)
        self._sweeper = Sweeper(parts, writer)

    # -- the index ---------------------------------------------------------

    @property
    def index_problems(self) -> list[tuple[str, CasbakError]]:
        """Index files left out of the index (damaged), each with what is wrong with it."""
        return self._view.problems

    def index(self) -> dict[Digest, Location]:
        """Every indexed object's location (decoded once, then kept up to date)."""
        return self._view.index()

    def locate(self, digest: str) -> Location | None:
        """One object's location; before the whole index is needed, without decoding it."""
        return self._view.locate(digest)

    def locate_many(self, digests: Iterable[Digest]) -> dict[Digest, Location]:
        """The locations of those of ``digests`` that are stored."""
        return self._view.locate_many(digests)

    def contains(self, digest: str) -> bool:
        """Tell whether an object is indexed, without reading it."""
        return self._view.locate(digest) is not None

    def chain_depth(self, digest: str) -> int:
        """How many delta steps lead from this object to a standalone one."""
        return self._view.chain_depth(digest)

    def index_file_of(self, digest: str) -> str | None:
        """The index file whose record of an object wins, or None when none names it."""
        return self._view.index_file_of(digest)

    def read_index(self, key: str) -> dict[Digest, Location]:
        """Read one index file, checking it hashes to its name."""
        return self._view.read_file(key)

    def list(self) -> Iterator[tuple[Digest, ObjectInfo]]:
        """Every indexed object: size is its stored length, mtime its pack's."""
        packs = {info.key: info.mtime for info in self.backend.list(PACK_PREFIX)}
        for digest, location in sorted(self._view.index().items()):
            key = pack_key(location.pack)
            if key in packs:
                yield digest, ObjectInfo(key, location.length, packs[key])

    def refresh(self) -> None:
        """Forget the loaded index and cached packs (another process may have changed them)."""
        self._reader.refresh()

    # -- reading -------------------------------------------------------------

    def pack_bytes(self, pack_id: str) -> bytes:
        """A pack's bytes, from a small cache."""
        return self._reader.pack_bytes(pack_id)

    def dictionary(self, dictionary_id: str) -> zstandard.ZstdCompressionDict:
        """A trained dictionary, checked against its name."""
        return self._dictionaries.get(dictionary_id)

    def frame(self, digest: str) -> tuple[Location, bytes]:
        """An object's location and stored frame (looked up again if a gc moved it)."""
        return self._reader.frame(digest)

    def read(self, digest: str, depth: int = 0) -> bytes:
        """The canonical bytes of an object, verified against its digest."""
        return self._reader.read(digest, depth)

    def decode_frame(
        self,
        digest: str,
        location: Location,
        frame: bytes,
        depth: int = 0,
        base_of: BaseOf | None = None,
    ) -> bytes:
        """Decompress and re-hash a frame, refusing any size other than the indexed one."""
        return self._reader.decode_frame(digest, location, frame, depth, base_of)

    def read_many(
        self,
        digests: Iterable[str],
        *,
        each_pack: Callable[[Digest, bytes], None] | None = None,
    ) -> Iterator[tuple[Digest, bytes | CasbakError]]:
        """Many objects' canonical bytes, each verified, or the error that stops each one.

        See `BulkReader.read_many`: results come pack by pack, not in the
        order asked; with ``each_pack`` packs are read whole and handed to it.
        """
        return self._bulk.read_many(digests, each_pack=each_pack)

    # -- writing ---------------------------------------------------------------

    def store(
        self,
        documents: Mapping[Digest, bytes | None],
        bases: Mapping[Digest, Digest] | None = None,
        keepalive: Callable[[], None] = lambda: None,
    ) -> StoreResult:
        """Store the documents not yet stored, in new packs, then index them durably.

        ``bases`` suggests, per new document, an earlier version to compress against.
        """
        return self._writer.store(documents, bases, keepalive)

    def write_packs(self, frames: Iterable[Frame], dictionary_id: Digest | None) -> int:
        """Write frames (digest, frame, base, size) into packs and index them; bytes written.

        The frames are written as given: in an encrypted repository, sealed ones.
        """
        return self._writer.write_packs(frames, dictionary_id)

    def write_index(self, locations: Mapping[Digest, Location]) -> int:
        """Write one index file and make it durable; its size."""
        return self._writer.write_index(locations)[1]

    def refresh_objects(self, digests: Iterable[str]) -> None:
        """Refresh the packs holding these objects, as a dedup hit does."""
        self._writer.refresh_objects(digests)

    # -- healing -------------------------------------------------------------------

    def repair(
        self, documents: Mapping[Digest, bytes], keepalive: Callable[[], None] = lambda: None
    ) -> StoreResult:
        """Store fresh copies of objects whose stored copy is lost or damaged, indexed instead."""
        return self._repairer.repair(documents, keepalive)

    def rescue(
        self, pack_ids: Collection[str], keepalive: Callable[[], None] = lambda: None
    ) -> int:
        """Move every object that still reads back out of those packs that fail their check."""
        return self._repairer.rescue(pack_ids, keepalive)

    # -- removing ------------------------------------------------------------------

    def sweep(
        self,
        doomed: Iterable[str],
        keepalive: Callable[[], None] = lambda: None,
        reencode: Mapping[str, str | None] | None = None,
        consolidate: Collection[str] = (),
    ) -> SweepResult:
        """Remove objects by rewriting their packs; ``reencode`` gives kept deltas new bases.

        ``consolidate`` names small packs whose frames move into full-sized ones.
        """
        return self._sweeper.sweep(doomed, keepalive, reencode, consolidate)

    def small_packs(self, below: int) -> builtins.list[str]:
        """Ids of indexed packs smaller than ``below`` bytes."""
        return self._sweeper.small_packs(below)

    def unindexed_packs(
        self, older_than: float, now: float | None = None
    ) -> tuple[ObjectInfo, ...]:
        """Packs no index names (left by a crash) older than ``older_than`` seconds."""
        return self._sweeper.unindexed_packs(older_than, now)

    def delete_unindexed(
        self, older_than: float, only: Collection[str] | None = None
    ) -> tuple[ObjectInfo, ...]:
        """Remove packs no index names older than ``older_than`` seconds (of ``only``, if given)."""
        return self._sweeper.delete_unindexed(older_than, only)

    # -- what tests reach for --------------------------------------------------

    def _params(self) -> zstandard.ZstdCompressionParameters:
        """The settings of new frames (tests build frames of their own with them)."""
        return self._encoder.params()

    @property
    def _bases(self) -> RecentBytes:
        """Objects decoded lately (a test that edits the index empties it)."""
        return self._reader.decoded
