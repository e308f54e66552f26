"""Export, import and bundle verification, including hostile bundles."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import msgspec
import pytest
import zstandard

from casbak.backends.local import LocalBackend
from casbak.bundle import HEADER_NAME, read_bundle
from casbak.errors import BundleError
from casbak.ids import hash_bytes
from casbak.repository import Repository
from casbak.service import restore_documents, take_snapshot
from casbak.sources import documents_from_values
from casbak.transfer import check_bundle, export_bundle, import_bundle, select_snapshots
from tests.conftest import FakeClock, tree_state
from tests.packed import drop_record, flip_inside
from tests.test_cli import ROUND1, ROUND2, run


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, list[str]]:
    """A repository with two rounds of the samples and a single-tenant snapshot."""
    path = tmp_path / "source"
    run(path, "init")
    ids = []
    for args in (
        [str(ROUND1), "--operation", "sync-apply"],
        [str(ROUND2), "--operation", "sync-apply"],
        [str(ROUND2 / "globex-us.json"), "--operation", "tenant-update"],
    ):
        ids.append(json.loads(run(path, "--json", "snapshot", *args)[1])["snapshot"]["id"])
    return path, ids


def fresh(tmp_path: Path, name: str = "dest") -> Path:
    path = tmp_path / name
    assert run(path, "init")[0] == 0
    return path


def all_restored(path: Path) -> dict[str, dict[str, bytes]]:
    repo = Repository.open(LocalBackend(path))
    return {s.id: restore_documents(repo, s.id)[1] for s in repo.snapshots()}


def test_round_trip_into_an_empty_repository(
    source: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, _ = source
    bundle = tmp_path / "all.casbak"
    code, out, _ = run(path, "--json", "export", "--all", "-o", str(bundle))
    assert code == 0
    exported = json.loads(out)
    assert exported["manifests"] == 3
    assert exported["objects"] == 10
    dest = fresh(tmp_path)
    code, out, _ = run(dest, "--json", "import", str(bundle))
    assert code == 0
    imported = json.loads(out)
    # Stored bytes: the destination packs the bundle's standalone frames its own way.
    assert imported.pop("bytes") > 0
    assert imported == {
        "manifests": 3,
        "manifests_skipped": 0,
        "objects": 10,
        "objects_skipped": 0,
        "objects_healed": 0,
    }
    assert all_restored(dest) == all_restored(path)
    assert run(dest, "verify")[0] == 0
    assert run(path, "verify")[0] == 0
    assert run(path, "verify", "--bundle", str(bundle))[0] == 0
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert names[0] == HEADER_NAME
    assert sum(n.startswith("manifests/") for n in names) == 3


def test_second_import_changes_nothing(source: tuple[Path, list[str]], tmp_path: Path) -> None:
    path, _ = source
    bundle = tmp_path / "b.casbak"
    run(path, "export", "--all", "-o", str(bundle))
    dest = fresh(tmp_path)
    run(dest, "import", str(bundle))
    before = {k: v[1] for k, v in tree_state(dest).items()}
    code, out, _ = run(dest, "--json", "import", str(bundle))
    assert code == 0
    result = json.loads(out)
    assert result["manifests"] == 0 and result["objects"] == 0
    assert result["objects_skipped"] == 10 and result["manifests_skipped"] == 3
    assert {k: v[1] for k, v in tree_state(dest).items()} == before


def test_partial_export_holds_only_what_it_needs(
    source: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, ids = source
    bundle = tmp_path / "globex.casbak"
    code, out, _ = run(path, "--json", "export", "--target", "globex-us", "-o", str(bundle))
    assert json.loads(out)["manifests"] == 1
    assert json.loads(out)["objects"] == 1
    with tarfile.open(bundle) as tar:
        objects = [n for n in tar.getnames() if n.startswith("objects/")]
    assert len(objects) == 1
    dest = fresh(tmp_path)
    run(dest, "import", str(bundle))
    assert list(all_restored(dest)) == [ids[2]]
    code, _, err = run(path, "export", "--target", "nobody", "-o", str(tmp_path / "x"))
    assert code == 1 and "nothing to export" in err
    assert run(path, "export", "-o", str(tmp_path / "x"))[0] == 2


def test_export_by_id_since_and_stdout(source: tuple[Path, list[str]], tmp_path: Path) -> None:
    path, ids = source
    code, _, err = run(path, "--json", "export", ids[0][:8], "-o", "-")
    assert code == 0
    assert json.loads(err)["manifests"] == 1
    dest = fresh(tmp_path)
    repo = Repository.open(LocalBackend(path))
    stream = io.BytesIO()
    export_bundle(repo, select_snapshots(repo, everything=True, since=None), stream)
    stream.seek(0)
    code, imported, _ = run(dest, "--json", "import", "-", input=stream.getvalue())
    assert code == 0
    assert json.loads(imported)["manifests"] == 3
    from datetime import UTC, datetime, timedelta

    future = FakeClock(datetime(2099, 1, 1, tzinfo=UTC))
    with pytest.raises(Exception, match="nothing to export"):
        select_snapshots(repo, everything=True, since=timedelta(days=1), clock=future)
    assert run(path, "export", "--all", "-o", str(tmp_path / "b"))[0] == 0
    assert run(path, "export", "--all", "-o", str(tmp_path / "b"))[0] == 1
    assert run(path, "export", "--all", "-o", str(tmp_path / "b"), "--force")[0] == 0


def test_healing_missing_and_corrupt_objects(
    source: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, ids = source
    bundle = tmp_path / "old.casbak"
    run(path, "export", "--all", "-o", str(bundle))
    repo = Repository.open(LocalBackend(path))
    entries = repo.resolve(ids[1]).manifest.entries
    drop_record(path, entries["acme-corp-emea"].object)
    flip_inside(path, entries["globex-us"].object)
    assert run(path, "verify")[0] == 3
    code, out, _ = run(path, "--json", "import", str(bundle))
    assert code == 0
    result = json.loads(out)
    # The missing object is no new object: a snapshot already here needs it.
    assert result["objects"] == 0
    assert result["objects_healed"] == 2
    assert run(path, "verify")[0] == 0


# Hostile bundles: each is refused and the repository stays byte-identical.


def _bundle_parts(source: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    repo = Repository.open(LocalBackend(source))
    stream = io.BytesIO()
    export_bundle(repo, select_snapshots(repo, everything=True), stream)
    stream.seek(0)
    parts = []
    with tarfile.open(fileobj=stream) as tar:
        for member in tar:
            handle = tar.extractfile(member)
            parts.append((member, handle.read() if handle else b""))
    return parts


def _write(parts: list[tuple[tarfile.TarInfo, bytes]], target: Path) -> Path:
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in parts:
            copy = tarfile.TarInfo(info.name)
            for field in ("size", "mode", "mtime", "type", "linkname"):
                setattr(copy, field, getattr(info, field))
            if copy.isreg():
                copy.size = len(data)
            tar.addfile(copy, io.BytesIO(data) if copy.isreg() else None)
    return target


def _member(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data)
    info.mode = 0o600
    return info, data


def _header(parts: list[tuple[tarfile.TarInfo, bytes]]) -> dict:  # type: ignore[type-arg]
    return json.loads(parts[0][1])


def _first_object(parts: list[tuple[tarfile.TarInfo, bytes]]) -> int:
    return next(i for i, (info, _) in enumerate(parts) if info.name.startswith("objects/"))


def _hostile(
    kind: str, parts: list[tuple[tarfile.TarInfo, bytes]]
) -> list[tuple[tarfile.TarInfo, bytes]] | bytes:
    first = _first_object(parts)
    if kind == "absolute path":
        return [*parts, _member("/etc/passwd", b"root")]
    if kind == "dot-dot path":
        return [*parts, _member("objects/../../escape", b"x")]
    if kind == "symlink":
        return [
            *parts[:first],
            _member(parts[first][0].name, kind=tarfile.SYMTYPE, link="/etc/passwd"),
            *parts[first + 1 :],
        ]
    if kind == "hard link":
        return [
            *parts[:first],
            _member(parts[first][0].name, kind=tarfile.LNKTYPE, link="casbak-bundle.json"),
            *parts[first + 1 :],
        ]
    if kind == "device":
        return [
            *parts[:first],
            _member(parts[first][0].name, kind=tarfile.CHRTYPE),
            *parts[first + 1 :],
        ]
    if kind == "wrong hash":
        info, data = parts[first]
        original = zstandard.ZstdDecompressor().decompress(data)
        forged = original.replace(b'"id":"', b'"id":"X', 1)[: len(original) - 1] + b"}"
        assert len(forged) == len(original)
        other = zstandard.ZstdCompressor().compress(forged)
        return [*parts[:first], (info, other), *parts[first + 1 :]]
    if kind == "object missing everywhere":
        header = _header(parts)
        header["objects"] -= 1
        header["object_bytes"] -= len(parts[first][1])
        return [(parts[0][0], json.dumps(header).encode()), *parts[1:first], *parts[first + 1 :]]
    if kind == "decompression bomb":
        info, _ = parts[first]
        bomb = zstandard.ZstdCompressor(write_content_size=False).compress(b" " * (8 << 20))
        return [*parts[:first], (info, bomb), *parts[first + 1 :]]
    if kind == "duplicate member":
        return [*parts, parts[first]]
    if kind == "duplicate manifest":
        return [*parts[:2], parts[1], *parts[2:]]
    if kind == "unknown version":
        header = _header(parts)
        header["version"] = 99
        return [(parts[0][0], json.dumps(header).encode()), *parts[1:]]
    if kind == "tampered manifest":
        info, data = parts[1]
        return [parts[0], (info, data.replace(b"sync-apply", b"sync-apply ")), *parts[2:]]
    raise AssertionError(kind)


HOSTILE = {
    "absolute path": "unexpected member '/etc/passwd'",
    "dot-dot path": "unexpected member 'objects/../../escape'",
    "symlink": "not a regular file",
    "hard link": "not a regular file",
    "device": "not a regular file",
    "wrong hash": "hashes to",
    "object missing everywhere": "which neither the bundle nor the repository has",
    "decompression bomb": "declares",
    "duplicate member": "duplicate member",
    "duplicate manifest": "duplicate member",
    "unknown version": "bundle version 99 is not supported",
    "tampered manifest": "not to its id",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_bundle_is_refused_and_changes_nothing(
    source: tuple[Path, list[str]], tmp_path: Path, kind: str
) -> None:
    path, _ = source
    crafted = _hostile(kind, _bundle_parts(path))
    bundle = _write(crafted, tmp_path / "hostile.casbak") if isinstance(crafted, list) else None
    dest = fresh(tmp_path)
    run(dest, "snapshot", str(ROUND1))
    before = tree_state(dest)
    code, _, err = run(dest, "import", str(bundle))
    assert code == 1, err
    assert HOSTILE[kind] in err
    assert "Traceback" not in err
    assert tree_state(dest) == before
    code, out, _ = run(dest, "--json", "verify", "--bundle", str(bundle))
    assert code == 3
    assert json.loads(out)["findings"][0]["kind"] == "bad-bundle"


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, "inside last member"])
def test_truncated_bundle(source: tuple[Path, list[str]], tmp_path: Path, cut: object) -> None:
    path, _ = source
    whole = tmp_path / "whole.casbak"
    run(path, "export", "--all", "-o", str(whole))
    data = whole.read_bytes()
    if isinstance(cut, float):
        end = int(len(data) * cut)
    else:
        with tarfile.open(whole) as tar:
            last = tar.getmembers()[-1]
        end = last.offset_data + last.size // 2
    truncated = tmp_path / "cut.casbak"
    truncated.write_bytes(data[:end])
    dest = fresh(tmp_path)
    before = tree_state(dest)
    code, _, err = run(dest, "import", str(truncated))
    assert code == 1
    assert "truncated" in err or "not a casbak bundle" in err
    assert tree_state(dest) == before


def test_truncated_at_member_boundary_is_caught_by_header(
    source: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, _ = source
    parts = _bundle_parts(path)
    bundle = _write(parts[:-2], tmp_path / "short.casbak")
    with pytest.raises(BundleError, match="truncated or altered: 8 of 10 objects"):
        check_bundle(lambda: bundle.open("rb"), None)
    manifests_only = _write(parts[:2], tmp_path / "m.casbak")
    with pytest.raises(BundleError, match="1 of 3 manifests"):
        check_bundle(lambda: manifests_only.open("rb"), None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a casbak bundle"),
        (b"just some text" * 100, "not a casbak bundle"),
        (b'{"tenants": []}', "not a casbak bundle"),
    ],
)
def test_non_bundle_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x"
    path.write_bytes(content)
    with pytest.raises(BundleError, match=message):
        list(read_bundle(path.open("rb")))


def test_tar_without_header_first(tmp_path: Path) -> None:
    bundle = _write([_member("objects/ab/" + "ab" * 32, b"x")], tmp_path / "t.casbak")
    with pytest.raises(BundleError, match=r"first member is not casbak-bundle\.json"):
        list(read_bundle(bundle.open("rb")))
    header = {
        "format": "casbak-bundle",
        "version": 1,
        "created": "2025-01-01T00:00:00Z",
        "manifests": [],
        "objects": 0,
        "object_bytes": 0,
        "extra": 1,
    }
    bad = _write([_member(HEADER_NAME, json.dumps(header).encode())], tmp_path / "h.casbak")
    with pytest.raises(BundleError, match="malformed"):
        list(read_bundle(bad.open("rb")))
    bad = _write([_member(HEADER_NAME, b"{not json")], tmp_path / "j.casbak")
    with pytest.raises(BundleError, match="not JSON"):
        list(read_bundle(bad.open("rb")))


def test_object_member_in_wrong_folder_or_unreferenced(
    tmp_path: Path, source: tuple[Path, list[str]]
) -> None:
    path, _ = source
    parts = _bundle_parts(path)
    first = _first_object(parts)
    info, data = parts[first]
    digest = info.name.rsplit("/", 1)[1]
    wrong = "ff" if digest.startswith("00") else "00"
    moved = [*parts[:first], _member(f"objects/{wrong}/{digest}", data), *parts[first + 1 :]]
    with pytest.raises(BundleError, match="wrong folder"):
        check_bundle(lambda: _write(moved, tmp_path / "w.casbak").open("rb"), None)
    stray = b'{"id":"stray"}'
    extra = _member(
        f"objects/{hash_bytes(stray)[:2]}/{hash_bytes(stray)}",
        zstandard.ZstdCompressor().compress(stray),
    )
    with pytest.raises(BundleError, match="no manifest in the bundle references"):
        check_bundle(lambda: _write([*parts, extra], tmp_path / "e.casbak").open("rb"), None)
    late_manifest = [*parts, parts[1]]
    with pytest.raises(BundleError, match="manifest after objects"):
        check_bundle(lambda: _write(late_manifest, tmp_path / "l.casbak").open("rb"), None)


def test_import_api_on_memory_repository(memory_repo: Repository) -> None:
    docs = documents_from_values([{"id": "a", "v": 1}, {"id": "b"}], "t")
    take_snapshot(memory_repo, docs)
    stream = io.BytesIO()
    export_bundle(memory_repo, select_snapshots(memory_repo, ["latest"]), stream)
    from casbak.backends.memory import MemoryBackend

    target = Repository.init(MemoryBackend())
    result = import_bundle(target, lambda: io.BytesIO(stream.getvalue()))
    assert result.manifests == 1 and result.objects == 2
    assert msgspec.json.decode(
        target.objects.read(target.resolve("latest").manifest.entries["a"].object)
    ) == {"id": "a", "v": 1}


MEMORY_BUDGET_KIB = 64 * 1024


@pytest.mark.slow
def test_export_and_import_stream_in_flat_memory(tmp_path: Path) -> None:
    """A bundle larger than the stated budget (64 MiB) passes through processes under it."""
    import base64
    import random
    import sys

    from benchmarks.measure import measure_rss

    rng = random.Random(1)
    repo = Repository.init(LocalBackend(tmp_path / "src"), compression_level=1)
    for number in range(30):
        blob = base64.b64encode(rng.randbytes(3 << 20)).decode()
        take_snapshot(repo, documents_from_values([{"id": f"big-{number}", "blob": blob}], "t"))
    casbak = [sys.executable, "-m", "casbak"]
    bundle = tmp_path / "big.casbak"
    exported = measure_rss(
        [*casbak, "--repo", str(tmp_path / "src"), "export", "--all", "-o", str(bundle)]
    )
    assert exported.returncode == 0
    assert bundle.stat().st_size > MEMORY_BUDGET_KIB * 1024
    run(tmp_path / "dst", "init")
    imported = measure_rss([*casbak, "--repo", str(tmp_path / "dst"), "import", str(bundle)])
    assert imported.returncode == 0
    assert exported.peak_kib < MEMORY_BUDGET_KIB
    assert imported.peak_kib < MEMORY_BUDGET_KIB
    assert len(Repository.open(LocalBackend(tmp_path / "dst")).snapshots()) == 30


def test_export_of_a_damaged_repository_fails_cleanly(
    source: tuple[Path, list[str]], tmp_path: Path
) -> None:
    import subprocess
    import sys

    path, ids = source
    repo = Repository.open(LocalBackend(path))
    flip_inside(path, repo.resolve(ids[0]).manifest.entries["globex-us"].object)
    out = tmp_path / "x.casbak"
    done = subprocess.run(
        [sys.executable, "-m", "casbak", "--repo", str(path), "export", "--all", "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr and "Exception" not in done.stderr
    assert not out.exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".x.casbak")] == []


def test_export_to_an_unwritable_place_is_a_clear_error(
    source: tuple[Path, list[str]], tmp_path: Path
) -> None:
    path, _ = source
    code, _, err = run(path, "export", "--all", "-o", str(tmp_path / "missing" / "x.casbak"))
    assert code == 1
    assert err.startswith(f"casbak: error: cannot write {tmp_path / 'missing' / 'x.casbak'}")
    assert "internal error" not in err
