"""Progress bars and colour: on a terminal only, never on a pipe, with --json, -q or NO_COLOR.

The terminal cases run casbak as a real process on pseudo-terminals (stdout
and stderr each on its own, so what goes where is checked too). The bar's
half-second delay is set to 0 in those processes (through ``-c``, as a test
hook rather than an option), so a bar shows however fast the machine is.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from casbak.cli import output as progress_module
from casbak.cli.context import Context
from casbak.cli.output import ProgressBar
from casbak.cli.terminal import Painter, colour_on, progress_on
from tests.test_cli import ROUND1, ROUND2, run

RED, YELLOW, BOLD = "\x1b[31m", "\x1b[33m", "\x1b[1m"
ESCAPE = "\x1b["
NO_DELAY = (
    "import sys, casbak.cli.output as p; p.DELAY = 0; p.REDRAW = 0; "
    "from casbak.cli import main; sys.exit(main())"
)


def _casbak(
    *args: str, stdout_tty: bool = False, stderr_tty: bool = True, **env: str
) -> tuple[int, str, str]:
    """Run casbak (no bar delay) with stdout and/or stderr on pseudo-terminals."""
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | env
    leaders: dict[int, list[bytes]] = {}
    streams: dict[str, Any] = {}
    followers = []
    for name, on_tty in (("stdout", stdout_tty), ("stderr", stderr_tty)):
        if on_tty:
            leader, follower = pty.openpty()
            leaders[leader] = []
            streams[name] = follower
            followers.append(follower)
        else:
            streams[name] = subprocess.PIPE
    proc = subprocess.Popen(
        [sys.executable, "-c", NO_DELAY, *args],
        stdin=subprocess.DEVNULL,
        env=environment,
        **streams,
    )
    for follower in followers:
        os.close(follower)
    shown = {leader: chunks for leader, chunks in leaders.items()}
    while leaders:
        ready, _, _ = select.select(list(leaders), [], [], 120)
        assert ready, "casbak wrote nothing for two minutes"
        for leader in ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO once the process has closed the terminal
                chunk = b""
            if chunk:
                leaders[leader].append(chunk)
            else:
                os.close(leader)
                del leaders[leader]
    piped_out, piped_err = proc.communicate(timeout=120)
    texts = iter(b"".join(chunks).decode() for chunks in shown.values())
    out = next(texts) if stdout_tty else piped_out.decode()
    err = next(texts) if stderr_tty else piped_err.decode()
    return proc.returncode, out.replace("\r\n", "\n"), err


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    assert run(path, "init")[0] == 0
    assert run(path, "snapshot", str(ROUND1))[0] == 0
    assert run(path, "snapshot", str(ROUND2))[0] == 0
    return path


# Progress


def test_snapshot_shows_reading_and_storing_on_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    assert run(path, "init")[0] == 0
    code, out, err = _casbak("--repo", str(path), "snapshot", str(ROUND1))
    assert code == 0
    assert out.startswith("snapshot ") and ESCAPE not in out
    assert "snapshot: reading" in err
    assert "snapshot: storing" in err
    assert "100%" in err


@pytest.mark.parametrize(
    "args",
    [
        ("gc", "--grace", "0s"),
        ("cleanup", "--keep-last", "1", "--dry-run"),
        ("stats",),
        ("restore", "latest", "--output", "{out}"),
        ("diff", "latest~1", "latest"),
        ("diff", "--stat", "latest~1", "latest"),
        ("verify",),
    ],
)
def test_long_commands_draw_a_bar_on_a_terminal(
    repo: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    args = tuple(arg.replace("{out}", str(tmp_path / "restored")) for arg in args)
    code, _, err = _casbak("--repo", str(repo), *args)
    assert code == 0, err
    assert "%" in err and "[" in err, err


def test_gc_names_its_phases(repo: Path) -> None:
    code, _, err = _casbak("--repo", str(repo), "gc")
    assert code == 0
    assert "gc: reading manifests" in err
    assert "gc: marking objects" in err


@pytest.mark.parametrize("flag", ["--json", "-q"])
def test_no_bar_with_json_or_quiet(repo: Path, tmp_path: Path, flag: str) -> None:
    code, out, err = _casbak("--repo", str(repo), flag, "snapshot", str(ROUND1))
    assert code == 0
    assert err == ""
    if flag == "--json":
        assert json.loads(out)["snapshot"]["tenants"] > 1


def test_no_bar_on_a_pipe(repo: Path) -> None:
    code, out, err = _casbak("--repo", str(repo), "snapshot", str(ROUND2), stderr_tty=False)
    assert code == 0
    assert err == ""
    assert out.startswith("snapshot ")


def test_a_quick_command_draws_nothing_before_the_delay(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(progress_module, "DELAY", 3600)
    with ProgressBar(Context(), "snapshot") as update:
        assert update is not None
        for done in range(1, 11):
            update(done, 10, 0)
    assert capsys.readouterr().err == ""


def test_phases_restart_the_bar_under_their_own_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(progress_module, "DELAY", 0)
    monkeypatch.setattr(progress_module, "REDRAW", 0)
    with ProgressBar(Context(), "gc", ("reading", "marking")) as update:
        assert update is not None
        update(0, 0, 0)  # nothing to count yet: no bar
        for done in (1, 2, 3):
            update(done, 3, 2048)
        for done in (1, 2, 3):  # counting again, same total: the next phase
            update(done, 3, 0)
        update(1, 5, 0)  # more phases than names: the last name again
    err = capsys.readouterr().err
    assert "gc: reading (2.0 KiB)" in err
    assert err.count("gc: marking") >= 4
    assert err.index("gc: reading") < err.index("gc: marking")
    assert err.count("100%") == 2


def test_redraws_are_spaced_but_the_end_is_always_drawn(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(progress_module, "DELAY", 0)
    monkeypatch.setattr(progress_module, "REDRAW", 3600)
    with ProgressBar(Context(), "reading") as update:
        assert update is not None
        for done in range(1, 1001):
            update(done, 1000, 0)
    err = capsys.readouterr().err
    assert "100%" in err
    assert "50%" not in err  # the thousand steps between were not each drawn


def test_progress_and_colour_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    class Closed:
        def isatty(self) -> bool:
            raise ValueError("I/O operation on closed file")

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert colour_on(Stream(True), False)  # type: ignore[arg-type]
    assert not colour_on(Stream(True), True)  # type: ignore[arg-type]
    assert not colour_on(Stream(False), False)  # type: ignore[arg-type]
    assert not colour_on(Closed(), False)  # type: ignore[arg-type]
    monkeypatch.setenv("NO_COLOR", "")
    assert not colour_on(Stream(True), False)  # type: ignore[arg-type]
    monkeypatch.setattr(sys, "stderr", Stream(True))
    assert progress_on(Context())
    assert not progress_on(Context(json_output=True))
    assert not progress_on(Context(quiet=True))
    assert Painter(False).error("x") == "x" == Painter(False).warning("x")
    assert Painter(True).warning("x") == f"{YELLOW}x\x1b[0m"


# Colour


def test_errors_are_red_on_a_terminal_only(tmp_path: Path) -> None:
    missing = ("--repo", str(tmp_path / "nowhere"), "list")
    code, _, err = _casbak(*missing)
    assert code == 10
    assert err.startswith(f"{RED}{BOLD}casbak: error: ") or err.startswith(
        f"{BOLD}{RED}casbak: error: "
    )
    for plain in (
        _casbak(*missing, NO_COLOR="1"),
        _casbak(*missing, NO_COLOR=""),
        _casbak(*missing, stderr_tty=False),
    ):
        assert plain[0] == 10
        assert plain[2].startswith("casbak: error: ") and ESCAPE not in plain[2]
    code, _, err = _casbak("--json", *missing)
    assert code == 10
    assert json.loads(err)["error"] == "RepositoryNotFound"


def test_verify_findings_are_coloured_on_a_terminal_only(repo: Path) -> None:
    (repo / "stray-file").write_text("not casbak's")
    for pack in (repo / "packs").rglob("*"):
        if pack.is_file():
            pack.unlink()
            break
    code, out, _ = _casbak("--repo", str(repo), "verify", stdout_tty=True)
    assert code == 3
    assert f"{RED}{BOLD}DAMAGE" in out or f"{BOLD}{RED}DAMAGE" in out
    assert f"{YELLOW}warning" in out
    code, out, _ = _casbak("--repo", str(repo), "verify", stdout_tty=True, NO_COLOR="1")
    assert code == 3
    assert "DAMAGE " in out and ESCAPE not in out
    code, out, _ = _casbak("--repo", str(repo), "verify", stdout_tty=False)
    assert code == 3
    assert "DAMAGE " in out and ESCAPE not in out
    code, out, _ = _casbak("--repo", str(repo), "--json", "verify", stdout_tty=True)
    assert code == 3
    assert ESCAPE not in out
    assert not json.loads(out)["ok"]


# What the library reports (the bar only draws it)


class Recorder:
    """A progress callback that keeps every report, split into phases where counting restarts."""

    def __init__(self) -> None:
        self.phases: list[list[tuple[int, int, int]]] = []

    def __call__(self, done: int, total: int, read: int) -> None:
        if not self.phases or done <= self.phases[-1][-1][0] or total != self.phases[-1][-1][1]:
            self.phases.append([])
        self.phases[-1].append((done, total, read))

    def ends(self) -> list[tuple[int, int]]:
        """Each phase's last report (done, total): a finished phase has done == total."""
        return [phase[-1][:2] for phase in self.phases]


def _open(path: Path) -> Any:
    from casbak.repository import Repository, backend_for

    return Repository.open(backend_for(str(path)))


def test_snapshot_reports_files_read_then_objects_stored(tmp_path: Path) -> None:
    from casbak.service import preview_sources, snapshot_sources

    path = tmp_path / "repo"
    assert run(path, "init")[0] == 0
    files = len(list(ROUND1.glob("*.json")))
    seen = Recorder()
    result = snapshot_sources(_open(path), [str(ROUND1)], use_cache=False, progress=seen)
    assert seen.ends() == [(files, files), (result.new_objects, result.new_objects)]
    assert seen.phases[0][-1][2] == sum(f.stat().st_size for f in ROUND1.glob("*.json"))
    one = tmp_path / "several.json"
    one.write_text(json.dumps([{"id": f"t{n}"} for n in range(5)]))
    seen = Recorder()
    preview_sources(_open(path), [str(one)], progress=seen)
    assert seen.ends() == [(5, 5)]  # a lone file: its tenants are counted


def test_restore_diff_and_stats_report_what_they_read(repo: Path) -> None:
    from casbak.service import repository_stats, restore_with_warnings
    from casbak.snapshotdiff import diff_snapshots, diff_stat

    opened = _open(repo)
    seen = Recorder()
    _, documents, _ = restore_with_warnings(opened, "latest", (), seen)
    assert seen.ends() == [(len(set(documents.values())),) * 2]
    assert seen.phases[0][-1][2] == sum(len(document) for document in set(documents.values()))
    seen = Recorder()
    changed = diff_snapshots(opened, "latest~1", "latest", progress=seen).changed
    assert changed and seen.ends() == [(len(changed), len(changed))]
    seen = Recorder()
    rows = diff_stat(opened, "latest~1", "latest", progress=seen).tenants
    assert seen.ends() == [(len(rows), len(rows))]
    seen = Recorder()
    assert repository_stats(opened, seen).snapshots == 2
    assert seen.ends() == [(2, 2)]


def test_gc_cleanup_and_forget_report_manifests_read_then_marked(repo: Path) -> None:
    from datetime import timedelta

    from casbak.maintenance import cleanup, collect_garbage, forget
    from casbak.retention import RetentionPolicy

    seen = Recorder()
    collect_garbage(_open(repo), dry_run=True, progress=seen)
    assert seen.ends() == [(2, 2), (2, 2)]
    seen = Recorder()
    report = cleanup(
        _open(repo), RetentionPolicy(keep_last=1), dry_run=True, grace=timedelta(0), progress=seen
    )
    assert report.snapshots_removed == 1
    assert seen.ends() == [(2, 2), (1, 1)]  # every header, then the one manifest that stays
    seen = Recorder()
    forget(_open(repo), ["latest~1"], dry_run=True, progress=seen)
    assert seen.ends() == [(2, 2), (1, 1)]
