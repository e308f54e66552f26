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

The catalog is compared with the manifests read here (`casbak.catalogcheck`);
as a cache of them, what is wrong with it is a warning, never damage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import msgspec

from casbak.catalogcheck import Said, confirmed_problems, said_of
from casbak.errors import (
    CasbakError,
    ChecksumMismatch,
    CorruptData,
    FormatVersionError,
    ObjectMissing,
)
from casbak.findings import (
    Finding,
    VerifyReport,
    blame_bases,
    catalog_findings,
    index_findings,
    key_slot_findings,
    leftover_findings,
    lock_findings,
    missing,
    orphans,
    pack_findings,
    packed_finding,
    read_finding,
    unindexed_hint,
    unknown_keys,
)
from casbak.ids import Digest, hash_bytes
from casbak.layout import (
    pack_key,
)
from casbak.model import Manifest
from casbak.repository import Repository, Snapshot
from casbak.store import PackStore
from casbak.storedmanifest import decode_manifest_file

Progress = Callable[[int, int, int], None]
"""Called with objects done, objects in all, and bytes read so far."""
_LOOKS = 3
"""How often an object that reads badly is read again before it is called damage."""


def verify_repository(
    repo: Repository,
    *,
    quick: bool = False,
    snapshot_refs: Iterable[str] = (),
    progress: Progress | None = None,
) -> VerifyReport:
    """Check config, manifests and objects; see the module docstring.

    Only referenced objects are checked (and counted): reading a delta reads
    its bases, and a base nothing references is an orphan that gc frees once
    it has re-encoded the objects compressed against it.
    """
    findings: list[Finding] = []
    refs = list(snapshot_refs)
    said: dict[bytes, Said] = {}
    snapshots, referenced = _load_snapshots(repo, refs, findings, said)
    damaged = {bytes.fromhex(sid) for finding in findings for sid in finding.snapshots}
    packs = repo.objects
    findings.extend(index_findings(packs))
    present: dict[str, int] = {digest: info.size for digest, info in repo.objects.list()}

    def presence(digest: str) -> Finding | None:
        if digest not in present and not _moved(packs, digest, present):
            return missing(digest)
        return None

    def check(digest: str) -> tuple[str, Finding | None]:
        finding = presence(digest)
        if finding is not None or quick:
            return digest, finding
        try:
            repo.objects.read(digest)
        except CasbakError as exc:
            return digest, read_finding(digest, exc)
        return digest, None

    # A full check also hashes every pack, so it reads them whole, once.
    pack_hashes: dict[str, str] = {}
    checked = _check_packed(
        packs, sorted(referenced), presence, quick, None if refs else pack_hashes
    )
    bad_objects, objects_checked, bytes_checked = _tally(
        checked, present, len(referenced), quick, progress
    )
    if bad_objects:
        bad_objects.update(_damaged_bases(packs, bad_objects, referenced, check))
    findings.extend(_confirmed(repo, snapshots, bad_objects, quick))

    if not quick and not refs:
        findings.extend(pack_findings(packs, referenced, pack_hashes))
    if not refs:
        findings.extend(_whole_repository_findings(repo, present, referenced))
        findings.extend(catalog_findings(confirmed_problems(repo, said, damaged)))
    findings = _named_from_the_top(repo, findings)
    if not refs:
        findings.extend(_top_level_findings(repo))
    damage = sum(1 for finding in findings if finding.severity == "damage")
    mode = "quick" if quick else "full"
    return VerifyReport(
        damage == 0, mode, len(snapshots), objects_checked, bytes_checked, damage, findings
    )


def _tally(
    checked: Iterable[tuple[str, Finding | None]],
    present: dict[str, int],
    wanted: int,
    quick: bool,
    progress: Progress | None,
) -> tuple[dict[str, Finding], int, int]:
    """The objects that read badly, and how many objects and bytes were checked."""
    bad: dict[str, Finding] = {}
    objects = read = 0
    for digest, finding in checked:
        if finding is not None:
            bad[digest] = finding
        if digest in present:
            objects += 1
            read += 0 if quick else present[digest]
        if progress is not None:
            progress(objects, wanted, read)
    return bad, objects, read


def _whole_repository_findings(
    repo: Repository, present: dict[str, int], referenced: set[str]
) -> list[Finding]:
    """What only a check of everything can tell: orphans, strays, stale locks, permissions."""
    return [
        *orphans(present, referenced, repo.objects),
        *unknown_keys(repo),
        *key_slot_findings(repo),
        *lock_findings(repo),
    ]


def _top_level_findings(repo: Repository) -> list[Finding]:
    """What is wrong in the whole location, the top level of a converted repository included.

    Leftovers name top-level keys; the storage audit names full paths.
    """
    return [
        *leftover_findings(repo),
        *(
            Finding(issue.kind, "warning", issue.location, issue.message)
            for issue in (repo.outer or repo.backend).audit()
        ),
    ]


def _named_from_the_top(repo: Repository, findings: list[Finding]) -> list[Finding]:
    """Findings of a converted repository name its keys as stored: under its root folder."""
    root = repo.location.top_config.root
    if repo.outer is None or not isinstance(root, str):
        return findings
    return [msgspec.structs.replace(f, location=root + f.location) for f in findings]


def _check_packed(
    packs: PackStore,
    digests: list[str],
    presence: Callable[[str], Finding | None],
    quick: bool,
    pack_hashes: dict[str, str] | None,
) -> Iterator[tuple[str, Finding | None]]:
    """Each object's presence first, then the present ones read pack by pack.

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
        yield digest, read_finding(digest, result) if isinstance(result, CasbakError) else None


def _load_snapshots(
    repo: Repository, refs: list[str], findings: list[Finding], said: dict[bytes, Said]
) -> tuple[list[Snapshot], set[str]]:
    """The snapshots to check and every object they reference, each manifest read once.

    What each readable manifest says of its snapshot goes to ``said``, for the catalog check.
    """
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
            snap, manifest = loaded
            said[bytes.fromhex(snapshot_id)] = said_of(snapshot_id, key, snap.header, manifest)
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
        document = decode_manifest_file(key, repo.manifest_file(key, repo.backend.get(key)))
        entries = {e.tenant_id: e.object.hex() for e in document.entries}
    except CasbakError:
        return []
    refs.update(entries.values())
    return sorted(entries)


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
    packs = repo.objects
    hint = unindexed_hint(packs)
    blame_bases(packs, victims)
    return [
        msgspec.structs.replace(
            packed_finding(packs, d, finding, hint),
            snapshots=sorted(victims[d][0]),
            tenants=sorted(victims[d][1]),
        )
        for d, finding in sorted(suspects.items())
        if victims[d][0]
    ]


def _still_bad(repo: Repository, digest: str, quick: bool) -> Finding | None:
    """The second look at an object: read it again, or with --quick, find it and its pack."""
    if not quick:
        try:
            repo.objects.read(digest)
        except CasbakError as exc:
            return read_finding(digest, exc)
        return None
    location = repo.objects.locate(digest)
    if location is not None and repo.backend.stat(pack_key(location.pack)) is not None:
        return None
    return missing(digest)


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
