"""Encoding documents as new frames: a delta where it pays, else dictionary or plain.

A new version of a tenant already stored is compressed against that earlier
version as a raw-content dictionary, which turns a small edit into a few
dozen bytes, as long as the chain of deltas stays short (MAX_CHAIN). Anything
else is compressed with the repository's trained dictionary, if it has one.
"""

from __future__ import annotations

import zstandard

from casbak.errors import IntegrityError
from casbak.ids import Digest
from casbak.sealer import Sealer
from casbak.store.dictionaries import Dictionaries
from casbak.store.frames import MAX_CHAIN, compression_params, raw_content
from casbak.store.indexview import IndexView
from casbak.store.reader import ObjectReader

LARGE_DOCUMENT = 1024 * 1024
"""Documents above this many bytes are compressed at LARGE_DOCUMENT_LEVEL at most."""
LARGE_DOCUMENT_LEVEL = 3


class FrameEncoder:
    """Frames for new objects at the repository's compression level."""

    def __init__(
        self,
        level: int,
        index: IndexView,
        reader: ObjectReader,
        dictionaries: Dictionaries,
        sealer: Sealer | None = None,
    ) -> None:
        self._level = level
        self._sealer = sealer
        self._index = index
        self._reader = reader
        self._dictionaries = dictionaries
        self._shared: dict[str, zstandard.ZstdCompressor] = {}
        """Compressors of standalone frames, by dictionary id ("" for none) and level."""

    def params(self, size: int = 0) -> zstandard.ZstdCompressionParameters:
        """The settings a frame of a document of ``size`` bytes is written with."""
        return compression_params(self._level_for(size))

    def _level_for(self, size: int) -> int:
        # A high level's match window and tables on a multi-MiB document cost
        # tens of MiB of memory for little gain; tenant documents are far smaller.
        return min(self._level, LARGE_DOCUMENT_LEVEL) if size > LARGE_DOCUMENT else self._level

    def encode(
        self, digest: Digest, canonical: bytes, base: Digest | None, dictionary_id: Digest | None
    ) -> tuple[bytes, Digest | None]:
        """A frame for object ``digest`` and the base it is a delta of (None: standalone).

        ``base`` is only a suggestion: it is used when it is stored, reads
        back, and is less than MAX_CHAIN deltas deep. In an encrypted
        repository the frame is sealed for the object it holds.
        """
        frame: bytes | None = None
        if base is not None:
            frame = self._delta(canonical, base)
        if frame is None:
            base = None
            frame = self._standalone(dictionary_id, len(canonical)).compress(canonical)
        return self._sealed(digest, frame), base

    def _sealed(self, digest: Digest, frame: bytes) -> bytes:
        if self._sealer is None:
            return frame
        return self._sealer.seal_frame(bytes.fromhex(digest), frame)

    def encode_near(
        self,
        digest: Digest,
        canonical: bytes,
        kin: Digest,
        kin_bytes: bytes,
        dictionary_id: Digest | None,
    ) -> tuple[bytes, Digest | None]:
        """A frame for a document: a delta of ``kin`` (another tenant) when that is smaller.

        Unlike an earlier version of the same tenant, a look-alike may share
        less than the dictionary does, so both are tried.
        """
        alone = self._standalone(dictionary_id, len(canonical)).compress(canonical)
        delta = self._delta_of(canonical, kin_bytes)
        if len(delta) < len(alone):
            return self._sealed(digest, delta), kin
        return self._sealed(digest, alone), None

    def encode_versioned(
        self, digest: Digest, canonical: bytes, base: Digest, dictionary_id: Digest | None
    ) -> tuple[bytes, Digest | None]:
        """`encode` against an earlier version; against its chain's root when the chain is full.

        A long history would otherwise store every MAX_CHAIN-th version
        whole; the root (the first standalone frame down the chain) is often
        an older look of the same document, far closer than a dictionary, but
        may be a look-alike tenant's, so the smaller of the two is kept.
        """
        if self._index.locate(base) is not None and self._index.chain_depth(base) >= MAX_CHAIN:
            root = self._root_of(base)
            if root is not None:
                try:
                    root_bytes = self._reader.read(root)
                except IntegrityError:
                    root_bytes = None
                if root_bytes is not None:
                    return self.encode_near(digest, canonical, root, root_bytes, dictionary_id)
        return self.encode(digest, canonical, base, dictionary_id)

    def _root_of(self, digest: Digest) -> Digest | None:
        for _ in range(MAX_CHAIN * 4):
            location = self._index.locate(digest)
            if location is None:
                return None
            if location.base is None:
                return None if location.is_delta else digest
            digest = location.base
        return None

    def _delta(self, canonical: bytes, base: Digest) -> bytes | None:
        if self._index.locate(base) is None or self._index.chain_depth(base) >= MAX_CHAIN:
            return None
        try:
            earlier = self._reader.read(base)
        except IntegrityError:
            return None
        return self._delta_of(canonical, earlier)

    def _delta_of(self, canonical: bytes, earlier: bytes) -> bytes:
        compressor = zstandard.ZstdCompressor(
            compression_params=self.params(len(canonical)), dict_data=raw_content(earlier)
        )
        return compressor.compress(canonical)

    def _standalone(self, dictionary_id: Digest | None, size: int) -> zstandard.ZstdCompressor:
        level = self._level_for(size)
        key = f"{dictionary_id or ''}:{level}"
        shared = self._shared.get(key)
        if shared is None:
            if dictionary_id is not None:
                shared = zstandard.ZstdCompressor(
                    compression_params=compression_params(level),
                    dict_data=self._dictionaries.get(dictionary_id),
                )
            else:
                shared = zstandard.ZstdCompressor(compression_params=compression_params(level))
            self._shared[key] = shared
        return shared
