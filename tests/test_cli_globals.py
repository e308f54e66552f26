"""Global options anywhere, the ``snapshots`` alias, safe guesses, migrate at the current
format, and tenant ids that are not strings (issue 17: items 1, 12, 13, 16)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from casbak.cli import cli, main
from casbak.cli.globalopts import ALIASES, READING_COMMANDS
from casbak.errors import InputError
from casbak.sources import documents_from_values
from tests.conftest import EXAMPLES, tree_state

ROUND1 = EXAMPLES / "tenants" / "round-1"
SMALL = EXAMPLES / "descope" / "small_tenant.json"


def casbak(*args: str) -> tuple[int, str, str]:
    """main() with exactly these arguments (no --repo put in front)."""
    holder: dict[str, int] = {}

    @click.command()
    def wrapper() -> None:
        holder["code"] = main(list(args))

    result = CliRunner().invoke(wrapper, [], catch_exceptions=False)
    return holder["code"], result.stdout, result.stderr


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    assert casbak("init", "--repo", str(path))[0] == 0
    assert casbak("snapshot", str(ROUND1), "--repo", str(path), "-q") == (0, "", "")
    return path


def test_global_options_after_the_command(repo: Path, tmp_path: Path) -> None:
    code, out, _ = casbak("list", "--json", "--repo", str(repo))
    assert code == 0
    before = json.loads(out)["snapshots"]
    assert len(before) == 1
    assert casbak("list", "--repo", str(repo), "--json") == (0, out, "")
    assert casbak("--json", "list", "--repo", str(repo)) == (0, out, "")
    code, out, _ = casbak("snapshot", str(SMALL), "--repo", str(repo), "--json")
    assert code == 0 and json.loads(out)["snapshot"]["tenants"] == 1
    # The last --repo given wins: here the one after the command.
    code, out, _ = casbak("--repo", str(tmp_path / "nowhere"), "list", "--repo", str(repo), "-q")
    assert (code, out) == (0, "")
    code, out, err = casbak("--repo", str(repo), "show", "latest", "--quiet")
    assert (code, out, err) == (0, "", "")


def test_json_errors_when_json_comes_after_the_command(repo: Path, tmp_path: Path) -> None:
    code, _, err = casbak("--repo", str(repo), "list", "--bogus", "--json")
    assert code == 2
    assert json.loads(err) == {
        "error": "NoSuchOption",
        "message": "No such option '--bogus'.",
        "code": 2,
    }
    code, _, err = casbak("show", "--repo", str(repo), "--json")
    assert code == 2 and json.loads(err)["error"] == "MissingParameter"
    code, _, err = casbak("show", "nope", "--repo", str(repo), "--json")
    assert code == 1 and json.loads(err)["code"] == 1
    code, _, err = casbak("list", "--repo", str(tmp_path / "none"), "--json")
    assert code == 10 and json.loads(err)["code"] == 10
    code, _, err = casbak("lisst", "--json")
    assert code == 2 and json.loads(err)["error"] == "NoSuchCommand"


def test_json_as_a_value_or_after_double_dash_is_not_the_option(repo: Path) -> None:
    # Here --json is the description: the error is for people.
    code, _, err = casbak("--repo", str(repo), "snapshot", "-d", "--json")
    assert code == 2
    assert "Error: give SOURCES" in err
    code, _, err = casbak("lisst", "--", "--json")
    assert code == 2 and err.startswith("Usage:")


def test_help_says_global_options_go_anywhere() -> None:
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"]).output
    assert "may go before or after the" in top
    for name in cli.list_commands(click.Context(cli)):
        text = runner.invoke(cli, [name, "--help"]).output
        assert "--json" in text and "-q, --quiet" in text and "--repo TEXT" in text, name
        assert "may go before or after the" in text, name


def test_snapshots_is_list(repo: Path) -> None:
    listed = casbak("list", "--repo", str(repo), "--json")
    assert casbak("snapshots", "--repo", str(repo), "--json") == listed
    assert casbak("--repo", str(repo), "snapshots", "--max-count", "1")[1].startswith("ID ")
    top = CliRunner().invoke(cli, ["--help"]).output
    aliases = top.split("Aliases:")[1]
    assert "snapshots  Same as 'list'." in aliases
    commands = top.split("Commands:")[1].split("Aliases:")[0]
    assert "\n  snapshots " not in commands and "\n  list " in commands


def _writing_commands() -> list[str]:
    return sorted(set(cli.list_commands(click.Context(cli))) - READING_COMMANDS)


def test_the_writing_commands_are_the_ones_the_issue_names() -> None:
    assert set(_writing_commands()) >= {
        "snapshot", "init", "cleanup", "forget", "gc", "tag", "unlock", "migrate", "import",
        "restore",
    }  # fmt: skip
    assert set(ALIASES) <= READING_COMMANDS


@pytest.mark.parametrize("typed", ["snapshto", "snapshotss", "snapshts", "gcc", "inti", "tga"])
def test_a_typo_is_never_answered_with_a_writing_command(repo: Path, typed: str) -> None:
    before = tree_state(repo)
    code, _, err = casbak("--repo", str(repo), typed)
    assert code == 2
    assert f"No such command '{typed}'." in err
    guessed = err.split("No such command", 1)[1]
    for name in _writing_commands():
        assert f"'{name}'" not in guessed, name
    assert tree_state(repo) == before


def test_a_typo_of_a_reading_command_is_answered() -> None:
    code, _, err = casbak("snapshto")
    assert code == 2 and "Did you mean 'snapshots'?" in err
    code, _, err = casbak("--json", "verfy")
    assert json.loads(err)["message"] == "No such command 'verfy'. Did you mean 'verify'?"


def test_migrate_at_the_current_format_does_nothing(repo: Path) -> None:
    before = tree_state(repo)
    code, out, _ = casbak("migrate", "--repo", str(repo))
    assert (code, out) == (0, "nothing to do: the repository is already at format 4\n")
    code, out, _ = casbak("migrate", "--repo", str(repo), "--json")
    result = json.loads(out)
    assert code == 0
    assert result["nothing_to_do"] is True
    assert (result["from_version"], result["to_version"], result["snapshots"]) == (4, 4, 1)
    assert tree_state(repo) == before


def test_migrate_still_removes_what_an_interrupted_run_left(repo: Path) -> None:
    leftover = repo / "objects" / "ab" / ("ab" * 32)
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"old format object")
    code, out, _ = casbak("migrate", "--repo", str(repo), "--json")
    assert code == 0 and json.loads(out)["nothing_to_do"] is False
    assert not leftover.exists()


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("5", "'id' is a number (5); it must be a string"),
        ("null", "'id' is null; it must be a string"),
        ('["a", 1]', """'id' is an array (["a", 1]); it must be a string"""),
        ('{"v": 1}', """'id' is an object ({"v": 1}); it must be a string"""),
        ("false", "'id' is a boolean (false); it must be a string"),
        (
            "[" + "1, " * 30 + "1]",
            "'id' is an array ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, ...); it must be a string",
        ),
    ],
)
def test_an_id_that_is_not_a_string_is_named(
    repo: Path, tmp_path: Path, value: str, said: str
) -> None:
    before = tree_state(repo)
    source = tmp_path / "tenant.json"
    source.write_text(f'{{"id": {value}, "name": "x"}}')
    code, out, err = casbak("snapshot", str(source), "--repo", str(repo))
    assert code == 1 and out == ""
    assert err == f"casbak: error: {source}: {said}\n"
    assert tree_state(repo) == before


def test_an_id_inside_a_composite_or_an_array_is_named_by_its_place(
    repo: Path, tmp_path: Path
) -> None:
    source = tmp_path / "several.json"
    source.write_text('[{"id": "a"}, {"tenant": {"id": 7}, "settings": {}}]')
    code, _, err = casbak("snapshot", str(source), "--repo", str(repo))
    assert code == 1
    assert err == f"casbak: error: {source}: [1] 'tenant.id' is a number (7); it must be a string\n"


def test_an_id_handed_in_from_python_is_named() -> None:
    with pytest.raises(InputError, match=r"^given\[0\]: 'id' is a set \(\{3\}\); it must be"):
        documents_from_values([{"id": {3}}], "given")
    with pytest.raises(InputError, match=r"^given\[0\]: 'id' is null; it must be a string$"):
        documents_from_values([{"id": None}], "given")


def test_real_processes_take_global_options_after_the_command(repo: Path, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "casbak", *args], capture_output=True, text=True, check=False
        )

    done = run("snapshot", str(SMALL), "--repo", str(repo), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["snapshot"]["tenants"] == 1
    listed = run("snapshots", "--json", "--repo", str(repo))
    assert listed.returncode == 0 and len(json.loads(listed.stdout)["snapshots"]) == 2
    bad = run("list", "--frobnicate", "--repo", str(repo), "--json")
    assert bad.returncode == 2 and json.loads(bad.stderr)["error"] == "NoSuchOption"
    typo = run("snapshotz", "--repo", str(repo))
    assert typo.returncode == 2 and "Did you mean 'snapshots'?" in typo.stderr
    current = run("migrate", "--repo", str(repo), "--json")
    assert current.returncode == 0 and json.loads(current.stdout)["nothing_to_do"] is True


def test_a_command_added_twice_gets_the_global_options_once() -> None:
    group = cli.__class__(name="probe")
    command = click.Command("probe", callback=lambda: None)
    group.add_command(command)
    group.add_command(command, "again")
    assert [param.name for param in command.params].count("json_output") == 1
