"""The storage layout: every key built is parsed back; nothing else is taken for a key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from casbak import layout
from casbak.ids import hash_bytes

DIGEST = hash_bytes(b"x")
WHEN = datetime(2025, 11, 17, 10, 30, tzinfo=UTC)


def test_keys_round_trip() -> None:
    assert layout.pack_id_from_key(layout.pack_key(DIGEST)) == DIGEST
    assert layout.index_id_from_key(layout.index_key(DIGEST)) == DIGEST
    assert layout.dictionary_id_from_key(layout.dictionary_key(DIGEST)) == DIGEST
    assert layout.object_id_from_key(layout.object_key(DIGEST)) == DIGEST
    key = layout.manifest_key(WHEN, "tenant-update", "acme/../corp", DIGEST)
    assert key == f"manifests/2025-11-17T10-30-00_tenant-update_acme-corp_{DIGEST}.json"
    assert layout.snapshot_id_from_key(key) == DIGEST
    assert layout.snapshot_id_from_key(key, 3) == DIGEST
    assert layout.snapshot_id_from_key(key, 2) is None
    assert layout.is_lock_key(layout.lock_key("shared", "0123456789abcdef"))


@pytest.mark.parametrize(
    "key",
    [
        f"packs/00/{DIGEST}" if not DIGEST.startswith("00") else f"packs/ff/{DIGEST}",
        f"packs/{DIGEST[:2]}/{DIGEST.upper()}",
        f"packs/{DIGEST[:2]}/{DIGEST}/extra",
        f"index/{DIGEST[:-1]}",
        f"dicts/{DIGEST}.tmp",
        "manifests/notes.json",
        "locks/shared-xyz.json",
        f"objects/{DIGEST[:2]}/{DIGEST}",
        ".tmp-0123456789abcdef",
        "configs",
    ],
)
def test_strays_do_not_belong_to_the_layout(key: str) -> None:
    assert not layout.belongs_to_layout(key)


def test_a_misplaced_object_name_is_recognised_only_on_request() -> None:
    wrong = "ff" if DIGEST.startswith("00") else "00"
    name = f"objects/{wrong}/{DIGEST}"
    assert layout.object_id_from_key(name) is None
    assert layout.object_id_from_key(name, any_shard=True) == DIGEST
    assert layout.object_id_from_key(f"objects/zz/{DIGEST}", any_shard=True) is None


def test_format_1_layout_is_its_own() -> None:
    assert layout.belongs_to_layout(f"objects/{DIGEST[:2]}/{DIGEST}", 1)
    assert not layout.belongs_to_layout(layout.pack_key(DIGEST), 1)
    assert layout.belongs_to_layout(layout.pack_key(DIGEST), 3)
    assert layout.belongs_to_layout("config")
