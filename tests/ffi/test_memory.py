"""The codec keeps freed big mappings for reuse: bounded, harmless to results, releasable."""

from __future__ import annotations

import subprocess
import sys
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


def test_fork_after_repeated_init_does_not_deadlock() -> None:
    # Each dg_global_init() used to add another pthread_atfork handler set: the second one
    # locked the already-locked pool mutex inside fork().
    script = (
        "import os, sys\n"
        "from xdelta_ffi._xdelta3_cffi import lib\n"
        "for _ in range(3): lib.dg_global_init()\n"
        "pid = os.fork()\n"
        "if pid == 0: os._exit(7)\n"
        "sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=60, check=False)
    assert done.returncode == 7


def test_closing_a_client_keeps_the_pool_other_clients_use() -> None:
    import asyncio

    from deltaglider_async import create_client

    async def open_and_close() -> None:
        async with create_client(endpoint_url="http://127.0.0.1:9", region_name="us-east-1"):
            pass

    asyncio.run(open_and_close())  # the first client caps the pool (a share of its budget)
    release_memory()
    source, target = versioned_pair(8 * MiB, seed=6)
    encode(source, target, level=9)
    kept = pooled_memory()
    assert kept > 0
    asyncio.run(open_and_close())
    assert pooled_memory() == kept
    release_memory()
