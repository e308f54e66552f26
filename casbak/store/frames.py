"""Pack frames: the zstd format they are written in and the bound on delta chains.

A frame holds one object, compressed with the repository's dictionary, with
none, or against another object's canonical bytes (a delta); docs/FORMAT.md,
"Packs and frames".
"""

from __future__ import annotations

import zstandard

from casbak.ids import Digest

MAX_CHAIN = 32
"""Longest run of delta objects a writer builds (a version on a full chain starts anew).

Deeper chains store real tenant histories in less: a look-alike tenant's first
version already sits on a chain, and 8 left little room for its later edits
(the corpus's packs: 1.42 MB at 8, 1.04 MB at 32). Readers follow up to four
times this before calling it a loop; releases that wrote at most 8 followed 32,
so they read these chains too."""
FRAME_FORMAT = zstandard.FORMAT_ZSTD1_MAGICLESS
"""Pack frames leave out the 4-byte magic number (RFC 8878 section 3.1.1)."""

Frame = tuple[Digest, bytes, Digest | None, int]
"""A frame to write into a pack: object id, frame bytes, delta base (None: none), size."""


def standalone_frame(canonical: bytes) -> bytes:
    """A document as a plain zstd frame, readable without the repository (what bundles carry)."""
    return zstandard.ZstdCompressor(level=3, write_checksum=False).compress(canonical)


def compression_params(level: int) -> zstandard.ZstdCompressionParameters:
    """The settings of every frame written into a pack, at a zstd level."""
    # The index knows each frame's pack, dictionary and size: the magic
    # number and dictionary id would only repeat that, 8 bytes a frame.
    return zstandard.ZstdCompressionParameters.from_level(
        level,
        format=FRAME_FORMAT,
        write_checksum=False,
        write_dict_id=False,
        write_content_size=True,
    )


def raw_content(base: bytes) -> zstandard.ZstdCompressionDict:
    """A base object's canonical bytes as the dictionary its deltas are compressed with."""
    return zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
