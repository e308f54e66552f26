"""Retention: which snapshots a policy keeps, and why. Pure.

Rules combine with OR, as in restic's ``forget``: a snapshot is kept when any
rule keeps it, and every rule that keeps it is given as a reason. Calendar
periods are UTC and only periods that hold a snapshot count. Two safety rules
come before any policy: a snapshot dated in the future is never removed, and
the newest snapshot of every target is kept unless the caller explicitly
allows removing it (a backup taken before a ``tenant-delete`` may be the last
copy of that tenant).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from casbak.errors import UsageError

GroupBy = Literal["target", "operation", "none"]
# ``mo`` before ``m``: months are spelled out enough not to be taken for minutes.
_DURATION_PART = re.compile(r"(\d+)(mo|[smhdwy])")
DAY = 86400
_UNIT_SECONDS = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": DAY,
    "w": 7 * DAY,
    "mo": 30 * DAY,
    "y": 365 * DAY,
}
DURATION_UNITS = tuple(_UNIT_SECONDS)
"""Every unit a duration may use, smallest first; a month is 30 days, a year 365."""
LONGEST_DURATION = timedelta(days=100 * 365)
"""No option needs more; a longer value is a typo (and timedelta overflows soon after)."""


class SnapshotInfo(msgspec.Struct, frozen=True):
    """What retention needs to know of a snapshot."""

    id: str
    timestamp: datetime
    target_id: str
    operation: str
    tags: tuple[str, ...] = ()


class RetentionPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Keep rules; zero or None means the rule is off."""

    keep_within: timedelta | None = None
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    keep_tags: tuple[str, ...] = ()
    group_by: GroupBy = "target"
    keep_newest_of_target: bool = True

    def is_empty(self) -> bool:
        """True when no rule would keep anything."""
        return (
            self.keep_within is None
            and not any(
                (
                    self.keep_last,
                    self.keep_hourly,
                    self.keep_daily,
                    self.keep_weekly,
                    self.keep_monthly,
                    self.keep_yearly,
                )
            )
            and not self.keep_tags
        )


class Kept(msgspec.Struct, frozen=True):
    """A kept snapshot and every reason it is kept."""

    id: str
    reasons: list[str]


class Decision(msgspec.Struct, frozen=True):
    """The outcome of a policy: what stays (with reasons) and what goes."""

    keep: list[Kept]
    remove: list[str]


def parse_duration(text: str) -> timedelta:
    """Parse ``30d``, ``12h``, ``1w2d``, ``90m``, ``45s``, ``6mo``, ``1y`` into a timedelta.

    Fixed lengths (a month is 30 days, a year 365) keep a duration one number
    of seconds whatever the date it is counted from.
    """
    cleaned = text.strip().lower()
    parts = _DURATION_PART.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise UsageError(
            f"invalid duration {text!r}: use a number and a unit, e.g. 45s, 90m, 12h, 30d, "
            "2w, 6mo, 1y, 1w2d"
        )
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds > LONGEST_DURATION.total_seconds():
        raise UsageError(f"invalid duration {text!r}: longer than 100 years")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest ``parse_duration`` form of a whole number of seconds, in days at most.

    ``365d``, not ``1y``: a reason should not hide that a year here is 365 days.
    """
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    out = ""
    for unit in ("d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if count:
            out += f"{count}{unit}"
    return out


_PERIODS: list[tuple[str, Callable[[datetime], str]]] = [
    ("hourly", lambda t: t.strftime("%Y-%m-%d %H:00")),
    ("daily", lambda t: t.strftime("%Y-%m-%d")),
    ("weekly", lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2])),
    ("monthly", lambda t: t.strftime("%Y-%m")),
    ("yearly", lambda t: t.strftime("%Y")),
]


def apply_policy(
    snapshots: Sequence[SnapshotInfo], policy: RetentionPolicy, now: datetime
) -> Decision:
    """Decide for every snapshot; the result lists snapshots newest first.

    Raises:
        UsageError: for an empty policy, which would remove everything.
    """
    if policy.is_empty():
        raise UsageError("empty retention policy: it would remove every snapshot; give a keep rule")
    ordered = sorted(snapshots, key=lambda s: (s.timestamp, s.id), reverse=True)
    reasons: dict[str, list[str]] = {s.id: [] for s in ordered}
    safe = safety_reasons(ordered, now, keep_newest_of_target=policy.keep_newest_of_target)
    for snapshot_id, why in safe.items():
        reasons[snapshot_id].extend(why)

    # Future-dated snapshots (a skewed clock) are kept but take no place in
    # the rules, so they cannot crowd out the real newest snapshots.
    present = [snap for snap in ordered if snap.timestamp <= now]
    for snap in present:
        if policy.keep_within is not None and now - snap.timestamp <= policy.keep_within:
            reasons[snap.id].append(f"within {format_duration(policy.keep_within)}")
        reasons[snap.id].extend(f"tag {tag}" for tag in policy.keep_tags if tag in snap.tags)

    for group in _groups(present, policy.group_by).values():
        for snap in group[: policy.keep_last]:
            reasons[snap.id].append("last snapshot")
        for name, period_of in _PERIODS:
            budget = getattr(policy, f"keep_{name}")
            last_period = None
            for snap in group:
                if budget <= 0:
                    break
                period = period_of(snap.timestamp)
                if period != last_period:
                    reasons[snap.id].append(f"{name} {period}")
                    last_period = period
                    budget -= 1

    return Decision(
        keep=[Kept(s.id, reasons[s.id]) for s in ordered if reasons[s.id]],
        remove=[s.id for s in ordered if not reasons[s.id]],
    )


def safety_reasons(
    snapshots: Sequence[SnapshotInfo], now: datetime, *, keep_newest_of_target: bool = True
) -> dict[str, list[str]]:
    """The snapshots the safety rules keep whatever the policy, each with its reason.

    A snapshot dated in the future stays; so does the newest of every target
    among the others (with ``keep_newest_of_target``). `apply_policy` starts
    from these, and ``forget`` refuses to remove them without being forced.
    """
    ordered = sorted(snapshots, key=lambda s: (s.timestamp, s.id), reverse=True)
    reasons: dict[str, list[str]] = {}
    newest_of_target: set[str] = set()
    for snap in ordered:
        if snap.timestamp > now:
            reasons[snap.id] = ["dated in the future"]
        elif keep_newest_of_target and snap.target_id not in newest_of_target:
            newest_of_target.add(snap.target_id)
            reasons[snap.id] = [f"newest of target {snap.target_id}"]
    return reasons


def _groups(ordered: Sequence[SnapshotInfo], group_by: GroupBy) -> dict[str, list[SnapshotInfo]]:
    groups: dict[str, list[SnapshotInfo]] = {}
    for snap in ordered:
        key = {"target": snap.target_id, "operation": snap.operation, "none": ""}[group_by]
        groups.setdefault(key, []).append(snap)
    return groups
