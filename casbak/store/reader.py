"""Reading objects one at a time: a frame cut from its pack, decompressed, re-hashed.

A delta frame needs its base's canonical bytes first, read the same way (the
chain is short). Recently read packs and decoded objects are kept, since
bases often sit in an older pack and many deltas share one. Readers take no
lock, so a gc may move an object after it was located: a pack or base found
gone means the index is loaded again and the object looked up anew.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import msgspec
import zstandard

from casbak.backends.base import Backend
from casbak.errors import BaseMissing, CorruptData, IntegrityError, ObjectMissing
from casbak.ids import PLAIN
from casbak.layout import pack_key
from casbak.objects import MAX_OBJECT_BYTES, decompress_object
from casbak.sealer import Sealer
from casbak.store.dictionaries import Dictionaries
from casbak.store.frames import FRAME_FORMAT, MAX_CHAIN, raw_content
from casbak.store.indexfile import Location
from casbak.store.indexview import IndexView

_PACK_CACHE = 32 * 1024 * 1024
"""Bytes of packs kept in memory (bases often sit in an older pack)."""
_BASE_CACHE = 1024
"""Decoded objects kept (the bases of the next deltas, mostly)."""

BaseOf = Callable[[str, int], bytes]
"""Where a delta's base comes from: its canonical bytes by id and chain depth."""


class RecentBytes:
    """The most recently used values within a budget (at least one is always kept)."""

    def __init__(self, budget: int, weigh: Callable[[bytes], int]) -> None:
        self._budget = budget
        self._weigh = weigh
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        """The value kept for ``key``, if any (it becomes the most recent)."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> None:
        """Keep a value, letting go of the least recent ones past the budget."""
        with self._lock:
            self._discard(key)
            self._items[key] = value
            self._weight += self._weigh(value)
            while len(self._items) > 1 and self._weight > self._budget:
                self._weight -= self._weigh(self._items.popitem(last=False)[1])

    def pop(self, key: str) -> None:
        """Let go of one value (it is no longer right)."""
        with self._lock:
            self._discard(key)

    def clear(self) -> None:
        """Let go of every value."""
        with self._lock:
            self._items.clear()
            self._weight = 0

    def _discard(self, key: str) -> None:
        value = self._items.pop(key, None)
        if value is not None:
            self._weight -= self._weigh(value)


class ObjectReader:
    """Objects read singly from their packs, each verified against its id."""

    def __init__(
        self,
        backend: Backend,
        index: IndexView,
        dictionaries: Dictionaries,
        sealer: Sealer | None = None,
    ) -> None:
        self._backend = backend
        self._index = index
        self._dictionaries = dictionaries
        self._sealer = sealer
        self._hasher = sealer.hasher if sealer is not None else PLAIN
        self._packs = RecentBytes(_PACK_CACHE, len)
        self.decoded = RecentBytes(_BASE_CACHE, lambda _: 1)
        """Canonical bytes of objects read lately, by id (hash-checked, so never stale)."""
        self._kept = threading.local()
        """Per thread, a decompressor per dictionary id ("" for none): making one costs
        about as much as decoding a small frame, and a dictionary's id names its bytes."""

    def refresh(self) -> None:
        """Load the index again and read packs afresh (another process may have changed them)."""
        self._index.reload()
        self._packs.clear()

    def pack_bytes(self, pack_id: str) -> bytes:
        """A pack's bytes, from a small cache."""
        data = self._packs.get(pack_id)
        if data is None:
            data = self._backend.get(pack_key(pack_id))
            self._packs.put(pack_id, data)
        return data

    def pack_rewritten(self, pack_id: str) -> None:
        """A writer replaced a damaged pack's file: what was read of it is wrong."""
        self._packs.pop(pack_id)

    def frame(self, digest: str) -> tuple[Location, bytes]:
        """An object's location and stored frame.

        A gc may have moved the object to a new pack since the index was
        loaded (readers take no lock): a vanished pack means load it again.
        """
        location = self._index.locate(digest)
        if location is None:
            self.refresh()  # a writer may have indexed it since we loaded
            location = self._index.locate(digest)
        if location is None:
            raise ObjectMissing(f"object {digest}")
        try:
            data = self.pack_bytes(location.pack)
        except ObjectMissing:
            self.refresh()
            moved = self._index.locate(digest)
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
        canonical = self.decoded.get(digest)
        if canonical is None:
            canonical = self._decode_current(digest, depth)
            self.decoded.put(digest, canonical)
        return canonical

    def _decode_current(self, digest: str, depth: int) -> bytes:
        location, frame = self.frame(digest)
        try:
            return self.decode_frame(digest, location, frame, depth)
        except BaseMissing:
            # A gc may have re-encoded the object and removed its old base
            # after we located it (readers take no lock): look again.
            self.refresh()
            if self._index.locate(digest) in (None, location):
                raise
            location, frame = self.frame(digest)
            return self.decode_frame(digest, location, frame, depth)

    def decode_frame(
        self,
        digest: str,
        location: Location,
        frame: bytes,
        depth: int = 0,
        base_of: BaseOf | None = None,
    ) -> bytes:
        """Open, decompress and re-hash a frame, refusing any size other than the indexed one.

        A delta's base comes from ``base_of`` (a bulk read's own decoded
        objects), else from `read`. In an encrypted repository a frame that
        does not open is DecryptionFailed, damage like a hash mismatch.
        """
        what = f"object {digest}"
        if depth > MAX_CHAIN * 4:
            raise CorruptData(what, "delta chain is too long (a loop?)")
        if location.size > MAX_OBJECT_BYTES:
            raise CorruptData(what, f"declares {location.size} bytes")
        if location.unresolved_base is not None:
            return self._decode_ambiguous(digest, location, frame, depth, base_of)[1]
        if location.base is not None:
            base = raw_content(self._base(what, location.base, depth, base_of))
            decompressor = zstandard.ZstdDecompressor(dict_data=base, format=FRAME_FORMAT)
        else:
            decompressor = self._decompressor(location.dictionary)
        if self._sealer is not None:
            frame = self._sealer.open_frame(bytes.fromhex(digest), frame, what)
        return decompress_object(
            digest,
            frame,
            location.size,
            decompressor=decompressor,
            frame_format=FRAME_FORMAT,
            hasher=self._hasher,
        )

    def _decompressor(self, dictionary_id: str | None) -> zstandard.ZstdDecompressor:
        """The calling thread's decompressor for frames of a dictionary (or none), made once."""
        kept: dict[str, zstandard.ZstdDecompressor] | None = getattr(self._kept, "by_id", None)
        if kept is None:
            kept = self._kept.by_id = {}
        found = kept.get(dictionary_id or "")
        if found is None:
            dictionary = None if dictionary_id is None else self._dictionaries.get(dictionary_id)
            found = zstandard.ZstdDecompressor(dict_data=dictionary, format=FRAME_FORMAT)
            kept[dictionary_id or ""] = found
        return found

    def _base(self, what: str, base: str, depth: int, base_of: BaseOf | None) -> bytes:
        """A delta's base, its trouble said as the delta's own."""
        try:
            return (base_of or self.read)(base, depth + 1)
        except ObjectMissing:
            raise BaseMissing(what, f"its delta base {base} is missing") from None
        except IntegrityError:
            # Said as such, so the damage is blamed on the base's frame, not this one.
            raise CorruptData(what, f"its delta base {base} is damaged") from None

    def _decode_ambiguous(
        self,
        digest: str,
        location: Location,
        frame: bytes,
        depth: int,
        base_of: BaseOf | None,
    ) -> tuple[Location, bytes]:
        """A delta whose base prefix names no object, or several: try each candidate.

        Returns the location with the base that fits, and the decoded bytes.
        """
        prefix = location.unresolved_base
        assert prefix is not None
        for candidate in self._index.candidates(prefix):
            resolved = msgspec.structs.replace(location, base=candidate, unresolved_base=None)
            try:
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
            location, canonical = self._decode_ambiguous(digest, location, frame, 0, None)
        else:
            canonical = self.decode_frame(digest, location, frame)
        # Kept: what settles frames one by one settles the deltas of this one next.
        self.decoded.put(digest, canonical)
        return location
