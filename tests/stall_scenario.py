"""A server that stops answering (SIGSTOP: connections open, no byte moves), driven with the
default settings; ``tests/integration/test_stalled_server.py`` checks what it reports.

It mostly waits on timeouts (two minutes), so the test session starts it in the background as
soon as that test is collected (``tests/conftest.py``) and the test collects its answer:
``python -m tests.stall_scenario DIRECTORY`` prints one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from deltaglider_async import DeltaGliderError, ReferenceCache, create_client
from tests.artifacts import release_zip
from tests.conftest import boto
from tests.localserver import SeaweedServer

MiB = 1 << 20


def _random_file(path: Path, size: int) -> Path:
    with path.open("wb") as out:
        for _ in range(size // (8 * MiB)):
            out.write(os.urandom(8 * MiB))
    return path


async def scenario(tmp_path: Path) -> dict[str, Any]:
    server = SeaweedServer(tmp_path / "weed")
    endpoint = server.start()
    try:
        raw = boto(endpoint)
        raw.create_bucket(Bucket="stalled")
        served = _random_file(tmp_path / "served.raw", 128 * MiB)  # ranged parallel download
        raw.upload_file(str(served), "stalled", "big/served.raw")
        upload = _random_file(tmp_path / "upload.raw", 256 * MiB)  # multipart upload
        downloads = tmp_path / "downloads"
        downloads.mkdir()
        dg = create_client(
            endpoint.endpoint_url,
            region_name=endpoint.region,
            aws_access_key_id=endpoint.access_key,
            aws_secret_access_key=endpoint.secret_key,
            cache=ReferenceCache(directory=tmp_path / "cache"),
            env={},
        )
        async with dg:
            await dg.put_object(Bucket="stalled", Key="app/v1.zip", Body=release_zip(1))
            await dg.put_object(Bucket="stalled", Key="app/v2.zip", Body=release_zip(2))
            dg.clear_cache()
            client_tmp = dg._ctx.tmp
            assert client_tmp is not None
            moved = {"up": 0}
            outcomes: dict[str, tuple[float, BaseException | None]] = {}
            stopped_at = 0.0

            async def attempt(name: str, operation: object) -> None:
                try:
                    await operation  # type: ignore[misc]
                    error: BaseException | None = None
                except DeltaGliderError as exc:
                    error = exc
                outcomes[name] = (time.monotonic() - stopped_at, error)

            def counting(kind: str):  # type: ignore[no-untyped-def]
                return lambda n: moved.__setitem__(kind, moved[kind] + n)

            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    attempt, "put", dg.upload(upload, "s3://stalled/big/", progress=counting("up"))
                )
                with anyio.fail_after(60):
                    while moved["up"] < 16 * MiB:  # noqa: ASYNC110 (progress is a counter)
                        await anyio.sleep(0.01)
                # A local download outruns any wait for it: the stop lands on its first ranges.
                tg.start_soon(
                    attempt,
                    "get",
                    dg.download("s3://stalled/big/served.raw", downloads / "served.raw"),
                )
                await anyio.sleep(0.05)
                server.pause()
                stopped_at = time.monotonic()
                tg.start_soon(attempt, "list", dg.list_objects_v2(Bucket="stalled", Prefix="app/"))
                tg.start_soon(attempt, "stats", dg.get_bucket_stats("stalled", detailed_stats=True))
                tg.start_soon(
                    attempt, "get delta", dg.get_object(Bucket="stalled", Key="app/v2.zip")
                )
                tg.start_soon(
                    attempt,
                    "put delta",
                    dg.put_object(Bucket="stalled", Key="app/v3.zip", Body=release_zip(3)),
                )
        server.resume()
        keys = {o["Key"] for o in raw.list_objects_v2(Bucket="stalled").get("Contents", [])}
        uploads = raw.list_multipart_uploads(Bucket="stalled").get("Uploads", [])
        return {
            "outcomes": {
                name: {
                    "elapsed": elapsed,
                    "code": getattr(error, "code", None),
                    "error": str(error),
                }
                for name, (elapsed, error) in outcomes.items()
            },
            "downloads_left": sorted(p.name for p in downloads.iterdir()),
            "client_tmp_left": client_tmp.exists(),
            "keys": sorted(keys),
            "open_uploads": [u["Key"] for u in uploads],
        }
    finally:
        server.resume()
        server.stop()


if __name__ == "__main__":
    print(json.dumps(anyio.run(scenario, Path(sys.argv[1]))))
