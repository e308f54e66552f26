"""Defaults that more than one layer offers: each is defined here, once."""

from __future__ import annotations

from pathlib import Path

VERSION = "0.1.0"
"""casbak's version; pyproject.toml says the same (a test compares them)."""
DEFAULT_RETENTION_DAYS = 30
"""Age limit of `cleanup` when the repository's config names none (the original service's)."""
DEFAULT_COMPRESSION_LEVEL = 10
DEFAULT_LOCK_TIMEOUT = 60.0
"""Seconds a command waits for a lock before it gives up (exit 11)."""
DEFAULT_REPOSITORY_DISPLAY = "~/.descope-mgmt/backups"


def default_repository() -> Path:
    """Where backups go when no repository is given (the original service's folder)."""
    return Path.home() / ".descope-mgmt" / "backups"
