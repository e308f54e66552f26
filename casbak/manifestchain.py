"""Whole manifests rebuilt from chains of delta manifests, with a bounded cache.

A stored manifest is whole or the differences from its parent
(docs/FORMAT.md, Manifests). Rebuilding walks parents back to a whole one or
to one rebuilt before, then applies the deltas forward, and proves the result
by hashing it to its snapshot id.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import msgspec

from casbak.errors import ChecksumMismatch, CorruptData, ObjectMissing, ParentMissing
from casbak.ids import PLAIN, Digest, Hasher
from casbak.model import Manifest, ManifestEntry, encode_manifest
from casbak.storedmanifest import StoredManifest, rebuild

MAX_PARENTS = 256
"""Longest parent chain followed; writers keep chains far shorter, so more means a loop."""
_ENTRY_CACHE = 96
_REREADS = 3
"""Times a chain is read again (after a fresh listing) when an ancestor went missing."""


class ManifestChains:
    """Rebuilds manifests; remembers recent entries, proven or not, so chains stay short to walk."""

    def __init__(
        self,
        read: Callable[[Digest, str], StoredManifest],
        keys_naming: Callable[[Digest], dict[Digest, str]],
        relist: Callable[[], object],
        hasher: Hasher = PLAIN,
    ) -> None:
        self._read = read
        self._hasher = hasher
        self._keys_naming = keys_naming
        self._relist = relist
        self._entries: OrderedDict[Digest, dict[str, ManifestEntry]] = OrderedDict()
        self._unproven: OrderedDict[Digest, dict[str, ManifestEntry]] = OrderedDict()

    def rebuild(self, snapshot_id: Digest, key: str) -> Manifest:
        """A manifest with every entry, proven by hashing it to its id.

        Walks parents back to a whole manifest or a cached one, then applies
        the deltas forward. Only the manifest asked for is hashed here; an
        ancestor is proven when it is asked for itself, and a damaged ancestor
        shows anyway, as its rebuilt descendant fails its own hash.
        """
        chain, base = self._settled_chain(snapshot_id, key)
        manifest: Manifest | None = None
        for step_id, step_key, document in reversed(chain):
            manifest = rebuild(document, base)
            base = manifest.entries
            if step_id != snapshot_id:
                self._remember(self._unproven, step_id, base)
                continue
            actual = self._hasher(encode_manifest(manifest))
            if actual != step_id:
                raise ChecksumMismatch(f"manifest {step_key}", step_id, actual)
            self._remember(self._entries, step_id, base)
        if manifest is None:
            assert base is not None
            document = self._read(snapshot_id, key)
            manifest = msgspec.structs.replace(rebuild(document, None), entries=base)
        return manifest

    def _settled_chain(
        self, snapshot_id: Digest, key: str
    ) -> tuple[list[tuple[Digest, str, StoredManifest]], dict[str, ManifestEntry] | None]:
        """`_chain`, read again (after a fresh listing) when an ancestor goes missing.

        Readers take no lock, and a cleanup rewrites a delta against a kept
        ancestor before it removes the delta's parent: the rewritten delta no
        longer needs what went. The delta itself missing is raised at once (it
        was removed); an ancestor missing on every read is damage.
        """
        for attempt in range(1, _REREADS + 1):
            try:
                return self._chain(snapshot_id, key)
            except ObjectMissing as exc:
                if exc.key == key:
                    raise
                if attempt == _REREADS:
                    raise ParentMissing(
                        f"manifest {key}", f"{exc.key}, which it builds on, is missing"
                    ) from None
            except ParentMissing:
                if attempt == _REREADS:
                    raise
            self._relist()
        raise AssertionError("unreachable")

    def _chain(
        self, snapshot_id: Digest, key: str
    ) -> tuple[list[tuple[Digest, str, StoredManifest]], dict[str, ManifestEntry] | None]:
        """Stored manifests from this one back to a whole or cached one, and that base."""
        chain: list[tuple[Digest, str, StoredManifest]] = []
        current: tuple[Digest, str] | None = (snapshot_id, key)
        while current is not None:
            cached = self._entries.get(current[0])
            if cached is None and current[0] != snapshot_id:
                cached = self._unproven.get(current[0])
            if cached is not None:
                return chain, cached
            document = self._read(*current)
            chain.append((*current, document))
            if len(chain) > MAX_PARENTS:
                raise CorruptData(f"manifest {key}", "parent chain is too long (a loop?)")
            if not document.parent:
                break
            parent_id = Digest(document.parent.hex())
            keys = self._keys_naming(parent_id)
            if parent_id not in keys:
                raise ParentMissing(f"manifest {current[1]}", f"its parent {parent_id} is missing")
            current = (parent_id, keys[parent_id])
        return chain, None

    @staticmethod
    def _remember(
        cache: OrderedDict[Digest, dict[str, ManifestEntry]],
        snapshot_id: Digest,
        entries: dict[str, ManifestEntry],
    ) -> None:
        cache[snapshot_id] = entries
        while len(cache) > _ENTRY_CACHE:
            cache.popitem(last=False)
