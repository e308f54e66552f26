"""pytest-benchmark microbenchmarks of the in-process path (`make bench`).

CASBAK_BENCH_SNAPSHOTS sets the size of the "full" repository (default 10,000).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from casbak import BackupService
from casbak.backends.memory import MemoryBackend
from casbak.canonical import canonicalize, decode_json
from casbak.ids import hash_bytes
from casbak.objects import ObjectStore

SAMPLES = Path(__file__).resolve().parent.parent / "examples" / "descope"
SNAPSHOTS = int(os.environ.get("CASBAK_BENCH_SNAPSHOTS", "10000"))


@pytest.fixture(scope="module")
def composite_bytes() -> bytes:
    return (SAMPLES / "large_tenant_composite.json").read_bytes()


def test_decode_canonicalize_hash_compress_one_tenant(
    benchmark: Any, composite_bytes: bytes
) -> None:
    store = ObjectStore(MemoryBackend(), compression_level=10)

    def one() -> int:
        canonical = canonicalize(decode_json(composite_bytes, "tenant.json"))
        return len(store._compress(canonical)) + len(hash_bytes(canonical))

    assert benchmark(one) > 0


def _service(path: Path) -> BackupService:
    return BackupService(path, lock_timeout=5)


@pytest.fixture(scope="module")
def full_repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackupService]:
    path = tmp_path_factory.mktemp("full") / "repo"
    service = _service(path)
    real_fsync = os.fsync
    os.fsync = lambda fd: None  # setup only; the measured calls sync for real
    try:
        for number in range(SNAPSHOTS):
            service.create_tenant_backup(
                {"id": f"tenant-{number % 500}", "n": number}, "tenant-update"
            )
    finally:
        os.fsync = real_fsync
    yield service


def _tenant() -> dict[str, Any]:
    return json.loads((SAMPLES / "large_tenant_load_all_element.json").read_text())


def test_create_tenant_backup_into_empty_repository(benchmark: Any, tmp_path: Path) -> None:
    service = _service(tmp_path / "repo")
    tenant = _tenant()
    counter = iter(range(10**9))

    def one() -> Path:
        return service.create_tenant_backup({**tenant, "n": next(counter)}, "tenant-update")

    assert benchmark(one).exists()


def test_create_tenant_backup_into_full_repository(
    benchmark: Any, full_repository: BackupService
) -> None:
    tenant = _tenant()
    counter = iter(range(10**9))

    def one() -> Path:
        return full_repository.create_tenant_backup({**tenant, "m": next(counter)}, "tenant-update")

    assert benchmark(one).exists()
