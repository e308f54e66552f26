"""An encrypted repository end to end: every command with the password, none without it.

After snapshots of the sample tenants, no file name or content of the
repository (nor its raw-bytes cache) holds a tenant id, a tenant name, a
domain, or a plain blake3 id of any document.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from casbak.canonical import decode_canonical
from casbak.ids import hash_bytes
from casbak.rawcache import cache_folder
from casbak.sources import read_sources
from tests.conftest import ROOT, tree_state
from tests.test_cli import ROUND1, ROUND2, run

CHEAP = ("--kdf-memory", "8", "--kdf-iterations", "1")


@pytest.fixture
def passwords(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    for name in ("CASBAK_PASSWORD", "CASBAK_PASSWORD_COMMAND", "CASBAK_NEW_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_text("correct horse\n")
    wrong.write_text("incorrect horse\n")
    return str(right), str(wrong)


def _secrets() -> set[bytes]:
    """Tenant ids, names and domains, and the plain ids of the documents, hex and raw."""
    found: set[bytes] = set()
    for document in [*read_sources([str(ROUND1)]), *read_sources([str(ROUND2)])]:
        assert document.canonical is not None
        value = decode_canonical(document.canonical)
        inner = value.get("tenant", value)
        found |= {document.digest.encode(), bytes.fromhex(document.digest)}
        found |= {document.tenant_id.encode(), inner["name"].encode()}
        found |= {domain.encode() for domain in inner.get("selfProvisioningDomains", [])}
    assert len(found) > 40
    return found


def _leaks(folder: Path, secrets: set[bytes]) -> list[str]:
    leaks = []
    for path in folder.rglob("*"):
        name = str(path.relative_to(folder)).encode()
        content = path.read_bytes() if path.is_file() else b""
        leaks += [f"{path}: {s!r}" for s in secrets if s in name or s in content]
    return leaks


def test_every_command_works_with_the_password_and_nothing_leaks(
    tmp_path: Path, passwords: tuple[str, str]
) -> None:
    right, wrong = passwords
    repo = tmp_path / "repo"
    assert run(repo, "--password-file", right, "init", "--encrypt", *CHEAP)[0] == 0

    def ok(*args: str) -> str:
        code, out, err = run(repo, "--password-file", right, *args)
        assert code == 0, (args, err)
        return out

    first = json.loads(ok("--json", "snapshot", str(ROUND1), "--operation", "sync-apply"))
    ok("snapshot", str(ROUND2), "--operation", "sync-apply", "-d", "second")
    listed = json.loads(ok("--json", "list"))["snapshots"]
    assert [s["description"] for s in listed] == ["second", ""]
    assert listed[0]["target_id"] == "all-tenants"  # the catalog keeps it, sealed
    assert "acme-corp-emea" in ok("show", first["snapshot"]["id"][:8])
    assert "+ wayne-enterprises" in ok("diff", first["snapshot"]["id"], "latest")
    assert len(json.loads(ok("--json", "log", "globex-us"))) == 2
    ok("restore", "latest", "--output", str(tmp_path / "out"))
    restored = {path.name.split("-")[0] for path in (tmp_path / "out").glob("*.json")}
    assert len(restored) == 7
    assert "wayne" in restored
    assert json.loads(ok("--json", "verify"))["ok"] is True
    assert json.loads(ok("--json", "stats"))["objects_stored"] == 10

    before = tree_state(repo)
    for args in (("list",), ("show", "latest"), ("verify",), ("gc", "--grace", "0s")):
        assert run(repo, *args)[0] == 13, args
        assert run(repo, "--password-file", wrong, *args)[0] == 13, args
    assert tree_state(repo) == before

    secrets = _secrets()
    names = [p.name for p in (repo / "manifests").iterdir()]
    assert all("_sealed_" in name for name in names), names
    assert _leaks(repo, secrets) == []
    # The raw-bytes cache names tenants too: sealed like the repository.
    repository_id = json.loads((repo / "config").read_bytes())["repository_id"]
    cache = cache_folder() / f"{repository_id}.raw"
    assert not any(secret in cache.read_bytes() for secret in secrets)

    cleaned = json.loads(ok("--json", "cleanup", "--keep-last", "1", "--grace", "0s"))
    assert cleaned["snapshots_removed"] == 1
    assert json.loads(ok("--json", "gc", "--grace", "0s"))["objects_removed"] == 0
    assert json.loads(ok("--json", "verify"))["ok"] is True
    assert json.loads(ok("--json", "stats"))["objects_stored"] == 7
    assert _leaks(repo, secrets) == []


def test_a_real_process_snapshots_and_lists_an_encrypted_repository(
    tmp_path: Path, passwords: tuple[str, str]
) -> None:
    right, _wrong = passwords
    repo = tmp_path / "repo"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CASBAK_PASSWORD")}
    environ["PYTHONPATH"] = str(ROOT)

    def casbak(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "casbak", "--repo", str(repo), *args],
            capture_output=True,
            text=True,
            env=env or environ,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    assert casbak("init", "--encrypt", "--password-file", right, *CHEAP).returncode == 0
    with_env = {**environ, "CASBAK_PASSWORD": "correct horse"}
    assert casbak("snapshot", str(ROUND1), env=with_env).returncode == 0
    listed = casbak("--json", "list", "--password-file", right)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["snapshots"]) == 1
    refused = casbak("list")
    assert refused.returncode == 13
    assert refused.stderr.count("\n") == 1


@pytest.fixture
def snapshotted(tmp_path: Path, passwords: tuple[str, str]) -> tuple[Path, str]:
    right, _wrong = passwords
    repo = tmp_path / "repo"
    assert run(repo, "--password-file", right, "init", "--encrypt", *CHEAP)[0] == 0
    for source in (ROUND1, ROUND2):
        assert run(repo, "--password-file", right, "snapshot", str(source))[0] == 0
    return repo, right


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _findings(repo: Path, right: str) -> list[dict[str, str]]:
    code, out, err = run(repo, "--password-file", right, "--json", "verify")
    assert code == 3, err
    findings: list[dict[str, str]] = json.loads(out)["findings"]
    return findings


def test_a_flipped_byte_in_a_pack_is_damage_naming_the_object(
    snapshotted: tuple[Path, str],
) -> None:
    repo, right = snapshotted
    pack = max((repo / "packs").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
    _flip(pack, 3)
    findings = _findings(repo, right)
    assert any(f["kind"] == "corrupt-pack" and pack.name in f["location"] for f in findings)
    assert any("does not decrypt" in f["message"] for f in findings), findings


def test_a_swapped_manifest_is_damage(snapshotted: tuple[Path, str]) -> None:
    repo, right = snapshotted
    first, second = sorted((repo / "manifests").iterdir())
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    findings = _findings(repo, right)
    assert {f["location"] for f in findings} >= {
        f"manifests/{first.name}",
        f"manifests/{second.name}",
    }, findings


def test_a_bundle_of_an_encrypted_repository_is_sealed(
    snapshotted: tuple[Path, str], tmp_path: Path, passwords: tuple[str, str]
) -> None:
    repo, right = snapshotted
    _right, wrong = passwords
    bundle = tmp_path / "bundle"
    code, out, err = run(
        repo, "--password-file", right, "--json", "export", "--all", "-o", str(bundle), *CHEAP
    )
    assert code == 0, err
    assert json.loads(out)["manifests"] == 2
    data = bundle.read_bytes()
    assert data.startswith(b'{"format":"casbak-sealed-bundle"')
    assert not [secret for secret in _secrets() if secret in data]
    assert b"manifests/" not in data and b"casbak-bundle.json" not in data

    code, out, _ = run(repo, "--password-file", right, "--json", "verify", "--bundle", str(bundle))
    assert code == 0
    assert json.loads(out)["objects_stored"] == 10
    assert run(repo, "verify", "--bundle", str(bundle))[0] == 13
    assert run(repo, "--password-file", wrong, "verify", "--bundle", str(bundle))[0] == 13

    # Into another encrypted repository (another master key, another password).
    other, other_password = tmp_path / "other", tmp_path / "other-password"
    other_password.write_text("another\n")
    assert run(other, "--password-file", str(other_password), "init", "--encrypt", *CHEAP)[0] == 0

    def into_other(*args: str) -> dict[str, object]:
        code, out, err = run(other, "--password-file", str(other_password), "--json", *args)
        assert code == 0, err
        result: dict[str, object] = json.loads(out)
        return result

    imported = into_other("import", str(bundle), "--bundle-password-file", right)
    assert (imported["manifests"], imported["objects"]) == (2, 10)
    again = into_other("import", str(bundle), "--bundle-password-file", right)
    assert (again["manifests"], again["manifests_skipped"], again["objects"]) == (0, 2, 0)
    assert into_other("verify")["ok"] is True
    assert [s["description"] for s in into_other("list")["snapshots"]] == [
        s["description"]
        for s in json.loads(run(repo, "--password-file", right, "--json", "list")[1])["snapshots"]
    ]
    assert not _leaks(other, _secrets())

    # Into a plain repository: the ids are the plain ones the bundle lists.
    plain = tmp_path / "plain"
    assert run(plain, "init")[0] == 0
    code, out, err = run(plain, "--json", "import", str(bundle), "--bundle-password-file", right)
    assert code == 0, err
    assert json.loads(run(plain, "--json", "verify")[1])["ok"] is True
    assert "acme-corp-emea" in run(plain, "show", "latest")[1]


@pytest.mark.parametrize("damage", ["flip", "truncate", "append"])
def test_a_damaged_sealed_bundle_is_refused_and_changes_nothing(
    snapshotted: tuple[Path, str], tmp_path: Path, damage: str
) -> None:
    repo, right = snapshotted
    bundle = tmp_path / "bundle"
    assert run(repo, "--password-file", right, "export", "--all", "-o", str(bundle), *CHEAP)[0] == 0
    data = bundle.read_bytes()
    header_end = data.index(b"\n") + 1
    if damage == "flip":
        _flip(bundle, header_end + 100)
    elif damage == "truncate":
        bundle.write_bytes(data[: len(data) - 50])
    else:
        bundle.write_bytes(data + b"\x00" * 10)
    code, out, _ = run(repo, "--password-file", right, "--json", "verify", "--bundle", str(bundle))
    assert code == 3
    assert json.loads(out)["findings"][0]["kind"] == "bad-bundle"
    before = tree_state(repo)
    code, _, err = run(repo, "--password-file", right, "import", str(bundle))
    assert code == 1
    assert "bundle" in err
    assert tree_state(repo) == before


def test_a_plain_bundle_imports_into_an_encrypted_repository(
    snapshotted: tuple[Path, str], tmp_path: Path
) -> None:
    repo, right = snapshotted
    plain, bundle = tmp_path / "plain", tmp_path / "plain-bundle"
    assert run(plain, "init")[0] == 0
    assert run(plain, "snapshot", str(ROUND2), "-d", "from plain")[0] == 0
    assert run(plain, "export", "--all", "-o", str(bundle))[0] == 0
    code, out, err = run(repo, "--password-file", right, "--json", "import", str(bundle))
    assert code == 0, err
    assert json.loads(out)["manifests"] == 1
    assert json.loads(out)["objects"] == 0  # all already there, under their keyed ids
    listed = json.loads(run(repo, "--password-file", right, "--json", "list")[1])["snapshots"]
    assert listed[0]["description"] == "from plain"
    assert json.loads(run(repo, "--password-file", right, "--json", "verify")[1])["ok"] is True


def _rename_to_hash(path: Path) -> Path:
    """A file tampered with by someone who renames it to the hash of its new bytes."""
    renamed = path.with_name(hash_bytes(path.read_bytes()))
    path.rename(renamed)
    return renamed


def test_a_tampered_index_file_renamed_to_its_hash_does_not_decrypt(
    snapshotted: tuple[Path, str],
) -> None:
    repo, right = snapshotted
    index = sorted((repo / "index").iterdir())[0]
    _flip(index, 20)
    renamed = _rename_to_hash(index)
    findings = _findings(repo, right)
    assert any(
        f["kind"] == "corrupt-index" and renamed.name in f["location"] and "decrypt" in f["message"]
        for f in findings
    ), findings


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_catalog_head_is_a_warning_and_commands_still_work(
    snapshotted: tuple[Path, str], damage: str
) -> None:
    repo, right = snapshotted
    head = repo / "catalog" / "head"
    if damage == "flip":
        _flip(head, 30)
    else:
        head.write_bytes(head.read_bytes()[:20])
    code, out, err = run(repo, "--password-file", right, "--json", "verify")
    assert code == 0, err
    kinds = {f["kind"]: f["location"] for f in json.loads(out)["findings"]}
    assert kinds.get("corrupt-catalog") == "catalog/head"
    # As in a plain repository: a damaged catalog is exit 3 naming it, until gc rewrites it.
    code, _, err = run(repo, "--password-file", right, "list")
    assert code == 3
    assert "catalog/head" in err
    assert run(repo, "--password-file", right, "gc")[0] == 0
    listed = run(repo, "--password-file", right, "--json", "list")
    assert len(json.loads(listed[1])["snapshots"]) == 2


def test_a_journal_entry_moved_to_another_number_does_not_open(
    tmp_path: Path, passwords: tuple[str, str]
) -> None:
    right, _wrong = passwords
    repo = tmp_path / "repo"
    assert run(repo, "--password-file", right, "init", "--encrypt", *CHEAP)[0] == 0
    assert run(repo, "--password-file", right, "list")[0] == 0  # a catalog head, no entries
    assert run(repo, "--password-file", right, "snapshot", str(ROUND1))[0] == 0
    journal = sorted((repo / "catalog" / "journal").iterdir())
    assert journal, "the snapshot is told to the journal first"
    moved = journal[-1].with_name(f"{int(journal[-1].name) + 1:012d}")
    # A copy of a sound entry under the next number: its tag names the number it was made for.
    moved.write_bytes(journal[-1].read_bytes())
    code, out, err = run(repo, "--password-file", right, "--json", "verify")
    assert code == 0, err
    findings = json.loads(out)["findings"]
    assert any(
        f["kind"] == "corrupt-catalog" and f["location"] == f"catalog/journal/{moved.name}"
        for f in findings
    ), findings


def test_a_damaged_key_slot_is_reported_and_another_still_opens(
    snapshotted: tuple[Path, str], tmp_path: Path
) -> None:
    repo, right = snapshotted
    second = tmp_path / "second"
    second.write_text("another password\n")
    code, out, err = run(
        repo,
        "--password-file",
        right,
        "--json",
        "key",
        "add",
        "--new-password-file",
        str(second),
        *CHEAP,
    )
    assert code == 0, err
    added = json.loads(out)["added"]["id"]
    (first_slot,) = [path for path in (repo / "keys").iterdir() if path.stem != added]
    _flip(first_slot, 10)
    code, out, err = run(repo, "--password-file", str(second), "--json", "verify")
    assert code == 0, err
    findings = json.loads(out)["findings"]
    assert [f["kind"] for f in findings] == ["corrupt-key-slot"], findings
    assert findings[0]["location"] == f"keys/{first_slot.name}"


def test_a_clean_encrypted_repository_has_no_findings(snapshotted: tuple[Path, str]) -> None:
    repo, right = snapshotted
    code, out, _ = run(repo, "--password-file", right, "--json", "verify")
    assert code == 0
    assert json.loads(out)["findings"] == []


def test_an_encrypted_repository_on_s3(s3_env: str, passwords: tuple[str, str]) -> None:
    from casbak.backends.s3 import S3Backend

    right, wrong = passwords
    repo = s3_env

    def ok(*args: str) -> str:
        code, out, err = run(repo, "--password-file", right, *args)
        assert code == 0, (args, err)
        return out

    ok("init", "--encrypt", *CHEAP)
    first = json.loads(ok("--json", "snapshot", str(ROUND1)))["snapshot"]["id"]
    ok("snapshot", str(ROUND2))
    assert len(json.loads(ok("--json", "list"))["snapshots"]) == 2
    assert "+ wayne-enterprises" in ok("diff", first, "latest")
    assert json.loads(ok("--json", "verify"))["ok"] is True
    assert run(repo, "--password-file", wrong, "list")[0] == 13
    assert (
        json.loads(ok("--json", "cleanup", "--keep-last", "1", "--grace", "0s"))[
            "snapshots_removed"
        ]
        == 1
    )
    ok("gc", "--grace", "0s")
    assert json.loads(ok("--json", "verify"))["ok"] is True
    backend = S3Backend(repo)
    secrets = _secrets()
    stored = {info.key: backend.get(info.key) for info in backend.list("")}
    assert any(key.startswith("keys/") for key in stored), sorted(stored)
    leaks = [
        (key, secret)
        for key, data in stored.items()
        for secret in secrets
        if secret in key.encode() or secret in data
    ]
    assert leaks == []


def test_the_other_commands_on_an_encrypted_repository(
    snapshotted: tuple[Path, str], tmp_path: Path
) -> None:
    repo, right = snapshotted

    def ok(*args: str) -> str:
        code, out, err = run(repo, "--password-file", right, *args)
        assert code == 0, (args, err)
        return out

    dry = json.loads(ok("--json", "snapshot", str(ROUND2), "--dry-run"))
    assert dry["unchanged_snapshot"] is not None  # keyed ids compare like plain ones
    skipped = json.loads(ok("--json", "snapshot", str(ROUND2), "--skip-if-unchanged"))
    assert skipped["skipped"] is True
    found = json.loads(ok("--json", "find", "--tenant", "wayne-enterprises"))
    assert [version["tenant_id"] for version in found] == ["wayne-enterprises"]
    assert "name" in ok("log", "-p", "globex-us")
    assert json.loads(ok("restore", "latest", "--tenant", "globex-us", "-o", "-"))["id"] == (
        "globex-us"
    )
    (tagged,) = json.loads(ok("--json", "tag", "latest", "--add", "keep"))
    assert tagged["changed"] and tagged["new"] != tagged["old"]
    assert "_sealed_" in next(
        p.name for p in (repo / "manifests").iterdir() if tagged["new"] in p.name
    )
    ok("report", "-o", str(tmp_path / "report.html"))
    assert "wayne-enterprises" in (tmp_path / "report.html").read_text()
    assert json.loads(ok("--json", "unlock"))["removed"] == []
    forgotten = json.loads(ok("--json", "forget", tagged["new"], "--force", "--grace", "0s"))
    assert len(forgotten["removed"]) == 1
    assert json.loads(ok("--json", "verify"))["ok"] is True
    assert not _leaks(repo, _secrets())


def test_a_dictionary_is_sealed_and_a_damaged_one_is_damage(
    tmp_path: Path, passwords: tuple[str, str]
) -> None:
    right, _wrong = passwords
    repo, source = tmp_path / "repo", tmp_path / "tenants"
    source.mkdir()
    for n in range(80):  # enough to train a dictionary
        tenant = {"id": f"tenant-{n:03d}", "name": f"Customer {n}", "domains": [f"c{n}.example"]}
        (source / f"{n:03d}.json").write_text(json.dumps(tenant))
    assert run(repo, "--password-file", right, "init", "--encrypt", *CHEAP)[0] == 0
    assert run(repo, "--password-file", right, "snapshot", str(source))[0] == 0
    (dictionary,) = (repo / "dicts").iterdir()
    # A trained dictionary is made of pieces of the documents: sealed, it shows none.
    assert b"Customer" not in dictionary.read_bytes()
    assert b"example" not in dictionary.read_bytes()
    # Index records name the dictionary by the hash of its sealed bytes, so a damaged one
    # fails that check before its tag is tried; either way it is damage, never a crash.
    _flip(dictionary, 40)
    findings = _findings(repo, right)
    assert any("dictionary" in f["message"] for f in findings), findings
