"""Security review: nothing escapes the repository, nothing leaks secrets."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from casbak.backends.local import LocalBackend
from casbak.errors import BackendError, CasbakError, InputError, NotFoundError
from casbak.layout import PACK_PREFIX
from casbak.repository import Repository
from casbak.service import take_snapshot
from casbak.sources import documents_from_values, read_sources
from tests.conftest import EXAMPLES
from tests.test_cli import run

SECRET = "S3CR3T-client-secret-value-9f8e7d"


def test_planted_symlink_folders_are_not_followed(tmp_path: Path) -> None:
    repo = Repository.init(LocalBackend(tmp_path / "repo"))
    docs = documents_from_values([{"id": "a", "v": 1}], "t")
    take_snapshot(repo, docs)
    digest = docs[0].digest
    pack = next(iter(repo.backend.list(PACK_PREFIX))).key
    shard = tmp_path / "repo" / pack.rsplit("/", 1)[0]
    outside = tmp_path / "outside"
    shard.rename(outside)
    shard.symlink_to(outside)
    fresh = Repository.open(LocalBackend(tmp_path / "repo"))
    with pytest.raises(BackendError, match="symbolic link"):
        fresh.objects.read(digest)
    assert list(fresh.backend.list(PACK_PREFIX)) == []
    manifests = tmp_path / "repo" / "manifests"
    manifests.rename(tmp_path / "elsewhere")
    manifests.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(BackendError, match="symbolic link"):
        take_snapshot(
            Repository.open(LocalBackend(tmp_path / "repo")),
            documents_from_values([{"id": "b"}], "t"),
        )
    _, out, _ = run(tmp_path / "repo", "--json", "verify")
    kinds = {f["kind"] for f in json.loads(out)["findings"]}
    assert "symlink" in kinds


def test_repository_files_0600_and_folders_0700_under_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        run(tmp_path / "repo", "init")
        run(tmp_path / "repo", "snapshot", str(EXAMPLES / "tenants" / "round-1"))
    finally:
        os.umask(old)
    for path in (tmp_path / "repo").rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert stat.S_IMODE((tmp_path / "repo").stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "reference",
    [
        "../../etc/passwd",
        "/etc/passwd.json",
        "../config",
        "latest:../../x",
        "manifests/../config",
        "....",
        "%2e%2e",
    ],
)
def test_snapshot_references_never_reach_outside(tmp_path: Path, reference: str) -> None:
    repo = Repository.init(LocalBackend(tmp_path / "repo"))
    take_snapshot(repo, documents_from_values([{"id": "a"}], "t"))
    with pytest.raises((NotFoundError, InputError)):
        repo.resolve(reference)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ('{"id": "t1", "sso": {"clientSecret": "%s", "x": NaN}}', "malformed JSON"),
        ('{"id": "t1", "clientSecret": "%s", "clientSecret": "%s"}', "duplicate key"),
        ('{"id": "t1", "clientSecret": "%s", "deep": ' + "[" * 70 + "]" * 70 + "}", "nesting"),
        ('{"id": "t1", "clientSecret": "%s", "n": 1e999}', "out of range"),
        ('{"id": "t1", "clientSecret": "%s" "oops"}', "malformed JSON"),
        ('{"name": "%s"}', "no string 'id'"),
        ('[{"id": "t1", "k": "%s"}, {"id": "t1", "k": "%s"}]', "appears twice"),
        ('{"id": "t1", "clientSecret": "%s\\ud800"}', "lone surrogate"),
    ],
)
def test_secrets_never_appear_in_errors(tmp_path: Path, document: str, expected: str) -> None:
    source = tmp_path / "tenant.json"
    source.write_text(document.replace("%s", SECRET))
    with pytest.raises(CasbakError) as caught:
        read_sources([str(source)])
    assert expected in str(caught.value)
    assert SECRET not in str(caught.value)
    repo = tmp_path / "repo"
    run(repo, "init")
    code, out, err = run(repo, "snapshot", str(source))
    assert code == 1
    assert SECRET not in out + err


def test_secrets_never_appear_in_verify_or_lock_messages(tmp_path: Path) -> None:
    repo = Repository.init(LocalBackend(tmp_path / "repo"))
    docs = documents_from_values([{"id": "t1", "clientSecret": SECRET}], "t")
    take_snapshot(repo, docs)
    target = tmp_path / "repo" / next(iter(repo.backend.list(PACK_PREFIX))).key
    target.write_bytes(target.read_bytes()[:-3])
    code, out, err = run(tmp_path / "repo", "verify")
    assert code == 3
    assert SECRET not in out + err
    code, out, err = run(tmp_path / "repo", "--json", "verify")
    assert SECRET not in out + err
