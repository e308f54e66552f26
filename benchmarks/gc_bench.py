"""gc on a large repository: time and peak memory of whole ``casbak gc`` processes.

    python -m benchmarks.gc_bench --objects 100000 --snapshots 5000

Builds a repository of SNAPSHOTS snapshots holding OBJECTS distinct documents
(setup skips fsync to save time; the measured gc runs are the real thing), then
removes every other manifest and measures ``gc --dry-run`` (mark and plan) and
``gc`` (mark, plan and sweep half the objects).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.measure import measure_rss
from casbak.backends.local import LocalBackend
from casbak.repository import Repository
from casbak.service import take_snapshot
from casbak.sources import documents_from_values


def build(path: Path, objects: int, snapshots: int) -> Repository:
    real_fsync = os.fsync
    os.fsync = lambda fd: None  # setup only: the measured gc runs use real fsync
    try:
        repo = Repository.init(LocalBackend(path))
        per_snapshot = max(1, objects // snapshots)
        for number in range(snapshots):
            tenants = [
                {
                    "id": f"tenant-{i}",
                    "snapshot": number,
                    "name": f"Tenant {i}",
                    "selfProvisioningDomains": [f"t{i}.example.com"],
                    "customAttributes": {},
                }
                for i in range(per_snapshot)
            ]
            take_snapshot(repo, documents_from_values(tenants, "bench"), operation="sync-apply")
        return repo
    finally:
        os.fsync = real_fsync


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--snapshots", type=int, default=5_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("CASBAK_BENCH_DIR")) as scratch:
        path = Path(scratch) / "repo"
        started = time.perf_counter()
        repo = build(path, args.objects, args.snapshots)
        snapshots = repo.snapshots()
        for snap in snapshots[::2]:
            repo.delete_snapshot(snap)
        print(
            f"setup: {len(snapshots)} snapshots, "
            f"{sum(1 for _ in repo.objects.list())} objects in "
            f"{time.perf_counter() - started:.0f}s",
            file=sys.stderr,
        )
        base = [
            sys.executable,
            "-m",
            "casbak",
            "--repo",
            str(path),
            "--json",
            "gc",
            "--grace",
            "0s",
        ]
        results = {}
        for name, argv in (("gc --dry-run", [*base, "--dry-run"]), ("gc", base)):
            run = measure_rss(argv)
            assert run.returncode == 0, name
            results[name] = {
                "seconds": round(run.seconds, 2),
                "peak_rss_mib": round(run.peak_kib / 1024, 1),
            }
        remaining = sum(1 for _ in repo.objects.list())
        print(
            json.dumps(
                {
                    "objects": args.objects,
                    "snapshots": args.snapshots,
                    "objects_after": remaining,
                    **results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
