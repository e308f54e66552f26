"""Content identifiers: blake3 digests as 64 lowercase hex characters."""

from __future__ import annotations

import re
from typing import NewType

import blake3

Digest = NewType("Digest", str)

DIGEST_LENGTH = 64
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")


def hash_bytes(data: bytes) -> Digest:
    """Return the blake3 digest of ``data`` as lowercase hex."""
    return Digest(blake3.blake3(data).hexdigest())


def is_digest(text: str) -> bool:
    """Tell whether ``text`` has the exact shape of a digest."""
    return _DIGEST_RE.fullmatch(text) is not None
