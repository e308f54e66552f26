from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from casbak.errors import UsageError
from casbak.retention import (
    RetentionPolicy,
    SnapshotInfo,
    apply_policy,
    format_duration,
    parse_duration,
)

NOW = datetime(2025, 11, 17, 12, 0, tzinfo=UTC)
GOLDEN = Path(__file__).parent / "golden" / "retention"


def snap(
    sid: str, when: str, target: str = "acme", op: str = "tenant-update", tags: tuple[str, ...] = ()
) -> SnapshotInfo:
    return SnapshotInfo(sid, datetime.fromisoformat(when).replace(tzinfo=UTC), target, op, tags)


def kept(decision_keep: list[object]) -> list[str]:
    return [k.id for k in decision_keep]  # type: ignore[attr-defined]


def test_empty_policy_is_refused() -> None:
    with pytest.raises(UsageError, match="empty retention policy"):
        apply_policy([snap("a", "2025-11-17T00:00")], RetentionPolicy(), NOW)
    assert not RetentionPolicy(keep_tags=("x",)).is_empty()
    assert not RetentionPolicy(keep_within=timedelta(0)).is_empty()


def test_keep_within_is_relative_to_now_and_inclusive() -> None:
    snaps = [
        snap("old", "2025-10-18T11:59"),
        snap("edge", "2025-10-18T12:00"),
        snap("new", "2025-11-17T11:00", target="other"),
    ]
    decision = apply_policy(
        snaps, RetentionPolicy(keep_within=timedelta(days=30), keep_newest_of_target=False), NOW
    )
    assert kept(decision.keep) == ["new", "edge"]
    assert decision.remove == ["old"]


def test_newest_of_every_target_survives_whatever_its_age() -> None:
    snaps = [
        snap("deleted-tenant", "2020-01-01T00:00", target="gone", op="tenant-delete"),
        snap("a-old", "2020-01-01T00:00", target="a"),
        snap("a-new", "2021-01-01T00:00", target="a"),
    ]
    decision = apply_policy(snaps, RetentionPolicy(keep_within=timedelta(days=1)), NOW)
    assert sorted(kept(decision.keep)) == ["a-new", "deleted-tenant"]
    assert decision.keep[0].reasons == ["newest of target a"]
    allow = apply_policy(
        snaps, RetentionPolicy(keep_within=timedelta(days=1), keep_newest_of_target=False), NOW
    )
    assert allow.keep == []


def test_future_snapshots_are_never_removed() -> None:
    decision = apply_policy(
        [snap("future", "2030-01-01T00:00"), snap("now", "2025-11-17T11:00")],
        RetentionPolicy(keep_last=1, keep_newest_of_target=False),
        NOW,
    )
    assert kept(decision.keep) == ["future", "now"]
    assert decision.keep[0].reasons == ["dated in the future"]
    assert decision.keep[1].reasons == ["last snapshot"]


def test_keep_last_per_group() -> None:
    snaps = [snap(f"{t}{i}", f"2025-11-1{i}T00:00", target=t) for t in "ab" for i in range(5)]
    policy = RetentionPolicy(keep_last=2, keep_newest_of_target=False)
    assert sorted(kept(apply_policy(snaps, policy, NOW).keep)) == ["a3", "a4", "b3", "b4"]
    none = RetentionPolicy(keep_last=2, keep_newest_of_target=False, group_by="none")
    assert sorted(kept(apply_policy(snaps, none, NOW).keep)) == ["a4", "b4"]
    by_op = RetentionPolicy(keep_last=1, keep_newest_of_target=False, group_by="operation")
    assert len(apply_policy(snaps, by_op, NOW).keep) == 1


@pytest.mark.parametrize(
    ("rule", "times", "expected"),
    [
        # daily: newest per calendar day (UTC), only days that have snapshots count
        (
            "keep_daily",
            [
                "2025-11-17T11:59",
                "2025-11-17T00:00",
                "2025-11-16T23:59",
                "2025-11-10T12:00",
                "2025-11-01T00:00",
            ],
            [0, 2],
        ),
        # hourly boundary at :00
        ("keep_hourly", ["2025-11-17T10:59:59", "2025-11-17T10:00", "2025-11-17T09:59:59"], [0, 2]),
        # ISO weeks: 2025-11-16 is a Sunday (W46), 2025-11-17 a Monday (W47)
        (
            "keep_weekly",
            ["2025-11-17T00:00", "2025-11-16T23:00", "2025-11-10T00:00", "2025-11-09T23:00"],
            [0, 1],
        ),
        # ISO week-year: 2024-12-30 belongs to 2025-W01
        ("keep_weekly", ["2025-01-01T00:00", "2024-12-30T00:00", "2024-12-29T00:00"], [0, 2]),
        (
            "keep_monthly",
            ["2025-11-01T00:00", "2025-10-31T23:59", "2025-10-01T00:00", "2025-09-30T00:00"],
            [0, 1],
        ),
        (
            "keep_yearly",
            ["2025-01-01T00:00", "2024-12-31T23:59", "2024-01-01T00:00", "2023-06-01T00:00"],
            [0, 1],
        ),
    ],
)
def test_calendar_boundaries(rule: str, times: list[str], expected: list[int]) -> None:
    snaps = [snap(f"s{i}", t) for i, t in enumerate(times)]
    policy = RetentionPolicy(**{rule: 2}, keep_newest_of_target=False)  # type: ignore[arg-type]
    assert sorted(kept(apply_policy(snaps, policy, NOW).keep)) == [f"s{i}" for i in expected]


def test_keep_tag() -> None:
    snaps = [
        snap("tagged", "2020-01-01T00:00", tags=("pre-migration",)),
        snap("plain", "2020-01-02T00:00"),
    ]
    decision = apply_policy(
        snaps, RetentionPolicy(keep_tags=("pre-migration",), keep_newest_of_target=False), NOW
    )
    assert kept(decision.keep) == ["tagged"]
    assert decision.keep[0].reasons == ["tag pre-migration"]


SCENARIO = [
    snap("a1", "2025-11-17T10:30", "acme-corp"),
    snap("a2", "2025-11-17T09:00", "acme-corp", "tenant-delete", ("before-delete",)),
    snap("a3", "2025-11-16T22:00", "acme-corp"),
    snap("a4", "2025-11-10T08:00", "acme-corp"),
    snap("a5", "2025-10-01T08:00", "acme-corp"),
    snap("a6", "2024-06-01T08:00", "acme-corp"),
    snap("g1", "2025-09-01T00:00", "globex"),
    snap("s1", "2025-11-17T11:00", "all-tenants", "sync-apply"),
    snap("s2", "2025-11-17T11:00:01", "all-tenants", "sync-apply"),
    snap("f1", "2026-01-01T00:00", "acme-corp"),
]
POLICIES = {
    "default-30d": RetentionPolicy(keep_within=timedelta(days=30)),
    "daily-weekly-monthly": RetentionPolicy(
        keep_daily=2, keep_weekly=2, keep_monthly=3, keep_yearly=2
    ),
    "last-and-tag": RetentionPolicy(keep_last=1, keep_tags=("before-delete",)),
    "hourly-by-operation": RetentionPolicy(
        keep_hourly=2, group_by="operation", keep_newest_of_target=False
    ),
}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_reasons_golden(name: str) -> None:
    decision = apply_policy(SCENARIO, POLICIES[name], NOW)
    produced = json.loads(msgspec.json.encode(decision))
    path = GOLDEN / f"{name}.json"
    if os.environ.get("CASBAK_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(produced, indent=2) + "\n")
    assert produced == json.loads(path.read_text())


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * 86400),
        ("12h", 43200),
        ("1w2d", 9 * 86400),
        ("90m", 5400),
        ("45s", 45),
        (" 1D ", 86400),
        ("0s", 0),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "30", "d", "1x", "-1d", "1d 2h", "1.5d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError, match="invalid duration"):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(timedelta(days=30)) == "30d"
    assert format_duration(timedelta(0)) == "0s"
    assert format_duration(timedelta(hours=1, seconds=5)) == "1h5s"
