"""What verify finds and where: findings, the report, and the checks of files as such.

A finding names the real file (pack, index file, manifest, config, lock), the
object id where there is one, and for damage the snapshots and tenants it hurts.
`casbak.verify` walks the repository and gathers them.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from casbak.backends.base import Backend
from casbak.catalogcheck import CORRUPT, Problem
from casbak.errors import (
    CasbakError,
    ChecksumMismatch,
    CorruptData,
    FormatVersionError,
    IntegrityError,
    ObjectMissing,
    RepositoryNotFound,
)
from casbak.ids import Digest, hash_bytes
from casbak.keystore import read_slots
from casbak.layout import (
    CONFIG_KEY,
    ENCRYPTED_ROOT,
    INDEX_PREFIX,
    PACK_PREFIX,
    belongs_to_layout,
    is_plain_leftover,
    pack_key,
)
from casbak.locks import LockManager
from casbak.model import REPOSITORY_VERSION
from casbak.repository import Repository, locate
from casbak.store import PackStore
from casbak.wording import count as plural

Severity = Literal["damage", "warning", "info"]


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


def check_config(backend: Backend) -> Finding | None:
    """A finding for a missing, unreadable or unsupported config, or None when it is sound.

    A config naming a root is followed: the config there must match it.
    """
    where = CONFIG_KEY
    try:
        locate(backend)
    except RepositoryNotFound:
        return Finding("missing-config", "damage", where, "repository config is missing")
    except FormatVersionError as exc:
        return Finding("unsupported-version", "damage", where, str(exc))
    except IntegrityError as exc:
        return Finding("corrupt-config", "damage", where, str(exc))
    return None


def config_failure_report(finding: Finding) -> VerifyReport:
    """The report when the config itself is unusable: nothing else can be judged."""
    return VerifyReport(False, "config", 0, 0, 0, 1, [finding])


def missing(digest: str) -> Finding:
    """An object that is not there; its location is set by `packed_finding`."""
    return Finding("missing-object", "damage", INDEX_PREFIX, f"object {digest} is missing")


def read_finding(digest: str, exc: CasbakError) -> Finding:
    """What an object that could not be read back intact is: corrupt, missing or unreadable."""
    if isinstance(exc, (ChecksumMismatch, CorruptData)):
        return Finding("corrupt-object", "damage", INDEX_PREFIX, str(exc))
    if isinstance(exc, ObjectMissing):
        return missing(digest)
    return Finding("unreadable-object", "damage", INDEX_PREFIX, str(exc))


def index_findings(packs: PackStore) -> list[Finding]:
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


def pack_findings(packs: PackStore, referenced: set[str], hashed: dict[str, str]) -> list[Finding]:
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
                        f"it holds {plural(count, 'object')} snapshots need"
                        if count
                        else "no snapshot needs it"
                    ),
                )
            )
    return findings


def blame_bases(packs: PackStore, victims: dict[str, tuple[set[str], set[str]]]) -> None:
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


def packed_finding(packs: PackStore, digest: str, finding: Finding, hint: str) -> Finding:
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


def unindexed_hint(packs: PackStore) -> str:
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


def orphans(present: dict[str, int], referenced: set[str], packs: PackStore) -> list[Finding]:
    """Objects no checked snapshot references, at the pack that holds each (gc frees them)."""
    index = packs.index()
    return [
        Finding(
            "orphan-object",
            "info",
            pack_key(index[Digest(d)].pack),
            f"object {d}: no snapshot references it (gc frees it)",
        )
        for d in sorted(present.keys() - referenced)
        if Digest(d) in index
    ]


def unknown_keys(repo: Repository) -> list[Finding]:
    """Files that are no part of the layout (docs/FORMAT.md, Layout).

    In a plain repository, the encrypted copy that ``migrate --encrypt``
    builds under ``encrypted/`` is one warning, never a file-by-file complaint:
    until that command commits, the plain repository is whole and in use.
    """
    findings = []
    staged = 0
    for key in repo.backend.list_names(""):
        if repo.version == REPOSITORY_VERSION and key.startswith(ENCRYPTED_ROOT):
            staged += 1
        elif not belongs_to_layout(key, repo.version):
            findings.append(Finding("unknown-file", "warning", key, "not a casbak file"))
    if staged:
        findings.append(
            Finding(
                "unfinished-encryption",
                "warning",
                ENCRYPTED_ROOT,
                f"{plural(staged, 'file')} of an encrypted copy: migrate --encrypt in progress; "
                "run it again to finish (until it commits, this plain repository is complete "
                "and in use)",
            )
        )
    return findings


def leftover_findings(repo: Repository) -> list[Finding]:
    """Files beside the root folder of a converted repository.

    Those of the plain repository's layout (`is_plain_leftover`), not yet
    removed, are one warning per top-level folder: nothing reads them, but
    they hold the plain data, and a rerun of ``migrate --encrypt`` removes them
    (carrying over any snapshot among them first). Anything else there is no
    casbak file, reported as any unknown file is: nothing removes it.
    """
    if repo.outer is None:
        return []
    root = repo.location.top_config.root
    groups: dict[str, int] = {}
    findings = []
    for key in repo.outer.list_names(""):
        if key == CONFIG_KEY or (isinstance(root, str) and key.startswith(root)):
            continue
        if not is_plain_leftover(key):
            findings.append(Finding("unknown-file", "warning", key, "not a casbak file"))
            continue
        folder = key.split("/", 1)[0] + ("/" if "/" in key else "")
        groups[folder] = groups.get(folder, 0) + 1
    return [
        Finding(
            "encryption-leftover",
            "warning",
            folder,
            f"{plural(number, 'file')} of the plain repository, left by migrate --encrypt; "
            "run it again to remove them (a snapshot among them is carried over first)",
        )
        for folder, number in sorted(groups.items())
    ] + findings


def key_slot_findings(repo: Repository) -> list[Finding]:
    """Key slot files of an encrypted repository that are not readable slots.

    A warning, not damage: the repository opened (with another slot), but
    the password of a damaged slot no longer opens it.
    """
    if repo.sealer is None:
        return []
    return [
        Finding("corrupt-key-slot", "warning", key, f"not a usable key slot: {why}")
        for key, why in read_slots(repo.backend).damaged.items()
    ]


def lock_findings(repo: Repository) -> list[Finding]:
    """Locks whose holder is gone (the next user removes them)."""
    findings = []
    for key, record, stale in LockManager(repo.backend).holders():
        if stale:
            who = f"{record.operation} pid {record.pid} on {record.host}" if record else "unknown"
            findings.append(
                Finding("stale-lock", "info", key, f"lock of {who} is stale (removed on next use)")
            )
    return findings


CATALOG_WAY_OUT = (
    "the catalog is a cache of the manifests, which are what counts and are not "
    "affected; 'casbak gc' writes it afresh"
)
_SHOWN = 20


def catalog_findings(problems: list[Problem]) -> list[Finding]:
    """One warning per kind of catalog problem and file, naming (some of) the snapshots.

    Never damage: what `list`, references and `log` answer may be wrong or
    fail until gc writes the catalog afresh, but nothing stored is lost.
    """
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for problem in problems:
        ids = grouped.setdefault((problem.kind, problem.location, problem.what), [])
        if problem.snapshot:
            ids.append(problem.snapshot)
    findings = []
    for (kind, location, what), ids in grouped.items():
        if kind == CORRUPT:
            message = f"catalog file {what}"
        else:
            message = f"the catalog {what}"
            if ids:
                message += f" ({plural(len(ids), 'snapshot')})"
        message = f"{message}; {CATALOG_WAY_OUT}"
        findings.append(Finding(kind, "warning", location, message, sorted(ids)[:_SHOWN]))
    return findings
