"""Growth goals: do everyday commands stay fast as history grows to 100,000 snapshots?

    python -m benchmarks.growth [--sizes 10000,100000] [--tenants 2000] [--keep DIR]

For each size, a repository is built through the Python API (`BackupService`)
as casbak is used: 99% one-tenant ``tenant-update`` snapshots of tenants
edited one at a time, 1% ``sync-apply`` snapshots of every tenant, spread over
the last 60 days (so a 30-day retention removes about half, whatever the
size). Tenants have the shapes of `benchmarks.workload`. Setup writes without
fsync (it is not what is measured). Then, as ratios from the same run:

- ``casbak list --max-count 20`` and ``casbak log TENANT`` against the bare start-up
  (``python -c "import casbak.cli"``), whole processes, median of 5;
- ``create_tenant_backup`` into that repository against the same call into an
  empty one, median and mean of 30: through one `BackupService` (a service
  that keeps it, the goal) and through a new one per call (a script that
  backs up before one change: the index and catalog are read afresh);
- ``casbak find --where`` over the whole history: time and peak memory;
- ``casbak gc`` and then ``casbak cleanup`` (30-day retention): time (median
  of ``--maintenance-runs``, each on a fresh copy: one run of a few seconds
  varies by a third on a shared disk) and peak memory (the largest), and how
  each grows from the smallest size to the largest; ``find`` again after the
  first gc, which moves the one-snapshot packs into full-sized ones;
- the peak memory of one ``casbak snapshot`` of a 20,000-tenant export against
  the export's size (``--export-tenants``).

Prints one JSON document and writes its section of benchmarks/RESULTS.md
(``--from-json FILE`` writes that section from a report printed before).
With ``--keep DIR`` the repositories are built in DIR once and measured again
on later runs (gc and cleanup then run on a copy).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.measure import measure_rss
from benchmarks.tools import ENV, GROWTH_SECTION, folder_bytes, write_section
from benchmarks.workload import Workload, edit, new_tenant, tenant_id
from casbak import BackupService

REPEATS = 5
CALLS = 30
SPAN = timedelta(days=60)
SYNC_EVERY = 100
FIND_QUERY = '$.enforceSSO == true and $.selfProvisioningDomains[*] ~ "a"'


def _clock(start: datetime, step: timedelta) -> Callable[[], datetime]:
    moments: Iterator[int] = iter(range(10**9))
    return lambda: start + step * next(moments)


def build(path: Path, snapshots: int, tenants: int, seed: int = 11) -> str:
    """Write the repository; returns the tenant edited most often (for `log`)."""
    rng = random.Random(seed)
    taken: set[str] = set()
    documents = [new_tenant(rng, taken) for _ in range(tenants)]
    start = datetime.now(UTC) - SPAN
    service = BackupService(path, clock=_clock(start, SPAN / snapshots))
    edits: dict[str, int] = {}
    real_fsync = os.fsync
    os.fsync = lambda fd: None  # setup only
    try:
        for number in range(snapshots):
            if number % SYNC_EVERY == 0:
                service.create_backup(documents, "sync-apply", description="sync of every tenant")
                continue
            document = rng.choice(documents)
            edit(rng, document)
            edits[tenant_id(document)] = edits.get(tenant_id(document), 0) + 1
            service.create_tenant_backup(document, "tenant-update", f"change {number}")
    finally:
        os.fsync = real_fsync
    return max(edits, key=lambda key: edits[key])


def _median_process(argv: list[str]) -> float:
    return statistics.median(measure_rss(argv, env=ENV).seconds for _ in range(REPEATS))


def _calls(path: Path, document: dict[str, Any], *, cold: bool) -> list[float]:
    times = []
    service = BackupService(path)
    service.create_tenant_backup({**document, "probe": "first"}, "tenant-update")
    for number in range(CALLS):
        probe = {**document, "probe": number}
        started = time.perf_counter()
        (BackupService(path) if cold else service).create_tenant_backup(probe, "tenant-update")
        times.append(time.perf_counter() - started)
    return times


def _ratios(name: str, empty: list[float], full: list[float]) -> dict[str, float]:
    return {
        f"create_{name}_empty_median_s": round(statistics.median(empty), 5),
        f"create_{name}_full_median_s": round(statistics.median(full), 5),
        f"create_{name}_vs_empty_median": round(
            statistics.median(full) / statistics.median(empty), 2
        ),
        f"create_{name}_vs_empty_mean": round(statistics.mean(full) / statistics.mean(empty), 2),
    }


def _casbak(repo: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "casbak", "--repo", str(repo), *args]


def _fresh_copy(built: Path, repo: Path) -> None:
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(built / "repo", repo)
    # The copy leaves the whole repository dirty in the page cache; the first
    # fsync of the command measured next would pay for writing it back (more
    # the larger the repository), which is the copy's cost, not the command's.
    os.sync()


def measure(
    base: Path, snapshots: int, tenants: int, startup: float, maintenance_runs: int = 3
) -> dict[str, Any]:
    """Build one repository of ``snapshots`` (unless kept) and measure everything on it."""
    built = base / f"built-{snapshots}-{tenants}"
    marker = built / "busiest-tenant"
    if not marker.exists():
        shutil.rmtree(built, ignore_errors=True)
        started = time.perf_counter()
        busiest = build(built / "repo", snapshots, tenants)
        marker.write_text(f"{busiest}\n{time.perf_counter() - started:.1f}\n")
    busiest, build_s = marker.read_text().split()
    repo = base / f"work-{snapshots}"
    _fresh_copy(built, repo)
    listing = _median_process(_casbak(repo, "list", "--max-count", "20"))
    log = _median_process(_casbak(repo, "log", busiest))
    probe = new_tenant(random.Random(5), set())
    creates: dict[str, float] = {}
    for name, cold in (("warm", False), ("cold", True)):
        shutil.rmtree(base / f"empty-{snapshots}", ignore_errors=True)
        empty = _calls(base / f"empty-{snapshots}", probe, cold=cold)
        creates |= _ratios(name, empty, _calls(repo, probe, cold=cold))
    find = measure_rss(_casbak(repo, "find", "--where", FIND_QUERY), env=ENV)
    gcs = [measure_rss(_casbak(repo, "gc"), env=ENV)]
    find_again = measure_rss(_casbak(repo, "find", "--where", FIND_QUERY), env=ENV)
    cleanups = [measure_rss(_casbak(repo, "cleanup"), env=ENV)]
    for _ in range(maintenance_runs - 1):
        _fresh_copy(built, repo)
        gcs.append(measure_rss(_casbak(repo, "gc"), env=ENV))
        cleanups.append(measure_rss(_casbak(repo, "cleanup"), env=ENV))
    return {
        "snapshots": snapshots,
        "build_s": float(build_s),
        "list_n20_s": round(listing, 4),
        "list_vs_startup": round(listing / startup, 2),
        "log_s": round(log, 4),
        "log_vs_startup": round(log / startup, 2),
        **creates,
        "find_s": round(find.seconds, 2),
        "find_peak_mib": round(find.peak_kib / 1024, 1),
        "find_ok": find.returncode == 0,
        "find_after_gc_s": round(find_again.seconds, 2),
        "find_after_gc_peak_mib": round(find_again.peak_kib / 1024, 1),
        "gc_s": round(statistics.median(run.seconds for run in gcs), 2),
        "gc_runs_s": [round(run.seconds, 2) for run in gcs],
        "gc_peak_mib": round(max(run.peak_kib for run in gcs) / 1024, 1),
        "cleanup_s": round(statistics.median(run.seconds for run in cleanups), 2),
        "cleanup_runs_s": [round(run.seconds, 2) for run in cleanups],
        "cleanup_peak_mib": round(max(run.peak_kib for run in cleanups) / 1024, 1),
    }


def big_snapshot(base: Path, tenants: int) -> dict[str, Any]:
    """Peak memory of one snapshot of a large export, against the export's size."""
    export = base / "export"
    shutil.rmtree(export, ignore_errors=True)
    next(Workload(tenants).rounds(export, 1))
    big = base / "big"
    shutil.rmtree(big, ignore_errors=True)
    measure_rss(_casbak(big, "init"), env=ENV)
    snap = measure_rss(_casbak(big, "snapshot", str(export)), env=ENV)
    export_bytes = folder_bytes(export)
    return {
        "export_tenants": tenants,
        "export_mib": round(export_bytes / 2**20, 1),
        "snapshot_peak_mib": round(snap.peak_kib / 1024, 1),
        "peak_vs_export": round(snap.peak_kib * 1024 / export_bytes, 2),
    }


RESULTS = Path(__file__).parent / "RESULTS.md"
COMMAND = "python -m benchmarks.growth --keep /tmp/casbak-growth"


def _goal(text: str, value: float, limit: float) -> str:
    verdict = "met" if value <= limit else "**NOT met**"
    return f"- {text}: {value} (goal <= {limit}) — {verdict}"


def render(report: dict[str, Any]) -> str:
    """The growth section of RESULTS.md."""
    sizes = report["sizes"]
    large = sizes[-1]
    columns = [key for key in sizes[0] if key != "find_ok"]
    lines = [
        "# Growth: everyday commands as history grows",
        "",
        f"`{COMMAND}` (repositories built through the Python API: 99% one-tenant "
        f"tenant-update, 1% sync-apply of {report['tenants']} tenants, over 60 days). "
        f'Bare start-up `python -c "import casbak.cli"`: {report["startup_s"]} s. '
        "Times in seconds, memory in MiB; ratios from the same run. "
        "Proactive page reclaim (DAMON) during the run: "
        f"{report.get('proactive_reclaim', 'not recorded')}.",
        "",
        "| figure | " + " | ".join(f"{size['snapshots']:,} snapshots" for size in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    lines += [
        f"| {column} | " + " | ".join(_cell(size.get(column, "")) for size in sizes) + " |"
        for column in columns
    ]
    lines += [
        "",
        f"## Goals at {large['snapshots']:,} snapshots",
        "",
        _goal("`casbak list --max-count 20` x bare start-up", large["list_vs_startup"], 2.0),
        _goal("`casbak log TENANT` x bare start-up", large["log_vs_startup"], 3.0),
        _goal(
            "`create_tenant_backup` (one service) x empty repository, median",
            large["create_warm_vs_empty_median"],
            1.5,
        ),
        _goal("`casbak find --where` over the whole history, seconds", large["find_s"], 10.0),
        _goal(
            "the same after the first `casbak gc` (small packs consolidated), seconds",
            large["find_after_gc_s"],
            10.0,
        ),
        f"- `casbak find` peak memory: {large['find_peak_mib']} MiB",
        f"- `create_tenant_backup` through a new `BackupService` per call (reads index and "
        f"catalog afresh) x empty: {large['create_cold_vs_empty_median']} (median), not a goal",
        _goal(
            f"`casbak gc` time growth over {report['size_factor']:g}x the snapshots",
            report["gc_growth"],
            report["size_factor"],
        ),
        _goal(
            f"`casbak cleanup` time growth over {report['size_factor']:g}x the snapshots",
            report["cleanup_growth"],
            report["size_factor"],
        ),
        f"- one snapshot of a {report['export_tenants']:,}-tenant export "
        f"({report['export_mib']} MiB): peak {report['snapshot_peak_mib']} MiB, "
        f"{report['peak_vs_export']} x the export",
        "",
    ]
    return "\n".join(lines)


def proactive_reclaim() -> str:
    """Whether the kernel pages out memory idle for a while (DAMON schemes), as the run saw it.

    On a machine that does, a large repository's pages written or read a
    minute before are gone again by the end of a long gc, and the larger
    repository pays disk reads the smaller one never does.
    """
    states = sorted(Path("/sys/kernel/mm/damon/admin/kdamonds").glob("*/state"))
    found = {state.read_text().strip() for state in states}
    return "on" if "on" in found else "off" if found else "absent"


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--keep", type=Path, help="Build the repositories here, once.")
    parser.add_argument("--export-tenants", type=int, default=20000)
    parser.add_argument(
        "--maintenance-runs", type=int, default=3, help="gc and cleanup runs per size (median)."
    )
    parser.add_argument("--from-json", type=Path, help="Only write RESULTS.md from this report.")
    args = parser.parse_args()
    if args.from_json:
        write_section(RESULTS, GROWTH_SECTION, render(json.loads(args.from_json.read_text())))
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(dir=os.environ.get("CASBAK_BENCH_DIR")) as scratch:
        base = args.keep or Path(scratch)
        base.mkdir(parents=True, exist_ok=True)
        startup = _median_process([sys.executable, "-c", "import casbak.cli"])
        reclaim = proactive_reclaim()
        results = [
            measure(base, size, args.tenants, startup, args.maintenance_runs) for size in sizes
        ]
        large_export = big_snapshot(base, args.export_tenants)
    small, large = results[0], results[-1]
    factor = large["snapshots"] / small["snapshots"]
    growth = {
        f"{name}_growth": round(large[f"{name}_s"] / small[f"{name}_s"], 2)
        for name in ("gc", "cleanup", "find")
    }
    report = {
        "startup_s": round(startup, 4),
        "proactive_reclaim": reclaim,
        "tenants": args.tenants,
        "sizes": results,
        "size_factor": factor,
        **growth,
        **large_export,
    }
    print(json.dumps(report, indent=2))
    write_section(RESULTS, GROWTH_SECTION, render(report))


if __name__ == "__main__":
    main()
