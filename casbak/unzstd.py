"""Plain zstd frames decompressed by one decompressor per thread.

Making a decompressor costs about 17 us, as much as decompressing a small
frame: gc and verify read every manifest, catalog part and index file, and
made one for each (3.4 s of a gc over 100,000 manifests).
"""

from __future__ import annotations

import threading

import zstandard

_KEPT = threading.local()


def decompress(data: bytes, max_output_size: int = 0) -> bytes:
    """``data``'s one zstd frame decompressed (ZstdError when it is not one)."""
    found: zstandard.ZstdDecompressor | None = getattr(_KEPT, "decompressor", None)
    if found is None:
        found = _KEPT.decompressor = zstandard.ZstdDecompressor()
    return found.decompress(data, max_output_size=max_output_size)
