"""Snapshot and tenant references as people type them. Pure.

    REF          a full snapshot id, a unique prefix of 4+ hex digits, a manifest
                 file name or path, ``latest``, ``latest:TARGET`` (the newest
                 snapshot whose target is TARGET), or ``@TIME``
    @TIME        the newest snapshot at or before TIME: ``2025-11-17`` (its
                 start, 00:00 UTC), ``2025-11-17T10:30``, ``2025-11-17T10:30:00``
                 (UTC unless an offset such as ``+01:00`` or ``Z`` is given),
                 ``now``, ``yesterday`` (24 hours ago), or ``-`` and a duration
                 (that long ago: ``@-3d``, ``@-6mo``, ``@-1w2d``; see
                 `casbak.retention.parse_duration`)
    REF~N        the Nth earlier snapshot of the same target (``~`` is ``~1``;
                 ``latest~2~1`` is ``latest~3``)
    TENANT@REF   tenant TENANT as held by the newest snapshot at or before REF
                 that holds it (``acme-corp@latest``, ``acme-corp@@2025-11-17``);
                 there ``~N`` steps back N *versions* of the tenant, as
                 ``casbak log`` lists them: ``acme-corp@latest~1`` is the version
                 before its newest.

The text before the first ``@`` names the tenant (a tenant id holding ``@``
cannot be named this way; `--tenant` options take any id).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import msgspec

from casbak.errors import InputError, UsageError
from casbak.retention import parse_duration

_BACK = re.compile(r"(~\d*)+$")
_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_MINUTES = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(?P<zone>Z|[+-]\d\d:\d\d)?")
_TIME = msgspec.json.Decoder(datetime)
MAX_BACK = 1_000_000


class Reference(msgspec.Struct, frozen=True):
    """A parsed reference: an optional tenant, a base, and how far back from it."""

    text: str
    base: str
    """``latest``, ``latest:TARGET``, an id, prefix or file name; empty when ``time`` is set."""
    time: datetime | None = None
    back: int = 0
    tenant: str | None = None


def is_tenant_reference(text: str) -> bool:
    """Whether a reference is TENANT@REF (an ``@`` after its first character)."""
    return "@" in text[1:] and not text.startswith("@")


def parse_reference(text: str, now: datetime) -> Reference:
    """Parse a reference; InputError (one line, naming it) when it is malformed."""
    if not text or not text.isprintable():
        raise InputError(f"invalid reference {text!r}: empty or not printable")
    tenant = None
    rest = text
    at = text.find("@")
    if at > 0:
        tenant, rest = text[:at], text[at + 1 :]
        if not rest:
            raise InputError(f"invalid reference {text!r}: nothing after '@' (try {tenant}@latest)")
    back = 0
    steps = _BACK.search(rest)
    if steps is not None:
        for step in steps.group(0).split("~")[1:]:
            back += int(step) if step else 1
        rest = rest[: steps.start()]
        if back > MAX_BACK:
            raise InputError(f"invalid reference {text!r}: ~{back} is too far back")
    if not rest:
        raise InputError(f"invalid reference {text!r}: no snapshot before '~'")
    if rest.startswith("@"):
        return Reference(text, "", parse_time(rest[1:], now, text), back, tenant)
    return Reference(text, rest, None, back, tenant)


def parse_time(value: str, now: datetime, text: str) -> datetime:
    """The moment ``@value`` names (see the module docstring)."""
    if value == "now":
        return now
    if value == "yesterday":
        return now - timedelta(days=1)
    if value.startswith("-"):
        # The durations every option takes (-3d, -6mo, -1w2d), counted back from now.
        try:
            return now - parse_duration(value[1:])
        except UsageError:
            pass  # not a duration: refused below with the forms a time takes
    if _DATE.fullmatch(value):
        value += "T00:00:00"
    else:
        minutes = _MINUTES.fullmatch(value)
        if minutes is not None:
            zone = minutes.group("zone") or ""
            value = value[: len(value) - len(zone)] + ":00" + zone
    if not value.endswith("Z") and not re.search(r"[+-]\d\d:\d\d$", value):
        value += "Z"
    try:
        moment = _TIME.decode(b'"' + value.encode() + b'"')
    except msgspec.ValidationError:
        raise InputError(
            f"invalid time in reference {text!r}: use @2025-11-17, @2025-11-17T10:30, "
            "@yesterday or @-3d"
        ) from None
    return moment.astimezone(UTC)
