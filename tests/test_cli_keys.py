"""init --encrypt and the key commands, end to end on a local repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from casbak.backends.local import LocalBackend
from casbak.keyfile import Argon2id
from casbak.keyservice import add_key, change_password, init_encrypted, list_keys, remove_key
from casbak.keystore import read_slots, unlock_repository
from casbak.layout import CONFIG_KEY
from casbak.model import decode_config
from tests.conftest import tree_state
from tests.test_cli import run

CHEAP = ("--kdf-memory", "8", "--kdf-iterations", "1")
CHEAP_KDF = Argon2id(iterations=1, memory_kib=8, lanes=1)


@pytest.fixture
def encrypted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CASBAK_PASSWORD_COMMAND", raising=False)
    monkeypatch.delenv("CASBAK_NEW_PASSWORD", raising=False)
    monkeypatch.setenv("CASBAK_PASSWORD", "first password")
    path = tmp_path / "repo"
    code, out, err = run(path, "--json", "init", "--encrypt", *CHEAP)
    assert (code, err) == (0, "")
    assert json.loads(out)["repository"] == str(path)
    return path


def _slots(repo: Path) -> list[str]:
    return sorted(path.stem for path in (repo / "keys").iterdir())


def test_init_encrypt_writes_a_format_5_config_and_one_slot(encrypted: Path) -> None:
    config = decode_config((encrypted / "config").read_bytes(), "config")
    assert config.version == 5
    assert config.encryption is not None
    assert len(_slots(encrypted)) == 1
    slot = json.loads(next((encrypted / "keys").iterdir()).read_bytes())
    assert slot["kdf"]["memory_kib"] == 8
    assert (
        b"first password" not in (encrypted / "keys" / f"{_slots(encrypted)[0]}.json").read_bytes()
    )


def test_init_encrypt_without_a_password_is_exit_13_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CASBAK_PASSWORD", "CASBAK_PASSWORD_COMMAND"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run(tmp_path / "repo", "init", "--encrypt", *CHEAP)
    assert code == 13
    assert err.count("\n") == 1
    assert "CASBAK_PASSWORD" in err
    assert not (tmp_path / "repo").exists()


def test_init_encrypt_twice_is_refused(encrypted: Path) -> None:
    before = tree_state(encrypted)
    code, _, err = run(encrypted, "init", "--encrypt", "--force", *CHEAP)
    assert code == 1
    assert "already a casbak repository" in err
    assert tree_state(encrypted) == before


def test_key_list_marks_the_slot_the_password_opens(encrypted: Path) -> None:
    code, out, _ = run(encrypted, "--json", "key", "list")
    assert code == 0
    listed = json.loads(out)
    assert [key["id"] for key in listed["keys"]] == _slots(encrypted)
    assert listed["keys"][0]["current"] is True
    assert listed["damaged"] == {}
    code, out, _ = run(encrypted, "key", "list")
    assert out.splitlines()[1].startswith("*")


def test_wrong_password_is_exit_13_and_changes_nothing(
    encrypted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASBAK_PASSWORD", "not it")
    monkeypatch.setenv("CASBAK_NEW_PASSWORD", "another")
    before = tree_state(encrypted)
    for args in (("key", "list"), ("key", "add", *CHEAP), ("key", "passwd", *CHEAP)):
        code, out, err = run(encrypted, "--json", *args)
        assert code == 13, args
        assert out == ""
        assert json.loads(err)["error"] == "WrongPassword"
    code, _, _ = run(encrypted, "key", "remove", _slots(encrypted)[0])
    assert code == 13
    assert tree_state(encrypted) == before


def test_add_then_remove_a_slot_and_the_removed_password_stops_working(
    encrypted: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    new_file = tmp_path / "new-pw"
    new_file.write_text("second password\n")
    code, out, _ = run(
        encrypted,
        "--json",
        "key",
        "add",
        "--label",
        "ci",
        "--new-password-file",
        str(new_file),
        *CHEAP,
    )
    assert code == 0
    added = json.loads(out)["added"]
    assert added["label"] == "ci"
    assert len(_slots(encrypted)) == 2
    monkeypatch.setenv("CASBAK_PASSWORD", "wrong")
    assert run(encrypted, "key", "list", "--password-file", str(new_file))[0] == 0
    monkeypatch.setenv("CASBAK_PASSWORD", "first password")
    code, out, _ = run(encrypted, "key", "remove", added["id"][:6])
    assert (code, out) == (0, f"removed key slot {added['id']}\n")
    assert run(encrypted, "key", "list", "--password-file", str(new_file))[0] == 13


def test_removing_the_last_slot_is_refused(encrypted: Path) -> None:
    before = tree_state(encrypted)
    code, _, err = run(encrypted, "key", "remove", _slots(encrypted)[0])
    assert code == 1
    assert "last" in err
    assert tree_state(encrypted) == before


@pytest.mark.parametrize(("prefix", "message"), [("ab", "too short"), ("ffffffff", "no key slot")])
def test_remove_names_an_unknown_or_short_slot(encrypted: Path, prefix: str, message: str) -> None:
    code, _, err = run(encrypted, "key", "remove", prefix)
    assert code == 1
    assert message in err


def test_passwd_replaces_the_slot(encrypted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = _slots(encrypted)
    monkeypatch.setenv("CASBAK_NEW_PASSWORD", "changed")
    code, out, _ = run(encrypted, "--json", "key", "passwd", *CHEAP)
    assert code == 0
    result = json.loads(out)
    assert result["removed"] == old[0]
    assert _slots(encrypted) == [result["added"]["id"]]
    assert run(encrypted, "key", "list")[0] == 13
    monkeypatch.setenv("CASBAK_PASSWORD", "changed")
    assert run(encrypted, "key", "list")[0] == 0


def test_migrate_leaves_an_encrypted_repository_as_it_is(encrypted: Path) -> None:
    before = tree_state(encrypted)
    code, out, err = run(encrypted, "--json", "migrate")
    assert (code, err) == (0, "")
    assert json.loads(out)["nothing_to_do"] is True
    assert tree_state(encrypted) == before


def test_key_commands_refuse_a_plain_repository(tmp_path: Path) -> None:
    assert run(tmp_path / "plain", "init")[0] == 0
    code, _, err = run(tmp_path / "plain", "key", "list")
    assert code == 1
    assert "not an encrypted repository" in err


def test_a_damaged_slot_is_listed_and_the_others_still_open(encrypted: Path) -> None:
    (encrypted / "keys" / "0123456789abcdef.json").write_bytes(b"{not json")
    (encrypted / "keys" / "stray.txt").write_bytes(b"x")
    code, out, _ = run(encrypted, "--json", "key", "list")
    assert code == 0
    damaged = json.loads(out)["damaged"]
    assert set(damaged) == {"keys/0123456789abcdef.json", "keys/stray.txt"}


def test_a_slot_file_renamed_does_not_open(encrypted: Path) -> None:
    (only,) = list((encrypted / "keys").iterdir())
    only.rename(only.with_name("fedcba9876543210.json"))
    code, _, err = run(encrypted, "--json", "key", "list")
    assert code == 13
    assert "no key slots" in json.loads(err)["message"]


def test_the_library_api(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "api")
    config, first = init_encrypted(backend, "pw", kdf=CHEAP_KDF, label="one")
    assert first.current
    added = add_key(backend, "pw", "pw2", kdf=CHEAP_KDF, lock_timeout=1).added
    assert added is not None
    slot, master = unlock_repository(backend, config, "pw2")
    assert slot.id == added.id
    assert len(master) == 64
    listed = list_keys(backend, "pw").keys
    assert {(key.id, key.label, key.current) for key in listed} == {
        (first.id, "one", True),
        (added.id, "", False),
    }
    change = change_password(backend, "pw", "pw3", kdf=CHEAP_KDF, lock_timeout=1)
    assert change.removed == first.id
    assert remove_key(backend, "pw3", added.id, lock_timeout=1).removed == added.id
    assert [slot.label for slot in read_slots(backend).slots] == ["one"]
    assert unlock_repository(backend, config, "pw3")[1] == master
    assert backend.stat(CONFIG_KEY) is not None


def test_real_process_init_and_key_list(tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text("from a file\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASBAK_")}
    base = [sys.executable, "-m", "casbak", "--repo", str(tmp_path / "repo")]
    init = [*base, "init", "--encrypt", "--password-file", str(password_file), *CHEAP]
    subprocess.run(init, check=True, env=env, capture_output=True)
    listed = subprocess.run(
        [*base, "--json", "key", "list", "--password-file", str(password_file)],
        env=env,
        capture_output=True,
        check=False,
    )
    assert listed.returncode == 0
    assert json.loads(listed.stdout)["keys"][0]["current"] is True
    wrong = subprocess.run(
        [*base, "key", "list"],
        env={**env, "CASBAK_PASSWORD": "nope"},
        capture_output=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert wrong.returncode == 13
    assert wrong.stderr.decode().startswith("casbak: error: wrong password")
    missing = subprocess.run(
        [*base, "key", "list"], env=env, capture_output=True, check=False, stdin=subprocess.DEVNULL
    )
    assert missing.returncode == 13
    assert b"Traceback" not in missing.stderr


@pytest.mark.parametrize(
    ("version", "encryption", "message"),
    [
        (4, {"aead": "aes-256-gcm-siv"}, "format 4 with encryption"),
        (5, None, "format 5 without encryption"),
        (5, {"aead": "rot13"}, "encryption scheme this casbak does not know"),
    ],
)
def test_a_config_whose_encryption_and_format_disagree_is_refused(
    encrypted: Path, version: int, encryption: dict[str, str] | None, message: str
) -> None:
    from casbak.errors import FormatVersionError

    config = json.loads((encrypted / "config").read_bytes())
    config["version"] = version
    if encryption is None:
        del config["encryption"]
    else:
        config["encryption"] = encryption
    with pytest.raises(FormatVersionError, match=message):
        decode_config(json.dumps(config).encode(), "config")


@pytest.mark.parametrize("command", ["add", "remove", "passwd"])
def test_a_key_command_that_waited_for_the_lock_re_reads_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """Like every lock: the config changed while it waited (here: replaced), so it stops.

    The change is made at the moment it starts waiting, and the lock in its
    way released then, so nothing here depends on timing.
    """
    import casbak.locks as locks_module
    from casbak.errors import FormatVersionError
    from casbak.locks import LockManager

    backend = LocalBackend(tmp_path / "repo")
    init_encrypted(backend, "pw", kdf=CHEAP_KDF)
    second = add_key(backend, "pw", "pw2", kdf=CHEAP_KDF, lock_timeout=1).added
    assert second is not None
    in_the_way = LockManager(backend).exclusive("gc", 1)
    real = locks_module.LockManager._wait_or_give_up

    def meanwhile(self: LockManager, *args: object) -> float:
        if backend.stat(in_the_way.key) is not None:
            config = json.loads(backend.get(CONFIG_KEY))
            config["retention_days"] += 1
            backend.put(CONFIG_KEY, json.dumps(config).encode(), overwrite=True)
            in_the_way.release()
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(locks_module.LockManager, "_wait_or_give_up", meanwhile)
    untouched = {path.name for path in (tmp_path / "repo" / "keys").iterdir()}
    with pytest.raises(FormatVersionError, match="while this command waited for its lock"):
        if command == "add":
            add_key(backend, "pw", "pw3", kdf=CHEAP_KDF, lock_timeout=30)
        elif command == "remove":
            remove_key(backend, "pw", second.id, lock_timeout=30)
        else:
            change_password(backend, "pw", "pw3", kdf=CHEAP_KDF, lock_timeout=30)
    assert {path.name for path in (tmp_path / "repo" / "keys").iterdir()} == untouched
    assert list((tmp_path / "repo" / "locks").iterdir()) == []
