"""Repositories as older casbak releases wrote them, made from current ones, for migrate's tests.

casbak itself writes only the current format; these turn a current repository
into formats 1, 2 and 3 exactly as docs/FORMAT.md ("Older formats") describes
them. No older format had provenance: take the snapshots `without_provenance`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import pytest
import zstandard

from casbak.backends.local import LocalBackend
from casbak.layout import (
    CONFIG_KEY,
    DICTIONARY_PREFIX,
    INDEX_PREFIX,
    MANIFEST_PREFIX,
    PACK_PREFIX,
    manifest_key,
    object_key,
)
from casbak.model import encode_manifest
from casbak.repository import Repository
from casbak.storedmanifest import decode_stored


@contextmanager
def without_provenance() -> Iterator[None]:
    """Snapshots taken inside record no provenance, as before format 4."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("casbak.provenance.collect_provenance", lambda meta=None: {})
        yield


def _no_provenance(key: str, data: bytes) -> None:
    assert b'"provenance"' not in data, f"{key}: formats before 4 had no provenance"


def _set_version(backend: LocalBackend, version: int) -> None:
    config = json.loads(backend.get(CONFIG_KEY))
    backend.put(CONFIG_KEY, json.dumps({**config, "version": version}).encode(), overwrite=True)


def as_format_1(path: Path) -> None:
    """One standalone zstd frame per object under objects/, logical manifests as files."""
    repo = Repository.open(LocalBackend(path))
    backend = repo.backend
    for digest in sorted(repo.objects.index()):
        frame = zstandard.ZstdCompressor(level=3).compress(repo.objects.read(digest))
        backend.put(object_key(digest), frame)
    for snap in repo.snapshots():
        _no_provenance(snap.key, backend.get(snap.key))
        manifest = snap.manifest
        key = manifest_key(
            manifest.timestamp, manifest.operation, manifest.target_id, snap.id, version=1
        )
        backend.put(key, encode_manifest(manifest), overwrite=True)
    for prefix in (PACK_PREFIX, INDEX_PREFIX, DICTIONARY_PREFIX):
        for name in list(backend.list_names(prefix)):
            backend.delete(name)
    backend.sync()
    _set_version(LocalBackend(path), 1)


def as_format_2(path: Path) -> None:
    """Packs as today; each manifest a `.snap` file: one zstd frame of msgpack."""
    backend = LocalBackend(path)
    for key in list(backend.list_names(MANIFEST_PREFIX)):
        _no_provenance(key, backend.get(key))
        document = msgspec.structs.replace(decode_stored(backend.get(key), key), version=2)
        packed = zstandard.ZstdCompressor().compress(msgspec.msgpack.encode(document))
        backend.put(key.removesuffix(".json") + ".snap", packed)
        backend.delete(key)
    backend.sync()
    _set_version(backend, 2)


def as_format_3(path: Path) -> None:
    """Format 4's files, but every manifest file says version 3 (and none holds provenance)."""
    backend = LocalBackend(path)
    for key in list(backend.list_names(MANIFEST_PREFIX)):
        data = backend.get(key)
        _no_provenance(key, data)
        document = json.loads(data)
        if document["version"] == 4:
            document["version"] = 3
            encoded = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
            backend.put(key, encoded.encode() + b"\n", overwrite=True)
    backend.sync()
    _set_version(backend, 3)
