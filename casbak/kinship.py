"""Which document of a batch a new one most resembles: the base to compress it against.

A tenant's new version is compressed against its own earlier version. A
tenant seen for the first time has none, yet tenant configurations share
most of their bytes with each other (default flows, roles, scopes): the
first snapshot of a few hundred realm exports halves when each document is a
delta of the most similar one stored before it in the same snapshot.

Similarity is estimated from a bottom-k sketch: canonical JSON is compact,
so splitting it before each ``,"`` gives roughly one token per field with its
value; the SKETCH_SIZE smallest token hashes stand for the document, and two
documents sharing more of those share more fields. Only documents of the same
batch are candidates (nothing about them is stored), the most recent POOL of
them, so choosing costs at most POOL set intersections per document.
"""

from __future__ import annotations

import heapq
import zlib
from collections import deque

from casbak.ids import Digest

SKETCH_SIZE = 64
POOL = 128
"""How many of the batch's most recent documents a new one is compared with."""
MIN_SHARED = SKETCH_SIZE // 8
"""Fewer shared sketch hashes than this: too unlike to be worth a delta."""

Sketch = frozenset[int]


def sketch(canonical: bytes) -> Sketch:
    """The SKETCH_SIZE smallest hashes of a canonical document's field tokens."""
    return frozenset(heapq.nsmallest(SKETCH_SIZE, set(map(zlib.crc32, canonical.split(b',"')))))


class Kin:
    """The batch's documents so far, to find the nearest one for the next."""

    def __init__(self, max_depth: int) -> None:
        self._max_depth = max_depth
        self._pool: deque[tuple[Sketch, Digest]] = deque(maxlen=POOL)
        self.depths: dict[Digest, int] = {}
        """Delta steps from each batch document to a standalone frame."""

    def nearest(self, shape: Sketch) -> Digest | None:
        """The pooled document sharing most of ``shape``, if it shares at least MIN_SHARED."""
        best, shared = None, MIN_SHARED - 1
        for other, digest in self._pool:
            common = len(shape & other)
            if common > shared:
                best, shared = digest, common
        return best

    def add(self, digest: Digest, shape: Sketch, depth: int) -> None:
        """Remember a document as encoded at ``depth``; one at the chain bound is no base."""
        self.depths[digest] = depth
        if depth < self._max_depth:
            self._pool.append((shape, digest))
