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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from benchmarks.corpus import DEFAULT_CORPUS, CorpusReplay, unpack
from benchmarks.measure import Measured, measure_rss
from benchmarks.tools import (
    COMPARE_SECTION,
    ENV,
    Borg,
    Casbak,
    EncryptedCasbak,
    RememberedKeyCasbak,
    Restic,
    Tool,
    ensure_installed,
    folder_bytes,
    write_section,
)
from benchmarks.workload import Workload

RESULTS = Path(__file__).parent / "RESULTS.md"
CORPUS_READING = ("--id-from-filename",)
"""Realm exports carry no tenant id: casbak names each by its file, as the other tools do."""
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
    """Whether the restored files hold the export's documents (as JSON values, names aside).

    Names aside because casbak names a restored file after its tenant id,
    shortened with a hash when the id is long (the corpus's folder names).
    """

    def documents(folder: Path) -> list[str]:
        return sorted(
            json.dumps(json.loads(path.read_bytes()), sort_keys=True)
            for path in folder.rglob("*.json")
        )

    return documents(restored) == documents(export)


@dataclass
class Outcome:
    """One workload's figures for every tool, with what the report needs to say of it."""

    title: str
    about: str
    rows: dict[str, Row]
    size_goal_vs_git: float


def run_workload(
    base: Path,
    rounds: Iterator[int],
    total: int,
    export: Path,
    available: list[str],
    snapshot_args: tuple[str, ...] = (),
) -> dict[str, Row]:
    """Every tool backs up each round of ``export``; then verify, restore, one tenant."""
    tools: list[Tool] = [
        Casbak(base / "casbak", snapshot_args),
        EncryptedCasbak(base / "casbak-encrypted", snapshot_args),
        RememberedKeyCasbak(base / "casbak-remembered", snapshot_args),
        Copies(base / "copies"),
    ]
    for name, cls in (("restic", Restic), ("borg", Borg), ("git", Git)):
        if name in available:
            tools.append(cls(base / name))
    rows = {tool.name: Row() for tool in tools}
    for tool in tools:
        tool.init()
    for number in rounds:
        for tool in tools:
            run = tool.backup(export)
            row = rows[tool.name]
            row.rounds.append(run.seconds)
            row.sizes.append(tool.size())
            row.peak_kib = max(row.peak_kib, run.peak_kib)
        print(f"round {number}/{total}", file=sys.stderr)
    one = sorted(export.iterdir())[len(list(export.iterdir())) // 2]
    single = base / "single"
    single.mkdir()
    shutil.copy2(one, single / one.name)
    for tool in tools:
        _finish(tool, rows[tool.name], base, export, single / one.name)
    return rows


def _finish(tool: Tool, row: Row, base: Path, export: Path, one: Path) -> None:
    """Verify, restore the latest round (checked), and back up one tenant, for one tool."""
    if tool.name != "plain copies":
        row.extra["verify"] = tool.verify().seconds
    target = base / f"restore-{tool.name.replace(' ', '-')}"
    restorer: Callable[[Path], Measured] = tool.restore
    if isinstance(tool, Casbak):
        restorer = partial(restore_casbak, tool)
    elif isinstance(tool, Restic):
        restorer = partial(restore_restic, tool)
    elif isinstance(tool, Borg):
        restorer = partial(restore_borg, tool)
    row.extra["restore"] = restorer(target).seconds
    row.extra["restored_ok"] = float(same_content(target, export))
    one_runs = []
    for _ in range(REPEATS):
        if isinstance(tool, Casbak):
            argv = tool.cmd("snapshot", str(one), "--operation", "tenant-update", *tool.reading)
            one_runs.append(tool.run(argv).seconds)
        else:
            one_runs.append(tool.backup(one.parent).seconds)
    row.extra["one_tenant"] = statistics.median(one_runs)
    if isinstance(tool, Git):
        row.extra["size_after_gc"] = (tool.gc(), tool.size())[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument(
        "--corpus",
        type=Path,
        default=DEFAULT_CORPUS,
        help="The identity-tenant corpus archive (its workload is skipped when missing).",
    )
    parser.add_argument(
        "--corpus-rounds", type=int, help="Replay only this many rounds (default: all)."
    )
    parser.add_argument(
        "--workloads", default="synthetic,corpus", help="Comma-separated: synthetic, corpus."
    )
    args = parser.parse_args()
    wanted = set(args.workloads.split(","))
    available = ensure_installed(["restic", "borg", "git"])
    outcomes = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("CASBAK_BENCH_DIR")) as scratch:
        base = Path(scratch)
        if "synthetic" in wanted:
            export = base / "synthetic" / "export"
            rounds = Workload(args.tenants).rounds(export, args.rounds)
            rows = run_workload(base / "synthetic", rounds, args.rounds, export, available)
            about = (
                f"Standard workload (`benchmarks/workload.py`): {args.tenants} tenants, "
                f"{args.rounds} rounds, ~2% edited per round with formatting noise."
            )
            outcomes.append(Outcome("Synthetic workload", about, rows, 0.5))
        if "corpus" in wanted and args.corpus.exists():
            replay = CorpusReplay(unpack(args.corpus, base / "corpus-files"))
            export = base / "corpus" / "export"
            total = args.corpus_rounds or replay.longest
            rounds = replay.rounds(export, total)
            rows = run_workload(base / "corpus", rounds, total, export, available, CORPUS_READING)
            about = (
                f"Real tenant histories (`--corpus {args.corpus.name}`, `benchmarks/corpus.py`): "
                f"{len(replay.histories)} Keycloak realm histories replayed as {total} "
                "rounds (round k holds version k of each history, or its last), each history "
                "one tenant named after its folder, files as given; "
                f"{len(replay.left_out)} histories holding a document casbak refuses "
                "(a key repeated in one object) are left out for every tool."
            )
            outcomes.append(Outcome("Corpus workload", about, rows, 0.7))
        elif "corpus" in wanted:
            print(f"corpus workload skipped: {args.corpus} is missing", file=sys.stderr)
        startup_runs = [
            measure_rss([sys.executable, "-c", "import casbak.cli"], env=ENV).seconds
            for _ in range(REPEATS)
        ]
    report(outcomes, statistics.median(startup_runs))


def _incremental(row: Row) -> list[float]:
    return row.rounds[1:] or row.rounds


def _added(row: Row) -> float:
    steps = [b - a for a, b in zip(row.sizes, row.sizes[1:], strict=False)]
    return statistics.median(steps) if steps else float(row.sizes[0])


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def table(rows: dict[str, Row]) -> list[str]:
    """Every tool's figures as one Markdown table."""
    lines = [
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
            f"| {name} | {sum(row.rounds):.2f} | {statistics.median(_incremental(row)):.3f} | "
            f"{_p95(_incremental(row)):.3f} | {size_text} | {_added(row):.0f} | "
            f"{row.extra.get('verify', float('nan')):.3f} | {row.extra['restore']:.3f} | "
            f"{'yes' if row.extra['restored_ok'] else 'NO'} | {row.extra['one_tenant']:.3f} | "
            f"{row.peak_kib / 1024:.0f} |"
        )
    return lines


def goals(outcome: Outcome, startup: float) -> list[str]:
    """Each goal of the performance issue as a ratio from this run, marked met or not."""
    rows = outcome.rows
    casbak = rows["casbak"]
    lines: list[str] = []

    def goal(text: str, ours: float, theirs_name: str, pick: Callable[[Row], float]) -> None:
        name, _, limit_text = theirs_name.partition("<=")
        limit = float(limit_text)
        if name.strip() not in rows and name.strip() != "start-up":
            lines.append(f"- {text}: not measured ({name.strip()} unavailable)")
            return
        theirs = startup if name.strip() == "start-up" else pick(rows[name.strip()])
        ratio = ours / theirs if theirs else float("inf")
        verdict = "met" if ratio <= limit else "NOT met"
        label = GOAL_LABELS.get(name.strip(), name.strip())
        lines.append(f"- {text}: {ratio:.2f} x {label} (goal <= {limit:g}) — **{verdict}**")

    size = float(casbak.sizes[-1])
    incremental = statistics.median(_incremental(casbak))
    git_size = f"git <= {outcome.size_goal_vs_git}"
    goal("repository bytes", size, git_size, lambda r: r.extra["size_after_gc"])
    for other in ("restic", "borg"):
        goal("repository bytes", size, f"{other} <= 0.15", lambda r: float(r.sizes[-1]))
    goal("bytes added per round", _added(casbak), "restic <= 0.1", _added)
    goal("restore latest round", casbak.extra["restore"], "git <= 1.0", _restore)
    goal("incremental round (median)", incremental, "git <= 1.3", _median_round)
    goal("incremental round (median)", incremental, "restic <= 0.25", _median_round)
    goal(
        "one tenant into the finished repository", casbak.extra["one_tenant"], "borg <= 0.25", _one
    )
    goal(
        "one tenant into the finished repository",
        casbak.extra["one_tenant"],
        "start-up <= 1.3",
        _one,
    )
    goal("verify (all data)", casbak.extra["verify"], "git <= 1.0", _verify)
    goal("verify (all data)", casbak.extra["verify"], "restic <= 0.2", _verify)
    encrypted = (
        (
            EncryptedCasbak.name,
            "encrypted repository",
            "each command derives the key from the password: Argon2id, 64 MiB",
        ),
        (
            RememberedKeyCasbak.name,
            "encrypted repository with its key remembered",
            "`casbak key remember`: no derivation per command",
        ),
    )
    for name, what, how in encrypted:
        row = rows.get(name)
        if row is None:
            continue
        size_ratio = row.sizes[-1] / casbak.sizes[-1]
        round_ratio = statistics.median(_incremental(row)) / incremental
        lines.append(
            f"- {what} (issue 16, goal <= 1.1 each): {size_ratio:.2f} x the plain one's bytes, "
            f"{round_ratio:.2f} x its incremental round ({how})"
        )
    return lines


GOAL_LABELS = {
    "git": "git",
    "restic": "restic",
    "borg": "borg",
    "start-up": "bare start-up",
}


def _restore(row: Row) -> float:
    return row.extra["restore"]


def _median_round(row: Row) -> float:
    return statistics.median(_incremental(row))


def _one(row: Row) -> float:
    return row.extra["one_tenant"]


def _verify(row: Row) -> float:
    return row.extra["verify"]


def report(outcomes: list[Outcome], startup: float) -> None:
    """Both workloads' tables and goals into RESULTS.md (its compare section) and stdout."""
    lines = [
        "# casbak against other tools",
        "",
        "Every tool backs up the same export folder after each round, as whole processes, in "
        "one run on one machine; then each verifies all data (`git fsck --full`, `restic "
        "check --read-data`, `borg check --verify-data`), restores the latest round (checked "
        "against the export) and backs up one tenant into the finished repository (median of "
        f"{REPEATS}). git's size is after `gc --aggressive`; the size goals compare with it. "
        "Regenerate with `make bench-compare`. Times in seconds, sizes in bytes.",
        "",
        f'Bare start-up `python -c "import casbak.cli"`: {startup:.3f} s.',
    ]
    for outcome in outcomes:
        lines += ["", f"## {outcome.title}", "", outcome.about, "", *table(outcome.rows)]
        lines += ["", f"### Goals ({outcome.title.lower()})", "", *goals(outcome, startup)]
    lines += [
        "",
        "Growth goals are measured by `python -m benchmarks.growth` (its section below).",
        "",
    ]
    write_section(RESULTS, COMPARE_SECTION, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
