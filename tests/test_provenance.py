"""Format 4: provenance in manifests, old ids kept, format 3 read as it is, migrate 3 -> 4."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

import casbak
from casbak import provenance
from casbak.api import BackupService
from casbak.backends.local import LocalBackend
from casbak.bundle import read_bundle
from casbak.errors import ChecksumMismatch, CorruptData, FormatVersionError, InputError
from casbak.hostname import host_name
from casbak.ids import hash_bytes
from casbak.layout import MANIFEST_PREFIX, manifest_key
from casbak.migrate import migrate
from casbak.model import Manifest, ManifestEntry, decode_manifest, encode_manifest
from casbak.repository import Repository
from casbak.service import show_snapshot, take_snapshot
from casbak.sources import documents_from_values
from casbak.storedmanifest import decode_stored, encode_stored, rebuild
from casbak.transfer import export_bundle, import_bundle, select_snapshots
from tests.conftest import EXAMPLES, FakeClock, tree_state
from tests.oldformats import as_format_3, without_provenance
from tests.test_cli import ROUND1, ROUND2, run

GOLDEN = Path(__file__).parent / "golden" / "manifests"
LOGICAL = sorted(path for path in GOLDEN.glob("*.json") if len(path.stem) == 64)
REAL_USER = provenance._user
REAL_HOST = provenance._host
EXPECTED = {"casbak": provenance.casbak_version(), "host": "testhost", "user": "tester"}


def golden_stored(kind: str) -> tuple[str, bytes]:
    (path,) = GOLDEN.glob(f"format3-{kind}-*.json")
    return path.stem.rsplit("-", 1)[1], path.read_bytes()


# Logical manifests: ids of old snapshots stay what they were.


@pytest.mark.parametrize("path", LOGICAL, ids=lambda path: path.stem[:12])
def test_golden_manifests_keep_their_ids_and_bytes(path: Path) -> None:
    data = path.read_bytes()
    assert hash_bytes(data) == path.stem
    manifest = decode_manifest(data, path.name)
    assert manifest.provenance is msgspec.UNSET
    assert encode_manifest(manifest) == data


def test_a_manifest_without_provenance_encodes_as_before() -> None:
    manifest = Manifest(
        description="",
        entries={"acme": ManifestEntry(hash_bytes(b"doc1"), 120)},
        operation="tenant-update",
        tags=[],
        target_id="acme",
        timestamp=datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=UTC),
    )
    golden = GOLDEN / "c7a0b991783ec1d271d396f346278c7435c926f425b07ad03ec5b994b5c2e7d9.json"
    assert encode_manifest(manifest) == golden.read_bytes()
    # Positional construction, as before format 4, still works.
    assert Manifest(*msgspec.structs.astuple(manifest)[:6]) == manifest


def test_provenance_is_encoded_sorted_in_its_sorted_place() -> None:
    manifest = Manifest(
        description="d",
        entries={},
        operation="op",
        tags=["x"],
        target_id="t",
        timestamp=datetime(2025, 1, 1, tzinfo=UTC),
        provenance={"user": "ann", "host": "h", "casbak": "0.1.0"},
    )
    data = encode_manifest(manifest)
    assert data == (
        b'{"description":"d","entries":{},"operation":"op",'
        b'"provenance":{"casbak":"0.1.0","host":"h","user":"ann"},'
        b'"tags":["x"],"target_id":"t","timestamp":"2025-01-01T00:00:00Z","version":1}'
    )
    assert decode_manifest(data, "m") == manifest


# Stored manifest files: format 3 read as it is, format 4 carries provenance in the clear.


def test_golden_format_3_files_rebuild_to_their_ids() -> None:
    whole_id, whole_data = golden_stored("whole")
    delta_id, delta_data = golden_stored("delta")
    whole = decode_stored(whole_data, "whole")
    delta = decode_stored(delta_data, "delta")
    assert (whole.version, delta.version) == (3, 3)
    assert whole.header().provenance == {} and delta.header().parent == whole_id
    first = rebuild(whole, None)
    second = rebuild(delta, first.entries)
    assert hash_bytes(encode_manifest(first)) == whole_id
    assert hash_bytes(encode_manifest(second)) == delta_id


def test_a_format_4_repository_reads_format_3_manifest_files(memory_repo: Repository) -> None:
    for kind in ("whole", "delta"):
        snapshot_id, data = golden_stored(kind)
        header = decode_stored(data, kind).header()
        key = manifest_key(header.timestamp, header.operation, header.target_id, snapshot_id)
        memory_repo.backend.put(key, data)
    memory_repo.catalog.invalidate()  # files placed by hand: the catalog is built from them
    snapshots = memory_repo.snapshots()
    assert [snap.id for snap in snapshots] == [golden_stored("delta")[0], golden_stored("whole")[0]]
    assert len(snapshots[0].manifest.entries) == 40
    assert show_snapshot(memory_repo, "latest").snapshot.provenance == {}


def stored_pair(with_provenance: bool) -> tuple[str, bytes, Manifest]:
    manifest = Manifest(
        description="",
        entries={f"T{n}": ManifestEntry(hash_bytes(str(n).encode()), n) for n in range(3)},
        operation="manual",
        tags=[],
        target_id="all-tenants",
        timestamp=datetime(2025, 1, 1, tzinfo=UTC),
        provenance={"user": "ann", "meta.ticket": "OPS-1"} if with_provenance else msgspec.UNSET,
    )
    snapshot_id = hash_bytes(encode_manifest(manifest))
    return snapshot_id, encode_stored(snapshot_id, manifest, None), manifest


def test_format_4_files_carry_provenance_in_the_clear() -> None:
    snapshot_id, data, manifest = stored_pair(True)
    wire = json.loads(data)
    assert wire["version"] == 4
    assert wire["provenance"] == {"meta.ticket": "OPS-1", "user": "ann"}
    assert list(wire)[:8] == [
        "version",
        "snapshot",
        "timestamp",
        "operation",
        "target_id",
        "description",
        "tags",
        "provenance",
    ]
    document = decode_stored(data, "m")
    assert document.header().provenance == {"meta.ticket": "OPS-1", "user": "ann"}
    rebuilt = rebuild(document, None)
    assert rebuilt == manifest
    assert hash_bytes(encode_manifest(rebuilt)) == snapshot_id
    # Without provenance the field is left out, as in format 3.
    assert b"provenance" not in stored_pair(False)[1]


def test_a_format_3_file_with_provenance_is_damage() -> None:
    _, data, _ = stored_pair(True)
    wire = json.loads(data)
    wire["version"] = 3
    with pytest.raises(CorruptData, match="format 3 manifest has no provenance"):
        decode_stored(json.dumps(wire).encode(), "m")
    wire["version"] = 5
    with pytest.raises(FormatVersionError, match="manifest version 5 is unknown"):
        decode_stored(json.dumps(wire).encode(), "m")


def test_a_tampered_provenance_fails_the_id_check(memory_repo: Repository) -> None:
    docs = documents_from_values([{"id": "a"}], "t")
    snap = take_snapshot(memory_repo, docs)
    key = memory_repo.resolve(snap.snapshot.id).key
    wire = json.loads(memory_repo.backend.get(key))
    wire["provenance"]["user"] = "mallory"
    memory_repo.backend.put(key, json.dumps(wire).encode(), overwrite=True)
    with pytest.raises(ChecksumMismatch, match="content hashes to"):
        Repository.open(memory_repo.backend).resolve(snap.snapshot.id).manifest  # noqa: B018


# Collecting provenance.


def test_snapshots_record_user_host_version_and_meta(memory_repo: Repository) -> None:
    docs = documents_from_values([{"id": "a"}], "t")
    result = take_snapshot(memory_repo, docs, meta={"ticket": "OPS-7", "by": ""})
    assert result.snapshot.provenance == {**EXPECTED, "meta.by": "", "meta.ticket": "OPS-7"}
    manifest = memory_repo.resolve(result.snapshot.id).manifest
    assert manifest.provenance == result.snapshot.provenance
    assert list(result.snapshot.provenance) == sorted(result.snapshot.provenance)


def test_ci_variables_are_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_RUN_ID", "123")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/infra")
    monkeypatch.setenv("GITHUB_ACTOR", "ann")
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("CI_PIPELINE_ID", "")  # set but empty: nothing to record
    monkeypatch.setenv("BUILD_ID", "bad\nvalue")  # not printable: left out
    assert provenance.collect_provenance() == {
        **EXPECTED,
        "ci": "true",
        "ci.github.actor": "ann",
        "ci.github.repository": "acme/infra",
        "ci.github.run_id": "123",
        "ci.github.sha": "a" * 40,
    }
    gitlab = {"CI_PIPELINE_ID": "9", "CI_PROJECT_PATH": "g/p", "GITLAB_USER_LOGIN": "bob"}
    assert provenance.ci_provenance(gitlab) == {
        "ci.gitlab.pipeline_id": "9",
        "ci.gitlab.project_path": "g/p",
        "ci.gitlab.user_login": "bob",
    }


def test_user_and_host_never_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    assert REAL_USER() and REAL_HOST()

    def no_user() -> str:
        raise OSError("no passwd entry")

    monkeypatch.setattr("getpass.getuser", no_user)
    assert REAL_USER() == f"uid:{os.getuid()}"
    monkeypatch.delattr(os, "getuid")
    assert REAL_USER() == "unknown"

    def no_host() -> str:
        raise OSError("no host name")

    monkeypatch.setattr(provenance, "host_name", no_host)
    assert REAL_HOST() == "unknown"
    monkeypatch.setattr(provenance, "host_name", lambda: "x" * 2000)
    assert REAL_HOST() == "unknown"


def test_the_recorded_version_is_the_one_pyproject_declares() -> None:
    declared = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert provenance.casbak_version() == declared["project"]["version"] == casbak.__version__


def test_the_host_name_is_the_one_sockets_know(monkeypatch: pytest.MonkeyPatch) -> None:
    assert host_name() == socket.gethostname()
    monkeypatch.delattr(os, "uname")
    monkeypatch.setattr(socket, "gethostname", lambda: "from-socket")
    assert host_name() == "from-socket"


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"": "v"}, "meta key ''"),
        ({"a b": "v"}, "without spaces"),
        ({"a=b": "v"}, "or '='"),
        ({"k" * 65: "v"}, "1 to 64"),
        ({"tab\t": "v"}, "printable"),
        ({"k": "line\nbreak"}, "meta value of 'k'"),
        ({"k": "v" * 1025}, "at most 1024"),
    ],
)
def test_bad_meta_is_refused(memory_repo: Repository, meta: dict[str, str], message: str) -> None:
    docs = documents_from_values([{"id": "a"}], "t")
    with pytest.raises(InputError, match=message):
        take_snapshot(memory_repo, docs, meta=meta)
    assert memory_repo.snapshots() == []


def test_parse_meta() -> None:
    assert provenance.parse_meta(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(InputError, match="give KEY=VALUE"):
        provenance.parse_meta(["novalue"])
    with pytest.raises(InputError, match="given twice"):
        provenance.parse_meta(["a=1", "a=2"])


# The CLI, the Python API and bundles.


def test_cli_meta_show_and_list(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    run(repo, "init")
    code, out, err = run(
        repo, "--json", "snapshot", str(ROUND1), "--meta", "ticket=OPS-12", "--meta", "why=sync"
    )
    assert code == 0, err
    summary = json.loads(out)["snapshot"]
    assert summary["provenance"] == {**EXPECTED, "meta.ticket": "OPS-12", "meta.why": "sync"}
    listed = json.loads(run(repo, "--json", "list")[1])["snapshots"]
    assert listed[0]["provenance"] == summary["provenance"]
    code, out, _ = run(repo, "show", "latest")
    assert f"provenance  casbak={EXPECTED['casbak']}\n            host=testhost\n" in out
    assert "            meta.ticket=OPS-12\n" in out


@pytest.mark.parametrize(
    ("pair", "message"),
    [("novalue", "give KEY=VALUE"), ("bad key=1", "without spaces"), ("=v", "meta key ''")],
)
def test_cli_bad_meta_is_a_usage_error_that_changes_nothing(
    repo_dir: Path, pair: str, message: str
) -> None:
    before = tree_state(repo_dir)
    code, _, err = run(repo_dir, "snapshot", str(ROUND1), "--meta", pair)
    assert code == 2
    assert "--meta" in err and message in err
    assert "Traceback" not in err
    assert tree_state(repo_dir) == before
    code, _, err = run(repo_dir, "--json", "snapshot", str(ROUND1), "--meta", pair)
    assert code == 2 and json.loads(err)["code"] == 2


def test_show_says_when_no_provenance_was_recorded(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    run(repo, "init")
    with without_provenance():
        assert run(repo, "snapshot", str(ROUND1))[0] == 0
    code, out, _ = run(repo, "show", "latest")
    assert code == 0
    assert "provenance  (not recorded: taken before format 4)" in out
    assert json.loads(run(repo, "--json", "show", "latest")[1])["snapshot"]["provenance"] == {}


def test_backup_service_records_provenance(tmp_path: Path) -> None:
    service = BackupService(tmp_path / "backups", clock=FakeClock())
    path = service.create_tenant_backup({"id": "acme"}, "tenant-update", meta={"ticket": "T-1"})
    loaded = service.load_backup(path)
    assert loaded.provenance == {**EXPECTED, "meta.ticket": "T-1"}
    many = service.create_backup([{"id": "a"}, {"id": "b"}], "sync-apply", meta={"run": "7"})
    assert service.load_backup(many).provenance["meta.run"] == "7"
    assert service.load_backup(service.create_backup([{"id": "c"}], "x")).provenance == EXPECTED


def bundle_of(repo: Repository) -> bytes:
    stream = io.BytesIO()
    export_bundle(repo, select_snapshots(repo, everything=True), stream)
    return stream.getvalue()


def test_provenance_survives_export_and_import(tmp_path: Path) -> None:
    source = Repository.init(LocalBackend(tmp_path / "a"))
    clock = FakeClock()
    docs = documents_from_values([{"id": "a"}, {"id": "b"}], "t")
    taken = take_snapshot(source, docs, meta={"ticket": "OPS-3"}, clock=clock)
    data = bundle_of(source)
    header = next(read_bundle(io.BytesIO(data)))
    assert header.version == 2  # type: ignore[union-attr]
    target = Repository.init(LocalBackend(tmp_path / "b"))
    import_bundle(target, lambda: io.BytesIO(data))
    (imported,) = target.snapshots()
    assert imported.id == taken.snapshot.id
    assert imported.header.provenance == taken.snapshot.provenance
    assert imported.manifest == source.resolve(taken.snapshot.id).manifest


def test_bundles_without_provenance_stay_version_1(memory_repo: Repository) -> None:
    with without_provenance():
        take_snapshot(memory_repo, documents_from_values([{"id": "a"}], "t"))
    header = next(read_bundle(io.BytesIO(bundle_of(memory_repo))))
    assert header.version == 1  # type: ignore[union-attr]


# Format 3 repositories: refused until migrated; migrate rewrites only the config.


def format_3_repository(path: Path) -> list[str]:
    with without_provenance():
        for source in (ROUND1, ROUND2):
            assert run(path, "snapshot", str(source), "--operation", "sync-apply")[0] == 0
    as_format_3(path)
    return [snap.id for snap in Repository.open(LocalBackend(path), for_migration=True).snapshots()]


def test_migrate_3_to_4_rewrites_only_the_config(repo_dir: Path) -> None:
    ids = format_3_repository(repo_dir)
    before = tree_state(repo_dir)
    code, _, err = run(repo_dir, "snapshot", str(ROUND1))
    assert code == 12 and "format 3 repository; run 'casbak migrate'" in err
    assert tree_state(repo_dir) == before
    code, out, err = run(repo_dir, "--json", "migrate")
    assert code == 0, err
    result = json.loads(out)
    assert (result["from_version"], result["to_version"]) == (3, 4)
    assert (result["snapshots"], result["objects"], result["damaged_manifests"]) == (2, 0, 0)
    after = tree_state(repo_dir)
    added = sorted(after.keys() - before.keys())
    assert added and all(key.startswith("catalog/") for key in added)  # built from the manifests
    assert [key for key in before if after[key] != before[key]] == ["config"]
    assert json.loads(after["config"][1])["version"] == 4
    repo = Repository.open(LocalBackend(repo_dir))
    assert [snap.id for snap in repo.snapshots()] == ids
    assert run(repo_dir, "verify")[0] == 0
    assert run(repo_dir, "snapshot", str(ROUND1), "--meta", "after=migrate")[0] == 0


def test_migrate_3_counts_damaged_manifests_and_refuses_unknown_ones(repo_dir: Path) -> None:
    format_3_repository(repo_dir)
    keys = sorted(LocalBackend(repo_dir).list_names(MANIFEST_PREFIX))
    (repo_dir / keys[0]).write_bytes(b'{"version":3,"snapshot":"nonsense"}')
    (repo_dir / keys[1]).write_bytes(b'{"version":7}')
    before = tree_state(repo_dir)
    code, _, err = run(repo_dir, "migrate")
    assert code == 12
    assert "manifest version 7 is unknown; nothing was changed" in err
    assert tree_state(repo_dir) == before
    (repo_dir / keys[1]).write_bytes(before[keys[0]][1])
    code, out, _ = run(repo_dir, "migrate")
    assert code == 0
    assert "2 damaged manifests left as it was (run 'casbak verify')" in out
    assert Repository.open(LocalBackend(repo_dir)).version == 4


def test_migrate_notices_a_concurrent_migration(repo_dir: Path) -> None:
    format_3_repository(repo_dir)
    config_path = repo_dir / "config"
    config = config_path.read_bytes()
    waiting = Repository.open(LocalBackend(repo_dir), for_migration=True)
    config_path.write_text(json.dumps({**json.loads(config), "version": 2}))
    with pytest.raises(FormatVersionError, match="changed from format 3 to 2"):
        migrate(waiting)
    config_path.write_bytes(config)
    first = Repository.open(LocalBackend(repo_dir), for_migration=True)
    second = Repository.open(LocalBackend(repo_dir), for_migration=True)
    assert migrate(first).from_version == 3
    assert migrate(second).from_version == 4  # the first run finished it: nothing left to do


def test_subprocess_meta_and_show(tmp_path: Path) -> None:
    env = {**os.environ, "CASBAK_REPO": str(tmp_path / "repo"), "GITHUB_RUN_ID": "4242"}

    def casbak(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "casbak", *args],
            input=stdin,
            env=env,
            capture_output=True,
            check=False,
        )

    assert casbak("init").returncode == 0
    source = str(EXAMPLES / "descope" / "small_tenant.json")
    done = casbak("--json", "snapshot", source, "--meta", "ticket=OPS-9")
    assert done.returncode == 0, done.stderr
    recorded = json.loads(done.stdout)["snapshot"]["provenance"]
    assert recorded["meta.ticket"] == "OPS-9"
    assert recorded["ci.github.run_id"] == "4242"
    assert recorded["host"] == REAL_HOST() and recorded["casbak"] == EXPECTED["casbak"]
    bad = casbak("snapshot", "-", "--meta", "oops", stdin=b"{}")
    assert bad.returncode == 2
    assert b"give KEY=VALUE" in bad.stderr and b"Traceback" not in bad.stderr
