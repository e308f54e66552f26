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

import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping

import msgspec
import zstandard

from casbak.backends.base import Backend, ObjectInfo
from casbak.errors import (
    AlreadyExists,
    CasbakError,
    ChecksumMismatch,
    CorruptData,
    IntegrityError,
    ObjectMissing,
)
from casbak.ids import DIGEST_LENGTH, Digest, hash_bytes
from casbak.objects import MAX_OBJECT_BYTES, REFRESH_AFTER, decompress_object
from casbak.packindex import BASE_PREFIX_BYTES, IndexFile, Location, encode_index, parse_index

PACK_PREFIX = "packs/"
INDEX_PREFIX = "index/"
DICTIONARY_PREFIX = "dicts/"
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
_PACK_CACHE = 32 * 1024 * 1024
"""Bytes of packs kept in memory (bases often sit in an older pack)."""
_BASE_CACHE = 1024


def pack_key(pack_id: str) -> str:
    """Storage key of a pack."""
    return f"{PACK_PREFIX}{pack_id[:2]}/{pack_id}"


def index_key(index_id: str) -> str:
    """Storage key of an index file."""
    return f"{INDEX_PREFIX}{index_id}"


def dictionary_key(dictionary_id: str) -> str:
    """Storage key of a compression dictionary."""
    return f"{DICTIONARY_PREFIX}{dictionary_id}"


class StoreResult(msgspec.Struct, frozen=True):
    """What storing a batch of documents added."""

    new_objects: int
    bytes_added: int


class PackStore:
    """Content-addressed documents in packs; the format 2 counterpart of ObjectStore."""

    def __init__(self, backend: Backend, compression_level: int) -> None:
        self.backend = backend
        self.concurrency = 1
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
                if found.base is not None and len(found.base) != DIGEST_LENGTH:
                    found = self._resolve_one(found)
                return found
        return None

    def _resolve_one(self, location: Location) -> Location:
        """A base prefix resolved without decoding the whole index (left as is if ambiguous)."""
        assert location.base is not None
        prefix = location.base
        matches = {d for d in self._overlay if d.startswith(prefix)}
        for _, parsed in self._files():
            try:
                matches.update(parsed.starting_with(prefix))
            except CasbakError:
                continue
        if len(matches) == 1:
            return msgspec.structs.replace(location, base=matches.pop())
        return location

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
        location, frame = self.frame(digest)
        canonical = self.decode_frame(digest, location, frame, depth)
        with self._lock:
            self._bases[digest] = canonical
            while len(self._bases) > _BASE_CACHE:
                self._bases.popitem(last=False)
        return canonical

    def decode_frame(self, digest: str, location: Location, frame: bytes, depth: int = 0) -> bytes:
        """Decompress and re-hash a frame, refusing any size other than the indexed one."""
        what = f"object {digest}"
        if depth > MAX_CHAIN * 4:
            raise CorruptData(what, "delta chain is too long (a loop?)")
        if location.size > MAX_OBJECT_BYTES:
            raise CorruptData(what, f"declares {location.size} bytes")
        if location.base is not None:
            if len(location.base) != DIGEST_LENGTH:
                return self._decode_ambiguous(digest, location, frame, depth)
            try:
                base = self.read(location.base, depth + 1)
            except ObjectMissing:
                raise CorruptData(what, f"its delta base {location.base} is missing") from None
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

    def _decode_ambiguous(self, digest: str, location: Location, frame: bytes, depth: int) -> bytes:
        """A delta whose base prefix names no object, or several: try each candidate."""
        assert location.base is not None
        candidates = [d for d in self.index() if d.startswith(location.base)]
        for candidate in candidates:
            try:
                resolved = msgspec.structs.replace(location, base=candidate)
                return self.decode_frame(digest, resolved, frame, depth)
            except IntegrityError:
                continue
        raise CorruptData(
            f"object {digest}", f"its delta base {location.base}... is missing or does not fit"
        )

    def read_stored(self, digest: str) -> bytes:
        """An object as a standalone zstd frame (what bundles carry)."""
        return zstandard.ZstdCompressor(level=3, write_checksum=False).compress(self.read(digest))

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
        while location is not None and location.base is not None and depth <= MAX_CHAIN * 4:
            depth += 1
            location = self.locate(location.base)
        return depth

    # -- writing ---------------------------------------------------------------

    def store(
        self,
        documents: Mapping[Digest, bytes | None],
        bases: Mapping[Digest, Digest] | None = None,
        keepalive: Callable[[], None] = lambda: None,
        replace: Collection[str] = (),
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
            if digest not in located or digest in replace:
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
                base = None if digest in replace else (bases or {}).get(digest)
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
            self.backend.touch(key)  # the same content, named by its hash

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
        existing = [info.key for info in self.backend.list(DICTIONARY_PREFIX)]
        if existing:
            return Digest(existing[0].removeprefix(DICTIONARY_PREFIX))
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

    # -- removing ------------------------------------------------------------------

    def live_closure(self, referenced: Iterable[str]) -> set[Digest]:
        """The referenced objects plus every base they are compressed against."""
        index = self.index()
        live: set[Digest] = set()
        pending = [Digest(digest) for digest in referenced]
        while pending:
            current = pending.pop()
            if current in live:
                continue
            live.add(current)
            location = index.get(current)
            if location is None or location.base is None:
                continue
            if len(location.base) == DIGEST_LENGTH:
                pending.append(location.base)
            else:  # an unresolved prefix: keep every object it could mean
                pending += [d for d in index if d.startswith(location.base)]
        return live

    def sweep(self, doomed: Iterable[str], keepalive: Callable[[], None] = lambda: None) -> None:
        """Remove objects: rewrite the packs that hold them without them.

        New packs and a merged index become durable first; only then are the
        old index files and packs removed, so a crash leaves every surviving
        object indexed at least once (duplicates are harmless).
        """
        index = self.index()
        gone = {Digest(digest) for digest in doomed if digest in index}
        if not gone:
            return
        affected = {index[digest].pack for digest in gone}
        moving = [
            (digest, location)
            for digest, location in sorted(index.items(), key=lambda item: item[1].offset)
            if location.pack in affected and digest not in gone
        ]
        by_dictionary: dict[Digest | None, list[tuple[Digest, bytes, Digest | None, int]]] = {}
        for digest, location in moving:
            frame = self.frame(digest)[1]
            self.decode_frame(digest, location, frame)  # never copy damage forward
            by_dictionary.setdefault(location.dictionary, []).append(
                (digest, frame, location.base, location.size)
            )
            keepalive()
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

    def delete_unindexed(self, older_than: float) -> int:
        """Remove packs no index names (left by a crash) older than ``older_than`` seconds."""
        named = {pack_key(location.pack) for location in self.index().values()}
        now, removed = self.backend.now(), 0
        for info in self.backend.list(PACK_PREFIX):
            if info.key not in named and now - info.mtime >= older_than:
                self.backend.delete(info.key)
                removed += 1
        if removed:
            self.backend.sync()
        return removed


def _resolve_bases(found: dict[Digest, Location]) -> dict[Digest, Location]:
    """Replace each base prefix by the one indexed object id it starts with."""
    prefixes: dict[str, list[Digest]] = {}
    for location in found.values():
        if location.base is not None and len(location.base) != DIGEST_LENGTH:
            prefixes.setdefault(location.base, [])
    if not prefixes:
        return found
    width = BASE_PREFIX_BYTES * 2
    for digest in found:
        matches = prefixes.get(digest[:width])
        if matches is not None:
            matches.append(digest)
    for digest, location in found.items():
        if location.base is not None and len(location.base) != DIGEST_LENGTH:
            matches = prefixes[location.base]
            if len(matches) == 1:
                found[digest] = msgspec.structs.replace(location, base=matches[0])
    return found
