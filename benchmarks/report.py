"""Report goal: at 10,000 snapshots and 2,000 tenants, under 5 MB and rendered in under 2 s.

    python -m benchmarks.report [--repo DIR | --keep DIR] [--snapshots N] [--tenants N]

The repository is a copy of ``--repo`` (never written to), or one built as
`benchmarks.growth` builds them (in ``--keep`` DIR once, else in a temporary
folder). Measured, median of 3:

- ``casbak report -o FILE`` as a whole process: time and peak memory, and
  the file's size; once with the default summary (busiest tenants) and once
  with ``--tenant`` the busiest tenant (its whole history);
- rendering in headless Chromium (Debian's ``chromium``, driven by
  Playwright): a fresh page opens the file; from the start of navigation to
  the second animation frame after the load event, so layout and the first
  paint of every chart are done.

Prints one JSON document and writes its section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.growth import build
from benchmarks.measure import measure_rss
from benchmarks.tools import ENV, REPORT_SECTION, write_section

REPEATS = 3
RESULTS = Path(__file__).with_name("RESULTS.md")
CHROMIUM = "/usr/bin/chromium"
LIMIT_BYTES = 5 * 1000 * 1000
LIMIT_RENDER_S = 2.0
_AFTER_PAINT = "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"


def _write(repo: Path, out: Path, *extra: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "casbak", "--repo", str(repo), "report", "-o", str(out), *extra]
    runs = [measure_rss(argv, env=ENV) for _ in range(REPEATS)]
    return {
        "write_s": round(statistics.median(run.seconds for run in runs), 3),
        "write_peak_mib": round(max(run.peak_kib for run in runs) / 1024, 1),
        "bytes": out.stat().st_size,
    }


def _render(path: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    times, marks = [], 0
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM)
        for _ in range(REPEATS):
            page = browser.new_page(viewport={"width": 1040, "height": 900})
            started = time.perf_counter()
            page.goto(path.as_uri(), wait_until="load")
            page.evaluate(_AFTER_PAINT)
            times.append(time.perf_counter() - started)
            marks = page.locator("#timeline-chart circle.mk").count()
            page.close()
        browser.close()
    return {"render_s": round(statistics.median(times), 3), "marks_drawn": marks}


def measure(repo: Path, scratch: Path, busiest: str) -> dict[str, Any]:
    copy = scratch / "repo-copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(repo, copy)
    summary = scratch / "report.html"
    full = scratch / "report-tenant.html"
    result: dict[str, Any] = {"summary": _write(copy, summary), "tenant": busiest}
    result["summary"].update(_render(summary))
    result["one_tenant"] = _write(copy, full, "--tenant", busiest)
    result["one_tenant"].update(_render(full))
    return result


def render(report: dict[str, Any]) -> str:
    def line(name: str, part: dict[str, Any]) -> str:
        size_ok = "under" if part["bytes"] < LIMIT_BYTES else "OVER"
        time_ok = "under" if part["render_s"] < LIMIT_RENDER_S else "OVER"
        return (
            f"| {name} | {part['bytes'] / 1e6:.2f} MB ({size_ok} 5 MB) | "
            f"{part['render_s']} s ({time_ok} 2 s) | {part['marks_drawn']:,} | "
            f"{part['write_s']} s | {part['write_peak_mib']} MiB |"
        )

    return "\n".join(
        [
            "## HTML report at scale",
            "",
            f"`python -m benchmarks.report`: a repository of {report['snapshots']:,} snapshots "
            f"and {report['tenants']:,} tenants (as `benchmarks.growth` builds them); median of "
            f"{REPEATS}. Render: headless Chromium from navigation to the second frame after "
            "load. Write: `casbak report` as a whole process.",
            "",
            "| report | file size | render | timeline marks | write | write peak |",
            "|---|---|---|---|---|---|",
            line("default (busiest 10 tenants)", report["summary"]),
            line(f"--tenant {report['tenant']} (whole history)", report["one_tenant"]),
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, help="Measure a copy of this repository.")
    parser.add_argument("--busiest", help="The tenant for --tenant (with --repo).")
    parser.add_argument("--keep", type=Path, help="Build the repository here, once.")
    parser.add_argument("--snapshots", type=int, default=10000)
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--from-json", type=Path, help="Only write RESULTS.md from this report.")
    args = parser.parse_args()
    if args.from_json:
        write_section(RESULTS, REPORT_SECTION, render(json.loads(args.from_json.read_text())))
        return
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        if args.repo is not None:
            repo, busiest = args.repo, args.busiest
            if busiest is None:
                parser.error("--repo needs --busiest TENANT")
        else:
            repo = (args.keep or scratch) / f"built-{args.snapshots}-{args.tenants}"
            marker = repo / "busiest-tenant"
            if not marker.exists():
                repo.mkdir(parents=True, exist_ok=True)
                marker.write_text(build(repo / "repo", args.snapshots, args.tenants))
            busiest, repo = marker.read_text(), repo / "repo"
        result = measure(repo, scratch, busiest)
    report = {"snapshots": args.snapshots, "tenants": args.tenants, **result}
    print(json.dumps(report, indent=2))
    write_section(RESULTS, REPORT_SECTION, render(report))


if __name__ == "__main__":
    main()
