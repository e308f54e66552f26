from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casbak.canonical import (
    MAX_DEPTH,
    canonicalize,
    canonicalize_untrusted,
    decode_canonical,
    decode_json,
    pretty,
)
from casbak.errors import InputError
from casbak.ids import hash_bytes

GOLDEN = json.loads((Path(__file__).parent / "golden" / "canonical_vectors.json").read_text())


@pytest.mark.parametrize("vector", GOLDEN, ids=[v["name"] for v in GOLDEN])
def test_golden_vectors_pin_bytes_and_digest(vector: dict[str, str]) -> None:
    canonical = canonicalize(decode_json(vector["input"].encode(), vector["name"]))
    assert canonical == vector["canonical"].encode()
    assert hash_bytes(canonical) == vector["blake3"]


def test_numbers_keep_their_type_and_size() -> None:
    value = decode_json(b'{"i": 1, "f": 1.0, "big": 123456789012345678901234567890}', "x")
    assert type(value["i"]) is int
    assert type(value["f"]) is float
    assert value["big"] == 123456789012345678901234567890
    assert canonicalize(value) == b'{"big":123456789012345678901234567890,"f":1.0,"i":1}'


def test_lists_are_never_reordered() -> None:
    assert canonicalize(decode_json(b'{"groupsPriority": ["b", "a", "c"]}', "x")) == (
        b'{"groupsPriority":["b","a","c"]}'
    )


def test_unicode_is_not_normalized() -> None:
    nfc = canonicalize(decode_json('{"n": "\u00e9"}'.encode(), "x"))
    nfd = canonicalize(decode_json('{"n": "e\u0301"}'.encode(), "x"))
    assert nfc != nfd


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.text(st.characters(exclude_categories=["Cs"]), max_size=8), children, max_size=5
        )
    ),
    max_leaves=30,
)
json_objects = st.dictionaries(
    st.text(max_size=8).filter(lambda s: s.isprintable()), json_values, max_size=6
)


def _same_json(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(json_objects)
def test_canonical_round_trip_is_exact(value: dict[str, Any]) -> None:
    canonical = canonicalize_untrusted(value, "x")
    back = decode_canonical(canonical)
    assert _same_json(back, value)
    assert canonicalize(back) == canonical
    assert decode_json(canonical, "x") == back


@settings(max_examples=200, deadline=None)
@given(json_objects, st.randoms(use_true_random=False), st.sampled_from([None, 1, 4]))
def test_digest_ignores_key_order_and_whitespace(
    value: dict[str, Any], rng: Any, indent: int | None
) -> None:
    def shuffled(item: Any) -> Any:
        if isinstance(item, dict):
            keys = list(item)
            rng.shuffle(keys)
            return {k: shuffled(item[k]) for k in keys}
        if isinstance(item, list):
            return [shuffled(x) for x in item]
        return item

    reformatted = json.dumps(shuffled(value), indent=indent, ensure_ascii=rng.random() < 0.5)
    assert hash_bytes(canonicalize(decode_json(reformatted.encode(), "x"))) == hash_bytes(
        canonicalize_untrusted(value, "x")
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty input"),
        (b"  \n ", "empty input"),
        (b'{"a": 1,,}', "f.json:1:9: malformed JSON"),
        (b'\n{"a": ', "f.json:2:7: malformed JSON: input ends too early"),
        (b'{"a": NaN}', "malformed JSON"),
        (b'{"a": Infinity}', "malformed JSON"),
        (b'{"a": 1e999}', "number out of range"),
        (b'{"a": "\\ud800"}', "f.json:1:8: lone surrogate escape \\ud800"),
        (b'{"a": "x\\udc00"}', "lone surrogate escape \\udc00"),
        (b'{"a": "\xff"}', "not valid UTF-8 (byte 7)"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'[{"id": "t1", "n": {"x": 1, "x": 1}}]', "duplicate key 'x'"),
        (b'{"id": "t1", "x": 1, "x": 1}', "duplicate key 'x' in the object with id 't1'"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nesting deeper than 64"),
        (b"[" * 5000 + b"]" * 5000, "nesting deeper than 64"),
        (b'{"a": 1} {"b": 2}', "trailing characters"),
    ],
)
def test_bad_json_is_refused_with_position(raw: bytes, message: str) -> None:
    with pytest.raises(InputError) as caught:
        decode_json(raw, "f.json")
    assert message in str(caught.value)
    assert str(caught.value).startswith("f.json")


def test_colons_and_quotes_inside_strings_are_not_mistaken_for_keys() -> None:
    raw = b'{"a:b": "c:d\\":", "e\\\\": {"f": "]}[{"}, "g": ["::", "\\\\\\""]}'
    assert decode_json(raw, "x") == json.loads(raw)


def test_exactly_max_depth_is_accepted() -> None:
    assert decode_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, "x") is not None


def test_byte_order_mark_is_skipped() -> None:
    assert decode_json(b'\xef\xbb\xbf{"id": "x"}', "x") == {"id": "x"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": float("nan")}, "not a JSON number"),
        ({"a": float("inf")}, "not a JSON number"),
        ({1: "a"}, "is not a string"),
        ({"a": {1, 2}}, "a set is not a JSON value"),
        ({"a": b"bytes"}, "a bytes is not a JSON value"),
        ({"a": "\ud800"}, "lone surrogate"),
    ],
)
def test_untrusted_values_that_json_cannot_hold_are_refused(value: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        canonicalize_untrusted(value, "tenant")


def test_untrusted_depth_limit() -> None:
    value: Any = {"a": 1}
    for _ in range(MAX_DEPTH):
        value = {"a": [value]}
    with pytest.raises(InputError, match="nesting deeper"):
        canonicalize_untrusted(value, "tenant")


def test_pretty_keeps_sorted_order_and_values() -> None:
    canonical = canonicalize({"b": 1.0, "a": [1, 2]})
    text = pretty(canonical)
    assert text.endswith(b"\n")
    assert canonicalize(decode_canonical(text)) == canonical
    assert text.index(b'"a"') < text.index(b'"b"')


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": ' + b"1" * 5000 + b"}",
        b'{"a": ' + b"1" * 5000 + b",}",
        b"[" * 995 + b"1,,",
    ],
)
def test_inputs_beyond_the_parsers_limits_are_clear_errors(raw: bytes) -> None:
    with pytest.raises(InputError) as caught:
        decode_json(raw, "f.json")
    assert str(caught.value).startswith("f.json: ")


def test_an_integer_too_long_from_the_api_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="too long"):
        canonicalize_untrusted({"a": 10**5000}, "api")
