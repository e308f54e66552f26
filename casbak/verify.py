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

from collections.abc import Callable, Iterable, Iterator
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
from casbak.layout import (
    CONFIG_KEY,
    INDEX_PREFIX,
    PACK_PREFIX,
    belongs_to_layout,
    object_key,
    pack_key,
)
from casbak.locks import LockManager
from casbak.model import Manifest, decode_config, decode_manifest
from casbak.objects import parallel_map
from casbak.repository import Repository, Snapshot
from casbak.store import PackStore
from casbak.storedmanifest import decode_stored

Severity = Literal["damage", "warning", "info"]
Progress = Callable[[int, int, int], None]
"""Called with objects done, objects in all, and bytes read so far."""
_LOOKS = 3
"""How often an object that reads badly is read again before it is called damage."""


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
    objects_stored: int
    """Distinct objects the checked snapshots reference and the repository holds."""
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
        # Only referenced objects are checked (and counted): reading a delta
        # reads its bases, and a base nothing references is an orphan that gc
        # frees once it has re-encoded the objects compressed against it.
        findings.extend(_index_findings(packs))
    present: dict[str, int] = {digest: info.size for digest, info in repo.objects.list()}

    def presence(digest: str) -> Finding | None:
        if digest not in present and not (packs is not None and _moved(packs, digest, present)):
            return Finding(
                "missing-object", "damage", _object_location(digest), "object is missing"
            )
        return None

    def check(digest: str) -> tuple[str, Finding | None]:
        finding = presence(digest)
        if finding is not None or quick:
            return digest, finding
        try:
            repo.objects.read(digest)
        except CasbakError as exc:
            return digest, _read_finding(digest, exc)
        return digest, None

    # A full check also hashes every pack, so it reads them whole, once.
    pack_hashes: dict[str, str] = {}
    checked = (
        _check_packed(packs, sorted(referenced), presence, quick, None if refs else pack_hashes)
        if packs is not None
        else parallel_map(check, sorted(referenced), repo.objects.concurrency)
    )
    bad_objects: dict[str, Finding] = {}
    objects_checked = bytes_checked = 0
    for digest, finding in checked:
        if finding is not None:
            bad_objects[digest] = finding
        if digest in present:
            objects_checked += 1
            bytes_checked += 0 if quick else present[digest]
        if progress is not None:
            progress(objects_checked, len(referenced), bytes_checked)
    if packs is not None and bad_objects:
        bad_objects.update(_damaged_bases(packs, bad_objects, referenced, check))
    findings.extend(_confirmed(repo, snapshots, bad_objects, quick))

    if packs is not None and not quick and not refs:
        findings.extend(_pack_findings(packs, referenced, pack_hashes))
    if not refs:
        findings.extend(_orphans(present, referenced, packs))
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
        objects_stored=objects_checked,
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
    return object_key(digest)


def _check_packed(
    packs: PackStore,
    digests: list[str],
    presence: Callable[[str], Finding | None],
    quick: bool,
    pack_hashes: dict[str, str] | None,
) -> Iterator[tuple[str, Finding | None]]:
    """Format 2: each object's presence first, then the present ones read pack by pack.

    With ``pack_hashes``, packs are read whole and each one's hash is recorded there.
    """
    readable = []
    for digest in digests:
        finding = presence(digest)
        if finding is not None or quick:
            yield digest, finding
        else:
            readable.append(digest)

    def hash_pack(pack_id: str, data: bytes) -> None:
        assert pack_hashes is not None
        pack_hashes[pack_id] = hash_bytes(data)

    whole = None if pack_hashes is None else hash_pack
    for digest, result in packs.read_many(readable, each_pack=whole):
        yield digest, _read_finding(digest, result) if isinstance(result, CasbakError) else None


def _read_finding(digest: str, exc: CasbakError) -> Finding:
    """What an object that could not be read back intact is: corrupt, missing or unreadable."""
    location = _object_location(digest)
    if isinstance(exc, (ChecksumMismatch, CorruptData)):
        return Finding("corrupt-object", "damage", location, str(exc))
    if isinstance(exc, ObjectMissing):
        return Finding("missing-object", "damage", location, "object is missing")
    return Finding("unreadable-object", "damage", location, str(exc))


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
    """A snapshot and its whole manifest (rebuilt and hashed), or None if it is gone.

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
    return [
        Finding(
            "corrupt-index",
            "damage",
            key,
            f"{exc}; objects that only it names count as not indexed",
        )
        for key, exc in packs.index_problems
    ]


def _pack_findings(packs: PackStore, referenced: set[str], hashed: dict[str, str]) -> list[Finding]:
    """Every pack must hash to its name; packs no index names are leftovers.

    ``hashed`` holds the packs already read (and hashed) while their objects were checked.
    """
    index = packs.index()
    named = {location.pack for location in index.values()}
    needed: dict[str, int] = {}
    for digest in referenced:
        location = index.get(Digest(digest))
        if location is not None:
            needed[location.pack] = needed.get(location.pack, 0) + 1
    findings = []
    for info in packs.backend.list(PACK_PREFIX):
        pack_id = info.key.rsplit("/", 1)[-1]
        if pack_id not in named:
            findings.append(
                Finding("orphan-pack", "info", info.key, "no index names it (gc frees it)")
            )
            continue
        try:
            actual = hashed.get(pack_id) or hash_bytes(packs.pack_bytes(pack_id))
        except ObjectMissing:
            continue
        except CasbakError as exc:
            findings.append(Finding("unreadable-pack", "damage", info.key, str(exc)))
            continue
        if actual != pack_id:
            # Its objects were each checked, but a pack that fails its check
            # may hold more rot than the frames found so far; while snapshots
            # need it, that is damage (an import of a bundle moves them out).
            count = needed.get(pack_id, 0)
            findings.append(
                Finding(
                    "corrupt-pack",
                    "damage" if count else "warning",
                    info.key,
                    f"content hashes to {actual}, not to its name; "
                    + (
                        f"it holds {count} objects snapshots need"
                        if count
                        else "no snapshot needs it"
                    ),
                )
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
            continue  # damaged since it was read: the next verify reports it
        if loaded is None:
            continue
        for tenant_id, entry in loaded[1].entries.items():
            if entry.object in victims:
                victims[entry.object][0].add(snap.id)
                victims[entry.object][1].add(tenant_id)
    packs = repo.objects if isinstance(repo.objects, PackStore) else None
    hint = ""
    if packs is not None:
        hint = _unindexed_hint(packs)
        _blame_bases(packs, victims)
    return [
        msgspec.structs.replace(
            finding if packs is None else _packed_finding(packs, d, finding, hint),
            snapshots=sorted(victims[d][0]),
            tenants=sorted(victims[d][1]),
        )
        for d, finding in sorted(suspects.items())
        if victims[d][0]
    ]


def _still_bad(repo: Repository, digest: str, quick: bool) -> Finding | None:
    if not quick:
        try:
            repo.objects.read(digest)
        except CasbakError as exc:
            return _read_finding(digest, exc)
        return None
    if isinstance(repo.objects, PackStore):
        location = repo.objects.locate(digest)
        if location is not None and repo.backend.stat(pack_key(location.pack)) is not None:
            return None
    elif repo.objects.contains(digest):
        return None
    return Finding("missing-object", "damage", _object_location(digest), "object is missing")


def _damaged_bases(
    packs: PackStore,
    bad: dict[str, Finding],
    referenced: set[str],
    check: Callable[[str], tuple[str, Finding | None]],
) -> dict[str, Finding]:
    """Check the unreferenced bases in the chains of damaged objects; return the damaged ones.

    They are not checked up front (gc frees them), but when a referenced
    object fails, the damage may be in a base, and that is where it is.
    """
    index = packs.index()
    found: dict[str, Finding] = {}
    seen: set[str] = set()
    for digest in list(bad):
        location = index.get(Digest(digest))
        while location is not None and location.base is not None:
            base = location.base
            # A base not in the index is unresolved: the delta's own finding says so.
            if base in referenced or base in seen or base not in index:
                break
            seen.add(base)
            _, finding = check(base)
            if finding is not None:
                found[base] = finding
            location = index.get(base)
    return found


def _blame_bases(packs: PackStore, victims: dict[str, tuple[set[str], set[str]]]) -> None:
    """A damaged delta base hurts whoever needs the deltas decoded against it.

    Without this, a base that no snapshot names directly would go unreported,
    and only the deltas, whose own frames are sound, would be named.
    """
    index = packs.index()
    direct = {digest: (set(s), set(t)) for digest, (s, t) in victims.items() if s}
    for digest, (snapshots, tenants) in direct.items():
        location = index.get(Digest(digest))
        seen: set[str] = set()
        while location is not None and location.base in victims and location.base not in seen:
            seen.add(location.base)
            victims[location.base][0].update(snapshots)
            victims[location.base][1].update(tenants)
            location = index.get(location.base)


def _packed_finding(packs: PackStore, digest: str, finding: Finding, hint: str) -> Finding:
    """Name the pack holding the object's frame and the index file that says so."""
    location = packs.index().get(Digest(digest))
    if location is None:
        return msgspec.structs.replace(
            finding,
            kind="missing-object",
            location=INDEX_PREFIX,
            message=f"object {digest} is not indexed: no index file names it{hint}",
        )
    reason = finding.message.removeprefix(f"object {digest}: ")
    if finding.kind == "missing-object":
        reason = "the pack is missing"
    indexed_by = packs.index_file_of(digest) or INDEX_PREFIX
    return msgspec.structs.replace(
        finding,
        location=pack_key(location.pack),
        message=(
            f"object {digest} at offset {location.offset} ({location.length} bytes, "
            f"indexed by {indexed_by}): {reason}"
        ),
    )


def _unindexed_hint(packs: PackStore) -> str:
    """Where the frames of objects no index names may be: damaged index files, loose packs."""
    named = {location.pack for location in packs.index().values()}
    loose = [
        info.key
        for info in packs.backend.list(PACK_PREFIX)
        if info.key.rsplit("/", 1)[-1] not in named
    ]
    parts = []
    if packs.index_problems:
        parts.append("damaged index files: " + ", ".join(key for key, _ in packs.index_problems))
    if loose:
        more = f" and {len(loose) - 3} more" if len(loose) > 3 else ""
        parts.append("packs no index names: " + ", ".join(loose[:3]) + more)
    return f" ({'; '.join(parts)})" if parts else ""


def _orphans(
    present: dict[str, int], referenced: set[str], packs: PackStore | None
) -> list[Finding]:
    index = packs.index() if packs is not None else {}
    return [
        Finding(
            "orphan-object",
            "info",
            _object_location(d) if packs is None else pack_key(index[Digest(d)].pack),
            ("" if packs is None else f"object {d}: ") + "no snapshot references it (gc frees it)",
        )
        for d in sorted(present.keys() - referenced)
        if packs is None or Digest(d) in index
    ]


def _unknown_keys(repo: Repository) -> list[Finding]:
    return [
        Finding("unknown-file", "warning", info.key, "not a casbak file")
        for info in repo.backend.list("")
        if not belongs_to_layout(info.key, repo.version)
    ]


def _lock_findings(repo: Repository) -> list[Finding]:
    findings = []
    for key, record, stale in LockManager(repo.backend).holders():
        if stale:
            who = f"{record.operation} pid {record.pid} on {record.host}" if record else "unknown"
            findings.append(
                Finding("stale-lock", "info", key, f"lock of {who} is stale (removed on next use)")
            )
    return findings
