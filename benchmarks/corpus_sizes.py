"""Repository bytes, by folder, after the corpus replay through the Python API.

    python -m benchmarks.corpus_sizes [--max-chain N] [--level L] [--corpus PATH]

A quick way to weigh a storage lever on real tenant histories without the other
tools: the same replay as `make bench-compare`'s corpus workload (round k holds
version k of each history), each round one snapshot, and the bytes of each
top-level folder of the repository at the end. ``--max-chain`` overrides the
writers' delta chain bound (versions and look-alikes) for this run only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import casbak.store.encoder as encoder
import casbak.store.writer as writer
from benchmarks.corpus import DEFAULT_CORPUS, CorpusReplay, unpack
from casbak.backends.local import LocalBackend
from casbak.defaults import DEFAULT_COMPRESSION_LEVEL
from casbak.repository import Repository
from casbak.service import snapshot_sources


def folder_sizes(root: Path) -> dict[str, int]:
    """Bytes of the files under each top-level folder (files at the top count as ".")."""
    sizes: dict[str, int] = {}
    for folder, _, files in os.walk(root):
        parts = Path(folder).relative_to(root).parts
        top = parts[0] if parts else "."
        sizes[top] = sizes.get(top, 0) + sum(os.path.getsize(Path(folder, f)) for f in files)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--max-chain", type=int, help="Writers' delta chain bound for this run.")
    parser.add_argument("--level", type=int, default=DEFAULT_COMPRESSION_LEVEL)
    args = parser.parse_args()
    if args.max_chain is not None:
        encoder.MAX_CHAIN = writer.MAX_CHAIN = args.max_chain
    with tempfile.TemporaryDirectory(dir=os.environ.get("CASBAK_BENCH_DIR")) as scratch:
        base = Path(scratch)
        os.environ["CASBAK_CACHE_DIR"] = str(base / "cache")
        replay = CorpusReplay(unpack(args.corpus, base / "corpus"))
        Repository.init(LocalBackend(base / "repo"), compression_level=args.level)
        started = time.perf_counter()
        for _ in replay.rounds(base / "export"):
            repo = Repository.open(LocalBackend(base / "repo"))
            snapshot_sources(repo, [str(base / "export")], ids_from_names=True)
        seconds = time.perf_counter() - started
        sizes = folder_sizes(base / "repo")
    print(f"total {sum(sizes.values())} bytes, snapshots {seconds:.1f} s")
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
        print(f"  {name:10} {size}")


if __name__ == "__main__":
    main()
