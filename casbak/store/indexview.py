"""The index: every index file of the repository merged into one view of where objects are.

Index files are listed and parsed once, then searched by bisection for a few
lookups or decoded whole for many. When two files name an object, the later
one wins (a healed copy). Records name a delta's base by an 8-byte prefix; the
view resolves each to the one indexed object id that starts with it (lookups:
only the records they return; the whole index: all of them), and says so
explicitly when none or several do.

The view keeps itself current: writers tell it what they add and which files
they replace, and a reader that finds a pack or a base gone has it load again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from casbak.backends.base import Backend
from casbak.errors import CasbakError, ObjectMissing
from casbak.ids import Digest
from casbak.layout import INDEX_PREFIX
from casbak.sealer import Sealer
from casbak.store.frames import MAX_CHAIN
from casbak.store.hashnamed import get_checked
from casbak.store.indexfile import (
    BASE_PREFIX_BYTES,
    IndexFile,
    Location,
    encode_index,
    parse_index,
)

_Record = Location | tuple[IndexFile, int]
"""A record as lookups keep it: decoded (written here), or where to decode it from."""
FEW = 32
"""Up to this many lookups bisect the index files; more decode the whole index once."""
_LISTINGS = 20
"""Listings tried before giving up on one that stays put while index files come and go."""


class IndexView:
    """Where each object is, as the index files say: loaded when first asked, kept current."""

    def __init__(self, backend: Backend, sealer: Sealer | None = None) -> None:
        self._sealer = sealer
        self._backend = backend
        self._lock = threading.RLock()
        self._parsed: list[tuple[str, IndexFile]] | None = None
        self._merged: dict[Digest, Location] | None = None
        self._raw: dict[Digest, _Record] | None = None
        """Every record with its base prefix left unresolved: enough for lookups, which
        resolve only what they return. Resolving all of them (`index`) cost a snapshot
        0.13 s at 49,000 objects, to answer about 2,500."""
        self._prefixes: dict[str, list[Digest]] | None = None
        """Indexed ids by base prefix, for resolving `_raw`'s records (built when needed)."""
        self._overlay: dict[Digest, Location] = {}
        """Records written here while the whole index is not decoded yet."""
        self._keys: list[str] = []
        """The index files in use: those loaded, then those written here."""
        self.problems: list[tuple[str, CasbakError]] = []
        """Index files left out of the view (damaged), each with what is wrong with it."""
        self._cache: dict[str, IndexFile] = {}
        """Parsed index files by key: a file is named by its content, so parsing it once holds."""

    @property
    def decoded(self) -> bool:
        """Whether the whole index is decoded, so that any lookup costs nothing."""
        return self._merged is not None

    def file_keys(self) -> list[str]:
        """The keys of the index files in use: those loaded, then those written here."""
        return list(self._keys)

    def index(self) -> dict[Digest, Location]:
        """Every indexed object's location (decoded once, then kept up to date)."""
        if self._merged is None:
            found: dict[Digest, Location] = {}
            for key, parsed in self.files():
                try:
                    found.update(parsed.locations())
                except CasbakError as exc:
                    self.problems.append((key, exc))
            found.update(self._overlay)
            self._merged = _resolve_bases(found)
            self._raw = self._prefixes = None
        return self._merged

    def _records(self) -> dict[Digest, _Record]:
        """Every record, later files winning, none decoded yet (listed once)."""
        if self._raw is None:
            found: dict[Digest, _Record] = {}
            for _, parsed in self.files():
                try:
                    found.update(parsed.numbered())
                except CasbakError:
                    continue  # its problem is reported when the whole index is decoded
            found.update(self._overlay)
            self._raw = found
        return self._raw

    def _resolved(self, digest: Digest, record: _Record) -> Location:
        """A record of `_records` decoded (once), its base prefix settled (`_resolve_bases`)."""
        if isinstance(record, Location):
            location = record
        else:
            location = self._records()[digest] = record[0].record(record[1])
        if location.unresolved_base is None:
            return location
        if self._prefixes is None:
            self._prefixes = {}
            _file_by_prefix(self._prefixes, self._records())
        return location.resolved(self._prefixes.get(location.unresolved_base, ()))

    def locate(self, digest: str) -> Location | None:
        """One object's location; before the whole index is needed, without decoding it."""
        if self._merged is not None:
            return self._merged.get(Digest(digest))
        if self._raw is not None:
            found = self._raw.get(Digest(digest))
            return None if found is None else self._resolved(Digest(digest), found)
        found = self._overlay.get(Digest(digest))
        if found is not None:
            return found
        for _, parsed in reversed(self.files()):
            try:
                found = parsed.find(digest)
            except CasbakError:
                continue  # its problem is reported when the whole index is decoded
            if found is not None:
                return self._resolve_one(found)
        return None

    def locate_many(self, digests: Iterable[Digest]) -> dict[Digest, Location]:
        """The locations of those of ``digests`` that are stored."""
        wanted = list(digests)
        if self._merged is None and self._raw is None and len(wanted) <= FEW:
            found = {digest: self.locate(digest) for digest in wanted}
            return {digest: location for digest, location in found.items() if location}
        if self._merged is None:
            records = self._records()
            return {
                digest: self._resolved(digest, records[digest])
                for digest in wanted
                if digest in records
            }
        index = self._merged
        return {digest: index[digest] for digest in wanted if digest in index}

    def candidates(self, prefix: str) -> list[Digest]:
        """Every indexed object id that starts with ``prefix`` (an unresolved base's)."""
        return [digest for digest in self.index() if digest.startswith(prefix)]

    def chain_depth(self, digest: str) -> int:
        """How many delta steps lead from this object to a standalone one."""
        depth = 0
        location = self.locate(digest)
        while location is not None and location.is_delta and depth <= MAX_CHAIN * 4:
            depth += 1
            location = None if location.base is None else self.locate(location.base)
        return depth

    def index_file_of(self, digest: str) -> str | None:
        """The index file whose record of an object wins, or None when none names it."""
        for key, parsed in reversed(self.files()):
            try:
                if parsed.find(digest) is not None:
                    return key
            except CasbakError:
                continue
        return None

    def files(self) -> list[tuple[str, IndexFile]]:
        """The parsed index files, oldest first (a later record wins)."""
        if self._parsed is None:
            self._parsed = self._load_files()
            self._keys = [key for key, _ in self._parsed]
        return self._parsed

    def read_file(self, key: str) -> dict[Digest, Location]:
        """Read one index file, checking it hashes to its name."""
        try:
            return self._parse(key).locations()
        except ObjectMissing:
            if key in self._keys:
                self.reload()  # another writer merged it away: what was loaded is behind
            raise

    def reload(self) -> None:
        """Forget what was loaded: the next question lists and reads the index files again."""
        with self._lock:
            self._merged = None
            self._raw = self._prefixes = None
            self._parsed = None
            self._overlay = {}

    def added(self, locations: Mapping[Digest, Location]) -> None:
        """Records a writer has just made durable in a new index file (see `file_written`)."""
        with self._lock:
            (self._merged if self._merged is not None else self._overlay).update(locations)
            if self._raw is not None:
                if self._prefixes is not None:  # a new id may be the one a prefix names
                    new = [digest for digest in locations if digest not in self._raw]
                    _file_by_prefix(self._prefixes, new)
                self._raw.update(locations)

    def file_written(self, key: str) -> None:
        """A writer has made an index file durable."""
        self._keys.append(key)

    def files_replaced(
        self,
        key: str,
        locations: Mapping[Digest, Location] | None,
        replaced: Iterable[str] | None = None,
    ) -> None:
        """A writer has replaced index files (``replaced``, else all in use) by the file ``key``.

        With ``locations`` (a sweep), that file holds exactly these records,
        which become the whole index; without, it holds what the old ones did.
        """
        with self._lock:
            if replaced is None:
                self._keys = [key]
            else:
                gone = set(replaced)
                self._keys = [k for k in self._keys if k not in gone and k != key] + [key]
                self._parsed = None
                self._raw = self._prefixes = None  # they hold the replaced files' records
            if locations is not None:
                self._merged = dict(locations)
                self._raw = self._prefixes = None
                self._overlay = {}
                self._parsed = None  # the files parsed are gone; list again when asked

    def _load_files(self) -> list[tuple[str, IndexFile]]:
        # A merge or a gc may delete index files between the listing and the
        # reads; their records are then in a newer file, so list again. A
        # damaged file is skipped and remembered: its objects count as absent
        # (a writer stores them again; verify reports the file).
        for attempt in range(_LISTINGS):
            found: list[tuple[str, IndexFile]] = []
            problems: list[tuple[str, CasbakError]] = []
            # Oldest first, so a newer record (a healed copy) wins.
            listed = sorted(self._backend.list(INDEX_PREFIX), key=lambda i: (i.mtime, i.key))
            keys = [info.key for info in listed]
            try:
                for key in keys:
                    try:
                        found.append((key, self._parse(key)))
                    except ObjectMissing:
                        raise
                    except CasbakError as exc:
                        problems.append((key, exc))
            except ObjectMissing:
                continue
            # A folder listing taken while files are created and removed may
            # miss both a merged file and the file it replaced; a second,
            # identical listing proves the first was complete.
            relisted = [info.key for info in self._backend.list(INDEX_PREFIX)]
            if relisted != sorted(keys) and attempt < _LISTINGS - 1:
                continue
            self.problems = problems
            self._cache = {key: self._cache[key] for key in keys if key in self._cache}
            return found
        raise ObjectMissing(INDEX_PREFIX)

    def encode_file(self, locations: Mapping[Digest, Location]) -> bytes:
        """The bytes of an index file of ``locations`` (sealed in an encrypted repository)."""
        stored = encode_index(locations.items())
        if self._sealer is not None:
            stored = self._sealer.seal("index", b"", stored)
        return stored

    def _parse(self, key: str) -> IndexFile:
        cached = self._cache.get(key)
        if cached is not None:
            if self._backend.stat(key) is None:
                raise ObjectMissing(key)  # merged away by another writer since
            return cached
        name = key.removeprefix(INDEX_PREFIX)
        stored = get_checked(self._backend, key, name, f"index {key}")
        if self._sealer is not None:
            stored = self._sealer.open("index", b"", stored, f"index {key}")
        parsed = self._cache[key] = parse_index(stored, f"index {key}")
        return parsed

    def record_count(self, key: str) -> int:
        """How many records an index file holds (parsed once)."""
        return self._parse(key).count

    def _resolve_one(self, location: Location) -> Location:
        """A base prefix resolved without decoding the whole index (left as is if ambiguous)."""
        prefix = location.unresolved_base
        if prefix is None:
            return location
        matches = {digest for digest in self._overlay if digest.startswith(prefix)}
        for _, parsed in self.files():
            try:
                matches.update(parsed.starting_with(prefix))
            except CasbakError:
                continue
        return location.resolved(matches)


def _file_by_prefix(prefixes: dict[str, list[Digest]], digests: Iterable[Digest]) -> None:
    """Add each id to the ids that share its base prefix (what a record names a base by)."""
    width = BASE_PREFIX_BYTES * 2
    for digest in digests:
        prefixes.setdefault(digest[:width], []).append(digest)


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
