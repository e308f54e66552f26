"""Time whole ``casbak snapshot`` processes over rounds of the standard workload.

    python -m benchmarks.snapshot_rounds --tenants 2000 --rounds 2 [--no-fsync]

Reports per-round wall time and repository bytes. ``--no-fsync`` runs the same
code with fsync stubbed out, to show what durability costs (benchmark only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.workload import Workload

NO_FSYNC = (
    "import os, sys; os.fsync = lambda fd: None; from casbak.cli import main; "
    "sys.exit(main(sys.argv[1:]))"
)


def repository_bytes(path: Path) -> int:
    """Bytes of every file in the repository (what a copy of it would move)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def casbak(repo: Path, *args: str, no_fsync: bool = False) -> subprocess.CompletedProcess[bytes]:
    prefix = [sys.executable, "-c", NO_FSYNC] if no_fsync else [sys.executable, "-m", "casbak"]
    return subprocess.run([*prefix, "--repo", str(repo), *args], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("CASBAK_BENCH_DIR")) as scratch:
        base = Path(scratch)
        workload = Workload(args.tenants)
        repo = base / "repo"
        casbak(repo, "init")
        rows = []
        for number in range(1, args.rounds + 1):
            if number > 1:
                workload.advance()
            folder = base / f"round-{number}"
            input_bytes = workload.write(folder)
            start = time.perf_counter()
            done = casbak(
                repo,
                "--json",
                "snapshot",
                str(folder),
                "--operation",
                "sync-apply",
                no_fsync=args.no_fsync,
            )
            elapsed = time.perf_counter() - start
            result = json.loads(done.stdout)
            rows.append(
                {
                    "round": number,
                    "seconds": round(elapsed, 3),
                    "input_bytes": input_bytes,
                    "new_objects": result["new_objects"],
                    "bytes_added": result["bytes_added"],
                    "repository_bytes": repository_bytes(repo),
                }
            )
            print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
