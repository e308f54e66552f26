"""Field-level differences between two JSON documents. Pure.

Paths: ``$`` is the whole document; ``.name`` a member whose name is a plain
identifier and ``["odd name"]`` any other member (the name as a JSON string);
``[3]`` an array element by index; ``[id="abc"]`` an array item by its key
field (the value as JSON, so ``[id=7]`` is the number, ``[id="7"]`` the string).

Kinds: ``added`` (only ``new``), ``removed`` (only ``old``), ``changed`` (both),
and ``reordered`` for a keyed array whose items kept on both sides come in
another order (``old`` and ``new`` are their keys, in the old and in the new
order). Types matter as in the canonical form: ``1``, ``1.0`` and ``true``
differ, so two documents have no differences exactly when their canonical
bytes are equal.

Arrays are sequences, compared with the fewest edits (Myers' algorithm, two
items being equal when their canonical forms are): taking one item out of an
array is one ``removed`` however long the array, putting one in is one
``added``. Where removed items and added items meet at the same place, they are
paired first with first: two scalars (or values of different types) are one
``changed``, two objects or two arrays are compared inside; the unpaired rest
stay removed or added. A removed item is named by its index in the old array,
every other item (added, paired) by its index in the new array, so the changes
of one array apply in this order: removals by old index, then additions by new
index, then changes inside items by new index. Past `MAX_EDITS` edits in one
array the search stops and everything between the common head and tail is
paired by position: still a correct account, only not the shortest.

Arrays of objects that each carry an ``id`` (else each an ``ssoId``, as Descope
SSO configurations do, else each a ``name``) that is a string or an integer and
unique within each array are matched by that key rather than by position: an
item is added or removed by key, changes inside it are named by it
(``$.ssoConfigs[id="abc"].enabled``), and changing an item's key is removing
one item and adding another. Lists are never reordered in the canonical form,
so order is part of the document: a reorder is reported, as one ``reordered``
change at the array's own path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

KEY_FIELDS = ("id", "ssoId", "name")
"""Fields that name an array item, tried in this order."""

MAX_EDITS = 1000
"""Edits searched for in one array before falling back to pairing by position.

The search costs time in (length x edits) and memory in edits squared; real
tenant arrays differ by a handful of items.
"""

KINDS = ("added", "removed", "changed", "reordered")


class Change(msgspec.Struct, frozen=True):
    """One difference at a JSON path (``$.a.b[2]``); a missing side is absent, not null."""

    path: str
    kind: str  # one of KINDS
    old: Any = msgspec.UNSET
    new: Any = msgspec.UNSET


def child_path(path: str, key: str | int) -> str:
    """The JSON path of a member (``$.name``, ``$["odd key"]``) or an element (``$[3]``)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{_json(key)}]"


def item_path(path: str, field: str, key: str | int) -> str:
    """The JSON path of an array item named by its key field (``$.sso[ssoId="a"]``)."""
    return f"{path}[{field}={_json(key)}]"


def diff_values(old: Any, new: Any, path: str = "$") -> list[Change]:
    """Every difference between two decoded JSON values, in document order."""
    changes: list[Change] = []
    _diff(old, new, path, changes)
    return changes


def _json(value: str | int) -> str:
    return msgspec.json.encode(value).decode()


def _token(value: Any) -> Any:
    """A comparable stand-in for a value: equal exactly when the canonical forms are."""
    if isinstance(value, dict):
        return (dict, tuple(sorted((key, _token(item)) for key, item in value.items())))
    if isinstance(value, list):
        return (list, tuple(_token(item) for item in value))
    if isinstance(value, float):
        # repr tells -0.0 from 0.0 (msgspec writes both), and NaN equals itself.
        return (float, repr(value))
    return (type(value), value)


def _diff(old: Any, new: Any, path: str, out: list[Change]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys()):
            where = child_path(path, key)
            if key not in new:
                out.append(Change(where, "removed", old=old[key]))
            elif key not in old:
                out.append(Change(where, "added", new=new[key]))
            else:
                _diff(old[key], new[key], where, out)
    elif isinstance(old, list) and isinstance(new, list):
        field = key_field(old, new)
        if field is None:
            _diff_sequence(old, new, path, out)
        else:
            _diff_keyed(old, new, field, path, out)
    elif _token(old) != _token(new):
        out.append(Change(path, "changed", old=old, new=new))


def key_field(old: list[Any], new: list[Any]) -> str | None:
    """The field that names the items of both arrays, if one does (see `KEY_FIELDS`)."""
    if not old and not new:
        return None
    for field in KEY_FIELDS:
        if _keyed_by(old, field) and _keyed_by(new, field):
            return field
    return None


def _keyed_by(items: list[Any], field: str) -> bool:
    seen: set[str | int] = set()
    for item in items:
        if not isinstance(item, dict):
            return False
        key = item.get(field)
        # bool is excluded by the exact type test; huge integers have no short name.
        if not (type(key) is str or (type(key) is int and -(2**63) <= key < 2**64)):
            return False
        if key in seen:
            return False
        seen.add(key)
    return True


def _diff_keyed(
    old: list[dict[str, Any]], new: list[dict[str, Any]], field: str, path: str, out: list[Change]
) -> None:
    before = {item[field]: item for item in old}
    after = {item[field]: item for item in new}
    kept_old_order = [key for key in before if key in after]
    kept_new_order = [key for key in after if key in before]
    if kept_old_order != kept_new_order:
        out.append(Change(path, "reordered", old=kept_old_order, new=kept_new_order))
    for key, item in before.items():
        if key not in after:
            out.append(Change(item_path(path, field, key), "removed", old=item))
    for key, item in after.items():
        if key in before:
            _diff(before[key], item, item_path(path, field, key), out)
        else:
            out.append(Change(item_path(path, field, key), "added", new=item))


def _diff_sequence(old: list[Any], new: list[Any], path: str, out: list[Change]) -> None:
    old_tokens = [_token(item) for item in old]
    new_tokens = [_token(item) for item in new]
    matches = common_subsequence(old_tokens, new_tokens)
    if matches is None:
        matches = _head_and_tail(old_tokens, new_tokens)
    start_old = start_new = 0
    for end_old, end_new in [*matches, (len(old), len(new))]:
        gone, came = range(start_old, end_old), range(start_new, end_new)
        paired = min(len(gone), len(came))
        for old_index, new_index in zip(gone[:paired], came[:paired], strict=True):
            _diff(old[old_index], new[new_index], child_path(path, new_index), out)
        for old_index in gone[paired:]:
            out.append(Change(child_path(path, old_index), "removed", old=old[old_index]))
        for new_index in came[paired:]:
            out.append(Change(child_path(path, new_index), "added", new=new[new_index]))
        start_old, start_new = end_old + 1, end_new + 1


def _head_and_tail(old: Sequence[Any], new: Sequence[Any]) -> list[tuple[int, int]]:
    """Index pairs of the equal items at the start and at the end of both sequences."""
    shortest = min(len(old), len(new))
    head = 0
    while head < shortest and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < shortest - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    return [(i, i) for i in range(head)] + [
        (len(old) - tail + i, len(new) - tail + i) for i in range(tail)
    ]


def common_subsequence(old: Sequence[Any], new: Sequence[Any]) -> list[tuple[int, int]] | None:
    """Index pairs of a longest common subsequence, or None past `MAX_EDITS` edits.

    Myers' O((N+M)D) search: ``frontier[k]`` is the furthest old index reached
    on diagonal ``k`` (old index minus new index) with ``d`` edits; each round
    is kept so the path can be walked back from the end.
    """
    limit = min(len(old) + len(new), MAX_EDITS)
    offset = limit + 1
    frontier = [0] * (2 * limit + 3)
    rounds: list[list[int]] = []
    for edits in range(limit + 1):
        rounds.append(frontier[offset - edits - 1 : offset + edits + 2])
        for k in range(-edits, edits + 1, 2):
            if k == -edits or (k != edits and frontier[offset + k - 1] < frontier[offset + k + 1]):
                x = frontier[offset + k + 1]  # an addition: one step down
            else:
                x = frontier[offset + k - 1] + 1  # a removal: one step across
            y = x - k
            while x < len(old) and y < len(new) and old[x] == new[y]:
                x, y = x + 1, y + 1
            frontier[offset + k] = x
            if x >= len(old) and y >= len(new):
                return _walk_back(rounds, len(old), len(new))
    return None


def _walk_back(rounds: list[list[int]], x: int, y: int) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    for edits in range(len(rounds) - 1, -1, -1):
        frontier = rounds[edits]  # diagonal k is at index k + edits + 1
        k = x - y
        if k == -edits or (k != edits and frontier[k + edits] < frontier[k + edits + 2]):
            previous_k = k + 1
        else:
            previous_k = k - 1
        previous_x = frontier[previous_k + edits + 1]
        previous_y = previous_x - previous_k
        while x > previous_x and y > previous_y:
            x, y = x - 1, y - 1
            pairs.append((x, y))
        x, y = previous_x, previous_y
    pairs.reverse()
    return pairs
