"""The pack store: documents in packs of zstd frames, found through index files.

One module per part of the engine (docs/FORMAT.md, "Packs and frames" and
"Index files"):

- `indexfile`: the index file codec (pure);
- `frames`: the frame format and the delta chain bound;
- `hashnamed`: files named by their hash, read checked and written once;
- `indexview`: the merged index, lookups and base resolution;
- `dictionaries`: zstd dictionaries, checked, chosen and trained;
- `reader`: one object read back, decoded and re-hashed;
- `bulkread`: many objects read pack by pack;
- `encoder`: new frames, deltas where they pay;
- `writer`: packs and index files written, index files merged;
- `repair`: healing (repair, rescue, supersede);
- `sweep`: removing objects from packs, clearing unindexed packs;
- `packstore`: `PackStore`, the facade composing them.
"""

from casbak.store.bulkread import LOCAL_CONCURRENCY, RANGE_GAP, READ_AHEAD
from casbak.store.dictionaries import DICTIONARY_BYTES, TRAIN_FROM
from casbak.store.frames import FRAME_FORMAT, MAX_CHAIN, Frame, standalone_frame
from casbak.store.indexfile import Location
from casbak.store.indexview import FEW
from casbak.store.packstore import PackStore
from casbak.store.sweep import SweepResult
from casbak.store.writer import MAX_PACK_BYTES, MERGE_INDEXES_OVER, StoreResult

__all__ = [
    "DICTIONARY_BYTES",
    "FEW",
    "FRAME_FORMAT",
    "LOCAL_CONCURRENCY",
    "MAX_CHAIN",
    "MAX_PACK_BYTES",
    "MERGE_INDEXES_OVER",
    "RANGE_GAP",
    "READ_AHEAD",
    "TRAIN_FROM",
    "Frame",
    "Location",
    "PackStore",
    "StoreResult",
    "SweepResult",
    "standalone_frame",
]
