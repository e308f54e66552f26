"""Random bytes: keys, nonces, salts, and names for temporary files, lock records and ids.

From os.urandom, what the secrets module returns, without its imports (hashlib,
hmac and random: 10 ms of every command's start-up).
"""

from __future__ import annotations

import os


def random_bytes(nbytes: int) -> bytes:
    """``nbytes`` from the operating system's secure random source."""
    return os.urandom(nbytes)


def random_hex(nbytes: int) -> str:
    """Random lowercase hex of ``nbytes`` bytes."""
    return os.urandom(nbytes).hex()
