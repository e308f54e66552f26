"""Shell completion from the repository (issue 17 item 14)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.shell_completion import BashComplete

from casbak.cli import cli
from casbak.cli.context import Context
from casbak.completion import MAX_SNAPSHOTS, snapshot_references
from casbak.repository import Repository, backend_for
from tests.conftest import tree_state
from tests.test_cli import ROUND1, ROUND2, run


def _ids(path: Path) -> list[str]:
    _, out, _ = run(path, "--json", "list")
    return [snap["id"] for snap in json.loads(out)["snapshots"]]


@pytest.fixture(params=["journal", "compacted"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Two snapshots, read from the catalog's journal or from its compacted parts."""
    path = tmp_path / "repo"
    assert run(path, "init")[0] == 0
    assert run(path, "snapshot", str(ROUND1), "--target", "round-one")[0] == 0
    assert run(path, "snapshot", str(ROUND2 / "globex-us.json"))[0] == 0
    if request.param == "compacted":
        assert run(path, "gc", "--grace", "0s")[0] == 0  # writes the catalog afresh
    return path


def complete(args: list[str], incomplete: str) -> list[str]:
    completer = BashComplete(cli, {"obj": Context()}, "casbak", "_CASBAK_COMPLETE")
    return [item.value for item in completer.get_completions(args, incomplete)]


def test_snapshot_argument_offers_latest_and_ids_newest_first(repo: Path) -> None:
    newest, oldest = _ids(repo)
    found = complete(["--repo", str(repo), "show"], "")
    assert found == ["latest", newest[:12], oldest[:12]]


def test_snapshot_id_prefix(repo: Path) -> None:
    newest, oldest = _ids(repo)
    assert complete(["--repo", str(repo), "diff"], oldest[:3]) in (
        [oldest[:12]],
        sorted([oldest[:12], newest[:12]]),  # the two ids may share 3 digits
    )
    assert complete(["--repo", str(repo), "show"], oldest[:20]) == [oldest[:20]]
    assert complete(["--repo", str(repo), "show"], "la") == ["latest"]


def test_latest_of_a_target(repo: Path) -> None:
    assert complete(["--repo", str(repo), "show"], "latest:") == [
        "latest:globex-us",
        "latest:round-one",
    ]
    assert complete(["--repo", str(repo), "restore"], "latest:r") == ["latest:round-one"]


def test_tenant_references(repo: Path) -> None:
    assert complete(["--repo", str(repo), "show"], "globex") == ["globex-us@latest"]
    assert complete(["--repo", str(repo), "show"], "globex-us@") == ["globex-us@latest"]
    assert complete(["--repo", str(repo), "show"], "nobody@") == []
    assert complete(["--repo", str(repo), "show"], "zzz") == []


def test_tenant_ids(repo: Path) -> None:
    tenants = sorted(p.stem for p in ROUND1.glob("*.json"))
    assert complete(["--repo", str(repo), "log"], "") == tenants
    assert complete(["--repo", str(repo), "log"], "glob") == ["globex-us"]
    assert complete(["--repo", str(repo), "restore", "latest", "--tenant"], "glob") == ["globex-us"]
    assert complete(["--repo", str(repo), "find", "--tenant"], "glob") == ["globex-us"]


def test_targets(repo: Path) -> None:
    assert complete(["--repo", str(repo), "list", "--target"], "") == ["globex-us", "round-one"]
    assert complete(["--repo", str(repo), "export", "-t"], "r") == ["round-one"]


def test_snapshot_arguments_of_every_command(repo: Path) -> None:
    for command in (["forget"], ["tag"], ["export"], ["verify", "--snapshot"], ["diff", "x"]):
        assert complete(["--repo", str(repo), *command], "lat") == ["latest"], command


def test_repo_after_the_command_and_from_the_environment(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert complete(["show", "--repo", str(repo)], "la") == ["latest"]
    monkeypatch.setenv("CASBAK_REPO", str(repo))
    assert complete(["show"], "la") == ["latest"]


def test_completion_changes_nothing(repo: Path) -> None:
    before = tree_state(repo)
    complete(["--repo", str(repo), "show"], "")
    complete(["--repo", str(repo), "log"], "")
    assert tree_state(repo) == before


def test_no_repository_or_a_broken_one_completes_nothing(tmp_path: Path) -> None:
    assert complete(["--repo", str(tmp_path / "none"), "show"], "") == []
    broken = tmp_path / "broken"
    assert run(broken, "init")[0] == 0
    (broken / "config").write_text("not json")
    assert complete(["--repo", str(broken), "show"], "") == []
    assert complete(["--repo", str(broken), "log"], "") == []
    assert complete(["--repo", str(broken), "list", "--target"], "") == []


def test_at_most_max_snapshots(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    assert run(path, "init")[0] == 0
    for number in range(MAX_SNAPSHOTS + 2):
        document = json.dumps({"id": "t", "n": number})
        assert run(path, "snapshot", "-", input=document)[0] == 0
    found = snapshot_references(Repository.open(backend_for(str(path))), "")
    assert len(found) == MAX_SNAPSHOTS + 1  # latest and the newest ids
    assert found[1].help.endswith(" manual t")


def test_real_shell_protocol(repo: Path) -> None:
    env = {
        **os.environ,
        "_CASBAK_COMPLETE": "bash_complete",
        "COMP_WORDS": f"casbak --repo {repo} show la",
        "COMP_CWORD": "4",
    }
    done = subprocess.run(
        [sys.executable, "-m", "casbak"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.splitlines() == ["plain,latest"]
    env["COMP_WORDS"] = f"casbak --repo {repo / 'missing'} show "
    env["COMP_CWORD"] = "4"
    done = subprocess.run(
        [sys.executable, "-m", "casbak"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "" and done.stderr == ""


def test_an_encrypted_repository_completes_only_with_casbak_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CASBAK_PASSWORD_COMMAND", raising=False)
    monkeypatch.setenv("CASBAK_PASSWORD", "tab")
    path = tmp_path / "sealed"
    assert run(path, "init", "--encrypt", "--kdf-memory", "8", "--kdf-iterations", "1")[0] == 0
    assert run(path, "snapshot", str(ROUND1))[0] == 0
    (newest,) = _ids(path)
    assert complete(["--repo", str(path), "show"], "") == ["latest", newest[:12]]
    monkeypatch.delenv("CASBAK_PASSWORD")
    assert complete(["--repo", str(path), "show"], "") == []  # no prompt, nothing offered
