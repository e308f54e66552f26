"""Growth goals: does the cost of everyday commands stay flat as history grows?

    python -m benchmarks.growth [--snapshots 10000] [--tenants 20000]

Measures, as ratios from one run: `casbak list` of a repository holding N
snapshots against the bare `python -c "import casbak.cli"` start-up (whole
processes, median of 5); the in-process `BackupService.create_tenant_backup`
into that repository against the same call into an empty one (median of 30);
and the peak memory of one `casbak snapshot` of a 20,000-tenant export against
the export's size. Setup writes without fsync (it is not what is measured).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.measure import measure_rss
from benchmarks.tools import ENV, folder_bytes
from benchmarks.workload import Workload
from casbak import BackupService

REPEATS = 5


def _median_process(argv: list[str]) -> float:
    return statistics.median(measure_rss(argv, env=ENV).seconds for _ in range(REPEATS))


def _call_time(service: BackupService, tenant: dict[str, Any], calls: int) -> float:
    times = []
    for number in range(calls):
        started = time.perf_counter()
        service.create_tenant_backup({**tenant, "probe": number}, "tenant-update")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=10000)
    parser.add_argument("--tenants", type=int, default=20000)
    args = parser.parse_args()
    tenant = {"id": "probe-tenant", "name": "Probe", "selfProvisioningDomains": ["p.example"]}
    with tempfile.TemporaryDirectory(dir=os.environ.get("CASBAK_BENCH_DIR")) as scratch:
        base = Path(scratch)
        full = BackupService(base / "full")
        real_fsync = os.fsync
        os.fsync = lambda fd: None  # setup only
        try:
            for number in range(args.snapshots):
                full.create_tenant_backup(
                    {"id": f"tenant-{number % 500}", "n": number}, "tenant-update"
                )
        finally:
            os.fsync = real_fsync
        startup = _median_process([sys.executable, "-c", "import casbak.cli"])
        listing = _median_process(
            [sys.executable, "-m", "casbak", "--repo", str(base / "full"), "list"]
        )
        empty_call = _call_time(BackupService(base / "empty"), tenant, 30)
        full_call = _call_time(full, tenant, 30)

        export = base / "export"
        next(Workload(args.tenants).rounds(export, 1))
        big = base / "big"
        measure_rss([sys.executable, "-m", "casbak", "--repo", str(big), "init"], env=ENV)
        snap = measure_rss(
            [sys.executable, "-m", "casbak", "--repo", str(big), "snapshot", str(export)], env=ENV
        )
        export_bytes = folder_bytes(export)
    result = {
        "snapshots": args.snapshots,
        "startup_s": round(startup, 4),
        "list_s": round(listing, 4),
        "list_vs_startup": round(listing / startup, 2),
        "create_tenant_backup_empty_s": round(empty_call, 5),
        "create_tenant_backup_full_s": round(full_call, 5),
        "full_vs_empty": round(full_call / empty_call, 2),
        "tenants": args.tenants,
        "export_mib": round(export_bytes / 2**20, 1),
        "snapshot_peak_mib": round(snap.peak_kib / 1024, 1),
        "peak_vs_export": round(snap.peak_kib * 1024 / export_bytes, 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
