"""A pull of the standard workload's tenants, with settings and SSO, from the local fake API.

python -m benchmarks.descope_bench --tenants 2000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.measure import measure_rss
from benchmarks.workload import Workload
from tests.fake_descope import MANAGEMENT_KEY, PROJECT_ID, FakeDescope, serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=2000)
    args = parser.parse_args()
    fake = FakeDescope()
    for document in Workload(args.tenants).documents.values():
        fake.add(document)
    with serve(fake), tempfile.TemporaryDirectory() as scratch:
        env = {
            **os.environ,
            "DESCOPE_PROJECT_ID": PROJECT_ID,
            "DESCOPE_MANAGEMENT_KEY": MANAGEMENT_KEY,
            "DESCOPE_BASE_URI": fake.url,
        }
        repo = str(Path(scratch) / "repo")
        casbak = [sys.executable, "-m", "casbak", "--repo", repo]
        measure_rss([*casbak, "init"], env=env)
        results = {}
        for label, extra in (
            ("tenants only", []),
            ("with settings and SSO", ["--with-settings", "--with-sso"]),
        ):
            fake.requests.clear()
            run = measure_rss([*casbak, "snapshot", "--from-descope", *extra], env=env)
            assert run.returncode == 0, label
            results[label] = {
                "seconds": round(run.seconds, 2),
                "requests": sum(fake.requests.values()),
                "requests_per_s": round(sum(fake.requests.values()) / run.seconds),
                "peak_rss_mib": round(run.peak_kib / 1024, 1),
            }
        print(json.dumps({"tenants": args.tenants, **results}, indent=2))


if __name__ == "__main__":
    main()
