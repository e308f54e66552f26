"""The backup tools compared with casbak, each driven as whole processes.

Every tool backs up the same export folder round after round; restic and
borgbackup are installed from Debian's packages when missing (and it says so).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.measure import Measured, measure_rss

ENV = {
    # Every tool runs as installed: Python tools (casbak, borg) with their
    # compiled bytecode cached, as a normal installation has it.
    **{key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"},
    "RESTIC_PASSWORD": "casbak-bench",
    "BORG_PASSPHRASE": "",
    "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
    "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
}


COMPARE_SECTION = "compare"
GROWTH_SECTION = "growth"
REPORT_SECTION = "report"
LONGRUN_SECTION = "longrun"
REASONS_SECTION = "compare-reasons"
"""Written by hand after a compare run: what the figures say; no script replaces it."""
_SECTIONS = (COMPARE_SECTION, REASONS_SECTION, LONGRUN_SECTION, GROWTH_SECTION, REPORT_SECTION)


def write_section(path: Path, name: str, text: str) -> None:
    """Replace one script's section of a results file, keeping the others' sections."""
    old = path.read_text() if path.exists() else ""
    sections = {}
    for section in _SECTIONS:
        start, end = f"<!-- {section} -->\n", f"<!-- /{section} -->\n"
        if start in old and end in old:
            sections[section] = old[old.index(start) + len(start) : old.index(end)]
    if COMPARE_SECTION not in sections and old and "<!-- " not in old:
        sections[COMPARE_SECTION] = old  # a file written before sections existed
    sections[name] = text
    path.write_text(
        "\n".join(
            f"<!-- {section} -->\n{sections[section]}<!-- /{section} -->\n"
            for section in _SECTIONS
            if section in sections
        )
    )


def ensure_installed(names: list[str]) -> list[str]:
    """Install missing Debian packages for the named tools; return those available."""
    packages = {"restic": "restic", "borg": "borgbackup", "git": "git"}
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        print(
            f"installing {', '.join(packages[m] for m in missing)} from Debian packages",
            file=sys.stderr,
        )
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *(packages[m] for m in missing)],
            check=False,
            capture_output=True,
        )
    return [name for name in names if shutil.which(name) is not None]


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


class Tool:
    name = ""

    def __init__(self, repo: Path) -> None:
        self.repo = repo

    env = ENV

    def run(self, argv: list[str], cwd: Path | None = None) -> Measured:
        result = measure_rss(argv, cwd=str(cwd) if cwd else None, env=self.env)
        if result.returncode != 0:
            raise RuntimeError(f"{self.name} failed ({result.returncode}): {' '.join(argv)}")
        return result

    def size(self) -> int:
        return folder_bytes(self.repo)

    def init(self) -> None:
        raise NotImplementedError

    def backup(self, folder: Path) -> Measured:
        raise NotImplementedError

    def verify(self) -> Measured:
        raise NotImplementedError

    def restore(self, target: Path) -> Measured:
        raise NotImplementedError


class Casbak(Tool):
    name = "casbak"

    def __init__(self, repo: Path, reading: tuple[str, ...] = ()) -> None:
        super().__init__(repo)
        self.reading = reading
        """Options of `snapshot` that say how to read the export (``--id-from-filename``)."""

    def cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "casbak", "--repo", str(self.repo), *args]

    def init(self) -> None:
        self.run(self.cmd("init"))

    def backup(self, folder: Path) -> Measured:
        return self.run(
            self.cmd("snapshot", str(folder), "--operation", "sync-apply", *self.reading)
        )

    def verify(self) -> Measured:
        return self.run(self.cmd("verify"))


class EncryptedCasbak(Casbak):
    """casbak on an encrypted repository (default key derivation, password from a file)."""

    name = "casbak encrypted"

    def cmd(self, *args: str) -> list[str]:
        password = self.repo.parent / "casbak-encrypted.password"
        return [
            sys.executable,
            "-m",
            "casbak",
            "--repo",
            str(self.repo),
            "--password-file",
            str(password),
            *args,
        ]

    def init(self) -> None:
        (self.repo.parent / "casbak-encrypted.password").write_text("casbak-bench\n")
        self.run(self.cmd("init", "--encrypt"))


class RememberedKeyCasbak(Casbak):
    """casbak encrypted, its key remembered once (`casbak key remember`): no derivation per run."""

    name = "casbak encrypted, key remembered"

    def __init__(self, repo: Path, reading: tuple[str, ...] = ()) -> None:
        super().__init__(repo, reading)
        self.env = {**ENV, "CASBAK_KEY_CACHE_DIR": str(repo.parent / "casbak-remembered-keys")}

    def init(self) -> None:
        password = self.repo.parent / "casbak-remembered.password"
        password.write_text("casbak-bench\n")
        self.run(self.cmd("init", "--encrypt", "--password-file", str(password)))
        self.run(self.cmd("key", "remember", "--for", "1d", "--password-file", str(password)))


class Restic(Tool):
    name = "restic"

    def init(self) -> None:
        self.run(["restic", "-r", str(self.repo), "init", "--repository-version", "2"])

    def backup(self, folder: Path) -> Measured:
        return self.run(
            ["restic", "-r", str(self.repo), "backup", "--compression", "auto", "--quiet", "."],
            cwd=folder,
        )

    def verify(self) -> Measured:
        return self.run(["restic", "-r", str(self.repo), "check", "--read-data"])


class Borg(Tool):
    name = "borg"

    def __init__(self, repo: Path) -> None:
        super().__init__(repo)
        self.rounds = 0

    def init(self) -> None:
        self.run(["borg", "init", "-e", "none", str(self.repo)])

    def backup(self, folder: Path) -> Measured:
        self.rounds += 1
        return self.run(
            [
                "borg",
                "create",
                "--compression",
                "zstd,3",
                f"{self.repo}::round-{self.rounds:04d}",
                ".",
            ],
            cwd=folder,
        )

    def verify(self) -> Measured:
        return self.run(["borg", "check", "--verify-data", str(self.repo)])
