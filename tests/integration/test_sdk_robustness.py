"""Races, tampering, the encrypted cache, multipart transfers and older metadata dialects."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import anyio
import pytest

from deltaglider_async import (
    AsyncDeltaGliderClient,
    IntegrityError,
    ReferenceCache,
    TransferConfig,
)
from tests.localserver import LocalS3

from ..artifacts import release_zip
from ..conftest import make_client
from .test_sdk_basics import metadata, read_all, stored_keys

MiB = 1 << 20


async def test_twenty_concurrent_first_writers(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str
) -> None:
    bodies = {f"race/app-{i}.zip": release_zip(i) for i in range(20)}
    async with anyio.create_task_group() as tg:
        for key, body in bodies.items():
            tg.start_soon(lambda k=key, b=body: dg.put_object(Bucket=bucket, Key=k, Body=b))
    keys = stored_keys(raw, bucket)
    assert [k for k in keys if k.endswith("reference.bin")] == ["race/reference.bin"]
    ref_sha = metadata(raw, bucket, "race/reference.bin")["dg-file-sha256"]
    for key, body in bodies.items():
        assert await read_all(dg, bucket, key) == body
        if key + ".delta" in keys:
            assert metadata(raw, bucket, key + ".delta")["dg-ref-sha256"] == ref_sha


async def test_tampered_delta_is_refused_and_no_file_is_written(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str, tmp_path: Path
) -> None:
    await dg.put_object(Bucket=bucket, Key="t/a.zip", Body=release_zip(1))
    await dg.put_object(Bucket=bucket, Key="t/b.zip", Body=release_zip(2))
    await dg.put_object(Bucket=bucket, Key="t/c.zip", Body=release_zip(3))
    # Swap b's delta bytes for c's, keeping b's metadata: a valid delta of the wrong file.
    meta = raw.head_object(Bucket=bucket, Key="t/b.zip.delta")["Metadata"]
    other = raw.get_object(Bucket=bucket, Key="t/c.zip.delta")["Body"].read()
    raw.put_object(Bucket=bucket, Key="t/b.zip.delta", Body=other, Metadata=meta)
    resp = await dg.get_object(Bucket=bucket, Key="t/b.zip")
    with pytest.raises(IntegrityError):
        await resp["Body"].read()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    dest = downloads / "b.zip"
    dest.write_bytes(b"previous content")
    with pytest.raises(IntegrityError):
        await dg.download(f"s3://{bucket}/t/b.zip", dest)
    assert dest.read_bytes() == b"previous content"
    assert sorted(p.name for p in downloads.iterdir()) == ["b.zip"]
    result = await dg.verify(f"s3://{bucket}/t/b.zip")
    assert not result.valid
    # Garbage instead of a delta
    raw.put_object(Bucket=bucket, Key="t/b.zip.delta", Body=b"garbage" * 100, Metadata=meta)
    with pytest.raises(IntegrityError):
        await dg.download(f"s3://{bucket}/t/b.zip", downloads / "x.zip")
    assert sorted(p.name for p in downloads.iterdir()) == ["b.zip"]


async def test_replaced_reference_is_detected(
    s3: LocalS3, raw: Any, bucket: str, tmp_path: Path
) -> None:
    async with make_client(s3, tmp_path / "c1") as dg:
        await dg.put_object(Bucket=bucket, Key="r/a.zip", Body=release_zip(1))
        await dg.put_object(Bucket=bucket, Key="r/b.zip", Body=release_zip(2))
    meta = raw.head_object(Bucket=bucket, Key="r/reference.bin")["Metadata"]
    raw.put_object(Bucket=bucket, Key="r/reference.bin", Body=release_zip(5), Metadata=meta)
    async with make_client(s3, tmp_path / "c2") as fresh:
        with pytest.raises(IntegrityError):
            await read_all(fresh, bucket, "r/b.zip")


async def test_cache_is_encrypted_shared_by_key_and_heals(
    s3: LocalS3, bucket: str, tmp_path: Path
) -> None:
    key = b"k" * 32
    cache_dir = tmp_path / "cache"
    marker = b"PLAINTEXT-MARKER-" * 64
    first = marker + release_zip(1)
    async with make_client(s3, cache_dir, cache=ReferenceCache(directory=cache_dir, key=key)) as dg:
        await dg.put_object(Bucket=bucket, Key="c/a.zip", Body=first)
        await dg.put_object(Bucket=bucket, Key="c/b.zip", Body=marker + release_zip(2))
        assert dg.cache.fetches == 0  # warmed from the local file: no GET of the reference
    entries = list(cache_dir.rglob("*.dgc"))
    assert len(entries) == 1
    assert (entries[0].parent.parent.stat().st_mode & 0o777) == 0o700
    assert b"PLAINTEXT-MARKER" not in entries[0].read_bytes()

    # Another process with the same key reuses the entry: no reference GET.
    shared = ReferenceCache(directory=cache_dir, key=key)
    async with make_client(s3, cache_dir, cache=shared) as dg:
        await dg.put_object(Bucket=bucket, Key="c/c.zip", Body=marker + release_zip(3))
        assert await read_all(dg, bucket, "c/b.zip") == marker + release_zip(2)
        assert shared.fetches == 0

    # A tampered entry is detected, dropped and fetched again.
    data = bytearray(entries[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    entries[0].write_bytes(bytes(data))
    healing = ReferenceCache(directory=cache_dir, key=key)
    async with make_client(s3, cache_dir, cache=healing) as dg:
        assert await read_all(dg, bucket, "c/c.zip") == marker + release_zip(3)
        assert healing.fetches == 1
        await dg.put_object(Bucket=bucket, Key="c/d.zip", Body=marker + release_zip(4))
        assert healing.fetches == 1

    # Without a configured key (the shared key file's) those entries are unreadable: it fetches
    # its own; clearing drops both.
    other = ReferenceCache(directory=cache_dir)
    async with make_client(s3, cache_dir, cache=other) as dg:
        assert await read_all(dg, bucket, "c/d.zip") == marker + release_zip(4)
        assert other.fetches == 1
        assert dg.clear_cache() == 2


async def test_memory_cache_fetches_once_for_concurrent_readers(
    s3: LocalS3, bucket: str, tmp_path: Path
) -> None:
    cache = ReferenceCache(backend="memory")
    async with make_client(s3, tmp_path, cache=cache) as dg:
        for i in range(1, 6):
            await dg.put_object(Bucket=bucket, Key=f"m/v{i}.zip", Body=release_zip(i))
        cache.clear()
        results: dict[int, bytes] = {}

        async def read(i: int) -> None:
            results[i] = await read_all(dg, bucket, f"m/v{i}.zip")

        async with anyio.create_task_group() as tg:
            for i in range(1, 6):
                tg.start_soon(read, i)
        assert cache.fetches == 1
        assert all(results[i] == release_zip(i) for i in range(1, 6))


async def test_multipart_upload_and_parallel_ranged_download(
    s3: LocalS3, raw: Any, bucket: str, tmp_path: Path
) -> None:
    transfer = TransferConfig(
        multipart_threshold=5 * MiB, part_size=5 * MiB, range_size=5 * MiB, max_concurrency=4
    )
    big = tmp_path / "disk.img.raw"
    payload = hashlib.sha256(b"seed").digest() * (13 * MiB // 32)
    big.write_bytes(payload)
    async with make_client(s3, tmp_path / "cache", transfer=transfer) as dg:
        summary = await dg.upload(big, f"s3://{bucket}/mp/")
        assert summary.stored_as == "direct"
        assert raw.head_object(Bucket=bucket, Key="mp/disk.img.raw")["ETag"].endswith('-3"')
        out = tmp_path / "out.raw"
        result = await dg.download(f"s3://{bucket}/mp/disk.img.raw", out)
        assert result.verified
        assert out.read_bytes() == payload
        assert (await dg.list_multipart_uploads(Bucket=bucket))["Uploads"] == []


async def test_reads_older_metadata_dialects(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str, tmp_path: Path
) -> None:
    v1, v2 = release_zip(1), release_zip(2)
    (tmp_path / "ref").write_bytes(v1)
    (tmp_path / "new").write_bytes(v2)
    await anyio.run_process(
        ["xdelta3", "-e", "-9", "-f", "-s", tmp_path / "ref", tmp_path / "new", tmp_path / "d"]
    )
    delta = (tmp_path / "d").read_bytes()
    sha1, sha2 = hashlib.sha256(v1).hexdigest(), hashlib.sha256(v2).hexdigest()
    # deltaglider 5.x: bare keys
    raw.put_object(
        Bucket=bucket,
        Key="v5/reference.bin",
        Body=v1,
        Metadata={
            "tool": "deltaglider/5.1.0",
            "source_name": "a.zip",
            "file_sha256": sha1,
            "created_at": "2025-01-01T00:00:00Z",
        },
    )
    raw.put_object(
        Bucket=bucket,
        Key="v5/b.zip.delta",
        Body=delta,
        Metadata={
            "tool": "deltaglider/5.1.0",
            "original_name": "b.zip",
            "file_sha256": sha2,
            "file_size": str(len(v2)),
            "ref_key": "v5/reference.bin",
            "ref_sha256": sha1,
            "delta_size": str(len(delta)),
            "delta_cmd": "xdelta3 -e -9 -s",
        },
    )
    # the Rust proxy: dg-ref-path relative to the space, dg-note values
    raw.put_object(
        Bucket=bucket,
        Key="rs/reference.bin",
        Body=v1,
        Metadata={"dg-note": "reference", "dg-file-sha256": sha1},
    )
    raw.put_object(
        Bucket=bucket,
        Key="rs/b.zip.delta",
        Body=delta,
        Metadata={
            "dg-note": "delta",
            "dg-ref-path": "reference.bin",
            "dg-file-sha256": sha2,
            "dg-file-size": str(len(v2)),
            "dg-ref-sha256": sha1,
        },
    )
    raw.put_object(
        Bucket=bucket,
        Key="rs/notes.txt",
        Body=b"pass",
        Metadata={"dg-note": "passthrough", "dg-file-sha256": hashlib.sha256(b"pass").hexdigest()},
    )
    raw.put_object(Bucket=bucket, Key="plain/file.bin", Body=b"no metadata")
    assert await read_all(dg, bucket, "v5/b.zip") == v2
    assert await read_all(dg, bucket, "rs/b.zip") == v2
    assert await read_all(dg, bucket, "rs/notes.txt") == b"pass"
    assert await read_all(dg, bucket, "plain/file.bin") == b"no metadata"
    assert (await dg.verify(f"s3://{bucket}/v5/b.zip")).valid
    head = await dg.head_object(Bucket=bucket, Key="v5/b.zip")
    assert head["ContentLength"] == len(v2)


async def test_a_small_memory_budget_still_stores_and_reads_deltas(
    s3: LocalS3, bucket: str, tmp_path: Path
) -> None:
    from deltaglider_async import InvalidArgumentError, MemoryLimitError, create_client

    rng = random.Random(21)
    v1 = rng.randbytes(24 * MiB)
    v2 = v1[:1000] + rng.randbytes(100) + v1[1000:]
    tight = TransferConfig(memory_limit=128 * MiB, multipart_threshold=8 * MiB)
    async with make_client(s3, tmp_path / "cache", transfer=tight) as dg:
        budget = dg._ctx.codec.memory
        assert budget.limit == 128 * MiB
        budget.peak = budget.in_use  # the process's earlier tests had a larger budget
        await dg.put_object(Bucket=bucket, Key="tight/v1.zip", Body=v1)
        stored = await dg.put_object(Bucket=bucket, Key="tight/v2.zip", Body=v2)
        assert stored["DeltaGliderInfo"]["StoredAs"] == "delta"
        dg.clear_cache()
        assert await read_all(dg, bucket, "tight/v2.zip") == v2
        assert 0 < budget.peak <= 128 * MiB
    # A single need beyond the whole budget is refused, naming the knob; nothing is stored.
    roomy_threshold = TransferConfig(memory_limit=128 * MiB, multipart_threshold=256 * MiB)
    async with make_client(s3, tmp_path / "cache", transfer=roomy_threshold) as dg:
        (tmp_path / "big.bin").write_bytes(rng.randbytes(136 * MiB))
        with pytest.raises(MemoryLimitError, match="DG_MEMORY_LIMIT"):
            await dg.upload(tmp_path / "big.bin", f"s3://{bucket}/tight/big.bin")
        listing = await dg.list_objects_v2(Bucket=bucket, Prefix="tight/big")
        assert listing.get("KeyCount", 0) == 0
    with pytest.raises(InvalidArgumentError, match="DG_MEMORY_LIMIT"):
        create_client("http://127.0.0.1:9", env={"DG_MEMORY_LIMIT": "lots"})


async def test_an_upload_created_by_a_process_killed_before_it_journaled_the_id_is_aborted(
    seaweed: LocalS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGKILL between CreateMultipartUpload's answer and the journal's id leaves an entry
    without an id: the next client aborts that key's upload, and nobody else's.  On SeaweedFS:
    moto reports every upload as initiated in 2010, which the entry's time window rules out."""
    from ..conftest import boto

    s3, raw = seaweed, boto(seaweed)
    bucket = f"t-{random.getrandbits(48):012x}"
    raw.create_bucket(Bucket=bucket)
    from deltaglider_async._storage.journal import UploadJournal

    from ..unit.test_upload_journal import _dead_pid

    monkeypatch.setenv("DG_CACHE_DIR", str(tmp_path / "journal"))
    journal = UploadJournal()
    dead = journal.opened(s3.endpoint_url, bucket, "big/reference.bin", None)
    assert dead is not None
    orphan = raw.create_multipart_upload(Bucket=bucket, Key="big/reference.bin")["UploadId"]
    named = raw.create_multipart_upload(Bucket=bucket, Key="big/reference.bin")["UploadId"]
    journal.opened(s3.endpoint_url, bucket, "big/reference.bin", named)  # this process: alive
    raw.create_multipart_upload(Bucket=bucket, Key="big/not-ours.img")  # another tool's
    gone = _dead_pid()
    record = json.loads(dead.read_text())
    record.update(pid=gone, process=f"boot/{gone}/1")
    dead.write_text(json.dumps(record))

    async with make_client(s3, tmp_path / "cache") as dg:
        await dg.list_buckets()
    left = {(u["Key"], u["UploadId"]) for u in raw.list_multipart_uploads(Bucket=bucket)["Uploads"]}
    assert ("big/reference.bin", orphan) not in left
    assert ("big/reference.bin", named) in left
    assert "big/not-ours.img" in {key for key, _ in left}
    assert not dead.exists()
