"""Field-level differences between two JSON documents. Pure."""

from __future__ import annotations

import re
from typing import Any

import msgspec

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Change(msgspec.Struct, frozen=True):
    """One difference at a JSON path (``$.a.b[2]``); a missing side is absent, not null."""

    path: str
    kind: str  # "added", "removed" or "changed"
    old: Any = msgspec.UNSET
    new: Any = msgspec.UNSET


def child_path(path: str, key: str | int) -> str:
    """The JSON path of a member (``$.name``, ``$["odd key"]``) or an element (``$[3]``)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{msgspec.json.encode(key).decode()}]"


def diff_values(old: Any, new: Any, path: str = "$") -> list[Change]:
    """Every difference between two decoded JSON values, in document order.

    Lists are compared position by position (their order is meaningful), and
    ``1`` and ``1.0`` differ, as they do in the canonical form.
    """
    changes: list[Change] = []
    _diff(old, new, path, changes)
    return changes


def _same(old: Any, new: Any) -> bool:
    return type(old) is type(new) and old == new


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
        for index in range(max(len(old), len(new))):
            where = child_path(path, index)
            if index >= len(new):
                out.append(Change(where, "removed", old=old[index]))
            elif index >= len(old):
                out.append(Change(where, "added", new=new[index]))
            else:
                _diff(old[index], new[index], where, out)
    elif not _same(old, new) or (
        isinstance(old, (dict, list)) and msgspec.json.encode(old) != msgspec.json.encode(new)
    ):
        out.append(Change(path, "changed", old=old, new=new))
