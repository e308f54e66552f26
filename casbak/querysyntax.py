"""Syntax of the ``find --where`` query language: tree, parser and formatter. Pure.

The grammar and the meaning are documented in `casbak.query`, which compiles the
tree this module produces. Every refusal is a `QueryError` naming one problem and
the column it is at; nothing from ``re`` or msgspec reaches the user as is.
"""

from __future__ import annotations

import math
import re
from typing import Any, NoReturn

import msgspec

from casbak.errors import QueryError

MAX_NESTING = 64
"""Deepest nesting of ``(`` and ``not``; deeper queries are refused, not a RecursionError."""

MAX_PATH_STEPS = 64
"""Longest path; documents themselves nest at most 64 deep (casbak.canonical)."""

MAX_INDEX_DIGITS = 15
"""Longest array index: far past any real array, and short enough to read as an int."""


class AnyElement(msgspec.Struct, frozen=True):
    """The ``[*]`` path step: every element of an array."""


ANY_ELEMENT = AnyElement()
Step = str | int | AnyElement


class Condition(msgspec.Struct, frozen=True):
    """``path op value``; ``value`` is UNSET for ``exists`` and a regex source for ``~``."""

    steps: tuple[Step, ...]
    op: str
    value: Any = msgspec.UNSET


class Not(msgspec.Struct, frozen=True):
    """``not operand``."""

    operand: Node


class And(msgspec.Struct, frozen=True):
    """All operands hold (the parser flattens nested ``and``)."""

    operands: tuple[Node, ...]


class Or(msgspec.Struct, frozen=True):
    """Some operand holds (the parser flattens nested ``or``)."""

    operands: tuple[Node, ...]


Node = Condition | Not | And | Or

COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")  # two-character operators first
ORDERING = frozenset(["<", "<=", ">", ">="])
OPERATORS_TEXT = "==, !=, <, <=, >, >=, contains, ~ or exists"
_KEYWORD_VALUES: dict[str, Any] = {"true": True, "false": False, "null": None}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_NUMBER_RUN = re.compile(r"[-+.0-9A-Za-z_]*")  # how far a malformed number reaches, to quote it
_DIGITS = re.compile(r"[0-9]+")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_SPACE = " \t\r\n"
_MISTAKES = {  # what people type from other languages, and what this one spells instead
    "&&": "use 'and'",
    "||": "use 'or'",
    "!": "use 'not'",
    "=": "use '==' to compare",
    "'": "strings take double quotes",
}


def parse_query(text: str) -> Node:
    """Return the syntax tree of a query (grammar: `casbak.query`).

    Raises:
        QueryError: one line naming the problem and its column.

    """
    return _Parser(text).parse()


def refuse(text: str, position: int, reason: str) -> NoReturn:
    """Raise the QueryError for ``reason`` at character ``position`` (0-based) of ``text``."""
    raise QueryError(reason, *_column_and_line(text, position))


def _column_and_line(text: str, position: int) -> tuple[int, int | None]:
    """1-based column, and line only when the query has several (as QueryError names them)."""
    column = position - text.rfind("\n", 0, position)
    return column, text.count("\n", 0, position) + 1 if "\n" in text else None


class _Parser:
    """Recursive descent over the characters; paths are read as one lexical unit."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0

    def fail(self, reason: str, at: int | None = None) -> NoReturn:
        refuse(self.text, self.pos if at is None else at, reason)

    def parse(self) -> Node:
        self.skip_space()
        if self.pos == len(self.text):
            self.fail('empty query: expected a condition such as $.name == "Acme"')
        node = self.disjunction()
        if self.pos < len(self.text):
            self.fail(f"expected 'and', 'or' or the end of the query, found {self.found()}")
        return node

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _SPACE:
            self.pos += 1

    def found(self) -> str:
        """Describe what stands at the current position, for 'expected X, found Y'."""
        if self.pos >= len(self.text):
            return "the end of the query"
        rest = self.text[self.pos :]
        for mistake, advice in _MISTAKES.items():
            if rest.startswith(mistake) and not rest.startswith(("==", "!=")):
                return f"{mistake!r} ({advice})"
        if rest[0] in _SPACE:
            return "a space (paths take none)"
        match = _WORD.match(rest) or _NUMBER_RUN.match(rest)
        token = match.group() if match and match.group() else rest[0]
        return repr(token[:24] + ("..." if len(token) > 24 else ""))

    def keyword(self, word: str) -> bool:
        match = _WORD.match(self.text, self.pos)
        if match is None or match.group() != word:
            return False
        self.pos = match.end()
        self.skip_space()
        return True

    def disjunction(self) -> Node:
        operands = [self.conjunction()]
        while self.keyword("or"):
            operands.append(self.conjunction())
        return _joined(Or, operands)

    def conjunction(self) -> Node:
        operands = [self.negation()]
        while self.keyword("and"):
            operands.append(self.negation())
        return _joined(And, operands)

    def negation(self) -> Node:
        start = self.pos
        if self.keyword("not"):
            self.enter(start)
            node: Node = Not(self.negation())
            self.depth -= 1
            return node
        if self.text.startswith("(", self.pos):
            self.enter(start)
            self.pos += 1
            self.skip_space()
            node = self.disjunction()
            if not self.text.startswith(")", self.pos):
                column, line = _column_and_line(self.text, start)
                where = f"column {column}" if line is None else f"line {line}, column {column}"
                self.fail(f"expected ')' to close the '(' at {where}, found {self.found()}")
            self.pos += 1
            self.skip_space()
            self.depth -= 1
            return node
        if self.text.startswith("$", self.pos):
            return self.condition()
        self.fail(f"expected a condition ('$' path, 'not' or '('), found {self.found()}")

    def enter(self, start: int) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.fail(f"nested deeper than {MAX_NESTING} levels of '(' and 'not'", start)

    def condition(self) -> Condition:
        steps = self.path()
        end = self.pos
        self.skip_space()
        if self.pos > end and self.text.startswith((".", "["), self.pos):
            self.fail("a space inside a path (paths take none)", end)
        op = self.operator()
        self.skip_space()
        if op == "exists":
            return Condition(steps, op)
        start = self.pos
        value = self.literal(op)
        literal_text = self.text[start : self.pos]
        if op in ORDERING and (value is None or isinstance(value, bool)):
            self.fail(f"'{op}' compares numbers or strings, not {literal_text}", start)
        if op == "~":
            if not isinstance(value, str):
                self.fail(
                    f"'~' needs a regular expression in a string, found {literal_text}", start
                )
            self.check_pattern(value, start)
        self.skip_space()
        return Condition(steps, op, value)

    def path(self) -> tuple[Step, ...]:
        start = self.pos
        self.pos += 1  # the "$"
        steps: list[Step] = []
        while self.pos < len(self.text) and self.text[self.pos] in ".[":
            if len(steps) == MAX_PATH_STEPS:
                self.fail(f"path longer than {MAX_PATH_STEPS} steps", start)
            if self.text[self.pos] == ".":
                name = _WORD.match(self.text, self.pos + 1)
                if name is None:
                    self.fail(
                        "expected a name after '.' (write other keys as [\"...\"])", self.pos + 1
                    )
                steps.append(name.group())
                self.pos = name.end()
            else:
                steps.append(self.bracket())
        return tuple(steps)

    def bracket(self) -> Step:
        self.pos += 1  # the "["
        text, at = self.text, self.pos
        step: Step
        if text.startswith("*", at):
            step = ANY_ELEMENT
            self.pos += 1
        elif text.startswith('"', at):
            step = self.string()
        elif digits := _DIGITS.match(text, at):
            if len(digits.group()) > 1 and digits.group().startswith("0"):
                self.fail(f"index {digits.group()} has a leading zero", at)
            if len(digits.group()) > MAX_INDEX_DIGITS:
                self.fail(f"index longer than {MAX_INDEX_DIGITS} digits", at)
            step = int(digits.group())
            self.pos = digits.end()
        else:
            self.fail(f"expected an index, '*' or a string after '[', found {self.found()}")
        if not text.startswith("]", self.pos):
            self.fail(f"expected ']', found {self.found()}")
        self.pos += 1
        return step

    def operator(self) -> str:
        for op in COMPARISONS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        if self.text.startswith("~", self.pos):
            self.pos += 1
            return "~"
        word = _WORD.match(self.text, self.pos)
        if word and word.group() in ("contains", "exists"):
            self.pos = word.end()
            return word.group()
        self.fail(f"expected an operator after the path ({OPERATORS_TEXT}), found {self.found()}")

    def literal(self, op: str) -> Any:
        if self.text.startswith('"', self.pos):
            return self.string()
        if self.text.startswith(("-", *"0123456789"), self.pos):
            return self.number()
        word = _WORD.match(self.text, self.pos)
        if word and word.group() in _KEYWORD_VALUES:
            self.pos = word.end()
            return _KEYWORD_VALUES[word.group()]
        self.fail(
            f"expected a value after '{op}' (a string, number, true, false or null), "
            f"found {self.found()}"
        )

    def number(self) -> int | float:
        start = self.pos
        match = _NUMBER.match(self.text, start)
        run = _NUMBER_RUN.match(self.text, start)
        end = run.end() if run else start
        if match is None or match.end() != end:
            self.fail(f"invalid number {self.text[start:end]!r}", start)
        self.pos = end
        token = match.group()
        if match.group(1) or match.group(2):
            value = float(token)
            if math.isinf(value):
                self.fail(f"number {token} is too large", start)
            return value
        try:
            return int(token)
        except ValueError:  # Python refuses to read integers of thousands of digits
            self.fail("number has too many digits", start)

    def string(self) -> str:
        """A JSON string at the current position; leaves the position after its quote."""
        text, start = self.text, self.pos
        parts: list[str] = []
        at = start + 1
        while True:
            end = at
            while end < len(text) and text[end] not in '"\\' and text[end] >= " ":
                end += 1
            parts.append(text[at:end])
            if end == len(text):
                self.fail("string has no closing '\"'", start)
            if text[end] == '"':
                break
            if text[end] != "\\":
                self.fail("control character in a string (write it as an escape)", end)
            escape = text[end + 1 : end + 2]
            if escape in _ESCAPES:
                parts.append(_ESCAPES[escape])
                at = end + 2
            elif escape == "u" and _HEX4.match(text, end + 2):
                parts.append(chr(int(text[end + 2 : end + 6], 16)))
                at = end + 6
            else:
                self.fail(f"invalid escape '\\{escape}' in a string", end)
        self.pos = end + 1
        try:  # joins \\ud83d\\ude00 into one character; a lone half cannot be in a document
            return "".join(parts).encode("utf-16-le", "surrogatepass").decode("utf-16-le")
        except UnicodeDecodeError:
            self.fail("string holds half a surrogate pair", start)

    def check_pattern(self, pattern: str, start: int) -> None:
        try:
            re.compile(pattern)
        except re.error as exc:
            where = "" if exc.pos is None else f" at position {exc.pos} of the pattern"
            self.fail(f"invalid regular expression: {exc.msg}{where}", start)
        except (OverflowError, RecursionError):
            self.fail("invalid regular expression: a repeat count or nesting is too large", start)


def _joined(kind: type[And] | type[Or], operands: list[Node]) -> Node:
    if len(operands) == 1:
        return operands[0]
    flat: list[Node] = []
    for node in operands:  # (a and b) and c is a and b and c
        flat.extend(node.operands if isinstance(node, kind) else [node])
    return kind(tuple(flat))


# --- formatting -------------------------------------------------------------------------


def format_query(node: Node) -> str:
    """Query text that parses back to the same tree, with the fewest parentheses."""
    if isinstance(node, Condition):
        text = f"{format_path(node.steps)} {node.op}"
        return text if node.op == "exists" else f"{text} {format_literal(node.value)}"
    if isinstance(node, Not):
        inner = format_query(node.operand)
        return f"not ({inner})" if isinstance(node.operand, (And, Or)) else f"not {inner}"
    if isinstance(node, And):
        return " and ".join(
            f"({format_query(n)})" if isinstance(n, Or) else format_query(n) for n in node.operands
        )
    return " or ".join(format_query(n) for n in node.operands)


def format_path(steps: tuple[Step, ...]) -> str:
    """``$`` and its steps: ``.name`` for plain names, ``["..."]`` for other keys."""
    parts = ["$"]
    for step in steps:
        if isinstance(step, AnyElement):
            parts.append("[*]")
        elif isinstance(step, int):
            parts.append(f"[{step}]")
        elif _WORD.fullmatch(step):
            parts.append(f".{step}")
        else:
            parts.append(f"[{format_literal(step)}]")
    return "".join(parts)


def format_literal(value: Any) -> str:
    """A scalar as JSON text (a float keeps its ``.`` or exponent, so it stays a float)."""
    return msgspec.json.encode(value).decode()
