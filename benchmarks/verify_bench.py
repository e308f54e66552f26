"""verify throughput against restic and borg on the same many-round repository.

    python -m benchmarks.verify_bench --tenants 2000 --rounds 10

Every tool backs up the same export folder after each round of the standard
workload; then ``casbak verify``, ``restic check --read-data`` and
``borg check --verify-data`` read everything back. Throughput is stored bytes
per second of wall time; ratios are against casbak in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from benchmarks.tools import Borg, Casbak, Restic, Tool, ensure_installed
from benchmarks.workload import Workload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    available = ensure_installed(["restic", "borg"])
    with tempfile.TemporaryDirectory(dir=os.environ.get("CASBAK_BENCH_DIR")) as scratch:
        base = Path(scratch)
        tools: list[Tool] = [Casbak(base / "casbak")]
        if "restic" in available:
            tools.append(Restic(base / "restic"))
        if "borg" in available:
            tools.append(Borg(base / "borg"))
        for tool in tools:
            tool.init()
        export = base / "export"
        for _ in Workload(args.tenants).rounds(export, args.rounds):
            for tool in tools:
                tool.backup(export)
        objects = sum(1 for _ in (base / "casbak" / "objects").rglob("*") if _.is_file())
        rows = {}
        for tool in tools:
            run = tool.verify()
            size = tool.size()
            rows[tool.name] = {
                "stored_bytes": size,
                "verify_seconds": round(run.seconds, 3),
                "mb_per_s": round(size / run.seconds / 1e6, 2),
                "peak_rss_mib": round(run.peak_kib / 1024, 1),
            }
        rows["casbak"]["objects_per_s"] = round(objects / rows["casbak"]["verify_seconds"])
        for row in rows.values():
            row["time_vs_casbak"] = round(
                row["verify_seconds"] / rows["casbak"]["verify_seconds"], 2
            )
        print(json.dumps({"tenants": args.tenants, "rounds": args.rounds, "tools": rows}, indent=2))


if __name__ == "__main__":
    main()
