"""Property-based fuzzing of every parser of outside data.

Whatever the bytes, a parser returns a value or raises casbak's own clear
error: never another exception, never a hang (hypothesis deadlines), never an
unbounded allocation (inputs are bounded; bombs are refused by declared size).
"""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casbak.bundle import read_bundle
from casbak.canonical import decode_json
from casbak.errors import BundleError, CorruptData, FormatVersionError, InputError
from casbak.model import decode_config, decode_manifest
from casbak.repository import Repository
from casbak.service import take_snapshot
from casbak.sources import documents_from_values
from casbak.tenantdocs import split_tenants
from casbak.transfer import export_bundle, select_snapshots

EXAMPLES = int(os.environ.get("CASBAK_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_text = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
    max_leaves=20,
).map(lambda v: json.dumps(v, allow_nan=True).encode())
json_like_bytes = st.one_of(
    st.binary(max_size=300),
    json_text,
    json_text.flatmap(
        lambda b: st.tuples(st.just(b), st.integers(0, max(0, len(b) - 1)), st.binary(max_size=3))
    ).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :]),
    st.text(alphabet='{}[]":,\\ud800nulltrue0123456789.eE-+ ', max_size=60).map(str.encode),
)


@FUZZ
@given(json_like_bytes)
def test_tenant_json_parser(data: bytes) -> None:
    try:
        value = decode_json(data, "fuzz.json")
    except InputError as exc:
        assert str(exc).startswith("fuzz.json")
        return
    try:
        split_tenants(value, "fuzz.json")
    except InputError as exc:
        assert str(exc).startswith("fuzz.json")


@FUZZ
@given(json_like_bytes)
def test_manifest_parser(data: bytes) -> None:
    try:
        decode_manifest(data, "manifest")
    except (CorruptData, FormatVersionError):
        pass


@FUZZ
@given(json_like_bytes)
def test_config_parser(data: bytes) -> None:
    try:
        decode_config(data, "config")
    except (CorruptData, FormatVersionError):
        pass


@pytest.fixture(scope="module")
def valid_bundle() -> bytes:
    repo = Repository.init(__import__("casbak.backends.memory", fromlist=["x"]).MemoryBackend())
    take_snapshot(repo, documents_from_values([{"id": f"t{i}", "v": i} for i in range(3)], "t"))
    stream = io.BytesIO()
    export_bundle(repo, select_snapshots(repo, everything=True), stream)
    return stream.getvalue()


def _read_all(data: bytes) -> None:
    try:
        for _ in read_bundle(io.BytesIO(data)):
            pass
    except BundleError as exc:
        assert str(exc)


@FUZZ
@given(st.binary(max_size=2000))
def test_bundle_reader_on_random_bytes(data: bytes) -> None:
    _read_all(data)


@FUZZ
@given(st.data())
def test_bundle_reader_on_mutated_bundles(valid_bundle: bytes, data: st.DataObject) -> None:
    mutated = bytearray(valid_bundle)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
        where = data.draw(st.integers(0, len(mutated) - 1))
        if action == "flip":
            mutated[where] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del mutated[where:]
            if not mutated:
                break
        elif action == "insert":
            mutated[where:where] = data.draw(st.binary(min_size=1, max_size=16))
        else:
            mutated[where : where + 512] = bytes(min(512, len(mutated) - where))
    _read_all(bytes(mutated))


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.text(max_size=40),
            st.binary(max_size=64),
            st.sampled_from([tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.DIRTYPE, tarfile.LNKTYPE]),
        ),
        max_size=5,
    )
)
def test_bundle_reader_on_arbitrary_tar_archives(members: list[tuple[str, bytes, bytes]]) -> None:
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content, kind in members:
            info = tarfile.TarInfo(name or "x")
            info.type = kind
            info.size = len(content) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(content) if kind == tarfile.REGTYPE else None)
    _read_all(stream.getvalue())
