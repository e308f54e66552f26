"""snapshot --id-from-filename: one tenant per file, named by the file, stored as it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tree_state
from tests.test_cli import run

REALM = {
    "realm": "shop",
    "enabled": True,
    "clients": [{"clientId": "web", "redirectUris": ["https://shop.example/*"]}],
    "roles": {"realm": [{"name": "admin"}, {"name": "user"}]},
    "id": 7,
}
"""A realm export: its own ``id`` is no tenant id (a number here), its list order matters."""


@pytest.fixture
def realms(tmp_path: Path) -> Path:
    folder = tmp_path / "realms"
    (folder / "team").mkdir(parents=True)
    (folder / "shop.json").write_text(json.dumps(REALM, indent=2))
    (folder / "team" / "auth.json").write_text(json.dumps({**REALM, "realm": "auth"}))
    return folder


def _init(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    assert run(repo, "init")[0] == 0
    return repo


def test_each_file_is_one_tenant_named_by_its_path(tmp_path: Path, realms: Path) -> None:
    repo = _init(tmp_path)
    code, out, err = run(repo, "--json", "snapshot", "-r", "--id-from-filename", str(realms))
    assert code == 0, err
    snapshot_id = json.loads(out)["snapshot"]["id"]
    code, out, _ = run(repo, "--json", "show", snapshot_id)
    assert sorted(t["tenant_id"] for t in json.loads(out)["tenants"]) == ["shop", "team/auth"]
    target = tmp_path / "out.json"
    code, _, err = run(repo, "restore", "shop@latest", "--output", str(target))
    assert code == 0, err
    assert json.loads(target.read_text()) == REALM


def test_a_lone_file_is_named_by_its_own_name(tmp_path: Path, realms: Path) -> None:
    repo = _init(tmp_path)
    code, out, _ = run(
        repo, "--json", "snapshot", "--dry-run", "--id-from-filename", str(realms / "shop.json")
    )
    assert code == 0
    assert [t["tenant_id"] for t in json.loads(out)["tenants"]] == ["shop"]


def test_without_the_option_such_a_file_is_refused(tmp_path: Path, realms: Path) -> None:
    repo = _init(tmp_path)
    code, _, err = run(repo, "snapshot", str(realms / "shop.json"))
    assert code == 1
    assert "'id' is a number (7)" in err


def test_an_array_is_refused_and_nothing_is_written(tmp_path: Path, realms: Path) -> None:
    repo = _init(tmp_path)
    (realms / "many.json").write_text(json.dumps([REALM, REALM]))
    before = tree_state(repo)
    code, out, err = run(repo, "snapshot", "-r", "--id-from-filename", str(realms))
    assert (code, out) == (1, "")
    assert err.strip() == (
        f"casbak: error: {realms}/many.json: a tenant named by its file must be a JSON object"
    )
    assert tree_state(repo) == before


def test_stdin_has_no_name(tmp_path: Path) -> None:
    repo = _init(tmp_path)
    code, _, err = run(repo, "snapshot", "--id-from-filename", "-", input=json.dumps(REALM))
    assert code == 1
    assert "(stdin) has no file name" in err


def test_the_cache_keeps_names_and_readings_apart(
    tmp_path: Path, realms: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASBAK_CACHE_DIR", str(tmp_path / "cache"))
    repo = _init(tmp_path)
    (realms / "copy.json").write_bytes((realms / "shop.json").read_bytes())
    for _ in range(2):  # the second run is answered by the raw-bytes cache
        code, out, err = run(repo, "--json", "snapshot", "-r", "--id-from-filename", str(realms))
        assert code == 0, err
        code, out, _ = run(repo, "--json", "show", "latest")
        tenants = {t["tenant_id"]: t["object"] for t in json.loads(out)["tenants"]}
        assert sorted(tenants) == ["copy", "shop", "team/auth"]
        assert tenants["copy"] == tenants["shop"]
    # The same bytes read the usual way are still judged on their own id.
    (realms / "tenant.json").write_text(json.dumps({"id": "acme", "name": "Acme"}))
    code, _, err = run(repo, "snapshot", str(realms / "tenant.json"))
    assert code == 0, err
    code, _, err = run(repo, "snapshot", str(realms / "shop.json"))
    assert code == 1 and "'id' is a number" in err


def test_with_from_descope_it_is_refused(tmp_path: Path) -> None:
    repo = _init(tmp_path)
    code, _, err = run(repo, "snapshot", "--from-descope", "--id-from-filename")
    assert code == 2
    assert "--id-from-filename" in err


def test_a_real_process(tmp_path: Path, realms: Path) -> None:
    repo = tmp_path / "repo"
    casbak = [sys.executable, "-m", "casbak", "--repo", str(repo)]
    subprocess.run([*casbak, "init"], check=True, capture_output=True)
    done = subprocess.run(
        [*casbak, "--json", "snapshot", "-r", "--id-from-filename", str(realms)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["snapshot"]["tenants"] == 2


def test_a_file_name_that_is_no_text_is_refused(tmp_path: Path) -> None:
    repo = _init(tmp_path)
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / os.fsdecode(b"caf\xe9.json")).write_text(json.dumps(REALM))
    before = tree_state(repo)
    code, out, err = run(repo, "snapshot", "--id-from-filename", str(folder))
    assert (code, out) == (1, "")
    assert "needs a UTF-8 file name" in err
    assert tree_state(repo) == before
    (folder / os.fsdecode(b"caf\xe9.json")).unlink()
    (folder / "tab\there.json").write_text(json.dumps(REALM))
    code, _, err = run(repo, "snapshot", "--id-from-filename", str(folder))
    assert code == 1 and "without control characters" in err
    assert tree_state(repo) == before
