"""migrate --encrypt: a plain repository becomes an encrypted one, crash-safe and resumable.

After it, every snapshot restores to the same documents (under new, keyed
ids, with the same metadata), verify is clean, and no file name or content of
the repository holds a tenant string or a plain id. A crash at any write point
leaves a repository that verifies clean (the plain one before the commit, the
encrypted one after), and running the same command again finishes the job.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import casbak.encryptmigrate as encryptmigrate
import casbak.locks as locks_module
import casbak.transfer as transfer_module
from casbak.backends.local import LocalBackend
from casbak.encryptmigrate import migrate_encrypt
from casbak.errors import FormatVersionError, RepositoryLocked
from casbak.keyfile import Argon2id
from casbak.layout import CONFIG_KEY, ENCRYPTED_ROOT
from casbak.locks import LockManager
from casbak.model import RepositoryConfig, decode_config
from casbak.rawcache import RawCache, cache_folder
from casbak.repository import Repository
from casbak.service import restore_documents, take_snapshot
from casbak.sources import read_sources
from casbak.verify import verify_repository
from tests.conftest import ROOT, tree_state
from tests.faulty import Crash, injected
from tests.oldformats import as_format_3, without_provenance
from tests.test_cli import ROUND1, ROUND2, run
from tests.test_encrypted_repository import CHEAP, _leaks, _secrets

PASSWORD = "correct horse"
KDF = Argon2id(iterations=1, memory_kib=8, lanes=1)
ALLOWED_WARNINGS = {"unfinished-encryption", "encryption-leftover"}
"""What a crash may leave for verify to mention, besides stale locks (info)."""


@pytest.fixture
def passwords(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    for name in ("CASBAK_PASSWORD", "CASBAK_PASSWORD_COMMAND", "CASBAK_NEW_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_text(f"{PASSWORD}\n")
    wrong.write_text("incorrect horse\n")
    return str(right), str(wrong)


def plain_repository(path: Path) -> dict[str, dict[str, Any]]:
    """Two snapshots with a description, tags and provenance; each one's metadata and documents."""
    assert run(path, "init")[0] == 0
    code, _, err = run(
        path, "snapshot", str(ROUND1), "--operation", "sync-apply", "--tag", "first", "-d", "one"
    )
    assert code == 0, err
    code, _, err = run(path, "snapshot", str(ROUND2), "--meta", "ticket=OPS-7", "-t", "prod")
    assert code == 0, err
    return state_of(Repository.open(LocalBackend(path), password=PASSWORD))


def state_of(repo: Repository) -> dict[str, dict[str, Any]]:
    """Each snapshot's id with what must survive: metadata and restored documents."""
    listed = {}
    for snap in repo.snapshots():
        header = snap.header
        listed[snap.id] = {
            "meta": (
                header.timestamp,
                header.operation,
                header.target_id,
                header.description,
                list(header.tags),
                dict(header.provenance),
            ),
            "documents": restore_documents(repo, snap.id)[1],
        }
    return listed


def same_snapshots(before: dict[str, dict[str, Any]], repo: Repository) -> dict[str, str]:
    """Assert ``repo`` holds exactly ``before``'s snapshots under new ids; old id to new id."""
    after = state_of(repo)
    by_meta = {str(value["meta"]): sid for sid, value in after.items()}
    assert len(after) == len(before)
    mapping = {}
    for old, value in before.items():
        new = by_meta[str(value["meta"])]
        assert after[new]["documents"] == value["documents"]
        mapping[old] = new
    return mapping


@pytest.fixture
def plain(tmp_path: Path, passwords: tuple[str, str]) -> tuple[Path, dict[str, dict[str, Any]]]:
    path = tmp_path / "repo"
    return path, plain_repository(path)


def top_level(path: Path) -> set[str]:
    """The first component of every file's key."""
    return {key.split("/")[0] for key in LocalBackend(path).list_names("")}


def test_migrate_encrypt_keeps_every_snapshot_and_leaks_nothing(
    plain: tuple[Path, dict[str, dict[str, Any]]], passwords: tuple[str, str]
) -> None:
    path, before = plain
    right, wrong = passwords
    repository_id = json.loads((path / "config").read_bytes())["repository_id"]
    assert (cache_folder() / f"{repository_id}.raw").exists()  # plain, naming tenants
    code, out, err = run(path, "--password-file", right, "--json", "migrate", "--encrypt", *CHEAP)
    assert code == 0, err
    result = json.loads(out)
    assert set(result) == {
        "from_version",
        "to_version",
        "snapshots",
        "objects",
        "bytes_before",
        "bytes_after",
        "encrypted",
        "snapshot_ids",
        "leftovers_removed",
        "nothing_to_do",
    }
    assert result["from_version"] == 4
    assert result["to_version"] == 5
    assert result["encrypted"] is True
    assert result["snapshots"] == 2
    assert result["objects"] == 10
    assert result["bytes_before"] > 0 and result["bytes_after"] > 0
    assert result["nothing_to_do"] is False

    repo = Repository.open(LocalBackend(path), password=PASSWORD)
    assert repo.version == 5
    assert repo.config.repository_id == repository_id  # the key slot is bound to it
    assert same_snapshots(before, repo) == result["snapshot_ids"]
    assert top_level(path) == {"config", "encrypted"}
    assert json.loads((path / "config").read_bytes())["root"] == ENCRYPTED_ROOT
    code, out, err = run(path, "--password-file", right, "--json", "verify")
    assert code == 0, err
    assert json.loads(out)["findings"] == []
    listed = json.loads(run(path, "--password-file", right, "--json", "list")[1])["snapshots"]
    assert {s["id"] for s in listed} == set(result["snapshot_ids"].values())
    assert [s["tags"] for s in listed] == [[], ["first"]]
    assert listed[0]["provenance"]["meta.ticket"] == "OPS-7"
    assert listed[0]["target_id"] == "prod"

    secrets = _secrets() | {old.encode() for old in before}
    assert _leaks(path, secrets) == []
    # The plain raw-bytes cache named the tenants in the clear: it is gone.
    assert not (cache_folder() / f"{repository_id}.raw").exists()

    assert run(path, "--password-file", wrong, "list")[0] == 13
    untouched = tree_state(path)
    code, out, _ = run(path, "--password-file", right, "migrate", "--encrypt")
    assert code == 0
    assert out.strip() == "nothing to do: the repository is already encrypted (format 5)"
    assert tree_state(path) == untouched
    # Writes go on in the encrypted repository, under encrypted/ only.
    assert run(path, "--password-file", right, "snapshot", str(ROUND1))[0] == 0
    assert top_level(path) == {"config", "encrypted"}
    assert _leaks(path, secrets) == []


def test_the_human_summary_is_one_line(
    plain: tuple[Path, dict[str, dict[str, Any]]], passwords: tuple[str, str]
) -> None:
    path, _before = plain
    code, out, err = run(path, "--password-file", passwords[0], "migrate", "--encrypt", *CHEAP)
    assert code == 0, err
    assert out.startswith("encrypted: format 4 -> 5: 2 snapshots, 10 objects; stored ")
    assert out.rstrip().endswith("; snapshot ids changed (--json maps old to new)")
    assert out.count("\n") == 1


def test_without_a_password_nothing_changes(
    plain: tuple[Path, dict[str, dict[str, Any]]], passwords: tuple[str, str]
) -> None:
    path, _before = plain
    untouched = tree_state(path)
    code, _, err = run(path, "migrate", "--encrypt", *CHEAP)
    assert code == 13
    assert err.count("\n") == 1
    assert tree_state(path) == untouched


@pytest.mark.parametrize("command", ["migrate", "init"])
@pytest.mark.parametrize("option", ["--kdf-memory", "--kdf-iterations"])
def test_kdf_options_without_encrypt_are_a_usage_error(
    tmp_path: Path, command: str, option: str
) -> None:
    path = tmp_path / "repo"
    if command == "migrate":
        assert run(path, "init")[0] == 0
    untouched = tree_state(path) if path.exists() else {}
    code, _, err = run(path, command, option, "8" if option == "--kdf-memory" else "1")
    assert code == 2, err
    assert err.count("\n") == 1
    assert "--kdf-memory and --kdf-iterations need --encrypt" in err
    assert (tree_state(path) if path.exists() else {}) == untouched


def test_an_encrypted_repository_has_nothing_to_do(
    tmp_path: Path, passwords: tuple[str, str]
) -> None:
    right, _wrong = passwords
    path = tmp_path / "repo"
    assert run(path, "--password-file", right, "init", "--encrypt", *CHEAP)[0] == 0
    assert run(path, "--password-file", right, "snapshot", str(ROUND1))[0] == 0
    untouched = tree_state(path)
    code, out, err = run(path, "--json", "migrate", "--encrypt")  # no password needed
    assert code == 0, err
    assert json.loads(out)["nothing_to_do"] is True
    assert json.loads(out)["from_version"] == 5
    assert tree_state(path) == untouched


def test_an_older_format_is_sent_to_migrate_first(
    tmp_path: Path, passwords: tuple[str, str]
) -> None:
    path = tmp_path / "repo"
    assert run(path, "init")[0] == 0
    with without_provenance():
        assert run(path, "snapshot", str(ROUND1))[0] == 0
    as_format_3(path)
    untouched = tree_state(path)
    code, _, err = run(path, "--password-file", passwords[0], "migrate", "--encrypt", *CHEAP)
    assert code == 12
    assert "run 'casbak migrate' first" in err
    assert tree_state(path) == untouched


def test_an_empty_repository_is_encrypted_too(tmp_path: Path, passwords: tuple[str, str]) -> None:
    path = tmp_path / "repo"
    assert run(path, "init")[0] == 0
    code, out, err = run(path, "--password-file", passwords[0], "migrate", "--encrypt", *CHEAP)
    assert code == 0, err
    assert out.startswith("encrypted: format 4 -> 5: 0 snapshots, 0 objects; stored ")
    assert "snapshot ids changed" not in out  # there were none
    code, out, err = run(path, "--json", "migrate", "--encrypt")
    assert code == 0, err
    assert json.loads(out)["nothing_to_do"] is True
    assert set(os.listdir(path)) == {"config", "encrypted"}
    code, out, _ = run(path, "--password-file", passwords[0], "--json", "verify")
    assert code == 0
    assert json.loads(out)["findings"] == []


def test_key_commands_work_on_a_converted_repository(
    plain: tuple[Path, dict[str, dict[str, Any]]], passwords: tuple[str, str], tmp_path: Path
) -> None:
    path, _before = plain
    right, _wrong = passwords
    assert run(path, "--password-file", right, "migrate", "--encrypt", *CHEAP)[0] == 0
    other = tmp_path / "other"
    other.write_text("battery staple\n")
    code, _, err = run(
        path, "--password-file", right, "key", "add", "--new-password-file", str(other), *CHEAP
    )
    assert code == 0, err
    assert len(list((path / "encrypted" / "keys").iterdir())) == 2
    assert top_level(path) == {"config", "encrypted"}
    assert run(path, "--password-file", str(other), "list")[0] == 0


# Crashes: at named steps, then at every write point.


def crash_in(monkeypatch: pytest.MonkeyPatch, name: str, after: int = 0) -> None:
    """Make ``encryptmigrate.<name>`` die as a process would, after ``after`` calls went through."""
    real = getattr(encryptmigrate, name)
    calls = {"n": 0}

    def dying(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > after:
            raise Crash(f"crash in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(encryptmigrate, name, dying)


def crashed(path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    with monkeypatch.context() as patch:
        # The crashed "process" is this one: its lock must look like a dead process's.
        patch.setattr(locks_module, "_process_alive", lambda pid: False)
        crash_in(patch, name)
        with pytest.raises(Crash):
            migrate_encrypt(LocalBackend(path), PASSWORD, kdf=KDF)


def verify_findings(path: Path, right: str) -> list[dict[str, Any]]:
    code, out, err = run(path, "--password-file", right, "--json", "verify")
    assert code == 0, err
    findings: list[dict[str, Any]] = json.loads(out)["findings"]
    return findings


@pytest.mark.parametrize("step", ["import_bundle", "_commit"])
def test_a_crash_before_the_commit_leaves_the_plain_repository(
    plain: tuple[Path, dict[str, dict[str, Any]]],
    passwords: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    path, before = plain
    right, _wrong = passwords
    crashed(path, monkeypatch, step)
    repo = Repository.open(LocalBackend(path))
    assert repo.sealer is None
    assert state_of(repo) == before
    findings = [f for f in verify_findings(path, right) if f["severity"] != "info"]
    assert [f["kind"] for f in findings] == ["unfinished-encryption"]
    assert "migrate --encrypt in progress; run it again to finish" in findings[0]["message"]
    assert findings[0]["location"] == ENCRYPTED_ROOT

    code, out, err = run(path, "--password-file", right, "migrate", "--encrypt")
    assert code == 0, err
    assert out.startswith("encrypted: format 4 -> 5: 2 snapshots")
    same_snapshots(before, Repository.open(LocalBackend(path), password=PASSWORD))
    assert verify_findings(path, right) == []
    assert top_level(path) == {"config", "encrypted"}


def crash_while_removing(monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    """Make the removal of plain files die halfway through its ``after + 1``-th step.

    Its steps: the manifests (one depth at a time; the fixture's two are both
    whole), then the catalog and index files, then the rest.
    """
    real = encryptmigrate.delete_keys
    steps = {"n": 0}

    def dying(backend: Any, keys: list[str], keepalive: Callable[[], None] = lambda: None) -> int:
        keys = list(keys)
        if keys and isinstance(backend, LocalBackend):  # not the staged copy's own
            steps["n"] += 1
            if steps["n"] > after:
                real(backend, keys[: max(1, len(keys) // 2)], keepalive)
                raise Crash("crash while removing plain files")
        return real(backend, keys, keepalive)

    monkeypatch.setattr(encryptmigrate, "delete_keys", dying)


@pytest.mark.parametrize("after", [0, 1, 2], ids=["manifests", "indexes", "rest"])
def test_a_crash_while_removing_the_plain_files_leaves_the_encrypted_repository(
    plain: tuple[Path, dict[str, dict[str, Any]]],
    passwords: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    after: int,
) -> None:
    path, before = plain
    right, _wrong = passwords
    with monkeypatch.context() as patch:
        patch.setattr(locks_module, "_process_alive", lambda pid: False)
        crash_while_removing(patch, after)
        with pytest.raises(Crash):
            migrate_encrypt(LocalBackend(path), PASSWORD, kdf=KDF)
    repo = Repository.open(LocalBackend(path), password=PASSWORD)
    assert repo.sealer is not None
    mapping = same_snapshots(before, repo)
    findings = [f for f in verify_findings(path, right) if f["severity"] != "info"]
    assert findings
    assert {f["kind"] for f in findings} == {"encryption-leftover"}
    assert all("left by migrate --encrypt; run it again" in f["message"] for f in findings)

    # A plain manifest left over is carried over again (import skips it): that
    # needs the password; once the manifests are gone, nothing sealed is touched.
    given = ("--password-file", right) if after == 0 else ()
    code, out, err = run(path, *given, "--json", "migrate", "--encrypt")
    assert code == 0, err
    result = json.loads(out)
    assert result["leftovers_removed"] > 0
    assert result["from_version"] == 5
    assert result["snapshot_ids"] == {}  # the manifests left were all carried over already
    assert result["nothing_to_do"] is False
    assert mapping
    assert top_level(path) == {"config", "encrypted"}
    assert set(os.listdir(path)) == {"config", "encrypted"}  # no empty plain folder either
    same_snapshots(before, Repository.open(LocalBackend(path), password=PASSWORD))
    assert verify_findings(path, right) == []
    assert _leaks(path, _secrets()) == []


FOREIGN = {
    "NOTES.txt": b"where the backups of the other team go\n",
    "mystuff/a": b"not casbak's\n",
    "packs/README": b"a note in a casbak folder\n",
}
"""Files a folder made with init --force may hold beside the repository."""


def foreign_state(path: Path) -> dict[str, bytes]:
    return {name: (path / name).read_bytes() for name in FOREIGN if (path / name).exists()}


@pytest.mark.parametrize("crash", [False, True], ids=["whole-run", "crash-and-rerun"])
def test_files_that_are_not_casbak_s_survive_the_conversion(
    tmp_path: Path, passwords: tuple[str, str], monkeypatch: pytest.MonkeyPatch, crash: bool
) -> None:
    path = tmp_path / "shared"
    path.mkdir(mode=0o700)
    for name, data in FOREIGN.items():
        (path / name).parent.mkdir(mode=0o700, exist_ok=True)
        (path / name).write_bytes(data)
        (path / name).chmod(0o600)  # so that verify has no permissions to mention
    right, _wrong = passwords
    assert run(path, "init", "--force")[0] == 0
    assert run(path, "snapshot", str(ROUND1), "-t", "prod")[0] == 0
    assert run(path, "snapshot", str(ROUND2), "-t", "prod")[0] == 0
    before = state_of(Repository.open(LocalBackend(path)))
    stale_write = path / "index" / ".tmp-0123456789abcdef"  # a plain write that never finished
    stale_write.write_bytes(b"plain bytes of a crashed write")

    if crash:
        with monkeypatch.context() as patch:
            patch.setattr(locks_module, "_process_alive", lambda pid: False)
            crash_while_removing(patch, 2)  # in the last step, which lists the top level
            with pytest.raises(Crash):
                migrate_encrypt(LocalBackend(path), PASSWORD, kdf=KDF)
        assert foreign_state(path) == FOREIGN
        findings = [f for f in verify_findings(path, right) if f["severity"] != "info"]
        unknown = {f["location"] for f in findings if f["kind"] == "unknown-file"}
        assert unknown == set(FOREIGN)
        assert {f["kind"] for f in findings} == {"unknown-file", "encryption-leftover"}
        assert all(
            f["location"] not in ("NOTES.txt", "mystuff/")
            for f in findings
            if f["kind"] == "encryption-leftover"
        )

    code, out, err = run(path, "--password-file", right, "--json", "migrate", "--encrypt", *CHEAP)
    assert code == 0, err
    assert foreign_state(path) == FOREIGN
    assert not stale_write.exists()
    # Only the plain layout's folders went, and only where empty ("packs/" holds the note).
    assert set(os.listdir(path)) == {"config", "encrypted", "NOTES.txt", "mystuff", "packs"}
    assert os.listdir(path / "packs") == ["README"]
    same_snapshots(before, Repository.open(LocalBackend(path), password=PASSWORD))
    findings = verify_findings(path, right)
    assert sorted((f["kind"], f["location"]) for f in findings) == [
        ("unknown-file", name) for name in sorted(FOREIGN)
    ]
    assert all(f["message"] == "not a casbak file" for f in findings)
    code, out, err = run(path, "--password-file", right, "--json", "migrate", "--encrypt")
    assert code == 0, err
    assert json.loads(out)["nothing_to_do"] is True
    assert foreign_state(path) == FOREIGN


def test_a_leftover_manifest_needs_the_password_to_be_carried_over(
    plain: tuple[Path, dict[str, dict[str, Any]]],
    passwords: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, _before = plain
    with monkeypatch.context() as patch:
        patch.setattr(locks_module, "_process_alive", lambda pid: False)
        crash_while_removing(patch, 0)
        with pytest.raises(Crash):
            migrate_encrypt(LocalBackend(path), PASSWORD, kdf=KDF)
    untouched = tree_state(path)
    code, _, err = run(path, "migrate", "--encrypt")
    assert code == 13, err
    assert err.count("\n") == 1
    assert tree_state(path) == untouched


def test_a_wrong_password_on_the_rerun_is_13_and_changes_nothing(
    plain: tuple[Path, dict[str, dict[str, Any]]],
    passwords: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, before = plain
    right, wrong = passwords
    crashed(path, monkeypatch, "_commit")
    untouched = tree_state(path)
    code, _, err = run(path, "--password-file", wrong, "migrate", "--encrypt")
    assert code == 13
    assert err.count("\n") == 1
    assert "was started by an earlier migrate --encrypt with another password" in err
    assert "give that one to continue, or delete encrypted/ to start over" in err
    assert tree_state(path) == untouched
    assert run(path, "--password-file", right, "migrate", "--encrypt")[0] == 0
    same_snapshots(before, Repository.open(LocalBackend(path), password=PASSWORD))


def test_the_plain_repository_stays_in_use_until_the_rerun(
    plain: tuple[Path, dict[str, dict[str, Any]]],
    passwords: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, _before = plain
    right, _wrong = passwords
    crashed(path, monkeypatch, "_commit")
    # Between the runs: one snapshot forgotten, one retagged, one taken.
    repo = Repository.open(LocalBackend(path))
    oldest, newest = sorted(repo.snapshots(), key=lambda snap: snap.header.timestamp)
    assert run(path, "forget", oldest.id, "--force", "--grace", "0s")[0] == 0
    assert run(path, "tag", newest.id, "--add", "kept")[0] == 0
    assert run(path, "snapshot", str(ROUND1), "-t", "later")[0] == 0
    wanted = state_of(Repository.open(LocalBackend(path)))
    assert len(wanted) == 2
    assert run(path, "--password-file", right, "migrate", "--encrypt")[0] == 0
    # Exactly the plain repository's snapshots now: the copy's stale ones went.
    same_snapshots(wanted, Repository.open(LocalBackend(path), password=PASSWORD))
    assert verify_findings(path, right) == []


def test_a_staged_copy_without_its_config_is_started_again(
    plain: tuple[Path, dict[str, dict[str, Any]]],
    passwords: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run that died between its key slot and its config: that slot must not be reused.

    It wraps a master key no config goes with, and the same password opens it.
    """
    path, before = plain
    crashed(path, monkeypatch, "import_bundle")
    (path / "encrypted" / "config").unlink()
    orphan = {p.name for p in (path / "encrypted" / "keys").iterdir()}
    assert run(path, "--password-file", passwords[0], "migrate", "--encrypt")[0] == 0
    assert not orphan & {p.name for p in (path / "encrypted" / "keys").iterdir()}
    same_snapshots(before, Repository.open(LocalBackend(path), password=PASSWORD))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    path = tmp_path_factory.mktemp("encrypt") / "repo"
    repo = Repository.init(LocalBackend(path))
    take_snapshot(repo, read_sources([str(ROUND1)]), operation="sync-apply", tags=["first"])
    take_snapshot(repo, read_sources([str(ROUND2)]), description="second")
    yield path, state_of(Repository.open(LocalBackend(path)))


def test_a_crash_at_every_write_point_leaves_a_sound_repository_and_a_rerun_finishes(
    template: tuple[Path, dict[str, dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, before = template
    counted = tmp_path / "count"
    shutil.copytree(path, counted)
    with injected() as proxy:
        migrate_encrypt(LocalBackend(counted), PASSWORD, kdf=KDF)
    total = proxy.count
    assert total > 50
    monkeypatch.setattr(locks_module, "_process_alive", lambda pid: False)
    states = set()
    for point in range(1, total + 1):
        target = tmp_path / "run"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(path, target)
        with pytest.raises(Crash), injected(fail_at=point):
            migrate_encrypt(LocalBackend(target), PASSWORD, kdf=KDF)
        repo = Repository.open(LocalBackend(target), password=PASSWORD)
        states.add(repo.version)
        report = verify_repository(repo)
        assert report.ok, (point, [f for f in report.findings if f.severity == "damage"])
        noted = {f.kind for f in report.findings if f.severity == "warning"}
        assert noted <= ALLOWED_WARNINGS, (point, report.findings)
        if repo.version == 4:
            assert state_of(repo) == before, point
        migrate_encrypt(LocalBackend(target), PASSWORD, kdf=KDF)
        repo = Repository.open(LocalBackend(target), password=PASSWORD)
        assert repo.version == 5
        same_snapshots(before, repo)
        report = verify_repository(repo)
        assert report.ok and report.findings == [], (point, report.findings)
        assert top_level(target) == {"config", "encrypted"}, point
    assert states == {4, 5}  # crashes on both sides of the commit


# A full temporary folder


class FullDisk(io.BytesIO):
    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_temporary_folder_is_one_line_and_a_rerun_continues(
    plain: tuple[Path, dict[str, dict[str, Any]]],
    passwords: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, before = plain
    right, _wrong = passwords
    untouched = tree_state(path)
    with monkeypatch.context() as patch:
        patch.setattr(encryptmigrate, "_spool", FullDisk)
        code, _, err = run(path, "--password-file", right, "migrate", "--encrypt", *CHEAP)
    assert code == 1, err
    assert err.count("\n") == 1
    assert "internal error" not in err
    assert f"in the temporary folder {tempfile.gettempdir()}: No space left on device" in err
    assert "set TMPDIR to a folder with room" in err
    assert "run migrate --encrypt again to continue" in err
    # Nothing changed but the staged copy (its config and key slot).
    changed = {k for k in tree_state(path).keys() ^ untouched.keys()}
    assert changed and all(k.startswith("encrypted/") for k in changed)
    assert all(tree_state(path)[k] == v for k, v in untouched.items())
    assert state_of(Repository.open(LocalBackend(path))) == before

    code, out, err = run(path, "--password-file", right, "migrate", "--encrypt")
    assert code == 0, err
    assert out.startswith("encrypted: format 4 -> 5: 2 snapshots")
    same_snapshots(before, Repository.open(LocalBackend(path), password=PASSWORD))
    assert verify_findings(path, right) == []


# The lock during a long conversion


def test_no_other_writer_gets_in_however_long_the_conversion_takes(
    plain: tuple[Path, dict[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plain repository's lock stays fresh through export, id translation and import.

    A long phase is simulated, not waited for: at its start the lock record is
    aged past the (scaled down) stale time, as a phase that long would leave
    it without a refresh; at its end another writer tries to take its lock.
    Refreshes are not throttled here, so each one shows.
    """
    path, before = plain
    monkeypatch.setattr(locks_module, "STALE_AFTER", 5.0)
    monkeypatch.setattr(locks_module, "REFRESH_EVERY", 0.0)
    got_in: list[str] = []
    probes: list[str] = []

    def age() -> None:
        for record in (path / "locks").glob("exclusive-*.json"):
            past = record.stat().st_mtime - 2 * locks_module.STALE_AFTER
            os.utime(record, (past, past))

    def probe(where: str) -> None:
        probes.append(where)
        try:
            LockManager(LocalBackend(path)).shared("snapshot", 0).release()
        except RepositoryLocked:
            return
        got_in.append(where)

    def slow_progress(done: int, total: int, size: int) -> None:
        probe("a progress step")  # the previous step aged the lock
        age()

    def around(name: str, module: Any) -> None:
        real = getattr(module, name)

        def slow(*args: Any, **kwargs: Any) -> Any:
            age()
            result = real(*args, **kwargs)
            probe(name)
            return result

        monkeypatch.setattr(module, name, slow)

    around("_new_ids", encryptmigrate)
    around("check_bundle", transfer_module)
    result = migrate_encrypt(LocalBackend(path), PASSWORD, kdf=KDF, progress=slow_progress)
    assert got_in == []
    assert {"a progress step", "_new_ids", "check_bundle"} <= set(probes)
    assert len(probes) > 20  # every object read and every object imported
    assert result.snapshots == 2
    same_snapshots(before, Repository.open(LocalBackend(path), password=PASSWORD))


# Commands that opened the plain repository before the commit.


def test_a_writer_that_opened_the_plain_repository_does_not_write_after_the_commit(
    plain: tuple[Path, dict[str, dict[str, Any]]], passwords: tuple[str, str]
) -> None:
    path, _before = plain
    waiting = Repository.open(LocalBackend(path))
    migrate_encrypt(LocalBackend(path), PASSWORD, kdf=KDF)
    with pytest.raises(FormatVersionError, match="waited for its lock; nothing was done, run it"):
        take_snapshot(waiting, read_sources([str(ROUND1)]), description="too late")
    assert top_level(path) == {"config", "encrypted"}
    repo = Repository.open(LocalBackend(path), password=PASSWORD)
    assert all(snap.header.description != "too late" for snap in repo.snapshots())
    assert verify_findings(path, passwords[0]) == []


def old_writer(path: Path, config: RepositoryConfig) -> Repository:
    """A casbak without the config re-read: it opened the plain repository before the commit.

    It waited on migrate's lock and writes at the top level once it has one.
    """
    return Repository(LocalBackend(path), config, watch_config=False)


def many_tenants(folder: Path, name: str, version: int) -> Path:
    """A source of 40 tenants (enough for a manifest to be stored as a delta)."""
    source = folder / f"{name}.json"
    tenants = [
        {"id": f"t{n:02d}", "name": f"tenant {n}", "rev": version if n == 0 else 1}
        for n in range(40)
    ]
    source.write_text(json.dumps(tenants))
    return source


@pytest.mark.parametrize("when", ["after-the-commit", "after-the-whole-run"])
def test_a_plain_snapshot_written_after_the_commit_is_carried_over(
    plain: tuple[Path, dict[str, dict[str, Any]]],
    passwords: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    when: str,
) -> None:
    path, _before = plain
    right, _wrong = passwords
    assert run(path, "snapshot", str(many_tenants(tmp_path, "one", 1)), "-t", "big")[0] == 0
    before = state_of(Repository.open(LocalBackend(path)))
    config = decode_config((path / "config").read_bytes(), "config")
    monkeypatch.setattr(locks_module, "_process_alive", lambda pid: False)
    if when == "after-the-commit":
        real = encryptmigrate._commit

        def commit_and_die(*args: Any) -> None:
            real(*args)
            raise Crash("crash after the commit")

        with monkeypatch.context() as patch:
            patch.setattr(encryptmigrate, "_commit", commit_and_die)
            with pytest.raises(Crash):
                migrate_encrypt(LocalBackend(path), PASSWORD, kdf=KDF)
    else:
        migrate_encrypt(LocalBackend(path), PASSWORD, kdf=KDF)
    writer = old_writer(path, config)
    sources = read_sources([str(many_tenants(tmp_path, "two", 2))])
    late = take_snapshot(writer, sources, target_id="big", description="late")
    stored = writer.load(late.snapshot.id, writer.manifest_keys()[late.snapshot.id])
    # After the commit the plain files are all there: a delta of the plain "big" snapshot.
    assert stored.header.depth == (1 if when == "after-the-commit" else 0)
    wanted = {**before, **state_of(old_writer(path, config))}
    assert len(wanted) == 4
    findings = [f for f in verify_findings(path, right) if f["severity"] != "info"]
    assert {f["kind"] for f in findings} == {"encryption-leftover"}

    code, out, err = run(path, "--password-file", right, "--json", "migrate", "--encrypt")
    assert code == 0, err
    result = json.loads(out)
    assert result["from_version"] == 5
    assert late.snapshot.id in result["snapshot_ids"]
    assert result["leftovers_removed"] > 0
    mapping = same_snapshots(wanted, Repository.open(LocalBackend(path), password=PASSWORD))
    assert mapping[late.snapshot.id] == result["snapshot_ids"][late.snapshot.id]
    assert verify_findings(path, right) == []
    assert set(os.listdir(path)) == {"config", "encrypted"}
    assert _leaks(path, _secrets()) == []


WAITER = """
import sys
from pathlib import Path

import casbak.locks as locks
from casbak.cli import main

marker = Path(sys.argv[1])
real = locks.LockManager._wait_or_give_up


def waiting(self, *args):
    marker.touch()  # the test lets migrate commit only once this process waits
    return real(self, *args)


locks.LockManager._wait_or_give_up = waiting
sys.exit(main(sys.argv[2:]))
"""


def test_a_snapshot_process_waiting_on_migrate_s_lock_gives_up_after_the_commit(
    plain: tuple[Path, dict[str, dict[str, Any]]],
    passwords: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, before = plain
    marker = tmp_path / "waiting"
    go = threading.Event()
    real_commit = encryptmigrate._commit

    def commit_when_told(*args: Any) -> None:
        assert go.wait(120), "the snapshot process never waited for the lock"
        real_commit(*args)

    monkeypatch.setattr(encryptmigrate, "_commit", commit_when_told)
    outcome: dict[str, Any] = {}

    def migration() -> None:
        try:
            outcome["result"] = migrate_encrypt(LocalBackend(path), PASSWORD, kdf=KDF)
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=migration)
    thread.start()
    try:
        while not list((path / "encrypted").glob("config")):
            assert thread.is_alive(), outcome
            threading.Event().wait(0.01)  # migrate holds its lock from here until told
        environ = {**os.environ, "PYTHONPATH": str(ROOT), "CASBAK_PASSWORD": PASSWORD}
        command = ["--repo", str(path), "snapshot", str(ROUND1), "--lock-timeout", "120"]
        writer = subprocess.Popen(
            [sys.executable, "-c", WAITER, str(marker), *command],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        while not marker.exists():
            assert writer.poll() is None, writer.communicate()
            threading.Event().wait(0.01)
    finally:
        go.set()
        thread.join()
    _out, err = writer.communicate(timeout=120)
    assert "error" not in outcome, outcome
    assert writer.returncode == 12, err
    assert "was migrated (its config changed) while this command waited for its lock" in err
    assert err.count("\n") == 1
    repo = Repository.open(LocalBackend(path), password=PASSWORD)
    same_snapshots(before, repo)  # nothing of the waiting snapshot, sealed or plain
    assert top_level(path) == {"config", "encrypted"}
    assert verify_findings(path, passwords[0]) == []


def test_a_real_process_migrates_and_lists(
    plain: tuple[Path, dict[str, dict[str, Any]]], passwords: tuple[str, str]
) -> None:
    path, _before = plain
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CASBAK_PASSWORD")}
    environ["PYTHONPATH"] = str(ROOT)

    def casbak(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "casbak", "--repo", str(path), *args],
            capture_output=True,
            text=True,
            env={**environ, **extra},
            stdin=subprocess.DEVNULL,
            check=False,
        )

    refused = casbak("migrate", "--encrypt", *CHEAP)
    assert refused.returncode == 13
    done = casbak("--json", "migrate", "--encrypt", *CHEAP, CASBAK_PASSWORD=PASSWORD)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["to_version"] == 5
    listed = casbak("--json", "list", "--password-file", passwords[0])
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["snapshots"]) == 2
    assert casbak("list").returncode == 13


# The raw-bytes cache


def test_a_plain_cache_file_is_ignored_by_the_encrypted_repository(
    plain: tuple[Path, dict[str, dict[str, Any]]], passwords: tuple[str, str]
) -> None:
    path, _before = plain
    right, _wrong = passwords
    repository_id = json.loads((path / "config").read_bytes())["repository_id"]
    cache = cache_folder() / f"{repository_id}.raw"
    plain_cache = cache.read_bytes()
    assert run(path, "--password-file", right, "migrate", "--encrypt", *CHEAP)[0] == 0
    # Say another machine still has it: same repository id, so the same file name.
    cache.write_bytes(plain_cache)
    repo = Repository.open(LocalBackend(path), password=PASSWORD)
    assert RawCache.for_repository(repository_id, repo.sealer)._known == {}
    assert RawCache.for_repository(repository_id)._known  # it does hold entries, plain
    code, out, err = run(path, "--password-file", right, "--json", "snapshot", str(ROUND2))
    assert code == 0, err
    # Keyed ids: the plain ones the cache holds would not be found in the repository.
    assert json.loads(out)["snapshot"]["tenants"] == 7
    assert json.loads(run(path, "--password-file", right, "--json", "verify")[1])["ok"]
    assert not [secret for secret in _secrets() if secret in cache.read_bytes()]


# S3


def test_migrate_encrypt_on_s3(s3_env: str, passwords: tuple[str, str]) -> None:
    from casbak.backends.s3 import S3Backend

    right, _wrong = passwords
    location = s3_env
    assert run(location, "init")[0] == 0
    assert run(location, "snapshot", str(ROUND1), "--tag", "first")[0] == 0
    assert run(location, "snapshot", str(ROUND2))[0] == 0
    S3Backend(location).put("NOTES.txt", b"the prefix may hold other objects\n")
    before = state_of(Repository.open(S3Backend(location)))
    code, out, err = run(location, "--password-file", right, "--json", "migrate", "--encrypt")
    assert code == 0, err
    assert json.loads(out)["snapshots"] == 2
    backend = S3Backend(location)
    keys = list(backend.list_names(""))
    assert {key.split("/")[0] for key in keys} == {"config", "encrypted", "NOTES.txt"}
    assert backend.get("NOTES.txt") == b"the prefix may hold other objects\n"
    same_snapshots(before, Repository.open(backend, password=PASSWORD))
    code, out, err = run(location, "--password-file", right, "--json", "verify")
    assert code == 0, err
    assert [(f["kind"], f["location"]) for f in json.loads(out)["findings"]] == [
        ("unknown-file", "NOTES.txt")
    ]
    secrets = _secrets() | {old.encode() for old in before}
    leaks = [
        (key, secret)
        for key in keys
        for secret in secrets
        if secret in key.encode() or secret in backend.get(key)
    ]
    assert leaks == []
    assert backend.get(CONFIG_KEY) != backend.get(ENCRYPTED_ROOT + CONFIG_KEY)


def test_a_root_whose_config_is_not_the_same_repository_s_is_damage(
    plain: tuple[Path, dict[str, dict[str, Any]]], passwords: tuple[str, str]
) -> None:
    path, _before = plain
    right, _wrong = passwords
    assert run(path, "--password-file", right, "migrate", "--encrypt", *CHEAP)[0] == 0
    inner = path / "encrypted" / "config"
    config = json.loads(inner.read_bytes())
    inner.write_text(json.dumps({**config, "repository_id": "0" * 64}))
    code, out, _ = run(path, "--password-file", right, "--json", "verify")
    assert code == 3
    assert [f["kind"] for f in json.loads(out)["findings"]] == ["corrupt-config"]
    code, _, err = run(path, "--password-file", right, "list")
    assert code == 3
    assert "not the config of the repository" in err
    inner.unlink()
    code, _, err = run(path, "--password-file", right, "list")
    assert code == 3
    assert "which holds no config" in err


def test_verify_of_a_converted_repository_names_keys_as_stored(
    plain: tuple[Path, dict[str, dict[str, Any]]], passwords: tuple[str, str]
) -> None:
    path, _before = plain
    right, _wrong = passwords
    assert run(path, "--password-file", right, "migrate", "--encrypt", *CHEAP)[0] == 0
    stray = path / "encrypted" / "packs" / "README"
    stray.write_bytes(b"not casbak's")
    stray.chmod(0o600)
    manifest = sorted((path / "encrypted" / "manifests").iterdir())[0]
    data = bytearray(manifest.read_bytes())
    data[-20] ^= 1
    manifest.write_bytes(bytes(data))
    code, out, _ = run(path, "--password-file", right, "--json", "verify")
    assert code == 3
    located = {(f["kind"], f["location"]) for f in json.loads(out)["findings"]}
    assert ("unknown-file", "encrypted/packs/README") in located
    assert any(
        kind == "corrupt-manifest" and where == f"encrypted/manifests/{manifest.name}"
        for kind, where in located
    ), located


@pytest.mark.parametrize(
    ("version", "root", "problem"),
    [
        (4, "encrypted/", "a format 6 config names the root folder"),
        (5, "encrypted/", "a format 6 config names the root folder"),
        (6, None, "a format 6 config names the root folder"),
        (6, "../", "is not a folder name"),
        (6, "a/b/", "is not a folder name"),
        (6, "encrypted", "is not a folder name"),
    ],
)
def test_only_a_pointer_config_names_a_root_and_it_is_one_folder(
    version: int, root: str | None, problem: str
) -> None:
    from casbak.errors import CorruptData
    from casbak.model import decode_config

    config: dict[str, Any] = {
        "created": "2025-11-17T10:30:00Z",
        "format": "casbak",
        "repository_id": "a" * 64,
        "version": version,
    }
    if root is not None:
        config["root"] = root
    if version >= 5:
        config["encryption"] = {}
    with pytest.raises(CorruptData, match=problem):
        decode_config(json.dumps(config).encode(), "config")
    if version == 6:
        config["root"] = "encrypted/"
        assert decode_config(json.dumps(config).encode(), "config").root == "encrypted/"


def test_a_pointer_config_without_encryption_is_a_newer_format() -> None:
    from casbak.model import decode_config

    config = {
        "created": "2025-11-17T10:30:00Z",
        "format": "casbak",
        "repository_id": "a" * 64,
        "version": 6,
        "root": "encrypted/",
    }
    with pytest.raises(FormatVersionError, match="upgrade casbak"):
        decode_config(json.dumps(config).encode(), "config")


def test_the_top_level_config_is_a_pointer_an_older_casbak_refuses_as_newer(
    plain: tuple[Path, dict[str, dict[str, Any]]], passwords: tuple[str, str]
) -> None:
    """Format 6, so that a casbak without ``root`` says "upgrade" (12), not "damaged" (3).

    Every casbak reads the config's version alone before its fields: one that
    reads formats 1 to 5 stops there.
    """
    from casbak.model import _check_version

    path, _before = plain
    assert run(path, "--password-file", passwords[0], "migrate", "--encrypt", *CHEAP)[0] == 0
    top = json.loads((path / "config").read_bytes())
    inner = json.loads((path / "encrypted" / "config").read_bytes())
    assert (top["version"], top["root"]) == (6, ENCRYPTED_ROOT)
    assert inner["version"] == 5 and "root" not in inner
    assert {k: v for k, v in top.items() if k not in ("version", "root")} == {
        k: v for k, v in inner.items() if k != "version"
    }
    with pytest.raises(FormatVersionError, match=r"version 6 is not supported.*upgrade casbak"):
        _check_version((path / "config").read_bytes(), "config", (1, 2, 3, 4, 5), "format")
