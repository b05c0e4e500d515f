"""The pipelines on an in-memory storage port: branches that real servers make hard to reach."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from deltaglider_async import (
    AsyncDeltaGliderClient,
    DeltaGliderError,
    ReferenceCache,
    TransferConfig,
)
from deltaglider_async._engine import codec as codec_module
from xdelta_ffi import XDeltaError

from ..artifacts import release_zip
from ..fakes import MemoryStorage


@pytest.fixture
async def fake() -> AsyncIterator[tuple[AsyncDeltaGliderClient, MemoryStorage]]:
    storage = MemoryStorage()
    await storage.create_bucket("bkt")
    client = AsyncDeltaGliderClient(
        storage,  # type: ignore[arg-type]
        ReferenceCache(backend="memory"),
        max_ratio=0.5,
        transfer=TransferConfig(),
    )
    async with client:
        yield client, storage


async def read(dg: AsyncDeltaGliderClient, key: str) -> bytes:
    resp = await dg.get_object(Bucket="bkt", Key=key)
    data: bytes = await resp["Body"].read()
    return data


async def test_put_and_get_through_the_pipelines(fake: Any) -> None:
    dg, storage = fake
    for version in (1, 2, 3):
        await dg.put_object(Bucket="bkt", Key=f"app/v{version}.zip", Body=release_zip(version))
    await dg.put_object(Bucket="bkt", Key="app/notes.txt", Body=b"notes")
    assert sorted(storage.buckets["bkt"]) == [
        "app/notes.txt",
        "app/reference.bin",
        "app/v1.zip.delta",
        "app/v2.zip.delta",
        "app/v3.zip.delta",
    ]
    for version in (1, 2, 3):
        assert await read(dg, f"app/v{version}.zip") == release_zip(version)
    assert ("get", "app/reference.bin") not in storage.calls  # the first writer cached it


async def test_a_codec_failure_is_an_sdk_error_of_its_file_only(
    fake: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dg, _ = fake
    real_step = codec_module.FileEncode.step

    def failing(job: Any) -> bool:
        if job._target.read_bytes() == release_zip(2):  # bad.zip, whatever its spool is named
            raise XDeltaError("injected encoder failure", -1)
        return real_step(job)

    monkeypatch.setattr(codec_module.FileEncode, "step", failing)
    items = []
    for i, name in enumerate(("a.zip", "bad.zip", "c.zip", "d.zip")):
        path = tmp_path / name
        path.write_bytes(release_zip(i + 1))
        items.append((path, "s3://bkt/many/"))
    results = await dg.upload_many(items)
    errors = {Path(r.source).name: r.error for r in results}
    assert isinstance(errors.pop("bad.zip"), DeltaGliderError)
    assert errors == {"a.zip": None, "c.zip": None, "d.zip": None}
    assert await read(dg, "many/d.zip") == release_zip(4)


async def test_reference_goes_with_the_last_delta_and_its_copy_aside_too(fake: Any) -> None:
    dg, storage = fake
    await dg.put_object(Bucket="bkt", Key="gc/v1.zip", Body=release_zip(1))
    await dg.put_object(Bucket="bkt", Key="gc/v2.zip", Body=release_zip(2))
    await dg.delete_object(Bucket="bkt", Key="gc/v1.zip")
    assert "gc/reference.bin" in storage.buckets["bkt"]
    await dg.delete_object(Bucket="bkt", Key="gc/v2.zip")
    assert storage.buckets["bkt"] == {}  # nothing left: no reference, no .deltaglider/gc copy


async def test_a_delta_landing_during_gc_gets_its_reference_back(fake: Any) -> None:
    dg, storage = fake
    await dg.put_object(Bucket="bkt", Key="gc/v1.zip", Body=release_zip(1))
    await dg.put_object(Bucket="bkt", Key="gc/v2.zip", Body=release_zip(2))
    stray = storage.buckets["bkt"]["gc/v2.zip.delta"]
    await dg.delete_object(Bucket="bkt", Key="gc/v2.zip")
    original_delete = storage.delete

    async def delete_then_a_writer_lands(bucket: str, key: str) -> None:
        await original_delete(bucket, key)
        if key == "gc/reference.bin":  # a concurrent upload stores its delta right now
            storage.buckets["bkt"]["gc/v2.zip.delta"] = stray

    storage.delete = delete_then_a_writer_lands  # type: ignore[method-assign]
    await dg.delete_object(Bucket="bkt", Key="gc/v1.zip")
    assert "gc/reference.bin" in storage.buckets["bkt"]
    assert not [k for k in storage.buckets["bkt"] if k.startswith(".deltaglider/")]
    dg.cache.clear()
    assert await read(dg, "gc/v2.zip") == release_zip(2)


async def test_both_copies_of_a_key_serve_the_newer(fake: Any) -> None:
    dg, storage = fake
    await dg.put_object(Bucket="bkt", Key="tw/base.zip", Body=release_zip(1))
    await dg.put_object(Bucket="bkt", Key="tw/x.zip", Body=release_zip(2))
    delta = storage.buckets["bkt"]["tw/x.zip.delta"]
    await dg.put_object(Bucket="bkt", Key="tw/x.zip", Body=release_zip(3), NoDelta=True)
    assert "tw/x.zip.delta" not in storage.buckets["bkt"]  # the older copy was removed
    storage.buckets["bkt"]["tw/x.zip.delta"] = delta  # an older delta copy left by a race
    assert await read(dg, "tw/x.zip") == release_zip(3)


async def test_a_download_gets_the_delta_instead_of_heading_it(fake: Any, tmp_path: Path) -> None:
    """One round trip less per delta read; a delta copy that is not served is closed unread."""
    dg, storage = fake
    await dg.put_object(Bucket="bkt", Key="dl/base.zip", Body=release_zip(1))
    await dg.put_object(Bucket="bkt", Key="dl/x.zip", Body=release_zip(2))
    storage.calls.clear()
    await dg.download("s3://bkt/dl/x.zip", tmp_path / "x.zip")
    assert (tmp_path / "x.zip").read_bytes() == release_zip(2)
    delta_calls = [call for call, key in storage.calls if key == "dl/x.zip.delta"]
    assert delta_calls == ["open", "get", "close"], storage.calls
    delta = storage.buckets["bkt"]["dl/x.zip.delta"]
    await dg.put_object(Bucket="bkt", Key="dl/x.zip", Body=release_zip(3), NoDelta=True)
    storage.buckets["bkt"]["dl/x.zip.delta"] = delta  # an older delta copy left by a race
    storage.calls.clear()
    await dg.download("s3://bkt/dl/x.zip", tmp_path / "x.zip")
    assert (tmp_path / "x.zip").read_bytes() == release_zip(3)
    delta_calls = [call for call, key in storage.calls if key == "dl/x.zip.delta"]
    assert delta_calls == ["open", "close"], storage.calls


async def test_batch_delete_is_one_request_per_thousand_keys(fake: Any) -> None:
    dg, storage = fake
    for i in range(12):
        await dg.put_object(Bucket="bkt", Key=f"bd/f{i}.txt", Body=b"x")
    storage.calls.clear()
    resp = await dg.delete_objects(
        Bucket="bkt", Delete={"Objects": [{"Key": f"bd/f{i}.txt"} for i in range(12)]}
    )
    assert len(resp["Deleted"]) == 12 and "Errors" not in resp
    assert [c for c in storage.calls if c[0].startswith("delete")] == [("delete_many", "12")]


async def test_estimate_against_a_foreign_reference_says_direct(fake: Any, tmp_path: Path) -> None:
    dg, storage = fake
    await storage.put_bytes("bkt", "f/reference.bin", b"<html>", metadata={})
    path = tmp_path / "a.zip"
    path.write_bytes(release_zip(1))
    estimate = await dg.estimate_compression(path, "s3://bkt/f/")
    assert estimate.would_store_as == "direct" and "not a deltaglider reference" in estimate.reason


async def test_listing_and_stats_share_what_the_deltas_heads_said(fake: Any) -> None:
    dg, storage = fake
    for version in (1, 2, 3):
        await dg.put_object(Bucket="bkt", Key=f"app/v{version}.zip", Body=release_zip(version))
    deltas = {f"app/v{version}.zip.delta" for version in (1, 2, 3)}

    def delta_heads() -> list[str]:
        return [key for op, key in storage.calls if op == "head" and key in deltas]

    storage.calls.clear()
    listed = await dg.list_objects_v2(Bucket="bkt", Prefix="app/")
    assert sorted(delta_heads()) == sorted(deltas)
    assert [entry["Size"] for entry in listed["Contents"]] == [
        len(release_zip(v)) for v in (1, 2, 3)
    ]
    stats = await dg.bucket_stats("bkt", "detailed")
    assert stats.total_size == sum(len(release_zip(v)) for v in (1, 2, 3))
    assert len(delta_heads()) == 3  # stats reused the listing's HEADs

    dg.clear_cache()
    storage.calls.clear()
    await dg.bucket_stats("bkt", "detailed", refresh=True)
    assert sorted(delta_heads()) == sorted(deltas)
    again = await dg.list_objects_v2(Bucket="bkt", Prefix="app/")
    assert len(delta_heads()) == 3  # and the listing reused stats' HEADs
    assert again["Contents"] == listed["Contents"]


async def test_a_replaced_delta_is_headed_again(fake: Any) -> None:
    dg, _ = fake
    await dg.put_object(Bucket="bkt", Key="app/v1.zip", Body=release_zip(1))
    await dg.put_object(Bucket="bkt", Key="app/v2.zip", Body=release_zip(2))
    await dg.list_objects_v2(Bucket="bkt", Prefix="app/")
    replacement = release_zip(2, files=44)
    await dg.put_object(Bucket="bkt", Key="app/v2.zip", Body=replacement)
    listed = await dg.list_objects_v2(Bucket="bkt", Prefix="app/")
    sizes = {entry["Key"]: entry["Size"] for entry in listed["Contents"]}
    assert sizes["app/v2.zip"] == len(replacement) != len(release_zip(2))


async def test_a_copy_onto_itself_must_change_something(fake: Any) -> None:
    dg, _ = fake
    await dg.put_object(Bucket="bkt", Key="app/v1.zip", Body=release_zip(1))
    source = {"Bucket": "bkt", "Key": "app/v1.zip"}
    with pytest.raises(dg.exceptions.ClientError) as refused:
        await dg.copy_object(Bucket="bkt", Key="app/v1.zip", CopySource=source)
    assert refused.value.response["Error"]["Code"] == "InvalidRequest"
    [result] = await dg.copy_many([("s3://bkt/app/v1.zip", "s3://bkt/app/v1.zip")])
    assert result.error is not None and result.error.code == "InvalidRequest"
    await dg.copy_object(
        Bucket="bkt",
        Key="app/v1.zip",
        CopySource=source,
        MetadataDirective="REPLACE",
        Metadata={"build": "2"},
    )
    head = await dg.head_object(Bucket="bkt", Key="app/v1.zip")
    assert head["Metadata"] == {"build": "2"}
    assert await read(dg, "app/v1.zip") == release_zip(1)


async def test_a_folder_marker_is_deleted_as_it_is(fake: Any) -> None:
    dg, storage = fake
    await storage.put_bytes("bkt", "docs/", b"", metadata={})
    await dg.put_object(Bucket="bkt", Key="docs/a.txt", Body=b"a")
    await dg.delete_object(Bucket="bkt", Key="docs/")
    assert sorted(storage.buckets["bkt"]) == ["docs/a.txt"]


async def test_a_new_client_lists_without_heading_what_an_earlier_one_read(
    tmp_path: Path,
) -> None:
    storage = MemoryStorage()
    await storage.create_bucket("bkt")

    def client() -> AsyncDeltaGliderClient:
        cache = ReferenceCache(directory=tmp_path / "cache", key=b"k" * 32)
        return AsyncDeltaGliderClient(storage, cache, max_ratio=0.5, transfer=TransferConfig())  # type: ignore[arg-type]

    def delta_heads() -> list[str]:
        return [key for op, key in storage.calls if op == "head" and key.endswith(".delta")]

    async with client() as first:
        for version in (1, 2, 3):
            await first.put_object(
                Bucket="bkt", Key=f"app/v{version}.zip", Body=release_zip(version)
            )
        storage.calls.clear()
        listed = await first.list_objects_v2(Bucket="bkt", Prefix="app/")
        assert len(delta_heads()) == 3
    storage.calls.clear()
    async with client() as second:
        assert (await second.list_objects_v2(Bucket="bkt", Prefix="app/"))["Contents"] == (
            listed["Contents"]
        )
        assert delta_heads() == []
        replacement = release_zip(2, files=44)
        await second.put_object(Bucket="bkt", Key="app/v2.zip", Body=replacement)
        storage.calls.clear()
        again = await second.list_objects_v2(Bucket="bkt", Prefix="app/")
        assert delta_heads() == ["app/v2.zip.delta"]  # only the one that changed
        assert again["Contents"][1]["Size"] == len(replacement)
    storage.calls.clear()
    async with client() as third:
        stats = await third.bucket_stats("bkt", "detailed")
        assert delta_heads() == []  # stats read the note too
        assert stats.total_size == sum(
            len(b) for b in (release_zip(1), replacement, release_zip(3))
        )
        third.clear_cache()
    assert list((tmp_path / "cache").glob("*/notes/*")) == []


async def test_a_reader_pinned_to_a_reference_stored_again_reads_its_new_form() -> None:
    from ..artifacts import deflated_zip

    storage = MemoryStorage()
    await storage.create_bucket("bkt")

    def client(fmt: str) -> AsyncDeltaGliderClient:
        return AsyncDeltaGliderClient(
            storage,  # type: ignore[arg-type]
            ReferenceCache(backend="memory"),
            max_ratio=0.5,
            transfer=TransferConfig(),
            delta_format=fmt,
        )

    async with client("vcdiff") as dg:
        for v in (1, 2):
            await dg.put_object(Bucket="bkt", Key=f"p/pkg-{v}.whl", Body=deflated_zip(v))
    before = storage.buckets["bkt"]["p/reference.bin"]
    async with client("archive") as dg:
        assert await dg.reform_references("s3://bkt/") == ["p/reference.bin"]
    after = storage.buckets["bkt"]["p/reference.bin"]
    assert after.etag != before.etag and after.data.startswith(b"DGAREF1\n")
    assert after.metadata["dg-file-sha256"] == before.metadata["dg-file-sha256"]
    async with client("vcdiff") as dg:  # a reader that HEADed the reference before: its ETag
        from deltaglider_async._storage.port import ObjectHead

        stale = ObjectHead("p/reference.bin", len(before.data), before.etag, before.metadata)
        local = dg._ctx.temp_path(".ref")
        await dg._get._reference_file("bkt", stale, local)
        assert local.read_bytes() == deflated_zip(1)
        assert await dg.reform_references("s3://bkt/p/") == ["p/reference.bin"]  # and back
    assert storage.buckets["bkt"]["p/reference.bin"].data == deflated_zip(1)
