"""Export and import throughput on the standard workload's many-round repository.

python -m benchmarks.bundle_bench --tenants 2000 --rounds 10
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from benchmarks.tools import Casbak
from benchmarks.workload import Workload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("CASBAK_BENCH_DIR")) as scratch:
        base = Path(scratch)
        source = Casbak(base / "source")
        source.init()
        export = base / "export"
        for _ in Workload(args.tenants).rounds(export, args.rounds):
            source.backup(export)
        bundle = base / "all.casbak"
        exported = source.run(source.cmd("export", "--all", "-o", str(bundle)))
        size = bundle.stat().st_size
        target = Casbak(base / "target")
        target.init()
        imported = target.run(target.cmd("import", str(bundle)))
        again = target.run(target.cmd("import", str(bundle)))
        print(
            json.dumps(
                {
                    "tenants": args.tenants,
                    "rounds": args.rounds,
                    "bundle_bytes": size,
                    "export": {
                        "seconds": round(exported.seconds, 3),
                        "mb_per_s": round(size / exported.seconds / 1e6, 2),
                        "peak_rss_mib": round(exported.peak_kib / 1024, 1),
                    },
                    "import": {
                        "seconds": round(imported.seconds, 3),
                        "mb_per_s": round(size / imported.seconds / 1e6, 2),
                        "peak_rss_mib": round(imported.peak_kib / 1024, 1),
                    },
                    "import_again": {"seconds": round(again.seconds, 3)},
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
