"""Helpers for the catalog tests: records made by hand, a backend others act on at chosen
moments, and the one check every catalog test ends with: `list`, `log` and `verify` say
exactly what the manifests say."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from typing import Any

import blake3

from casbak.backends.base import Backend, ObjectInfo
from casbak.catalogdata import Added, SnapshotRecord, TenantEntry, micros_of
from casbak.errors import NotFoundError
from casbak.layout import manifest_key
from casbak.repository import Repository, sort_newest_first
from casbak.service import take_snapshot
from casbak.sources import documents_from_values
from casbak.tenanthistory import tenant_log
from casbak.verify import verify_repository
from tests.conftest import FakeClock

CATALOG_KINDS = {"stale-catalog", "corrupt-catalog"}


def stamp(when: datetime) -> str:
    """A timestamp as manifests write it."""
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{when.microsecond:06d}" if when.microsecond else "") + "Z"


def sid_of(n: int) -> bytes:
    return blake3.blake3(f"snapshot {n}".encode()).digest()


def told(
    n: int,
    when: datetime,
    target: str = "t",
    tenants: dict[str, bytes] | None = None,
    description: str = "",
) -> Added:
    """A catalog addition made by hand: snapshot number ``n``, holding ``tenants``."""
    snapshot_id = sid_of(n)
    key = manifest_key(when, "op", target, snapshot_id.hex())
    held = tenants or {}
    record = SnapshotRecord(
        snapshot_id, key, stamp(when), "op", target, description, [], len(held), b"", 0
    )
    return Added(record, micros_of(when), [TenantEntry(t, o, 7) for t, o in held.items()])


def version(n: int) -> bytes:
    """An object id for version ``n`` of some tenant."""
    return blake3.blake3(f"version {n}".encode()).digest()


def snap(
    repo: Repository, clock: FakeClock, *tenants: dict[str, Any], target: str = "t", **more: Any
) -> str:
    """Take a snapshot an hour after the last one; its id."""
    clock.advance(hours=1)
    docs = documents_from_values(list(tenants), "x")
    return take_snapshot(repo, docs, target_id=target, clock=clock, **more).snapshot.id


class Moments:
    """A backend on which others act at chosen moments of one user's work.

    A moment is ``"put KEY"``, ``"get KEY"`` or ``"stat KEY"`` (before the call), or
    ``"listed PREFIX"`` (after a listing). Each planned action runs once, at the first
    moment its test accepts. ``fail`` makes the moments it accepts raise instead.
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.plans: list[tuple[Callable[[str], bool], Callable[[], None]]] = []
        self.seen: list[str] = []

    def at(self, moment: Callable[[str], bool], action: Callable[[], None]) -> None:
        self.plans.append((moment, action))

    def _moment(self, moment: str) -> None:
        self.seen.append(moment)
        for plan in self.plans:
            if plan[0](moment):
                self.plans.remove(plan)
                plan[1]()
                return

    def put(self, key: str, data: bytes, *, overwrite: bool = False) -> None:
        self._moment(f"put {key}")
        self.inner.put(key, data, overwrite=overwrite)

    def get(self, key: str) -> bytes:
        self._moment(f"get {key}")
        return self.inner.get(key)

    def stat(self, key: str) -> ObjectInfo | None:
        self._moment(f"stat {key}")
        return self.inner.stat(key)

    def list_names(self, prefix: str) -> Iterator[str]:
        names = list(self.inner.list_names(prefix))
        self._moment(f"listed {prefix}")
        return iter(names)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def starts(prefix: str) -> Callable[[str], bool]:
    return lambda moment: moment.startswith(prefix)


def from_manifests(repo: Repository) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """What the manifests say: snapshot ids newest first, and per tenant its versions
    newest first as `log` lists them (object, snapshots in a row)."""
    snapshots = sort_newest_first(repo.load(s, k) for s, k in repo.manifest_keys().items())
    runs: dict[str, list[tuple[str, int]]] = {}
    for snapshot in snapshots:
        for tenant_id, entry in snapshot.manifest.entries.items():
            held = runs.setdefault(tenant_id, [])
            if held and held[-1][0] == entry.object:
                held[-1] = (entry.object, held[-1][1] + 1)
            else:
                held.append((entry.object, 1))
    return [s.id for s in snapshots], runs


def assert_agrees(
    repo: Repository, *, checks: bool = True, tenants: Collection[str] | None = None
) -> list[str]:
    """`list` and `log` of a freshly opened repository say what its manifests say, and
    verify finds no damage and nothing wrong with the catalog. Returns the ids listed.

    ``tenants``: only these tenants' logs are compared (all by default)."""
    fresh = Repository.open(repo.backend)
    ids, runs = from_manifests(fresh)
    listed = [snapshot.id for snapshot in fresh.snapshots()]
    assert listed == ids
    for tenant_id, versions in runs.items():
        if tenants is not None and tenant_id not in tenants:
            continue
        logged = tenant_log(fresh, tenant_id)
        assert [(e.object, e.snapshots) for e in logged] == versions, tenant_id
    for tenant_id in ("nobody-holds-this",):
        try:
            tenant_log(fresh, tenant_id)
            raise AssertionError("log of an unknown tenant")
        except NotFoundError:
            pass
    if checks:
        report = verify_repository(Repository.open(repo.backend), quick=True)
        assert report.ok, report.findings
        assert [f for f in report.findings if f.kind in CATALOG_KINDS] == []
    return listed
