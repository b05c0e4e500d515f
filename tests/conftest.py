"""Session-wide real S3 servers: SeaweedFS (default) and moto in server mode."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import boto3
import pytest

from deltaglider_async import AsyncDeltaGliderClient, ReferenceCache, TransferConfig, create_client
from tests.localserver import LocalS3, moto_server, seaweedfs

logging.getLogger("werkzeug").setLevel(logging.ERROR)

_STALL_TEST = "test_stalled_server.py"
_stall_run = pytest.StashKey[tuple[subprocess.Popen[str], Path]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the stalled-server scenario in the background as soon as its test is selected: it
    spends two minutes waiting on timeouts, which then overlap the rest of the suite."""
    if not any(_STALL_TEST in item.nodeid for item in items):
        return
    directory = Path(tempfile.mkdtemp(prefix="dg-stall-"))
    with (directory / "stderr.log").open("w") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.stall_scenario", str(directory)],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            cwd=Path(__file__).parent.parent,
        )
    config.stash[_stall_run] = (proc, directory)


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(_stall_run, None)
    if run is not None:
        proc, directory = run
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def stall_scenario(pytestconfig: pytest.Config) -> tuple[subprocess.Popen[str], Path]:
    """The background stalled-server run and its directory (``stderr.log`` inside)."""
    return pytestconfig.stash[_stall_run]


@pytest.fixture(scope="session")
def seaweed() -> Iterator[LocalS3]:
    with seaweedfs() as server:
        yield server


@pytest.fixture(scope="session")
def moto() -> Iterator[LocalS3]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="session", params=["seaweedfs", "moto"])
def s3(request: pytest.FixtureRequest) -> LocalS3:
    """Each integration test runs once against each real S3 implementation."""
    server: LocalS3 = request.getfixturevalue("seaweed" if request.param == "seaweedfs" else "moto")
    return server


def boto(server: LocalS3):  # type: ignore[no-untyped-def]
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
        config=Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
        ),
    )


@pytest.fixture
def raw(s3: LocalS3):  # type: ignore[no-untyped-def]
    """A plain boto3 client on the same server, to inspect what is really stored."""
    return boto(s3)


@pytest.fixture
def bucket(raw) -> str:  # type: ignore[no-untyped-def]
    name = f"t-{uuid.uuid4().hex[:12]}"
    raw.create_bucket(Bucket=name)
    return name


def make_client(
    server: LocalS3, cache_dir: Path, *, transfer: TransferConfig | None = None, **kw: object
) -> AsyncDeltaGliderClient:
    return create_client(
        server.endpoint_url,
        region_name=server.region,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        cache=kw.pop("cache", None) or ReferenceCache(directory=cache_dir),  # type: ignore[arg-type]
        transfer=transfer,
        env={},
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
async def dg(s3: LocalS3, tmp_path: Path) -> AsyncIterator[AsyncDeltaGliderClient]:
    async with make_client(s3, tmp_path / "cache") as client:
        yield client
