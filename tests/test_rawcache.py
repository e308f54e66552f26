"""The raw-bytes cache: unchanged files skip decoding; it can only save work, never lose any."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

import casbak.sources as sources_module
from casbak.backends.local import LocalBackend
from casbak.maintenance import collect_garbage
from casbak.rawcache import RawCache, cache_folder
from casbak.repository import Repository
from casbak.service import LONE_FILE_WITHOUT_CACHE, restore_documents, snapshot_sources
from tests.conftest import FakeClock


def write_tenants(folder: Path, versions: dict[str, int]) -> None:
    folder.mkdir(exist_ok=True)
    for tenant_id, version in versions.items():
        (folder / f"{tenant_id}.json").write_text(json.dumps({"id": tenant_id, "v": version}))


def restored(repo: Repository, snapshot_id: str) -> dict[str, object]:
    return {k: json.loads(v) for k, v in restore_documents(repo, snapshot_id)[1].items()}


def spy_on_decoding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sources decoded from here on, in order."""
    decoded: list[str] = []
    real = sources_module.decode_json
    monkeypatch.setattr(
        sources_module,
        "decode_json",
        lambda data, where: decoded.append(where) or real(data, where),
    )
    return decoded


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.init(LocalBackend(tmp_path / "repo"))


def test_unchanged_files_are_not_decoded_again(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "export"
    write_tenants(folder, {"a": 1, "b": 1, "c": 1})
    snapshot_sources(repo, [str(folder)], clock=FakeClock())
    decoded = spy_on_decoding(monkeypatch)
    write_tenants(folder, {"b": 2})
    second = snapshot_sources(repo, [str(folder)], clock=FakeClock())
    assert decoded == [str(folder / "b.json")]
    assert restored(repo, second.snapshot.id) == {
        "a": {"id": "a", "v": 1},
        "b": {"id": "b", "v": 2},
        "c": {"id": "c", "v": 1},
    }
    assert second.new_objects == 1 and second.logical_bytes > 0


def test_a_cached_document_that_gc_removed_is_read_again(repo: Repository, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    write_tenants(folder, {"a": 1})
    first = snapshot_sources(repo, [str(folder)], clock=FakeClock())
    repo.delete_snapshot(repo.resolve(first.snapshot.id))
    collect_garbage(repo, grace=timedelta(0))
    assert len(repo.objects.index()) == 0  # type: ignore[union-attr]
    second = snapshot_sources(repo, [str(folder)], clock=FakeClock())
    assert second.new_objects == 1
    assert restored(repo, second.snapshot.id) == {"a": {"id": "a", "v": 1}}


def test_a_damaged_cache_file_is_ignored(repo: Repository, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    write_tenants(folder, {"a": 1, "b": 1})
    snapshot_sources(repo, [str(folder)], clock=FakeClock())
    path = cache_folder() / f"{repo.config.repository_id}.raw"
    data = bytearray(path.read_bytes())
    data[5] ^= 0xFF
    path.write_bytes(bytes(data))
    assert RawCache(path).lookup((folder / "a.json").read_bytes())[1] is None
    path.write_bytes(b"x")
    write_tenants(folder, {"a": 2})
    result = snapshot_sources(repo, [str(folder)], clock=FakeClock())
    assert restored(repo, result.snapshot.id)["a"] == {"id": "a", "v": 2}


def test_no_cache_and_stdin_decode_everything(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "export"
    write_tenants(folder, {"a": 1})
    snapshot_sources(repo, [str(folder)], clock=FakeClock())
    calls = spy_on_decoding(monkeypatch)
    snapshot_sources(repo, [str(folder)], use_cache=False, clock=FakeClock())
    assert calls == [str(folder / "a.json")]


def test_an_unwritable_cache_folder_costs_only_speed(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    monkeypatch.setenv("CASBAK_CACHE_DIR", str(blocked / "sub"))
    folder = tmp_path / "export"
    write_tenants(folder, {"a": 1})
    result = snapshot_sources(repo, [str(folder)], clock=FakeClock())
    assert result.new_objects == 1


def test_cache_folder_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CASBAK_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_folder() == tmp_path / "casbak"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_folder() == Path(os.path.expanduser("~")) / ".cache" / "casbak"


def test_a_one_tenant_snapshot_keeps_the_cache_of_the_full_export(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "export"
    write_tenants(folder, {"a": 1, "b": 1, "c": 1})
    snapshot_sources(repo, [str(folder)], clock=FakeClock())
    single = tmp_path / "single"
    write_tenants(single, {"z": 1})
    snapshot_sources(repo, [str(single / "z.json")], clock=FakeClock())
    decoded = spy_on_decoding(monkeypatch)
    snapshot_sources(repo, [str(folder)], clock=FakeClock())
    assert decoded == []


def test_a_lone_small_file_leaves_the_cache_alone_and_a_large_one_uses_it(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("CASBAK_CACHE_DIR", str(cache_dir))
    single = tmp_path / "single"
    write_tenants(single, {"z": 1})
    snapshot_sources(repo, [str(single / "z.json")], clock=FakeClock())
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []
    large = tmp_path / "large.json"
    padding = "x" * (LONE_FILE_WITHOUT_CACHE + 1)
    large.write_text(json.dumps({"id": "big", "padding": padding}))
    snapshot_sources(repo, [str(large)], clock=FakeClock())
    decoded = spy_on_decoding(monkeypatch)
    snapshot_sources(repo, [str(large)], clock=FakeClock())
    assert decoded == []


def test_the_cache_keeps_twice_each_sources_latest_files_not_every_file_ever_read(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from casbak.rawcache import KEEP_RUNS

    folder = tmp_path / "export"
    tenants = {f"t{number}": 1 for number in range(10)}
    for round_number in range(1, 16):
        tenants[f"t{round_number % 10}"] += 1  # one edited file a round: a new entry
        write_tenants(folder, tenants)
        snapshot_sources(repo, [str(folder)], clock=FakeClock())
    cache = RawCache.for_repository(repo.config.repository_id)
    assert len(cache._known) == KEEP_RUNS * len(tenants)
    assert list(cache._sources.values()) == [len(tenants)]
    # The newest entries are the ones kept: the last export decodes nothing again.
    decoded = spy_on_decoding(monkeypatch)
    snapshot_sources(repo, [str(folder)], clock=FakeClock())
    assert decoded == []


def test_exports_of_several_targets_in_turn_all_stay_cached(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = [tmp_path / name for name in ("a", "b", "c", "d")]
    for folder in folders:
        write_tenants(folder, {f"{folder.name}{number}": 1 for number in range(6)})
    for folder in folders:
        snapshot_sources(repo, [str(folder)], target_id=folder.name, clock=FakeClock())
    decoded = spy_on_decoding(monkeypatch)
    for folder in folders:
        snapshot_sources(repo, [str(folder)], target_id=folder.name, clock=FakeClock())
    assert decoded == []


def test_a_cache_file_from_before_it_kept_its_sources_is_used_and_then_shrinks(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import blake3
    import msgspec

    from casbak.rawcache import KEEP_RUNS, CachedTenant

    folder = tmp_path / "export"
    write_tenants(folder, {"a": 1, "b": 1})
    snapshot_sources(repo, [str(folder)], clock=FakeClock())
    cache = RawCache.for_repository(repo.config.repository_id)
    assert cache.path is not None
    earlier: dict[bytes, list[CachedTenant]] = dict(cache._known)
    grown = {bytes([number]) * 32: [CachedTenant("x", bytes(32), 1)] for number in range(20)}
    data = msgspec.msgpack.encode({"version": 1, "files": {**earlier, **grown}})
    cache.path.write_bytes(data + blake3.blake3(data).digest())
    again = RawCache.for_repository(repo.config.repository_id)
    assert again._known == {**earlier, **grown} and again._sources == {}
    decoded = spy_on_decoding(monkeypatch)
    snapshot_sources(repo, [str(folder)], clock=FakeClock())
    assert decoded == []
    assert len(RawCache.for_repository(repo.config.repository_id)._known) == KEEP_RUNS * 2
