"""One option vocabulary (issue 17 item 10): short options, durations, old spellings,
contradictions."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import click
import pytest

from casbak.cli import cli
from casbak.cli.params import RenamedOption
from casbak.errors import UsageError
from casbak.retention import parse_duration
from tests.conftest import tree_state
from tests.test_cli import ROUND1, ROUND2, run


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    assert run(path, "init")[0] == 0
    assert run(path, "snapshot", str(ROUND1), "--operation", "sync-apply")[0] == 0
    assert run(path, "snapshot", str(ROUND2), "--operation", "sync-apply")[0] == 0
    return path


# One meaning per short option


def _short_options() -> dict[str, set[str]]:
    """Every short option of every command, with the long option(s) it stands for."""
    meanings: dict[str, set[str]] = {}
    for command in cli.commands.values():
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            shorts = [o for o in param.opts if not o.startswith("--")]
            longs = [o for o in param.opts if o.startswith("--")]
            for short in shorts:
                meanings.setdefault(short, set()).update(longs)
    return meanings


def test_each_short_option_means_one_thing_in_every_command() -> None:
    meanings = _short_options()
    assert {short: longs for short, longs in meanings.items() if len(longs) != 1} == {}
    assert meanings["-o"] == {"--output"}
    assert meanings["-n"] == {"--dry-run"}
    assert meanings["-t"] == {"--target"}


def test_output_paths_are_output_everywhere() -> None:
    for name in ("export", "restore"):
        options = {o for p in cli.commands[name].params for o in p.opts}
        assert {"--output", "-o"} <= options, name
        assert "--out" not in options


def test_old_spellings_are_hidden_from_help(repo: Path) -> None:
    _, out, _ = run(repo, "restore", "--help")
    assert "--output" in out and "--out " not in out
    _, out, _ = run(repo, "list", "--help")
    assert "-o," not in out and "-n," not in out and "--max-count" in out


# Durations


@pytest.mark.parametrize(
    ("text", "days"),
    [("1y", 365), ("6mo", 180), ("1mo", 30), ("1y2mo3d", 365 + 60 + 3), ("2w", 14)],
)
def test_months_and_years(text: str, days: int) -> None:
    assert parse_duration(text) == timedelta(days=days)


def test_minutes_are_not_months() -> None:
    assert parse_duration("5m") == timedelta(minutes=5)
    assert parse_duration("5mo") == timedelta(days=150)


@pytest.mark.parametrize("text", ["101y", "99999999999d", "1mos", "1ym"])
def test_durations_refused(text: str) -> None:
    with pytest.raises(UsageError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("within", ["1y", "1mo", "6mo", "1y2mo"])
def test_keep_within_takes_months_and_years(repo: Path, within: str) -> None:
    code, out, err = run(repo, "--json", "cleanup", "--keep-within", within, "--dry-run")
    assert code == 0, err
    report = json.loads(out)
    assert report["snapshots_removed"] == 0 and len(report["kept"]) == 2


@pytest.mark.parametrize("timeout", ["2m", "30s", "0.5", "60", "1h30m"])
def test_lock_timeout_takes_durations_and_plain_seconds(repo: Path, timeout: str) -> None:
    assert run(repo, "gc", "--dry-run", "--lock-timeout", timeout)[0] == 0


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["gc", "--lock-timeout", "soon"], "--lock-timeout"),
        (["gc", "--lock-timeout", "-1"], "--lock-timeout"),
        (["gc", "--lock-timeout", "nan"], "--lock-timeout"),
        (["gc", "--grace", "30"], "--grace"),
        (["cleanup", "--keep-within", "1000y"], "--keep-within"),
        (["export", "--all", "--since", "1x", "--output", "b"], "--since"),
    ],
)
def test_bad_durations_are_usage_errors(repo: Path, args: list[str], named: str) -> None:
    before = tree_state(repo)
    code, _, err = run(repo, *args)
    assert code == 2
    assert f"Invalid value for '{named}'" in err and "invalid duration" in err
    assert tree_state(repo) == before


def test_references_take_the_same_durations(repo: Path) -> None:
    code, out, _ = run(repo, "--json", "show", "@-1y")
    assert code == 1  # nothing is that old
    code, out, _ = run(repo, "--json", "log", "globex-us", "--since", "-6mo")
    assert code == 0 and len(json.loads(out)) == 2
    code, out, _ = run(repo, "--json", "log", "globex-us", "--since", "-1w2d")
    assert code == 0 and len(json.loads(out)) == 2


# Old spellings, kept for one release


def test_old_operation_short_still_works_with_a_warning(repo: Path) -> None:
    code, out, err = run(repo, "--json", "snapshot", str(ROUND1), "-o", "old-spelling")
    assert code == 0
    assert json.loads(out)["snapshot"]["operation"] == "old-spelling"
    assert json.loads(err) == {
        "warning": "-o for --operation is kept for one release "
        "(-o is --output in every command): use --operation"
    }
    code, out, err = run(repo, "list", "-o", "old-spelling")
    assert code == 0 and "old-spelling" in out
    assert err.startswith("casbak: warning: -o for --operation")


def test_old_max_count_short_still_works(repo: Path) -> None:
    code, out, err = run(repo, "--json", "list", "-n", "1")
    assert code == 0 and len(json.loads(out)["snapshots"]) == 1
    assert "-n for --max-count is kept for one release" in err
    code, out, _ = run(repo, "--json", "log", "globex-us", "-n", "1")
    assert code == 0 and len(json.loads(out)) == 1


def test_restore_out_is_output(repo: Path, tmp_path: Path) -> None:
    code, _, err = run(repo, "restore", "latest", "--out", str(tmp_path / "old"))
    assert code == 0 and "--out for --output/-o is kept for one release" in err
    code, _, err = run(repo, "restore", "latest", "-o", str(tmp_path / "new"))
    assert code == 0 and err == ""
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == sorted(
        p.name for p in (tmp_path / "new").iterdir()
    )


def test_old_and_new_spelling_together_refused(repo: Path, tmp_path: Path) -> None:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    code, _, err = run(repo, "restore", "latest", "--out", a, "--output", b)
    assert code == 2
    assert err == (
        "casbak: error: --out and --output/-o contradict each other: they are one option\n"
    )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_renamed_option_without_old_spellings_is_plain() -> None:
    option = RenamedOption(["--x"])
    assert option.old_opts == [] and option.opts == ["--x"]


# Contradictory arguments: exit 2, one line naming both, nothing changed


@pytest.mark.parametrize(
    ("args", "first", "second"),
    [
        (["export", "latest", "--all", "-o", "{tmp}/b"], "SNAPSHOT 'latest'", "--all"),
        (["export", "--target", "globex-us", "--all", "-o", "{tmp}/b"], "--target", "--all"),
        (
            ["restore", "latest", "--tenant", "x", "--to-descope", "-o", "{tmp}/b"],
            "--output",
            "--to-descope",
        ),
        (
            ["restore", "latest", "--tenant", "x", "--to-descope", "--force"],
            "--force",
            "--to-descope",
        ),
        (["verify", "--bundle", "{tmp}/b", "--quick"], "--quick", "--bundle"),
        (["verify", "--bundle", "{tmp}/b", "--snapshot", "latest"], "--snapshot", "--bundle"),
        (["snapshot", str(ROUND1), "--from-descope"], "SOURCES", "--from-descope"),
        (["snapshot", "--from-descope", "--no-cache"], "--no-cache", "--from-descope"),
        (["diff", "latest~1", "latest", "--stat", "--name-only"], "--stat", "--name-only"),
    ],
)
def test_contradictions(
    repo: Path, tmp_path: Path, args: list[str], first: str, second: str
) -> None:
    before = tree_state(repo)
    code, out, err = run(repo, *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert code == 2
    assert err.startswith(f"casbak: error: {first} and {second} contradict each other: ")
    assert err.count("\n") == 1 and out == ""
    assert tree_state(repo) == before
    assert not (tmp_path / "b").exists()


def test_contradiction_as_json(repo: Path, tmp_path: Path) -> None:
    code, _, err = run(repo, "--json", "export", "latest", "--all", "-o", str(tmp_path / "b"))
    assert code == 2
    assert json.loads(err)["error"] == "UsageError"


def test_real_process_old_spelling_and_contradiction(repo: Path, tmp_path: Path) -> None:
    base = [sys.executable, "-m", "casbak", "--repo", str(repo)]
    done = subprocess.run(
        [*base, "restore", "latest", "--tenant", "globex-us", "--out", str(tmp_path / "g.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "kept for one release" in done.stderr
    assert json.loads((tmp_path / "g.json").read_text())["id"] == "globex-us"
    done = subprocess.run(
        [*base, "export", "latest", "--all", "-o", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "casbak: error: SNAPSHOT 'latest' and --all contradict each other: "
        "--all already exports every snapshot\n"
    )


def test_a_minus_that_is_no_duration_is_a_bad_time(repo: Path) -> None:
    code, _, err = run(repo, "show", "@-soon")
    assert code == 1 and "invalid time in reference '@-soon'" in err
