from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

import casbak
from casbak import BackupMetadata, BackupService, TenantBackup, TenantConfig
from casbak.errors import InputError
from tests.conftest import FakeClock, tree_state


def test_public_names() -> None:
    assert casbak.__version__
    with pytest.raises(AttributeError):
        casbak.Nope  # type: ignore[attr-defined]  # noqa: B018


def test_default_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    service = BackupService()
    assert service.backup_dir == tmp_path / ".descope-mgmt" / "backups"
    assert service.retention_days == 30
    path = service.create_tenant_backup(TenantConfig(id="t1", name="One"), "tenant-update")
    assert path.is_file()
    assert path.parent == tmp_path / ".descope-mgmt" / "backups" / "manifests"


def test_create_tenant_backup_returns_manifest_path(tmp_path: Path) -> None:
    clock = FakeClock()
    service = BackupService(tmp_path / "b", clock=clock)
    tenant = TenantConfig(id="acme-corp", name="Acme", domains=["acme.com"])
    path = service.create_tenant_backup(tenant, "tenant-update", "before rename")
    assert path.suffix == ".json"
    assert path.name.startswith("2025-11-17T10-30-00_tenant-update_acme-corp_")
    stored = json.loads(path.read_bytes())
    assert (stored["operation"], stored["target_id"]) == ("tenant-update", "acme-corp")
    assert stored["description"] == "before rename"
    loaded = service.load_backup(path)
    assert loaded.metadata == BackupMetadata(
        loaded.metadata.timestamp, "tenant-update", "acme-corp", "before rename"
    )
    assert loaded.metadata.timestamp.tzinfo is not None
    assert loaded.metadata.timestamp < clock.now
    assert loaded.tenants["acme-corp"] == msgspec.to_builtins(tenant)
    assert msgspec.convert(loaded.tenants["acme-corp"], TenantConfig) == tenant


def test_raw_mapping_keeps_unknown_fields_exactly(
    tmp_path: Path, sample_tenants: list[dict[str, Any]]
) -> None:
    service = BackupService(tmp_path / "b", clock=FakeClock())
    path = service.create_backup(sample_tenants, "sync-apply", description="nightly")
    loaded = service.load_backup(path.name)
    assert loaded.metadata.target_id == "all-tenants"
    assert list(loaded.tenants.values()) == sorted(
        sample_tenants, key=lambda t: t.get("id") or t["tenant"]["id"]
    )


def test_list_backups_newest_first_and_by_target(tmp_path: Path) -> None:
    clock = FakeClock()
    service = BackupService(tmp_path / "b", clock=clock)
    a = service.create_tenant_backup({"id": "a"}, "tenant-update")
    clock.advance(seconds=5)
    b = service.create_tenant_backup({"id": "b"}, "tenant-delete")
    clock.advance(seconds=5)
    a2 = service.create_tenant_backup({"id": "a", "v": 2}, "tenant-update")
    assert service.list_backups() == [a2, b, a]
    assert service.list_backups("a") == [a2, a]
    assert service.load_backup("latest").tenants == {"a": {"id": "a", "v": 2}}


def test_bad_tenant_changes_nothing(tmp_path: Path) -> None:
    service = BackupService(tmp_path / "b", clock=FakeClock())
    service.create_tenant_backup({"id": "ok"}, "tenant-update")
    before = tree_state(tmp_path / "b")
    for bad in [{"id": "x", "v": float("nan")}, {"name": "no id"}, {"id": "x", 1: 2}]:
        with pytest.raises(InputError):
            service.create_tenant_backup(bad, "tenant-update")
    with pytest.raises(InputError, match="appears twice"):
        service.create_backup([{"id": "d"}, {"id": "d"}], "sync-apply")
    assert tree_state(tmp_path / "b") == before


def test_tenant_backup_filename() -> None:
    from datetime import UTC, datetime

    backup = TenantBackup(
        BackupMetadata(datetime(2025, 11, 17, 10, 30, tzinfo=UTC), "tenant-update", "acme-corp"),
        TenantConfig(id="acme-corp", name="Acme"),
    )
    assert backup.filename() == "2025-11-17T10-30-00_tenant-update_acme-corp.json"
    encoded = msgspec.json.decode(msgspec.json.encode(backup))
    assert encoded["tenant"]["flow_ids"] == []
    assert msgspec.to_builtins(backup)["metadata"]["description"] == ""
    hostile = TenantBackup(
        BackupMetadata(datetime(2025, 1, 1, tzinfo=UTC), "op", "../../etc"),
        TenantConfig(id="x", name="x"),
    )
    assert "/" not in hostile.filename()
