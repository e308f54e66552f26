from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from casbak.cli import cli, main
from tests.conftest import EXAMPLES, tree_state

ROUND1 = EXAMPLES / "tenants" / "round-1"
ROUND2 = EXAMPLES / "tenants" / "round-2"


def run(repo: Path, *args: str, input: str | bytes | None = None) -> tuple[int, str, str]:
    """Invoke through main() so exit codes and error rendering are the real ones."""
    runner = CliRunner()
    holder: dict[str, int] = {}

    def invoke() -> None:
        holder["code"] = main(["--repo", str(repo), *args])

    import click

    @click.command()
    def wrapper() -> None:
        invoke()

    result: Result = runner.invoke(wrapper, [], input=input, catch_exceptions=False)
    return holder["code"], result.stdout, result.stderr


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    assert run(path, "init")[0] == 0
    return path


def test_init_twice(repo: Path) -> None:
    code, _, err = run(repo, "init")
    assert code == 1
    assert "already a casbak repository" in err


def test_no_repository_exit_10(tmp_path: Path) -> None:
    code, _, err = run(tmp_path / "none", "list")
    assert code == 10
    assert "casbak init" in err
    code, _, err = run(tmp_path / "none", "--json", "list")
    assert json.loads(err) == {
        "error": "RepositoryNotFound",
        "message": f"no casbak repository at {tmp_path / 'none'} (create one with 'casbak init')",
        "code": 10,
    }


def test_full_tour(repo: Path, tmp_path: Path) -> None:
    code, out, _ = run(
        repo, "--json", "snapshot", str(ROUND1), "--operation", "sync-apply", "--tag", "t"
    )
    assert code == 0
    first = json.loads(out)
    assert first["snapshot"]["tenants"] == 6
    assert first["new_objects"] == 6
    code, out, _ = run(repo, "snapshot", str(ROUND2), "--operation", "sync-apply", "-d", "second")
    assert code == 0
    assert "7 tenants, 4 new objects" in out

    code, out, _ = run(repo, "--json", "list")
    listed = json.loads(out)["snapshots"]
    assert [s["description"] for s in listed] == ["second", ""]
    assert set(listed[0]) == {
        "id",
        "timestamp",
        "operation",
        "target_id",
        "description",
        "tags",
        "tenants",
        "provenance",
    }
    assert listed[0]["provenance"]["user"] == "tester"
    code, out, _ = run(repo, "list", "--tag", "t")
    assert first["snapshot"]["id"][:12] in out
    assert "second" not in out

    code, out, _ = run(repo, "show", first["snapshot"]["id"][:6])
    assert "acme-corp-emea" in out
    code, out, _ = run(repo, "--json", "show", "latest")
    assert len(json.loads(out)["tenants"]) == 7

    code, out, _ = run(repo, "diff", first["snapshot"]["id"], "latest")
    assert "+ wayne-enterprises" in out
    assert '$.name: "Globex Corporation (US)" -> "Globex Corporation"' in out
    assert "umbrella-health" not in out

    code, out, _ = run(repo, "--json", "stats")
    stats = json.loads(out)
    assert stats["snapshots"] == 2
    assert stats["objects_stored"] == 10
    code, out, _ = run(repo, "stats")
    assert "dedup ratio" in out
    assert "objects stored     10" in out
    code, out, _ = run(repo, "--json", "verify")
    assert json.loads(out)["objects_stored"] == 10  # the same count, by the same name
    assert ", 10 objects stored (" in run(repo, "verify")[1]

    out_dir = tmp_path / "restored"
    code, out, _ = run(repo, "restore", "latest", "--output", str(out_dir))
    assert code == 0
    for source in ROUND2.iterdir():
        assert json.loads((out_dir / source.name).read_text()) == json.loads(source.read_text())
    code, _, err = run(repo, "restore", "latest", "--output", str(out_dir))
    assert code == 1
    assert "--force" in err
    assert run(repo, "restore", "latest", "--output", str(out_dir), "--force")[0] == 0

    code, out, _ = run(repo, "restore", "latest", "--tenant", "globex-us", "--output", "-")
    assert json.loads(out) == json.loads((ROUND2 / "globex-us.json").read_text())


def test_restore_to_stdout_feeds_snapshot_from_stdin(repo: Path) -> None:
    run(repo, "snapshot", str(ROUND1))
    _, out, _ = run(repo, "restore", "latest", "--output", "-")
    code, again, _ = run(repo, "--json", "snapshot", "-", input=out)
    assert code == 0
    assert json.loads(again)["new_objects"] == 0


def test_quiet_prints_nothing(repo: Path) -> None:
    code, out, _ = run(repo, "--quiet", "snapshot", str(ROUND1))
    assert code == 0
    assert out == ""


def test_empty_list_and_diff(repo: Path) -> None:
    assert run(repo, "list")[1].strip() == "no snapshots"
    run(repo, "snapshot", str(ROUND1))
    assert run(repo, "diff", "latest", "latest")[1].strip() == "no differences"


def test_not_found_and_ambiguous_exit_1(repo: Path) -> None:
    run(repo, "snapshot", str(ROUND1))
    assert run(repo, "show", "ffffffffff")[0] == 1
    assert run(repo, "show", "ab")[0] == 1


BAD_INPUTS = {
    "malformed.json": (b'{"id": "a",\n "name": }', "malformed.json:2:10: malformed JSON"),
    "not-object.json": (b'["x"]', "a tenant must be a JSON object"),
    "no-id.json": (b'{"name": "x"}', "no string 'id'"),
    "number-id.json": (b'{"id": 7}', "'id' is a number (7); it must be a string"),
    "dup-tenant.json": (b'[{"id": "a"}, {"id": "a"}]', "appears twice"),
    "nan.json": (b'{"id": "a", "v": NaN}', "malformed JSON"),
    "infinity.json": (b'{"id": "a", "v": -Infinity}', "malformed JSON"),
    "surrogate.json": (b'{"id": "a", "v": "\\udfff"}', "lone surrogate"),
    "deep.json": (b'{"id": "a", "v": ' + b"[" * 100 + b"]" * 100 + b"}", "nesting deeper"),
    "dup-key.json": (b'{"id": "a", "v": 1, "v": 2}', "duplicate key 'v'"),
    "empty.json": (b"", "empty input"),
    "empty-array.json": (b"[]", "empty source"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_exit_1_and_repository_unchanged(repo: Path, tmp_path: Path, name: str) -> None:
    run(repo, "snapshot", str(ROUND1))
    before = tree_state(repo)
    content, message = BAD_INPUTS[name]
    bad = tmp_path / name
    bad.write_bytes(content)
    code, out, err = run(repo, "snapshot", str(ROUND2), str(bad))
    assert code == 1
    assert message in err
    assert str(bad) in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert out == ""
    assert tree_state(repo) == before


def test_unreadable_and_folder_sources(repo: Path, tmp_path: Path) -> None:
    before = tree_state(repo)
    assert "no such file" in run(repo, "snapshot", str(tmp_path / "missing.json"))[2]
    (tmp_path / "void").mkdir()
    assert "holds no *.json" in run(repo, "snapshot", str(tmp_path / "void"))[2]
    assert tree_state(repo) == before


def test_repository_path_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    code, _, err = run(target, "snapshot", str(ROUND1))
    assert code == 1
    assert "is a file" in err
    assert target.read_text() == "x"


def test_usage_errors_exit_2(repo: Path) -> None:
    code, _, err = run(repo, "snapshot")
    assert code == 2
    assert "give SOURCES" in err
    code, _, err = run(repo, "show")
    assert code == 2
    assert "Missing argument" in err
    code, _, err = run(repo, "--json", "frobnicate")
    assert code == 2
    assert json.loads(err)["code"] == 2


def test_unsupported_version_exit_12(repo: Path) -> None:
    config = json.loads((repo / "config").read_text())
    config["version"] = 99
    (repo / "config").write_text(json.dumps(config))
    code, _, err = run(repo, "list")
    assert code == 12
    assert "version 99 is not supported" in err


def test_every_command_has_help() -> None:
    runner = CliRunner()
    assert isinstance(cli.commands, dict)
    for name, command in cli.commands.items():
        assert command.help, name
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, name


def test_readme_documents_every_command_and_exit_code() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    for name in cli.commands:
        assert f"casbak {name}" in readme, name
    for code in ["0", "1", "2", "3", "10", "11", "12", "13"]:
        assert f"| {code} |" in readme, code


def test_version_and_help_through_main() -> None:
    assert main(["--version"]) == 0
    assert main(["--help"]) == 0


def test_real_subprocess(tmp_path: Path) -> None:
    exe = shutil.which("casbak") or str(Path(sys.executable).parent / "casbak")
    env = {**os.environ, "CASBAK_REPO": str(tmp_path / "repo")}
    subprocess.run([exe, "init"], check=True, env=env, capture_output=True)
    done = subprocess.run(
        [exe, "--json", "snapshot", "-", "--operation", "tenant-update"],
        input=(EXAMPLES / "descope" / "small_tenant.json").read_bytes(),
        env=env,
        capture_output=True,
        check=True,
    )
    assert json.loads(done.stdout)["snapshot"]["target_id"] == "T2qW8rZt1mXc4VbN7kLp0aSd3Fg"
    bad = subprocess.run(
        [exe, "snapshot", "-"], input=b"{", env=env, capture_output=True, check=False
    )
    assert bad.returncode == 1
    assert bad.stderr.decode().startswith("casbak: error: <stdin>:1:2: malformed JSON")
    missing = subprocess.run(
        [exe, "--repo", str(tmp_path / "nope"), "list"], env=env, capture_output=True, check=False
    )
    assert missing.returncode == 10


def test_gc_and_cleanup_commands(tmp_path: Path) -> None:
    repo = tmp_path / "v1"
    assert run(repo, "init")[0] == 0
    for source in (ROUND1, ROUND2):
        assert run(repo, "snapshot", str(source), "--operation", "sync-apply")[0] == 0
    code, out, _ = run(repo, "--json", "cleanup", "--keep-last", "1", "--dry-run", "--grace", "0s")
    assert code == 0
    dry = json.loads(out)
    assert dry["dry_run"] is True
    assert dry["snapshots_removed"] == 1
    assert dry["objects_removed"] == 3
    assert [k["reasons"] for k in dry["kept"]] == [
        ["newest of target all-tenants", "last snapshot"]
    ]
    assert len(json.loads(run(repo, "--json", "list")[1])["snapshots"]) == 2

    code, out, _ = run(repo, "cleanup", "--keep-last", "1", "--grace", "1h")
    assert code == 0
    assert "removed 1 snapshot (1 kept), 0 objects" in out
    assert "spared 3 unreferenced objects younger than the grace period" in out
    assert "keep   " in out and "last snapshot" in out

    code, out, _ = run(repo, "gc", "-n", "--grace", "0s")
    assert "would remove 0 snapshots (1 kept), 3 objects" in out
    code, out, _ = run(repo, "--json", "gc", "--grace", "0s")
    assert json.loads(out)["objects_removed"] == 3
    assert json.loads(run(repo, "--json", "stats")[1])["objects_stored"] == 7


def test_cleanup_default_policy_and_bad_options(repo: Path) -> None:
    run(repo, "snapshot", str(ROUND1))
    code, out, _ = run(repo, "--json", "cleanup")
    assert code == 0
    assert json.loads(out)["kept"][0]["reasons"] == ["newest of target all-tenants", "within 30d"]
    code, _, err = run(repo, "cleanup", "--keep-within", "soon")
    assert code == 2
    assert "invalid duration" in err


def test_locked_repository_exit_11(repo: Path) -> None:
    from casbak.backends.local import LocalBackend
    from casbak.repository import Repository

    opened = Repository.open(LocalBackend(repo))
    with opened.locks.shared("snapshot", 0):
        code, _, err = run(repo, "gc", "--lock-timeout", "0.1")
    assert code == 11
    assert "shared lock of 'snapshot'" in err
    with opened.locks.exclusive("gc", 0):
        code, _, err = run(repo, "--json", "snapshot", str(ROUND1), "--lock-timeout", "0.1")
    assert code == 11
    assert json.loads(err)["error"] == "RepositoryLocked"


def test_unexpected_errors_are_one_line_unless_debugging(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import casbak.service

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret value 12345")

    monkeypatch.setattr(casbak.service, "list_snapshots", broken)
    code, _, err = run(repo, "list")
    assert code == 1
    assert (
        err == "casbak: error: internal error (RuntimeError); run with CASBAK_DEBUG=1 for details\n"
    )
    assert "12345" not in err
    monkeypatch.setenv("CASBAK_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["--repo", str(repo), "list"])


def test_verify_damage_is_its_report_and_exit_code_3_only(repo: Path) -> None:
    run(repo, "snapshot", str(ROUND1))
    pack = next((repo / "packs").rglob("*"))
    while pack.is_dir():
        pack = next(pack.iterdir())
    pack.write_bytes(pack.read_bytes()[:-7])
    code, out, err = run(repo, "--json", "verify")
    assert code == 3
    assert json.loads(out)["ok"] is False
    assert err == ""  # the report says it all; no second, generic error line
    code, out, err = run(repo, "verify")
    assert code == 3 and "DAMAGE" in out and err == ""


def _wait_until_reading_stdin(pid: int) -> None:
    """Until the process waits on its stdin pipe (Linux tells); elsewhere, a while.

    A signal sent earlier could land in the interpreter's own start-up (or in
    coverage's, under make test), which no program can answer.
    """
    import time

    wchan = Path(f"/proc/{pid}/wchan")
    deadline = time.monotonic() + 30
    while wchan.exists() and time.monotonic() < deadline:
        if "pipe" in wchan.read_text():
            return
        time.sleep(0.02)
    time.sleep(1.5)


def test_ctrl_c_exits_130_with_one_line(repo: Path) -> None:
    import signal
    import subprocess
    import sys

    # A shell runs background jobs with Ctrl-C ignored, and a child inherits
    # an ignored signal (a CI runner started with `&`); a handled one is reset
    # to the default at exec, as on a terminal.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "casbak", "--repo", str(repo), "snapshot", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    _wait_until_reading_stdin(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err.decode()
    assert err.decode().strip().startswith("casbak: error: interrupted")
    assert len(err.decode().strip().splitlines()) == 1
    assert json.loads(run(repo, "--json", "list")[1])["snapshots"] == []


def test_ctrl_c_while_the_cli_is_still_loading_is_one_line_and_130() -> None:
    """A slow start (a loaded machine) must not turn an early Ctrl-C into a traceback."""
    import subprocess
    import sys

    interrupt_on_import = (
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'casbak.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "from casbak.launch import run\n"
        "run()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", interrupt_on_import, "list"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 130
    assert done.stderr == "casbak: error: interrupted; nothing was written\n"


def test_counts_are_singular_or_plural_as_english_wants(repo: Path) -> None:
    one = json.dumps({"id": "solo", "v": 1})
    code, out, _ = run(repo, "snapshot", "-", input=one)
    assert code == 0 and ": 1 tenant, 1 new object (" in out
    code, out, _ = run(repo, "verify")
    assert "checked 1 snapshot, 1 object stored (" in out
    code, out, _ = run(repo, "snapshot", "-", input=json.dumps({"id": "solo", "v": 2}))
    code, out, _ = run(repo, "cleanup", "--keep-last", "1", "--grace", "0s")
    assert "removed 1 snapshot (1 kept), 1 object" in out
