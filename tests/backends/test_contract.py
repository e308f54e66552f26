"""The backend contract, run against every backend."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from casbak.backends.base import Backend, validate_key
from casbak.backends.local import LocalBackend
from casbak.backends.memory import MemoryBackend
from casbak.backends.prefixed import PrefixedBackend
from casbak.errors import AlreadyExists, BackendError, InvalidKey, ObjectMissing


@pytest.fixture(params=["memory", "local", "s3", "prefixed"])
def backend(request: Any, tmp_path: Path) -> Backend:
    if request.param == "memory":
        return MemoryBackend()
    if request.param == "prefixed":
        # A folder of a local store, with a neighbour outside it that it must never show.
        outer = LocalBackend(tmp_path / "store")
        outer.put("k", b"outside")
        outer.put("a/b", b"outside")
        return PrefixedBackend(outer, "encrypted/")
    if request.param == "s3":
        from casbak.backends.s3 import S3Backend

        return S3Backend(request.getfixturevalue("s3_env"))
    return LocalBackend(tmp_path / "store")


def test_put_get_round_trip(backend: Backend) -> None:
    backend.put("objects/ab/abc", b"hello")
    backend.sync()
    assert backend.get("objects/ab/abc") == b"hello"


def test_put_existing_raises_without_overwrite(backend: Backend) -> None:
    backend.put("config", b"one")
    with pytest.raises(AlreadyExists):
        backend.put("config", b"two")
    assert backend.get("config") == b"one"
    backend.put("config", b"two", overwrite=True)
    assert backend.get("config") == b"two"


def test_get_range_reads_part_of_a_value(backend: Backend) -> None:
    backend.put("packs/ab/p", b"0123456789")
    assert backend.get_range("packs/ab/p", 2, 3) == b"234"
    assert backend.get_range("packs/ab/p", 0, 10) == b"0123456789"
    assert backend.get_range("packs/ab/p", 9, 1) == b"9"
    # Past the end: fewer bytes, or none, so a reader can tell a value cut short.
    assert backend.get_range("packs/ab/p", 8, 5) == b"89"
    assert backend.get_range("packs/ab/p", 10, 4) == b""
    assert backend.get_range("packs/ab/p", 50, 4) == b""
    assert backend.get_range("packs/ab/p", 3, 0) == b""
    backend.put("empty", b"")
    assert backend.get_range("empty", 0, 4) == b""
    with pytest.raises(ObjectMissing):
        backend.get_range("nope", 0, 4)
    with pytest.raises(ObjectMissing):
        backend.get_range("nope", 0, 0)
    with pytest.raises(BackendError, match="invalid byte range"):
        backend.get_range("packs/ab/p", -1, 4)
    with pytest.raises(BackendError, match="invalid byte range"):
        backend.get_range("packs/ab/p", 0, -4)


def test_missing_keys(backend: Backend) -> None:
    with pytest.raises(ObjectMissing):
        backend.get("nope")
    with pytest.raises(ObjectMissing):
        backend.delete("nope")
    with pytest.raises(ObjectMissing):
        backend.touch("nope")
    assert backend.stat("nope") is None


def test_stat_reports_size_and_mtime(backend: Backend) -> None:
    backend.put("a/b", b"12345")
    info = backend.stat("a/b")
    assert info is not None
    assert info.key == "a/b"
    assert info.size == 5
    assert info.mtime > 0


def test_list_prefix_sorted_and_recursive(backend: Backend) -> None:
    for key in ["objects/cd/2", "objects/ab/1", "manifests/m", "config", "objects/ab/0"]:
        backend.put(key, key.encode())
    assert [i.key for i in backend.list("objects/")] == [
        "objects/ab/0",
        "objects/ab/1",
        "objects/cd/2",
    ]
    assert [i.key for i in backend.list("")] == sorted(
        ["objects/cd/2", "objects/ab/1", "manifests/m", "config", "objects/ab/0"]
    )
    assert list(backend.list("missing/")) == []
    for prefix in ("objects/", "", "missing/"):
        assert list(backend.list_names(prefix)) == [i.key for i in backend.list(prefix)]


def test_delete_removes(backend: Backend) -> None:
    backend.put("k", b"v")
    backend.delete("k")
    backend.sync()
    assert backend.stat("k") is None


def test_touch_refreshes_mtime(backend: Backend) -> None:
    backend.put("k", b"v")
    info = backend.stat("k")
    assert info is not None
    if isinstance(backend, LocalBackend):
        os.utime(backend.root / "k", (1000, 1000))
        floor = 1000.0
    elif isinstance(backend, PrefixedBackend):
        assert isinstance(backend.inner, LocalBackend)
        os.utime(backend.inner.root / "encrypted" / "k", (1000, 1000))
        floor = 1000.0
    elif isinstance(backend, MemoryBackend):
        backend._items["k"] = (b"v", 1000.0)
        floor = 1000.0
    else:
        time.sleep(1.1)  # S3 times have one-second resolution
        floor = info.mtime
    backend.touch("k")
    after = backend.stat("k")
    assert after is not None
    assert after.mtime > floor
    assert abs(after.mtime - backend.now()) < 5


@pytest.mark.parametrize(
    "key", ["", "/abs", "../up", "a/../b", "a//b", ".hidden", "a/.tmp-x", "a/", "sp ace", "é"]
)
def test_unsafe_keys_are_refused(backend: Backend, key: str) -> None:
    with pytest.raises(InvalidKey):
        backend.put(key, b"x")
    with pytest.raises(InvalidKey):
        backend.get(key)
    with pytest.raises(InvalidKey):
        backend.get_range(key, 0, 1)


def test_validate_key_accepts_normal_keys() -> None:
    assert validate_key("manifests/2025-11-17T10-30-00_op_t_ab.json")


def test_invalid_prefix(backend: Backend) -> None:
    with pytest.raises(InvalidKey):
        list(backend.list("objects"))
    with pytest.raises(InvalidKey):
        list(backend.list("../"))


def test_describe(backend: Backend) -> None:
    assert backend.describe()


def test_s3_get_range_from_a_server_that_ignores_range(
    s3_env: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from casbak.backends.s3 import S3Backend
    from tests.s3server import faulty_proxy

    with faulty_proxy(s3_endpoint, every=0) as proxy:
        proxy.ignore_range = True
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        backend = S3Backend(s3_env)
        backend.put("packs/ab/p", b"0123456789")
        assert backend.get_range("packs/ab/p", 2, 3) == b"234"
        assert backend.get_range("packs/ab/p", 8, 5) == b"89"
        assert backend.get_range("packs/ab/p", 12, 5) == b""
        assert proxy.gets("/packs/ab/p")  # the reads went through the proxy


# Local-only properties.


def test_local_files_0600_and_folders_0700_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        backend = LocalBackend(tmp_path / "store")
        backend.put("objects/ab/x", b"secret")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "store/objects/ab/x").stat().st_mode) == 0o600
    for folder in ["store", "store/objects", "store/objects/ab"]:
        assert stat.S_IMODE((tmp_path / folder).stat().st_mode) == 0o700


def test_local_leaves_no_temp_files(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s")
    backend.put("a/b", b"1")
    with pytest.raises(AlreadyExists):
        backend.put("a/b", b"2")
    assert sorted(p.name for p in (tmp_path / "s/a").iterdir()) == ["b"]


def test_local_list_skips_temp_files_and_symlinks(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s")
    backend.put("a/b", b"1")
    (tmp_path / "s/a/.tmp-123").write_bytes(b"partial")
    outside = tmp_path / "outside"
    outside.write_bytes(b"x")
    (tmp_path / "s/a/link").symlink_to(outside)
    assert [i.key for i in backend.list("a/")] == ["a/b"]


def test_local_does_not_follow_symlinks_on_read(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s")
    backend.put("a/b", b"1")
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    (tmp_path / "s/a/link").symlink_to(outside)
    with pytest.raises(BackendError, match="symbolic link"):
        backend.get("a/link")
    assert backend.stat("a/link") is None


def test_local_write_failure_is_clear_and_leaves_nothing(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s")
    backend.put("a/b", b"1")
    os.chmod(tmp_path / "s/a", 0o500)
    try:
        if os.geteuid() == 0:
            pytest.skip("root ignores folder permissions")
        with pytest.raises(BackendError, match="permission denied"):
            backend.put("a/c", b"2")
    finally:
        os.chmod(tmp_path / "s/a", 0o700)


def test_local_folder_in_place_of_file(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s/a").write_bytes(b"file where a folder should be")
    backend = LocalBackend(tmp_path / "s")
    with pytest.raises(BackendError):
        backend.put("a/b", b"1")


def test_a_prefixed_backend_shows_only_its_folder_under_its_own_names(tmp_path: Path) -> None:
    outer = LocalBackend(tmp_path / "store")
    outer.put("config", b"plain")
    outer.put("packs/ab/p", b"plain pack")
    inner = PrefixedBackend(outer, "encrypted/")
    inner.put("config", b"sealed")
    inner.put("packs/cd/q", b"sealed pack")
    assert outer.get("encrypted/config") == b"sealed"
    assert inner.get("config") == b"sealed"
    assert [i.key for i in inner.list("")] == ["config", "packs/cd/q"]
    assert list(inner.list_names("packs/")) == ["packs/cd/q"]
    with pytest.raises(ObjectMissing) as missing:
        inner.get("packs/ab/p")
    assert missing.value.key == "packs/ab/p"  # callers compare the key they asked for
    with pytest.raises(AlreadyExists) as exists:
        inner.put("config", b"again")
    assert exists.value.key == "config"
    assert inner.describe() == f"{tmp_path / 'store'}/encrypted"
    # A stray temporary file is reported by the folder that holds it, and only there.
    for folder in (tmp_path / "store", tmp_path / "store" / "encrypted"):
        stray = folder / ".tmp-0123456789abcdef"
        stray.write_bytes(b"x")
        os.utime(stray, (1000, 1000))
    assert [i.location for i in inner.audit()] == [
        str(tmp_path / "store" / "encrypted" / ".tmp-0123456789abcdef")
    ]
    with pytest.raises(InvalidKey):
        PrefixedBackend(outer, "")


def test_local_prune_removes_empty_folders_and_temp_files_only(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "store")
    for key in ("packs/ab/p", "packs/cd/q", "index/i", "keep/note"):
        backend.put(key, b"x")
    for key in ("packs/ab/p", "packs/cd/q", "index/i"):
        backend.delete(key)
    backend.sync()
    temp = tmp_path / "store" / "index" / ".tmp-0123456789abcdef"
    temp.write_bytes(b"a write that never finished")
    other = tmp_path / "store" / "packs" / "cd" / ".hidden"
    other.write_bytes(b"not casbak's")
    link_target = tmp_path / "elsewhere"
    (link_target / "sub").mkdir(parents=True)
    (tmp_path / "store" / "linked").symlink_to(link_target)

    folders = ["packs/ab/", "packs/cd/", "packs/", "index/", "keep/", "missing/", "linked/sub/"]
    assert backend.prune(folders, temporary=False) == 1  # packs/ab/ alone was empty
    assert temp.exists()
    assert backend.prune(folders) == 1  # index/, once its temporary file went
    backend.sync()
    assert not temp.exists()
    assert other.exists()  # not a temporary file of casbak's: packs/cd/ and packs/ stay
    assert sorted(os.listdir(tmp_path / "store")) == ["keep", "linked", "packs"]
    assert (link_target / "sub").is_dir()  # never through a link
