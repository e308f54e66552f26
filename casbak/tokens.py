"""Random names for temporary files, lock records and repository ids."""

from __future__ import annotations

import os


def random_hex(nbytes: int) -> str:
    """Random lowercase hex from os.urandom (what the secrets module uses, without its imports)."""
    return os.urandom(nbytes).hex()
