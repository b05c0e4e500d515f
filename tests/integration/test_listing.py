"""Listings of deltas on real servers: logical sizes and ETags from each delta's HEAD, read once
per stored ETag, and not again by a later process (the HEADs are kept in the reference cache)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from tests.faultproxy import FaultProxy
from tests.localserver import LocalS3

from ..artifacts import release_zip
from ..conftest import make_client


async def test_a_second_process_lists_without_heading_the_deltas_again(
    s3: LocalS3, raw: Any, bucket: str, tmp_path: Path
) -> None:
    bodies = {f"app/v{v}.zip": release_zip(v) for v in (1, 2, 3, 4)}
    async with make_client(s3, tmp_path / "cache") as dg:
        for key, body in bodies.items():
            await dg.put_object(Bucket=bucket, Key=key, Body=body)
    with FaultProxy(int(s3.endpoint_url.rsplit(":", 1)[1])) as proxy:
        through = dataclasses.replace(s3, endpoint_url=proxy.endpoint_url)

        async def listing(cache: Path) -> tuple[dict[str, tuple[int, str]], list[str]]:
            sent = len(proxy.requests)
            async with make_client(through, cache) as dg:
                page = await dg.list_objects_v2(Bucket=bucket, Prefix="app/")
            found = {e["Key"]: (e["Size"], e["ETag"]) for e in page["Contents"]}
            return found, [r for r in proxy.requests[sent:] if r.startswith("HEAD ")]

        first, heads = await listing(tmp_path / "cache")
        assert {key: size for key, (size, _) in first.items()} == {
            key: len(body) for key, body in bodies.items()
        }
        assert len(heads) == 4  # new to this cache: each delta HEADed once
        second, heads = await listing(tmp_path / "cache")
        assert second == first and heads == []
        raw.delete_object(Bucket=bucket, Key="app/v2.zip.delta")  # behind the cache's back
        async with make_client(s3, tmp_path / "cache") as dg:
            await dg.put_object(Bucket=bucket, Key="app/v2.zip", Body=release_zip(9))
        third, heads = await listing(tmp_path / "cache")
        assert len(heads) == 1 and third["app/v2.zip"][0] == len(release_zip(9))
        elsewhere, heads = await listing(tmp_path / "other-cache")
        assert elsewhere == third and len(heads) == 4
