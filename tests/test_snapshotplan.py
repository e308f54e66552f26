"""snapshot --dry-run and --skip-if-unchanged, and the Repository lookups behind them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from casbak.backends.local import LocalBackend
from casbak.rawcache import cache_folder
from casbak.repository import Repository
from casbak.service import preview_snapshot, take_snapshot
from casbak.sources import documents_from_values
from tests.conftest import FakeClock, tree_state
from tests.test_cli import ROUND1, ROUND2, run


def snap(repo: Repository, clock: FakeClock, *tenants: dict[str, Any], **options: Any) -> Any:
    return take_snapshot(repo, documents_from_values(tenants, "t"), clock=clock, **options)


def test_newest_versions_walks_back_until_every_tenant_is_found(
    memory_repo: Repository, clock: FakeClock
) -> None:
    snap(memory_repo, clock, {"id": "a", "v": 1}, {"id": "b", "v": 1})
    clock.advance(hours=1)
    snap(memory_repo, clock, {"id": "a", "v": 2}, target_id="a")
    clock.advance(hours=1)
    snap(memory_repo, clock, {"id": "c", "v": 1}, target_id="c")
    newest = memory_repo.newest_versions(["a", "b", "nobody"])
    docs = {d.tenant_id: d.digest for d in documents_from_values([{"id": "a", "v": 2}], "x")}
    docs |= {d.tenant_id: d.digest for d in documents_from_values([{"id": "b", "v": 1}], "x")}
    assert newest == docs
    assert memory_repo.newest_versions([]) == {}


def test_newest_versions_come_from_the_catalog_without_reading_manifests(
    local_repo: Repository, clock: FakeClock
) -> None:
    snap(local_repo, clock, {"id": "a", "v": 1})
    clock.advance(hours=1)
    newer = snap(local_repo, clock, {"id": "a", "v": 2})
    key = local_repo.resolve(newer.snapshot.id).key
    wire = json.loads(local_repo.backend.get(key))
    wire["tags"] = ["tampered"]
    local_repo.backend.put(key, json.dumps(wire).encode(), overwrite=True)
    # The catalog was told what the manifest held when it was stored; a
    # damaged manifest is verify's to report, not a reason to answer otherwise.
    (second,) = documents_from_values([{"id": "a", "v": 2}], "x")
    assert local_repo.newest_versions(["a"]) == {"a": second.digest}


def test_latest_of_target_is_exact_within_one_second(
    memory_repo: Repository, clock: FakeClock
) -> None:
    """File names sort by whole seconds, then by operation and id: the content decides."""
    taken = [
        snap(memory_repo, clock, {"id": "a", "v": n}, operation=op, target_id="t").snapshot.id
        for n, op in enumerate(["zeta", "alpha", "mid", "alpha", "beta", "omega"])
    ]
    latest = memory_repo.latest_of_target("t")
    assert latest is not None and latest.id == taken[-1]
    before = memory_repo.resolve(taken[2]).header.timestamp
    earlier = memory_repo.latest_of_target("t", before)
    assert earlier is not None and earlier.id == taken[2]
    assert memory_repo.latest_of_target("nobody") is None


# --dry-run


def test_preview_says_new_changed_unchanged(memory_repo: Repository, clock: FakeClock) -> None:
    snap(memory_repo, clock, {"id": "a", "v": 1}, {"id": "b", "v": 1})
    clock.advance(hours=1)
    snap(memory_repo, clock, {"id": "c", "v": 1}, target_id="c")  # another target counts too
    docs = documents_from_values(
        [{"id": "a", "v": 1}, {"id": "b", "v": 2}, {"id": "c", "v": 1}, {"id": "d"}], "t"
    )
    preview = preview_snapshot(memory_repo, docs)
    assert [(t.tenant_id, t.status) for t in preview.tenants] == [
        ("a", "unchanged"),
        ("b", "changed"),
        ("c", "unchanged"),
        ("d", "new"),
    ]
    assert [t.object for t in preview.tenants] == [d.digest for d in docs]
    assert (preview.new, preview.changed, preview.unchanged) == (1, 1, 2)
    assert preview.target_id == "all-tenants" and preview.unchanged_snapshot is None
    assert preview.dry_run is True


def test_cli_dry_run_writes_nothing(repo_dir: Path) -> None:
    before = tree_state(repo_dir)
    code, out, err = run(repo_dir, "--json", "snapshot", str(ROUND1), "--dry-run")
    assert code == 0, err
    result = json.loads(out)
    assert result["dry_run"] is True
    assert (result["new"], result["changed"], result["unchanged"]) == (6, 0, 0)
    assert {t["status"] for t in result["tenants"]} == {"new"}
    assert set(result["tenants"][0]) == {"tenant_id", "status", "object"}
    assert tree_state(repo_dir) == before
    repository_id = Repository.open(LocalBackend(repo_dir)).config.repository_id
    assert not (cache_folder() / f"{repository_id}.raw").exists()

    assert run(repo_dir, "snapshot", str(ROUND1), "--operation", "sync-apply")[0] == 0
    before = tree_state(repo_dir)
    code, out, _ = run(repo_dir, "snapshot", str(ROUND2), "-n", "--meta", "x=1")
    assert code == 0
    assert out.startswith(
        "dry run, nothing written: 7 tenants of target all-tenants: 1 new, 3 changed, 3 unchanged"
    )
    assert "  new        wayne-enterprises  " in out
    assert "  changed    globex-us  " in out
    assert tree_state(repo_dir) == before

    code, out, _ = run(repo_dir, "snapshot", str(ROUND1), "--dry-run")
    assert code == 0
    assert "(--skip-if-unchanged would store nothing)" in out
    code, out, _ = run(repo_dir, "--json", "snapshot", str(ROUND1), "--dry-run")
    latest = json.loads(run(repo_dir, "--json", "show", "latest")[1])["snapshot"]["id"]
    assert json.loads(out)["unchanged_snapshot"] == latest
    assert tree_state(repo_dir) == before


def test_dry_run_refuses_bad_input_like_a_real_run(repo_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    before = tree_state(repo_dir)
    code, _, err = run(repo_dir, "snapshot", str(bad), "--dry-run")
    assert code == 1 and "malformed JSON" in err
    code, _, err = run(repo_dir, "snapshot", str(ROUND1), "--dry-run", "-t", "bad\ntarget")
    assert code == 1 and "target must be" in err
    assert tree_state(repo_dir) == before


# --skip-if-unchanged


def test_skip_if_unchanged_keeps_the_existing_snapshot(
    memory_repo: Repository, clock: FakeClock
) -> None:
    first = snap(memory_repo, clock, {"id": "a"}, {"id": "b"})
    clock.advance(hours=1)
    again = snap(memory_repo, clock, {"id": "b"}, {"id": "a"}, skip_if_unchanged=True)
    assert again.skipped is True
    assert again.snapshot == first.snapshot
    assert (again.new_objects, again.bytes_added, again.reused_objects) == (0, 0, 2)
    assert len(memory_repo.snapshots()) == 1
    # Fewer tenants, another version, another target: a new snapshot each time.
    for tenants, target in (
        ([{"id": "a"}], "all-tenants"),
        ([{"id": "a"}, {"id": "b", "v": 2}], "all-tenants"),
        ([{"id": "a"}, {"id": "b", "v": 2}], "other"),
    ):
        clock.advance(hours=1)
        result = snap(memory_repo, clock, *tenants, target_id=target, skip_if_unchanged=True)
        assert result.skipped is False
    assert len(memory_repo.snapshots()) == 4
    clock.advance(hours=1)
    last = snap(memory_repo, clock, {"id": "a"}, {"id": "b", "v": 2}, skip_if_unchanged=True)
    assert last.skipped is True and last.snapshot.target_id == "all-tenants"


def test_skip_compares_with_the_newest_snapshot_only(
    memory_repo: Repository, clock: FakeClock
) -> None:
    snap(memory_repo, clock, {"id": "a", "v": 1})
    snap(memory_repo, clock, {"id": "a", "v": 2}, target_id="a")  # the same second
    back = snap(memory_repo, clock, {"id": "a", "v": 1}, target_id="a", skip_if_unchanged=True)
    assert back.skipped is False


def test_a_damaged_newest_snapshot_is_no_reason_to_skip(
    local_repo: Repository, clock: FakeClock
) -> None:
    first = snap(local_repo, clock, {"id": "a"})
    key = local_repo.resolve(first.snapshot.id).key
    wire = json.loads(local_repo.backend.get(key))
    wire["description"] = "edited"  # still readable, but no longer hashes to its id
    local_repo.backend.put(key, json.dumps(wire).encode(), overwrite=True)
    clock.advance(hours=1)
    assert snap(local_repo, clock, {"id": "a"}, skip_if_unchanged=True).skipped is False
    (Path(local_repo.backend.describe()) / key).write_text("{}")  # not even readable
    clock.advance(hours=1)
    again = snap(local_repo, clock, {"id": "a"}, target_id="b", skip_if_unchanged=True)
    assert again.skipped is False


def test_cli_skip_if_unchanged(repo_dir: Path) -> None:
    code, out, _ = run(repo_dir, "--json", "snapshot", str(ROUND1), "--skip-if-unchanged")
    assert code == 0 and json.loads(out)["skipped"] is False
    first = json.loads(out)["snapshot"]["id"]
    before = tree_state(repo_dir)
    code, out, _ = run(
        repo_dir, "snapshot", str(ROUND1), "--skip-if-unchanged", "--operation", "other"
    )
    assert code == 0
    assert out == (
        f"no snapshot taken: the newest snapshot of all-tenants, {first[:12]}, "
        "holds the same 6 tenants at the same versions\n"
    )
    code, out, _ = run(repo_dir, "--json", "snapshot", str(ROUND1), "--skip-if-unchanged")
    result = json.loads(out)
    assert (result["skipped"], result["snapshot"]["id"], result["new_objects"]) == (
        True,
        first,
        0,
    )
    assert tree_state(repo_dir) == before
    code, out, _ = run(repo_dir, "--json", "snapshot", str(ROUND2), "--skip-if-unchanged")
    assert code == 0 and json.loads(out)["skipped"] is False
    assert len(json.loads(run(repo_dir, "--json", "list")[1])["snapshots"]) == 2


def test_subprocess_dry_run_and_skip(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    tenants = tmp_path / "tenants"
    shutil.copytree(ROUND1, tenants)
    env = {**os.environ, "CASBAK_REPO": str(repo)}

    def casbak(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "casbak", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    assert casbak("init").returncode == 0
    assert casbak("snapshot", str(tenants)).returncode == 0
    before = tree_state(repo)
    dry = casbak("--json", "snapshot", str(tenants), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["unchanged"] == 6
    skipped = casbak("--json", "snapshot", str(tenants), "--skip-if-unchanged")
    assert json.loads(skipped.stdout)["skipped"] is True
    assert tree_state(repo) == before
    (tenants / "globex-us.json").write_text(json.dumps({"id": "globex-us", "name": "changed"}))
    dry = casbak("snapshot", str(tenants), "--dry-run")
    assert "1 changed, 5 unchanged" in dry.stdout
    taken = casbak("--json", "snapshot", str(tenants), "--skip-if-unchanged")
    assert json.loads(taken.stdout)["skipped"] is False


def test_from_descope_dry_run_and_skip(
    repo_dir: Path, monkeypatch: pytest.MonkeyPatch, sample_tenants: list[dict[str, Any]]
) -> None:
    from tests.fake_descope import MANAGEMENT_KEY, PROJECT_ID, FakeDescope, serve

    state = FakeDescope()
    for tenant in sample_tenants[:3]:
        state.add(tenant)
    with serve(state) as running:
        monkeypatch.setenv("DESCOPE_PROJECT_ID", PROJECT_ID)
        monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", MANAGEMENT_KEY)
        monkeypatch.setenv("DESCOPE_BASE_URI", running.url)
        before = tree_state(repo_dir)
        code, out, err = run(repo_dir, "--json", "snapshot", "--from-descope", "--dry-run")
        assert code == 0, err
        assert json.loads(out)["new"] == 3
        assert tree_state(repo_dir) == before
        assert run(repo_dir, "snapshot", "--from-descope", "--meta", "src=descope")[0] == 0
        code, out, _ = run(repo_dir, "--json", "snapshot", "--from-descope", "--skip-if-unchanged")
        assert code == 0 and json.loads(out)["skipped"] is True
    latest = json.loads(run(repo_dir, "--json", "show", "latest")[1])["snapshot"]
    assert latest["provenance"]["meta.src"] == "descope"
