"""Zstd dictionaries: loaded and checked against their names, chosen, trained.

Small JSON documents of one shape compress far better with a dictionary
trained on them. A repository has at most one in use: the first sound one
stored; a damaged one is passed over and never relied on by new frames.
"""

from __future__ import annotations

from collections.abc import Iterable

import zstandard

from casbak.backends.base import Backend
from casbak.errors import IntegrityError, ObjectMissing
from casbak.ids import Digest, hash_bytes
from casbak.layout import DICTIONARY_PREFIX, dictionary_key
from casbak.sealer import Sealer
from casbak.store.hashnamed import get_checked, put_once

TRAIN_FROM = 64
"""Fewest new documents a dictionary is trained from."""
DICTIONARY_BYTES = 16 * 1024
_TRAIN_ON = 4000
"""Most documents a dictionary is trained on (more only cost time)."""


class Dictionaries:
    """The repository's dictionaries, each checked against its name once and then kept."""

    def __init__(self, backend: Backend, sealer: Sealer | None = None) -> None:
        self._backend = backend
        self._sealer = sealer
        self._loaded: dict[str, zstandard.ZstdCompressionDict] = {}

    def get(self, dictionary_id: str) -> zstandard.ZstdCompressionDict:
        """A trained dictionary, checked against its name."""
        found = self._loaded.get(dictionary_id)
        if found is None:
            key = dictionary_key(dictionary_id)
            what = f"dictionary {dictionary_id}"
            data = get_checked(self._backend, key, dictionary_id, what)
            if self._sealer is not None:
                data = self._sealer.open("dict", b"", data, what)
            found = zstandard.ZstdCompressionDict(data)
            self._loaded[dictionary_id] = found
        return found

    def for_new_frames(self, samples: Iterable[bytes]) -> Digest | None:
        """The dictionary new frames use: the stored one, else one trained now, else None.

        One is trained from ``samples`` (the new documents) when there are at
        least TRAIN_FROM of them; it is durable before this returns.
        """
        for info in self._backend.list(DICTIONARY_PREFIX):
            dictionary_id = Digest(info.key.removeprefix(DICTIONARY_PREFIX))
            try:
                self.get(dictionary_id)
            except (IntegrityError, ObjectMissing):
                continue  # damaged: new frames must not depend on it (nor fail on it)
            return dictionary_id
        documents: list[bytes | bytearray | memoryview] = [sample for sample in samples if sample]
        if len(documents) < TRAIN_FROM:
            return None
        try:
            trained = zstandard.train_dictionary(DICTIONARY_BYTES, documents[:_TRAIN_ON])
        except zstandard.ZstdError:
            return None  # too little variety to learn from; compress without
        data = trained.as_bytes()
        if self._sealer is not None:
            data = self._sealer.seal("dict", b"", data)
        dictionary_id = hash_bytes(data)
        put_once(self._backend, dictionary_key(dictionary_id), data)
        self._backend.sync()
        return dictionary_id
