"""The codec keeps freed big mappings for reuse: bounded, harmless to results, releasable."""

from __future__ import annotations

import threading

from xdelta_ffi import decode, encode, pooled_memory, release_memory

from .conftest import versioned_pair

MiB = 1 << 20
POOL_CAP = 256 * MiB


def test_freed_tables_are_kept_within_the_cap_and_released_on_demand() -> None:
    release_memory()
    source, target = versioned_pair(16 * MiB, seed=3)
    encode(source, target, level=9)
    kept = pooled_memory()
    assert 0 < kept <= POOL_CAP
    assert release_memory() == kept
    assert pooled_memory() == 0


def test_reused_memory_does_not_change_a_single_delta_byte() -> None:
    # Reused mappings hold the previous codec's tables (not zeros): deltas must not depend on it.
    release_memory()
    pairs = [versioned_pair(12 * MiB, seed=s) for s in (4, 5)]
    fresh = []
    for source, target in pairs:
        fresh.append(encode(source, target, level=9))
        release_memory()
    for _ in range(2):
        for (source, target), expected in zip(pairs, fresh, strict=True):
            assert encode(source, target, level=9) == expected
            assert decode(source, expected) == target
    assert pooled_memory() <= POOL_CAP


def test_encoders_in_threads_share_the_pool_safely() -> None:
    pairs = [versioned_pair(8 * MiB, seed=s) for s in range(6, 10)]
    expected = [encode(s, t) for s, t in pairs]
    got: dict[int, bytes] = {}

    def work(i: int) -> None:
        for _ in range(3):
            got[i] = encode(*pairs[i])
            assert decode(pairs[i][0], got[i]) == pairs[i][1]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(pairs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(pairs))] == expected
    assert pooled_memory() <= POOL_CAP
