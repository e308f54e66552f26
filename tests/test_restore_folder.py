"""Restoring into a folder that does not exist yet: it appears whole, with every file."""

from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path

import pytest

from casbak.errors import BackendError, InputError
from casbak.restorefiles import write_restored


def _docs(count: int) -> dict[str, bytes]:
    return {f"tenant-{n:03d}": b'{"id":"tenant-%03d","n":%d}' % (n, n) for n in range(count)}


DOCS = _docs(20)
MANY = _docs(300)


def _leftovers(parent: Path) -> list[str]:
    return [entry.name for entry in parent.iterdir() if entry.name.startswith(".")]


@pytest.mark.parametrize("docs", [DOCS, MANY], ids=["few", "many"])
def test_a_new_folder_appears_with_every_file_private(
    tmp_path: Path, docs: dict[str, bytes]
) -> None:
    out = tmp_path / "deep" / "out"
    paths = write_restored(docs, out, force=False)
    assert sorted(path.name for path in paths) == sorted(f"{t}.json" for t in docs)
    assert sorted(entry.name for entry in out.iterdir()) == sorted(f"{t}.json" for t in docs)
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        tenant = path.name.removesuffix(".json")
        assert path.read_bytes().replace(b" ", b"").replace(b"\n", b"") == docs[tenant]
    assert _leftovers(out.parent) == []
    assert _leftovers(out) == []


@pytest.mark.parametrize("docs", [DOCS, MANY], ids=["few", "many"])
def test_a_failure_leaves_no_folder_and_no_hidden_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, docs: dict[str, bytes]
) -> None:
    real_open = os.open
    # One number per call: exactly the seventh open fails (removing the
    # unfinished folder opens files too, and must succeed).
    numbers = itertools.count(1)

    def failing_open(path: str, flags: int, mode: int = 0o777, **kwargs: int) -> int:
        if next(numbers) == 7:
            raise OSError(28, "No space left on device")
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", failing_open)
    out = tmp_path / "out"
    with pytest.raises(BackendError, match="No space left on device"):
        write_restored(docs, out, force=False)
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_a_folder_that_appears_meanwhile_is_written_file_by_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    real_rename = os.rename

    def rival_first(source: str, target: str) -> None:
        Path(target).mkdir()
        (Path(target) / "theirs.txt").write_text("kept")
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", rival_first)
    paths = write_restored(DOCS, out, force=False)
    assert (out / "theirs.txt").read_text() == "kept"
    assert all(path.exists() for path in paths)
    assert _leftovers(tmp_path) == []


def test_a_folder_that_appears_with_one_of_the_files_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    real_rename = os.rename

    def rival_first(source: str, target: str) -> None:
        Path(target).mkdir()
        (Path(target) / "tenant-003.json").write_text("theirs")
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", rival_first)
    with pytest.raises(InputError, match=r"tenant-003\.json exists; use --force"):
        write_restored(DOCS, out, force=False)
    assert (out / "tenant-003.json").read_text() == "theirs"
