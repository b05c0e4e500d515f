"""Credentials that rotate under a long-lived client (STS, SSO, instance profiles, IRSA).

The client's credential source is a ``credential_process`` whose credentials expire soon, so
botocore refreshes them; midway the source hands out a new key and SeaweedFS stops accepting
the old one.  Every operation keeps working, no request is answered 403, and none is sent twice:
a proxy counts the requests of each round of operations, and the rounds after the rotation send
exactly as many as the rounds before it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from deltaglider_async import ReferenceCache, create_client
from deltaglider_async._storage import lean
from tests.faultproxy import FaultProxy
from tests.localserver import ACCESS_KEY, SECRET_KEY, SeaweedServer

from ..artifacts import release_zip
from ..conftest import boto

PROCESS = """
import json, sys, datetime
current = json.load(open(sys.argv[1]))
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)
print(json.dumps({"Version": 1, **current, "Expiration": expires.isoformat()}))
"""


async def test_rotated_credentials_keep_every_operation_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = SeaweedServer(tmp_path / "weed")
    endpoint = server.start()
    proxy = FaultProxy(int(endpoint.endpoint_url.rsplit(":", 1)[1])).start()
    try:
        current = tmp_path / "current.json"
        current.write_text(json.dumps({"AccessKeyId": ACCESS_KEY, "SecretAccessKey": SECRET_KEY}))
        script = tmp_path / "creds.py"
        script.write_text(PROCESS)
        config = tmp_path / "config"
        config.write_text(
            f"[profile rotating]\ncredential_process = {sys.executable} {script} {current}\n"
        )
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        boto(endpoint).create_bucket(Bucket="rotation")
        refused: list[int] = []
        unexpected = lean._unexpected

        def record(operation: str, status: int) -> Exception:
            refused.append(status)
            return unexpected(operation, status)

        monkeypatch.setattr(lean, "_unexpected", record)
        files = []
        for i in range(1, 6):
            path = tmp_path / f"app-{i}.zip"
            path.write_bytes(release_zip(i))
            files.append(path)

        rounds: list[list[str]] = []

        async def exercise(dg: Any, path: Path) -> None:
            sent = len(proxy.requests)
            await dg.upload(path, "s3://rotation/app/")
            listed = [e["Key"] async for e in dg.iter_objects("rotation", "app/")]
            assert f"app/{path.name}" in listed
            stats = await dg.bucket_stats("rotation", "detailed", refresh=True)
            assert stats.delta_objects == len(listed)
            out = tmp_path / "out" / path.name
            await dg.download(f"s3://rotation/app/{path.name}", out)
            assert out.read_bytes() == path.read_bytes()
            rounds.append(proxy.requests[sent:])

        async with create_client(
            proxy.endpoint_url,
            region_name="us-east-1",
            profile_name="rotating",
            cache=ReferenceCache(directory=tmp_path / "cache"),
            env={},
        ) as dg:
            await exercise(dg, files[0])  # creates the reference: a round of its own
            await exercise(dg, files[1])
            await exercise(dg, files[2])
            current.write_text(
                json.dumps({"AccessKeyId": "ROTATEDKEY01", "SecretAccessKey": "rotated-secret"})
            )
            server.rotate_key("ROTATEDKEY01", "rotated-secret")
            await anyio.sleep(1)  # SeaweedFS rereads its identities
            with pytest.raises(Exception, match="InvalidAccessKeyId"):
                boto(endpoint).list_objects_v2(Bucket="rotation")  # the old key is refused
            await exercise(dg, files[3])
            await exercise(dg, files[4])
        assert refused == []
        counts = [len(requests) for requests in rounds[1:]]
        assert counts[0] > 5 and len(set(counts)) == 1, (counts, rounds[1:])
    finally:
        proxy.stop()
        server.stop()
