"""The SDK beside aioboto3 on the same SeaweedFS: the same calls, compared for response keys and
value types, error classes and codes, and bytes.  Every difference allowed here is a row of
docs/conformance.md."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aioboto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from deltaglider_async import AsyncDeltaGliderClient, DeltaGliderError, NotFoundError
from tests.artifacts import release_zip
from tests.conftest import make_client
from tests.localserver import LocalS3

#: keys only we return (docs/conformance.md: "what only we know")
OURS_ONLY = {"DeltaGliderInfo", "ChecksumSHA256Hex", "DeltaGliderStats"}
#: keys SeaweedFS adds for checksums botocore asks for and we do not (our SHA-256 covers it)
THEIRS_ONLY = {"ChecksumCRC32", "ChecksumType", "ChecksumAlgorithm"}


@pytest.fixture
async def boto3_client(seaweed: LocalS3) -> AsyncIterator[Any]:
    async with aioboto3.Session().client(
        "s3",
        endpoint_url=seaweed.endpoint_url,
        aws_access_key_id=seaweed.access_key,
        aws_secret_access_key=seaweed.secret_key,
        region_name=seaweed.region,
        config=Config(s3={"addressing_style": "path"}),
    ) as client:
        yield client


@pytest.fixture
async def ours(seaweed: LocalS3, tmp_path: Path) -> AsyncIterator[AsyncDeltaGliderClient]:
    async with make_client(seaweed, tmp_path / "cache") as client:
        yield client


@pytest.fixture
async def buckets(boto3_client: Any) -> tuple[str, str]:
    """One bucket per client, so each sees only what it wrote."""
    names = (f"c-{uuid.uuid4().hex[:10]}", f"c-{uuid.uuid4().hex[:10]}")
    for name in names:
        await boto3_client.create_bucket(Bucket=name)
    return names


def same_shape(theirs: Any, mine: Any, where: str = "") -> None:
    """Every key boto3 returns is there with a value of the same type, recursively; extra
    keys are only ours."""
    if isinstance(theirs, dict):
        assert isinstance(mine, dict), where
        missing = set(theirs) - set(mine) - THEIRS_ONLY - {"HTTPHeaders"}
        assert not missing, f"{where}: missing {sorted(missing)}"
        extra = set(mine) - set(theirs) - OURS_ONLY
        assert not extra, f"{where}: extra {sorted(extra)}"
        for key in set(theirs) & set(mine):
            if key in ("Body", "HTTPHeaders", "RequestId", "HostId"):
                continue
            same_shape(theirs[key], mine[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(mine, list) and len(mine) == len(theirs), where
        for a, b in zip(theirs, mine, strict=True):
            same_shape(a, b, f"{where}[]")
    elif theirs is not None:
        assert isinstance(mine, type(theirs)) or isinstance(theirs, type(mine)), (
            f"{where}: {type(theirs).__name__} vs {type(mine).__name__}"
        )


async def both(
    boto3_client: Any,
    ours: AsyncDeltaGliderClient,
    buckets: tuple[str, str],
    call: str,
    **kwargs: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    theirs = await getattr(boto3_client, call)(Bucket=buckets[0], **kwargs)
    mine = await getattr(ours, call)(Bucket=buckets[1], **kwargs)
    same_shape(theirs, mine, call)
    return theirs, mine


async def error_of(call: Callable[..., Awaitable[Any]], **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        await call(**kwargs)
    return caught.value


@pytest.mark.parametrize("key", ["notes/readme.txt", "rel/app-1.zip"], ids=["direct", "delta"])
async def test_object_calls_have_boto3_shapes(
    boto3_client: Any, ours: AsyncDeltaGliderClient, buckets: tuple[str, str], key: str
) -> None:
    body = release_zip(1)
    metadata = {"note": "kept", "tool": "ci", "Build-Id": "42", "dg-like": "yes"}
    await both(boto3_client, ours, buckets, "put_object", Key=key, Body=body, Metadata=metadata)
    if key.endswith(".zip"):  # a second version, so that this key is stored as a delta
        await both(boto3_client, ours, buckets, "put_object", Key=key, Body=body + b"v2")
        body += b"v2"
        head = await ours.head_object(Bucket=buckets[1], Key=key)
        assert head["DeltaGliderInfo"]["StoredAs"] == "delta"
        metadata = {}
    theirs, mine = await both(boto3_client, ours, buckets, "head_object", Key=key)
    assert mine["Metadata"] == theirs["Metadata"] == {k.lower(): v for k, v in metadata.items()}
    assert mine["ContentLength"] == theirs["ContentLength"] == len(body)
    theirs, mine = await both(boto3_client, ours, buckets, "get_object", Key=key)
    assert await mine["Body"].read() == await theirs["Body"].read() == body
    assert mine["ETag"] == (await ours.head_object(Bucket=buckets[1], Key=key))["ETag"]
    for spec, status in (("bytes=2-9", 206), ("bytes=-5", 206), ("bytes=3-", 206), ("x=1", 200)):
        theirs, mine = await both(boto3_client, ours, buckets, "get_object", Key=key, Range=spec)
        assert mine["ResponseMetadata"]["HTTPStatusCode"] == status
        assert theirs["ResponseMetadata"]["HTTPStatusCode"] == status
        assert mine.get("ContentRange") == theirs.get("ContentRange")
        assert await mine["Body"].read() == await theirs["Body"].read()
    theirs, mine = await both(boto3_client, ours, buckets, "list_objects_v2", Prefix=key[:3])
    assert [(o["Key"], o["Size"]) for o in mine["Contents"]] == [(key, len(body))]
    assert (
        mine["Contents"][0]["ETag"] == (await ours.head_object(Bucket=buckets[1], Key=key))["ETag"]
    )
    theirs = await boto3_client.copy_object(
        Bucket=buckets[0], Key=key + ".copy", CopySource={"Bucket": buckets[0], "Key": key}
    )
    mine = await ours.copy_object(
        Bucket=buckets[1], Key=key + ".copy", CopySource={"Bucket": buckets[1], "Key": key}
    )
    same_shape(theirs, mine, "copy_object")
    copied = await ours.head_object(Bucket=buckets[1], Key=key + ".copy")
    assert mine["CopyObjectResult"]["ETag"] == copied["ETag"]
    await both(boto3_client, ours, buckets, "delete_object", Key=key)
    await both(boto3_client, ours, buckets, "delete_object", Key=key)  # missing: still 204


async def test_errors_are_botocore_client_errors(
    boto3_client: Any, ours: AsyncDeltaGliderClient, buckets: tuple[str, str]
) -> None:
    theirs_bucket, my_bucket = buckets
    await boto3_client.put_object(Bucket=theirs_bucket, Key="a.zip", Body=b"12345")
    await ours.put_object(Bucket=my_bucket, Key="a.zip", Body=b"12345")
    missing = f"gone-{uuid.uuid4().hex[:8]}"
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("get_object", {"Bucket": theirs_bucket, "Key": "nope.zip"}, {"Bucket": my_bucket}),
        ("head_object", {"Bucket": theirs_bucket, "Key": "nope.zip"}, {"Bucket": my_bucket}),
        ("get_object", {"Bucket": missing, "Key": "nope.zip"}, {}),
        ("head_object", {"Bucket": missing, "Key": "nope.zip"}, {}),
        ("delete_object", {"Bucket": missing, "Key": "nope.zip"}, {}),
        ("list_objects_v2", {"Bucket": missing}, {}),
        (
            "get_object",
            {"Bucket": theirs_bucket, "Key": "a.zip", "Range": "bytes=10-20"},
            {"Bucket": my_bucket},
        ),
    ]
    for call, kwargs, mine_kwargs in cases:
        theirs = await error_of(getattr(boto3_client, call), **kwargs)
        mine = await error_of(getattr(ours, call), **{**kwargs, **mine_kwargs})
        what = f"{call}({kwargs})"
        assert isinstance(mine, DeltaGliderError), what
        assert mine.response["Error"]["Code"] == theirs.response["Error"]["Code"], what
        status = theirs.response["ResponseMetadata"]["HTTPStatusCode"]
        assert mine.response["ResponseMetadata"]["HTTPStatusCode"] == status, what
        assert mine.operation_name == theirs.operation_name, what
        for name in ("NoSuchKey", "NoSuchBucket"):
            assert isinstance(mine, getattr(ours.exceptions, name)) == isinstance(
                theirs, getattr(boto3_client.exceptions, name)
            ), f"{what}: except client.exceptions.{name}"
    assert issubclass(ours.exceptions.NoSuchKey, NotFoundError)
    assert ours.exceptions.from_code("NoSuchBucket") is ours.exceptions.NoSuchBucket


async def test_listing_pages_and_paginator(
    boto3_client: Any, ours: AsyncDeltaGliderClient, buckets: tuple[str, str]
) -> None:
    names = [f"p/app-{n}.zip" for n in range(5)] + ["p/readme.txt", "q/other.zip"]
    for n, name in enumerate(names):
        await boto3_client.put_object(Bucket=buckets[0], Key=name, Body=release_zip(n))
        await ours.put_object(Bucket=buckets[1], Key=name, Body=release_zip(n))
    # The stored p/reference.bin is hidden and pages still hold MaxKeys entries.
    for kwargs in ({"MaxKeys": 2}, {"MaxKeys": 3, "Delimiter": "/"}, {"StartAfter": "p/app-2"}):
        tokens: tuple[dict[str, str], dict[str, str]] = ({}, {})
        while True:
            theirs = await boto3_client.list_objects_v2(Bucket=buckets[0], **kwargs, **tokens[0])
            mine = await ours.list_objects_v2(Bucket=buckets[1], **kwargs, **tokens[1])
            same_shape(theirs, mine, f"list_objects_v2({kwargs})")
            keys = [o["Key"] for o in theirs.get("Contents", [])]
            assert [o["Key"] for o in mine.get("Contents", [])] == keys, kwargs
            assert mine.get("CommonPrefixes") == theirs.get("CommonPrefixes"), kwargs
            if not theirs["IsTruncated"]:
                break
            tokens = (
                {"ContinuationToken": theirs["NextContinuationToken"]},
                {"ContinuationToken": mine["NextContinuationToken"]},
            )
    config = {"PaginationConfig": {"MaxItems": 4, "PageSize": 3}}
    full_theirs = (
        await boto3_client.get_paginator("list_objects_v2")
        .paginate(Bucket=buckets[0], **config)
        .build_full_result()
    )
    full_mine = (
        await ours.get_paginator("list_objects_v2")
        .paginate(Bucket=buckets[1], **config)
        .build_full_result()
    )
    assert [o["Key"] for o in full_mine["Contents"]] == [o["Key"] for o in full_theirs["Contents"]]
    assert ("NextToken" in full_mine) == ("NextToken" in full_theirs)
    searched = [
        key
        async for key in ours.get_paginator("list_objects_v2")
        .paginate(Bucket=buckets[1], Prefix="p/")
        .search("Contents[].Key")
    ]
    assert searched == sorted(n for n in names if n.startswith("p/"))
    lines = [
        line
        async for line in (await ours.get_object(Bucket=buckets[1], Key="p/readme.txt"))[
            "Body"
        ].iter_lines()
    ]
    expected = [
        line
        async for line in (await boto3_client.get_object(Bucket=buckets[0], Key="p/readme.txt"))[
            "Body"
        ].iter_lines()
    ]
    assert lines == expected


async def test_batch_delete_and_buckets(
    boto3_client: Any, ours: AsyncDeltaGliderClient, buckets: tuple[str, str]
) -> None:
    for bucket, client in zip(buckets, (boto3_client, ours), strict=True):
        await client.put_object(Bucket=bucket, Key="d/a.zip", Body=release_zip(1))
    objects = {"Objects": [{"Key": "d/a.zip"}, {"Key": "d/missing.zip"}]}
    theirs, mine = await both(boto3_client, ours, buckets, "delete_objects", Delete=objects)
    assert mine["Deleted"] == theirs["Deleted"]
    quiet = {**objects, "Quiet": True}
    await both(boto3_client, ours, buckets, "delete_objects", Delete=quiet)
    theirs = await boto3_client.list_buckets()
    mine = await ours.list_buckets()
    assert set(theirs) - THEIRS_ONLY <= set(mine)
    assert {b["Name"] for b in mine["Buckets"]} >= set(buckets)


@pytest.mark.parametrize("key", ["docs/page.txt", "rel/app-2.zip"], ids=["direct", "delta"])
async def test_put_parameters_apply_to_the_stored_object(
    boto3_client: Any, ours: AsyncDeltaGliderClient, buckets: tuple[str, str], key: str
) -> None:
    import base64
    import hashlib

    await ours.put_object(Bucket=buckets[1], Key="rel/app-1.zip", Body=release_zip(1))
    body = release_zip(2)
    params: dict[str, Any] = {
        "ContentType": "application/zip",
        "CacheControl": "max-age=60",
        "ContentDisposition": 'attachment; filename="app.zip"',
        "ContentLanguage": "en",
        "Metadata": {"note": "kept"},
        "ContentMD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
        "ChecksumSHA256": base64.b64encode(hashlib.sha256(body).digest()).decode(),
    }
    await boto3_client.put_object(Bucket=buckets[0], Key=key, Body=body, **params)
    put = await ours.put_object(Bucket=buckets[1], Key=key, Body=body, **params)
    assert put["DeltaGliderInfo"]["StoredAs"] == ("delta" if key.endswith(".zip") else "direct")
    theirs = await boto3_client.head_object(Bucket=buckets[0], Key=key)
    mine = await ours.head_object(Bucket=buckets[1], Key=key)
    for name in ("ContentType", "CacheControl", "ContentDisposition", "ContentLanguage"):
        assert mine.get(name) == theirs.get(name) == params[name], name
    assert mine["Metadata"] == theirs["Metadata"]
    # copies: COPY keeps the source's metadata and content headers, REPLACE takes the call's
    shown = ("ContentType", "CacheControl", "ContentDisposition", "ContentLanguage", "Metadata")
    for directive, given in (
        ("COPY", {}),
        ("REPLACE", {"ContentType": "text/x-copy", "Metadata": {"b": "2"}}),
        ("REPLACE", {}),
    ):
        copied = []
        for client, bucket in ((boto3_client, buckets[0]), (ours, buckets[1])):
            await client.copy_object(
                Bucket=bucket,
                Key=key + ".copy",
                CopySource={"Bucket": bucket, "Key": key},
                MetadataDirective=directive,
                **given,
            )
            head = await client.head_object(Bucket=bucket, Key=key + ".copy")
            copied.append({name: head.get(name) for name in shown})
        assert copied[1] == copied[0], (directive, given)
    # conditions, as S3 answers them
    for client, bucket in ((boto3_client, buckets[0]), (ours, buckets[1])):
        etag = (await client.head_object(Bucket=bucket, Key=key))["ETag"]
        created = await error_of(
            client.put_object, Bucket=bucket, Key=key, Body=body, IfNoneMatch="*"
        )
        assert created.response["Error"]["Code"] == "PreconditionFailed"
        unchanged = await error_of(client.get_object, Bucket=bucket, Key=key, IfNoneMatch=etag)
        assert unchanged.response["Error"]["Code"] == "304"
        changed = await error_of(client.get_object, Bucket=bucket, Key=key, IfMatch='"0"')
        assert changed.response["Error"]["Code"] == "PreconditionFailed"
        got = await client.get_object(
            Bucket=bucket, Key=key, IfMatch=etag, ResponseContentType="text/x-test"
        )
        assert got["ContentType"] == "text/x-test"
        assert await got["Body"].read() == body
        text = await client.put_object(Bucket=bucket, Key=key + ".str", Body="héllo")
        assert text["ETag"]
        assert await (await client.get_object(Bucket=bucket, Key=key + ".str"))["Body"].read() == (
            "héllo".encode()
        )
