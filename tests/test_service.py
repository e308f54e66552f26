from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from casbak.canonical import decode_canonical
from casbak.errors import BackendError, InputError, NotFoundError
from casbak.repository import Repository
from casbak.restorefiles import write_restored
from casbak.service import (
    list_snapshots,
    render_restored,
    repository_stats,
    restore_documents,
    show_snapshot,
    take_snapshot,
)
from casbak.sources import documents_from_values, read_sources
from casbak.tenantdocs import split_tenants, tenant_id_of
from tests.conftest import DESCOPE, FakeClock


def test_snapshot_restore_round_trip(
    memory_repo: Repository, clock: FakeClock, sample_tenants: list[dict[str, Any]]
) -> None:
    docs = documents_from_values(sample_tenants, "samples")
    result = take_snapshot(memory_repo, docs, operation="sync-apply", clock=clock)
    assert result.snapshot.target_id == "all-tenants"
    assert result.new_objects == len(sample_tenants)
    _, restored = restore_documents(memory_repo, result.snapshot.id)
    by_id = {tenant_id_of(t): t for t in sample_tenants}
    assert {k: decode_canonical(v) for k, v in restored.items()} == by_id


def test_second_round_dedups(
    memory_repo: Repository, clock: FakeClock, sample_tenants: list[dict[str, Any]]
) -> None:
    take_snapshot(memory_repo, documents_from_values(sample_tenants, "s"), clock=clock)
    sample_tenants[0]["name"] = "Renamed"
    again = take_snapshot(memory_repo, documents_from_values(sample_tenants, "s"), clock=clock)
    assert again.new_objects == 1
    assert again.reused_objects == len(sample_tenants) - 1
    stats = repository_stats(memory_repo)
    assert stats.snapshots == 2
    assert stats.objects_stored == len(sample_tenants) + 1
    assert stats.dedup_ratio > 1.5
    assert stats.compression_ratio > 1
    assert stats.stored_bytes == stats.stored_object_bytes + stats.stored_manifest_bytes


def test_identical_documents_under_two_ids_are_stored_once(memory_repo: Repository) -> None:
    docs = documents_from_values([{"tenant": {"id": "a"}}, {"tenant": {"id": "b"}}], "x")
    docs = documents_from_values([{"id": "a", "x": 1}, {"id": "b", "x": 1}], "x")
    result = take_snapshot(memory_repo, docs)
    assert result.new_objects == 2
    same = documents_from_values([{"tenant": {"id": "a"}, "s": 1}], "x")
    assert take_snapshot(memory_repo, same).snapshot.target_id == "a"


def test_default_target_and_labels(memory_repo: Repository) -> None:
    one = documents_from_values([{"id": "solo"}], "x")
    assert take_snapshot(memory_repo, one).snapshot.target_id == "solo"
    with pytest.raises(InputError, match="operation"):
        take_snapshot(memory_repo, one, operation="")
    with pytest.raises(InputError, match="tag"):
        take_snapshot(memory_repo, one, tags=["bad\nTag"])
    assert len(memory_repo.snapshots()) == 1


def test_list_filters(memory_repo: Repository, clock: FakeClock) -> None:
    docs = documents_from_values([{"id": "a"}], "x")
    take_snapshot(memory_repo, docs, operation="tenant-update", clock=clock, tags=["nightly"])
    take_snapshot(memory_repo, docs, operation="tenant-delete", clock=clock)
    assert len(list_snapshots(memory_repo)) == 2
    assert [s.operation for s in list_snapshots(memory_repo, operation="tenant-delete")] == [
        "tenant-delete"
    ]
    assert len(list_snapshots(memory_repo, tag="nightly")) == 1
    assert list_snapshots(memory_repo, target_id="b") == []
    detail = show_snapshot(memory_repo, "latest")
    assert detail.tenants[0].tenant_id == "a"


def test_restore_selected_and_unknown_tenant(memory_repo: Repository) -> None:
    docs = documents_from_values([{"id": "a", "v": 1}, {"id": "b", "v": 2}], "x")
    take_snapshot(memory_repo, docs)
    _, chosen = restore_documents(memory_repo, "latest", ["b"])
    assert list(chosen) == ["b"]
    with pytest.raises(NotFoundError, match="'zz'"):
        restore_documents(memory_repo, "latest", ["zz"])
    _, both = restore_documents(memory_repo, "latest")
    combined = json.loads(render_restored(both))
    assert [t["id"] for t in combined["tenants"]] == ["a", "b"]
    assert json.loads(render_restored(chosen)) == {"id": "b", "v": 2}


def test_write_restored_never_overwrites_without_force(tmp_path: Path) -> None:
    docs = {"a": b'{"id":"a"}', "../b": b'{"id":"../b"}'}
    paths = write_restored(docs, tmp_path / "out", force=False)
    assert all(p.parent == tmp_path / "out" for p in paths)
    (tmp_path / "out" / "a.json").write_text("mine")
    with pytest.raises(InputError, match="exists"):
        write_restored(docs, tmp_path / "out", force=False)
    assert (tmp_path / "out" / "a.json").read_text() == "mine"
    write_restored(docs, tmp_path / "out", force=True)
    assert json.loads((tmp_path / "out" / "a.json").read_text()) == {"id": "a"}
    (tmp_path / "plain-file").write_text("x")
    with pytest.raises(BackendError, match="cannot create"):
        write_restored(docs, tmp_path / "plain-file" / "out", force=False)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_read_sources_shapes(tmp_path: Path) -> None:
    load_all = read_sources([str(DESCOPE / "load_all_response.json")])
    assert [d.tenant_id for d in load_all] == ["T2qW8rZt1mXc4VbN7kLp0aSd3Fg", "acme-corp-emea"]
    composite = read_sources([str(DESCOPE / "large_tenant_composite.json")])
    assert composite[0].tenant_id == "acme-corp-emea"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "one.json").write_text('[{"id": "1"}, {"id": "2"}]')
    (tmp_path / "d" / "two.json").write_text('{"id": "3"}')
    (tmp_path / "d" / "notes.txt").write_text("ignored")
    (tmp_path / "d" / ".hidden.json").write_text("ignored")
    assert [d.tenant_id for d in read_sources([str(tmp_path / "d")])] == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('"just a string"', "a tenant must be a JSON object, got a string"),
        ("[1]", "[0] a tenant must be a JSON object, got a number"),
        ("[null]", "got null"),
        ("[true]", "got a boolean"),
        ('{"tenants": [[]]}', "tenants[0] a tenant must be a JSON object, got an array"),
        ('{"name": "no id"}', "tenant has no string 'id'"),
        ('{"id": 42}', "'id' is a number (42); it must be a string"),
        ('{"id": ""}', "tenant id must be 1 to 256"),
        ('[{"id": "a"}, {"id": "a"}]', "tenant id 'a' appears twice"),
        ("[]", "empty source"),
        ('{"tenants": []}', "empty source"),
    ],
)
def test_bad_tenants(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "in.json"
    path.write_text(content)
    with pytest.raises(InputError, match=re.escape(message)):
        read_sources([str(path)])


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_sources([str(tmp_path / "missing.json")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no"):
        read_sources([str(tmp_path / "empty")])
    with pytest.raises(InputError, match="no source"):
        read_sources([])
    with pytest.raises(InputError, match="stdin"):
        read_sources(["-"], None)
    (tmp_path / "a.json").write_text('{"id": "x"}')
    with pytest.raises(InputError, match="appears twice"):
        read_sources([str(tmp_path / "a.json"), str(tmp_path / "a.json")])


def test_unreadable_file(tmp_path: Path) -> None:
    folder = tmp_path / "f.json"
    folder.mkdir()
    (folder / "x.txt").write_text("")
    with pytest.raises(InputError, match="holds no"):
        read_sources([str(folder)])
    fifo_like = tmp_path / "dir-as-file"
    fifo_like.mkdir()
    from casbak.sources import _read_file

    with pytest.raises(InputError, match="cannot read"):
        _read_file(fifo_like)


def test_values_api_checks() -> None:
    with pytest.raises(InputError, match="must be a mapping"):
        documents_from_values([["not", "a", "mapping"]], "x")  # type: ignore[list-item]
    with pytest.raises(InputError, match="no string 'id'"):
        documents_from_values([{"name": "x"}], "x")
    assert split_tenants({"id": "a", "tenants": []}, "x")[0][0] == "a"
