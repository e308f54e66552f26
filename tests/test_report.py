"""`casbak report`: what it gathers, how it escapes, the command and the Python API.

The browser checks (console, network, marks as drawn) are in test_report_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from casbak import report as report_module
from casbak.api import BackupService
from casbak.backends.local import LocalBackend
from casbak.diff import Change
from casbak.errors import InputError
from casbak.report import gather, read_verify, write_report
from casbak.reporthtml import CSP, render
from casbak.reportmodel import (
    Churn,
    ChurnRow,
    FindingLine,
    GrowthPoint,
    Header,
    Mark,
    RemovedSnapshot,
    ReportData,
    Retention,
    TenantSection,
    VerifyState,
    Version,
    decode_verify,
    human_bytes,
    short_value,
)
from casbak.repository import Repository
from tests.conftest import FakeClock
from tests.test_cli import run
from tests.test_references import history, store

__all__ = ["history"]  # the fixture, shared

HOSTILE = "<img src=x onerror=alert(1)>"
T0 = datetime(2025, 11, 17, 10, 30, tzinfo=UTC)


def hostile_data() -> ReportData:
    """Every text field of a report set to markup that would run if it were not escaped."""
    evil = HOSTILE + "\"'&"
    mark = Mark("ab" * 32, T0, evil, evil, evil, 1, evil)
    version = Version(
        "cd" * 32,
        10,
        1,
        T0,
        T0,
        "ab" * 32,
        evil,
        evil,
        evil,
        {"user": evil, "host": evil, evil: evil},
        [Change(evil, "changed", evil, {evil: [evil]})],
        initial=False,
    )
    return ReportData(
        Header(
            evil,
            evil,
            T0,
            T0,
            T0,
            1,
            1,
            VerifyState(False, evil, 1, 1, [FindingLine(evil, evil, evil, evil)]),
        ),
        [mark],
        [GrowthPoint(T0, 1, 10, 10, 5)],
        Churn([ChurnRow(evil, 1, [1], evil)], [T0, T0 + timedelta(hours=1)], 1),
        [TenantSection(evil, evil, [version], 3)],
        Retention(evil, [RemovedSnapshot("ab" * 32, T0, evil, evil)], 2, 1, {evil: 1}),
        [evil],
    )


def test_every_value_is_escaped_and_nothing_external() -> None:
    page = render(hostile_data())
    assert "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    # Escaped quotes: an attribute value cannot be closed by a tenant's text.
    assert "&quot;&#x27;&amp;" in page
    assert "<script" not in page.lower()
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in page
    assert re.search(r"""(src|href)=["']?(https?:|//)""", page) is None
    assert "@import" not in page and "url(" not in page


def test_empty_repository_renders(memory_repo: Repository) -> None:
    data = gather(memory_repo)
    assert (data.marks, data.growth, data.tenants) == ([], [], [])
    page = render(data)
    assert 'data-marks="0"' in page and 'data-points="0"' in page
    assert "No tenant changed in this window." in page


def test_gathers_timeline_growth_churn_and_tenant_changes(
    history: tuple[Repository, dict[str, str]],
) -> None:
    repo, ids = history
    data = gather(repo, clock=lambda: T0 + timedelta(days=1))
    assert [m.id for m in data.marks] == [
        ids[name] for name in ("sync1", "acme-a", "acme-b", "globex", "sync2")
    ]
    assert [p.snapshots for p in data.growth] == [1, 2, 3, 4, 5]
    last = data.growth[-1]
    # Seven tenant copies in all, of five distinct documents (sync2 brings acme back).
    assert last.logical > last.unique > last.stored > 0
    assert data.growth[0].logical == data.growth[0].unique
    busiest = {row.tenant_id: row.versions for row in data.churn.rows}
    assert busiest == {"acme": 4, "globex": 3}
    assert [row.anchor for row in data.churn.rows] == ["t0", "t1"]
    acme = data.tenants[0]
    assert acme.tenant_id == "acme"
    assert [v.snapshot_id for v in acme.versions] == [
        ids["sync2"],
        ids["acme-b"],
        ids["acme-a"],
        ids["sync1"],
    ]
    newest = acme.versions[0]
    assert [(c.path, c.old, c.new) for c in newest.changes] == [("$.name", "Acme AG", "Acme")]
    assert acme.versions[-1].initial and not newest.initial
    assert newest.provenance["user"]
    assert data.retention.removed_total == 0
    assert data.header.snapshots == 5 and data.header.tenants == 2


def test_window_and_named_tenant(history: tuple[Repository, dict[str, str]]) -> None:
    repo, ids = history
    since = T0 + timedelta(hours=1, minutes=30)
    until = T0 + timedelta(hours=3, minutes=30)
    data = gather(repo, tenant_ids=["globex"], since=since, until=until)
    assert [m.id for m in data.marks] == [ids["acme-b"], ids["globex"]]
    assert [row.tenant_id for row in data.churn.rows] == ["globex"]
    assert data.churn.rows[0].versions == 1
    (section,) = data.tenants
    assert [v.snapshot_id for v in section.versions] == [ids["globex"]]
    assert data.notes == []
    with pytest.raises(InputError, match="'nobody'"):
        gather(repo, tenant_ids=["nobody"])


def test_busiest_tenants_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Repository.init(LocalBackend(tmp_path / "repo"))
    clock = FakeClock()
    for number in range(6):
        store(repo, clock, "tenant-update", {"id": "busy", "v": number})
    store(repo, clock, "tenant-update", {"id": "calm", "v": 0})
    monkeypatch.setattr(report_module, "MAX_VERSIONS", 2)
    monkeypatch.setattr(report_module, "MAX_POINTS", 3)
    data = gather(repo, top=1)
    (section,) = data.tenants
    assert (section.tenant_id, len(section.versions), section.omitted) == ("busy", 2, 4)
    assert len(data.growth) == 3
    assert data.growth[-1].snapshots == 7
    assert any("7 snapshots drawn as 3 points" in note for note in data.notes)
    assert any("busiest 1 of 2 tenants" in note for note in data.notes)


def test_retention_preview_uses_the_repository_policy(tmp_path: Path) -> None:
    repo = Repository.init(LocalBackend(tmp_path / "repo"), retention_days=30)
    clock = FakeClock()
    old = store(repo, clock, "tenant-update", {"id": "a", "v": 1})
    store(repo, clock, "tenant-update", {"id": "a", "v": 2})
    store(repo, clock, "tenant-update", {"id": "b", "v": 1})
    data = gather(repo, clock=lambda: T0 + timedelta(days=40))
    retention = data.retention
    assert [r.id for r in retention.removed] == [old]
    assert (retention.removed_total, retention.kept_total) == (1, 2)
    assert retention.reasons == {"the newest of its target": 2}
    assert "keep within 30d" in retention.policy
    nothing_removed = gather(repo, clock=lambda: T0 + timedelta(days=1)).retention
    assert nothing_removed.reasons["within 30d"] == 3


def test_verify_state(tmp_path: Path) -> None:
    good = tmp_path / "verify.json"
    good.write_text(
        json.dumps(
            {
                "ok": False,
                "mode": "full",
                "snapshots_checked": 3,
                "objects_stored": 9,
                "bytes_checked": 1,
                "damage": 1,
                "findings": [
                    {"kind": "missing", "severity": "damage", "location": "x", "message": "gone"}
                ],
            }
        )
    )
    state = read_verify(str(good))
    assert (state.ok, state.damage, state.findings[0].message) == (False, 1, "gone")
    with pytest.raises(InputError, match=r"--verify .*cannot read"):
        read_verify(str(tmp_path / "missing.json"))
    with pytest.raises(InputError, match="not a 'casbak verify --json' result"):
        decode_verify(b"[1]", "there")


def test_small_helpers() -> None:
    assert human_bytes(10) == "10 B"
    assert human_bytes(2048) == "2.0 KiB"
    assert human_bytes(3 * 1024**4) == "3072.0 GiB"
    assert short_value({"a": "x" * 1000}, 20).endswith("…")
    assert len(short_value("x" * 1000, 20)) == 20


def test_cli_writes_file_json_and_stdout(
    history: tuple[Repository, dict[str, str]], tmp_path: Path
) -> None:
    repo, _ = history
    path = Path(repo.backend.describe())
    out_file = tmp_path / "out" / "report.html"
    out_file.parent.mkdir()
    code, out, err = run(path, "report", "-o", str(out_file))
    assert (code, err) == (0, "")
    assert out.startswith(f"wrote {out_file} (") and "5 snapshots, 2 tenant sections" in out
    assert out_file.stat().st_mode & 0o777 == 0o600
    page = out_file.read_text()
    assert page.startswith("<!DOCTYPE html>") and 'data-marks="5"' in page
    code, out, _ = run(path, "--json", "report", "-o", str(out_file), "--tenant", "acme")
    result = json.loads(out)
    assert (code, result["tenants_shown"], result["snapshots"]) == (0, ["acme"], 5)
    assert result["bytes"] == out_file.stat().st_size
    code, out, _ = run(path, "report", "-o", "-", "--since", "2025-11-17T12:00")
    assert code == 0 and out.startswith("<!DOCTYPE html>") and 'data-marks="3"' in out


def test_cli_bad_input_is_one_line_and_writes_nothing(
    history: tuple[Repository, dict[str, str]], tmp_path: Path
) -> None:
    repo, _ = history
    path = Path(repo.backend.describe())
    target = tmp_path / "r.html"
    code, out, err = run(path, "report", "-o", str(target), "--tenant", "nobody")
    assert (code, out) == (1, "")
    assert err.strip().count("\n") == 0 and "'nobody'" in err
    code, _, err = run(path, "report", "-o", str(target), "--verify", str(tmp_path / "no.json"))
    assert code == 1 and "--verify" in err and err.strip().count("\n") == 0
    code, _, err = run(path, "report", "-o", str(tmp_path / "missing" / "r.html"))
    assert code == 1 and "cannot write report" in err
    code, _, err = run(path, "report", "--since", "yesterday-ish")
    assert code == 2 and "--since" in err
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_python_api(tmp_path: Path, sample_tenants: list[dict[str, object]]) -> None:
    service = BackupService(tmp_path / "repo", clock=FakeClock())
    service.create_backup(sample_tenants, "sync-apply", description="first")
    target = tmp_path / "report.html"
    verify_file = tmp_path / "v.json"
    verify_file.write_text('{"ok": true, "mode": "quick", "snapshots_checked": 1, "damage": 0}')
    written = service.report(target, verify_json=verify_file)
    assert written == target
    page = target.read_text()
    assert 'id="verify"' in page and "no damage" in page


def test_subprocess(history: tuple[Repository, dict[str, str]], tmp_path: Path) -> None:
    repo, _ = history
    target = tmp_path / "sub.html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "casbak",
            "--repo",
            repo.backend.describe(),
            "report",
            "-o",
            str(target),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    assert 'data-marks="5"' in target.read_text()


def test_write_report_failure_leaves_nothing(tmp_path: Path, memory_repo: Repository) -> None:
    with pytest.raises(InputError, match="cannot write report"):
        write_report(tmp_path / "nope" / "r.html", gather(memory_repo))


def test_compacted_and_journaled_catalogs_give_one_report(tmp_path: Path) -> None:
    """Snapshots folded into catalog parts and ones still in the journal count alike."""
    repo = Repository.init(LocalBackend(tmp_path / "repo"))
    clock = FakeClock()
    for number in range(3):
        store(repo, clock, "sync-apply", {"id": "a", "v": number}, {"id": "b", "v": 0})
    journaled = gather(repo, clock=lambda: T0)
    assert repo.timeline.catalog.compact()
    store(repo, clock, "tenant-update", {"id": "b", "v": 1})
    mixed = gather(repo, clock=lambda: T0)
    assert mixed.growth[:3] == journaled.growth
    assert [row.versions for row in mixed.churn.rows] == [3, 2]
    before, last = journaled.growth[-1], mixed.growth[-1]
    assert last.logical - before.logical == last.unique - before.unique > 0
    assert mixed.header.snapshots == 4
