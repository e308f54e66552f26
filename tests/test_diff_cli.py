"""`casbak diff` on the command line: --tenant, --stat, --name-only, --json, and colour."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import ROUND1, ROUND2, run

RED, GREEN = "\x1b[31m", "\x1b[32m"

BEFORE: dict[str, Any] = {
    "id": "t1",
    "name": "One",
    "domains": ["a.com", "b.com", "c.com", "d.com", "e.com", "f.com", "g.com"],
    "sso": [{"id": "abc", "enabled": True}, {"id": "def", "enabled": True}],
}
AFTER: dict[str, Any] = {
    "id": "t1",
    "name": "One",
    "domains": ["b.com", "c.com", "d.com", "e.com", "f.com", "g.com"],
    "sso": [{"id": "def", "enabled": True}, {"id": "abc", "enabled": False}],
}


@pytest.fixture
def snapshots(tmp_path: Path) -> tuple[Path, str, str]:
    """A repository with two snapshots: the sample tenants plus t1, before and after."""
    repo = tmp_path / "repo"
    assert run(repo, "init")[0] == 0
    ids = []
    for sources, tenant in ((ROUND1, BEFORE), (ROUND2, AFTER)):
        (tmp_path / "t1.json").write_text(json.dumps(tenant))
        code, out, _ = run(repo, "--json", "snapshot", str(sources), str(tmp_path / "t1.json"))
        assert code == 0
        ids.append(json.loads(out)["snapshot"]["id"])
    return repo, ids[0], ids[1]


def test_fields_by_path(snapshots: tuple[Path, str, str]) -> None:
    repo, old, new = snapshots
    code, out, _ = run(repo, "diff", old, new, "--tenant", "t1")
    assert code == 0
    assert out.splitlines() == [
        "~ t1",
        '    $.domains[0]: "a.com" -> (absent)',
        '    $.sso (order): ["abc","def"] -> ["def","abc"]',
        '    $.sso[id="abc"].enabled: true -> false',
    ]
    assert RED not in out  # not a terminal: no colour


def test_only_the_chosen_tenants(snapshots: tuple[Path, str, str]) -> None:
    repo, old, new = snapshots
    code, out, _ = run(
        repo, "diff", old, new, "--tenant", "globex-us", "--tenant", "umbrella-health"
    )
    assert code == 0
    assert out == '~ globex-us\n    $.name: "Globex Corporation (US)" -> "Globex Corporation"\n'
    assert run(repo, "diff", old, new, "--tenant", "umbrella-health")[1] == "no differences\n"
    code, out, err = run(repo, "diff", old, new, "--tenant", "t1", "--tenant", "nobody")
    assert code == 1
    assert out == ""
    assert err == (
        f"casbak: error: neither snapshot {old[:12]} nor {new[:12]} has tenant 'nobody'\n"
    )


def test_stat(snapshots: tuple[Path, str, str]) -> None:
    repo, old, new = snapshots
    code, out, _ = run(repo, "diff", "--stat", old, new)
    assert code == 0
    assert out.splitlines() == [
        "M T2qW8rZt1mXc4VbN7kLp0aSd3Fg | 1 +1",
        "M acme-corp-emea              | 1 ~1",
        "M globex-us                   | 1 ~1",
        "M t1                          | 3 -1 ~2",
        "A wayne-enterprises           | 9 +9",
        "5 tenants: 10 fields added, 1 removed, 4 changed",
    ]
    code, out, _ = run(repo, "--json", "diff", "--stat", old, new, "--tenant", "t1")
    assert json.loads(out) == {
        "old": old,
        "new": new,
        "tenants": [{"tenant_id": "t1", "status": "M", "added": 0, "removed": 1, "changed": 2}],
        "total": {"tenants": 1, "added": 0, "removed": 1, "changed": 2},
    }
    assert run(repo, "diff", "--stat", old, old)[1] == "no differences\n"


def test_name_only(snapshots: tuple[Path, str, str]) -> None:
    repo, old, new = snapshots
    code, out, _ = run(repo, "diff", "--name-only", new, old)
    assert code == 0
    assert out.splitlines() == [
        "M\tT2qW8rZt1mXc4VbN7kLp0aSd3Fg",
        "M\tacme-corp-emea",
        "M\tglobex-us",
        "M\tt1",
        "D\twayne-enterprises",
    ]
    code, out, _ = run(repo, "--json", "diff", "--name-only", old, new, "--tenant", "t1")
    assert json.loads(out) == {
        "old": old,
        "new": new,
        "tenants": [{"tenant_id": "t1", "status": "M"}],
    }


def test_json_keeps_the_full_shape(snapshots: tuple[Path, str, str]) -> None:
    repo, old, new = snapshots
    code, out, _ = run(repo, "--json", "diff", old, new, "--tenant", "t1")
    assert code == 0
    assert json.loads(out)["changed"] == [
        {
            "tenant_id": "t1",
            "changes": [
                {"path": "$.domains[0]", "kind": "removed", "old": "a.com"},
                {
                    "path": "$.sso",
                    "kind": "reordered",
                    "old": ["abc", "def"],
                    "new": ["def", "abc"],
                },
                {"path": '$.sso[id="abc"].enabled', "kind": "changed", "old": True, "new": False},
            ],
        }
    ]


def test_stat_and_name_only_together_is_a_usage_error(snapshots: tuple[Path, str, str]) -> None:
    repo, old, new = snapshots
    code, out, err = run(repo, "diff", "--stat", "--name-only", old, new)
    assert code == 2
    assert out == ""
    assert "--stat and --name-only contradict each other: give one, not both" in err


def _on_a_terminal(*args: str, **env: str) -> str:
    """Run casbak with stdout on a pseudo-terminal and return what it wrote there."""
    leader, follower = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | env
    proc = subprocess.Popen(
        [sys.executable, "-m", "casbak", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
        env=environment,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO once the last writer has closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return b"".join(chunks).decode()


def test_colour_only_on_a_terminal_without_no_color(snapshots: tuple[Path, str, str]) -> None:
    repo, old, new = snapshots
    base = ("--repo", str(repo), "diff", old, new)
    coloured = _on_a_terminal(*base)
    assert f"{GREEN}+ wayne-enterprises" in coloured
    assert f'$.domains[0]: {RED}"a.com"' in coloured
    assert f'$.sso[id="abc"].enabled: {RED}true\x1b[0m -> {GREEN}false' in coloured
    assert "(absent)" in coloured
    stat = _on_a_terminal("--repo", str(repo), "diff", "--stat", old, new)
    assert f"{GREEN}+9" in stat
    assert f"{RED}-1" in stat
    names = _on_a_terminal("--repo", str(repo), "diff", "--name-only", new, old)
    assert f"{RED}D\x1b[0m\twayne-enterprises" in names

    plain = _on_a_terminal(*base, NO_COLOR="")  # set, even empty, turns colour off
    assert "\x1b[" not in plain
    assert plain.replace("\r\n", "\n") == run(repo, "diff", old, new)[1]
    assert "\x1b[" not in _on_a_terminal(*base, NO_COLOR="1")
    as_json = _on_a_terminal("--repo", str(repo), "--json", "diff", "--stat", old, new)
    assert "\x1b[" not in as_json
    assert json.loads(as_json)["total"]["added"] == 10


def test_real_subprocess(snapshots: tuple[Path, str, str]) -> None:
    repo, old, new = snapshots
    command = [sys.executable, "-m", "casbak", "--repo", str(repo), "diff", old, new]
    done = subprocess.run([*command, "--name-only"], capture_output=True, check=False)
    assert done.returncode == 0
    assert done.stdout.decode().splitlines()[-1] == "A\twayne-enterprises"
    assert b"\x1b[" not in done.stdout  # a pipe is not a terminal
    bad = subprocess.run([*command, "--tenant", "nobody"], capture_output=True, check=False)
    assert bad.returncode == 1
    assert bad.stdout == b""
    assert bad.stderr.decode().splitlines() == [
        f"casbak: error: neither snapshot {old[:12]} nor {new[:12]} has tenant 'nobody'"
    ]
