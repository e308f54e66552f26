"""Questions about history answered from one catalog reading, newest first.

Every answer merges the compacted parts with the journal after them, leaves
out removed snapshots, and orders by manifest time, ties by id (the order
`list` has always used).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import msgspec

from casbak.catalog import CatalogView
from casbak.catalogdata import (
    CHUNK,
    Added,
    SnapshotRecord,
    TenantEntry,
    bucket_of,
    decode_record,
    micros_of,
)
from casbak.ids import Digest
from casbak.model import Manifest
from casbak.storedmanifest import Header


class Holder(NamedTuple):
    """A snapshot in an answer: when, which, and how to read its record."""

    micros: int
    snapshot_id: bytes
    position: int
    """The compacted position, or -1 for a snapshot still in the journal."""
    added: Added | None


class TenantHolder(NamedTuple):
    """A snapshot holding a tenant, with the version (object digest) and size it holds."""

    holder: Holder
    version: bytes
    size: int


def record(view: CatalogView, holder: Holder) -> SnapshotRecord:
    """The full record of a snapshot in an answer."""
    if holder.added is not None:
        return holder.added.record
    chunk = view.chunk(holder.position // CHUNK)
    return decode_record(chunk.records[holder.position % CHUNK])


def _sort_key(holder: Holder) -> tuple[int, bytes]:
    return holder.micros, holder.snapshot_id


def _compacted(view: CatalogView, chunk_index: int) -> Iterator[Holder]:
    chunk = view.chunk(chunk_index)
    base = chunk_index * CHUNK
    removed = view.removed
    for index, micros in enumerate(view.times(chunk_index)):
        snapshot_id = chunk.id_at(index)
        if chunk.alive[index] and snapshot_id not in removed and snapshot_id not in view.added:
            yield Holder(micros, snapshot_id, base + index, None)


def _journaled(view: CatalogView) -> list[Holder]:
    return [Holder(a.micros, sid, -1, a) for sid, a in view.added.items()]


def newest(view: CatalogView, limit: int | None = None) -> list[Holder]:
    """Snapshots newest first; with ``limit``, only the newest ones.

    Positions follow the order the catalog learned of snapshots, not their
    times (an import adds old ones), so every chunk is considered: by the
    newest time the head records for it, or else by its own times.
    """
    found = _journaled(view)
    head = view.head
    bounds = head.newest if len(head.newest) == len(head.chunks) else None
    for chunk_index in range(len(head.chunks) - 1, -1, -1):
        if limit is not None and len(found) >= limit:
            threshold = sorted(found, key=_sort_key, reverse=True)[limit - 1]
            if bounds is not None:
                top = bounds[chunk_index]
            else:
                top = max(view.times(chunk_index), default=threshold.micros - 1)
            if top < threshold.micros:
                continue
        found.extend(_compacted(view, chunk_index))
    found.sort(key=_sort_key, reverse=True)
    return found if limit is None else found[:limit]


def of_target(view: CatalogView, target_id: str) -> list[Holder]:
    """The snapshots of one target, newest first."""
    bucket = view.bucket(bucket_of(target_id))
    found = [
        holder
        for holder in _journaled(view)
        if holder.added is not None and holder.added.record.target_id == target_id
    ]
    for position in bucket.target_positions(target_id):
        holder = _at(view, position)
        if holder is not None:
            found.append(holder)
    found.sort(key=_sort_key, reverse=True)
    return found


def _at(view: CatalogView, position: int) -> Holder | None:
    chunk = view.chunk(position // CHUNK)
    index = position % CHUNK
    snapshot_id = chunk.id_at(index)
    if not chunk.alive[index] or snapshot_id in view.removed or snapshot_id in view.added:
        return None
    return Holder(view.times(position // CHUNK)[index], snapshot_id, position, None)


def holding(view: CatalogView, tenant_id: str) -> list[TenantHolder]:
    """Every snapshot that holds a tenant, newest first, with the version it holds."""
    found = []
    for holder in _journaled(view):
        assert holder.added is not None
        for entry in view.entries_of(holder.added):
            if entry.tenant_id == tenant_id:
                found.append(TenantHolder(holder, entry.object, entry.size))
    history = view.bucket(bucket_of(tenant_id)).tenant(tenant_id)
    if history is not None:
        for position, version in history.occurrences():
            held = _at(view, position)
            if held is not None:
                found.append(TenantHolder(held, history.objects[version], history.sizes[version]))
    found.sort(key=lambda item: _sort_key(item.holder), reverse=True)
    return found


def newest_holding(view: CatalogView, tenant_id: str) -> TenantHolder | None:
    """The newest snapshot holding a tenant, with the version it holds.

    Journaled snapshots are looked at newest first, so a manifest is read
    for one told by reference only until one holds the tenant.
    """
    best: TenantHolder | None = None
    for holder in sorted(_journaled(view), key=_sort_key, reverse=True):
        assert holder.added is not None
        entry = next((e for e in view.entries_of(holder.added) if e.tenant_id == tenant_id), None)
        if entry is not None:
            best = TenantHolder(holder, entry.object, entry.size)
            break
    history = view.bucket(bucket_of(tenant_id)).tenant(tenant_id)
    if history is not None:
        occurrences = sorted(
            history.occurrences(),
            key=lambda item: (
                view.times(item[0] // CHUNK)[item[0] % CHUNK],
                view.chunk(item[0] // CHUNK).id_at(item[0] % CHUNK),
            ),
            reverse=True,
        )
        for position, version in occurrences:
            held = _at(view, position)
            if held is None:
                continue
            if best is None or _sort_key(held) > _sort_key(best.holder):
                best = TenantHolder(held, history.objects[version], history.sizes[version])
            break
    return best


def tenants(view: CatalogView) -> Iterator[str]:
    """Every tenant id the catalog knows (held by a snapshot now or once)."""
    seen: set[str] = set()
    for index in range(len(view.head.buckets)):
        for tenant_id in view.bucket(index).tenants:
            seen.add(tenant_id)
            yield tenant_id
    for added in view.added.values():
        for entry in view.entries_of(added):
            if entry.tenant_id not in seen:
                seen.add(entry.tenant_id)
                yield entry.tenant_id


def find(view: CatalogView, snapshot_id: bytes) -> Holder | None:
    """A snapshot by its full id (a scan of the ids, decoding nothing else)."""
    added = view.added.get(snapshot_id)
    if added is not None:
        return Holder(added.micros, snapshot_id, -1, added)
    for chunk_index in range(len(view.head.chunks)):
        ids = view.chunk(chunk_index).ids
        offset = ids.find(snapshot_id)
        while offset >= 0 and offset % 32:
            offset = ids.find(snapshot_id, offset + 1)
        if offset >= 0:
            return _at(view, chunk_index * CHUNK + offset // 32)
    return None


def with_prefix(view: CatalogView, prefix: str, enough: int = 2) -> list[Holder]:
    """Snapshots whose hex id starts with ``prefix`` (stops after ``enough``)."""
    found = [holder for holder in _journaled(view) if holder.snapshot_id.hex().startswith(prefix)]
    for chunk_index in range(len(view.head.chunks)):
        if len(found) >= enough:
            break
        chunk = view.chunk(chunk_index)
        for index in range(len(chunk.ids) // 32):
            if chunk.id_at(index).hex().startswith(prefix):
                holder = _at(view, chunk_index * CHUNK + index)
                if holder is not None:
                    found.append(holder)
    return found


def everything_but(
    view: CatalogView, removed: set[bytes], rebased: dict[bytes, tuple[bytes, int]]
) -> list[Added]:
    """Every snapshot the catalog holds except ``removed``, as additions to a new catalog.

    ``rebased`` gives the new parent and depth of manifests rewritten meanwhile.
    """
    kept = [holder for holder in newest(view) if holder.snapshot_id not in removed]
    entries: dict[int, list[TenantEntry]] = {}
    for index in range(len(view.head.buckets)):
        bucket = view.bucket(index)
        for tenant_id in bucket.tenants:
            history = bucket.tenant(tenant_id)
            assert history is not None
            for position, version in history.occurrences():
                entries.setdefault(position, []).append(
                    TenantEntry(tenant_id, history.objects[version], history.sizes[version])
                )
    found = []
    for holder in reversed(kept):
        if holder.added is not None:
            added = msgspec.structs.replace(holder.added, entries=view.entries_of(holder.added))
        else:
            added = Added(record(view, holder), holder.micros, entries.get(holder.position, []))
        if holder.snapshot_id in rebased:
            parent, depth = rebased[holder.snapshot_id]
            changed = msgspec.structs.replace(added.record, parent=parent, depth=depth)
            added = msgspec.structs.replace(added, record=changed)
        found.append(added)
    return found


def at_or_before(view: CatalogView, micros: int) -> Holder | None:
    """The newest snapshot at or before a time (µs)."""
    best: Holder | None = None
    for holder in _journaled(view):
        if holder.micros <= micros and (best is None or _sort_key(holder) > _sort_key(best)):
            best = holder
    for chunk_index in range(len(view.head.chunks)):
        times = view.times(chunk_index)
        for index, moment in enumerate(times):
            if moment > micros or (best is not None and moment < best.micros):
                continue
            held = _at(view, chunk_index * CHUNK + index)
            if held is not None and (best is None or _sort_key(held) > _sort_key(best)):
                best = held
    return best


def versions(holders: list[TenantHolder]) -> list[list[TenantHolder]]:
    """Holders (newest first) grouped into runs of one version: what `log` lists."""
    runs: list[list[TenantHolder]] = []
    for holder in holders:
        if runs and runs[-1][0].version == holder.version:
            runs[-1].append(holder)
        else:
            runs.append([holder])
    return runs


def is_at_or_before(holder: Holder, limit: Holder) -> bool:
    """Whether ``holder`` comes no later than ``limit`` in history order."""
    return _sort_key(holder) <= _sort_key(limit)


def added_of(
    snapshot_id: Digest, key: str, header: Header, manifest: Manifest, *, by_reference: bool = False
) -> Added:
    """What the catalog is told of a stored snapshot (``by_reference``: not its tenants)."""
    record = record_of(snapshot_id, key, header)
    if by_reference:
        return Added(record, micros_of(header.timestamp), None)
    return Added(record, micros_of(header.timestamp), tenant_entries(manifest))


def tenant_entries(manifest: Manifest) -> list[TenantEntry]:
    """A manifest's tenants as the catalog keeps them."""
    return [
        TenantEntry(tenant_id, bytes.fromhex(entry.object), entry.size)
        for tenant_id, entry in manifest.entries.items()
    ]


def record_of(snapshot_id: Digest, key: str, header: Header) -> SnapshotRecord:
    """The catalog's record of a snapshot stored under ``key`` with ``header``."""
    return SnapshotRecord(
        bytes.fromhex(snapshot_id),
        key,
        _TIME_ENCODER.encode(header.timestamp).decode()[1:-1],
        header.operation,
        header.target_id,
        header.description,
        list(header.tags),
        header.tenants,
        bytes.fromhex(header.parent) if header.parent else b"",
        header.depth,
        dict(header.provenance),
    )


def header_of_record(found: SnapshotRecord) -> Header:
    """A snapshot's header as the catalog keeps it."""
    return Header(
        found.description,
        found.operation,
        list(found.tags),
        found.target_id,
        found.time(),
        found.tenants,
        Digest(found.parent.hex()) if found.parent else None,
        found.depth,
        dict(found.provenance),
    )


_TIME_ENCODER = msgspec.json.Encoder()
