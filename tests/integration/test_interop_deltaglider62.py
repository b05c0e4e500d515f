"""Byte-exact interoperability with the real older tool, deltaglider 6.2.0, on one server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.localserver import LocalS3

from ..artifacts import release_zip
from ..conftest import boto, make_client
from ..oldtool import ensure_old_tool


@pytest.fixture(scope="session")
def old_tool() -> Path:
    """deltaglider==6.2.0 in a venv of its own (created on first use, reused afterwards)."""
    return ensure_old_tool() / "bin" / "deltaglider"


async def run_old(exe: Path, server: LocalS3, *args: str, cwd: Path) -> str:
    env = {**os.environ, **server.env(), "DG_SUPPRESS_DEPRECATION": "1"}
    result = await anyio.run_process([str(exe), *args], env=env, cwd=cwd, check=False)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    return result.stdout.decode()


@pytest.fixture
def bucket62(seaweed: LocalS3) -> str:
    import uuid

    name = f"old-{uuid.uuid4().hex[:10]}"
    boto(seaweed).create_bucket(Bucket=name)
    return name


async def test_old_tool_reads_what_we_write(
    old_tool: Path, seaweed: LocalS3, bucket62: str, tmp_path: Path
) -> None:
    files = {
        "ours/app-1.zip": release_zip(1),
        "ours/app-2.zip": release_zip(2),
        "ours/app-3.zip": release_zip(3),
        "ours/notes.txt": b"direct object\n",
        "root-1.zip": release_zip(4),
    }
    async with make_client(seaweed, tmp_path / "cache") as dg:
        for key, body in files.items():
            await dg.put_object(Bucket=bucket62, Key=key, Body=body)
    for key, body in files.items():
        out = tmp_path / f"out-{key.replace('/', '_')}"
        await run_old(old_tool, seaweed, "cp", f"s3://{bucket62}/{key}", str(out), cwd=tmp_path)
        assert out.read_bytes() == body, key


async def test_we_read_what_old_tool_writes(
    old_tool: Path, seaweed: LocalS3, bucket62: str, tmp_path: Path
) -> None:
    names = {f"app-{i}.zip": release_zip(i) for i in (1, 2, 3)}
    names["readme.txt"] = b"plain text\n"
    for name, body in names.items():
        (tmp_path / name).write_bytes(body)
        # deltaglider 6.2 stores `cp f s3://b/dir/` at the bucket root (a documented bug).
        await run_old(old_tool, seaweed, "cp", name, f"s3://{bucket62}/", cwd=tmp_path)
    stored = {o["Key"] for o in boto(seaweed).list_objects_v2(Bucket=bucket62)["Contents"]}
    assert "reference.bin" in stored and "app-2.zip.delta" in stored
    async with make_client(seaweed, tmp_path / "cache") as dg:
        for name, body in names.items():
            resp = await dg.get_object(Bucket=bucket62, Key=name)
            assert await resp["Body"].read() == body, name
            assert (await dg.verify(f"s3://{bucket62}/{name}")).valid
        listing: dict[str, Any] = await dg.list_objects_v2(Bucket=bucket62)
        assert sorted(o["Key"] for o in listing["Contents"]) == sorted(names)


async def test_62_tar_gz_deltas_are_refused_with_the_reason(
    old_tool: Path, seaweed: LocalS3, bucket62: str, tmp_path: Path
) -> None:
    """6.2 lets xdelta3 gunzip a ``.tar.gz`` and its reference, so the delta holds neither the
    original gzip header nor its compression settings: a clear error, never wrong bytes."""
    from deltaglider_async import IntegrityError

    from ..artifacts import release_tarball

    dist = tmp_path / "dist"
    dist.mkdir()
    for v in (1, 2):
        (dist / f"pkg-0.{v}.tar.gz").write_bytes(release_tarball(v))
    await run_old(old_tool, seaweed, "sync", str(dist), f"s3://{bucket62}/src/", cwd=tmp_path)
    async with make_client(seaweed, tmp_path / "cache") as dg:
        with pytest.raises(IntegrityError) as caught:
            got = await dg.get_object(Bucket=bucket62, Key="src/pkg-0.2.tar.gz")
            await got["Body"].read()
        assert caught.value.code == "UnrebuildableDelta"
        assert "decompressed contents" in str(caught.value)
        result = await dg.verify(f"s3://{bucket62}/src/pkg-0.2.tar.gz")
        assert not result.valid and "external gzip" in result.message
        assert not (tmp_path / "pkg-0.2.tar.gz").exists()
        with pytest.raises(IntegrityError):
            await dg.download(f"s3://{bucket62}/src/pkg-0.2.tar.gz", tmp_path / "pkg-0.2.tar.gz")
        assert not (tmp_path / "pkg-0.2.tar.gz").exists()
