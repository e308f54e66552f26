"""The find --where query language: meaning, errors, limits, properties, real documents."""

from __future__ import annotations

import operator
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casbak.canonical import decode_json
from casbak.errors import InputError, QueryError
from casbak.query import Query, compile_query, format_query, parse_query
from casbak.querysyntax import (
    ANY_ELEMENT,
    MAX_NESTING,
    MAX_PATH_STEPS,
    And,
    AnyElement,
    Condition,
    Node,
    Not,
    Or,
)
from casbak.tenantdocs import split_tenants
from tests.conftest import DESCOPE

DOC = decode_json(
    """{
      "id": "T2abc", "name": "Acme Zürich", "enforceSSO": true, "disabled": false,
      "seats": 2500, "ratio": 0.5, "one": 1, "onef": 1.0, "nothing": null, "zero": 0,
      "big": 123456789012345678901234567890, "negzero": -0.0,
      "selfProvisioningDomains": ["acme.com", "acme.de"], "empty": [],
      "mixed": [1, 2.0, true, null, "1"],
      "customAttributes": {"my attr": "x", "plan": "enterprise", "ß-key": 3, "say \\"hi\\"": "yes",
                           "2fa": true, "not": "a member named like a keyword"},
      "ssoConfigs": [{"enabled": false}, {"enabled": true, "name": "okta"}, {"name": "azure"}],
      "matrix": [[1, 2], [3, 4]], "obj": {"a": 1}, "emoji": "😀 party", "ids": ["T2a", "U2b"]
    }""".encode(),
    "doc",
)


def matches(query: str, document: Any = DOC) -> bool:
    return compile_query(query).matches(document)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # == and != : the JSON type counts, as in the canonical form
        ("$.enforceSSO == true", True),
        ("$.enforceSSO == false", False),
        ("$.disabled == false", True),
        ('$.name == "Acme Zürich"', True),
        ('$.name == "Acme Z\\u00fcrich"', True),
        ('$.emoji == "\\ud83d\\ude00 party"', True),
        ('$.name == "acme zürich"', False),
        ("$.seats == 2500", True),
        ("$.seats == 2500.0", False),
        ("$.onef == 1.0", True),
        ("$.onef == 1", False),
        ("$.one == 1", True),
        ("$.one == true", False),
        ("$.enforceSSO == 1", False),
        ('$.one == "1"', False),
        ("$.zero == false", False),
        ("$.nothing == null", True),
        ("$.zero == null", False),
        ("$.big == 123456789012345678901234567890", True),
        ("$.negzero == 0.0", True),
        ("$.obj == 1", False),
        ("$.empty == null", False),
        ("$.seats != 2500", False),
        ("$.seats != 2501", True),
        ('$.seats != "2500"', True),
        ("$.onef != 1", True),
        ("$.nothing != null", False),
        ("$.missing != 1", False),
        # ordering: two numbers or two strings, anything else false
        ("$.seats > 2000", True),
        ("$.seats >= 2500", True),
        ("$.seats > 2500", False),
        ("$.seats < 2500.5", True),
        ("$.seats <= 2500.0", True),
        ("$.ratio < 1", True),
        ("$.big > 1e29", True),
        ("$.zero >= -0.0", True),
        ('$.id > "T2"', True),
        ('$.id < "T2abd"', True),
        ('$.id <= "T2abc"', True),
        ('$.name > "Acme Z"', True),
        ('$.seats > "1"', False),
        ("$.id > 1", False),
        ("$.enforceSSO > 0", False),
        ("$.nothing < 1", False),
        ("$.selfProvisioningDomains > 0", False),
        ("$.missing < 1", False),
        # contains: array element or substring
        ('$.selfProvisioningDomains contains "acme.de"', True),
        ('$.selfProvisioningDomains contains "acme"', False),
        ('$.name contains "Zür"', True),
        ('$.name contains ""', True),
        ('$.name contains "zür"', False),
        ("$.mixed contains 1", True),
        ("$.mixed contains 2", False),
        ("$.mixed contains 2.0", True),
        ("$.mixed contains true", True),
        ("$.mixed contains false", False),
        ("$.mixed contains null", True),
        ('$.mixed contains "1"', True),
        ('$.empty contains "x"', False),
        ('$.customAttributes contains "plan"', False),
        ("$.seats contains 2500", False),
        ('$.seats contains "25"', False),
        # ~: regular expression search on strings
        ('$.name ~ "Acme"', True),
        ('$.name ~ "^Zürich"', False),
        ('$.name ~ "Zürich$"', True),
        ('$.name ~ "(?i)^acme z"', True),
        ('$.id ~ "^T2\\\\w+$"', True),
        ('$.id ~ "^T2\\\\d+$"', False),
        ('$.seats ~ "25"', False),
        ('$.selfProvisioningDomains ~ "acme"', False),
        ('$.selfProvisioningDomains[*] ~ "\\\\.de$"', True),
        ('$.missing ~ ""', False),
        # exists: null counts as present
        ("$.nothing exists", True),
        ("$.missing exists", False),
        ("$.customAttributes.plan exists", True),
        ("$.customAttributes.plan.deeper exists", False),
        ("$ exists", True),
        ("$.empty[*] exists", False),
        ("$.empty[0] exists", False),
        ("$.obj[0] exists", False),
    ],
)
def test_operators(query: str, expected: bool) -> None:
    assert matches(query) is expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('$.customAttributes["my attr"] == "x"', True),
        ('$.customAttributes["ß-key"] == 3', True),
        ('$.customAttributes["say \\"hi\\""] == "yes"', True),
        ('$.customAttributes["2fa"] == true', True),
        ('$.customAttributes.not == "a member named like a keyword"', True),
        ('$["customAttributes"]["plan"] == "enterprise"', True),
        ('$.customAttributes["pl\\u0061n"] == "enterprise"', True),
        ("$.ssoConfigs[0].enabled == false", True),
        ("$.ssoConfigs[1].enabled == true", True),
        ("$.ssoConfigs[3].enabled exists", False),
        ("$.ssoConfigs[*].enabled == true", True),
        ('$.ssoConfigs[*].name == "azure"', True),
        ('$.ssoConfigs[*].name == "ping"', False),
        ("$.ssoConfigs[*].enabled exists", True),
        ("$.ssoConfigs[*].missing exists", False),
        ("$.matrix[*][*] == 4", True),
        ("$.matrix[1][0] == 3", True),
        ("$.matrix[*][1] > 3", True),
        ("$.matrix[*][2] exists", False),
        ('$.selfProvisioningDomains[*] != "acme.com"', True),  # some element differs
        ('not $.selfProvisioningDomains[*] == "acme.com"', False),
        ("$.obj[*] exists", False),  # [*] is for arrays only
        ("$.name[0] exists", False),
        ('$.ids[*] ~ "^U2"', True),
    ],
)
def test_paths_odd_keys_indexes_and_any_element(query: str, expected: bool) -> None:
    assert matches(query) is expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # not > and > or
        ("not $.enforceSSO == true and $.disabled == false", False),
        ("not ($.enforceSSO == true and $.disabled == true)", True),
        ("$.enforceSSO == false and $.disabled == true or $.seats == 2500", True),
        ("$.enforceSSO == false and ($.disabled == true or $.seats == 2500)", False),
        ("$.seats == 2500 or $.enforceSSO == false and $.disabled == true", True),
        ("($.seats == 2500 or $.enforceSSO == false) and $.disabled == true", False),
        ("not not $.enforceSSO == true", True),
        ("not $.missing == 1", True),
        ("not $.missing exists", True),
        ("not $.missing != 1", True),
        ("$.a exists or $.b exists or $.seats exists", True),
        ("$.seats exists and $.name exists and $.missing exists", False),
        ("$.seats exists and $.name exists and $.id exists", True),
        ("(((($.seats == 2500))))", True),
        ("\n\t$.seats\n==\n2500\n", True),
        ('$.name=="Acme Zürich"and($.seats>1)', True),
    ],
)
def test_boolean_structure_and_precedence(query: str, expected: bool) -> None:
    assert matches(query) is expected


def test_precedence_is_visible_in_the_tree() -> None:
    a = Condition(("a",), "exists")
    b = Condition(("b",), "exists")
    c = Condition(("c",), "exists")
    assert parse_query("not $.a exists and $.b exists or $.c exists") == Or((And((Not(a), b)), c))
    assert parse_query("$.a exists or $.b exists and $.c exists") == Or((a, And((b, c))))
    assert parse_query("($.a exists and $.b exists) and $.c exists") == And((a, b, c))
    assert parse_query("$.a exists or ($.b exists or $.c exists)") == Or((a, b, c))


@pytest.mark.parametrize(
    "document", [None, True, 0, 1.5, "text", [], [{"seats": 2500}], {"seats": {"x": 1}}]
)
def test_any_document_shape_is_just_a_non_match(document: Any) -> None:
    for query in ("$.seats == 2500", "$.seats[*] == 1", "$[1].seats exists", '$.seats ~ "x"'):
        assert compile_query(query).matches(document) is False
    assert compile_query("$[0].seats == 2500").matches(document) is (document == [{"seats": 2500}])


def test_query_object_reports_text_members_and_what_a_document_needs() -> None:
    query = compile_query('$.tenant.name ~ "Acme"  and ($.settings exists or $.sso[0] exists)')
    assert query.text == '$.tenant.name ~ "Acme"  and ($.settings exists or $.sso[0] exists)'
    assert str(query) == '$.tenant.name ~ "Acme" and ($.settings exists or $.sso[0] exists)'
    assert repr(query) == f"Query({str(query)!r})"
    assert query.members == {"tenant", "settings", "sso"}
    assert query.needs_one_of == {"tenant"}
    assert compile_query("$.a exists or $.b == 1").needs_one_of == {"a", "b"}
    assert compile_query("$.a exists and $.b == 1 and $.c exists").needs_one_of == {"a"}
    assert compile_query("$.a exists and $[0] exists").needs_one_of == {"a"}
    assert compile_query("$.a exists or $[0] exists").needs_one_of is None
    assert compile_query("$.a exists or $[0] exists").members is None
    assert compile_query("not $.a exists").needs_one_of is None
    assert compile_query("not $.a exists").members == {"a"}
    assert compile_query("$ exists").members is None


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "column", "reason"),
    [
        ("", 1, 'empty query: expected a condition such as $.name == "Acme"'),
        ("   ", 4, "empty query"),
        ("$.enforceSSO ==", 16, "expected a value after '==' (a string, number, true, false or"),
        ("$.enforceSSO ==  and", 18, "expected a value after '==' (a string, number, true, false"),
        ("$.a == tru", 8, "found 'tru'"),
        ("$.a == Acme", 8, "found 'Acme'"),
        ("$.a == 'x'", 8, 'found "\'" (strings take double quotes)'),
        ("$.a = 1", 5, "expected an operator after the path (==, !=, <, <=, >, >=, contains, ~"),
        ("$.a = 1", 5, "found '=' (use '==' to compare)"),
        ("$.a", 4, "expected an operator after the path"),
        ("$.a is null", 5, "found 'is'"),
        ("$.a exists && $.b exists", 12, "found '&&' (use 'and')"),
        ("$.a exists || $.b exists", 12, "found '||' (use 'or')"),
        ("!$.a exists", 1, "found '!' (use 'not')"),
        (
            "enforceSSO == true",
            1,
            "expected a condition ('$' path, 'not' or '('), found 'enforceSSO'",
        ),
        ("$.a exists and", 15, "expected a condition ('$' path, 'not' or '('), found the end"),
        ("$.a exists or or $.b exists", 15, "found 'or'"),
        ("$.a exists )", 12, "expected 'and', 'or' or the end of the query, found ')'"),
        ("$.a exists $.b exists", 12, "expected 'and', 'or' or the end of the query"),
        (
            "($.a exists",
            12,
            "expected ')' to close the '(' at column 1, found the end of the query",
        ),
        ("(($.a exists)", 14, "expected ')' to close the '(' at column 1"),
        ("$.", 3, "expected a name after '.' (write other keys as [\"...\"])"),
        ("$.my attr == 1", 6, "expected an operator after the path"),
        ("$.ß == 1", 3, "expected a name after '.'"),
        ("$.1a == 1", 3, "expected a name after '.'"),
        ("$ .a exists", 2, "a space inside a path (paths take none)"),
        ("$.a [0] exists", 4, "a space inside a path"),
        ("$.a[ 0] exists", 5, "expected an index, '*' or a string after '[', found a space"),
        ("$.a[-1] exists", 5, "expected an index, '*' or a string after '[', found '-1'"),
        ("$.a[x] exists", 5, "found 'x'"),
        ("$.a[01] exists", 5, "index 01 has a leading zero"),
        ("$.a[1234567890123456] exists", 5, "index longer than 15 digits"),
        ("$.a[0 exists", 6, "expected ']', found a space"),
        ('$.a["k" exists', 8, "expected ']'"),
        ("$.a[*", 6, "expected ']', found the end of the query"),
        ("$.a == 01", 8, "invalid number '01'"),
        ("$.a == 1.", 8, "invalid number '1.'"),
        ("$.a == .5", 8, "found '.5'"),
        ("$.a == +1", 8, "found '+1'"),
        ("$.a == 1e", 8, "invalid number '1e'"),
        ("$.a == -", 8, "invalid number '-'"),
        ("$.a == 1and $.b exists", 8, "invalid number '1and'"),
        ("$.a == 0x10", 8, "invalid number '0x10'"),
        ("$.a == 1e999", 8, "number 1e999 is too large"),
        ("$.a == " + "9" * 5000, 8, "number has too many digits"),
        ('$.a == "abc', 8, "string has no closing '\"'"),
        ('$.a == "abc\\"', 8, "string has no closing '\"'"),
        ('$.a == "a\\x"', 10, "invalid escape '\\x' in a string"),
        ('$.a == "a\\u12"', 10, "invalid escape '\\u' in a string"),
        ('$.a == "a\\', 10, "invalid escape '\\' in a string"),
        ('$.a == "a\tb"', 10, "control character in a string (write it as an escape)"),
        ('$.a == "\\ud800"', 8, "string holds half a surrogate pair"),
        ('$.a == "\\ude00\\ud83d"', 8, "string holds half a surrogate pair"),
        ("$.a < true", 7, "'<' compares numbers or strings, not true"),
        ("$.a >= null", 8, "'>=' compares numbers or strings, not null"),
        ("$.a ~ 1", 7, "'~' needs a regular expression in a string, found 1"),
        ("$.a ~ null", 7, "'~' needs a regular expression in a string, found null"),
        (
            '$.a ~ "("',
            7,
            "invalid regular expression: missing ), unterminated subpattern at position 0",
        ),
        ('$.a ~ "[a-"', 7, "invalid regular expression: unterminated character set"),
        (
            '$.a ~ "a**"',
            7,
            "invalid regular expression: multiple repeat at position 2 of the pattern",
        ),
        ('$.a ~ "a{99999999999}"', 7, "invalid regular expression: a repeat count or nesting"),
        ("$.a contains", 13, "expected a value after 'contains'"),
        ("$.a exists exists", 12, "found 'exists'"),
        ("$.a existsx", 5, "found 'existsx'"),
        ("$.seats > $.other", 11, "expected a value after '>' (a string, number, true, false or"),
        ("not", 4, "expected a condition"),
        ("()", 2, "expected a condition ('$' path, 'not' or '('), found ')'"),
        ("$.a == 1 )", 10, "found ')'"),
        ("$.a == \u00a0 1", 8, "found '\\xa0'"),
    ],
)
def test_errors_name_the_problem_and_its_column(query: str, column: int, reason: str) -> None:
    with pytest.raises(QueryError) as caught:
        compile_query(query)
    error = caught.value
    assert isinstance(error, InputError)
    assert error.exit_code == 1
    assert error.column == column
    assert error.line is None
    assert reason in error.reason
    assert str(error) == f"bad query at column {column}: {error.reason}"
    assert "\n" not in str(error)


def test_brief_example_message_in_full() -> None:
    with pytest.raises(QueryError) as caught:
        compile_query("$.enforceSSO ==")
    assert str(caught.value) == (
        "bad query at column 16: expected a value after '==' "
        "(a string, number, true, false or null), found the end of the query"
    )


def test_errors_in_a_query_of_several_lines_name_line_and_column() -> None:
    with pytest.raises(QueryError) as caught:
        compile_query('$.a exists and\n  ($.b == "x"\n   or $.c = 1)')
    assert str(caught.value).startswith("bad query at line 3, column 11: expected an operator")
    with pytest.raises(QueryError) as caught:
        compile_query("(\n$.a exists")
    assert str(caught.value) == (
        "bad query at line 2, column 11: expected ')' to close the '(' at line 1, column 1, "
        "found the end of the query"
    )


def test_nesting_and_path_length_are_limited_without_recursion_errors() -> None:
    deep = "(" * MAX_NESTING + "$.a exists" + ")" * MAX_NESTING
    assert matches(deep, {"a": 1})
    assert matches("not " * MAX_NESTING + "$.a exists", {"a": 1})
    with pytest.raises(QueryError, match=r"column 65: nested deeper than 64 levels"):
        compile_query("(" * (MAX_NESTING + 1) + "$.a exists" + ")" * (MAX_NESTING + 1))
    with pytest.raises(QueryError, match=r"column 65: nested deeper"):
        compile_query("(" * 100_000)
    with pytest.raises(QueryError, match=r"nested deeper"):
        compile_query("not " * 100_000 + "$.a exists")
    long_path = "$" + ".a" * MAX_PATH_STEPS
    document: Any = 1
    for _ in range(MAX_PATH_STEPS):
        document = {"a": document}
    assert matches(long_path + " == 1", document)
    with pytest.raises(QueryError, match=r"column 1: path longer than 64 steps"):
        compile_query(long_path + ".a == 1")
    wide = " or ".join(f"$.k{i} == {i}" for i in range(5000))
    assert matches(wide, {"k4999": 4999})
    assert not matches(wide, {"k4999": 1})


# --- properties ---------------------------------------------------------------------------

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKENS = [
    "$", ".a", ".b", ".not", "[0]", "[1]", "[*]", '["k y"]', "[", "]", "(", ")", "==", "!=",
    "<", "<=", ">", ">=", "~", "=", "!", "&&", "contains", "exists", "and", "or", "not",
    '"x"', '"("', '"\\u00e9"', '"\\ud800"', '"', "\\", "1", "-0", "1.5e3", "01", "1e999", "true",
    "false", "null", "tru", "'x'", " ", "\n", "\t", "é", "\x00", "\ud800",
]  # fmt: skip
query_like = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(TOKENS), max_size=16).map("".join),
    st.lists(st.sampled_from(TOKENS), max_size=16).map(" ".join),
)


@PROPERTY
@given(query_like)
def test_any_text_compiles_or_fails_with_one_line_query_error(text: str) -> None:
    try:
        query = compile_query(text)
    except QueryError as error:
        assert "\n" not in str(error)
        assert str(error).startswith("bad query at ")
        line = error.line or 1
        assert 1 <= line <= text.count("\n") + 1
        assert 1 <= error.column <= len(text.split("\n")[line - 1]) + 1
        return
    assert isinstance(query, Query)
    assert isinstance(query.matches({"a": [1], "b": {"k y": "x"}}), bool)


KEYS = ["a", "b", "k y", "é", "not", ""]
json_documents = st.recursive(
    st.none() | st.booleans() | st.sampled_from([0, 1, 2, -1, 1.0, 2.5, -0.0, 10**20])
    | st.sampled_from(["", "x", "xy", "a", "é", "1"]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
    max_leaves=12,
)  # fmt: skip
literals = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, 2, -1, 1.0, 2.5, -0.0, 10**20]),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "x", "a", "é", "1"]),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=6),
)
steps = st.lists(st.sampled_from(KEYS) | st.integers(0, 2) | st.just(ANY_ELEMENT), max_size=4).map(
    tuple
)


@st.composite
def conditions(draw: st.DrawFn) -> Condition:
    path = draw(steps)
    op = draw(st.sampled_from(["exists", "==", "!=", "<", "<=", ">", ">=", "contains", "~"]))
    if op == "exists":
        return Condition(path, op)
    if op == "~":
        pattern = draw(st.sampled_from(["", "x", "^a", "y$", "(?i)X", "[é1]", "\\d"]))
        return Condition(path, op, pattern)
    value = draw(literals)
    if op in ("<", "<=", ">", ">=") and (value is None or isinstance(value, bool)):
        value = draw(st.sampled_from([0, 1.5, "x"]))
    return Condition(path, op, value)


def flat(kind: type[And] | type[Or], operands: list[Node]) -> Node:
    out: list[Node] = []
    for node in operands:
        out.extend(node.operands if isinstance(node, kind) else [node])
    return kind(tuple(out))


trees = st.recursive(
    conditions(),
    lambda inner: (
        inner.map(Not)
        | st.lists(inner, min_size=2, max_size=3).map(lambda ops: flat(And, ops))
        | st.lists(inner, min_size=2, max_size=3).map(lambda ops: flat(Or, ops))
    ),
    max_leaves=8,
)


def values_at(document: Any, path: tuple[Any, ...]) -> list[Any]:
    """Reference walk: every value the path reaches, breadth first."""
    found = [document]
    for step in path:
        following: list[Any] = []
        for value in found:
            if isinstance(step, AnyElement):
                following.extend(value if type(value) is list else [])
            elif isinstance(step, int):
                if type(value) is list and step < len(value):
                    following.append(value[step])
            elif type(value) is dict and step in value:
                following.append(value[step])
        found = following
    return found


def same_json(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def holds(op: str, value: Any, literal: Any) -> bool:
    """Reference meaning of one comparison, written from the docs, not from the module."""
    if op == "exists":
        return True
    if op in ("==", "!="):
        return same_json(value, literal) is (op == "==")
    if op == "contains":
        if type(value) is list:
            return any(same_json(e, literal) for e in value)
        return type(value) is str and type(literal) is str and literal in value
    if op == "~":
        return type(value) is str and re.search(literal, value) is not None
    numbers = type(value) in (int, float) and type(literal) in (int, float)
    strings = type(value) is str and type(literal) is str
    return (numbers or strings) and ORDER[op](value, literal)


def reference(node: Node, document: Any) -> bool:
    if isinstance(node, Condition):
        return any(holds(node.op, v, node.value) for v in values_at(document, node.steps))
    if isinstance(node, Not):
        return not reference(node.operand, document)
    results = [reference(n, document) for n in node.operands]
    return all(results) if isinstance(node, And) else any(results)


@PROPERTY
@given(trees)
def test_format_then_parse_gives_the_same_tree(tree: Node) -> None:
    text = format_query(tree)
    again = parse_query(text)
    assert again == tree
    assert format_query(again) == text  # also catches 1 vs 1.0 vs true, which == would hide


@PROPERTY
@given(trees, st.lists(json_documents, min_size=1, max_size=5))
def test_compiled_closures_agree_with_a_reference_evaluator(
    tree: Node, documents: list[Any]
) -> None:
    query = compile_query(format_query(tree))
    for document in documents:
        assert query.matches(document) is reference(tree, document)


@PROPERTY
@given(trees, json_documents)
def test_a_document_lacking_every_needed_member_never_matches(tree: Node, document: Any) -> None:
    query = compile_query(format_query(tree))
    if query.needs_one_of is None:
        return
    if not isinstance(document, dict) or not query.needs_one_of & document.keys():
        assert query.matches(document) is False
    if query.members is not None and isinstance(document, dict):
        # Only the members the query reads decide it.
        kept = {k: v for k, v in document.items() if k in query.members}
        assert query.matches(kept) is query.matches(document)


# --- real Descope documents -------------------------------------------------------------


def load(name: str) -> Any:
    return decode_json((DESCOPE / name).read_bytes(), name)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("$.tenant.enforceSSO == true", True),
        ('$.tenant.authType == "saml"', True),
        (
            "$.tenant.customAttributes.seats >= 2500 and $.tenant.customAttributes.hipaa == false",
            True,
        ),
        ('$.tenant.customAttributes.featureFlags contains "scim"', True),
        ('$.tenant.selfProvisioningDomains contains "acme.ch"', True),
        ('$.tenant.selfProvisioningDomains[*] ~ "\\\\.(de|fr)$"', True),
        ('$.tenant.enforceSSOExclusions[*] ~ "^U2"', True),
        ('$.tenant.roleInheritance == "userOnly"', True),
        ("$.settings.ssoSetupSuiteSettings.disabledFeatures.oidc == true", True),
        (
            '$.settings.sessionTokenExpirationUnit == "minutes"'
            " and $.settings.sessionTokenExpiration <= 10",
            True,
        ),
        ('$.sso[*].saml.idpCertificate ~ "^-----BEGIN CERTIFICATE-----\\n"', True),
        ('$.sso[*].saml.groupsMapping[*].role.name == "Tenant Admin"', True),
        ("$.sso[*].saml.attributeMapping.customAttributes.department exists", True),
        ('$.sso[*].oidc.clientSecret != ""', False),
        ('$.sso[0].oidc.grantType == "authorization_code"', True),
        ("$.sso[*].saml.lastSuccessTestTime > 1700000000", True),
        ("not $.tenant.disabled == true", True),
        ("$.tenant.name exists and not $.tenant.parent exists", False),
    ],
)
def test_queries_on_the_composite_example(query: str, expected: bool) -> None:
    assert matches(query, load("large_tenant_composite.json")) is expected


def test_queries_over_the_load_all_tenants() -> None:
    tenants = dict(split_tenants(load("load_all_response.json"), "load_all_response.json"))
    assert len(tenants) == 2

    def ids(query: str) -> list[str]:
        compiled = compile_query(query)
        return sorted(tid for tid, doc in tenants.items() if compiled.matches(doc))

    assert ids("$.enforceSSO == true") == ["acme-corp-emea"]
    assert ids("$.enforceSSO == false") == ["T2qW8rZt1mXc4VbN7kLp0aSd3Fg"]
    assert ids("not $.enforceSSO == true") == ["T2qW8rZt1mXc4VbN7kLp0aSd3Fg"]
    assert ids("$.parent exists") == ["acme-corp-emea"]
    assert ids("not $.parent exists") == ["T2qW8rZt1mXc4VbN7kLp0aSd3Fg"]
    assert ids('$.customAttributes.plan == "enterprise"') == ["acme-corp-emea"]
    assert ids('$.name ~ "(?i)dental|acme"') == sorted(tenants)
    assert ids("$.createdTime < 1700000000") == ["acme-corp-emea"]
    assert ids('$.domains contains "acme.de" or $.authType == "none"') == sorted(tenants)
    assert ids("$.domains[0] exists") == ["acme-corp-emea"]
    small = load("small_tenant.json")
    assert compile_query('$.selfProvisioningDomains[*] == "bluebirddental.com"').matches(small)
    assert compile_query("$.customAttributes == null").matches(small) is False


def test_queries_on_the_sso_and_settings_examples() -> None:
    sso = load("large_tenant_sso.json")
    assert matches('$.saml.spACSUrl ~ "^https://api\\\\.descope\\\\.com/"', sso)
    assert matches('$.saml.idpAdditionalCertificates[*] ~ "CERTIFICATE"', sso) is bool(
        sso["saml"].get("idpAdditionalCertificates")
    )
    assert matches('$.oidc.scope contains "openid"', sso) is ("openid" in sso["oidc"]["scope"])
    settings_doc = load("large_tenant_settings.json")
    assert matches("$.JITDisabled == false and $.enableInactivity == true", settings_doc)
    assert matches("$.inactivityTime == 60.0", settings_doc) is False


def test_readme_query_examples_compile_and_the_grammar_is_documented() -> None:
    readme = (DESCOPE.parent.parent / "README.md").read_text()
    section = readme.split("### Query grammar for find --where", 1)[1].split("\n### ", 1)[0]
    blocks = section.split("```")[1::2]
    assert "or_expr" in blocks[0]
    examples = [line for line in blocks[1].splitlines() if line.strip()]
    assert len(examples) >= 5
    for example in examples:
        assert str(compile_query(example)) == example
