r"""The query language of ``casbak find --where``: parsed once, then run on many documents. Pure.

Grammar (whitespace is spaces, tabs and newlines; it may stand between any two tokens
but never inside a path, a number or a keyword)::

    query      = or_expr
    or_expr    = and_expr { "or" and_expr }
    and_expr   = not_expr { "and" not_expr }
    not_expr   = "not" not_expr | "(" or_expr ")" | condition
    condition  = path "exists"
               | path ( "==" | "!=" | "<" | "<=" | ">" | ">=" | "contains" ) literal
               | path "~" string
    path       = "$" { "." name | "[" index "]" | "[" string "]" | "[*]" }
    name       = ( letter | "_" ) { letter | digit | "_" }         (ASCII letters and digits)
    index      = "0" | nonzero_digit { digit }                     (at most 15 digits)
    literal    = string | number | "true" | "false" | "null"

- ``string`` and ``number`` are JSON's own: a string is in double quotes with the JSON
  escapes (``\"`` ``\\`` ``\/`` ``\b`` ``\f`` ``\n`` ``\r`` ``\t`` ``\uXXXX``; a surrogate
  pair of ``\u`` escapes is one character, half a pair is refused) and no raw control
  characters; a number is ``-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?``, an integer
  without ``.`` or exponent and a float with one.
- Keywords are lowercase: ``and or not exists contains true false null``. After a ``.``
  a keyword is just a member name (``$.not``).
- ``not`` binds tighter than ``and``, which binds tighter than ``or``:
  ``not A and B or C`` is ``((not A) and B) or C``.
- A key that is not a plain name (spaces, dashes, non-ASCII, a leading digit) is written
  as a string: ``$.customAttributes["my attr"]``.
- A path alone is not a condition: write ``$.enforceSSO == true``.
- ``(`` and ``not`` nest at most 64 deep and a path has at most 64 steps.

Meaning, for a document as decoded from JSON (dict, list, str, int, float, bool, None):

- A path names the values reached by walking members of objects and indexes of arrays;
  ``[*]`` steps into every element of an array (not into an object's members). A step
  that does not fit (a member of a non-object, an index past the end, ``[*]`` of a
  non-array) reaches nothing. A condition holds when it holds for *any* value its path
  reaches, so it is false when the path reaches nothing, and ``not`` of it is true.
- ``exists`` holds when the path reaches a value, ``null`` included.
- ``==`` is JSON equality as the canonical form sees it: types must match, so ``1`` and
  ``1.0`` differ (as in ``casbak diff``), ``true`` is not ``1`` and ``"1"`` is not ``1``.
  Literals are scalars, so ``==`` on an object or an array is false. ``!=`` holds for a
  value that exists and is not ``==``: ``$.x != 1`` is false when ``$.x`` is missing, and
  ``$.a[*] != "x"`` holds when *some* element differs (for "none is", write
  ``not $.a contains "x"``).
- ``<`` ``<=`` ``>`` ``>=`` compare two numbers (an integer with a float is fine) or two
  strings (by code point); any other pair is false. A literal that is not a number or a
  string is refused, as the comparison could never hold.
- ``contains`` holds for an array with an element ``==`` to the literal, or a string
  holding the literal (a string) as a substring; anything else is false.
- ``~`` holds for a string the regular expression finds a match in (Python ``re.search``
  syntax, no flags but inline ones such as ``"(?i)acme"``). The pattern is a JSON string,
  so a regex backslash is written twice: ``"^T2\\w+$"``. Non-strings are false. An
  invalid pattern is refused when the query is compiled.

API: `compile_query` returns a `Query` whose ``matches(document)`` is a tree of closures
built once (no parsing per document; a few hundred nanoseconds for a typical condition);
``members`` and ``needs_one_of`` say which top-level members it reads and which a
document must have to match. ``str(query)`` is the query written back with the fewest
parentheses; it compiles to the same tree.

A query that does not parse raises `casbak.errors.QueryError` (an ``InputError``, exit
code 1) whose one-line message names the problem and its 1-based column:
``bad query at column 16: expected a value after '==' (...), found the end of the query``;
a query of several lines gives ``line L, column C``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from casbak.querysyntax import (
    And,
    AnyElement,
    Condition,
    Node,
    Not,
    Step,
    format_query,
    parse_query,
)

__all__ = ["Query", "compile_query", "format_query", "parse_query"]

Test = Callable[[Any], bool]

_MISSING = object()
_ORDERING = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


class Query:
    """A compiled query.

    Attributes:
        text: the query as given.
        tree: its syntax tree (`Condition`, `Not`, `And`, `Or`).
        matches: ``matches(document) -> bool``; never raises for a decoded JSON value.
        members: every top-level member the query reads, or None when it reads the
            document as a whole (a path that is ``$`` alone or starts with an index).
        needs_one_of: a document that is not an object, or that has none of these
            top-level members, cannot match, so a caller may skip it unread; None when
            there is no such set (``not``, or a path not starting with a member).

    """

    __slots__ = ("matches", "members", "needs_one_of", "text", "tree")

    def __init__(self, text: str, tree: Node) -> None:
        self.text = text
        self.tree = tree
        self.matches: Test = _compile(tree)
        self.members = _members(tree)
        self.needs_one_of = _needs(tree)

    def __str__(self) -> str:
        return format_query(self.tree)

    def __repr__(self) -> str:
        return f"Query({format_query(self.tree)!r})"


def compile_query(text: str) -> Query:
    """Parse and compile a query.

    Raises:
        QueryError: one line naming the problem and its column.

    """
    return Query(text, parse_query(text))


# --- what a query reads -----------------------------------------------------------------


def _members(node: Node) -> frozenset[str] | None:
    if isinstance(node, Condition):
        first = node.steps[0] if node.steps else None
        return frozenset([first]) if isinstance(first, str) else None
    if isinstance(node, Not):
        return _members(node.operand)
    return _union([_members(n) for n in node.operands])


def _union(parts: list[frozenset[str] | None]) -> frozenset[str] | None:
    """All the members together, or None when one part reads the whole document."""
    found: set[str] = set()
    for part in parts:
        if part is None:
            return None
        found |= part
    return frozenset(found)


def _needs(node: Node) -> frozenset[str] | None:
    if isinstance(node, Condition):
        return _members(node)
    if isinstance(node, Not):
        return None
    parts = [_needs(n) for n in node.operands]
    if isinstance(node, And):
        # Any one operand's set is a valid guarantee; the smallest skips the most.
        known = [p for p in parts if p is not None]
        return min(known, key=len) if known else None
    return _union(parts)


# --- evaluation: the tree becomes nested closures, built once ---------------------------


def _compile(node: Node) -> Test:
    if isinstance(node, Condition):
        return _compile_path(node.steps, _leaf(node.op, node.value))
    if isinstance(node, Not):
        inner = _compile(node.operand)
        return lambda document: not inner(document)
    tests = tuple(_compile(n) for n in node.operands)
    return _all(tests) if isinstance(node, And) else _any(tests)


def _all(tests: tuple[Test, ...]) -> Test:
    if len(tests) == 2:  # the common case, without a generator per document
        first, second = tests
        return lambda document: first(document) and second(document)
    return lambda document: all(each(document) for each in tests)


def _any(tests: tuple[Test, ...]) -> Test:
    if len(tests) == 2:
        first, second = tests
        return lambda document: first(document) or second(document)
    return lambda document: any(each(document) for each in tests)


def _compile_path(steps: tuple[Step, ...], leaf: Test) -> Test:
    """Wrap the leaf test in one walker per run of plain steps and one per ``[*]``."""
    test = leaf
    run: list[str | int] = []
    for step in reversed(steps):
        if isinstance(step, AnyElement):
            if run:
                test = _walk(tuple(reversed(run)), test)
                run = []
            test = _each_element(test)
        else:
            run.append(step)
    return _walk(tuple(reversed(run)), test) if run else test


def _walk(steps: tuple[str | int, ...], inner: Test) -> Test:
    if all(isinstance(step, str) for step in steps):
        return _walk_members(steps, inner)
    plan: tuple[tuple[bool, Any], ...] = tuple((isinstance(s, int), s) for s in steps)

    def test(value: Any) -> bool:
        for is_index, step in plan:
            if is_index:
                if not isinstance(value, list) or step >= len(value):
                    return False
                value = value[step]
            else:
                if not isinstance(value, dict):
                    return False
                value = value.get(step, _MISSING)
                if value is _MISSING:
                    return False
        return inner(value)

    return test


def _walk_members(keys: tuple[Any, ...], inner: Test) -> Test:
    """The usual path (``$.a.b``), a third faster without the index branch."""

    def test(value: Any) -> bool:
        for key in keys:
            if not isinstance(value, dict):
                return False
            value = value.get(key, _MISSING)
            if value is _MISSING:
                return False
        return inner(value)

    return test


def _each_element(inner: Test) -> Test:
    return lambda value: isinstance(value, list) and any(inner(e) for e in value)


def _leaf(op: str, literal: Any) -> Test:
    if op == "exists":
        return lambda value: True
    if op == "==":
        return _equals(literal)
    if op == "!=":
        equal = _equals(literal)
        return lambda value: not equal(value)
    if op == "contains":
        return _contains(literal)
    if op == "~":
        search = re.compile(literal).search
        return lambda value: isinstance(value, str) and search(value) is not None
    compare = _ORDERING[op]
    if isinstance(literal, str):
        return lambda value: isinstance(value, str) and compare(value, literal)
    return lambda value: _is_number(value) and compare(value, literal)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equals(literal: Any) -> Test:
    """Equality where the JSON type counts; ``value == literal`` first, as it rejects most."""
    if literal is None or isinstance(literal, bool):
        return lambda value: value is literal
    if isinstance(literal, float):
        return lambda value: value == literal and isinstance(value, float)
    if isinstance(literal, int):
        return lambda value: value == literal and _is_number(value) and isinstance(value, int)
    return lambda value: value == literal


def _contains(literal: Any) -> Test:
    if isinstance(literal, str):
        # `in` on a list compares with ==, exact for strings.
        return lambda value: isinstance(value, (str, list)) and literal in value
    equal = _equals(literal)
    return lambda value: isinstance(value, list) and any(equal(e) for e in value)
