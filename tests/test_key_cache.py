"""key remember / key forget: an encrypted repository's key kept for a while, opt-in."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from casbak.errors import InputError
from casbak.keycache import KeyCache, key_cache_folder
from tests.conftest import EXAMPLES, tree_state
from tests.test_cli import run
from tests.test_cli_keys import CHEAP

MASTER = bytes(range(64))
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "keys"
    monkeypatch.setenv("CASBAK_KEY_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def encrypted(tmp_path: Path, keys: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CASBAK_PASSWORD_COMMAND", raising=False)
    monkeypatch.setenv("CASBAK_PASSWORD", "first password")
    path = tmp_path / "repo"
    assert run(path, "init", "--encrypt", *CHEAP)[0] == 0
    monkeypatch.delenv("CASBAK_PASSWORD")
    return path


def _remember(repo: Path, *extra: str) -> dict[str, object]:
    os.environ["CASBAK_PASSWORD"] = "first password"
    try:
        code, out, err = run(repo, "--json", "key", "remember", *extra)
    finally:
        del os.environ["CASBAK_PASSWORD"]
    assert (code, err) == (0, "")
    result: dict[str, object] = json.loads(out)
    return result


def test_a_remembered_key_opens_the_repository_without_a_password(
    encrypted: Path, keys: Path
) -> None:
    assert run(encrypted, "list")[0] == 13
    result = _remember(encrypted, "--for", "1h")
    assert result["remembered"] is True
    expires = datetime.fromisoformat(str(result["expires"]))
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)
    [stored] = keys.iterdir()
    assert oct(stored.stat().st_mode & 0o777) == "0o600"
    assert oct(keys.stat().st_mode & 0o777) == "0o700"
    code, out, _ = run(encrypted, "--json", "list")
    assert (code, json.loads(out)) == (0, {"snapshots": []})
    code, out, err = run(encrypted, "key", "forget")
    assert (code, out.strip(), err) == (0, "forgot the remembered key", "")
    assert list(keys.iterdir()) == []
    assert run(encrypted, "list")[0] == 13
    assert run(encrypted, "key", "forget")[1].strip() == "no key was remembered"


def test_remember_needs_the_right_password_and_changes_nothing(
    encrypted: Path, keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = tree_state(encrypted)
    monkeypatch.setenv("CASBAK_PASSWORD", "wrong")
    code, _, err = run(encrypted, "key", "remember")
    assert code == 13
    assert err.startswith("casbak: error: wrong password")
    assert not keys.exists() or list(keys.iterdir()) == []
    assert tree_state(encrypted) == before


def test_removing_the_slot_that_unlocked_it_ends_the_remembered_key(
    encrypted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _remember(encrypted)["slot"]
    monkeypatch.setenv("CASBAK_PASSWORD", "first password")
    monkeypatch.setenv("CASBAK_NEW_PASSWORD", "second password")
    assert run(encrypted, "key", "add", *CHEAP)[0] == 0
    monkeypatch.setenv("CASBAK_PASSWORD", "second password")
    assert run(encrypted, "key", "remove", str(first))[0] == 0
    monkeypatch.delenv("CASBAK_PASSWORD")
    assert run(encrypted, "list")[0] == 13


def test_a_damaged_remembered_key_is_dropped_and_never_writes(
    encrypted: Path, keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASBAK_PASSWORD", "first password")
    assert run(encrypted, "snapshot", str(EXAMPLES / "tenants" / "round-1"))[0] == 0
    monkeypatch.delenv("CASBAK_PASSWORD")
    result = _remember(encrypted)
    path = keys / f"{result['repository']}.key"
    entry = json.loads(path.read_bytes())
    entry["key"] = base64.b64encode(MASTER).decode()  # another key, the old check value
    path.write_bytes(json.dumps(entry).encode())
    before = tree_state(encrypted)
    code, _, err = run(encrypted, "snapshot", str(EXAMPLES / "tenants" / "round-2"))
    assert code == 13  # no usable key: it asks for the password instead
    assert "needs the repository password" in err
    assert not path.exists()
    assert tree_state(encrypted) == before
    monkeypatch.setenv("CASBAK_PASSWORD", "first password")
    assert run(encrypted, "verify")[0] == 0


@pytest.mark.parametrize("duration", ["0s", "nonsense", "31d"])
def test_remember_refuses_a_duration_that_is_not_positive(
    encrypted: Path, duration: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASBAK_PASSWORD", "first password")
    code, _, err = run(encrypted, "key", "remember", "--for", duration)
    assert code == 2
    assert err.startswith(("casbak: error:", "Usage:"))


def test_key_commands_refuse_a_plain_repository(tmp_path: Path, keys: Path) -> None:
    plain = tmp_path / "plain"
    assert run(plain, "init")[0] == 0
    code, _, err = run(plain, "key", "remember")
    assert code == 1
    assert "not an encrypted repository" in err


def test_the_cache_file_is_trusted_only_when_private_current_and_whole(keys: Path) -> None:
    cache = KeyCache(keys, now=NOW)
    assert cache.recall("a" * 32) is None
    cache.remember("a" * 32, "slot1", MASTER, NOW + timedelta(minutes=1))
    assert cache.remembered("a" * 32) == ("slot1", MASTER)
    assert cache.recall("b" * 32) is None
    path = cache.path("a" * 32)
    path.chmod(0o644)
    assert cache.recall("a" * 32) is None
    path.chmod(0o600)
    keys.chmod(0o755)
    assert cache.recall("a" * 32) is None
    keys.chmod(0o700)
    assert cache.recall("a" * 32) is not None
    later = KeyCache(keys, now=NOW + timedelta(minutes=1))
    assert later.recall("a" * 32) is None
    assert not path.exists()  # an expired key is removed, not left lying about


@pytest.mark.parametrize(
    "damage",
    [
        lambda entry: {**entry, "key": base64.b64encode(MASTER[:10]).decode()},
        lambda entry: {**entry, "key": "not base64!"},
        lambda entry: {**entry, "slot": "slot2"},
        lambda entry: {**entry, "expires": "2099-01-01T00:00:00Z"},
        lambda entry: {**entry, "repository": "b" * 32},
        lambda entry: {**entry, "version": 2},
        lambda entry: {k: v for k, v in entry.items() if k != "check"},
    ],
)
def test_a_damaged_cache_file_is_removed(keys: Path, damage: Any) -> None:
    cache = KeyCache(keys, now=NOW)
    cache.remember("a" * 32, "slot1", MASTER, NOW + timedelta(minutes=1))
    path = cache.path("a" * 32)
    path.write_bytes(json.dumps(damage(json.loads(path.read_bytes()))).encode())
    assert cache.recall("a" * 32) is None
    assert not path.exists()


def test_garbage_is_not_trusted(keys: Path) -> None:
    cache = KeyCache(keys, now=NOW)
    cache.remember("a" * 32, "slot1", MASTER, NOW + timedelta(minutes=1))
    cache.path("a" * 32).write_bytes(b"{not json")
    assert cache.recall("a" * 32) is None


def test_expired_files_of_other_repositories_are_swept(keys: Path) -> None:
    KeyCache(keys, now=NOW).remember("b" * 32, "s", MASTER, NOW + timedelta(minutes=1))
    later = KeyCache(keys, now=NOW + timedelta(hours=1))
    later.remember("a" * 32, "s", MASTER, NOW + timedelta(hours=2))
    assert sorted(p.name for p in keys.iterdir()) == [f"{'a' * 32}.key"]


def test_an_open_folder_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(InputError, match="open to others"):
        KeyCache(shared).remember("a" * 32, "s", MASTER, NOW)
    assert oct(shared.stat().st_mode & 0o7777) == "0o1777"
    assert list(shared.iterdir()) == []
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        KeyCache(a_file).remember("a" * 32, "s", MASTER, NOW)
    assert KeyCache(a_file).recall("a" * 32) is None
    with pytest.raises(InputError, match="cannot remove"):
        KeyCache(a_file).forget("a" * 32)


def test_the_folder_follows_the_environment(tmp_path: Path) -> None:
    assert key_cache_folder({"CASBAK_KEY_CACHE_DIR": "/x/y"}) == Path("/x/y")
    runtime = tmp_path / "run"
    runtime.mkdir()
    assert key_cache_folder({"XDG_RUNTIME_DIR": str(runtime)}) == runtime / "casbak"
    gone = {"XDG_RUNTIME_DIR": str(tmp_path / "gone"), "XDG_CACHE_HOME": str(tmp_path)}
    assert key_cache_folder(gone) == tmp_path / "casbak" / "keys"


def test_real_processes_remember_then_run_without_a_password(tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text("from a file\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASBAK_")}
    env["CASBAK_KEY_CACHE_DIR"] = str(tmp_path / "keys")
    base = [sys.executable, "-m", "casbak", "--repo", str(tmp_path / "repo")]

    def casbak(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*base, *args], env=env, capture_output=True, check=False, stdin=subprocess.DEVNULL
        )

    assert (
        casbak("init", "--encrypt", "--password-file", str(password_file), *CHEAP).returncode == 0
    )
    assert casbak("list").returncode == 13
    remembered = casbak(
        "--json", "key", "remember", "--for", "10m", "--password-file", str(password_file)
    )
    assert remembered.returncode == 0, remembered.stderr
    assert json.loads(remembered.stdout)["remembered"] is True
    listed = casbak("--json", "list")
    assert (listed.returncode, json.loads(listed.stdout)) == (0, {"snapshots": []})
    assert casbak("key", "forget").returncode == 0
    assert casbak("list").returncode == 13


def test_a_key_remembered_for_a_converted_repository(
    tmp_path: Path, keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "converted"
    assert run(repo, "init")[0] == 0
    assert run(repo, "snapshot", str(EXAMPLES / "tenants" / "round-1"))[0] == 0
    monkeypatch.setenv("CASBAK_PASSWORD", "first password")
    assert run(repo, "migrate", "--encrypt", *CHEAP)[0] == 0
    assert run(repo, "key", "remember")[0] == 0
    monkeypatch.delenv("CASBAK_PASSWORD")
    code, out, _ = run(repo, "--json", "list")
    assert code == 0
    assert len(json.loads(out)["snapshots"]) == 1
    assert run(repo, "verify")[0] == 0
