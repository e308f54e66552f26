"""The README names everything a user meets (issue 17 item 15): every environment variable
casbak reads, every verify finding kind, every command's JSON shape.

Variables and kinds are collected from the source, so a new one fails here
until the README names it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from casbak.cli import cli
from casbak.provenance import CI_VARIABLES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SOURCES = sorted((ROOT / "casbak").rglob("*.py"))
KIND = re.compile(r"[a-z]+(-[a-z]+)+|symlink")


def _trees() -> Iterator[tuple[ast.Module, dict[str, str]]]:
    """Each module's tree with its module-level string constants (NAME = "text")."""
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name) and isinstance(node.value.value, str)
        }
        yield tree, constants


def _text(node: ast.expr | None, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def _is_environ(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def environment_variables() -> set[str]:
    """Every variable casbak's code reads: os.environ[...]/.get, getenv, `in os.environ`,
    click's envvar=, and the CI variables provenance records."""
    found = {variable for variable, _ in CI_VARIABLES}
    for tree, constants in _trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                reads = isinstance(func, ast.Attribute) and (
                    (func.attr == "get" and _is_environ(func.value)) or func.attr == "getenv"
                )
                if reads and node.args:
                    found.add(_text(node.args[0], constants) or "?")
                for keyword in node.keywords:
                    if keyword.arg == "envvar":
                        found.add(_text(keyword.value, constants) or "?")
            elif isinstance(node, ast.Subscript) and _is_environ(node.value):
                found.add(_text(node.slice, constants) or "?")
            elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
                found.add(_text(node.left, constants) or "?")
    return found


def finding_kinds() -> set[str]:
    """Every kind a finding, storage issue or catalog problem is made with (first argument or
    kind=)."""
    found: set[str] = set()
    for tree, constants in _trees():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or _name(node.func) not in {
                "Finding",
                "StorageIssue",
                "Problem",  # the catalog check's, reported as findings of the same kind
            }:
                continue
            kind = node.args[0] if node.args else None
            for keyword in node.keywords:
                if keyword.arg == "kind":
                    kind = keyword.value
            text = _text(kind, constants)
            if text is not None:
                found.add(text)
    return found


def test_collectors_find_what_is_known() -> None:
    # The collectors themselves: what was undocumented in issue 17 is among what they find.
    assert {"CASBAK_DEBUG", "CASBAK_REPO", "CASBAK_CACHE_DIR", "NO_COLOR"} <= (
        environment_variables()
    )
    kinds = finding_kinds()
    assert {"bad-bundle", "corrupt-pack", "stale-catalog", "corrupt-catalog", "symlink"} <= kinds
    assert all(KIND.fullmatch(kind) for kind in kinds), kinds


def test_every_environment_variable_is_in_the_readme() -> None:
    variables = environment_variables()
    assert "?" not in variables, "an environment variable read under a computed name"
    missing = sorted(v for v in variables if f"`{v}`" not in README)
    assert missing == []


def test_every_finding_kind_is_in_the_readme() -> None:
    verify_section = README[README.index("### verify") :]
    missing = sorted(k for k in finding_kinds() if f"`{k}`" not in verify_section)
    assert missing == []


def test_every_command_has_its_json_shape_in_the_readme() -> None:
    start = README.index("### JSON output")
    section = README[start : README.index("\n## ", start)]
    missing = sorted(name for name in cli.commands if f"`{name}`" not in section)
    assert missing == []


def test_every_command_is_in_the_commands_table() -> None:
    missing = sorted(name for name in cli.commands if f"`casbak {name}" not in README)
    assert missing == []


def test_shell_completion_is_documented_for_each_shell() -> None:
    for shell in ("bash", "zsh", "fish"):
        assert f"_CASBAK_COMPLETE={shell}_source casbak" in README
