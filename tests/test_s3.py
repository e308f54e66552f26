"""Every command on s3://BUCKET/PREFIX against a real S3 server process on 127.0.0.1."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from casbak.backends.s3 import S3Backend, parse_location
from casbak.errors import BackendError, RepositoryLocked, UsageError
from casbak.layout import PACK_PREFIX
from casbak.repository import Repository, backend_for
from casbak.service import restore_documents
from casbak.verify import verify_repository
from tests.s3server import faulty_proxy
from tests.test_cli import ROUND1, ROUND2, run
from tests.test_format2 import history


def test_every_command_on_s3(s3_env: str, tmp_path: Path) -> None:
    repo = s3_env
    assert run(repo, "init")[0] == 0
    assert run(repo, "init")[0] == 1
    first = json.loads(run(repo, "--json", "snapshot", str(ROUND1), "--operation", "sync-apply")[1])
    code, out, _ = run(repo, "snapshot", str(ROUND2), "--operation", "sync-apply")
    assert code == 0 and "4 new objects" in out
    listed = json.loads(run(repo, "--json", "list")[1])["snapshots"]
    assert len(listed) == 2
    assert "acme-corp-emea" in run(repo, "show", first["snapshot"]["id"][:8])[1]
    assert "+ wayne-enterprises" in run(repo, "diff", first["snapshot"]["id"], "latest")[1]
    assert json.loads(run(repo, "--json", "stats")[1])["objects_stored"] == 10
    out_dir = tmp_path / "restored"
    assert run(repo, "restore", "latest", "--output", str(out_dir))[0] == 0
    for source in ROUND2.iterdir():
        assert json.loads((out_dir / source.name).read_text()) == json.loads(source.read_text())
    bundle = tmp_path / "all.casbak"
    assert run(repo, "export", "--all", "-o", str(bundle))[0] == 0
    code, out, _ = run(repo, "--json", "cleanup", "--keep-last", "1", "--grace", "0s")
    assert code == 0
    # The kept versions that were compressed against removed ones are re-encoded:
    # three against their own earlier version, one against a look-alike tenant.
    assert json.loads(out)["objects_removed"] == 3
    assert json.loads(out)["objects_reencoded"] == 4
    code, out, _ = run(repo, "--json", "gc", "--grace", "0s")
    assert json.loads(out)["objects_removed"] == 0
    code, out, _ = run(repo, "--json", "verify")
    assert code == 0 and json.loads(out)["objects_stored"] == 7
    assert json.loads(run(repo, "--json", "stats")[1])["objects_stored"] == 7
    code, out, _ = run(repo, "--json", "import", str(bundle))
    assert json.loads(out)["manifests"] == 1
    assert run(repo, "verify")[0] == 0
    other = s3_env.rsplit("/", 1)[0] + "/copy"
    run(other, "init")
    assert json.loads(run(other, "--json", "import", str(bundle))[1])["objects"] == 10
    assert run(other, "verify", "--quick")[0] == 0


def test_damage_on_s3_is_found(s3_env: str) -> None:
    prefix = "packs/"
    run(s3_env, "init")
    run(s3_env, "snapshot", str(ROUND1))
    backend = S3Backend(s3_env)
    key = next(info.key for info in backend.list(prefix))
    backend.put(key, backend.get(key)[:-2], overwrite=True)
    code, out, _ = run(s3_env, "--json", "verify")
    assert code == 3
    assert json.loads(out)["findings"][0]["kind"] == "corrupt-object"


def test_verify_export_and_restore_read_in_parallel_on_s3(
    s3_env: str, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Repository.init(backend_for(s3_env))
    expected = history(repo, rounds=6, count=60)
    latest = list(expected)[-1]
    stored = [info.key for info in repo.backend.list(PACK_PREFIX)]
    watched = f"/{PACK_PREFIX}"
    with faulty_proxy(s3_endpoint, every=0) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)

        # Each step's reads must meet at the proxy: two in flight at once.
        proxy.reset(rendezvous=watched)
        code, out, _ = run(s3_env, "--json", "verify")
        assert code == 0 and proxy.met
        checked = json.loads(out)["objects_stored"]
        verify_gets = proxy.gets(watched)

        proxy.reset(rendezvous=watched)
        bundle = tmp_path / "all.casbak"
        code, out, _ = run(s3_env, "--json", "export", "--all", "-o", str(bundle))
        assert code == 0 and proxy.met
        assert json.loads(out)["objects"] == checked
        export_gets = proxy.gets(watched)

        proxy.reset(rendezvous=watched)
        out_dir = tmp_path / "restored"
        assert run(s3_env, "restore", latest, "--output", str(out_dir))[0] == 0
        assert proxy.met
        restore_gets = proxy.gets(watched)
    restored = {path.stem: json.loads(path.read_text()) for path in out_dir.iterdir()}
    assert restored == expected[latest]
    # Reads go by pack: as many requests as packs, not as objects.
    assert checked > 10 * len(stored)
    assert sorted(verify_gets) == sorted(set(verify_gets))
    assert len(verify_gets) == len(export_gets) == len(stored)
    assert not any("bytes=" in line for line in verify_gets)  # whole, so each pack is hashed
    assert all("bytes=" in line for line in export_gets + restore_gets)
    assert 2 <= len(restore_gets) <= len(stored)
    assert len({line.split()[1] for line in restore_gets}) == len(restore_gets)
    copy = tmp_path / "copy"
    assert run(copy, "init")[0] == 0
    assert run(copy, "import", str(bundle))[0] == 0
    assert verify_repository(Repository.open(backend_for(copy))).ok


def test_locks_hold_on_s3(s3_env: str) -> None:
    repo = Repository.init(backend_for(s3_env))
    with repo.locks.shared("snapshot", 0), pytest.raises(RepositoryLocked):
        repo.locks.exclusive("gc", 0.2)
    with repo.locks.exclusive("gc", 0), pytest.raises(RepositoryLocked):
        repo.locks.shared("snapshot", 0.2)
    assert list(repo.backend.list("locks/")) == []


def test_throttling_and_server_errors_are_retried(
    s3_env: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(s3_env, "init")
    with faulty_proxy(s3_endpoint, every=3) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        code, _, err = run(s3_env, "--json", "snapshot", str(ROUND1))
        assert code == 0, err
        assert run(s3_env, "verify")[0] == 0
        assert run(s3_env, "gc", "--grace", "0s")[0] == 0
    assert proxy.injected > 10
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    repo = Repository.open(backend_for(s3_env))
    assert verify_repository(repo).ok
    assert len(restore_documents(repo, "latest")[1]) == 6


def test_permanent_errors_fail_clearly(s3_endpoint: str, s3_env: str) -> None:
    missing = "s3://no-such-bucket-casbak/x"
    code, _, err = run(missing, "init")
    assert code == 1
    assert "no such bucket" in err.lower() or "NoSuchBucket" in err
    with pytest.raises(UsageError):
        parse_location("s3:///nothing")
    assert parse_location("s3://b/a/b/") == ("b", "a/b")
    assert S3Backend("s3://b").describe() == "s3://b"


def test_missing_boto3_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(UsageError, match=r"pip install 'casbak\[s3\]'"):
        S3Backend("s3://bucket/prefix")


def test_backend_errors_carry_no_boto_types(s3_env: str) -> None:
    backend = S3Backend(s3_env)
    with pytest.raises(BackendError):
        S3Backend("s3://no-such-bucket-casbak").put("config", b"x")
    assert backend.stat("config") is None
