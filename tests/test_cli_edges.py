"""Rough edges a new user hit (issue 17): restore --out, init in a used folder,
snapshot of nested folders, a bundle to a terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, tree_state
from tests.test_cli import ROUND1, run

GLOBEX = ROUND1 / "globex-us.json"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    assert run(path, "init")[0] == 0
    assert run(path, "snapshot", str(ROUND1))[0] == 0
    return path


# restore --out


def test_restore_one_tenant_to_a_json_path_writes_that_file(repo: Path, tmp_path: Path) -> None:
    target = tmp_path / "new" / "globex-restored.json"
    code, out, err = run(
        repo, "restore", "latest", "--tenant", "globex-us", "--output", str(target)
    )
    assert (code, err) == (0, "")
    assert target.is_file()
    assert json.loads(target.read_text()) == json.loads(GLOBEX.read_text())
    assert out.strip().endswith(f"to {target}")
    assert sorted(os.listdir(target.parent)) == ["globex-restored.json"]


def test_restore_to_an_existing_json_file_needs_force(repo: Path, tmp_path: Path) -> None:
    target = tmp_path / "existing.json"
    target.write_text("keep me")
    args = ("restore", "latest", "--tenant", "globex-us", "--output", str(target))
    code, out, err = run(repo, *args)
    assert code == 1 and out == ""
    assert err.strip() == f"casbak: error: {target} exists; use --force to overwrite"
    assert target.read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["existing.json", "repo"]  # no temporary file left
    code, out, _ = run(repo, "--json", *args, "--force")
    assert code == 0
    assert json.loads(out)["files"] == [str(target)]
    assert json.loads(target.read_text())["id"] == "globex-us"


def test_restore_several_tenants_to_a_json_path_is_refused(repo: Path, tmp_path: Path) -> None:
    target = tmp_path / "all.json"
    code, out, err = run(repo, "restore", "latest", "--output", str(target))
    assert code == 2 and out == ""
    assert "names one file but 6 tenants are restored" in err
    assert len(err.strip().splitlines()) == 1
    assert not target.exists()


def test_restore_into_a_folder_named_like_a_file_when_it_is_one(repo: Path, tmp_path: Path) -> None:
    folder = tmp_path / "odd.json"
    folder.mkdir()
    code, out, _ = run(repo, "restore", "latest", "--tenant", "globex-us", "--output", str(folder))
    assert code == 0
    assert (folder / "globex-us.json").is_file()
    assert out.splitlines() == [
        out.splitlines()[0],
        f"  {folder / 'globex-us.json'}",
    ]
    assert out.splitlines()[0].endswith(f"into {folder}:")


def test_restore_says_where_every_file_went(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, out, _ = run(repo, "restore", "latest")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("restored 6 tenants from ")
    assert lines[0].endswith(f"into the current folder ({work}):")
    names = sorted(p.name for p in ROUND1.glob("*.json"))
    assert sorted(line.strip() for line in lines[1:]) == names
    assert sorted(os.listdir(work)) == names
    code, out, _ = run(repo, "restore", "latest", "--output", str(tmp_path / "dir"))
    assert out.splitlines()[0].endswith(f"into {tmp_path / 'dir'}:")
    assert [line.strip() for line in out.splitlines()[1:]] == [
        str(tmp_path / "dir" / name) for name in names
    ]


# init


def test_init_refuses_a_folder_holding_other_files(tmp_path: Path) -> None:
    folder = tmp_path / "examples"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    before = tree_state(folder)
    code, out, err = run(folder, "init")
    assert code == 1 and out == ""
    assert err.strip() == (
        f"casbak: error: {folder} is not empty and is not a casbak repository; "
        "choose an empty or new folder, or use --force to create one there anyway"
    )
    assert tree_state(folder) == before
    code, out, err = run(folder, "--json", "init")
    assert code == 1 and json.loads(err)["error"] == "Refused"
    code, _, _ = run(folder, "init", "--force")
    assert code == 0
    assert run(folder, "list")[0] == 0
    code, _, err = run(folder, "init", "--force")
    assert code == 1 and "already a casbak repository" in err


def test_init_in_an_empty_existing_folder(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    assert run(folder, "init")[0] == 0
    assert run(folder, "list")[0] == 0


# snapshot of nested folders


def _nest(tmp_path: Path) -> Path:
    nest = tmp_path / "nest"
    (nest / "sub" / "deeper").mkdir(parents=True)
    (nest / ".hidden").mkdir()
    (nest / "empty").mkdir()
    (nest / "acme.json").write_text(json.dumps({"id": "acme"}))
    (nest / "sub" / "globex-us.json").write_bytes(GLOBEX.read_bytes())
    (nest / "sub" / "deeper" / "z.json").write_text(json.dumps([{"id": "z1"}, {"id": "z2"}]))
    (nest / ".hidden" / "x.json").write_text(json.dumps({"id": "hidden"}))
    return nest


def test_snapshot_of_a_folder_with_json_in_sub_folders_is_refused(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    assert run(repo, "init")[0] == 0
    nest = _nest(tmp_path)
    before = tree_state(repo)
    for dry in ((), ("--dry-run",)):
        code, out, err = run(repo, "snapshot", str(nest), *dry)
        assert code == 1 and out == ""
        assert err.strip() == (
            f"casbak: error: {nest}: sub-folder {nest / 'sub'} holds *.json files that "
            "would be skipped; use --recursive (-r) to read sub-folders too"
        )
    assert tree_state(repo) == before


def test_snapshot_recursive_reads_every_depth_in_order(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert run(repo, "init")[0] == 0
    nest = _nest(tmp_path)
    code, out, _ = run(repo, "--json", "snapshot", "-r", "--dry-run", str(nest))
    assert code == 0
    assert [t["tenant_id"] for t in json.loads(out)["tenants"]] == sorted(
        ["acme", "globex-us", "z1", "z2"]
    )
    code, out, _ = run(repo, "--json", "snapshot", "--recursive", str(nest))
    assert code == 0
    snapshot_id = json.loads(out)["snapshot"]["id"]
    code, out, _ = run(repo, "--json", "show", snapshot_id)
    assert sorted(t["tenant_id"] for t in json.loads(out)["tenants"]) == [
        "acme",
        "globex-us",
        "z1",
        "z2",
    ]


def test_snapshot_recursive_duplicate_ids_across_files(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert run(repo, "init")[0] == 0
    nest = _nest(tmp_path)
    (nest / "sub" / "deeper" / "again.json").write_text(json.dumps({"id": "acme"}))
    before = tree_state(repo)
    code, _, err = run(repo, "snapshot", "-r", str(nest))
    assert code == 1
    assert err.strip() == (
        "casbak: error: tenant id 'acme' appears twice in one snapshot "
        f"({nest}/acme.json and {nest}/sub/deeper/again.json)"
    )
    assert tree_state(repo) == before


def test_recursive_order_is_by_path_parts(tmp_path: Path) -> None:
    from casbak.sources import read_sources

    root = tmp_path / "r"
    for relative in ("b/a.json", "a.json", "a-b/c.json", "a/z.json"):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"id": relative}))
    origins = [d.origin for d in read_sources([str(root)], recursive=True)]
    assert origins == [f"{root}/{p}" for p in ("a/z.json", "a-b/c.json", "a.json", "b/a.json")]


def test_folder_with_only_sub_folders_names_them(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert run(repo, "init")[0] == 0
    nest = tmp_path / "only"
    (nest / "x").mkdir(parents=True)
    (nest / "x" / "t.json").write_text(json.dumps({"id": "t"}))
    code, _, err = run(repo, "snapshot", str(nest))
    assert code == 1 and f"sub-folder {nest / 'x'} holds *.json files" in err
    assert run(repo, "snapshot", "-r", str(nest))[0] == 0


def test_recursive_goes_with_sources_only(repo: Path) -> None:
    code, _, err = run(repo, "snapshot", "--from-descope", "-r")
    assert code == 2
    assert err == (
        "casbak: error: --recursive and --from-descope contradict each other: "
        "files or Descope, not both\n"
    )


# export to a terminal


def _run_on_terminal(args: list[str], env: dict[str, str]) -> tuple[int, bytes]:
    """Run with stdout on a pseudo-terminal (stderr too); the exit code and what it showed."""
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(
        args, stdout=child_fd, stderr=child_fd, stdin=subprocess.DEVNULL, env=env
    )
    os.close(child_fd)
    shown = b""
    while True:
        ready, _, _ = select.select([main_fd], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the terminal is closed when the process is gone
            break
        if not chunk:
            break
        shown += chunk
    os.close(main_fd)
    return proc.wait(timeout=60), shown


def test_export_to_stdout_refuses_a_terminal(repo: Path, tmp_path: Path) -> None:
    env = {**os.environ, "CASBAK_REPO": str(repo)}
    code, shown = _run_on_terminal(
        [sys.executable, "-m", "casbak", "export", "--all", "-o", "-"], env
    )
    assert code == 2
    # Colour on a terminal is fine; the words are what is checked.
    lines = re.sub(r"\x1b\[[0-9;]*m", "", shown.decode()).strip().splitlines()
    assert lines == [
        "casbak: error: -o -: stdout is a terminal, and a bundle is binary; redirect it "
        "(> FILE or | ...) or use -o FILE"
    ]
    piped = subprocess.run(
        [sys.executable, "-m", "casbak", "export", "--all", "-o", "-"],
        env=env,
        capture_output=True,
        check=False,
    )
    assert piped.returncode == 0
    bundle = tmp_path / "b.tar"
    bundle.write_bytes(piped.stdout)
    assert run(repo, "verify", "--bundle", str(bundle))[0] == 0


def test_export_to_stdout_under_clirunner_is_not_a_terminal(repo: Path) -> None:
    code, out, _ = run(repo, "export", "--all", "-o", "-")
    assert code == 0 and out


def test_init_and_nested_folder_refusals_in_real_processes(tmp_path: Path) -> None:
    casbak = [sys.executable, "-m", "casbak", "--repo"]
    used = tmp_path / "used"
    used.mkdir()
    (used / "a.txt").write_text("x")
    refused = subprocess.run([*casbak, str(used), "init"], capture_output=True, check=False)
    assert refused.returncode == 1
    assert len(refused.stderr.decode().strip().splitlines()) == 1
    assert os.listdir(used) == ["a.txt"]
    nest = _nest(tmp_path)
    repo = str(tmp_path / "repo")
    subprocess.run([*casbak, repo, "init"], capture_output=True, check=True)
    plain = subprocess.run([*casbak, repo, "snapshot", str(nest)], capture_output=True, check=False)
    assert plain.returncode == 1 and b"--recursive" in plain.stderr
    deep = subprocess.run(
        [*casbak, repo, "--json", "snapshot", "-r", str(nest)], capture_output=True, check=False
    )
    assert deep.returncode == 0
    assert json.loads(deep.stdout)["snapshot"]["tenants"] == 4


def test_restore_file_in_a_real_process(repo: Path, tmp_path: Path) -> None:
    target = tmp_path / "one.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "casbak",
            "--repo",
            str(repo),
            "restore",
            "globex-us@latest",
            "--output",
            str(target),
        ],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(target.read_text())["id"] == "globex-us"
    assert EXAMPLES.is_dir()
