"""Cancelling a put (Ctrl-C, a request timeout in a service) returns promptly and leaves nothing."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio

from deltaglider_async import AsyncDeltaGliderClient
from tests.localserver import LocalS3
from xdelta_ffi import release_memory

from ..conftest import boto, make_client

MiB = 1 << 20


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _versions(tmp_path: Path) -> tuple[Path, Path]:
    """A 256 MiB first version and a 1 GiB second one made of it (mostly matches: the encoder
    runs over the whole file instead of giving up on a hopeless delta)."""
    block = os.urandom(64 * MiB)
    first = tmp_path / "disk-1.tar"
    second = tmp_path / "disk-2.tar"
    with first.open("wb") as out:
        for i in range(4):
            out.write(block[i:] + block[:i])
    with second.open("wb") as out:
        for i in range(16):
            out.write(block[i % 4 :] + block[: i % 4] if i % 5 else os.urandom(64 * MiB))
    return first, second


async def test_cancelling_a_1_gib_put_returns_within_a_second_and_leaves_nothing(
    seaweed: LocalS3, tmp_path: Path
) -> None:
    # SeaweedFS only: moto would hold the 256 MiB reference in this test's memory.
    raw = boto(seaweed)
    bucket = "cancelled"
    raw.create_bucket(Bucket=bucket)
    async with make_client(seaweed, tmp_path / "cache") as dg:
        await _cancel_a_big_put(dg, raw, bucket, tmp_path)


async def _cancel_a_big_put(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str, tmp_path: Path
) -> None:
    first, second = _versions(tmp_path)
    await dg.upload(first, f"s3://{bucket}/disks/")
    before = {o["Key"] for o in raw.list_objects_v2(Bucket=bucket).get("Contents", [])}
    release_memory()
    rss_before = _rss()
    assert dg._ctx.tmp is not None
    with anyio.CancelScope() as scope:

        async def cancel_soon() -> None:
            await anyio.sleep(2.0)  # well into the encode (about 10 s of work)
            nonlocal cancelled_at
            cancelled_at = time.monotonic()
            scope.cancel()

        cancelled_at = 0.0
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_soon)
            await dg.upload(second, f"s3://{bucket}/disks/")
    returned_after = time.monotonic() - cancelled_at
    assert cancelled_at, "the put finished before it could be cancelled"
    assert returned_after < 1.0, f"the cancelled put took {returned_after:.2f}s to return"
    after = {o["Key"] for o in raw.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert after == before
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert list(dg._ctx.tmp.iterdir()) == []
    # The step that was running when the put was abandoned ends on its worker thread and
    # frees the encoder there.
    with anyio.fail_after(30):
        while (release_memory(), _rss())[1] > rss_before + 64 * MiB:  # noqa: ASYNC110
            await anyio.sleep(0.1)
