"""Bulk jobs on a Dask LocalCluster of 2 worker processes against SeaweedFS: a bucket of
deltaglider 6.2 delta spaces converted into the archive format, byte-exact afterwards, with a
worker killed mid-job; a re-run has nothing to do; verify and detailed stats agree with the local
run."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import anyio
import dask
import pytest

from deltaglider_async import DeltaGliderError, EndpointError, InvalidArgumentError
from deltaglider_async.dask import LOCAL_TASK_SLOTS, ClientSpec, connect
from tests.localserver import LocalS3

from ..artifacts import deflated_zip
from ..conftest import boto, make_client
from ..oldtool import ensure_old_tool

#: space -> (file name pattern, artifact of version v).  No ``.tar.gz``: 6.2 stores those as
#: deltas of the decompressed contents, which nobody can rebuild byte-exact (see the interop
#: tests).
APPS = {f"apps/a{n}": ("app-1.{v}.zip", lambda v, n=n: deflated_zip(v + n)) for n in range(5)}
LIBS = {
    f"java/lib{n}": ("lib-2.{v}.jar", lambda v, n=n: deflated_zip(v + n, nested=True))
    for n in range(3)
}
SPACES = APPS | LIBS
VERSIONS = (1, 2, 3)


def _spec(server: LocalS3, delta_format: str | None = None) -> ClientSpec:
    return ClientSpec(
        server.endpoint_url,
        region_name=server.region,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        delta_format=delta_format,
    )


async def _written_by_62(server: LocalS3, tmp_path: Path) -> tuple[str, dict[str, bytes]]:
    """A bucket whose spaces deltaglider 6.2 itself wrote; the logical key of each file."""
    exe = ensure_old_tool() / "bin" / "deltaglider"
    bucket = f"dask-{uuid.uuid4().hex[:10]}"
    boto(server).create_bucket(Bucket=bucket)
    env = {**os.environ, **server.env(), "DG_SUPPRESS_DEPRECATION": "1"}
    files: dict[str, bytes] = {}

    async def write(space: str, pattern: str, make: object) -> None:
        folder = tmp_path / "dist" / space
        folder.mkdir(parents=True)
        for v in VERSIONS:
            body = make(v)  # type: ignore[operator]
            (folder / pattern.format(v=v)).write_bytes(body)
            files[f"{space}/{pattern.format(v=v)}"] = body
        done = await anyio.run_process(
            [str(exe), "sync", str(folder), f"s3://{bucket}/{space}/"], env=env, check=False
        )
        assert done.returncode == 0, done.stderr.decode()

    async with anyio.create_task_group() as tg:
        for space, (pattern, make) in SPACES.items():
            tg.start_soon(write, space, pattern, make)
    return bucket, files


def _delta_formats(server: LocalS3, bucket: str) -> dict[str, str]:
    client = boto(server)
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(".delta"):
                meta = client.head_object(Bucket=bucket, Key=obj["Key"])["Metadata"]
                found[obj["Key"]] = meta.get("dg-delta-format", "vcdiff")
    return found


async def _kill_a_busy_worker(cluster: object, seen: list[object]) -> int:
    """SIGKILL the process of a worker that is running one of our tasks, once results flow."""
    client = cluster.client  # type: ignore[attr-defined]
    with anyio.fail_after(120):
        while True:
            busy = [w for w, keys in (await client.processing()).items() if keys]
            if seen and busy:
                break
            await anyio.sleep(0.02)
    pids = await client.run(os.getpid, workers=busy[:1])
    pid = next(iter(pids.values()))
    os.kill(pid, signal.SIGKILL)
    return int(pid)


@pytest.mark.slow
async def test_converting_a_62_bucket_on_two_workers_survives_a_killed_worker(
    seaweed: LocalS3, tmp_path: Path
) -> None:
    bucket, files = await _written_by_62(seaweed, tmp_path)
    assert set(_delta_formats(seaweed, bucket).values()) == {"vcdiff"}
    url = f"s3://{bucket}/"
    async with make_client(seaweed, tmp_path / "c1", delta_format="archive") as dg:
        steps = await dg.plan_migration(url, url, delta_format="archive")
        assert len(steps) == len(files)
        # one space per task, so that there are tasks left to reschedule
        async with connect("local:2", _spec(seaweed, "archive"), min_batch_work=1) as cluster:
            assert await cluster.threads() == 2 * LOCAL_TASK_SLOTS
            seen: list[object] = []
            job = asyncio.ensure_future(cluster.migrate(steps, on_result=seen.append))
            killed = await _kill_a_busy_worker(cluster, seen)
            with anyio.fail_after(240):
                results = await job
            assert killed not in (await cluster.client.run(os.getpid)).values()
        failures = [(r.destination, r.error) for r in results if not r.ok]
        assert not failures, failures
        # Objects the killed attempt finished are not copied twice, and none is missing.
        assert len({r.destination for r in results}) == len(results) <= len(files)
        assert await dg.plan_migration(url, url, delta_format="archive") == []

    formats = _delta_formats(seaweed, bucket)
    assert len(formats) == len(files) and set(formats.values()) == {"archive"}, formats
    raw = boto(seaweed)
    assert not raw.list_multipart_uploads(Bucket=bucket).get("Uploads")
    keys = {o["Key"] for o in raw.list_objects_v2(Bucket=bucket)["Contents"]}
    expected = {f"{k}.delta" for k in files} | {f"{space}/reference.bin" for space in SPACES}
    assert keys == expected, keys ^ expected
    async with make_client(seaweed, tmp_path / "c2") as fresh:
        for key, body in files.items():
            got = await fresh.get_object(Bucket=bucket, Key=key)
            assert await got["Body"].read() == body, key

        async with connect("local:2", _spec(seaweed)) as cluster:
            urls = [f"s3://{bucket}/{key}" for key in files]
            verified = await cluster.verify(urls)
            assert [f"s3://{r.bucket}/{r.key}" for r in verified] == urls
            assert all(r.valid for r in verified), [r for r in verified if not r.valid]
            remote = await cluster.bucket_stats(fresh, bucket, "detailed", refresh=True)
            assert remote.heads_issued == len(files)
            async with make_client(seaweed, tmp_path / "c3") as other:
                local = await other.bucket_stats(bucket, "detailed", refresh=True)
            assert remote.as_dict() | {"computed_at": None} == local.as_dict() | {
                "computed_at": None
            }
            assert remote.total_size == sum(len(b) for b in files.values())
            assert not remote.estimated and not remote.partial
            # Re-run on the cluster: nothing left to do.
            again = await cluster.migrate(
                await fresh.plan_migration(url, url, delta_format="archive")
            )
            assert again == []


async def test_a_rescheduled_batch_skips_what_its_first_attempt_did(
    s3: LocalS3, bucket: str, tmp_path: Path
) -> None:
    url = f"s3://{bucket}/r/"
    async with make_client(s3, tmp_path / "c") as plain:
        for v in VERSIONS:
            await plain.put_object(Bucket=bucket, Key=f"r/app-{v}.zip", Body=deflated_zip(v))
    async with make_client(s3, tmp_path / "c", delta_format="archive") as dg:
        steps = await dg.plan_migration(url, url, delta_format="archive")
        first = await dg.migrate(steps[:2])  # a worker that died after two objects
        assert all(r.ok for r in first)
        rest = await dg.migrate(steps, recheck=True)
        assert [r.destination for r in rest] == [steps[2].destination]


async def test_bad_cluster_addresses_are_clear_errors(seaweed: LocalS3) -> None:
    with pytest.raises(InvalidArgumentError, match="worker count"):
        async with connect("local:0", _spec(seaweed)):
            pass
    # Dask retries a refused connection for its connect timeout (30 s by default).
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "3s"}),
        pytest.raises(DeltaGliderError) as caught,
    ):
        async with connect("tcp://127.0.0.1:9", _spec(seaweed)):
            pass
    assert isinstance(caught.value, EndpointError | InvalidArgumentError), caught.value
