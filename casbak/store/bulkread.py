"""Reading many objects at once: pack by pack, in parallel, as few requests as possible.

Verify, export and restore read thousands of objects. One request per object
would pay a round trip each; instead the wanted frames (and their delta
bases) are grouped by pack, nearby frames of a pack fetched by one ranged
read, packs in parallel, packs of bases before the packs of their deltas, and
a decoded base kept until its last delta is decoded.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import NamedTuple

from casbak.backends.base import Backend
from casbak.errors import CasbakError, CorruptData, ObjectMissing
from casbak.ids import Digest
from casbak.layout import pack_key
from casbak.objects import parallel_map
from casbak.store.indexfile import Location
from casbak.store.indexview import FEW, IndexView
from casbak.store.reader import ObjectReader

LOCAL_CONCURRENCY = 1
"""Pack reads in flight on backends that name no concurrency of their own (local, memory)."""
RANGE_GAP = 256 * 1024
"""Wanted frames of one pack closer than this are fetched by one request: the
bytes between them cost less than another round trip."""
READ_AHEAD = 16 * 1024 * 1024
"""Bytes of fetched packs and ranges a bulk read holds before it has decoded them."""
_KEPT_BASES = 32 * 1024 * 1024
"""Decoded objects a bulk read keeps because objects still to come are deltas of them."""


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


class BulkReader:
    """Many objects' canonical bytes, read pack by pack and verified like single reads."""

    def __init__(
        self, backend: Backend, index: IndexView, reader: ObjectReader, concurrency: int
    ) -> None:
        self._backend = backend
        self._index = index
        self._reader = reader
        self._concurrency = concurrency

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
            self._reader.refresh()  # a writer may have indexed them since we loaded
            located = self._closure(wanted)
        for digest in wanted:
            if digest not in located:
                yield digest, ObjectMissing(f"object {digest}")
        yield from self._read_located(set(wanted), located, each_pack)

    def _closure(self, wanted: list[Digest]) -> dict[Digest, Location]:
        """The locations of the wanted objects and, transitively, of their delta bases."""
        index = self._index
        find = index.locate if not index.decoded and len(wanted) <= FEW else index.index().get
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
        decoder = _BulkDecoder(self._reader, located)
        fetched = parallel_map(
            self._fetch, plan, self._concurrency, cost=lambda fetch: fetch.size, budget=READ_AHEAD
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
                return self._backend.get(key)
            return self._backend.get_range(key, fetch.start, fetch.length)
        except CasbakError as exc:
            return exc


class _BulkDecoder:
    """The decoding half of `BulkReader.read_many`: a pack's frames at a time, bases kept."""

    def __init__(self, reader: ObjectReader, located: dict[Digest, Location]) -> None:
        self.reader = reader
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
                    result = self.reader.read(digest, depth)
                elif isinstance(frame, CasbakError):
                    raise frame
                elif len(frame) != location.length:
                    raise CorruptData(f"object {digest}", f"pack {location.pack} is cut short")
                else:
                    result = self.reader.decode_frame(digest, location, frame, depth, self._base_of)
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
        return self.reader.read(digest, depth)

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
        items = by_pack[pack]
        if len(items) > 1:
            items.sort(key=lambda item: (item[1].offset, item[0]))
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
