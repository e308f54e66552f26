"""`casbak unlock`: stale locks go, saying whose; live ones stay (exit 11) unless forced."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from casbak.backends.local import LocalBackend
from casbak.errors import RepositoryLocked
from casbak.layout import LOCK_PREFIX, lock_key
from casbak.locks import STALE_AFTER, LockRecord
from casbak.maintenance import unlock
from casbak.repository import Repository
from tests.oldformats import as_format_2
from tests.test_cli import run

SINCE = datetime(2025, 11, 17, 10, 30, tzinfo=UTC)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def plant(
    path: Path,
    token: str,
    *,
    kind: str = "shared",
    host: str | None = None,
    pid: int | None = None,
    operation: str = "snapshot",
    data: bytes | None = None,
    age: float = 0.0,
) -> str:
    """Write a lock record as a holder would; ``age`` seconds since it was last refreshed."""
    key = lock_key(kind, token)
    record = LockRecord(kind, host or socket.gethostname(), pid or dead_pid(), operation, SINCE)
    LocalBackend(path).put(key, data if data is not None else msgspec.json.encode(record))
    if age:
        then = time.time() - age
        os.utime(path / key, (then, then))
    return key


def locks(path: Path) -> set[str]:
    folder = path / LOCK_PREFIX
    return {f"{LOCK_PREFIX}{name}" for name in os.listdir(folder)} if folder.exists() else set()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    Repository.init(LocalBackend(path))
    return path


def test_nothing_to_do(repo: Path) -> None:
    assert run(repo, "unlock") == (0, "no locks to remove\n", "")
    code, out, _ = run(repo, "--json", "unlock")
    assert code == 0
    assert json.loads(out) == {"removed": [], "kept": []}


def test_a_dead_process_s_lock_is_removed_and_named(repo: Path) -> None:
    pid = dead_pid()
    key = plant(repo, "00000000000000aa", pid=pid, operation="cleanup", kind="exclusive")
    code, out, err = run(repo, "unlock")
    assert (code, err) == (0, "")
    assert out == (
        f"removed stale exclusive lock of 'cleanup' on host {socket.gethostname()} "
        f"pid {pid} since 2025-11-17 10:30:00 UTC\n"
    )
    assert key not in locks(repo)


def test_a_live_lock_is_kept_and_named_with_exit_11(repo: Path) -> None:
    opened = Repository.open(LocalBackend(repo))
    stale = plant(repo, "00000000000000bb")
    with opened.locks.shared("snapshot", 0) as held:
        code, out, err = run(repo, "unlock")
        assert code == 11
        assert err == ""
        lines = out.splitlines()
        assert lines[0].startswith("removed stale shared lock of 'snapshot'")
        assert lines[1].startswith(
            f"kept live shared lock of 'snapshot' on host {socket.gethostname()} "
            f"pid {os.getpid()} since "
        )
        assert lines[1].endswith(" (--force removes it)")
        assert locks(repo) == {held.key}

        code, out, err = run(repo, "--json", "unlock")
        assert (code, err) == (11, "")
        report = json.loads(out)
        assert report["removed"] == []
        (kept,) = report["kept"]
        assert (kept["key"], kept["kind"], kept["operation"]) == (held.key, "shared", "snapshot")
        assert (kept["pid"], kept["stale"]) == (os.getpid(), False)
        held.confirm()
    assert stale not in locks(repo)


def test_force_removes_a_live_lock_after_naming_it(repo: Path) -> None:
    opened = Repository.open(LocalBackend(repo))
    held = opened.locks.exclusive("gc", 0)
    code, out, _ = run(repo, "unlock", "--force")
    assert code == 0
    assert out.startswith(f"removed live exclusive lock of 'gc' on host {socket.gethostname()} ")
    assert locks(repo) == set()
    # Its holder finds out before it commits anything.
    with pytest.raises(RepositoryLocked, match="removed as stale"):
        held.confirm()
    held.release()


def test_unreadable_and_foreign_records_are_judged_by_age(repo: Path) -> None:
    fresh_garbage = plant(repo, "00000000000000c1", data=b"not json")
    old_garbage = plant(repo, "00000000000000c2", data=b"{", kind="exclusive", age=STALE_AFTER * 2)
    fresh_foreign = plant(repo, "00000000000000c3", host="elsewhere", pid=1)
    old_foreign = plant(repo, "00000000000000c4", host="elsewhere", pid=1, age=STALE_AFTER * 2)
    report = unlock(Repository.open(LocalBackend(repo)))
    assert sorted(holder.key for holder in report.removed) == [old_garbage, old_foreign]
    assert sorted(holder.key for holder in report.kept) == [fresh_garbage, fresh_foreign]
    garbage = next(h for h in report.removed if h.key == old_garbage)
    assert (garbage.kind, garbage.operation, garbage.since) == ("exclusive", "unknown", None)
    assert locks(repo) == {fresh_garbage, fresh_foreign}

    code, out, _ = run(repo, "unlock")
    assert code == 11
    assert f"kept live shared lock {fresh_garbage} (unreadable record)" in out
    assert "kept live shared lock of 'snapshot' on host elsewhere pid 1 since" in out
    code, out, _ = run(repo, "unlock", "--force")
    assert code == 0
    assert len(out.splitlines()) == 2
    assert locks(repo) == set()


def test_works_on_an_older_format_before_migrate(repo: Path) -> None:
    as_format_2(repo)
    key = plant(repo, "00000000000000dd", operation="migrate", kind="exclusive")
    assert run(repo, "list")[0] == 12
    code, out, _ = run(repo, "unlock")
    assert code == 0
    assert "'migrate'" in out
    assert key not in locks(repo)


def test_no_repository_exit_10(tmp_path: Path) -> None:
    assert run(tmp_path / "none", "unlock")[0] == 10


def test_unlock_in_a_real_process(repo: Path) -> None:
    pid = dead_pid()
    key = plant(repo, "00000000000000ee", pid=pid)
    casbak = [sys.executable, "-m", "casbak", "--repo", str(repo)]
    done = subprocess.run([*casbak, "--json", "unlock"], capture_output=True, check=True)
    (removed,) = json.loads(done.stdout)["removed"]
    assert (removed["key"], removed["pid"], removed["stale"]) == (key, pid, True)
    assert removed["since"] == "2025-11-17T10:30:00Z"
    again = subprocess.run([*casbak, "unlock"], capture_output=True, check=False)
    assert (again.returncode, again.stdout) == (0, b"no locks to remove\n")


def test_a_record_someone_else_removed_meanwhile_is_not_reported(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = plant(repo, "00000000000000ff")
    opened = Repository.open(LocalBackend(repo))
    listed = opened.locks.holders()
    # Another process clears it between unlock's listing and its removal.
    monkeypatch.setattr(opened.locks, "holders", lambda: listed)
    (repo / key).unlink()
    assert opened.locks.remove(key) is False
    assert unlock(opened) == unlock(opened, force=True)
    assert unlock(opened).removed == []
