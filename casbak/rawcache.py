"""A per-repository cache from an input file's raw bytes to the tenants it held.

Most files of a frequent backup are byte-for-byte what they were last time.
Hashing raw bytes is far cheaper than decoding, checking and canonicalizing
JSON, so a file whose blake3 digest is known skips all of that, as git's
index saves re-hashing unchanged files. The cache lives outside the
repository (``$CASBAK_CACHE_DIR``, else ``$XDG_CACHE_HOME/casbak``, else
``~/.cache/casbak``), one file per repository id, and only ever saves work: a
missing, unreadable or damaged cache file is ignored, and a snapshot that
finds a cached object no longer stored reads its sources again in full.
An encrypted repository's cache file is sealed (it names tenants), bound to
the repository id.
"""

from __future__ import annotations

import os
from pathlib import Path

import blake3
import msgspec

from casbak.errors import DecryptionFailed
from casbak.ids import Digest
from casbak.outfiles import atomic_file
from casbak.sealer import Sealer

CACHE_VERSION = 1
MAX_FILES = 100_000
"""Entries a cache file keeps at most (about 70 bytes each)."""
KEEP_RUNS = 2
"""Entries kept: this many times the files the latest snapshot of each source read. Each
full export with a few edited or reformatted files adds entries; kept without bound, a
frequent backup's cache grew by ~80 entries a round and took longer to load and save."""
MAX_SOURCES = 64
"""Sources (sets of files and folders a snapshot read) whose latest size is remembered."""
_ENCODER = msgspec.msgpack.Encoder()


class CachedTenant(msgspec.Struct, array_like=True, frozen=True):
    """A tenant a file held: id, object digest (32 bytes), canonical size."""

    tenant_id: str
    digest: bytes
    size: int


class _CacheFile(msgspec.Struct):
    version: int
    files: dict[bytes, list[CachedTenant]]
    sources: dict[str, int] = {}
    """Per source (its paths), the files its latest snapshot read, oldest first (absent in
    files written before it was kept)."""


_DECODER = msgspec.msgpack.Decoder(_CacheFile)


def cache_folder() -> Path:
    """Where cache files go, from the environment."""
    explicit = os.environ.get("CASBAK_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "casbak"


class RawCache:
    """Raw-bytes digest -> tenants, loaded from and saved to one file."""

    def __init__(self, path: Path | None, sealer: Sealer | None = None, name: bytes = b"") -> None:
        self.path = path
        self._sealer = sealer
        self._name = name
        self._known: dict[bytes, list[CachedTenant]] = {}
        self._seen: dict[bytes, list[CachedTenant]] = {}
        self._sources: dict[str, int] = {}
        if path is not None:
            self._known, self._sources = self._load(path)

    @classmethod
    def for_repository(cls, repository_id: str, sealer: Sealer | None = None) -> RawCache:
        """The cache of one repository (sealed with ``sealer``, for an encrypted one)."""
        path = cache_folder() / f"{repository_id}.raw"
        return cls(path, sealer, repository_id.encode("ascii"))

    def lookup(
        self, raw: bytes, namespace: bytes = b""
    ) -> tuple[bytes, list[tuple[str, Digest, int]] | None]:
        """The raw bytes' digest and, when known, the tenants they held.

        ``namespace`` keeps apart readings of the same bytes that find other
        tenants in them (one tenant per file, named by the file).
        """
        key = blake3.blake3(namespace + raw if namespace else raw).digest()
        found = self._known.get(key)
        if found is None:
            return key, None
        self._seen[key] = found
        return key, [(item.tenant_id, Digest(item.digest.hex()), item.size) for item in found]

    def remember(self, key: bytes, tenants: list[tuple[str, str, int]]) -> None:
        """Record what a file held (after it was read in full)."""
        self._seen[key] = [CachedTenant(t, bytes.fromhex(d), s) for t, d, s in tenants]

    def save(self, source: str = "") -> None:
        """Keep this run's files, then the most recent earlier ones; failing only loses speed.

        Earlier entries stay so that a one-tenant snapshot between two full
        exports, or the exports of other targets in between, do not make the
        next export decode everything again: up to `KEEP_RUNS` times the files
        the latest snapshot of each ``source`` read (its paths), newest first.
        """
        if self.path is None:
            return
        sources = {name: size for name, size in self._sources.items() if name != source}
        sources[source] = len(self._seen)
        while len(sources) > MAX_SOURCES:
            del sources[next(iter(sources))]
        limit = min(MAX_FILES, KEEP_RUNS * sum(sources.values()))
        kept = dict(self._seen)
        for key, tenants in self._known.items():
            if len(kept) >= limit:
                break
            kept.setdefault(key, tenants)
        data = _ENCODER.encode(_CacheFile(CACHE_VERSION, kept, sources))
        data += blake3.blake3(data).digest()
        if self._sealer is not None:
            data = self._sealer.seal("rawcache", self._name, data)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with atomic_file(self.path, durable=False) as handle:
                handle.write(data)
        except OSError:
            pass  # a cache that cannot be written only costs speed next time

    def _load(self, path: Path) -> tuple[dict[bytes, list[CachedTenant]], dict[str, int]]:
        try:
            stored = path.read_bytes()
            if self._sealer is not None:
                stored = self._sealer.open("rawcache", self._name, stored, str(path))
        except (OSError, DecryptionFailed):
            return {}, {}
        document = _decode(stored)
        if document is None:
            return {}, {}
        # A file written before sources were kept knows none: its next save keeps
        # only that snapshot's files and twice as many more, so an unbounded cache
        # shrinks once.
        return document.files, document.sources


def discard_plain(repository_id: str) -> bool:
    """Remove this machine's cache file of a repository if it is unsealed; whether it was.

    Once ``migrate --encrypt`` has converted a repository (same id), its
    plain cache names tenants in the clear and is of no use: the encrypted
    repository's ids are keyed, and it would ignore the file anyway (it does
    not open). A sealed file (written since) is kept.
    """
    path = cache_folder() / f"{repository_id}.raw"
    try:
        document = _decode(path.read_bytes())
        if document is None or not document.files:
            return False
        path.unlink()
    except OSError:
        return False
    return True


def _decode(stored: bytes) -> _CacheFile | None:
    data, check = stored[:-32], stored[-32:]
    if len(stored) < 32 or blake3.blake3(data).digest() != check:
        return None
    try:
        document = _DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if document.version != CACHE_VERSION or any(
        len(item.digest) != 32 for items in document.files.values() for item in items
    ):
        return None
    return document
