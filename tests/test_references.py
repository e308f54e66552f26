"""References: REF~N, @TIME, TENANT@REF, and the warnings a stale copy of a tenant earns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casbak.backends.local import LocalBackend
from casbak.errors import InputError, NotFoundError
from casbak.references import parse_reference, parse_time
from casbak.repository import Repository
from casbak.service import restore_with_warnings, show_snapshot, take_snapshot
from casbak.snapshotdiff import diff_snapshots
from casbak.sources import documents_from_values
from tests.conftest import FakeClock
from tests.test_cli import run

NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)


def store(repo: Repository, clock: FakeClock, operation: str, *tenants: dict[str, Any]) -> str:
    documents = documents_from_values(list(tenants), "test")
    target = tenants[0]["id"] if len(tenants) == 1 else None
    result = take_snapshot(repo, documents, operation=operation, target_id=target, clock=clock)
    clock.advance(hours=1)
    return result.snapshot.id


@pytest.fixture
def history(tmp_path: Path) -> tuple[Repository, dict[str, str]]:
    """A sync, two updates of acme, an update of globex, and a second sync.

    Times: sync1 10:30, acme-a 11:30, acme-b 12:30, globex 13:30, sync2 14:30
    (2025-11-17); the second sync brings acme back to its first version.
    """
    repo = Repository.init(LocalBackend(tmp_path / "repo"))
    clock = FakeClock()
    acme = {"id": "acme", "name": "Acme", "domains": ["a.com", "b.com"]}
    globex = {"id": "globex", "name": "Globex (US)"}
    ids = {
        "sync1": store(repo, clock, "sync-apply", acme, globex),
        "acme-a": store(repo, clock, "tenant-update", {**acme, "name": "Acme Inc"}),
        "acme-b": store(repo, clock, "tenant-update", {**acme, "name": "Acme AG"}),
        "globex": store(repo, clock, "tenant-update", {**globex, "name": "Globex"}),
        "sync2": store(repo, clock, "sync-apply", acme, {**globex, "name": "Globex Corporation"}),
    }
    return repo, ids


def test_parse_forms() -> None:
    assert parse_reference("latest", NOW).base == "latest"
    assert parse_reference("latest~", NOW).back == 1
    assert parse_reference("latest~2~1", NOW).back == 3
    parsed = parse_reference("acme@latest~1", NOW)
    assert (parsed.tenant, parsed.base, parsed.back) == ("acme", "latest", 1)
    at = parse_reference("acme@@2025-11-17", NOW)
    assert (at.tenant, at.time) == ("acme", datetime(2025, 11, 17, tzinfo=UTC))
    assert parse_reference("@2025-11-17T10:30", NOW).time == datetime(
        2025, 11, 17, 10, 30, tzinfo=UTC
    )
    assert parse_reference("@2025-11-17T10:30+01:00", NOW).time == datetime(
        2025, 11, 17, 9, 30, tzinfo=UTC
    )
    assert parse_reference("@yesterday", NOW).time == NOW - timedelta(days=1)
    assert parse_reference("@-3d", NOW).time == NOW - timedelta(days=3)
    assert parse_reference("@-90m", NOW).time == NOW - timedelta(minutes=90)
    assert parse_reference("@now", NOW).time == NOW
    assert parse_reference("latest:acme~1", NOW).base == "latest:acme"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("acme@", "nothing after '@'"),
        ("~2", "no snapshot before '~'"),
        ("@2025-13-01", "invalid time"),
        ("@soon", "invalid time"),
        ("latest~99999999", "too far back"),
        ("tab\there", "not printable"),
    ],
)
def test_malformed_references_are_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        parse_reference(text, NOW)
    assert "\n" not in str(caught.value)


@given(st.text(max_size=40))
def test_parsing_any_text_gives_a_reference_or_an_input_error(text: str) -> None:
    try:
        parse_reference(text, NOW)
    except InputError:
        pass


def test_parse_time_rejects_garbage() -> None:
    with pytest.raises(InputError, match="@2025-11-17"):
        parse_time("2025-11-17T25:00", NOW, "x")


def test_parents_step_back_through_the_same_target(
    history: tuple[Repository, dict[str, str]],
) -> None:
    repo, ids = history
    assert repo.resolve("latest").id == ids["sync2"]
    assert repo.resolve("latest~1").id == ids["sync1"]
    assert repo.resolve(f"{ids['acme-b'][:8]}~1").id == ids["acme-a"]
    assert repo.resolve("latest:acme~1").id == ids["acme-a"]
    with pytest.raises(NotFoundError, match="has 1 snapshot before"):
        repo.resolve("latest~2")


def test_time_names_the_newest_snapshot_at_or_before_it(
    history: tuple[Repository, dict[str, str]],
) -> None:
    repo, ids = history
    assert repo.resolve("@2025-11-17T12:31").id == ids["acme-b"]
    assert repo.resolve("@2025-11-17T12:29").id == ids["acme-a"]
    assert repo.resolve("@2025-11-18").id == ids["sync2"]
    assert repo.resolve("@2025-11-17T13:00~1").id == ids["acme-a"]
    with pytest.raises(NotFoundError, match="no snapshot at or before"):
        repo.resolve("@2025-11-17")


def test_a_tenant_reference_names_a_version(history: tuple[Repository, dict[str, str]]) -> None:
    repo, ids = history
    newest = repo.resolve_tenant("acme@latest")
    assert newest.snapshot.id == ids["sync2"] and newest.newer is None
    # ~N steps back through versions, not snapshots: sync2 holds the first version again.
    assert repo.resolve_tenant("acme@latest~1").snapshot.id == ids["acme-b"]
    assert repo.resolve_tenant("acme@latest~2").snapshot.id == ids["acme-a"]
    assert repo.resolve_tenant("acme@latest~3").snapshot.id == ids["sync1"]
    before = repo.resolve_tenant("acme@@2025-11-17T12:00")
    assert before.snapshot.id == ids["acme-a"]
    assert before.newer is not None and before.newer.id == ids["sync2"]
    # The newest snapshot at or before REF that holds it: globex's update holds no acme.
    assert repo.resolve_tenant(f"acme@{ids['globex'][:8]}").snapshot.id == ids["acme-b"]
    with pytest.raises(NotFoundError, match="has 4 versions"):
        repo.resolve_tenant("acme@latest~4")
    with pytest.raises(NotFoundError, match="no snapshot holds tenant 'nobody'"):
        repo.resolve_tenant("nobody@latest")
    with pytest.raises(InputError, match="names no tenant"):
        repo.resolve_tenant("latest")
    with pytest.raises(InputError, match="needs a snapshot"):
        repo.resolve("acme@latest")


def test_restore_of_an_older_copy_warns_and_a_missing_tenant_says_where_it_is(
    history: tuple[Repository, dict[str, str]],
) -> None:
    repo, ids = history
    # latest:TARGET is the newest snapshot *of that target*; a newer sync holds another copy.
    _, documents, warnings = restore_with_warnings(repo, "latest:globex", ["globex"])
    assert json.loads(documents["globex"])["name"] == "Globex"
    assert len(warnings) == 1 and ids["sync2"][:12] in warnings[0]
    _, current, none = restore_with_warnings(repo, "globex@latest")
    assert json.loads(current["globex"])["name"] == "Globex Corporation" and none == []
    with pytest.raises(NotFoundError, match=r"restore globex@latest for its newest copy"):
        restore_with_warnings(repo, "latest:acme", ["globex"])


def test_show_and_diff_take_tenant_references(
    history: tuple[Repository, dict[str, str]],
) -> None:
    repo, ids = history
    detail = show_snapshot(repo, "acme@latest~1")
    assert detail.snapshot.id == ids["acme-b"]
    assert [t.tenant_id for t in detail.tenants] == ["acme"]
    assert detail.warnings and ids["sync2"][:12] in detail.warnings[0]
    changes = diff_snapshots(repo, "acme@latest~1", "acme@latest")
    assert [c.path for c in changes.changed[0].changes] == ["$.name"]
    # A tenant reference against a whole snapshot compares that tenant alone.
    against_sync = diff_snapshots(repo, "acme@latest~2", "latest")
    assert against_sync.removed == [] and [c.tenant_id for c in against_sync.changed] == ["acme"]


def test_cli_reference_forms(history: tuple[Repository, dict[str, str]]) -> None:
    repo, ids = history
    path = Path(repo.backend.describe())
    code, out, _ = run(path, "--json", "show", "latest~1")
    assert code == 0 and json.loads(out)["snapshot"]["id"] == ids["sync1"]
    code, out, err = run(path, "restore", "latest:globex", "--tenant", "globex", "--output", "-")
    assert code == 0 and json.loads(out)["name"] == "Globex"
    assert err.startswith("warning: tenant globex:") and err.count("\n") == 1
    code, out, _ = run(path, "--json", "diff", "acme@latest~1", "acme@latest")
    assert code == 0 and json.loads(out)["changed"][0]["tenant_id"] == "acme"
    code, out, err = run(path, "show", "latest~9")
    assert code == 1 and out == "" and err.count("\n") == 1
    code, out, err = run(path, "show", "@1999-01-01")
    assert code == 1 and "no snapshot at or before" in err


def test_list_newest_n(history: tuple[Repository, dict[str, str]]) -> None:
    repo, ids = history
    path = Path(repo.backend.describe())
    _, out, _ = run(path, "--json", "list", "--max-count", "2")
    assert [s["id"] for s in json.loads(out)["snapshots"]] == [ids["sync2"], ids["globex"]]
    _, out, _ = run(path, "--json", "list", "--max-count", "1", "--operation", "sync-apply")
    assert [s["id"] for s in json.loads(out)["snapshots"]] == [ids["sync2"]]


def test_references_in_a_real_process(history: tuple[Repository, dict[str, str]]) -> None:
    repo, _ = history
    env = {**os.environ, "NO_COLOR": "1"}
    where = ["--repo", repo.backend.describe()]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "casbak",
            *where,
            "restore",
            "acme@@2025-11-17T12:00",
            "--output",
            "-",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["name"] == "Acme Inc"
    assert "holds an older copy" in done.stderr
