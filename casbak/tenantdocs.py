"""Tenant documents inside a decoded JSON source.

A source holds one tenant object, an array of them, or Descope's load-all shape
``{"tenants": [...]}``. A tenant is any JSON object with a string ``id``; a
composite document (``{"tenant": {...}, "settings": ..., "sso": ...}``) takes
its id from the tenant inside. Pure: decoded values in, documents out.
"""

from __future__ import annotations

from typing import Any

from casbak.errors import InputError

MAX_TENANT_ID_LENGTH = 256


def tenant_id_of(document: dict[str, Any]) -> str | None:
    """Return the tenant id of a document, or None when it has none."""
    if "id" in document:
        found = document["id"]
        return found if isinstance(found, str) else None
    inner = document.get("tenant")
    if isinstance(inner, dict) and isinstance(inner.get("id"), str):
        return str(inner["id"])
    return None


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
            raise InputError(f"{at} tenant has no string 'id'")
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
    return "an array"
