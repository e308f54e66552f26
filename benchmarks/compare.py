"""casbak against restic, borg, git and plain copies on the standard workload.

    python -m benchmarks.compare [--tenants 2000] [--rounds 30]    (make bench-compare)

Every tool backs up the same export folder after each round, as whole
processes, on this machine in one run; then each verifies, restores the latest
round (checked against the export), and backs up one tenant into the finished
repository. Writes benchmarks/RESULTS.md with every figure and each goal of the
performance issue marked met or not, as ratios from this same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.measure import Measured, measure_rss
from benchmarks.tools import (
    COMPARE_SECTION,
    ENV,
    Borg,
    Casbak,
    Restic,
    Tool,
    ensure_installed,
    folder_bytes,
    write_section,
)
from benchmarks.workload import Workload

RESULTS = Path(__file__).parent / "RESULTS.md"
REPEATS = 5
"""Short measurements (start-up, one tenant) are the median of this many runs."""


class Git(Tool):
    name = "git"

    def init(self) -> None:
        self.repo.mkdir(parents=True)
        self.run(["git", "init", "-q", str(self.repo)])
        for key, value in (
            ("user.email", "bench@example.invalid"),
            ("user.name", "bench"),
            ("gc.auto", "0"),
        ):
            self.run(["git", "-C", str(self.repo), "config", key, value])

    def backup(self, folder: Path) -> Measured:
        work = self.repo
        for entry in work.iterdir():
            if entry.name != ".git":
                entry.unlink()
        for entry in folder.iterdir():
            shutil.copy2(entry, work / entry.name)
        script = "git add -A && git commit -q --allow-empty -m round"
        return self.run(["sh", "-c", script], cwd=work)

    def verify(self) -> Measured:
        return self.run(["git", "-C", str(self.repo), "fsck", "--full"])

    def size(self) -> int:
        return folder_bytes(self.repo / ".git")

    def gc(self) -> Measured:
        return self.run(["git", "-C", str(self.repo), "gc", "--aggressive", "-q"])

    def restore(self, target: Path) -> Measured:
        target.mkdir(parents=True)
        return self.run(["sh", "-c", f"git -C '{self.repo}' archive HEAD | tar -x -C '{target}'"])


class Copies(Tool):
    name = "plain copies"

    def init(self) -> None:
        self.repo.mkdir(parents=True)
        self.rounds = 0

    def backup(self, folder: Path) -> Measured:
        self.rounds += 1
        return self.run(["cp", "-r", str(folder), str(self.repo / f"round-{self.rounds:04d}")])

    def restore(self, target: Path) -> Measured:
        return self.run(["cp", "-r", str(self.repo / f"round-{self.rounds:04d}"), str(target)])


def restore_casbak(tool: Casbak, target: Path) -> Measured:
    return tool.run(tool.cmd("restore", "latest", "--output", str(target)))


def restore_restic(tool: Restic, target: Path) -> Measured:
    return tool.run(["restic", "-r", str(tool.repo), "restore", "latest", "--target", str(target)])


def restore_borg(tool: Borg, target: Path) -> Measured:
    target.mkdir(parents=True)
    return tool.run(["borg", "extract", f"{tool.repo}::round-{tool.rounds:04d}"], cwd=target)


@dataclass
class Row:
    rounds: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    peak_kib: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def same_content(restored: Path, export: Path) -> bool:
    files = {p.name: p for p in restored.rglob("*.json")}
    for source in export.iterdir():
        candidate = files.get(source.name)
        if candidate is None or json.loads(candidate.read_bytes()) != json.loads(
            source.read_bytes()
        ):
            return False
    return len(files) == len(list(export.iterdir()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    available = ensure_installed(["restic", "borg", "git"])
    with tempfile.TemporaryDirectory(dir=os.environ.get("CASBAK_BENCH_DIR")) as scratch:
        base = Path(scratch)
        tools: list[Tool] = [Casbak(base / "casbak"), Copies(base / "copies")]
        for name, cls in (("restic", Restic), ("borg", Borg), ("git", Git)):
            if name in available:
                tools.append(cls(base / name))
        rows = {tool.name: Row() for tool in tools}
        for tool in tools:
            tool.init()
        export = base / "export"
        for number in Workload(args.tenants).rounds(export, args.rounds):
            for tool in tools:
                run = tool.backup(export)
                row = rows[tool.name]
                row.rounds.append(run.seconds)
                row.sizes.append(tool.size())
                row.peak_kib = max(row.peak_kib, run.peak_kib)
            print(f"round {number}/{args.rounds}", file=sys.stderr)
        startup_runs = [
            measure_rss([sys.executable, "-c", "import casbak.cli"], env=ENV).seconds
            for _ in range(REPEATS)
        ]
        one = sorted(export.iterdir())[len(list(export.iterdir())) // 2]
        single = base / "single"
        single.mkdir()
        shutil.copy2(one, single / one.name)
        restorers: dict[str, Callable[[Path], Measured]] = {}
        for tool in tools:
            row = rows[tool.name]
            if hasattr(tool, "verify") and tool.name != "plain copies":
                row.extra["verify"] = tool.verify().seconds
            target = base / f"restore-{tool.name.replace(' ', '-')}"
            if isinstance(tool, Casbak):
                restorers[tool.name] = lambda t, tool=tool: restore_casbak(tool, t)
            elif isinstance(tool, Restic):
                restorers[tool.name] = lambda t, tool=tool: restore_restic(tool, t)
            elif isinstance(tool, Borg):
                restorers[tool.name] = lambda t, tool=tool: restore_borg(tool, t)
            else:
                restorers[tool.name] = tool.restore  # type: ignore[attr-defined]
            row.extra["restore"] = restorers[tool.name](target).seconds
            row.extra["restored_ok"] = float(same_content(target, export))
            one_runs = []
            for _ in range(REPEATS):
                if isinstance(tool, Casbak):
                    one_run = tool.run(
                        tool.cmd("snapshot", str(single / one.name), "--operation", "tenant-update")
                    )
                else:
                    one_run = tool.backup(single)
                one_runs.append(one_run.seconds)
            row.extra["one_tenant"] = statistics.median(one_runs)
            if isinstance(tool, Git):
                row.extra["size_after_gc"] = (tool.gc(), tool.size())[1]
        report(rows, args, statistics.median(startup_runs))


def report(rows: dict[str, Row], args: argparse.Namespace, startup: float) -> None:
    def incremental(row: Row) -> list[float]:
        return row.rounds[1:] or row.rounds

    def added(row: Row) -> float:
        steps = [b - a for a, b in zip(row.sizes, row.sizes[1:], strict=False)]
        return statistics.median(steps) if steps else float(row.sizes[0])

    def p95(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    lines = [
        "# casbak against other tools",
        "",
        f"Standard workload (`benchmarks/workload.py`): {args.tenants} tenants, {args.rounds} "
        "rounds, ~2% edited per round with formatting noise; every tool backs up the same export "
        "folder as whole processes, in one run on one machine. Regenerate with "
        "`make bench-compare`. Times in seconds, sizes in bytes.",
        "",
        "| tool | total snapshot time | round median | round p95 | repository bytes | bytes "
        "added per round (median) | verify | restore latest | restored = last round | one "
        "tenant | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        size = int(row.extra.get("size_after_gc", row.sizes[-1]))
        size_text = f"{row.sizes[-1]}" + (
            f" ({size} after gc --aggressive)" if "size_after_gc" in row.extra else ""
        )
        lines.append(
            f"| {name} | {sum(row.rounds):.2f} | {statistics.median(incremental(row)):.3f} | "
            f"{p95(incremental(row)):.3f} | {size_text} | {added(row):.0f} | "
            f"{row.extra.get('verify', float('nan')):.3f} | {row.extra['restore']:.3f} | "
            f"{'yes' if row.extra['restored_ok'] else 'NO'} | {row.extra['one_tenant']:.3f} | "
            f"{row.peak_kib / 1024:.0f} |"
        )
    lines += [
        "",
        f'Bare start-up `python -c "import casbak.cli"`: {startup:.3f} s.',
        "",
        "## Goals",
        "",
    ]
    casbak = rows["casbak"]
    checks: list[tuple[str, float, float, str]] = []

    def goal(text: str, ours: float, theirs_name: str, theirs: float | None, limit: float) -> None:
        if theirs is None:
            lines.append(f"- {text}: not measured ({theirs_name} unavailable)")
            return
        ratio = ours / theirs if theirs else float("inf")
        verdict = "met" if ratio <= limit else "NOT met"
        lines.append(f"- {text}: {ratio:.2f} x {theirs_name} (goal <= {limit}) — **{verdict}**")
        checks.append((text, ratio, limit, verdict))

    def other(name: str, pick: Callable[[Row], float]) -> float | None:
        return pick(rows[name]) if name in rows else None

    size = float(casbak.sizes[-1])
    goal(
        "repository bytes",
        size,
        "git after gc --aggressive",
        other("git", lambda r: r.extra["size_after_gc"]),
        0.7,
    )
    goal("repository bytes", size, "restic", other("restic", lambda r: float(r.sizes[-1])), 0.25)
    goal("repository bytes", size, "borg", other("borg", lambda r: float(r.sizes[-1])), 0.25)
    goal("bytes added per incremental round", added(casbak), "restic", other("restic", added), 0.1)
    median = statistics.median(incremental(casbak))
    goal(
        "incremental round time (median)",
        median,
        "git",
        other("git", lambda r: statistics.median(incremental(r))),
        1.0,
    )
    goal(
        "incremental round time (median)",
        median,
        "restic",
        other("restic", lambda r: statistics.median(incremental(r))),
        0.2,
    )
    goal(
        "one tenant into the finished repository",
        casbak.extra["one_tenant"],
        "borg",
        other("borg", lambda r: r.extra["one_tenant"]),
        0.2,
    )
    goal(
        "one tenant into the finished repository",
        casbak.extra["one_tenant"],
        "bare start-up",
        startup,
        1.3,
    )
    goal(
        "verify (all data)",
        casbak.extra["verify"],
        "git fsck --full",
        other("git", lambda r: r.extra["verify"]),
        1.0,
    )
    goal(
        "verify (all data)",
        casbak.extra["verify"],
        "restic check --read-data",
        other("restic", lambda r: r.extra["verify"]),
        0.2,
    )
    goal(
        "restore latest round",
        casbak.extra["restore"],
        "restic",
        other("restic", lambda r: r.extra["restore"]),
        0.25,
    )
    lines += [
        "",
        "Growth goals are measured by `python -m benchmarks.growth` (its section below).",
        "",
    ]
    write_section(RESULTS, COMPARE_SECTION, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
