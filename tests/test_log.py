"""`casbak log`: every distinct version of one tenant, newest first, from the catalog."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from casbak.repository import Repository
from casbak.tenanthistory import tenant_log
from tests.conftest import FakeClock
from tests.test_cli import run
from tests.test_references import history, store

__all__ = ["history"]  # the fixture, shared


def test_versions_newest_first_with_who_and_how_many(
    history: tuple[Repository, dict[str, str]],
) -> None:
    repo, ids = history
    versions = tenant_log(repo, "acme")
    # sync2 brought the first version back: a new entry, as it follows another version.
    assert [v.first.id for v in versions] == [
        ids["sync2"],
        ids["acme-b"],
        ids["acme-a"],
        ids["sync1"],
    ]
    assert versions[0].object == versions[3].object
    assert all(v.snapshots == 1 for v in versions)
    assert versions[1].first.provenance["user"]
    assert versions[1].first.operation == "tenant-update"


def test_identical_consecutive_versions_are_one_entry(tmp_path: Path) -> None:
    from casbak.backends.local import LocalBackend

    repo = Repository.init(LocalBackend(tmp_path / "repo"))
    clock = FakeClock()
    first = store(repo, clock, "sync-apply", {"id": "a", "v": 1}, {"id": "b", "v": 1})
    store(repo, clock, "sync-apply", {"id": "a", "v": 1}, {"id": "b", "v": 2})
    last = store(repo, clock, "sync-apply", {"id": "a", "v": 1}, {"id": "b", "v": 3})
    (only,) = tenant_log(repo, "a")
    assert (only.snapshots, only.first.id, only.last.id) == (3, first, last)


def test_patch_since_until_and_count(history: tuple[Repository, dict[str, str]]) -> None:
    repo, ids = history
    path = Path(repo.backend.describe())
    code, out, _ = run(path, "log", "acme", "-p")
    assert code == 0
    assert '$.name: "Acme AG" -> "Acme"' in out
    assert '$.name: "Acme Inc" -> "Acme AG"' in out
    assert "(the first version stored)" in out
    assert "held by 1 snapshot " in out
    code, out, _ = run(path, "--json", "log", "acme", "-p", "--max-count", "2")
    entries = json.loads(out)
    assert [e["first"]["id"] for e in entries] == [ids["sync2"], ids["acme-b"]]
    assert entries[1]["changes"] == [
        {"path": "$.name", "kind": "changed", "old": "Acme Inc", "new": "Acme AG"}
    ]
    code, out, _ = run(
        path, "--json", "log", "acme", "--since", "2025-11-17T11:00", "--until", "2025-11-17T13:00"
    )
    assert [e["first"]["id"] for e in json.loads(out)] == [ids["acme-b"], ids["acme-a"]]
    assert "changes" not in json.loads(out)[0]
    code, out, _ = run(path, "log", "acme", "--since", "2030-01-01")
    assert code == 0 and out.strip() == "no version of acme in that time"


def test_errors(history: tuple[Repository, dict[str, str]]) -> None:
    repo, _ = history
    path = Path(repo.backend.describe())
    code, out, err = run(path, "log", "nobody")
    assert (
        code == 1
        and out == ""
        and err.strip() == "casbak: error: no snapshot holds tenant 'nobody'"
    )
    code, _, err = run(path, "log", "acme", "--since", "someday")
    assert code == 2 and "invalid time" in err
    code, _, _ = run(path, "log", "acme", "--max-count", "0")
    assert code == 2


def test_log_in_a_real_process(history: tuple[Repository, dict[str, str]]) -> None:
    repo, ids = history
    done = subprocess.run(
        [sys.executable, "-m", "casbak", "--repo", repo.backend.describe(), "log", "acme"],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("version ")
    assert ids["acme-a"][:12] in done.stdout and done.stderr == ""
