"""The filesystem reference cache on a real disk: bounded, shared by a user's processes, private."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from deltaglider_async import ReferenceCache
from deltaglider_async._engine.cache import FOREIGN_ENTRY_TTL

MiB = 1 << 20


def _reference(seed: int, size: int = MiB) -> tuple[str, bytes]:
    data = hashlib.sha256(str(seed).encode()).digest() * (size // 32)
    return hashlib.sha256(data).hexdigest(), data


def _serving(data: bytes) -> Callable[[], AsyncIterator[bytes]]:
    async def fetch() -> AsyncIterator[bytes]:
        for at in range(0, len(data), 300_000):
            yield data[at : at + 300_000]

    return fetch


async def _read(cache: ReferenceCache, seed: int) -> bytes:
    sha, data = _reference(seed)
    entry = await cache.get(sha, _serving(data))
    source = entry.codec_source()
    out = source if isinstance(source, bytes) else source(0, entry.size)
    getattr(entry, "close", lambda: None)()
    return out


async def test_a_full_cache_evicts_least_recently_used_and_stays_correct(tmp_path: Path) -> None:
    cache = ReferenceCache(directory=tmp_path, max_bytes=3 * MiB + MiB // 2)
    for seed in (1, 2, 3):
        assert await _read(cache, seed) == _reference(seed)[1]
        await anyio.sleep(0.01)  # distinct mtimes, which eviction goes by
    assert await _read(cache, 1) == _reference(1)[1]  # a hit: 1 is now the most recent
    assert cache.fetches == 3
    await anyio.sleep(0.01)
    assert await _read(cache, 4) == _reference(4)[1]  # 2 is evicted, not 1
    assert cache.disk_usage() <= cache.max_bytes
    for seed in (1, 3, 4):
        assert await _read(cache, seed) == _reference(seed)[1]
    assert cache.fetches == 4
    assert await _read(cache, 2) == _reference(2)[1]
    assert cache.fetches == 5
    assert cache.disk_usage() <= cache.max_bytes
    assert not len(cache._fetches)  # fetch locks are forgotten once nobody waits on them


async def test_a_reference_larger_than_the_cap_is_served_but_not_kept(tmp_path: Path) -> None:
    cache = ReferenceCache(directory=tmp_path, max_bytes=MiB // 2)
    assert await _read(cache, 7) == _reference(7)[1]
    assert cache.disk_usage() == 0
    assert await _read(cache, 7) == _reference(7)[1]
    assert cache.fetches == 2


async def test_concurrent_readers_fetch_once(tmp_path: Path) -> None:
    cache = ReferenceCache(directory=tmp_path)
    results: list[bytes] = []

    async def read() -> None:
        results.append(await _read(cache, 9))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(read)
    assert results == [_reference(9)[1]] * 8
    assert cache.fetches == 1
    assert not len(cache._fetches)


_OTHER_PROCESS = """
import anyio, sys
from pathlib import Path
from deltaglider_async import ReferenceCache
from tests.unit.test_cache import _read
cache = ReferenceCache(directory=Path(sys.argv[1]))
anyio.run(_read, cache, int(sys.argv[2]))
print(cache.fetches)
"""


def test_two_processes_share_entries_without_configuration(tmp_path: Path) -> None:
    def run(seed: int) -> int:
        done = subprocess.run(
            [sys.executable, "-c", _OTHER_PROCESS, str(tmp_path), str(seed)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
            cwd=Path(__file__).parents[2],
            env={k: v for k, v in os.environ.items() if k != "DG_CACHE_ENCRYPTION_KEY"},
        )
        return int(done.stdout)

    assert run(11) == 1
    assert run(11) == 0
    private = tmp_path / f"user-{os.getuid()}"
    key = private / "key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


async def test_a_shared_directory_keeps_its_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    cache = ReferenceCache(directory=shared)
    assert await _read(cache, 3) == _reference(3)[1]
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert stat.S_IMODE((shared / f"user-{os.getuid()}").stat().st_mode) == 0o700


async def test_an_open_private_directory_is_refused_and_reads_go_on(tmp_path: Path) -> None:
    private = tmp_path / f"user-{os.getuid()}"
    private.mkdir(mode=0o755)
    private.chmod(0o755)
    cache = ReferenceCache(directory=tmp_path)
    assert await _read(cache, 4) == _reference(4)[1]  # served without the cache, with a warning
    assert stat.S_IMODE(private.stat().st_mode) == 0o755
    assert not list(private.rglob("*.dgc"))


async def test_entries_of_lost_keys_and_stale_fills_are_cleaned_up(tmp_path: Path) -> None:
    lost = ReferenceCache(directory=tmp_path, key=os.urandom(32))
    await _read(lost, 5)
    (lost_entry,) = list(tmp_path.rglob("*.dgc"))
    stale_fill = lost_entry.parent / ".fill-killed.tmp"
    stale_fill.write_bytes(b"x")
    old = time.time() - FOREIGN_ENTRY_TTL - 60
    os.utime(lost_entry, (old, old))
    os.utime(stale_fill, (old, old))
    # An earlier version's layout: entries straight under the directory, per-process keys.
    legacy = tmp_path / "ab" / f"{'ab' * 32}.{'0' * 16}.dgc"
    legacy.parent.mkdir()
    legacy.write_bytes(b"old")
    recent_foreign = ReferenceCache(directory=tmp_path, key=os.urandom(32))
    await _read(recent_foreign, 6)

    assert not lost_entry.exists()
    assert not stale_fill.exists()
    assert legacy.exists()  # the private directory already existed: no second legacy sweep
    assert len(list(tmp_path.rglob("*.dgc"))) == 2
    fresh_base = tmp_path / "fresh"
    (fresh_base / "cd").mkdir(parents=True)
    legacy2 = fresh_base / "cd" / f"{'cd' * 32}.{'1' * 16}.dgc"
    legacy2.write_bytes(b"old")
    await _read(ReferenceCache(directory=fresh_base), 6)
    assert not legacy2.exists() and not legacy2.parent.exists()


@pytest.mark.parametrize("name", ["DG_CACHE_MAX_SIZE_MB", "DG_CACHE_MEMORY_SIZE_MB"])
def test_bad_size_settings_name_the_variable(name: str) -> None:
    from deltaglider_async import InvalidArgumentError, create_client

    with pytest.raises(InvalidArgumentError, match=name):
        create_client("http://127.0.0.1:9", env={name: "lots"})
