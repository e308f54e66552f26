"""Run a command as a whole process and measure wall time and peak memory."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

# A small launcher forks the measured command itself: a child started straight
# from a large process (pytest, a benchmark driver) would begin with that
# process's resident size as its recorded peak.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    sink = os.open(os.devnull, os.O_WRONLY)
    os.dup2(sink, 1)
    os.dup2(sink, 2)
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


@dataclass(frozen=True)
class Measured:
    """Wall seconds, peak resident memory (KiB) and exit code of one process."""

    seconds: float
    peak_kib: int
    returncode: int


def measure_rss(
    argv: list[str], cwd: str | None = None, env: dict[str, str] | None = None
) -> Measured:
    """Run ``argv`` to completion (its output discarded); return time, peak RSS, exit code."""
    start = time.perf_counter()
    launched = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - start
    peak, code = launched.stdout.split()
    return Measured(elapsed, int(peak), int(code))
