"""Canonical JSON: the one byte form a tenant document is hashed and stored in.

The canonical form is the document encoded by msgspec with object keys sorted
and no whitespace. It is lossless: integers stay integers (of any size), floats
stay floats, strings are not normalized and lists keep their order. Anything
that cannot survive that round trip exactly (duplicate keys, NaN, non-string
keys, lone surrogates) is refused instead of silently changed.

This module is pure: bytes and values in, bytes and values out.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import msgspec

from casbak.errors import InputError

MAX_DEPTH = 64
"""Deepest nesting of objects and arrays accepted; real tenant documents use < 10."""

_ENCODER = msgspec.json.Encoder(order="deterministic")
_DECODER = msgspec.json.Decoder()
_BOM = b"\xef\xbb\xbf"
_EMPTY_PAIR_RE = re.compile(rb"\[\]|\{\}")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}:')
_SURROGATE_ESCAPE_RE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<![0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def canonicalize(value: Any) -> bytes:
    """Return the canonical bytes of a JSON value that came from `decode_json`."""
    return _ENCODER.encode(value)


def canonicalize_untrusted(value: Any, where: str) -> bytes:
    """Check a Python value built by a caller, then return its canonical bytes.

    Values from `decode_json` are already known to be exact JSON; values handed
    in through the Python API are walked once to refuse what JSON cannot hold.
    """
    _check_value(value, where)
    try:
        return _ENCODER.encode(value)
    except UnicodeEncodeError as exc:
        raise InputError(f"{where}: string holds a lone surrogate, not valid Unicode") from exc
    except ValueError as exc:
        # Python refuses to write integers of thousands of digits as text.
        raise InputError(f"{where}: an integer too long to write exactly") from exc


def decode_canonical(data: bytes) -> Any:
    """Decode bytes that casbak itself produced (canonical documents, manifests)."""
    return _DECODER.decode(data)


def pretty(canonical: bytes) -> bytes:
    """Indent canonical JSON for people; key order (sorted) and values are kept."""
    return msgspec.json.format(canonical, indent=2) + b"\n"


def decode_json(data: bytes, where: str) -> Any:
    """Decode JSON from outside, refusing anything that would not round-trip exactly.

    Args:
        data: the raw bytes (UTF-8, an optional BOM is skipped).
        where: a name for the input (file path, ``<stdin>``) used in errors.

    Raises:
        InputError: with ``where`` and, where known, line and column.

    """
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    if not data.strip():
        raise InputError(f"{where}: empty input, expected a JSON tenant document")
    try:
        value = _DECODER.decode(data)
    except RecursionError as exc:
        raise InputError(f"{where}: nesting deeper than {MAX_DEPTH} levels") from exc
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        # msgspec's messages change between releases; casbak finds and words
        # the fault itself and uses msgspec only to learn that there is one.
        raise InputError(_diagnose(data, where)) from exc
    structure = _structure(data)
    if _nesting_exceeds(structure.replace(b":", b""), MAX_DEPTH):
        raise InputError(f"{where}: nesting deeper than {MAX_DEPTH} levels")
    # msgspec keeps the last of duplicate keys silently; one key fewer after a
    # re-encode means the input had a duplicate.
    if isinstance(value, (dict, list)) and structure.count(b":") != _structure(
        msgspec.json.encode(value)
    ).count(b":"):
        raise InputError(_describe_duplicate_key(data, where))
    return value


class _NotExactJson(Exception):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotExactJson(f"{name} is not a JSON number")


def _refuse_out_of_range(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise _NotExactJson("number out of range (would become Infinity, not exact JSON)")
    return number


def _diagnose(data: bytes, where: str) -> str:
    """Say what is wrong with JSON that msgspec refused, and where, in casbak's words."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"{where}:{_line_col(data, exc.start)}: not valid UTF-8 (byte {exc.start})"
    surrogate = _SURROGATE_ESCAPE_RE.search(data)
    if surrogate is not None:
        return (
            f"{where}:{_line_col(data, surrogate.start())}: lone surrogate escape "
            f"{surrogate.group().decode('ascii')} is not valid Unicode"
        )
    # The standard library's parser reports a position as a number, which
    # casbak turns into its own message; its wording is never shown.
    parser = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_refuse_out_of_range)
    start = len(text) - len(text.lstrip())
    try:
        _, end = parser.raw_decode(text, start)
    except _NotExactJson as exc:
        return f"{where}: malformed JSON: {exc}"
    except json.JSONDecodeError as exc:
        offset = len(text[: exc.pos].encode("utf-8"))
        if not text[exc.pos :].strip():
            return f"{where}:{_line_col(data, len(data))}: malformed JSON: input ends too early"
        found = text[exc.pos]
        return (
            f"{where}:{_line_col(data, offset)}: malformed JSON: unexpected {found!r} "
            f"(byte {offset})"
        )
    except RecursionError:
        return f"{where}: nesting deeper than {MAX_DEPTH} levels"
    except ValueError:  # after JSONDecodeError, which is one too
        # Python refuses to convert integers of thousands of digits.
        return f"{where}: malformed JSON: a number too long to read exactly"
    if text[end:].strip():
        offset = len(text[:end].encode("utf-8"))
        offset += len(data[offset:]) - len(data[offset:].lstrip())
        return (
            f"{where}:{_line_col(data, offset)}: malformed JSON: "
            f"trailing characters after the document (byte {offset})"
        )
    return f"{where}: malformed JSON"


def _line_col(data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return f"{line}:{column}"


def _structure(valid_json: bytes) -> bytes:
    """Keep only the brackets and colons of valid JSON that stand outside strings.

    Escaped backslashes and quotes go first, so every quote left delimits a
    string; outside strings a colon only ever separates a key from its value.
    Bulk byte operations keep this near memory speed on large exports.
    """
    unescaped = valid_json.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Every other piece between quotes lies inside a string.
    return b"".join(unescaped.translate(None, _NOT_STRUCTURE).split(b'"')[::2])


def _nesting_exceeds(brackets: bytes, limit: int) -> bool:
    # Each pass removes the innermost empty pairs, so the pass count is the depth.
    for _ in range(limit):
        if not brackets:
            return False
        brackets = _EMPTY_PAIR_RE.sub(b"", brackets)
    return bool(brackets)


class _DuplicateKey(Exception):
    pass


def _describe_duplicate_key(data: bytes, where: str) -> str:
    def refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, item in pairs:
            if key in result:
                owner = dict(pairs).get("id")
                inside = f" in the object with id {owner!r}" if isinstance(owner, str) else ""
                raise _DuplicateKey(f"duplicate key {key!r}{inside}")
            result[key] = item
        return result

    try:
        json.loads(data, object_pairs_hook=refuse_duplicates)
    except _DuplicateKey as exc:
        return f"{where}: {exc} (a restored document could not equal the input)"
    return f"{where}: duplicate key in an object (a restored document could not equal the input)"


def _check_value(value: Any, where: str) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                raise InputError(f"{where}: nesting deeper than {MAX_DEPTH} levels")
            for key, child in item.items():
                if not isinstance(key, str):
                    raise InputError(f"{where}: object key {key!r} is not a string")
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                raise InputError(f"{where}: nesting deeper than {MAX_DEPTH} levels")
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InputError(f"{where}: {item!r} is not a JSON number")
        elif item is not None and not isinstance(item, (str, int)):
            raise InputError(f"{where}: a {type(item).__name__} is not a JSON value")
