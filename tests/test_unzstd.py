"""One plain zstd decompressor per thread: the same bytes out as a fresh one gives."""

from __future__ import annotations

import threading

import pytest
import zstandard

from casbak import unzstd


def test_frames_decompress_alike_on_every_thread_and_bad_ones_are_refused() -> None:
    frames = [zstandard.ZstdCompressor().compress(bytes([n]) * 5000) for n in range(50)]
    results: dict[int, list[bytes]] = {}

    def work(number: int) -> None:
        results[number] = [unzstd.decompress(frame) for frame in frames * 20]

    threads = [threading.Thread(target=work, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = [bytes([n]) * 5000 for n in range(50)] * 20
    assert all(found == expected for found in results.values()) and len(results) == 4
    with pytest.raises(zstandard.ZstdError):
        unzstd.decompress(b"not a frame")
    assert unzstd.decompress(frames[1]) == bytes([1]) * 5000  # usable after a failure
