"""Opening an encrypted repository: the password from the API and from every command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from casbak.api import BackupService
from casbak.backends.local import LocalBackend
from casbak.errors import PasswordMissing, WrongPassword
from casbak.keyfile import Argon2id
from casbak.keyservice import init_encrypted
from casbak.repository import Repository
from casbak.tenantdocs import tenant_id_of
from tests.conftest import tree_state
from tests.test_cli import run

CHEAP_KDF = Argon2id(iterations=1, memory_kib=8, lanes=1)


@pytest.fixture
def encrypted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CASBAK_PASSWORD", "CASBAK_PASSWORD_COMMAND", "CASBAK_NEW_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "repo"
    init_encrypted(LocalBackend(path), "right", kdf=CHEAP_KDF)
    return path


def test_open_needs_the_password(encrypted: Path) -> None:
    backend = LocalBackend(encrypted)
    before = tree_state(encrypted)
    with pytest.raises(PasswordMissing, match="encrypted repository"):
        Repository.open(backend)
    with pytest.raises(WrongPassword):
        Repository.open(backend, password="wrong")
    with pytest.raises(WrongPassword):
        Repository.open(backend, password=lambda: "wrong")
    assert tree_state(encrypted) == before


def test_the_right_password_unlocks_a_sealer(encrypted: Path) -> None:
    repo = Repository.open(LocalBackend(encrypted), password="right")
    assert repo.sealer is not None
    assert repo.hasher.keyed
    again = Repository.open(LocalBackend(encrypted), password=lambda: "right")
    # The same master key: the same keyed ids.
    assert again.hasher(b"document") == repo.hasher(b"document")


def test_a_plain_repository_never_asks_for_a_password(tmp_path: Path) -> None:
    Repository.init(LocalBackend(tmp_path / "plain"))

    def ask() -> str:
        raise AssertionError("asked for a password a plain repository does not need")

    repo = Repository.open(LocalBackend(tmp_path / "plain"), password=ask)
    assert repo.sealer is None
    assert not repo.hasher.keyed


@pytest.mark.parametrize("where", ["before", "after"])
def test_password_file_is_a_global_option(encrypted: Path, tmp_path: Path, where: str) -> None:
    wrong, right = tmp_path / "wrong", tmp_path / "right"
    wrong.write_text("wrong\n")
    right.write_text("right\n")
    before = tree_state(encrypted)
    for given, expected in ((wrong, 13), (right, 0)):
        option = ("--password-file", str(given))
        args = (*option, "list") if where == "before" else ("list", *option)
        code, _, err = run(encrypted, *args)
        assert code == expected, err
    assert "wrong password" in run(encrypted, "verify", "--password-file", str(wrong))[2]
    assert tree_state(encrypted) == before


def test_no_password_source_is_exit_13(encrypted: Path) -> None:
    code, _, err = run(encrypted, "show", "latest")
    assert code == 13
    assert "needs the repository password" in err
    assert len(err.strip().splitlines()) == 1


def test_key_commands_take_the_global_password_file(encrypted: Path, tmp_path: Path) -> None:
    right = tmp_path / "right"
    right.write_text("right\n")
    code, _, err = run(encrypted, "--password-file", str(right), "key", "list")
    assert (code, err) == (0, "")


def test_api_takes_a_password(encrypted: Path, sample_tenants: list[dict[str, Any]]) -> None:
    with pytest.raises(WrongPassword):
        _ = BackupService(encrypted, password="wrong").repository
    with pytest.raises(PasswordMissing):
        _ = BackupService(encrypted).repository
    service = BackupService(encrypted, password="right")
    path = service.create_backup(sample_tenants, "sync-apply")
    assert "_sealed_" in path.name
    loaded = BackupService(encrypted, password="right").load_backup(path.name)
    assert set(loaded.tenants) == {tenant_id_of(t) for t in sample_tenants}


def test_api_creates_an_encrypted_repository(
    tmp_path: Path, sample_tenants: list[dict[str, Any]]
) -> None:
    folder = tmp_path / "new"
    service = BackupService(folder, password="api password")
    path = service.create_backup(sample_tenants, "sync-apply")
    config = json.loads((folder / "config").read_bytes())
    assert config["version"] == 5
    assert len(list((folder / "keys").iterdir())) == 1
    assert path.exists()
    with pytest.raises(WrongPassword):
        _ = BackupService(folder, password="not it").repository


def test_a_plain_repository_never_loads_the_cryptography_library_or_hashlib(tmp_path: Path) -> None:
    # Loading OpenSSL's bindings costs every command about 50 ms of start-up.
    script = """
import sys
from casbak.launch import run

for command in ("init", "list"):
    sys.argv = ["casbak", "--repo", sys.argv[1], command]
    try:
        run()
    except SystemExit:
        pass
print(sorted(name for name in sys.modules if name.startswith("cryptography")))
# Each of these cost a plain command 5-10 ms of start-up (secrets loads the rest).
print(sorted({"secrets", "hashlib", "random", "hmac"} & set(sys.modules)))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "repo")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-2:] == ["[]", "[]"]


def test_a_remembered_key_snapshot_loads_only_the_ciphers_own_bindings(
    encrypted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The public cipher module's parent packages (the cipher registry, modes,
    # typing) were 10-15 ms of every encrypted command's start-up.
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    monkeypatch.setenv("CASBAK_KEY_CACHE_DIR", str(keys))
    monkeypatch.setenv("CASBAK_PASSWORD", "right")
    assert run(encrypted, "key", "remember", "--for", "5m")[0] == 0
    monkeypatch.delenv("CASBAK_PASSWORD")
    tenants = tmp_path / "tenants"
    tenants.mkdir()
    (tenants / "acme.json").write_text('{"id": "acme", "name": "Acme"}')
    script = """
import sys
from casbak.launch import run

sys.argv = ["casbak", "--repo", sys.argv[1], "snapshot", sys.argv[2]]
try:
    run()
except SystemExit as exit:
    assert not exit.code, exit.code
print(sorted(name for name in sys.modules if name.startswith("cryptography.hazmat.primitives")))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(encrypted), str(tenants)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
