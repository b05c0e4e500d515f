"""Bucket statistics against real servers, checked against hand-computed expectations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deltaglider_async import AsyncDeltaGliderClient, BucketNotFoundError
from tests.localserver import LocalS3

from ..artifacts import deflated_zip, release_zip
from ..conftest import make_client
from .test_sdk_basics import stored_keys


async def build_bucket(dg: AsyncDeltaGliderClient, raw: Any, bucket: str) -> dict[str, int]:
    """Two delta spaces, direct files, an orphaned reference and a 5.x-format delta."""
    originals: dict[str, int] = {}
    for space, versions in (("a/", (1, 2, 3)), ("b/c/", (4, 5))):
        for v in versions:
            body = release_zip(v, files=20 + v)
            originals[f"{space}v{v}.zip"] = len(body)
            await dg.put_object(Bucket=bucket, Key=f"{space}v{v}.zip", Body=body)
    await dg.put_object(Bucket=bucket, Key="a/readme.txt", Body=b"x" * 1000)
    await dg.put_object(Bucket=bucket, Key="top.json", Body=b"{}")
    # orphan: a reference left behind without deltas (as older tools leave them)
    raw.put_object(
        Bucket=bucket,
        Key="old/reference.bin",
        Body=b"r" * 5000,
        Metadata={"dg-note": "reference", "dg-file-sha256": "0" * 64},
    )
    # a 5.x delta object in space a/: bare metadata keys
    raw.put_object(
        Bucket=bucket,
        Key="a/legacy.zip.delta",
        Body=b"d" * 300,
        Metadata={
            "file_sha256": "1" * 64,
            "file_size": "123456",
            "ref_key": "a/reference.bin",
            "ref_sha256": "2" * 64,
        },
    )
    originals["a/legacy.zip"] = 123456
    return originals


async def test_detailed_stats_exact(dg: AsyncDeltaGliderClient, raw: Any, bucket: str) -> None:
    originals = await build_bucket(dg, raw, bucket)
    keys = stored_keys(raw, bucket)
    stats = await dg.bucket_stats(bucket, "detailed")
    deltas = [k for k in keys if k.endswith(".delta")]
    expected_total = sum(originals.values()) + 1000 + 2
    expected_compressed = (
        sum(keys[k]["Size"] for k in deltas)
        + keys["a/reference.bin"]["Size"]
        + keys["b/c/reference.bin"]["Size"]
        + 1000
        + 2
    )
    assert stats.object_count == len(deltas) + 2 == 8
    assert stats.delta_objects == 6 and stats.direct_objects == 2
    assert stats.delta_spaces == 2
    assert stats.total_size == expected_total
    assert stats.compressed_size == expected_compressed
    assert stats.space_saved == expected_total - expected_compressed
    assert stats.average_compression_ratio == pytest.approx(stats.space_saved / expected_total)
    assert [(o.key, o.size) for o in stats.orphaned_references] == [("old/reference.bin", 5000)]
    assert not stats.estimated and not stats.partial
    assert stats.heads_issued == 6


async def test_quick_and_sampled_say_they_estimate(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str
) -> None:
    await build_bucket(dg, raw, bucket)
    quick = await dg.bucket_stats(bucket, "quick")
    assert quick.estimated and quick.heads_issued == 2  # a delta of each space
    assert quick.average_compression_ratio > 0.5  # the old tool reported 0 % here
    sampled = await dg.bucket_stats(bucket, "sampled")
    assert sampled.heads_issued == 4  # every space has fewer deltas than the sample size
    assert not sampled.estimated


async def test_quick_estimates_from_a_version_not_a_compact_reference(
    s3: LocalS3, raw: Any, bucket: str, tmp_path: Path
) -> None:
    async with make_client(s3, tmp_path / "c", delta_format="archive") as dg:
        bodies = [deflated_zip(v) for v in (1, 2, 3, 4)]
        for v, body in enumerate(bodies):
            await dg.put_object(Bucket=bucket, Key=f"w/pkg-{v}.whl", Body=body)
        reference = raw.head_object(Bucket=bucket, Key="w/reference.bin")
        assert reference["Metadata"].get("dg-reference-form") == "archive"
        assert reference["ContentLength"] < len(bodies[0]) * 0.7  # compact: listed small
        quick = await dg.bucket_stats(bucket, "quick")
    assert quick.estimated and quick.heads_issued == 1
    assert quick.total_size == pytest.approx(sum(map(len, bodies)), rel=0.05)


async def test_caching_incremental_and_document(
    s3: LocalS3, raw: Any, bucket: str, tmp_path: Path
) -> None:
    async with make_client(s3, tmp_path / "c") as dg:
        await build_bucket(dg, raw, bucket)
        first = await dg.bucket_stats(bucket, "detailed")
        assert first.heads_issued == 6
        # session cache: a detailed result serves a quick call, no HEADs
        assert await dg.bucket_stats(bucket, "quick") is first
        buckets = await dg.list_buckets()
        assert any("DeltaGliderStats" in b for b in buckets["Buckets"] if b["Name"] == bucket)
        # a write invalidates; the re-run HEADs only the new delta
        await dg.put_object(Bucket=bucket, Key="a/v9.zip", Body=release_zip(9))
        again = await dg.bucket_stats(bucket, "detailed")
        assert again.heads_issued == 1
        assert again.object_count == first.object_count + 1
    document = json.loads(
        raw.get_object(Bucket=bucket, Key=".deltaglider/stats_detailed.json")["Body"].read()
    )
    assert document["version"] == "1.0" and document["mode"] == "detailed"
    assert document["validation"]["object_count"] == again.object_count
    # a new process reuses the in-bucket document: no HEAD at all
    async with make_client(s3, tmp_path / "c2") as fresh:
        reused = await fresh.bucket_stats(bucket, "detailed")
        assert reused.heads_issued == 0
        assert reused.total_size == again.total_size
        # the document is never counted as a user object
        listing = await fresh.list_objects_v2(Bucket=bucket)
        assert all(not o["Key"].startswith(".deltaglider/") for o in listing["Contents"])
        fresh.clear_cache()
        assert (await fresh.bucket_stats(bucket, "detailed", refresh=True)).heads_issued == 7


async def test_stats_of_missing_bucket(dg: AsyncDeltaGliderClient) -> None:
    with pytest.raises(BucketNotFoundError):
        await dg.bucket_stats("no-such-bucket-stats", "quick")
