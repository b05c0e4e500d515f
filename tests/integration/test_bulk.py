"""upload_many: the leader of a delta space creates its reference, the others encode early."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deltaglider_async import AsyncDeltaGliderClient
from tests.localserver import LocalS3

from ..artifacts import release_zip
from ..conftest import make_client
from .test_sdk_basics import metadata, read_all, stored_keys


def write_releases(tmp_path: Path, versions: range) -> list[Path]:
    paths = []
    for v in versions:
        path = tmp_path / f"app-{v}.zip"
        path.write_bytes(release_zip(v))
        paths.append(path)
    return paths


async def assert_space_consistent(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str, space: str, files: list[Path]
) -> str:
    keys = stored_keys(raw, bucket)
    assert [k for k in keys if k.endswith("reference.bin")] == [f"{space}/reference.bin"]
    ref_sha = metadata(raw, bucket, f"{space}/reference.bin")["dg-file-sha256"]
    for path in files:
        key = f"{space}/{path.name}"
        assert f"{key}.delta" in keys
        assert metadata(raw, bucket, f"{key}.delta")["dg-ref-sha256"] == ref_sha
        assert await read_all(dg, bucket, key) == path.read_bytes()
    return ref_sha


async def test_bulk_upload_shares_one_reference_without_fetching_it(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str, tmp_path: Path
) -> None:
    files = write_releases(tmp_path, range(1, 25))
    results = await dg.upload_many([(p, f"s3://{bucket}/app/") for p in files])
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert [r.upload.reference_created for r in results if r.upload] == [True] + [False] * 23
    # Everyone encoded against the leader's cached copy: the reference was never downloaded.
    assert dg.cache.fetches == 0
    await assert_space_consistent(dg, raw, bucket, "app", files)


async def test_bulk_upload_when_another_writer_wins_the_reference(
    dg: AsyncDeltaGliderClient, s3: LocalS3, raw: Any, bucket: str, tmp_path: Path
) -> None:
    files = write_releases(tmp_path, range(1, 13))
    rival = tmp_path / "rival" / "app-99.zip"
    rival.parent.mkdir()
    rival.write_bytes(release_zip(99))
    warm = dg.cache.warm

    async def warm_then_lose_the_race(sha256: str, local: Any) -> None:
        # After the leader cached its candidate, before its create-only PUT: a rival's wins.
        await warm(sha256, local)
        if not stored_keys(raw, bucket):
            async with make_client(s3, tmp_path / "rival-cache") as other:
                await other.upload(rival, f"s3://{bucket}/app/")

    dg.cache.warm = warm_then_lose_the_race  # type: ignore[method-assign]
    results = await dg.upload_many([(p, f"s3://{bucket}/app/") for p in files])
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert not any(r.upload and r.upload.reference_created for r in results)
    ref_sha = await assert_space_consistent(dg, raw, bucket, "app", files)
    assert metadata(raw, bucket, "app/reference.bin")["dg-source-name"] == "app-99.zip"
    assert ref_sha != metadata(raw, bucket, "app/app-1.zip.delta")["dg-file-sha256"]


async def test_bulk_upload_when_the_leader_fails(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str, tmp_path: Path
) -> None:
    files = write_releases(tmp_path, range(1, 9))
    missing = tmp_path / "app-0.zip"  # the leader of the space: it does not exist
    results = await dg.upload_many([(p, f"s3://{bucket}/app/") for p in [missing, *files]])
    assert not results[0].ok and results[0].error is not None
    assert all(r.ok for r in results[1:]), [r.error for r in results[1:] if not r.ok]
    assert sum(bool(r.upload and r.upload.reference_created) for r in results) == 1
    await assert_space_consistent(dg, raw, bucket, "app", files)


async def test_lean_listing_matches_botocore_on_awkward_keys(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str
) -> None:
    names = [
        "a b/c+d.txt",
        "a b/100%.txt",
        "a b/x&y<z>.txt",
        "a b/ünïcødé/пакет.txt",
        "a b/sub/deep.txt",
        "a b/~tilde=eq;semi,comma.txt",
        *[f"many/{i:04d}.txt" for i in range(25)],
    ]
    for name in names:
        raw.put_object(Bucket=bucket, Key=name, Body=name.encode())
    storage = dg._storage
    # Small pages: continuation tokens and start-after go through the lean signer as well.
    seen = [o["Key"] async for o in storage.iter_all(bucket, "many/", start_after="many/0003.txt")]
    assert seen == [f"many/{i:04d}.txt" for i in range(4, 25)]
    page = await storage.list_page(bucket, prefix="a b/", delimiter="/", max_keys=3)
    expected = raw.list_objects_v2(Bucket=bucket, Prefix="a b/", Delimiter="/", MaxKeys=3)
    assert [o["Key"] for o in page.objects] == [o["Key"] for o in expected.get("Contents", [])]
    assert page.prefixes == [p["Prefix"] for p in expected.get("CommonPrefixes", [])]
    assert page.truncated == expected["IsTruncated"]
    everything = [o async for o in storage.iter_all(bucket, "a b/")]
    assert sorted(o["Key"] for o in everything) == sorted(n for n in names if n.startswith("a b/"))
    for entry in everything:
        head = raw.head_object(Bucket=bucket, Key=entry["Key"])
        assert entry["Size"] == head["ContentLength"]
        assert entry["ETag"] == head["ETag"]
        assert entry["LastModified"].tzinfo is not None
    # The lean path itself answers on this server (a Fallback would raise here).
    lean = await storage._lean()
    assert lean is not None
    direct = await lean.list_objects(
        bucket, prefix="a b/", delimiter=None, token=None, start_after=None, max_keys=1000
    )
    assert [o["Key"] for o in direct.objects] == [o["Key"] for o in everything]


async def test_bulk_upload_leader_is_the_first_delta_file(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str, tmp_path: Path
) -> None:
    notes = tmp_path / "NOTES.txt"  # not delta-eligible: stored directly, leads nothing
    notes.write_text("release notes\n")
    files = write_releases(tmp_path, range(1, 7))
    results = await dg.upload_many([(p, f"s3://{bucket}/app/") for p in [notes, *files]])
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert results[0].upload is not None and results[0].upload.stored_as == "direct"
    assert [bool(r.upload and r.upload.reference_created) for r in results[1:]] == [True] + [
        False
    ] * 5
    assert dg.cache.fetches == 0
    await assert_space_consistent(dg, raw, bucket, "app", files)
