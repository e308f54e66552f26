"""The format 2 object store: documents grouped in packs, found through index files.

A snapshot's new documents go into one pack file (one write, one fsync) as
separate zstd frames, so any one can be read alone. A frame is compressed
either with the repository's trained dictionary (small JSON documents of one
shape compress far better with it) or, for a new version of a tenant already
stored, against that earlier version as a raw-content dictionary, which turns
a small edit into a few dozen bytes. Index files say where each object is.
Every read decompresses with a size bound and re-hashes, like format 1.
"""

from __future__ import annotations

import heapq
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import NamedTuple

import msgspec
import zstandard

from casbak.backends.base import Backend, ObjectInfo
from casbak.errors import (
    AlreadyExists,
    BaseMissing,
    CasbakError,
    ChecksumMismatch,
    CorruptData,
    IntegrityError,
    ObjectMissing,
)
from casbak.ids import Digest, hash_bytes
from casbak.layout import (
    DICTIONARY_PREFIX,
    INDEX_PREFIX,
    PACK_PREFIX,
    dictionary_key,
    index_key,
    pack_key,
)
from casbak.objects import MAX_OBJECT_BYTES, REFRESH_AFTER, decompress_object, parallel_map
from casbak.store.indexfile import BASE_PREFIX_BYTES, IndexFile, Location, encode_index, parse_index

MAX_PACK_BYTES = 4 * 1024 * 1024
MAX_CHAIN = 8
"""Longest run of delta objects before a version is stored standalone again."""
MERGE_INDEXES_OVER = 16
"""A writer that finds more index files than this merges them into one."""
TRAIN_FROM = 64
FEW = 32
"""Up to this many lookups bisect the index files; more decode the whole index once."""
DICTIONARY_BYTES = 16 * 1024
FRAME_FORMAT = zstandard.FORMAT_ZSTD1_MAGICLESS
"""Pack frames leave out the 4-byte magic number (RFC 8878 section 3.1.1)."""
_FramesByDictionary = dict[Digest | None, list[tuple[Digest, bytes, Digest | None, int]]]
"""Frames to write (digest, frame, base, size), grouped by the dictionary of their packs."""
_PACK_CACHE = 32 * 1024 * 1024
"""Bytes of packs kept in memory (bases often sit in an older pack)."""
_BASE_CACHE = 1024
LOCAL_CONCURRENCY = 4
"""Pack reads in flight on backends that name no concurrency of their own (local, memory)."""
RANGE_GAP = 256 * 1024
"""Wanted frames of one pack closer than this are fetched by one request: the
bytes between them cost less than another round trip."""
READ_AHEAD = 32 * 1024 * 1024
"""Bytes of fetched packs and ranges a bulk read holds before it has decoded them."""
_KEPT_BASES = 32 * 1024 * 1024
"""Decoded objects a bulk read keeps because objects still to come are deltas of them."""


def standalone_frame(canonical: bytes) -> bytes:
    """A document as a plain zstd frame, readable without the repository (what bundles carry)."""
    return zstandard.ZstdCompressor(level=3, write_checksum=False).compress(canonical)


class _Fetch(NamedTuple):
    """One read of a bulk read: a byte range of a pack (``length`` None: all of it)."""

    pack: Digest
    start: int
    length: int | None
    size: int
    """The bytes it is expected to bring (what it costs while held)."""
    items: list[tuple[Digest, Location]]
    last: bool
    """The pack's last read: its objects can now be decoded."""


_MOVED = None
"""A frame whose pack vanished under a bulk read (a gc moved it): read it again singly."""


class StoreResult(msgspec.Struct, frozen=True):
    """What storing a batch of documents added."""

    new_objects: int
    bytes_added: int


class SweepResult(msgspec.Struct, frozen=True):
    """What a sweep removed and rewrote."""

    objects_removed: int
    bytes_freed: int
    """Stored bytes of the removed objects' frames."""
    packs_rewritten: int
    objects_reencoded: int


class PackStore:
    """Content-addressed documents in packs; the format 2 counterpart of ObjectStore."""

    def __init__(self, backend: Backend, compression_level: int) -> None:
        self.backend = backend
        self.concurrency: int = getattr(backend, "concurrency", LOCAL_CONCURRENCY)
        self._level = compression_level
        self._index: dict[Digest, Location] | None = None
        self._parsed: list[tuple[str, IndexFile]] | None = None
        self._overlay: dict[Digest, Location] = {}
        self._index_files: list[str] = []
        self.index_problems: list[tuple[str, CasbakError]] = []
        self._packs: OrderedDict[str, bytes] = OrderedDict()
        self._bases: OrderedDict[str, bytes] = OrderedDict()
        self._dictionaries: dict[str, zstandard.ZstdCompressionDict] = {}
        self._compressors: dict[str, zstandard.ZstdCompressor] = {}
        self._lock = threading.RLock()

    # -- the index ---------------------------------------------------------

    def index(self) -> dict[Digest, Location]:
        """Every indexed object's location (decoded once, then kept up to date)."""
        if self._index is None:
            found: dict[Digest, Location] = {}
            for key, parsed in self._files():
                try:
                    found.update(parsed.locations())
                except CasbakError as exc:
                    self.index_problems.append((key, exc))
            found.update(self._overlay)
            self._index = _resolve_bases(found)
        return self._index

    def locate(self, digest: str) -> Location | None:
        """One object's location; before the whole index is needed, without decoding it."""
        if self._index is not None:
            return self._index.get(Digest(digest))
        found = self._overlay.get(Digest(digest))
        if found is not None:
            return found
        for _, parsed in reversed(self._files()):
            try:
                found = parsed.find(digest)
            except CasbakError:
                continue  # its problem is reported when the whole index is decoded
            if found is not None:
                return self._resolve_one(found)
        return None

    def _resolve_one(self, location: Location) -> Location:
        """A base prefix resolved without decoding the whole index (left as is if ambiguous)."""
        prefix = location.unresolved_base
        if prefix is None:
            return location
        matches = {d for d in self._overlay if d.startswith(prefix)}
        for _, parsed in self._files():
            try:
                matches.update(parsed.starting_with(prefix))
            except CasbakError:
                continue
        return location.resolved(matches)

    def _files(self) -> list[tuple[str, IndexFile]]:
        if self._parsed is None:
            self._parsed = self._load_files()
            self._index_files = [key for key, _ in self._parsed]
        return self._parsed

    def _load_files(self) -> list[tuple[str, IndexFile]]:
        # A merge or a gc may delete index files between the listing and the
        # reads; their records are then in a newer file, so list again. A
        # damaged file is skipped and remembered: its objects count as absent
        # (a writer stores them again; verify reports the file).
        for attempt in range(20):
            found: list[tuple[str, IndexFile]] = []
            problems: list[tuple[str, CasbakError]] = []
            # Oldest first, so a newer record (a healed copy) wins.
            listed = sorted(self.backend.list(INDEX_PREFIX), key=lambda i: (i.mtime, i.key))
            keys = [info.key for info in listed]
            try:
                for key in keys:
                    try:
                        found.append((key, self._parse_index(key)))
                    except ObjectMissing:
                        raise
                    except CasbakError as exc:
                        problems.append((key, exc))
            except ObjectMissing:
                continue
            # A folder listing taken while files are created and removed may
            # miss both a merged file and the file it replaced; a second,
            # identical listing proves the first was complete.
            relisted = [info.key for info in self.backend.list(INDEX_PREFIX)]
            if relisted != sorted(keys) and attempt < 19:
                continue
            self.index_problems = problems
            return found
        raise ObjectMissing(INDEX_PREFIX)

    def _parse_index(self, key: str) -> IndexFile:
        stored = self.backend.get(key)
        expected = key.removeprefix(INDEX_PREFIX)
        actual = hash_bytes(stored)
        if actual != expected:
            raise ChecksumMismatch(f"index {key}", expected, actual)
        return parse_index(stored, f"index {key}")

    def read_index(self, key: str) -> dict[Digest, Location]:
        """Read one index file, checking it hashes to its name."""
        return self._parse_index(key).locations()

    def refresh(self) -> None:
        """Forget the loaded index and cached packs (another process may have changed them)."""
        with self._lock:
            self._index = None
            self._parsed = None
            self._overlay = {}
            self._packs.clear()

    # -- reading -------------------------------------------------------------

    def pack_bytes(self, pack_id: str) -> bytes:
        """A pack's bytes, from a small cache."""
        with self._lock:
            data = self._packs.get(pack_id)
            if data is not None:
                self._packs.move_to_end(pack_id)
                return data
        data = self.backend.get(pack_key(pack_id))
        with self._lock:
            self._packs[pack_id] = data
            while len(self._packs) > 1 and sum(map(len, self._packs.values())) > _PACK_CACHE:
                self._packs.popitem(last=False)
        return data

    def dictionary(self, dictionary_id: str) -> zstandard.ZstdCompressionDict:
        """A trained dictionary, checked against its name."""
        found = self._dictionaries.get(dictionary_id)
        if found is None:
            data = self.backend.get(dictionary_key(dictionary_id))
            actual = hash_bytes(data)
            if actual != dictionary_id:
                raise ChecksumMismatch(f"dictionary {dictionary_id}", dictionary_id, actual)
            found = zstandard.ZstdCompressionDict(data)
            self._dictionaries[dictionary_id] = found
        return found

    def frame(self, digest: str) -> tuple[Location, bytes]:
        """An object's location and stored frame.

        A gc may have moved the object to a new pack since the index was
        loaded (readers take no lock): a vanished pack means load it again.
        """
        location = self.locate(digest)
        if location is None:
            self.refresh()  # a writer may have indexed it since we loaded
            location = self.locate(digest)
        if location is None:
            raise ObjectMissing(f"object {digest}")
        try:
            data = self.pack_bytes(location.pack)
        except ObjectMissing:
            self.refresh()
            moved = self.locate(digest)
            if moved is None or moved == location:
                raise
            location = moved
            data = self.pack_bytes(location.pack)
        frame = data[location.offset : location.offset + location.length]
        if len(frame) != location.length:
            raise CorruptData(f"object {digest}", f"pack {location.pack} is cut short")
        return location, frame

    def read(self, digest: str, depth: int = 0) -> bytes:
        """The canonical bytes of an object, verified against its digest."""
        with self._lock:
            cached = self._bases.get(digest)
        if cached is not None:
            return cached
        canonical = self._decode_current(digest, depth)
        with self._lock:
            self._bases[digest] = canonical
            while len(self._bases) > _BASE_CACHE:
                self._bases.popitem(last=False)
        return canonical

    def _decode_current(self, digest: str, depth: int) -> bytes:
        location, frame = self.frame(digest)
        try:
            return self.decode_frame(digest, location, frame, depth)
        except BaseMissing:
            # A gc may have re-encoded the object and removed its old base
            # after we located it (readers take no lock): look again.
            self.refresh()
            if self.locate(digest) in (None, location):
                raise
            location, frame = self.frame(digest)
            return self.decode_frame(digest, location, frame, depth)

    def decode_frame(
        self,
        digest: str,
        location: Location,
        frame: bytes,
        depth: int = 0,
        base_of: Callable[[str, int], bytes] | None = None,
    ) -> bytes:
        """Decompress and re-hash a frame, refusing any size other than the indexed one.

        A delta's base comes from ``base_of`` (a bulk read's own decoded
        objects), else from `read`.
        """
        what = f"object {digest}"
        if depth > MAX_CHAIN * 4:
            raise CorruptData(what, "delta chain is too long (a loop?)")
        if location.size > MAX_OBJECT_BYTES:
            raise CorruptData(what, f"declares {location.size} bytes")
        if location.unresolved_base is not None:
            return self._decode_ambiguous(digest, location, frame, depth, base_of)[1]
        if location.base is not None:
            try:
                base = (base_of or self.read)(location.base, depth + 1)
            except ObjectMissing:
                raise BaseMissing(what, f"its delta base {location.base} is missing") from None
            except IntegrityError:
                # Said as such, so the damage is blamed on the base's frame, not this one.
                raise CorruptData(what, f"its delta base {location.base} is damaged") from None
            decompressor = zstandard.ZstdDecompressor(
                dict_data=zstandard.ZstdCompressionDict(
                    base, dict_type=zstandard.DICT_TYPE_RAWCONTENT
                ),
                format=FRAME_FORMAT,
            )
        elif location.dictionary is not None:
            decompressor = zstandard.ZstdDecompressor(
                dict_data=self.dictionary(location.dictionary), format=FRAME_FORMAT
            )
        else:
            decompressor = zstandard.ZstdDecompressor(format=FRAME_FORMAT)
        return decompress_object(
            digest, frame, location.size, decompressor=decompressor, frame_format=FRAME_FORMAT
        )

    def _decode_ambiguous(
        self,
        digest: str,
        location: Location,
        frame: bytes,
        depth: int,
        base_of: Callable[[str, int], bytes] | None,
    ) -> tuple[Location, bytes]:
        """A delta whose base prefix names no object, or several: try each candidate.

        Returns the location with the base that fits, and the decoded bytes.
        """
        prefix = location.unresolved_base
        assert prefix is not None
        candidates = [d for d in self.index() if d.startswith(prefix)]
        for candidate in candidates:
            try:
                resolved = msgspec.structs.replace(location, base=candidate, unresolved_base=None)
                return resolved, self.decode_frame(digest, resolved, frame, depth, base_of)
            except IntegrityError:
                continue
        raise CorruptData(
            f"object {digest}", f"its delta base {prefix}... is missing or does not fit"
        )

    def settle(self, digest: str, location: Location, frame: bytes) -> Location:
        """Check that a frame reads back; its location, with the base it decoded against.

        What moves a frame to a new pack records its base, and an unresolved
        one is known only once the frame has decoded against it.
        """
        if location.unresolved_base is not None:
            return self._decode_ambiguous(digest, location, frame, 0, None)[0]
        self.decode_frame(digest, location, frame)
        return location

    def read_stored(self, digest: str) -> bytes:
        """An object as a standalone zstd frame (what bundles carry)."""
        return standalone_frame(self.read(digest))

    def read_many(
        self,
        digests: Iterable[str],
        *,
        each_pack: Callable[[Digest, bytes], None] | None = None,
    ) -> Iterator[tuple[Digest, bytes | CasbakError]]:
        """Many objects' canonical bytes, each verified, or the error that stops each one.

        Objects are read pack by pack, packs in parallel (the backend's
        concurrency), each as the byte ranges holding the wanted frames (and
        their delta bases), nearby frames in one request; with ``each_pack``,
        packs are read whole and handed to it (verify hashes them). At most
        READ_AHEAD fetched bytes wait to be decoded. Packs of delta bases come
        before the packs of their deltas and a decoded base is kept until its
        last delta is decoded, so each frame is fetched once. Results come in
        that pack order, each object once, not in the order asked.
        """
        wanted = list(dict.fromkeys(Digest(digest) for digest in digests))
        if not wanted:
            return
        located = self._closure(wanted)
        if any(digest not in located for digest in wanted):
            self.refresh()  # a writer may have indexed them since we loaded
            located = self._closure(wanted)
        for digest in wanted:
            if digest not in located:
                yield digest, ObjectMissing(f"object {digest}")
        yield from self._read_located(set(wanted), located, each_pack)

    def _closure(self, wanted: list[Digest]) -> dict[Digest, Location]:
        """The locations of the wanted objects and, transitively, of their delta bases."""
        find = self.locate if self._index is None and len(wanted) <= FEW else self.index().get
        found: dict[Digest, Location] = {}
        pending = list(wanted)
        while pending:
            digest = pending.pop()
            if digest in found:
                continue
            location = find(digest)
            if location is None:
                continue
            found[digest] = location
            if location.base is not None:
                pending.append(location.base)
        return found

    def _read_located(
        self,
        wanted: set[Digest],
        located: dict[Digest, Location],
        each_pack: Callable[[Digest, bytes], None] | None,
    ) -> Iterator[tuple[Digest, bytes | CasbakError]]:
        plan = _plan(located, whole=each_pack is not None)
        decoder = _BulkDecoder(self, located)
        fetched = parallel_map(
            self._fetch, plan, self.concurrency, cost=lambda fetch: fetch.size, budget=READ_AHEAD
        )
        for fetch, data in zip(plan, fetched, strict=True):
            if each_pack is not None and isinstance(data, bytes):
                each_pack(fetch.pack, data)
            decoder.take(fetch, data)
            if fetch.last:
                for digest, result in decoder.decode_pack():
                    if digest in wanted:
                        yield digest, result

    def _fetch(self, fetch: _Fetch) -> bytes | CasbakError:
        """One read of a bulk read (in a worker thread); an error is handed on, not raised."""
        key = pack_key(fetch.pack)
        try:
            if fetch.length is None:
                return self.backend.get(key)
            return self.backend.get_range(key, fetch.start, fetch.length)
        except CasbakError as exc:
            return exc

    def locate_many(self, digests: Iterable[Digest]) -> dict[Digest, Location]:
        """The locations of those of ``digests`` that are stored."""
        wanted = list(digests)
        if self._index is None and len(wanted) <= FEW:
            found = {digest: self.locate(digest) for digest in wanted}
            return {digest: location for digest, location in found.items() if location}
        index = self.index()
        return {digest: index[digest] for digest in wanted if digest in index}

    def contains(self, digest: str) -> bool:
        """Tell whether an object is indexed, without reading it."""
        return self.locate(digest) is not None

    def list(self) -> Iterator[tuple[Digest, ObjectInfo]]:
        """Every indexed object: size is its stored length, mtime its pack's."""
        packs = {info.key: info.mtime for info in self.backend.list(PACK_PREFIX)}
        for digest, location in sorted(self.index().items()):
            key = pack_key(location.pack)
            if key in packs:
                yield digest, ObjectInfo(key, location.length, packs[key])

    def chain_depth(self, digest: str) -> int:
        """How many delta steps lead from this object to a standalone one."""
        depth = 0
        location = self.locate(digest)
        while location is not None and location.is_delta and depth <= MAX_CHAIN * 4:
            depth += 1
            location = None if location.base is None else self.locate(location.base)
        return depth

    # -- writing ---------------------------------------------------------------

    def store(
        self,
        documents: Mapping[Digest, bytes | None],
        bases: Mapping[Digest, Digest] | None = None,
        keepalive: Callable[[], None] = lambda: None,
    ) -> StoreResult:
        """Store the documents not yet stored, in new packs, then index them.

        ``bases`` suggests, per new document, an earlier version to compress
        against. Packs are durable before the index that names them, and both
        before this returns, so a manifest written afterwards is safe.
        """
        located = self.locate_many(documents)
        self._refresh_packs({location.pack for location in located.values()})
        new: dict[Digest, bytes] = {}
        for digest, data in documents.items():
            if digest not in located:
                if data is None:  # vouched for by the cache, but gone: the caller re-reads
                    raise ObjectMissing(f"object {digest}")
                new[digest] = data
        if not new:
            return StoreResult(0, 0)
        dictionary_id = self._dictionary_for(new.values())

        def frames() -> Iterator[tuple[Digest, bytes, Digest | None, int]]:
            # Compressed as the packs are written, so at most one pack's worth
            # of frames is held in memory however large the snapshot.
            for digest, canonical in new.items():
                base = (bases or {}).get(digest)
                yield (digest, *self._compress(canonical, base, dictionary_id), len(canonical))
                keepalive()

        added = self.write_packs(frames(), dictionary_id)
        return StoreResult(len(new), added)

    def write_packs(
        self,
        frames: Iterable[tuple[Digest, bytes, Digest | None, int]],
        dictionary_id: Digest | None,
    ) -> int:
        """Write frames (digest, frame, base, size) into packs and index them; bytes written."""
        locations, written = self._write_pack_files(frames, dictionary_id)
        written += self.write_index(locations)
        (self._index if self._index is not None else self._overlay).update(locations)
        self._merge_if_many()
        return written

    def _write_pack_files(
        self,
        frames: Iterable[tuple[Digest, bytes, Digest | None, int]],
        dictionary_id: Digest | None,
    ) -> tuple[dict[Digest, Location], int]:
        locations: dict[Digest, Location] = {}
        chunk: list[tuple[Digest, bytes, Digest | None, int]] = []
        written = 0

        def flush() -> None:
            nonlocal written
            data = b"".join(frame for _, frame, _, _ in chunk)
            pack_id = hash_bytes(data)
            offset = 0
            for digest, frame, base, size in chunk:
                locations[digest] = Location(
                    pack_id, offset, len(frame), size, base, None if base else dictionary_id
                )
                offset += len(frame)
            self._put_once(pack_key(pack_id), data)
            written += len(data)
            chunk.clear()

        size = 0
        for item in frames:
            if chunk and size + len(item[1]) > MAX_PACK_BYTES:
                flush()
                size = 0
            chunk.append(item)
            size += len(item[1])
        if chunk:
            flush()
        self.backend.sync()
        return locations, written

    def write_index(self, locations: Mapping[Digest, Location]) -> int:
        """Write one index file and make it durable; its size."""
        stored = encode_index(locations.items())
        key = index_key(hash_bytes(stored))
        self._put_once(key, stored)
        self.backend.sync()
        self._index_files.append(key)
        return len(stored)

    def _put_once(self, key: str, data: bytes) -> None:
        try:
            self.backend.put(key, data)
        except AlreadyExists:
            # Named by its hash, so the file there holds these very bytes unless
            # it is damaged; then this write is the repair, or it would never be.
            try:
                intact = self.backend.get(key) == data
            except ObjectMissing:
                intact = False
            if intact:
                self.backend.touch(key)
            else:
                self.backend.put(key, data, overwrite=True)
                with self._lock:
                    self._packs.pop(key.rsplit("/", 1)[-1], None)

    def _merge_if_many(self) -> None:
        # Merging is safe next to other writers: an index file is removed only
        # after a durable merged file holds every one of its records.
        if len(self._index_files) <= MERGE_INDEXES_OVER:
            return
        merged: dict[Digest, Location] = {}
        old = list(self._index_files)
        for key in old:
            try:
                merged.update(self.read_index(key))
            except ObjectMissing:
                return  # someone else merged first
        self._replace_index_files(merged, old)

    def _replace_index_files(
        self, locations: Mapping[Digest, Location], old: Collection[str]
    ) -> None:
        """Write one index of ``locations``, make it durable, then remove the ``old`` files.

        The new file is never among those removed, even when its content (and
        so its name) equals one of them.
        """
        self._index_files = []
        self.write_index(locations)
        for key in set(old) - set(self._index_files):
            try:
                self.backend.delete(key)
            except ObjectMissing:
                pass
        self.backend.sync()

    def refresh_objects(self, digests: Iterable[str]) -> None:
        """Refresh the packs holding these objects, as a dedup hit does."""
        index = self.index()
        self._refresh_packs({index[Digest(d)].pack for d in digests if d in index})

    def _refresh_packs(self, pack_ids: Iterable[str]) -> None:
        # As format 1 refreshes reused objects: a gc honouring the grace period
        # then cannot remove what this snapshot is about to reference.
        now = self.backend.now()
        for pack_id in pack_ids:
            info = self.backend.stat(pack_key(pack_id))
            if info is not None and now - info.mtime > REFRESH_AFTER:
                self.backend.touch(info.key)

    def _dictionary_for(self, samples: Iterable[bytes]) -> Digest | None:
        for info in self.backend.list(DICTIONARY_PREFIX):
            dictionary_id = Digest(info.key.removeprefix(DICTIONARY_PREFIX))
            try:
                self.dictionary(dictionary_id)
            except (IntegrityError, ObjectMissing):
                continue  # damaged: new frames must not depend on it (nor fail on it)
            return dictionary_id
        documents: list[bytes | bytearray | memoryview] = [sample for sample in samples if sample]
        if len(documents) < TRAIN_FROM:
            return None
        try:
            trained = zstandard.train_dictionary(DICTIONARY_BYTES, documents[:4000]).as_bytes()
        except zstandard.ZstdError:
            return None  # too little variety to learn from; compress without
        dictionary_id = hash_bytes(trained)
        self._put_once(dictionary_key(dictionary_id), trained)
        self.backend.sync()
        return dictionary_id

    def _compress(
        self, canonical: bytes, base: Digest | None, dictionary_id: Digest | None
    ) -> tuple[bytes, Digest | None]:
        if (
            base is not None
            and self.locate(base) is not None
            and self.chain_depth(base) < MAX_CHAIN
        ):
            try:
                earlier = self.read(base)
            except IntegrityError:
                earlier = None
            if earlier is not None:
                raw = zstandard.ZstdCompressionDict(
                    earlier, dict_type=zstandard.DICT_TYPE_RAWCONTENT
                )
                compressor = zstandard.ZstdCompressor(
                    compression_params=self._params(), dict_data=raw
                )
                return compressor.compress(canonical), base
        key = dictionary_id or ""
        shared = self._compressors.get(key)
        if shared is None:
            if dictionary_id is not None:
                shared = zstandard.ZstdCompressor(
                    compression_params=self._params(), dict_data=self.dictionary(dictionary_id)
                )
            else:
                shared = zstandard.ZstdCompressor(compression_params=self._params())
            self._compressors[key] = shared
        return shared.compress(canonical), None

    def _params(self) -> zstandard.ZstdCompressionParameters:
        # The index knows each frame's pack, dictionary and size: the magic
        # number and dictionary id would only repeat that, 8 bytes a frame.
        return zstandard.ZstdCompressionParameters.from_level(
            self._level,
            format=FRAME_FORMAT,
            write_checksum=False,
            write_dict_id=False,
            write_content_size=True,
        )

    # -- healing -------------------------------------------------------------------

    def repair(
        self, documents: Mapping[Digest, bytes], keepalive: Callable[[], None] = lambda: None
    ) -> StoreResult:
        """Store fresh copies of objects whose stored copy is lost or damaged.

        The copies go into new packs, each standalone (a delta could lean on
        another damaged object); then `_supersede` indexes them in place of
        the broken copies.
        """
        if not documents:
            return StoreResult(0, 0)
        dictionary_id = self._dictionary_for(documents.values())

        def frames() -> Iterator[tuple[Digest, bytes, Digest | None, int]]:
            for digest, canonical in documents.items():
                yield (digest, *self._compress(canonical, None, dictionary_id), len(canonical))
                keepalive()

        locations, written = self._write_pack_files(frames(), dictionary_id)
        return StoreResult(len(documents), written + self._supersede(locations))

    def rescue(
        self, pack_ids: Collection[str], keepalive: Callable[[], None] = lambda: None
    ) -> int:
        """Move every object that still reads back out of those packs that fail their check.

        Afterwards no record names a damaged pack except for objects whose
        own frame is bad (verify keeps reporting them); the pack is left for
        gc, as a pack no index names. Returns the bytes written.
        """
        index = self.index()
        held: dict[str, list[tuple[Digest, Location]]] = {}
        for digest, location in index.items():
            if location.pack in pack_ids:
                held.setdefault(location.pack, []).append((digest, location))
        by_dictionary: dict[Digest | None, list[tuple[Digest, bytes, Digest | None, int]]] = {}
        for pack_id in sorted(held):
            try:
                data = self.pack_bytes(pack_id)
            except ObjectMissing:
                continue  # lost whole: its objects can only come from a bundle
            if hash_bytes(data) == pack_id:
                continue
            for digest, location in sorted(held[pack_id], key=lambda item: item[1].offset):
                frame = data[location.offset : location.offset + location.length]
                try:
                    settled = self.settle(digest, location, frame)
                except IntegrityError:
                    continue
                by_dictionary.setdefault(location.dictionary, []).append(
                    (digest, frame, settled.base, location.size)
                )
                keepalive()
        moved: dict[Digest, Location] = {}
        written = 0
        for dictionary_id, frames in by_dictionary.items():
            locations, size = self._write_pack_files(frames, dictionary_id)
            moved.update(locations)
            written += size
        return written + self._supersede(moved) if moved else 0

    def _supersede(self, locations: Mapping[Digest, Location]) -> int:
        """Index ``locations`` in one file that replaces every index file naming any of them.

        Readers let the later of two records win, but modification times can
        tie (S3 keeps whole seconds); with the old records gone nothing rests
        on that. The replacement carries the other records of those files as
        the index resolves them now, and is durable before any file is
        removed, so a crash leaves the old records beside the newer ones.
        Returns the bytes written.
        """
        index = self.index()
        replaced: list[str] = []
        carried: dict[Digest, Location] = {}
        for key, parsed in self._files():
            try:
                named = parsed.locations()
            except CasbakError:
                continue  # not part of the index (verify reports it); nothing of it wins
            if not named.keys().isdisjoint(locations):
                replaced.append(key)
                carried.update((digest, index[digest]) for digest in named if digest in index)
        carried.update(locations)
        written = self.write_index(carried)
        kept = self._index_files[-1]
        for key in replaced:
            if key != kept:
                try:
                    self.backend.delete(key)
                except ObjectMissing:
                    pass
        self.backend.sync()
        self.refresh()
        return written

    def index_file_of(self, digest: str) -> str | None:
        """The index file whose record of an object wins, or None when none names it."""
        for key, parsed in reversed(self._files()):
            try:
                if parsed.find(digest) is not None:
                    return key
            except CasbakError:
                continue
        return None

    # -- removing ------------------------------------------------------------------

    def sweep(
        self,
        doomed: Iterable[str],
        keepalive: Callable[[], None] = lambda: None,
        reencode: Mapping[str, str | None] | None = None,
    ) -> SweepResult:
        """Remove objects: rewrite the packs that hold them without them.

        ``reencode`` names kept objects compressed against a doomed one, each
        with its new base (None: standalone); their packs are rewritten too,
        with a new frame for each of them. New packs and a merged index become
        durable first; only then are the old index files and packs removed, so
        a crash leaves every surviving object indexed, readable, at least once
        (duplicates are harmless).
        """
        index = self.index()
        gone = {Digest(digest) for digest in doomed if digest in index}
        rebased = {
            Digest(digest): None if base is None else Digest(base)
            for digest, base in (reencode or {}).items()
            if digest in index and digest not in gone
        }
        if not gone and not rebased:
            return SweepResult(0, 0, 0, 0)
        affected = {index[digest].pack for digest in (*gone, *rebased)}
        by_dictionary = self._surviving_frames(index, affected, gone, rebased, keepalive)
        old_files = list(self._index_files)
        surviving = {
            digest: location
            for digest, location in index.items()
            if location.pack not in affected and digest not in gone
        }
        for dictionary_id, frames in by_dictionary.items():
            surviving.update(self._write_pack_files(frames, dictionary_id)[0])
        self._replace_index_files(surviving, old_files)
        # Packs are named by their content, so a rewritten pack can come out
        # byte for byte like an old one (identical delta frames of different
        # objects): a pack the new index names is never removed.
        named = {location.pack for location in surviving.values()}
        for pack_id in sorted(affected - named):
            try:
                self.backend.delete(pack_key(pack_id))
            except ObjectMissing:
                pass
            keepalive()
        self.backend.sync()
        self._index = surviving
        freed = sum(index[digest].length for digest in gone)
        return SweepResult(len(gone), freed, len(affected), len(rebased))

    def _surviving_frames(
        self,
        index: Mapping[Digest, Location],
        affected: Collection[str],
        gone: Collection[Digest],
        rebased: Mapping[Digest, Digest | None],
        keepalive: Callable[[], None],
    ) -> _FramesByDictionary:
        """The frames of the affected packs that stay, by dictionary: copied or re-encoded."""
        moving = [
            (digest, location)
            for digest, location in sorted(index.items(), key=lambda item: item[1].offset)
            if location.pack in affected and digest not in gone
        ]
        dictionary_id = self._dictionary_for(()) if rebased else None
        by_dictionary: _FramesByDictionary = {}
        for digest, location in moving:
            if digest in rebased:
                frame, base = self._reencode(digest, rebased[digest], dictionary_id)
                group = dictionary_id
            else:
                frame = self.frame(digest)[1]
                base = self.settle(digest, location, frame).base  # never copy damage forward
                group = location.dictionary
            by_dictionary.setdefault(group, []).append((digest, frame, base, location.size))
            keepalive()
        return by_dictionary

    def _reencode(
        self, digest: Digest, base: Digest | None, dictionary_id: Digest | None
    ) -> tuple[bytes, Digest | None]:
        """A new frame for a kept object: a delta against ``base`` if smaller, else standalone."""
        canonical = self.read(digest)  # decoded through its old chain, which is still there
        standalone = self._compress(canonical, None, dictionary_id)
        if base is None:
            return standalone
        delta = self._compress(canonical, base, dictionary_id)
        return delta if len(delta[0]) < len(standalone[0]) else standalone

    def unindexed_packs(
        self, older_than: float, now: float | None = None
    ) -> tuple[ObjectInfo, ...]:
        """Packs no index names (left by a crash) older than ``older_than`` seconds."""
        named = {pack_key(location.pack) for location in self.index().values()}
        current = self.backend.now() if now is None else now
        return tuple(
            info
            for info in self.backend.list(PACK_PREFIX)
            if info.key not in named and current - info.mtime >= older_than
        )

    def delete_unindexed(
        self, older_than: float, only: Collection[str] | None = None
    ) -> tuple[ObjectInfo, ...]:
        """Remove packs no index names older than ``older_than`` seconds (of ``only``, if given).

        Both are judged again here, so a pack indexed or refreshed since it was
        planned for removal stays.
        """
        removed = tuple(
            info for info in self.unindexed_packs(older_than) if only is None or info.key in only
        )
        for info in removed:
            self.backend.delete(info.key)
        if removed:
            self.backend.sync()
        return removed


class _BulkDecoder:
    """The decoding half of `PackStore.read_many`: a pack's frames at a time, bases kept."""

    def __init__(self, store: PackStore, located: dict[Digest, Location]) -> None:
        self.store = store
        self.located = located
        # Per object, how many objects still to decode are deltas of it.
        self.waiting: Counter[str] = Counter(
            location.base
            for location in located.values()
            if location.base is not None and location.base in located
        )
        self.kept: dict[str, bytes] = {}
        self.kept_bytes = 0
        self.failed: dict[str, CasbakError] = {}
        self.frames: dict[str, bytes | CasbakError | None] = {}
        self.results: dict[str, bytes | CasbakError] = {}

    def take(self, fetch: _Fetch, data: bytes | CasbakError) -> None:
        """The frames one read brought (or the error that stops them)."""
        if isinstance(data, ObjectMissing):
            self.frames.update((digest, _MOVED) for digest, _ in fetch.items)
        elif isinstance(data, CasbakError):
            self.frames.update((digest, data) for digest, _ in fetch.items)
        else:
            for digest, location in fetch.items:
                start = location.offset - fetch.start
                self.frames[digest] = data[start : start + location.length]

    def decode_pack(self) -> Iterator[tuple[Digest, bytes | CasbakError]]:
        """Decode every frame taken; the results, then forget the frames."""
        for digest in self.frames:
            try:
                self._decode(digest, 0)
            except CasbakError:
                pass  # kept in results
        for digest, result in self.results.items():
            self._account(digest, result)
            yield Digest(digest), result
        self.frames.clear()
        self.results.clear()

    def _decode(self, digest: str, depth: int) -> bytes:
        """An object of the pack at hand, decoded once; its error raised every time asked."""
        if digest not in self.results:
            frame = self.frames[digest]
            location = self.located[Digest(digest)]
            result: bytes | CasbakError
            try:
                if frame is _MOVED:
                    result = self.store.read(digest, depth)
                elif isinstance(frame, CasbakError):
                    raise frame
                elif len(frame) != location.length:
                    raise CorruptData(f"object {digest}", f"pack {location.pack} is cut short")
                else:
                    result = self.store.decode_frame(digest, location, frame, depth, self._base_of)
            except CasbakError as exc:
                result = exc
            self.results[digest] = result
        found = self.results[digest]
        if isinstance(found, CasbakError):
            raise found
        return found

    def _base_of(self, digest: str, depth: int) -> bytes:
        if digest in self.frames:
            return self._decode(digest, depth)
        if digest in self.kept:
            return self.kept[digest]
        if digest in self.failed:
            raise self.failed[digest]
        # Not kept (over the budget) or in a pack still to come (a cycle): singly.
        return self.store.read(digest, depth)

    def _account(self, digest: str, result: bytes | CasbakError) -> None:
        """Keep what later deltas need; let go of a base once its last delta is decoded."""
        if self.waiting[digest]:
            if isinstance(result, CasbakError):
                self.failed[digest] = result
            elif self.kept_bytes + len(result) <= _KEPT_BASES:
                self.kept[digest] = result
                self.kept_bytes += len(result)
        base = self.located[Digest(digest)].base
        if base is not None and self.waiting[base]:
            self.waiting[base] -= 1
            if not self.waiting[base]:
                self.kept_bytes -= len(self.kept.pop(base, b""))
                self.failed.pop(base, None)


def _plan(located: Mapping[Digest, Location], *, whole: bool) -> list[_Fetch]:
    """The reads that bring every located frame: per pack, whole or as coalesced ranges."""
    by_pack: dict[Digest, list[tuple[Digest, Location]]] = {}
    for digest, location in located.items():
        by_pack.setdefault(location.pack, []).append((digest, location))
    plan: list[_Fetch] = []
    for pack in _bases_first(located):
        items = sorted(by_pack[pack], key=lambda item: (item[1].offset, item[0]))
        if whole:
            end = max(location.offset + location.length for _, location in items)
            plan.append(_Fetch(pack, 0, None, end, items, True))
            continue
        runs: list[tuple[int, int, list[tuple[Digest, Location]]]] = []
        for digest, location in items:
            end = location.offset + location.length
            if runs and location.offset <= runs[-1][1] + RANGE_GAP:
                start, stop, members = runs[-1]
                members.append((digest, location))
                runs[-1] = (start, max(stop, end), members)
            else:
                runs.append((location.offset, end, [(digest, location)]))
        for number, (start, stop, members) in enumerate(runs, 1):
            last = number == len(runs)
            plan.append(_Fetch(pack, start, stop - start, stop - start, members, last))
    return plan


def _bases_first(located: Mapping[Digest, Location]) -> list[Digest]:
    """The packs of ``located``, each after the packs holding bases of its deltas.

    A cycle (only repacking can make one) is broken at its smallest pack id; a
    delta whose base then comes later is decoded with a base read singly.
    """
    needs: dict[Digest, set[Digest]] = {location.pack: set() for location in located.values()}
    for location in located.values():
        base = located.get(location.base) if location.base is not None else None
        if base is not None and base.pack != location.pack:
            needs[location.pack].add(base.pack)
    dependents: dict[Digest, list[Digest]] = {pack: [] for pack in needs}
    for pack, bases in needs.items():
        for base_pack in bases:
            dependents[base_pack].append(pack)
    unmet = {pack: len(bases) for pack, bases in needs.items()}
    ready = [pack for pack, count in unmet.items() if count == 0]
    heapq.heapify(ready)
    order: list[Digest] = []
    placed: set[Digest] = set()
    while len(order) < len(needs):
        if not ready:
            heapq.heappush(ready, min(pack for pack in needs if pack not in placed))
        pack = heapq.heappop(ready)
        if pack in placed:
            continue
        placed.add(pack)
        order.append(pack)
        for dependent in dependents[pack]:
            unmet[dependent] -= 1
            if unmet[dependent] == 0:
                heapq.heappush(ready, dependent)
    return order


def _resolve_bases(found: dict[Digest, Location]) -> dict[Digest, Location]:
    """Replace each base prefix by the one indexed object id it starts with."""
    prefixes: dict[str, list[Digest]] = {}
    for location in found.values():
        if location.unresolved_base is not None:
            prefixes.setdefault(location.unresolved_base, [])
    if not prefixes:
        return found
    width = BASE_PREFIX_BYTES * 2
    for digest in found:
        matches = prefixes.get(digest[:width])
        if matches is not None:
            matches.append(digest)
    for digest, location in found.items():
        if location.unresolved_base is not None:
            found[digest] = location.resolved(prefixes[location.unresolved_base])
    return found
