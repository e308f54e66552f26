"""Tenant documents inside a decoded JSON source.

A source holds one tenant object, an array of them, or Descope's load-all shape
``{"tenants": [...]}``. A tenant is any JSON object with a string ``id``; a
composite document (``{"tenant": {...}, "settings": ..., "sso": ...}``) takes
its id from the tenant inside. Pure: decoded values in, documents out.
"""

from __future__ import annotations

import json
from typing import Any

from casbak.errors import InputError

MAX_TENANT_ID_LENGTH = 256
SHOWN_VALUE_LENGTH = 40


def tenant_id_of(document: dict[str, Any]) -> str | None:
    """Return the tenant id of a document, or None when it has none."""
    if "id" in document:
        found = document["id"]
        return found if isinstance(found, str) else None
    inner = document.get("tenant")
    if isinstance(inner, dict) and isinstance(inner.get("id"), str):
        return str(inner["id"])
    return None


def id_problem(document: dict[str, Any]) -> str:
    """Why a document has no tenant id, said as one phrase (for a document without one)."""
    if "id" in document:
        return _not_a_string("id", document["id"])
    inner = document.get("tenant")
    if isinstance(inner, dict) and "id" in inner:
        return _not_a_string("tenant.id", inner["id"])
    return "tenant has no string 'id'"


def _not_a_string(name: str, value: Any) -> str:
    if value is None:
        return f"'{name}' is null; it must be a string"
    try:
        shown = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        shown = repr(value)  # handed in from Python, not decoded from JSON
    if len(shown) > SHOWN_VALUE_LENGTH:
        shown = shown[: SHOWN_VALUE_LENGTH - 3] + "..."
    return f"'{name}' is {_json_type(value)} ({shown}); it must be a string"


def split_tenants(value: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    """Return ``(tenant id, document)`` pairs from one decoded source.

    Raises:
        InputError: naming ``where`` and the position of the offending tenant.

    """
    if isinstance(value, dict) and "id" not in value and isinstance(value.get("tenants"), list):
        items: list[Any] = value["tenants"]
        label = "tenants[{}]"
    elif isinstance(value, list):
        items = value
        label = "[{}]"
    else:
        items = [value]
        label = ""
    if not items:
        raise InputError(f"{where}: empty source: no tenants in it")
    pairs = []
    for index, item in enumerate(items):
        at = f"{where}: {label.format(index)}" if label else f"{where}:"
        if not isinstance(item, dict):
            raise InputError(f"{at} a tenant must be a JSON object, got {_json_type(item)}")
        tenant_id = tenant_id_of(item)
        if tenant_id is None:
            raise InputError(f"{at} {id_problem(item)}")
        if not tenant_id or len(tenant_id) > MAX_TENANT_ID_LENGTH:
            raise InputError(f"{at} tenant id must be 1 to {MAX_TENANT_ID_LENGTH} characters long")
        pairs.append((tenant_id, item))
    return pairs


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"
