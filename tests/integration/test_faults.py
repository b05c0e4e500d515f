"""Transfers through resets, stalls, truncations and 5xx, and a server killed mid-upload.

Outcome every time: the object is complete and verifies, or it does not exist; no multipart
upload is left open; no half-written local file.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from deltaglider_async import DeltaGliderError, ReferenceCache, TransferConfig, create_client
from tests.localserver import LocalS3, SeaweedServer

from ..artifacts import release_zip
from ..conftest import boto
from ..faultproxy import FaultProxy

MiB = 1 << 20
RESILIENT = TransferConfig(
    multipart_threshold=5 * MiB,
    part_size=5 * MiB,
    range_size=5 * MiB,
    max_concurrency=4,
    max_attempts=8,
    connect_timeout=2,
    read_timeout=3,
    request_timeout=20,
)


def client_via(url: str, server: LocalS3, cache: Path, transfer: TransferConfig = RESILIENT) -> Any:
    return create_client(
        url,
        region_name=server.region,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        cache=ReferenceCache(directory=cache),
        transfer=transfer,
        env={},
    )


@pytest.fixture
def faulty(seaweed: LocalS3) -> Iterator[FaultProxy]:
    port = int(seaweed.endpoint_url.rsplit(":", 1)[1])
    with FaultProxy(port, fault_rate=0.25, seed=42, stall_seconds=5) as proxy:
        yield proxy


def payloads(tmp_path: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for i in range(1, 7):
        path = tmp_path / f"app-{i}.zip"
        path.write_bytes(release_zip(i))
        files[f"f/app-{i}.zip"] = path
    for i in range(2):
        path = tmp_path / f"disk-{i}.img"
        path.write_bytes(hashlib.sha256(bytes([i])).digest() * (12 * MiB // 32))
        files[f"f/disk-{i}.img"] = path
    return files


async def test_uploads_through_faults_are_all_or_nothing(
    seaweed: LocalS3, faulty: FaultProxy, tmp_path: Path
) -> None:
    raw = boto(seaweed)
    bucket = "faults-up"
    raw.create_bucket(Bucket=bucket)
    files = payloads(tmp_path)
    outcome: dict[str, bool] = {}
    async with client_via(faulty.endpoint_url, seaweed, tmp_path / "c1") as dg:
        for key, path in files.items():
            try:
                await dg.upload(path, f"s3://{bucket}/{key}")
                outcome[key] = True
            except DeltaGliderError:
                outcome[key] = False
    assert sum(faulty.injected.values()) > 0
    stored = {o["Key"] for o in raw.list_objects_v2(Bucket=bucket).get("Contents", [])}
    async with client_via(seaweed.endpoint_url, seaweed, tmp_path / "c2") as direct:
        for key, path in files.items():
            present = key in stored or key + ".delta" in stored
            if outcome[key]:
                resp = await direct.get_object(Bucket=bucket, Key=key)
                assert await resp["Body"].read() == path.read_bytes(), key
            else:
                assert not present, f"{key}: failed upload left an object"
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert sum(outcome.values()) >= len(files) // 2  # retries do their job most of the time


async def test_downloads_through_faults_never_leave_partial_files(
    seaweed: LocalS3, faulty: FaultProxy, tmp_path: Path
) -> None:
    raw = boto(seaweed)
    bucket = "faults-down"
    raw.create_bucket(Bucket=bucket)
    files = payloads(tmp_path)
    async with client_via(seaweed.endpoint_url, seaweed, tmp_path / "c1") as direct:
        for key, path in files.items():
            await direct.upload(path, f"s3://{bucket}/{key}")
    out = tmp_path / "out"
    out.mkdir()
    async with client_via(faulty.endpoint_url, seaweed, tmp_path / "c2") as dg:
        for key, path in files.items():
            dest = out / path.name
            try:
                await dg.download(f"s3://{bucket}/{key}", dest)
            except DeltaGliderError:
                assert not dest.exists(), key
            else:
                assert dest.read_bytes() == path.read_bytes(), key
    assert all(not p.name.endswith(".dg-part") for p in out.iterdir())
    assert sum(faulty.injected.values()) > 0


async def test_server_killed_mid_upload_and_restarted(tmp_path: Path) -> None:
    server = SeaweedServer(tmp_path / "weed")
    endpoint = server.start()
    try:
        raw = boto(endpoint)
        raw.create_bucket(Bucket="killed")
        big = tmp_path / "big.raw"  # not delta-eligible: a plain multipart upload
        with big.open("wb") as fh:
            for _ in range(24):
                fh.write(os.urandom(8 * MiB))
        transfer = TransferConfig(
            multipart_threshold=8 * MiB,
            part_size=8 * MiB,
            max_concurrency=2,
            max_attempts=6,
            connect_timeout=2,
            read_timeout=5,
            request_timeout=30,
        )
        error: BaseException | None = None
        async with client_via(endpoint.endpoint_url, endpoint, tmp_path / "c", transfer) as dg:

            async def upload() -> None:
                nonlocal error
                try:
                    await dg.upload(big, "s3://killed/big.raw")
                except DeltaGliderError as exc:
                    error = exc

            async with anyio.create_task_group() as tg:
                tg.start_soon(upload)
                with anyio.fail_after(60):
                    # polling the server's own state: there is no event to wait on
                    while not raw.list_multipart_uploads(Bucket="killed").get("Uploads"):  # noqa: ASYNC110
                        await anyio.sleep(0.05)
                await anyio.sleep(0.3)
                server.kill()
                await anyio.sleep(1)
                await anyio.to_thread.run_sync(server.restart)
        keys = {o["Key"] for o in raw.list_objects_v2(Bucket="killed").get("Contents", [])}
        if error is None:
            assert keys == {"big.raw"}
            body = raw.get_object(Bucket="killed", Key="big.raw")["Body"].read()
            assert body == big.read_bytes()
        else:
            assert keys == set()
        assert raw.list_multipart_uploads(Bucket="killed").get("Uploads", []) == []
    finally:
        server.stop()


async def test_a_failing_destination_is_reported_at_once_not_retried(
    seaweed: LocalS3, tmp_path: Path
) -> None:
    raw = boto(seaweed)
    raw.create_bucket(Bucket="faults-dest")
    data = os.urandom(12 * MiB)
    raw.put_object(Bucket="faults-dest", Key="big.bin", Body=data)
    etag = raw.head_object(Bucket="faults-dest", Key="big.bin")["ETag"]
    (tmp_path / "ro").write_bytes(b"")
    fd = os.open(tmp_path / "ro", os.O_RDONLY)  # every write fails with EBADF
    try:
        async with client_via(seaweed.endpoint_url, seaweed, tmp_path / "c") as dg:
            with anyio.fail_after(5):
                with pytest.raises(OSError) as raised:
                    await dg._storage.download_to_fd("faults-dest", "big.bin", fd, len(data), etag)
    finally:
        os.close(fd)
    assert raised.value.errno == errno.EBADF
