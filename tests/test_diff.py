"""The field diff (casbak.diff) and the snapshot comparison built on it (casbak.snapshotdiff)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casbak import diff as diff_module
from casbak.canonical import canonicalize
from casbak.diff import Change, child_path, common_subsequence, diff_values, key_field
from casbak.errors import NotFoundError
from casbak.repository import Repository
from casbak.service import take_snapshot
from casbak.snapshotdiff import (
    DiffTotals,
    TenantStat,
    TenantStatus,
    diff_names,
    diff_snapshots,
    diff_stat,
)
from casbak.sources import documents_from_values
from tests.conftest import FakeClock, load_example

DOMAINS = ["a.com", "b.com", "c.com", "d.com", "e.com", "f.com", "g.com"]


# --- sequences of scalars --------------------------------------------------


def test_removing_the_first_of_seven_domains_is_one_change() -> None:
    assert diff_values({"domains": DOMAINS}, {"domains": DOMAINS[1:]}) == [
        Change("$.domains[0]", "removed", old="a.com")
    ]


def test_inserting_one_item_is_one_added_at_its_new_index() -> None:
    new = [*DOMAINS[:3], "x.com", *DOMAINS[3:]]
    assert diff_values(DOMAINS, new) == [Change("$[3]", "added", new="x.com")]
    assert diff_values([], ["x"]) == [Change("$[0]", "added", new="x")]


def test_removed_items_keep_old_indexes_added_items_take_new_ones() -> None:
    assert diff_values(["a", "b", "c", "d"], ["b", "c", "d", "e"]) == [
        Change("$[0]", "removed", old="a"),
        Change("$[3]", "added", new="e"),
    ]


def test_a_removal_and_an_addition_at_one_place_pair_as_changed() -> None:
    new = [*DOMAINS[:2], "x.com", *DOMAINS[3:]]
    assert diff_values(DOMAINS, new) == [Change("$[2]", "changed", old="c.com", new="x.com")]
    # Three out, one in: the first pair is a change, the rest are removals.
    assert diff_values(["k", "a", "b", "c"], ["k", "x"]) == [
        Change("$[1]", "changed", old="a", new="x"),
        Change("$[2]", "removed", old="b"),
        Change("$[3]", "removed", old="c"),
    ]


def test_types_matter_inside_sequences() -> None:
    assert diff_values([1, 2], [1.0, 2]) == [Change("$[0]", "changed", old=1, new=1.0)]
    assert diff_values([True], [1]) == [Change("$[0]", "changed", old=True, new=1)]
    assert diff_values({"a": 0.0}, {"a": -0.0}) == [Change("$.a", "changed", old=0.0, new=-0.0)]
    assert diff_values(["1"], [1]) == [Change("$[0]", "changed", old="1", new=1)]
    assert diff_values([1, 1.0, True], [1, 1.0, True]) == []


def test_objects_without_a_key_are_compared_where_they_align() -> None:
    old = [{"a": 1}, {"b": 2}, {"c": 3}]
    assert diff_values(old, [{"a": 1}, {"b": 9}, {"c": 3}]) == [
        Change("$[1].b", "changed", old=2, new=9)
    ]
    assert diff_values(old, [{"b": 2}, {"c": 3}]) == [Change("$[0]", "removed", old={"a": 1})]
    assert diff_values([[1, 2]], [[2]]) == [Change("$[0][0]", "removed", old=1)]
    assert diff_values([{"a": 1}], ["s"]) == [Change("$[0]", "changed", old={"a": 1}, new="s")]


def test_past_the_edit_limit_items_pair_by_position(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diff_module, "MAX_EDITS", 2)
    assert common_subsequence([1, 2, 3, 4], [5, 6, 7, 8]) is None
    # Equal head and tail are still found; the middle pairs by position.
    assert diff_values([0, 1, 2, 3, 9], [0, 4, 5, 6, 9]) == [
        Change("$[1]", "changed", old=1, new=4),
        Change("$[2]", "changed", old=2, new=5),
        Change("$[3]", "changed", old=3, new=6),
    ]
    assert diff_values([0, 1, 2], [3, 4, 5, 6, 0]) == [
        Change("$[0]", "changed", old=0, new=3),
        Change("$[1]", "changed", old=1, new=4),
        Change("$[2]", "changed", old=2, new=5),
        Change("$[3]", "added", new=6),
        Change("$[4]", "added", new=0),
    ]


# --- keyed arrays ----------------------------------------------------------

SSO: list[dict[str, Any]] = [
    {"id": "abc", "enabled": True, "domains": ["a.com"]},
    {"id": "def", "enabled": False},
    {"id": "ghi", "enabled": True},
]


def test_a_field_inside_a_keyed_item_is_named_by_the_key() -> None:
    new = copy.deepcopy(SSO)
    new[0]["enabled"] = False
    new[0]["domains"].append("b.com")
    assert diff_values({"ssoConfigs": SSO}, {"ssoConfigs": new}) == [
        Change('$.ssoConfigs[id="abc"].domains[1]', "added", new="b.com"),
        Change('$.ssoConfigs[id="abc"].enabled', "changed", old=True, new=False),
    ]


def test_a_pure_reorder_is_one_reordered_change() -> None:
    new = [SSO[2], SSO[0], SSO[1]]
    assert diff_values(SSO, new, "$.sso") == [
        Change("$.sso", "reordered", old=["abc", "def", "ghi"], new=["ghi", "abc", "def"])
    ]


def test_keyed_items_are_added_and_removed_by_key() -> None:
    new = [SSO[1], {"id": "new", "enabled": True}, SSO[2]]
    assert diff_values(SSO, new) == [
        Change('$[id="abc"]', "removed", old=SSO[0]),
        Change('$[id="new"]', "added", new={"id": "new", "enabled": True}),
    ]
    # Added to or emptied out of an empty array: still by key.
    assert diff_values([], SSO[:1]) == [Change('$[id="abc"]', "added", new=SSO[0])]
    assert diff_values(SSO[:1], []) == [Change('$[id="abc"]', "removed", old=SSO[0])]


def test_which_field_keys_an_array() -> None:
    by_name = [{"name": "x", "v": 1}, {"name": "y"}]
    assert key_field(by_name, by_name) == "name"
    assert diff_values(by_name, [{"name": "x", "v": 2}, {"name": "y"}]) == [
        Change('$[name="x"].v', "changed", old=1, new=2)
    ]
    sso = load_example("large_tenant_composite.json")["sso"]
    assert key_field(sso, sso) == "ssoId"
    numbered = [{"id": 7}, {"id": "7"}]
    assert key_field(numbered, numbered) == "id"
    assert diff_values(numbered, [{"id": 7, "x": 1}, {"id": "7"}]) == [
        Change("$[id=7].x", "added", new=1)
    ]
    # An id on every item wins over a name; without one, the name is used.
    assert key_field([{"id": "a", "name": "n"}], [{"id": "b", "name": "n"}]) == "id"
    assert key_field([{"id": "a", "name": "n"}], [{"name": "n"}]) == "name"
    # No key: a repeated key, a missing one, a key that is not a string or an
    # integer, scalars among the items, or nothing on either side.
    assert key_field([{"id": "a"}, {"id": "a"}], [{"id": "a"}]) is None
    assert key_field([{"id": "a"}, {"v": 1}], [{"id": "a"}]) is None
    assert key_field([{"id": True}], [{"id": True}]) is None
    assert key_field([{"id": 1.0}], [{"id": 1.0}]) is None
    assert key_field([{"id": 2**70}], [{"id": 2**70}]) is None
    assert key_field([{"id": "a"}, "a"], [{"id": "a"}]) is None
    assert key_field([], []) is None


def test_an_unkeyed_array_of_objects_falls_back_to_the_sequence_diff() -> None:
    old = [{"id": "a", "v": 1}, {"id": "a", "v": 2}]
    assert diff_values(old, [{"id": "a", "v": 1}, {"id": "a", "v": 3}]) == [
        Change("$[1].v", "changed", old=2, new=3)
    ]


def test_changing_an_items_key_is_a_removal_and_an_addition() -> None:
    assert diff_values([{"id": "a"}], [{"id": "b"}]) == [
        Change('$[id="a"]', "removed", old={"id": "a"}),
        Change('$[id="b"]', "added", new={"id": "b"}),
    ]


def test_diff_values_details() -> None:
    assert diff_values({"a": {"b": [1, {"c": 2}]}}, {"a": {"b": [1, {"c": 3}]}}) == [
        Change("$.a.b[1].c", "changed", old=2, new=3)
    ]
    assert diff_values([1], [1, 2]) == [Change("$[1]", "added", new=2)]
    assert diff_values({"a": True}, {"a": 1}) == [Change("$.a", "changed", old=True, new=1)]
    assert diff_values({"a": []}, {"a": {}}) == [Change("$.a", "changed", old=[], new={})]
    assert diff_values("x", "x") == []
    assert child_path("$", "has space") == '$["has space"]'
    assert msgspec.json.encode(Change("$.a", "added", new=1)) == (
        b'{"path":"$.a","kind":"added","new":1}'
    )


# --- properties --------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-2, 2)
    | st.sampled_from([0.0, -0.0, 1.0, 2.5])
    | st.sampled_from(["a", "b", "c"])
)


def _keyed_lists(children: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    item = st.builds(
        lambda key, field, value: {field: key, "v": value},
        st.sampled_from(["x", "y", "z", 1, 2]),
        st.sampled_from(["id", "name"]),
        children,
    )
    return st.lists(item, max_size=4, unique_by=lambda d: next(iter(d.values())))


# Small alphabets, so that two drawn values share most of their structure.
related = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(
            st.sampled_from(["a", "b", "id", "name", "odd key"]), children, max_size=4
        )
        | _keyed_lists(children)
    ),
    max_leaves=24,
)
anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(st.characters(exclude_categories=["Cs"]), max_size=5), children)
    ),
    max_leaves=30,
)

_SEGMENT = re.compile(
    r'\.(?P<member>[A-Za-z_]\w*)|\[(?P<index>\d+)\]|\[(?P<quoted>"(?:[^"\\]|\\.)*")\]'
    r'|\[(?P<field>\w+)=(?P<key>-?\d+|"(?:[^"\\]|\\.)*")\]'
)


def _segments(path: str) -> list[tuple[str, Any]]:
    assert path.startswith("$")
    out, at = [], 1
    while at < len(path):
        found = _SEGMENT.match(path, at)
        assert found, f"bad path {path!r} at {at}"
        if found["member"]:
            out.append(("member", found["member"]))
        elif found["index"]:
            out.append(("index", int(found["index"])))
        elif found["quoted"]:
            out.append(("member", json.loads(found["quoted"])))
        else:
            out.append((found["field"], json.loads(found["key"])))
        at = found.end()
    return out


def _apply(value: Any, changes: list[tuple[list[tuple[str, Any]], Change]]) -> Any:
    """Apply changes whose paths are relative to value, with the module's documented rules."""
    here = [change for segments, change in changes if not segments]
    if any(change.kind == "changed" for change in here):
        assert len(changes) == 1
        return here[0].new
    below = [(segments, change) for segments, change in changes if segments]
    if not changes:
        return value
    if isinstance(value, dict):
        result = dict(value)
        for name in {segments[0][1] for segments, _ in below}:
            inner = [(s[1:], c) for s, c in below if s[0][1] == name]
            if len(inner) == 1 and not inner[0][0] and inner[0][1].kind != "changed":
                if inner[0][1].kind == "removed":
                    del result[name]
                else:
                    result[name] = inner[0][1].new
            else:
                result[name] = _apply(result[name], inner)
        return result
    assert isinstance(value, list)
    direct = [(s[0], c) for s, c in below if len(s) == 1 and c.kind in ("added", "removed")]
    nested = [(s, c) for s, c in below if not (len(s) == 1 and c.kind in ("added", "removed"))]
    if any(kind == "index" for (kind, _), _ in direct) or any(
        s[0][0] == "index" for s, _ in nested
    ):
        elements = list(value)
        for (_, index), change in sorted(direct, key=lambda d: -d[0][1]):
            if change.kind == "removed":
                del elements[index]
        for (_, index), change in sorted(direct, key=lambda d: d[0][1]):
            if change.kind == "added":
                elements.insert(index, change.new)
        for index in sorted({s[0][1] for s, _ in nested}):
            inner = [(s[1:], c) for s, c in nested if s[0][1] == index]
            elements[index] = _apply(elements[index], inner)
        return elements
    # Keyed: removals, a reorder of the kept items, changes inside, additions at the end.
    field = (direct or [(s[0], c) for s, c in nested])[0][0][0] if below else None
    field = field or key_field(value, value)
    items = {item[field]: item for item in value} if field else {}
    removed = {key for (_, key), change in direct if change.kind == "removed"}
    order = [key for key in items if key not in removed]
    for change in here:
        assert change.kind == "reordered"
        assert sorted(map(str, change.new)) == sorted(map(str, order))
        order = list(change.new)
    for key in {s[0][1] for s, _ in nested}:
        items[key] = _apply(items[key], [(s[1:], c) for s, c in nested if s[0][1] == key])
    added = [change.new for _, change in direct if change.kind == "added"]
    return [items[key] for key in order] + added if field else value


def _normalized(value: Any) -> Any:
    """Keyed arrays in key order: where an addition lands among keyed items is not reported."""
    if isinstance(value, dict):
        return {key: _normalized(item) for key, item in value.items()}
    if isinstance(value, list):
        items = [_normalized(item) for item in value]
        field = key_field(value, value)
        if field is not None:
            items.sort(key=lambda item: (type(item[field]).__name__, item[field]))
        return items
    return value


def _canonical(value: Any) -> bytes:
    return canonicalize(value)


@settings(max_examples=300)
@given(related, related)
def test_applying_the_changes_to_old_gives_new(old: Any, new: Any) -> None:
    changes = diff_values(old, new)
    parsed = [(_segments(change.path), change) for change in changes]
    rebuilt = _apply(copy.deepcopy(old), parsed)
    assert _canonical(_normalized(rebuilt)) == _canonical(_normalized(new))


@settings(max_examples=300)
@given(related, related)
def test_no_changes_exactly_when_the_canonical_forms_are_equal(old: Any, new: Any) -> None:
    assert (diff_values(old, new) == []) == (_canonical(old) == _canonical(new))
    assert diff_values(old, old) == []
    assert diff_values(new, copy.deepcopy(new)) == []


@given(st.permutations("abcdef"), st.data())
def test_keyed_arrays_report_each_item_once_and_a_reorder_once(
    order: list[str], data: st.DataObject
) -> None:
    old = [{"id": key, "v": data.draw(scalars)} for key in "abcdef"]
    kept = [key for key in order if data.draw(st.booleans())]
    new = [{"id": key, "v": data.draw(scalars)} for key in kept]
    for key in data.draw(st.lists(st.sampled_from("uvw"), unique=True)):
        new.insert(data.draw(st.integers(0, len(new))), {"id": key})
    changes = diff_values(old, new)
    parsed = [(_segments(change.path), change) for change in changes]
    rebuilt = _apply(copy.deepcopy(old), parsed)
    assert _canonical(_normalized(rebuilt)) == _canonical(_normalized(new))
    reordered = [change for change in changes if change.kind == "reordered"]
    assert len(reordered) == (kept != sorted(kept))
    by_kind = [change.kind for change in changes]
    assert by_kind.count("removed") == 6 - len(kept)
    assert by_kind.count("added") == len(new) - len(kept)


@given(st.lists(scalars, max_size=12), st.data())
def test_one_insertion_or_removal_is_one_change(items: list[Any], data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(items)))
    extra = data.draw(scalars)
    grown = [*items[:at], extra, *items[at:]]
    (added,) = diff_values(items, grown)
    assert added.kind == "added"
    assert _canonical(grown[_segments(added.path)[0][1]]) == _canonical(extra)
    (removed,) = diff_values(grown, items)
    assert removed.kind == "removed"
    assert _canonical(grown[_segments(removed.path)[0][1]]) == _canonical(extra)


@settings(max_examples=300)
@given(anything, anything)
def test_random_json_never_crashes(old: Any, new: Any) -> None:
    for change in diff_values(old, new):
        assert change.kind in diff_module.KINDS
        assert change.path.startswith("$")
    assert diff_values(old, copy.deepcopy(old)) == []  # NaN too: it is the same value


@given(st.lists(st.integers(0, 3), max_size=10), st.lists(st.integers(0, 3), max_size=10))
def test_the_common_subsequence_is_a_longest_one(old: list[int], new: list[int]) -> None:
    longest = [[0] * (len(new) + 1) for _ in range(len(old) + 1)]
    for i, a in enumerate(old):
        for j, b in enumerate(new):
            longest[i + 1][j + 1] = (
                longest[i][j] + 1 if a == b else max(longest[i][j + 1], longest[i + 1][j])
            )
    pairs = common_subsequence(old, new)
    assert pairs is not None
    assert len(pairs) == longest[-1][-1]
    assert all(old[i] == new[j] for i, j in pairs)
    assert pairs == sorted(pairs)
    assert len({i for i, _ in pairs}) == len({j for _, j in pairs}) == len(pairs)


# --- snapshots -----------------------------------------------------------------


def _two_snapshots(repo: Repository, clock: FakeClock) -> tuple[str, str]:
    old = take_snapshot(
        repo,
        documents_from_values(
            [
                {"id": "a", "n": 1, "l": [1, 2], "sso": [{"id": "s1", "on": True}]},
                {"id": "gone", "x": 1},
                {"id": "same"},
            ],
            "x",
        ),
        clock=clock,
    )
    new = take_snapshot(
        repo,
        documents_from_values(
            [
                {"id": "a", "n": 1.0, "l": [1], "new key": True, "sso": [{"id": "s1", "on": 0}]},
                {"id": "fresh"},
                {"id": "same"},
            ],
            "x",
        ),
        clock=clock,
    )
    return old.snapshot.id, new.snapshot.id


def test_diff_snapshots(memory_repo: Repository, clock: FakeClock) -> None:
    old, new = _two_snapshots(memory_repo, clock)
    result = diff_snapshots(memory_repo, old, new)
    assert (result.old, result.new) == (old, new)
    assert result.added == ["fresh"]
    assert result.removed == ["gone"]
    assert [c.tenant_id for c in result.changed] == ["a"]
    assert result.changed[0].changes == [
        Change("$.l[1]", "removed", old=2),
        Change("$.n", "changed", old=1, new=1.0),
        Change('$["new key"]', "added", new=True),
        Change('$.sso[id="s1"].on', "changed", old=True, new=0),
    ]


def test_diff_names_and_stat(memory_repo: Repository, clock: FakeClock) -> None:
    old, new = _two_snapshots(memory_repo, clock)
    names = diff_names(memory_repo, old, new)
    assert names.tenants == [
        TenantStatus("a", "M"),
        TenantStatus("fresh", "A"),
        TenantStatus("gone", "D"),
    ]
    stat = diff_stat(memory_repo, old, new)
    assert stat.tenants == [
        TenantStat("a", "M", added=1, removed=1, changed=2),
        TenantStat("fresh", "A", added=1, removed=0, changed=0),
        TenantStat("gone", "D", added=0, removed=2, changed=0),
    ]
    assert stat.total == DiffTotals(tenants=3, added=2, removed=3, changed=2)
    assert diff_stat(memory_repo, old, old).total == DiffTotals(0, 0, 0, 0)


def test_only_the_chosen_tenants(memory_repo: Repository, clock: FakeClock) -> None:
    old, new = _two_snapshots(memory_repo, clock)
    result = diff_snapshots(memory_repo, old, new, ["gone", "same", "gone"])
    assert (result.added, result.removed, result.changed) == ([], ["gone"], [])
    assert diff_names(memory_repo, old, new, ["fresh", "a"]).tenants == [
        TenantStatus("a", "M"),
        TenantStatus("fresh", "A"),
    ]
    assert diff_stat(memory_repo, old, new, ["same"]).tenants == []
    with pytest.raises(NotFoundError, match="has tenant 'nobody', 'ghost'"):
        diff_snapshots(memory_repo, old, new, ["a", "nobody", "ghost"])
