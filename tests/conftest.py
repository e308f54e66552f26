from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from casbak.backends.local import LocalBackend
from casbak.backends.memory import MemoryBackend
from casbak.repository import Repository

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DESCOPE = EXAMPLES / "descope"


class FakeClock:
    """A clock that moves only when told (one microsecond per call, so ids differ)."""

    def __init__(self, start: datetime = datetime(2025, 11, 17, 10, 30, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        current = self.now
        self.now += timedelta(microseconds=1)
        return current

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 server process (moto) on 127.0.0.1 for the whole test session."""
    from tests.s3server import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Standard AWS environment pointing at the local server; returns a fresh bucket's URL."""
    from tests.s3server import new_bucket

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "casbak-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "casbak-test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return f"s3://{new_bucket(s3_endpoint)}/backups"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True, scope="session")
def _private_cache_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The raw-bytes cache and remembered keys of every test (and its subprocesses) stay
    in temp folders."""
    folders = {
        "CASBAK_CACHE_DIR": tmp_path_factory.mktemp("casbak-cache"),
        "CASBAK_KEY_CACHE_DIR": tmp_path_factory.mktemp("casbak-keys"),
    }
    previous = {name: os.environ.get(name) for name in folders}
    os.environ.update({name: str(folder) for name, folder in folders.items()})
    yield
    for name, value in previous.items():
        if value is None:
            del os.environ[name]
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def _fixed_provenance(monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots record the same user, host and no CI run on every machine, so ids reproduce.

    tests/test_provenance.py checks the real lookups, saved before this runs.
    """
    from casbak import provenance

    monkeypatch.setattr(provenance, "_user", lambda: "tester")
    monkeypatch.setattr(provenance, "_host", lambda: "testhost")
    for variable, _key in provenance.CI_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def memory_repo() -> Repository:
    return Repository.init(MemoryBackend())


@pytest.fixture
def local_repo(tmp_path: Path) -> Repository:
    return Repository.init(LocalBackend(tmp_path / "repo"))


def load_example(name: str) -> Any:
    return json.loads((DESCOPE / name).read_text())


@pytest.fixture
def sample_tenants() -> list[dict[str, Any]]:
    """Real-shaped tenants: the load-all response plus a composite under a new id."""
    tenants: list[dict[str, Any]] = load_example("load_all_response.json")["tenants"]
    composite = load_example("large_tenant_composite.json")
    composite["tenant"]["id"] = "acme-corp-full"
    return [*tenants, composite]


def tree_state(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file below root with its mode and bytes: for 'nothing changed' checks."""
    state = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            state[str(path.relative_to(root))] = (path.stat().st_mode, path.read_bytes())
    return state


@pytest.fixture
def snapshot_state() -> Callable[[Path], dict[str, tuple[int, bytes]]]:
    return tree_state


@pytest.fixture
def repo_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "repo"
    Repository.init(LocalBackend(path))
    yield path
