"""The lock files pin every declared dependency (make demo installs only the run lock)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _pinned(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    return {
        name.lower().replace("_", "-"): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.MULTILINE)
    }


def _declared(requirements: list[str]) -> list[str]:
    return [re.split(r"[<>=!~\[; ]", item, maxsplit=1)[0].lower() for item in requirements]


def test_the_run_lock_pins_every_runtime_dependency_at_the_full_locks_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    run, full = _pinned("requirements-run.lock"), _pinned("requirements.lock")
    for name in _declared(project["dependencies"]):
        assert name in run, f"{name} is a runtime dependency missing from requirements-run.lock"
        assert run[name] == full.get(name), f"{name}: the two locks pin different versions"


def test_the_full_lock_pins_every_development_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    full = _pinned("requirements.lock")
    for name in _declared(project["dependencies"] + project["optional-dependencies"]["dev"]):
        assert name in full, f"{name} is missing from requirements.lock"
