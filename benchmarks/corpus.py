"""Real tenant histories as a benchmark workload (the corpus in ../shared/corpus).

The corpus (`identity-tenants.tar.zst`, see its README) holds Keycloak realm
exports: ``keycloak/<history>/NN.json``, each folder one file's versions,
oldest first. Replayed as rounds: round k holds version k of every history, or
its last when it has fewer, each history one tenant named after its folder and
written byte for byte as given. The archive is unpacked into a scratch folder
at run time; nothing of it is kept in the project.
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import zstandard

from casbak.canonical import canonicalize_untrusted, decode_json
from casbak.errors import InputError

DEFAULT_CORPUS = (
    Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "identity-tenants.tar.zst"
)
"""Where the corpus sits next to the project on the benchmark machines."""
PART = "keycloak"


def unpack(archive: Path, into: Path) -> Path:
    """Unpack the archive's Keycloak histories into ``into``; the folder of histories."""
    into.mkdir(parents=True, exist_ok=True)
    with archive.open("rb") as raw:
        stream = zstandard.ZstdDecompressor().stream_reader(raw)
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if member.name.split("/", 1)[0] == PART:
                    tar.extract(member, into, filter="data")
    return into / PART


def refused_by_casbak(path: Path) -> bool:
    """Whether casbak refuses the document (duplicate keys: it could not restore it as read)."""
    try:
        canonicalize_untrusted(decode_json(path.read_bytes(), str(path)), str(path))
    except InputError:
        return True
    return False


class CorpusReplay:
    """Round after round of the corpus's histories, in one export folder.

    A history holding a document casbak refuses is left out for every tool,
    so that all of them back up the same files (26 of the 867 versions, in 10
    histories, repeat a key in one object).
    """

    def __init__(self, histories: Path) -> None:
        found = {
            folder.name: sorted(folder.glob("[0-9][0-9].json"))
            for folder in sorted(histories.iterdir())
            if folder.is_dir()
        }
        self.left_out = sorted(
            name for name, files in found.items() if any(map(refused_by_casbak, files))
        )
        self.histories = {
            name: files for name, files in found.items() if files and name not in self.left_out
        }

    @property
    def longest(self) -> int:
        """Rounds until every history is at its last version."""
        return max(len(files) for files in self.histories.values())

    def rounds(self, folder: Path, count: int | None = None) -> Iterator[int]:
        """Write round after round into ``folder``; yield each round's number."""
        for number in range(1, (count or self.longest) + 1):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for name, files in self.histories.items():
                shutil.copyfile(files[min(number, len(files)) - 1], folder / f"{name}.json")
            yield number
