"""Names built from user text: the readable parts of manifest keys, restore file names.

Everything that reaches a path goes through here, so a target such as
``../../etc`` or ``a/b`` can neither escape the repository nor collide: the
readable part is reduced to a safe alphabet and the unique part is a digest.
"""

from __future__ import annotations

import re
from datetime import datetime

from casbak.ids import hash_bytes

_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9-]+")
_SAFE_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
SLUG_LENGTH = 48


def slug(text: str) -> str:
    """Reduce free text to ``[A-Za-z0-9-]``, at most SLUG_LENGTH characters, never empty."""
    reduced = _UNSAFE_RUN.sub("-", text).strip("-")[:SLUG_LENGTH].strip("-")
    return reduced or "x"


def stamp(timestamp: datetime) -> str:
    """The second-resolution time used in file names (``2025-11-17T10-30-00``)."""
    return timestamp.strftime("%Y-%m-%dT%H-%M-%S")


def tenant_filename(tenant_id: str) -> str:
    """File name for a restored tenant: the id itself when safe, else a slug plus a digest."""
    if _SAFE_FILENAME.fullmatch(tenant_id):
        return f"{tenant_id}.json"
    return f"{slug(tenant_id)}-{hash_bytes(tenant_id.encode('utf-8', 'surrogatepass'))[:12]}.json"
