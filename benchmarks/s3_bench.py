"""snapshot, verify, export and restore on the standard workload against a local S3 server (moto).

    python -m benchmarks.s3_bench --tenants 2000 --rounds 3 [--latency-ms 20]

Requests are counted by a pass-through proxy in front of the server: all of
them, the GETs of packs (format 2) or objects (format 1), the bytes of the
answers, and the most that were in flight at once. ``--latency-ms`` makes the
proxy add a round trip to every request, as a real S3 endpoint has (loopback
has almost none).
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
from tests.s3server import faulty_proxy, moto_server, new_bucket


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    env_base = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(env_base)
    with (
        moto_server() as endpoint,
        faulty_proxy(endpoint, every=0, delay=args.latency_ms / 1000) as proxy,
        tempfile.TemporaryDirectory() as scratch,
    ):
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        repo = f"s3://{new_bucket(endpoint)}/bench"
        env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url}
        casbak = [sys.executable, "-m", "casbak", "--repo", repo]
        measure_rss([*casbak, "init"], env=env)
        export = Path(scratch) / "export"
        rows = []

        def timed(label: str, argv: list[str]) -> None:
            before = proxy.requests
            proxy.reset()
            run = measure_rss(argv, env=env)
            assert run.returncode == 0, label
            rows.append(
                {
                    "step": label,
                    "seconds": round(run.seconds, 2),
                    "requests": proxy.requests - before,
                    "object_gets": len(proxy.gets("/packs/")) + len(proxy.gets("/objects/")),
                    "kib_down": round(proxy.bytes_down / 1024),
                    "max_in_flight": proxy.max_in_flight,
                    "peak_rss_mib": round(run.peak_kib / 1024, 1),
                }
            )
            print(json.dumps(rows[-1]))

        for number in Workload(args.tenants).rounds(export, args.rounds):
            timed(f"snapshot round {number}", [*casbak, "snapshot", str(export)])
        timed("verify", [*casbak, "verify"])
        timed("export --all", [*casbak, "export", "--all", "-o", str(Path(scratch) / "b")])
        restored = str(Path(scratch) / "restored")
        timed("restore latest", [*casbak, "restore", "latest", "--output", restored])
        first = json.loads(min(Path(restored).iterdir()).read_text())
        tenant = first["id"] if "id" in first else first["tenant"]["id"]
        one = [*casbak, "restore", "latest", "--tenant", tenant, "--output", restored + "-one"]
        timed("restore one tenant", one)


if __name__ == "__main__":
    main()
