"""The SDK against real S3 servers (SeaweedFS and moto): wire format, round trips, bad input."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from deltaglider_async import (
    AsyncDeltaGliderClient,
    BucketNotFoundError,
    InvalidArgumentError,
    NotFoundError,
    ReservedNameError,
)

from ..artifacts import release_zip


def stored_keys(raw: Any, bucket: str) -> dict[str, dict[str, Any]]:
    resp = raw.list_objects_v2(Bucket=bucket)
    return {o["Key"]: o for o in resp.get("Contents", [])}


def metadata(raw: Any, bucket: str, key: str) -> dict[str, str]:
    meta = raw.head_object(Bucket=bucket, Key=key)["Metadata"]
    return {k.lower(): v for k, v in meta.items()}


async def read_all(dg: AsyncDeltaGliderClient, bucket: str, key: str) -> bytes:
    resp = await dg.get_object(Bucket=bucket, Key=key)
    data: bytes = await resp["Body"].read()
    return data


async def test_first_file_becomes_reference_then_deltas(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str
) -> None:
    v1, v2, v3 = release_zip(1), release_zip(2), release_zip(3)
    first = await dg.put_object(Bucket=bucket, Key="releases/app/app-1.zip", Body=v1)
    second = await dg.put_object(Bucket=bucket, Key="releases/app/app-2.zip", Body=v2)
    await dg.put_object(Bucket=bucket, Key="releases/app/app-3.zip", Body=v3)
    await dg.put_object(Bucket=bucket, Key="releases/app/notes.txt", Body=b"release notes")

    keys = stored_keys(raw, bucket)
    assert set(keys) == {
        "releases/app/reference.bin",
        "releases/app/app-1.zip.delta",
        "releases/app/app-2.zip.delta",
        "releases/app/app-3.zip.delta",
        "releases/app/notes.txt",
    }
    assert keys["releases/app/reference.bin"]["Size"] == len(v1)
    assert keys["releases/app/app-2.zip.delta"]["Size"] < len(v2) // 20
    assert first["DeltaGliderInfo"]["StoredAs"] == "delta"
    assert second["DeltaGliderInfo"]["StoredSize"] == keys["releases/app/app-2.zip.delta"]["Size"]

    ref = metadata(raw, bucket, "releases/app/reference.bin")
    assert ref["dg-note"] == "reference"
    assert ref["dg-source-name"] == "app-1.zip"
    assert ref["dg-file-sha256"] == hashlib.sha256(v1).hexdigest()
    assert ref["dg-tool"].startswith("deltaglider-async/")
    zero = metadata(raw, bucket, "releases/app/app-1.zip.delta")
    assert zero["dg-note"] == "zero-diff (reference identical)"
    delta = metadata(raw, bucket, "releases/app/app-2.zip.delta")
    assert delta["dg-ref-key"] == "releases/app/reference.bin"
    assert delta["dg-ref-sha256"] == ref["dg-file-sha256"]
    assert delta["dg-file-sha256"] == hashlib.sha256(v2).hexdigest()
    assert delta["dg-file-size"] == str(len(v2))
    assert delta["dg-delta-size"] == str(keys["releases/app/app-2.zip.delta"]["Size"])
    assert delta["dg-created-at"].endswith("Z") and len(delta["dg-created-at"]) == 27
    direct = metadata(raw, bucket, "releases/app/notes.txt")
    assert direct["dg-compression"] == "none"

    for key, body in [("app-1.zip", v1), ("app-2.zip", v2), ("app-3.zip", v3)]:
        assert await read_all(dg, bucket, f"releases/app/{key}") == body
    assert await read_all(dg, bucket, "releases/app/notes.txt") == b"release notes"

    listing = await dg.list_objects_v2(Bucket=bucket, Prefix="releases/app/")
    assert [o["Key"] for o in listing["Contents"]] == [
        "releases/app/app-1.zip",
        "releases/app/app-2.zip",
        "releases/app/app-3.zip",
        "releases/app/notes.txt",
    ]
    detailed = await dg.list_objects_v2(Bucket=bucket, Prefix="releases/", FetchMetadata=True)
    sizes = {o["Key"]: o["Size"] for o in detailed["Contents"]}
    assert sizes["releases/app/app-2.zip"] == len(v2)
    head = await dg.head_object(Bucket=bucket, Key="releases/app/app-3.zip")
    assert head["ContentLength"] == len(v3)
    assert head["DeltaGliderInfo"]["StoredAs"] == "delta"


async def test_ratio_fallback_stores_directly(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str
) -> None:
    await dg.put_object(Bucket=bucket, Key="a/base.zip", Body=release_zip(1))
    unrelated = os.urandom(200_000)
    resp = await dg.put_object(Bucket=bucket, Key="a/other.zip", Body=unrelated)
    info = resp["DeltaGliderInfo"]
    assert info["StoredAs"] == "direct"
    assert "ratio" in info["Reason"]
    assert "a/other.zip" in stored_keys(raw, bucket)
    assert "a/other.zip.delta" not in stored_keys(raw, bucket)
    assert await read_all(dg, bucket, "a/other.zip") == unrelated
    # About 70 % new bytes: direct at the default 0.5, kept as a delta under a per-call 0.9.
    base = release_zip(1)
    cut = len(base) * 3 // 10
    partly = base[:cut] + os.urandom(len(base) - cut)
    resp = await dg.put_object(Bucket=bucket, Key="a/partly.zip", Body=partly)
    assert resp["DeltaGliderInfo"]["StoredAs"] == "direct"
    resp = await dg.put_object(Bucket=bucket, Key="a/partly.zip", Body=partly, MaxRatio=0.9)
    assert resp["DeltaGliderInfo"]["StoredAs"] == "delta"
    keys = stored_keys(raw, bucket)
    assert "a/partly.zip.delta" in keys and "a/partly.zip" not in keys  # no stale twin
    assert await read_all(dg, bucket, "a/partly.zip") == partly


async def test_reserved_and_invalid_names_write_nothing(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str
) -> None:
    for key in ("x/reference.bin", "reference.bin", "x/app.zip.delta", ".deltaglider/x"):
        with pytest.raises(ReservedNameError):
            await dg.put_object(Bucket=bucket, Key=key, Body=b"data")
    for key in ("", "dir/"):
        with pytest.raises(InvalidArgumentError):
            await dg.put_object(Bucket=bucket, Key=key, Body=b"data")
    with pytest.raises(InvalidArgumentError, match="Unknown parameter in input: 'Colour'"):
        await dg.put_object(Bucket=bucket, Key="a.zip", Body=b"x", Colour="red")
    with pytest.raises(InvalidArgumentError, match="SSECustomerKey is not supported: SSE-C"):
        await dg.put_object(Bucket=bucket, Key="a.zip", Body=b"x", SSECustomerKey="k" * 32)
    with pytest.raises(InvalidArgumentError, match="ContentMD5"):
        await dg.put_object(Bucket=bucket, Key="a.zip", Body=b"x", ContentMD5="AAAA")
    with pytest.raises(InvalidArgumentError):
        await dg.put_object(Bucket=bucket, Key="a.zip", Body=12345)
    with pytest.raises(InvalidArgumentError):
        await dg.put_object(Bucket="Bad_Bucket!", Key="a.zip", Body=b"x")
    assert stored_keys(raw, bucket) == {}


async def test_missing_bucket_and_key(dg: AsyncDeltaGliderClient, bucket: str) -> None:
    with pytest.raises(NotFoundError) as info:
        await dg.get_object(Bucket=bucket, Key="nope.zip")
    assert info.value.code == "NoSuchKey"
    with pytest.raises(BucketNotFoundError):
        await dg.put_object(Bucket="no-such-bucket-dg", Key="a.txt", Body=b"x")
    # concurrent HEADs inside: still the SDK's exception, never an ExceptionGroup
    with pytest.raises(NotFoundError):
        await dg.get_object(Bucket="no-such-bucket-dg", Key="a.zip")
    with pytest.raises(BucketNotFoundError):
        await dg.list_objects_v2(Bucket="no-such-bucket-dg")


async def test_upload_destinations_and_download(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str, tmp_path: Path
) -> None:
    local = tmp_path / "build.zip"
    local.write_bytes(release_zip(1))
    into_dir = await dg.upload(local, f"s3://{bucket}/app/")
    renamed = await dg.upload(local, f"s3://{bucket}/app/renamed.zip")
    assert into_dir.key == "app/build.zip"
    assert renamed.key == "app/renamed.zip"
    out = tmp_path / "out"
    out.mkdir()
    summary = await dg.download(f"s3://{bucket}/app/renamed.zip", out)
    assert summary.verified
    assert (out / "renamed.zip").read_bytes() == local.read_bytes()
    assert [p.name for p in out.iterdir()] == ["renamed.zip"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert (out / "renamed.zip").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    os.umask(0o027)  # the umask in force at download time, not at import
    try:
        await dg.download(f"s3://{bucket}/app/build.zip", out)
    finally:
        os.umask(umask)
    assert (out / "build.zip").stat().st_mode & 0o777 == 0o640
    verify = await dg.verify(f"s3://{bucket}/app/renamed.zip")
    assert verify.valid and verify.stored_as == "delta"
    # verify also accepts the stored name
    assert (await dg.verify(f"s3://{bucket}/app/renamed.zip.delta")).valid


async def test_non_ascii_names_and_gzip(
    dg: AsyncDeltaGliderClient, raw: Any, bucket: str, tmp_path: Path
) -> None:
    name = "releases/ünïcødé/пакет-1.tar.gz"
    first = gzip.compress(b"payload 1 " * 40_000, compresslevel=9)
    second = gzip.compress(b"payload 2 " * 40_000, compresslevel=9)
    await dg.put_object(Bucket=bucket, Key=name, Body=first)
    await dg.put_object(Bucket=bucket, Key=name.replace("-1", "-2"), Body=second)
    assert await read_all(dg, bucket, name) == first
    assert await read_all(dg, bucket, name.replace("-1", "-2")) == second
    meta = metadata(raw, bucket, name + ".delta")
    assert meta["dg-original-name"].isascii()
    listing = await dg.list_objects_v2(Bucket=bucket, Prefix="releases/")
    assert name in [o["Key"] for o in listing["Contents"]]
    # logical sizes come from HEADs signed by the lean SigV4 path: odd characters included
    odd = "releases/odd chars/a+b=c&d~e (1).zip"
    await dg.put_object(Bucket=bucket, Key=odd, Body=first)
    sized = await dg.list_objects_v2(Bucket=bucket, Prefix="releases/", FetchMetadata=True)
    sizes = {o["Key"]: o["Size"] for o in sized["Contents"]}
    assert sizes[name] == len(first) and sizes[odd] == len(first)


async def test_range_requests(dg: AsyncDeltaGliderClient, bucket: str) -> None:
    v1, v2 = release_zip(1), release_zip(2)
    await dg.put_object(Bucket=bucket, Key="r/a.zip", Body=v1)
    await dg.put_object(Bucket=bucket, Key="r/b.zip", Body=v2)
    await dg.put_object(Bucket=bucket, Key="r/c.txt", Body=v2)
    for key in ("r/b.zip", "r/c.txt"):
        resp = await dg.get_object(Bucket=bucket, Key=key, Range="bytes=1000-1999")
        assert await resp["Body"].read() == v2[1000:2000]
        resp = await dg.get_object(Bucket=bucket, Key=key, Range="bytes=-10")
        assert await resp["Body"].read() == v2[-10:]
    with pytest.raises(InvalidArgumentError):
        await dg.get_object(Bucket=bucket, Key="r/b.zip", Range=f"bytes={len(v2) + 5}-")


async def test_delete_semantics(dg: AsyncDeltaGliderClient, raw: Any, bucket: str) -> None:
    from deltaglider_async import ReferenceInUseError

    await dg.put_object(Bucket=bucket, Key="d/a.zip", Body=release_zip(1))
    await dg.put_object(Bucket=bucket, Key="d/b.zip", Body=release_zip(2))
    with pytest.raises(ReferenceInUseError):
        await dg.delete_object(Bucket=bucket, Key="d/reference.bin")
    await dg.delete_object(Bucket=bucket, Key="d/a.zip")
    assert "d/reference.bin" in stored_keys(raw, bucket)
    await dg.delete_object(Bucket=bucket, Key="d/b.zip")
    assert stored_keys(raw, bucket) == {}
    # As in S3, deleting a missing key succeeds (204), in a batch too; Quiet lists no successes.
    gone = await dg.delete_object(Bucket=bucket, Key="d/b.zip")
    assert gone["ResponseMetadata"]["HTTPStatusCode"] == 204
    quiet = await dg.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "d/b.zip"}], "Quiet": True}
    )
    assert "Deleted" not in quiet and "Errors" not in quiet
    # root delta space too
    await dg.put_object(Bucket=bucket, Key="root.zip", Body=release_zip(1))
    resp = await dg.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "root.zip"}, {"Key": "missing.zip"}]}
    )
    assert resp["Deleted"] == [{"Key": "root.zip"}, {"Key": "missing.zip"}]
    assert "Errors" not in resp
    assert stored_keys(raw, bucket) == {}


async def test_pagination_and_delimiter(dg: AsyncDeltaGliderClient, bucket: str) -> None:
    for i in range(7):
        await dg.put_object(Bucket=bucket, Key=f"p/v{i}.zip", Body=release_zip(i))
    await dg.put_object(Bucket=bucket, Key="p/sub/x.txt", Body=b"x")
    keys: list[str] = []
    pages = 0
    async for page in dg.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix="p/", MaxKeys=3
    ):
        pages += 1
        keys += [o["Key"] for o in page["Contents"]]
    assert pages >= 3
    assert keys == [f"p/v{i}.zip" for i in range(7)] + ["p/sub/x.txt"] or sorted(keys) == sorted(
        [f"p/v{i}.zip" for i in range(7)] + ["p/sub/x.txt"]
    )
    top = await dg.list_objects_v2(Bucket=bucket, Prefix="p/", Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["p/sub/"]
    assert len(top["Contents"]) == 7


async def test_copy_and_presign(dg: AsyncDeltaGliderClient, raw: Any, bucket: str) -> None:
    await dg.put_object(Bucket=bucket, Key="c/a.zip", Body=release_zip(1))
    await dg.put_object(Bucket=bucket, Key="c/b.zip", Body=release_zip(2))
    await dg.copy_object(
        Bucket=bucket, Key="other/b.zip", CopySource={"Bucket": bucket, "Key": "c/b.zip"}
    )
    assert await read_all(dg, bucket, "other/b.zip") == release_zip(2)
    await dg.put_object(Bucket=bucket, Key="c/readme.txt", Body=b"hello")
    url = await dg.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "c/readme.txt"}, ExpiresIn=60
    )
    import urllib.request

    import anyio

    def fetch() -> bytes:
        with urllib.request.urlopen(url) as resp:
            data: bytes = resp.read()
            return data

    assert await anyio.to_thread.run_sync(fetch) == b"hello"
    with pytest.raises(InvalidArgumentError):
        await dg.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "c/b.zip"})


async def test_body_kinds(dg: AsyncDeltaGliderClient, bucket: str, tmp_path: Path) -> None:
    data = release_zip(3)
    path = tmp_path / "f.zip"
    path.write_bytes(data)

    async def agen():  # type: ignore[no-untyped-def]
        for i in range(0, len(data), 10_000):
            yield data[i : i + 10_000]

    await dg.put_object(Bucket=bucket, Key="k/path.zip", Body=path)
    with path.open("rb") as fh:
        await dg.put_object(Bucket=bucket, Key="k/file.zip", Body=fh)
    await dg.put_object(Bucket=bucket, Key="k/iter.zip", Body=agen())
    await dg.put_object(Bucket=bucket, Key="k/view.zip", Body=memoryview(data))
    for key in ("path", "file", "iter", "view"):
        assert await read_all(dg, bucket, f"k/{key}.zip") == data


async def test_dg_log_level_reports_storage_decisions(
    s3: Any, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from deltaglider_async import ReferenceCache, create_client

    client = create_client(
        s3.endpoint_url,
        region_name=s3.region,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        cache=ReferenceCache(directory=tmp_path / "c"),
        env={"DG_LOG_LEVEL": "INFO"},
    )
    with caplog.at_level("INFO", logger="deltaglider_async"):
        async with client as dg:
            await dg.put_object(Bucket=bucket, Key="log/a.zip", Body=release_zip(1))
            await dg.put_object(Bucket=bucket, Key="log/b.zip", Body=release_zip(2))
            await dg.put_object(Bucket=bucket, Key="log/c.txt", Body=b"text")
    messages = [r.getMessage() for r in caplog.records if r.name == "deltaglider_async"]
    assert any("reference created from a.zip" in m for m in messages)
    assert any("log/b.zip: stored as delta" in m for m in messages)
    assert any("log/c.txt: stored directly" in m for m in messages)


async def test_a_plain_http_endpoint_builds_no_tls_context(
    s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading the CA bundle costs each process 40 ms, for nothing over plain HTTP: neither for
    an endpoint we are given nor for one botocore resolves (AWS_ENDPOINT_URL)."""
    from aiobotocore.httpsession import AIOHTTPSession

    from deltaglider_async import ReferenceCache, create_client

    def tls(*args: object) -> None:
        raise AssertionError("a TLS context was built for a plain HTTP endpoint")

    monkeypatch.setattr(AIOHTTPSession, "_get_ssl_context", tls)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint_url)
    for endpoint in (s3.endpoint_url, None):
        client = create_client(
            endpoint,
            region_name=s3.region,
            aws_access_key_id=s3.access_key,
            aws_secret_access_key=s3.secret_key,
            cache=ReferenceCache(directory=tmp_path / "c"),
            env={},
        )
        async with client as dg:
            await dg.put_object(Bucket=bucket, Key="plain/a.txt", Body=b"plain")
            got = await dg.get_object(Bucket=bucket, Key="plain/a.txt")
            assert await got["Body"].read() == b"plain"
