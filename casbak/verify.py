"""verify: prove a repository's integrity, and say exactly what is damaged.

It reads, never writes: no lock is taken and stale locks are only reported.
Memory stays bounded by the number of distinct objects, not by the history:
object contents are streamed one at a time, and the snapshots and tenants hurt
by a damaged object are found by a second pass over the manifests, only when
there is damage.

Without a lock, cleanup and gc may work while verify reads: a snapshot listed
may be removed and its objects swept, an object may move to a new pack, a
delta manifest may be rewritten against another parent. So whatever reads
badly is looked at again before it is called damage (see `_confirmed`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Literal

import msgspec

from casbak.backends.base import Backend
from casbak.errors import (
    CasbakError,
    ChecksumMismatch,
    CorruptData,
    FormatVersionError,
    IntegrityError,
    ObjectMissing,
)
from casbak.ids import Digest, hash_bytes
from casbak.locks import LOCK_PREFIX, LockManager
from casbak.model import Manifest, decode_config, decode_manifest
from casbak.names import MANIFEST_PREFIX, snapshot_id_from_key
from casbak.objects import OBJECT_PREFIX, digest_from_key, parallel_map
from casbak.packs import PACK_PREFIX, PackStore, pack_key
from casbak.repository import CONFIG_KEY, Repository, Snapshot
from casbak.storedmanifest import decode_stored

Severity = Literal["damage", "warning", "info"]
Progress = Callable[[int, int, int], None]
"""Called with objects done, objects in all, and bytes read so far."""
_LOOKS = 3
"""How often an object that reads badly is read again before it is called damage."""
_LOCK_NAME = re.compile(r"(shared|exclusive)-[0-9a-f]{16}\.json")
_PACKED_FILE = re.compile(r"packs/([0-9a-f]{2})/\1[0-9a-f]{62}|(index|dicts)/[0-9a-f]{64}")


class Finding(msgspec.Struct, frozen=True):
    """One problem: its kind, how bad, where, and which snapshots and tenants it hurts."""

    kind: str
    severity: Severity
    location: str
    message: str
    snapshots: list[str] = msgspec.field(default_factory=list)
    tenants: list[str] = msgspec.field(default_factory=list)


class VerifyReport(msgspec.Struct, frozen=True):
    """The whole outcome; ``ok`` is true when no finding is damage."""

    ok: bool
    mode: str
    snapshots_checked: int
    objects_checked: int
    bytes_checked: int
    damage: int
    findings: list[Finding]


def verify_repository(
    repo: Repository,
    *,
    quick: bool = False,
    snapshot_refs: Iterable[str] = (),
    progress: Progress | None = None,
) -> VerifyReport:
    """Check config, manifests and objects; see the module docstring."""
    findings: list[Finding] = []
    refs = list(snapshot_refs)
    snapshots, referenced = _load_snapshots(repo, refs, findings)
    packs = repo.objects if isinstance(repo.objects, PackStore) else None
    if packs is not None:
        findings.extend(_index_findings(packs))
        referenced = set(packs.live_closure(referenced))
    present: dict[str, int] = {digest: info.size for digest, info in repo.objects.list()}

    def check(digest: str) -> tuple[str, Finding | None]:
        if digest not in present and not (packs is not None and _moved(packs, digest, present)):
            return digest, _missing(digest)
        return digest, None if quick else _read_problem(repo, digest)

    bad_objects: dict[str, Finding] = {}
    objects_checked = bytes_checked = 0
    order = sorted(referenced)
    if packs is not None:
        index = packs.index()
        # Pack by pack, so each pack is read once.
        order.sort(
            key=lambda d: (
                (index[Digest(d)].pack, index[Digest(d)].offset) if d in index else ("", 0)
            )
        )
    for digest, finding in parallel_map(check, order, repo.objects.concurrency):
        if finding is not None:
            bad_objects[digest] = finding
        if digest in present:
            objects_checked += 1
            bytes_checked += 0 if quick else present[digest]
        if progress is not None:
            progress(objects_checked, len(referenced), bytes_checked)
    findings.extend(_confirmed(repo, snapshots, bad_objects, quick))

    if packs is not None and not quick and not refs:
        findings.extend(_pack_findings(packs))
    if not refs:
        findings.extend(_orphans(present, referenced, packs is not None))
        findings.extend(_unknown_keys(repo))
        findings.extend(_lock_findings(repo))
        findings.extend(
            Finding(issue.kind, "warning", issue.location, issue.message)
            for issue in repo.backend.audit()
        )
    damage = sum(1 for finding in findings if finding.severity == "damage")
    return VerifyReport(
        ok=damage == 0,
        mode="quick" if quick else "full",
        snapshots_checked=len(snapshots),
        objects_checked=objects_checked,
        bytes_checked=bytes_checked,
        damage=damage,
        findings=findings,
    )


def check_config(backend: Backend) -> Finding | None:
    """A finding for a missing, unreadable or unsupported config, or None when it is sound."""
    where = CONFIG_KEY
    try:
        decode_config(backend.get(CONFIG_KEY), f"{backend.describe()}/{CONFIG_KEY}")
    except FormatVersionError as exc:
        return Finding("unsupported-version", "damage", where, str(exc))
    except ObjectMissing:
        return Finding("missing-config", "damage", where, "repository config is missing")
    except IntegrityError as exc:
        return Finding("corrupt-config", "damage", where, str(exc))
    return None


def config_failure_report(finding: Finding) -> VerifyReport:
    """The report when the config itself is unusable: nothing else can be judged."""
    return VerifyReport(False, "config", 0, 0, 0, 1, [finding])


def _object_location(digest: str) -> str:
    return f"{OBJECT_PREFIX}{digest[:2]}/{digest}"


def _missing(digest: str) -> Finding:
    return Finding("missing-object", "damage", _object_location(digest), "object is missing")


def _read_problem(repo: Repository, digest: str) -> Finding | None:
    """Read an object (decompress, re-hash); what is wrong with it, or None."""
    location = _object_location(digest)
    try:
        repo.objects.read(digest)
    except (ChecksumMismatch, CorruptData) as exc:
        return Finding("corrupt-object", "damage", location, str(exc))
    except ObjectMissing:
        return _missing(digest)
    except CasbakError as exc:
        return Finding("unreadable-object", "damage", location, str(exc))
    return None


def _load_snapshots(
    repo: Repository, refs: list[str], findings: list[Finding]
) -> tuple[list[Snapshot], set[str]]:
    """The snapshots to check and every object they reference, each manifest read once."""
    referenced: set[str] = set()
    if refs:
        chosen = [repo.resolve(ref) for ref in refs]
        for snap in chosen:
            referenced.update(entry.object for entry in snap.manifest.entries.values())
        return chosen, referenced
    snapshots = []
    for snapshot_id, key in sorted(repo.manifest_keys().items()):
        try:
            loaded = _load_whole(repo, snapshot_id, key)
        except ChecksumMismatch as exc:
            # Objects named by a tampered manifest are not called orphans: they
            # may be exactly what a repair needs.
            tenants = _readable_entries(repo, key, referenced)
            findings.append(
                Finding(
                    "tampered-manifest",
                    "damage",
                    key,
                    str(exc),
                    snapshots=[snapshot_id],
                    tenants=tenants,
                )
            )
        except FormatVersionError as exc:
            findings.append(
                Finding("unsupported-manifest", "damage", key, str(exc), snapshots=[snapshot_id])
            )
        except CorruptData as exc:
            findings.append(
                Finding("corrupt-manifest", "damage", key, str(exc), snapshots=[snapshot_id])
            )
        except CasbakError as exc:
            findings.append(
                Finding("unreadable-manifest", "damage", key, str(exc), snapshots=[snapshot_id])
            )
        else:
            if loaded is None:
                continue  # removed by a cleanup since we listed it: not damage
            snapshots.append(loaded[0])
            referenced.update(entry.object for entry in loaded[1].entries.values())
    return snapshots, referenced


def _moved(packs: PackStore, digest: str, present: dict[str, int]) -> bool:
    """Whether a concurrent gc moved the object (readers take no lock): look again."""
    packs.refresh()
    location = packs.index().get(Digest(digest))
    if location is None or packs.backend.stat(pack_key(location.pack)) is None:
        return False  # an index entry whose pack is gone is no object (--quick reads none)
    present[digest] = location.length
    return True


def _load_whole(
    repo: Repository, snapshot_id: Digest, key: str
) -> tuple[Snapshot, Manifest] | None:
    """A snapshot and its whole manifest (format 2: rebuilt and hashed), or None if it is gone.

    A manifest that vanishes after the listing was removed by a cleanup, not
    damaged (a delta whose parent a cleanup removes is read again by the
    repository; a parent that stays missing is damage).
    """
    try:
        snap = repo.load(snapshot_id, key)
        return snap, snap.manifest
    except ObjectMissing as exc:
        if exc.key != key:
            raise
        return None


def _readable_entries(repo: Repository, key: str, refs: set[str]) -> list[str]:
    """Tenants of a manifest that fails its hash but still parses; its objects go to refs."""
    try:
        data = repo.backend.get(key)
        if repo.version == 1:
            entries = {
                tenant: entry.object for tenant, entry in decode_manifest(data, key).entries.items()
            }
        else:
            entries = {e.tenant_id: e.object.hex() for e in decode_stored(data, key).entries}
    except CasbakError:
        return []
    refs.update(entries.values())
    return sorted(entries)


def _index_findings(packs: PackStore) -> list[Finding]:
    """Load the index afresh; each unreadable index file is damage."""
    packs.refresh()
    packs.index()
    return [Finding("corrupt-index", "damage", key, str(exc)) for key, exc in packs.index_problems]


def _pack_findings(packs: PackStore) -> list[Finding]:
    """Every pack must hash to its name; packs no index names are leftovers."""
    named = {location.pack for location in packs.index().values()}
    findings = []
    for info in packs.backend.list(PACK_PREFIX):
        pack_id = info.key.rsplit("/", 1)[-1]
        if pack_id not in named:
            findings.append(
                Finding("orphan-pack", "info", info.key, "no index names it (gc frees it)")
            )
            continue
        try:
            actual = hash_bytes(packs.pack_bytes(pack_id))
        except ObjectMissing:
            continue
        except CasbakError as exc:
            findings.append(Finding("unreadable-pack", "damage", info.key, str(exc)))
            continue
        if actual != pack_id:
            # Objects in it were each checked; if they read back, the damage
            # is in bytes a healing import has superseded.
            findings.append(
                Finding("corrupt-pack", "warning", info.key, f"content hashes to {actual}")
            )
    return findings


def _confirmed(
    repo: Repository, snapshots: list[Snapshot], bad: dict[str, Finding], quick: bool
) -> list[Finding]:
    """Of the objects that read badly, those that are damage now, with whom they hurt.

    Between the listing of the manifests and the read of an object, a cleanup
    may have removed the snapshots that needed it and gc the object, or gc may
    have moved it to a new pack (more than once). So each bad object is looked
    at again from a freshly read index; one still bad counts only for snapshots
    listed both before and after that look that still read back after it. Such
    a snapshot existed while the object was bad: gc removes manifests before
    their objects, and writers (import too) store objects before manifests.
    """
    if not bad:
        return []
    before = repo.manifest_keys()
    suspects = bad
    for _ in range(_LOOKS):
        if isinstance(repo.objects, PackStore):
            repo.objects.refresh()
        looked = {digest: _still_bad(repo, digest, quick) for digest in suspects}
        suspects = {digest: found for digest, found in looked.items() if found is not None}
        if not suspects:
            return []
    after = repo.manifest_keys()
    victims: dict[str, tuple[set[str], set[str]]] = {d: (set(), set()) for d in suspects}
    for snap in snapshots:
        if snap.id not in before or snap.id not in after:
            continue
        try:
            loaded = _load_whole(repo, snap.id, snap.key)
        except CasbakError:
            continue  # unreadable since the first pass: whom it needs is unknown now
        if loaded is None:
            continue
        for tenant_id, entry in loaded[1].entries.items():
            if entry.object in victims:
                victims[entry.object][0].add(snap.id)
                victims[entry.object][1].add(tenant_id)
    return [
        msgspec.structs.replace(
            finding, snapshots=sorted(victims[d][0]), tenants=sorted(victims[d][1])
        )
        for d, finding in sorted(suspects.items())
        if victims[d][0]
    ]


def _still_bad(repo: Repository, digest: str, quick: bool) -> Finding | None:
    """The second look at an object: read it again, or with --quick, find it and its pack."""
    if not quick:
        return _read_problem(repo, digest)
    if isinstance(repo.objects, PackStore):
        location = repo.objects.locate(digest)
        if location is not None and repo.backend.stat(pack_key(location.pack)) is not None:
            return None
    elif repo.objects.contains(digest):
        return None
    return _missing(digest)


def _orphans(present: dict[str, int], referenced: set[str], packed: bool) -> list[Finding]:
    return [
        Finding(
            "orphan-object",
            "info",
            f"object {d}" if packed else _object_location(d),
            "no snapshot references it (gc frees it)",
        )
        for d in sorted(present.keys() - referenced)
    ]


def _unknown_keys(repo: Repository) -> list[Finding]:
    found = []
    for info in repo.backend.list(""):
        key = info.key
        known = (
            key == CONFIG_KEY
            or (
                repo.version == 1
                and key.startswith(OBJECT_PREFIX)
                and digest_from_key(key) is not None
            )
            or (
                key.startswith(MANIFEST_PREFIX)
                and snapshot_id_from_key(key, repo.version) is not None
            )
            or (repo.version != 1 and _PACKED_FILE.fullmatch(key) is not None)
            or (key.startswith(LOCK_PREFIX) and _LOCK_NAME.fullmatch(key[len(LOCK_PREFIX) :]))
        )
        if not known:
            found.append(Finding("unknown-file", "warning", key, "not a casbak file"))
    return found


def _lock_findings(repo: Repository) -> list[Finding]:
    findings = []
    for key, record, stale in LockManager(repo.backend).holders():
        if stale:
            who = f"{record.operation} pid {record.pid} on {record.host}" if record else "unknown"
            findings.append(
                Finding("stale-lock", "info", key, f"lock of {who} is stale (removed on next use)")
            )
    return findings
