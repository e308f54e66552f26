"""casbak: content-addressed, deduplicated backups of identity-tenant configuration.

The names below are imported on first use, so ``import casbak.cli`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from casbak.defaults import VERSION as __version__

__all__ = [
    "BackupMetadata",
    "BackupService",
    "LoadedBackup",
    "TenantBackup",
    "TenantConfig",
    "__version__",
]

if TYPE_CHECKING:
    from casbak.api import BackupService, LoadedBackup
    from casbak.model import BackupMetadata, TenantBackup, TenantConfig

_HOMES = {
    "BackupService": "casbak.api",
    "LoadedBackup": "casbak.api",
    "BackupMetadata": "casbak.model",
    "TenantBackup": "casbak.model",
    "TenantConfig": "casbak.model",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'casbak' has no attribute {name!r}")
