"""The storage layout: every key of a repository is built and parsed here, and nowhere else.

Pure. A key is a relative path with ``/`` separators (docs/FORMAT.md, Layout).
Names that carry an id are checked in full when parsed (lowercase hex of the
right length, the right shard folder), so a stray or hostile file is never
taken for part of the repository. Bundles reuse two of these shapes
(``manifests/<name>.json`` and ``objects/<2 hex>/<id>``) for their members.
"""

from __future__ import annotations

import re
from datetime import datetime

from casbak.ids import Digest, is_digest
from casbak.names import slug, stamp

CONFIG_KEY = "config"
PACK_PREFIX = "packs/"
INDEX_PREFIX = "index/"
DICTIONARY_PREFIX = "dicts/"
MANIFEST_PREFIX = "manifests/"
LOCK_PREFIX = "locks/"
CATALOG_PREFIX = "catalog/"
CATALOG_HEAD_KEY = "catalog/head"
CATALOG_LOCK_KEY = "catalog/compacting"
CATALOG_JOURNAL_PREFIX = "catalog/journal/"
CATALOG_PART_PREFIX = "catalog/parts/"
KEY_PREFIX = "keys/"
"""Key slots of an encrypted repository (format 5), one file each."""
ENCRYPTED_ROOT = "encrypted/"
"""Where `migrate --encrypt` builds the encrypted repository, and where it lives after."""
OBJECT_PREFIX = "objects/"
"""Format 1 kept one file per object here; bundles still name their objects so."""

MANIFEST_SUFFIXES = {1: ".json", 2: ".snap", 3: ".json", 4: ".json", 5: ".json"}
"""Formats 1, 3, 4 and 5 store manifests as JSON; format 2 stored them compressed."""
_MANIFEST_NAME = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d_[A-Za-z0-9-]+_[A-Za-z0-9-]+_(?P<id>[0-9a-f]{64})"
    r"(?P<suffix>\.json|\.snap)"
)
_SLOT_NAME = re.compile(r"(?P<id>[0-9a-f]{16})\.json")
_LOCK_NAME = re.compile(r"(shared|exclusive)-[0-9a-f]{16}\.json")


def pack_key(pack_id: str) -> str:
    """Storage key of a pack."""
    return f"{PACK_PREFIX}{pack_id[:2]}/{pack_id}"


def index_key(index_id: str) -> str:
    """Storage key of an index file."""
    return f"{INDEX_PREFIX}{index_id}"


def dictionary_key(dictionary_id: str) -> str:
    """Storage key of a compression dictionary."""
    return f"{DICTIONARY_PREFIX}{dictionary_id}"


def object_key(digest: str) -> str:
    """Key of a format 1 object file, and the name of an object in a bundle."""
    return f"{OBJECT_PREFIX}{digest[:2]}/{digest}"


def key_slot_key(slot_id: str) -> str:
    """Key of a key slot's file."""
    return f"{KEY_PREFIX}{slot_id}.json"


def slot_id_from_key(key: str) -> str | None:
    """The slot id a key slot's file name gives, or None."""
    if not key.startswith(KEY_PREFIX):
        return None
    found = _SLOT_NAME.fullmatch(key[len(KEY_PREFIX) :])
    return found.group("id") if found else None


def lock_key(kind: str, token: str) -> str:
    """Key of a lock record."""
    return f"{LOCK_PREFIX}{kind}-{token}.json"


def catalog_journal_key(seq: int) -> str:
    """Key of the catalog's journal entry number ``seq`` (zero-padded, so listings sort)."""
    return f"{CATALOG_JOURNAL_PREFIX}{seq:012d}"


def catalog_part_key(name: str) -> str:
    """Key of a catalog part, named by the blake3 of its bytes."""
    return f"{CATALOG_PART_PREFIX}{name}"


def is_catalog_key(key: str) -> bool:
    """Whether ``key`` has the shape of a catalog file (format 4 and later)."""
    if key in (CATALOG_HEAD_KEY, CATALOG_LOCK_KEY):
        return True
    if key.startswith(CATALOG_JOURNAL_PREFIX):
        number = key[len(CATALOG_JOURNAL_PREFIX) :]
        return len(number) == 12 and number.isdigit() and number.isascii()
    return _flat_id(key, CATALOG_PART_PREFIX) is not None


def manifest_name(
    timestamp: datetime, operation: str, target_id: str, snapshot_id: str, version: int = 4
) -> str:
    """File name of a manifest: readable prefix, then the snapshot id that makes it unique."""
    return (
        f"{stamp(timestamp)}_{slug(operation)}_{slug(target_id)}"
        f"_{snapshot_id}{MANIFEST_SUFFIXES[version]}"
    )


def manifest_key(
    timestamp: datetime, operation: str, target_id: str, snapshot_id: str, version: int = 4
) -> str:
    """Storage key of a manifest."""
    return MANIFEST_PREFIX + manifest_name(timestamp, operation, target_id, snapshot_id, version)


def snapshot_id_from_key(key: str, version: int | None = None) -> Digest | None:
    """The snapshot id a manifest key names (of the given format, or any), else None."""
    if not key.startswith(MANIFEST_PREFIX):
        return None
    found = _MANIFEST_NAME.fullmatch(key[len(MANIFEST_PREFIX) :])
    if found is None:
        return None
    if version is not None and found.group("suffix") != MANIFEST_SUFFIXES[version]:
        return None
    return Digest(found.group("id"))


def pack_id_from_key(key: str) -> Digest | None:
    """The pack id a pack key names, or None."""
    return _sharded_id(key, PACK_PREFIX)


def object_id_from_key(key: str, *, any_shard: bool = False) -> Digest | None:
    """The object id a format 1 object key (or bundle member name) names, or None.

    With ``any_shard`` a name in the wrong shard folder still gives its id, so
    that a reader can say exactly what is wrong with it.
    """
    return _sharded_id(key, OBJECT_PREFIX, any_shard=any_shard)


def index_id_from_key(key: str) -> Digest | None:
    """The index id an index key names, or None."""
    return _flat_id(key, INDEX_PREFIX)


def dictionary_id_from_key(key: str) -> Digest | None:
    """The dictionary id a dictionary key names, or None."""
    return _flat_id(key, DICTIONARY_PREFIX)


def is_lock_key(key: str) -> bool:
    """Whether ``key`` is a well-formed lock record's key."""
    return key.startswith(LOCK_PREFIX) and bool(_LOCK_NAME.fullmatch(key[len(LOCK_PREFIX) :]))


def belongs_to_layout(key: str, version: int = 4) -> bool:
    """Whether ``key`` is a file a repository of ``version`` may hold (else verify warns)."""
    if key == CONFIG_KEY or is_lock_key(key) or snapshot_id_from_key(key, version) is not None:
        return True
    if version >= 4 and is_catalog_key(key):
        return True
    if version >= 5 and slot_id_from_key(key) is not None:
        return True
    if version == 1:
        return object_id_from_key(key) is not None
    return (
        pack_id_from_key(key) is not None
        or index_id_from_key(key) is not None
        or dictionary_id_from_key(key) is not None
    )


def is_plain_leftover(key: str) -> bool:
    """Whether a top-level ``key`` beside a converted repository's root is the plain one's.

    The files of the plain (format 4) layout but its config: `migrate
    --encrypt` removes exactly these once the encrypted repository is
    committed. Anything else there (a folder made with ``init --force`` may
    hold other files; an S3 prefix may be a whole bucket) is not casbak's and stays.
    """
    return key != CONFIG_KEY and belongs_to_layout(key, 4)


def _sharded_id(key: str, prefix: str, *, any_shard: bool = False) -> Digest | None:
    parts = key.split("/")
    if (
        len(parts) == 3
        and parts[0] + "/" == prefix
        and is_digest(parts[2])
        and (parts[1] == parts[2][:2] or (any_shard and is_shard(parts[1])))
    ):
        return Digest(parts[2])
    return None


def is_shard(name: str) -> bool:
    """Whether ``name`` has the shape of a shard folder (two lowercase hex digits)."""
    return len(name) == 2 and all(char in "0123456789abcdef" for char in name)


def _flat_id(key: str, prefix: str) -> Digest | None:
    if key.startswith(prefix) and is_digest(key[len(prefix) :]):
        return Digest(key[len(prefix) :])
    return None
