"""Real processes racing over one repository, and gc killed at random points."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from casbak.backends.local import LocalBackend
from casbak.repository import Repository
from casbak.service import restore_documents, take_snapshot
from casbak.sources import documents_from_values
from casbak.transfer import export_bundle, select_snapshots
from casbak.verify import verify_repository

CASBAK = shutil.which("casbak") or str(Path(sys.executable).parent / "casbak")
SOAK = int(os.environ.get("CASBAK_SOAK", "1"))
WRITERS = 3 * SOAK
ROUNDS = 6 * SOAK


def _foreign_bundle(path: Path, bundle: Path) -> None:
    foreign = Repository.init(LocalBackend(path))
    take_snapshot(foreign, documents_from_values([{"id": "foreign", "v": 1}], "f"))
    with bundle.open("wb") as handle:
        export_bundle(foreign, select_snapshots(foreign, everything=True), handle)


WRITER = r"""
import json, subprocess, sys
casbak, repo, writer, rounds, out = sys.argv[1:6]
rounds = int(rounds)
done = []
for r in range(rounds):
    tenants = [{"id": f"{writer}-t{i}", "v": (r + i) % 3, "pad": "x" * (50 * i)} for i in range(4)]
    tag = ["--tag", "keep"] if r % 2 else []
    proc = subprocess.run(
        [casbak, "--repo", repo, "--json", "snapshot", "-", "-t", writer, "--lock-timeout", "60",
         *tag], input=json.dumps(tenants).encode(), capture_output=True)
    if proc.returncode != 0:
        sys.exit(f"snapshot failed: {proc.stderr.decode()}")
    sid = json.loads(proc.stdout)["snapshot"]["id"]
    done.append({"id": sid, "tenants": tenants, "kept": bool(tag)})
json.dump(done, open(out, "w"))
"""


def _start_loop(repo: Path, rounds: int, command: list[str]) -> subprocess.Popen[bytes]:
    argv = [CASBAK, "--repo", str(repo), *command]
    script = (
        "import subprocess, sys\n"
        f"for _ in range({rounds}):\n"
        f"    p = subprocess.run({argv!r}, capture_output=True)\n"
        "    if p.returncode != 0: sys.exit(p.stderr.decode() + p.stdout.decode()[-3000:])\n"
    )
    return subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)


@pytest.mark.slow
def test_snapshots_and_gc_race_without_losing_anything(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    subprocess.run([CASBAK, "--repo", str(repo), "init"], check=True, capture_output=True)
    writers = []
    for number in range(WRITERS):
        out = tmp_path / f"writer{number}.json"
        writers.append(
            (
                out,
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        WRITER,
                        CASBAK,
                        str(repo),
                        f"w{number}",
                        str(ROUNDS),
                        str(out),
                    ],
                    stderr=subprocess.PIPE,
                ),
            )
        )
    maintenance = ["--grace", "0s", "--lock-timeout", "60"]
    bundle = tmp_path / "foreign.casbak"
    _foreign_bundle(tmp_path / "foreign", bundle)
    collectors = [
        _start_loop(repo, ROUNDS, ["gc", *maintenance]),
        _start_loop(
            repo, ROUNDS, ["cleanup", "--keep-last", "1", "--keep-tag", "keep", *maintenance]
        ),
        _start_loop(repo, ROUNDS, ["verify"]),
        _start_loop(repo, ROUNDS, ["import", str(bundle), "--lock-timeout", "60"]),
    ]
    for proc in [p for _, p in writers] + collectors:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err.decode()

    opened = Repository.open(LocalBackend(repo))
    present = {snap.id for snap in opened.snapshots()}
    checked = 0
    for out, _ in writers:
        for record in json.loads(out.read_text()):
            if record["kept"]:
                assert record["id"] in present
            if record["id"] in present:
                _, documents = restore_documents(opened, record["id"])
                restored = {k: json.loads(v) for k, v in documents.items()}
                assert restored == {t["id"]: t for t in record["tenants"]}
                checked += 1
    assert checked >= 3 * WRITERS
    for snap in opened.snapshots():
        for entry in snap.manifest.entries.values():
            opened.objects.read(entry.object)
    assert list(opened.backend.list("locks/")) == []


def _repository_with_garbage(path: Path) -> tuple[Repository, list[str]]:
    repo = Repository.init(LocalBackend(path))
    keep = []
    for round_number in range(30):
        docs = documents_from_values(
            [{"id": f"t{i}", "round": round_number, "pad": "y" * i} for i in range(20)], "t"
        )
        result = take_snapshot(repo, docs, operation="sync-apply")
        if round_number % 3 == 0:
            keep.append(result.snapshot.id)
    for snap in repo.snapshots():
        if snap.id not in keep:
            repo.delete_snapshot(snap)
    return repo, keep


def _reopened(path: Path) -> Repository:
    return Repository.open(LocalBackend(path))


def _gc_holding_its_lock(path: Path) -> tuple[subprocess.Popen[bytes], float]:
    """Start a gc and wait until it holds the exclusive lock; return it and that moment."""
    proc = subprocess.Popen(
        [CASBAK, "--repo", str(path), "gc", "--grace", "0s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    while proc.poll() is None and not any((path / "locks").glob("exclusive-*")):
        time.sleep(0.001)
    return proc, time.monotonic()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_gc_killed_at_random_point_leaves_a_sound_repository(tmp_path: Path, seed: int) -> None:
    _, keep = _repository_with_garbage(tmp_path / "repo")
    # The kill lands while gc works: somewhere in the time a gc of a copy held its lock.
    shutil.copytree(tmp_path / "repo", tmp_path / "trial")
    trial, locked = _gc_holding_its_lock(tmp_path / "trial")
    trial.communicate()
    assert trial.returncode == 0
    delay = random.Random(seed).uniform(0.0, 1.0) * (time.monotonic() - locked)
    proc, _ = _gc_holding_its_lock(tmp_path / "repo")
    time.sleep(delay)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    def sound() -> Repository:
        # Opened afresh: what is on disk counts, not what this process still holds in memory.
        repo = _reopened(tmp_path / "repo")
        assert {s.id for s in repo.snapshots()} == set(keep)
        for sid in keep:
            _, documents = restore_documents(repo, sid)
            assert len(documents) == 20
        assert verify_repository(repo).ok
        return repo

    sound()
    # The killed process's lock is stale (its pid is gone), so the next gc runs at once.
    rerun = subprocess.run(
        [
            CASBAK,
            "--repo",
            str(tmp_path / "repo"),
            "--json",
            "gc",
            "--grace",
            "0s",
            "--lock-timeout",
            "5",
        ],
        capture_output=True,
        check=True,
    )
    assert json.loads(rerun.stdout)["snapshots_kept"] == len(keep)
    repo = sound()
    referenced = {e.object for s in repo.snapshots() for e in s.manifest.entries.values()}
    assert {d for d, _ in repo.objects.list()} == referenced


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2 * SOAK))
@pytest.mark.parametrize("command", ["snapshot", "import"])
def test_cli_killed_at_random_moment(tmp_path: Path, seed: int, command: str) -> None:
    """SIGKILL a snapshot or import process at a random moment; nothing done is lost."""
    _, keep = _repository_with_garbage(tmp_path / "repo")
    big = tmp_path / "big.json"
    big.write_text(
        json.dumps([{"id": f"k{i}", "pad": "z" * (i % 50), "seed": seed} for i in range(800)])
    )
    bundle = tmp_path / "b.casbak"
    source = Repository.init(LocalBackend(tmp_path / "source"))
    take_snapshot(source, documents_from_values(json.loads(big.read_text()), "big"))
    with bundle.open("wb") as handle:
        export_bundle(source, select_snapshots(source, everything=True), handle)
    argv = {"snapshot": ["snapshot", str(big)], "import": ["import", str(bundle)]}[command]
    proc = subprocess.Popen(
        [CASBAK, "--repo", str(tmp_path / "repo"), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(random.Random(seed).uniform(0.2, 1.2))
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    repo = _reopened(tmp_path / "repo")
    assert verify_repository(repo).ok
    for sid in keep:
        assert len(restore_documents(repo, sid)[1]) == 20
    rerun = subprocess.run(
        [CASBAK, "--repo", str(tmp_path / "repo"), *argv, "--lock-timeout", "5"],
        capture_output=True,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    repo = _reopened(tmp_path / "repo")
    assert verify_repository(repo).ok
    latest = restore_documents(repo, "latest")[1]
    assert len(latest) == 800


MODULE_WRITER = r"""
import json, subprocess, sys
repo, writer, rounds, out = sys.argv[1:5]
done = []
for r in range(int(rounds)):
    tenants = [{"id": f"{writer}-t{i}", "v": (r + i) % 3} for i in range(3)] + [{"id": "shared"}]
    proc = subprocess.run(
        [sys.executable, "-m", "casbak", "--repo", repo, "--json", "snapshot", "-", "-t", writer,
         "--lock-timeout", "60"], input=json.dumps(tenants).encode(), capture_output=True)
    if proc.returncode != 0:
        sys.exit(f"snapshot failed: {proc.stderr.decode()}")
    done.append({"id": json.loads(proc.stdout)["snapshot"]["id"]})
json.dump(done, open(out, "w"))
"""

COMPACTOR = r"""
import pathlib, sys
from casbak.backends.local import LocalBackend
from casbak.repository import Repository
repo, stop = sys.argv[1:3]
moved = 0
while not pathlib.Path(stop).exists():
    catalog = Repository.open(LocalBackend(pathlib.Path(repo))).catalog
    before = catalog.head()
    catalog.compact()
    moved += catalog.head() != before
print(moved)
"""

LISTER = r"""
import json, pathlib, subprocess, sys
repo, stop = sys.argv[1:3]
seen = set()
rounds = 0
while not pathlib.Path(stop).exists() or rounds == 0:
    proc = subprocess.run([sys.executable, "-m", "casbak", "--repo", repo, "--json", "list"],
                          capture_output=True)
    if proc.returncode != 0:
        sys.exit(proc.stderr.decode())
    ids = [s["id"] for s in json.loads(proc.stdout)["snapshots"]]
    if len(ids) != len(set(ids)):
        sys.exit(f"a snapshot listed twice: {ids}")
    if not seen <= set(ids):
        sys.exit(f"snapshots listed before are gone: {sorted(seen - set(ids))}")
    seen = set(ids)
    rounds += 1
print(rounds)
"""


@pytest.mark.slow
def test_snapshot_processes_racing_a_compactor_and_a_lister(tmp_path: Path) -> None:
    """Every snapshot shows in `list` exactly once; nothing listed ever disappears;
    afterwards the catalog says what the manifests say."""
    from tests.catalogtools import assert_agrees

    repo = tmp_path / "repo"
    subprocess.run([sys.executable, "-m", "casbak", "--repo", str(repo), "init"], check=True)
    stop = tmp_path / "stop"
    helpers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(repo), str(stop)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for script in (COMPACTOR, LISTER)
    ]
    writers = []
    for number in range(WRITERS + 1):
        out = tmp_path / f"writer{number}.json"
        argv = [sys.executable, "-c", MODULE_WRITER, str(repo), f"w{number}", str(3 * ROUNDS)]
        writers.append((out, subprocess.Popen([*argv, str(out)])))
    for _, proc in writers:
        assert proc.wait(timeout=600) == 0
    stop.touch()
    results = [helper.communicate(timeout=120) for helper in helpers]
    for helper, (_, err) in zip(helpers, results, strict=True):
        assert helper.returncode == 0, err.decode()
    compactions, listings = (int(out) for out, _ in results)
    assert listings > 0
    written = [record["id"] for out, _ in writers for record in json.loads(out.read_text())]
    opened = Repository.open(LocalBackend(repo))
    listed = assert_agrees(opened)
    assert sorted(listed) == sorted(written) and len(set(written)) == len(written)
    head = opened.catalog.head()
    assert head is not None and head.journal > 0
    assert compactions > 0
