"""Does casbak stay flat over 1,000 rounds of the standard workload?

    python -m benchmarks.longrun [--rounds 1000] [--tenants 2000] [--cache DIR]

The synthetic workload (`benchmarks.workload`) is generated once and cached
in DIR as the files each round changes (one zstd msgpack per round), then
replayed into one export folder that ``casbak snapshot`` backs up after every
round, as a whole process. Bytes added per round and round time of the last
100 rounds are compared with rounds 30 to 130 (medians): flat growth keeps
both within 10%. Writes its section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import zstandard

from benchmarks.tools import LONGRUN_SECTION, Casbak, folder_bytes, write_section
from benchmarks.workload import Workload, file_name

RESULTS = Path(__file__).parent / "RESULTS.md"
EARLY = (30, 130)
"""Rounds whose medians are the reference (after the first rounds' dictionary and index settle)."""
LAST = 100
LIMIT = 1.10


def _round_file(cache: Path, number: int) -> Path:
    return cache / f"round-{number:04d}.msgpack.zst"


def generate(cache: Path, tenants: int, rounds: int) -> None:
    """Write every round's changed files into ``cache`` (once; a marker says it is whole)."""
    done = cache / "complete"
    if done.exists() and done.read_text() == f"{tenants} {rounds}\n":
        return
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    workload = Workload(tenants)
    names = {file_name(key) for key in workload.documents}
    compressor = zstandard.ZstdCompressor(level=3)
    for number in range(1, rounds + 1):
        if number == 1:
            changed: dict[str, bytes | None] = {
                file_name(key): text for key, text in _first(workload).items()
            }
        else:
            before = workload.noisy
            workload.advance()
            changed = dict(workload.files_changed(before))
            now = {file_name(key) for key in workload.documents}
            changed |= dict.fromkeys(names - now)
            names = now
        _round_file(cache, number).write_bytes(compressor.compress(msgspec.msgpack.encode(changed)))
    done.write_text(f"{tenants} {rounds}\n")


def _first(workload: Workload) -> dict[str, bytes]:
    from benchmarks.workload import render

    return {
        key: render(workload.rng, document, key in workload.noisy).encode()
        for key, document in sorted(workload.documents.items())
    }


def replay(cache: Path, export: Path, rounds: int) -> Iterator[int]:
    """Bring ``export`` to each round in turn; yield the round's number."""
    shutil.rmtree(export, ignore_errors=True)
    export.mkdir(parents=True)
    decompressor = zstandard.ZstdDecompressor()
    for number in range(1, rounds + 1):
        changed = msgspec.msgpack.decode(
            decompressor.decompress(_round_file(cache, number).read_bytes()),
            type=dict[str, bytes | None],
        )
        for name, text in changed.items():
            if text is None:
                (export / name).unlink()
            else:
                (export / name).write_bytes(text)
        yield number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "casbak-longrun-cache"
    )
    args = parser.parse_args()
    generate(args.cache / f"{args.tenants}-{args.rounds}", args.tenants, args.rounds)
    times: list[float] = []
    sizes: list[int] = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("CASBAK_BENCH_DIR")) as scratch:
        casbak = Casbak(Path(scratch) / "repo")
        casbak.init()
        export = Path(scratch) / "export"
        for number in replay(args.cache / f"{args.tenants}-{args.rounds}", export, args.rounds):
            times.append(casbak.backup(export).seconds)
            sizes.append(folder_bytes(casbak.repo))
            if number % 50 == 0:
                print(f"round {number}/{args.rounds}", file=sys.stderr)
    report = summarize(times, sizes, args)
    print(json.dumps(report, indent=2))
    write_section(RESULTS, LONGRUN_SECTION, render_report(report))


def summarize(times: list[float], sizes: list[int], args: argparse.Namespace) -> dict[str, object]:
    added = [b - a for a, b in itertools.pairwise(sizes)]
    early = slice(EARLY[0] - 1, EARLY[1])
    last = slice(len(times) - LAST, len(times))
    # added[i] is what round i + 2 added; align it with its round.
    early_added = slice(EARLY[0] - 2, EARLY[1] - 1)
    last_added = slice(len(added) - LAST, len(added))
    return {
        "rounds": args.rounds,
        "tenants": args.tenants,
        "early_round_s": round(statistics.median(times[early]), 4),
        "last_round_s": round(statistics.median(times[last]), 4),
        "early_added_bytes": statistics.median(added[early_added]),
        "last_added_bytes": statistics.median(added[last_added]),
        "repository_bytes": sizes[-1],
        "time_ratio": round(statistics.median(times[last]) / statistics.median(times[early]), 3),
        "bytes_ratio": round(
            statistics.median(added[last_added]) / statistics.median(added[early_added]), 3
        ),
    }


def render_report(report: dict[str, object]) -> str:
    def verdict(ratio: object) -> str:
        return "met" if isinstance(ratio, float) and ratio <= LIMIT else "NOT met"

    return "\n".join(
        [
            "# Long run: 1,000 rounds of the standard workload",
            "",
            f"`python -m benchmarks.longrun --rounds {report['rounds']} --tenants "
            f"{report['tenants']}`: `casbak snapshot` of the export after every round, as whole "
            f"processes; medians of rounds {EARLY[0]}-{EARLY[1]} against the last {LAST}.",
            "",
            "| figure | rounds 30-130 | last 100 | ratio |",
            "|---|---|---|---|",
            f"| round time (s) | {report['early_round_s']} | {report['last_round_s']} | "
            f"{report['time_ratio']} |",
            f"| bytes added per round | {report['early_added_bytes']} | "
            f"{report['last_added_bytes']} | {report['bytes_ratio']} |",
            "",
            f"Repository after {report['rounds']} rounds: {report['repository_bytes']} bytes.",
            "",
            f"- round time of the last {LAST} within 10% of rounds 30-130: "
            f"{report['time_ratio']} — **{verdict(report['time_ratio'])}**",
            f"- bytes added per round of the last {LAST} within 10% of rounds 30-130: "
            f"{report['bytes_ratio']} — **{verdict(report['bytes_ratio'])}**",
            "",
        ]
    )


if __name__ == "__main__":
    main()
