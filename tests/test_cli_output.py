"""Human output that reads well (issue 17 items 3, 4, 11): plurals, sizes, one time format,
readable `show`, cleanup naming what it removes, and a lock error that says what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from casbak.backends.local import LocalBackend
from casbak.cli.output import human_size, short_id, when, when_zoned
from casbak.locks import STALE_AFTER
from casbak.repository import Repository
from casbak.service import take_snapshot
from casbak.sources import documents_from_values
from casbak.wording import count
from tests.conftest import EXAMPLES, FakeClock
from tests.test_cli import run
from tests.test_unlock import plant

GLOBEX = EXAMPLES / "tenants" / "round-1" / "globex-us.json"


@pytest.fixture
def timeline(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """acme at 11:30 and 12:30 UTC (the second with a description and tags), globex at 13:30."""
    path = tmp_path / "repo"
    repo = Repository.init(LocalBackend(path))
    clock = FakeClock()

    def backup(tenant: dict[str, Any], **kw: Any) -> str:
        clock.advance(hours=1)
        docs = documents_from_values([tenant], "t")
        return take_snapshot(repo, docs, clock=clock, **kw).snapshot.id

    ids = {
        "acme-1": backup({"id": "acme", "v": 1}),
        "acme-2": backup({"id": "acme", "v": 2}, description="before sync", tags=["pre", "x"]),
        "globex-1": backup({"id": "globex", "v": 1}, operation="sync-apply"),
    }
    return path, ids


def test_count_and_human_size_read_as_english() -> None:
    assert [count(n, "tenant") for n in (0, 1, 2)] == ["0 tenants", "1 tenant", "2 tenants"]
    assert count(1, "is", "are") == "1 is" and count(3, "is", "are") == "3 are"
    assert [human_size(n) for n in (0, 1023, 1024, 12_595, 5 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "12.3 KiB",
        "5.0 GiB",
    ]


def test_time_format_is_utc_to_the_second_unless_local() -> None:
    moment = datetime(2025, 11, 17, 10, 30, 5, 123456, tzinfo=UTC)
    assert when(moment) == "2025-11-17 10:30:05"
    assert when_zoned(moment) == "2025-11-17 10:30:05 UTC"
    assert short_id("ab" * 32) == "abababababab"


def test_one_tenant_is_a_tenant_everywhere(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    assert run(path, "init")[0] == 0
    code, out, _ = run(path, "snapshot", str(GLOBEX))
    assert code == 0
    assert "saved: 1 tenant, 1 new object (" in out and "1 tenants" not in out
    code, out, _ = run(path, "forget", "latest", "--force", "--grace", "0s")
    assert code == 0
    assert out.splitlines()[-1].startswith("removed 1 snapshot (0 kept), 1 object, ")
    code, out, _ = run(path, "gc")
    assert out.startswith("removed 0 snapshots (0 kept), 0 objects, 0 B")


def test_list_and_show_print_the_same_time_and_id(timeline: tuple[Path, dict[str, str]]) -> None:
    path, ids = timeline
    code, out, _ = run(path, "list")
    assert code == 0
    assert out.splitlines() == [
        "ID            TIME (UTC)           OPERATION   TARGET  TENANTS  DESCRIPTION",
        f"{ids['globex-1'][:12]}  2025-11-17 13:30:00  sync-apply  globex  1",
        f"{ids['acme-2'][:12]}  2025-11-17 12:30:00  manual      acme    1        before sync",
        f"{ids['acme-1'][:12]}  2025-11-17 11:30:00  manual      acme    1",
    ]
    code, out, _ = run(path, "--json", "show", ids["acme-1"])
    detail = json.loads(out)
    tenant = detail["tenants"][0]
    code, out, _ = run(path, "show", ids["acme-1"])
    assert code == 0
    # No empty description or tags line; ids of snapshot and object are as long.
    assert out.splitlines() == [
        f"snapshot    {ids['acme-1'][:12]}",
        "time        2025-11-17 11:30:00 UTC",
        "operation   manual",
        "target      acme",
        "tenants     1",
        "provenance  casbak=0.1.0",
        "            host=testhost",
        "            user=tester",
        "",
        "TENANT  OBJECT        SIZE",
        f"acme    {tenant['object'][:12]}  {tenant['size']} B",
    ]
    code, out, _ = run(path, "show", ids["acme-2"])
    assert "description before sync\ntags        pre, x\n" in out


def test_json_keeps_exact_timestamps_and_byte_counts(
    timeline: tuple[Path, dict[str, str]],
) -> None:
    path, ids = timeline
    code, out, _ = run(path, "--json", "--local", "show", ids["acme-1"])
    assert code == 0
    detail = json.loads(out)
    assert detail["snapshot"]["id"] == ids["acme-1"]
    assert detail["snapshot"]["timestamp"] == "2025-11-17T11:30:00Z"
    assert isinstance(detail["tenants"][0]["size"], int)
    assert len(detail["tenants"][0]["object"]) == 64
    assert run(path, "--json", "list", "--local")[1] == run(path, "--json", "list")[1]


def test_local_time_on_request_in_a_real_process(timeline: tuple[Path, dict[str, str]]) -> None:
    path, ids = timeline
    # A POSIX zone needs no tz database: XST is UTC+05:30 all year.
    env = {**os.environ, "TZ": "XST-05:30"}
    casbak = [sys.executable, "-m", "casbak", "--repo", str(path)]

    def output(*args: str) -> str:
        done = subprocess.run([*casbak, *args], capture_output=True, env=env, check=True)
        return done.stdout.decode()

    assert output("list", "--local", "--max-count", "1").splitlines() == [
        "ID            TIME (local)         OPERATION   TARGET  TENANTS  DESCRIPTION",
        f"{ids['globex-1'][:12]}  2025-11-17 19:00:00  sync-apply  globex  1",
    ]
    assert "time        2025-11-17 17:00:00 XST\n" in output("--local", "show", ids["acme-1"])
    # Without --local the zone of the machine does not matter.
    assert "time        2025-11-17 11:30:00 UTC\n" in output("show", ids["acme-1"])
    assert output("--json", "--local", "list") == output("--json", "list")


def test_log_and_find_print_sizes_and_times_as_list_does(
    timeline: tuple[Path, dict[str, str]],
) -> None:
    path, ids = timeline
    code, out, _ = run(path, "log", "acme")
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith("version ") and first.endswith(
        "  19 B  held by 1 snapshot  2025-11-17 12:30:00 UTC"
    )
    code, out, _ = run(path, "find", "--tenant", "acme")
    assert out.splitlines()[0].split() == [
        "TENANT",
        "VERSION",
        "SIZE",
        "SNAPSHOTS",
        "FIRST",
        "(UTC)",
        "LAST",
        "(UTC)",
    ]
    assert f"2025-11-17 12:30:00 {ids['acme-2'][:12]}" in out


def test_cleanup_names_what_it_removes_as_list_shows_it(
    timeline: tuple[Path, dict[str, str]],
) -> None:
    path, ids = timeline
    listed = {s["id"]: s for s in json.loads(run(path, "--json", "list")[1])["snapshots"]}
    policy = ["cleanup", "--keep-last", "1", "--grace", "0s"]

    code, out, _ = run(path, *policy, "--dry-run")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["ACTION", "ID", "TIME", "(UTC)", "OPERATION", "TARGET"]
    assert f"remove  {ids['acme-1'][:12]}  2025-11-17 11:30:00  manual      acme" in out
    assert lines[-1].startswith("would remove 1 snapshot (2 kept), 1 object, ")

    code, out, _ = run(path, "--json", *policy)
    assert code == 0
    report = json.loads(out)
    # Each removed snapshot is exactly what 'list --json' printed for it.
    assert report["removed"] == [listed[ids["acme-1"]]]
    kept = {s["id"]: s for s in report["kept"]}
    assert set(kept) == {ids["acme-2"], ids["globex-1"]}
    for snapshot_id, entry in kept.items():
        reasons = entry.pop("reasons")
        assert entry == listed[snapshot_id] and reasons
    assert [s["id"] for s in json.loads(run(path, "--json", "list")[1])["snapshots"]] == [
        ids["globex-1"],
        ids["acme-2"],
    ]


def test_forget_and_gc_json_carry_snapshots_or_nothing(
    timeline: tuple[Path, dict[str, str]],
) -> None:
    path, ids = timeline
    listed = {s["id"]: s for s in json.loads(run(path, "--json", "list")[1])["snapshots"]}
    code, out, _ = run(path, "--json", "forget", ids["acme-1"], ids["acme-2"][:8], "--force")
    assert code == 0
    report = json.loads(out)
    # Newest first, as list orders them.
    assert report["removed"] == [listed[ids["acme-2"]], listed[ids["acme-1"]]]
    assert report["kept"] == []
    code, out, _ = run(path, "--json", "gc")
    assert (json.loads(out)["removed"], json.loads(out)["kept"]) == ([], [])


def test_another_hosts_lock_says_whose_since_when_until_when_and_what_to_do(
    tmp_path: Path,
) -> None:
    path = tmp_path / "repo"
    assert run(path, "init")[0] == 0
    key = plant(path, "00000000000000cc", host="build-7", pid=4242, age=10)
    stale_at = datetime.fromtimestamp((path / key).stat().st_mtime + STALE_AFTER, UTC)
    before = sorted(p.name for p in (path / "locks").iterdir())
    done = subprocess.run(
        [sys.executable, "-m", "casbak", "--repo", str(path), "gc", "--lock-timeout", "0"],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 11
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(
        "casbak: error: repository is locked: shared lock of 'snapshot' by pid 4242 on host "
        "build-7 since 2025-11-17 10:30:00 UTC; gave up after 0s. "
    )
    assert f"counts as stale from {stale_at:%Y-%m-%d %H:%M:%S} UTC" in err
    assert "'casbak unlock'" in err and "'casbak unlock --force' removes it now" in err
    assert sorted(p.name for p in (path / "locks").iterdir()) == before


def test_a_live_lock_on_this_host_is_named_as_running(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    assert run(path, "init")[0] == 0
    with Repository.open(LocalBackend(path)).locks.exclusive("cleanup", 0):
        code, _, err = run(path, "snapshot", str(GLOBEX), "--lock-timeout", "0")
    assert code == 11
    assert f"exclusive lock of 'cleanup' by pid {os.getpid()} on host " in err
    assert "That process is still running: its lock goes when it ends" in err
    assert "stale from" not in err  # its pid was checked: age does not make it stale


def test_an_unreadable_lock_is_named_by_its_key(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    assert run(path, "init")[0] == 0
    key = plant(path, "00000000000000dd", kind="exclusive", data=b"not json")
    code, _, err = run(path, "snapshot", str(GLOBEX), "--lock-timeout", "0")
    assert code == 11
    assert f"an unreadable lock record {key} (holder unknown)" in err
    assert "counts as stale from" in err
