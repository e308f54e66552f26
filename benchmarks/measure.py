"""Run a command as a whole process and measure wall time and peak memory."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Measured:
    """Wall seconds, peak resident memory (KiB), and the process's output."""

    seconds: float
    peak_kib: int
    stdout: bytes
    returncode: int


def measure_rss(argv: list[str], cwd: str | None = None) -> Measured:
    """Like `measure`, with the child's peak RSS from wait4 (stdout discarded to a file)."""
    start = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=sink, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(time.perf_counter() - start, usage.ru_maxrss, b"", proc.returncode)
