"""Names built from user text: manifest keys and restore file names.

Everything that reaches a path goes through here, so a target such as
``../../etc`` or ``a/b`` can neither escape the repository nor collide: the
readable part is reduced to a safe alphabet and the unique part is a digest.
"""

from __future__ import annotations

import re
from datetime import datetime

from casbak.ids import Digest, hash_bytes

MANIFEST_PREFIX = "manifests/"
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9-]+")
_SAFE_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
_MANIFEST_NAME = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d_[A-Za-z0-9-]+_[A-Za-z0-9-]+_(?P<id>[0-9a-f]{64})(?P<suffix>\.json|\.snap)"
)
MANIFEST_SUFFIXES = {1: ".json", 2: ".snap", 3: ".json"}
"""Formats 1 and 3 store manifests as JSON; format 2 stored them compressed (docs/FORMAT.md)."""
SLUG_LENGTH = 48


def slug(text: str) -> str:
    """Reduce free text to ``[A-Za-z0-9-]``, at most SLUG_LENGTH characters, never empty."""
    reduced = _UNSAFE_RUN.sub("-", text).strip("-")[:SLUG_LENGTH].strip("-")
    return reduced or "x"


def stamp(timestamp: datetime) -> str:
    """The second-resolution time used in file names (``2025-11-17T10-30-00``)."""
    return timestamp.strftime("%Y-%m-%dT%H-%M-%S")


def manifest_key(
    timestamp: datetime, operation: str, target_id: str, snapshot_id: str, version: int = 1
) -> str:
    """Storage key of a manifest: readable prefix, then the snapshot id that makes it unique."""
    return (
        f"{MANIFEST_PREFIX}{stamp(timestamp)}_{slug(operation)}_{slug(target_id)}"
        f"_{snapshot_id}{MANIFEST_SUFFIXES[version]}"
    )


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


def tenant_filename(tenant_id: str) -> str:
    """File name for a restored tenant: the id itself when safe, else a slug plus a digest."""
    if _SAFE_FILENAME.fullmatch(tenant_id):
        return f"{tenant_id}.json"
    return f"{slug(tenant_id)}-{hash_bytes(tenant_id.encode('utf-8', 'surrogatepass'))[:12]}.json"
