"""The main job on the embedded default: ``bash scripts/demo.sh`` (``scripts/demo.py``).

Starts a local SeaweedFS on free ports, writes a series of versioned release archives, uploads
them with the ``deltaglider-async`` CLI, shows ``ls`` and ``stats``, downloads one release and
verifies it, then stops the server.  Nothing outside a temporary directory is touched.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import boto3

from tests.localserver import LocalS3, seaweedfs


def release_archive(version: int, *, members: int, member_size: int, seed: int = 2026) -> bytes:
    """A build output: a zip of mostly unchanged modules, a few rebuilt per release."""
    rng = random.Random(seed)
    modules = [rng.randbytes(member_size) for _ in range(members)]
    for v in range(1, version + 1):
        change = random.Random(seed * 7919 + v)
        for _ in range(3):  # three modules rebuilt per release, with small edits
            i = change.randrange(members)
            body = bytearray(modules[i])
            for _ in range(4):
                at = change.randrange(len(body) - 64)
                body[at : at + 64] = change.randbytes(64)
            modules[i] = bytes(body)
    out = io.BytesIO()
    stamp = (2026, 11, 1, 0, 0, 0)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(zipfile.ZipInfo("META-INF/VERSION", stamp), f"2.{version}.0\n")
        for i, module in enumerate(modules):
            zf.writestr(zipfile.ZipInfo(f"app/module_{i:03d}.so", stamp), module)
    return out.getvalue()


def _step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}", flush=True)


def _cli(server: LocalS3, *args: str) -> None:
    env = {**os.environ, **server.env(), "DG_CACHE_DIR": os.environ["DG_DEMO_CACHE"]}
    shown = " ".join(args)
    print(f"$ deltaglider-async {shown}", flush=True)
    subprocess.run([sys.executable, "-m", "deltaglider_cli.main", *args], env=env, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--releases", type=int, default=12)
    parser.add_argument("--size-mib", type=int, default=16, help="size of each release")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dg-demo-") as tmp:
        work = Path(tmp)
        os.environ["DG_DEMO_CACHE"] = str(work / "cache")
        _step(f"Writing {args.releases} releases of a {args.size_mib} MiB build artifact")
        releases = work / "releases"
        releases.mkdir()
        member_size = 256 * 1024
        members = max(4, args.size_mib * 1024 * 1024 // member_size)
        for v in range(1, args.releases + 1):
            data = release_archive(v, members=members, member_size=member_size)
            (releases / f"myapp-2.{v}.0.zip").write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()
            (releases / f"myapp-2.{v}.0.zip.sha256").write_text(f"{digest}  myapp-2.{v}.0.zip\n")
        plain = sum(p.stat().st_size for p in releases.iterdir())
        print(f"{len(list(releases.iterdir()))} files, {plain / 2**20:.1f} MiB in total")

        _step("Starting SeaweedFS (local S3) on free loopback ports")
        with seaweedfs(work / "weed") as server:
            print(f"S3 endpoint: {server.endpoint_url}")
            s3 = boto3.client(
                "s3",
                endpoint_url=server.endpoint_url,
                aws_access_key_id=server.access_key,
                aws_secret_access_key=server.secret_key,
                region_name=server.region,
            )
            s3.create_bucket(Bucket="artifacts")

            _step("Uploading every release with the CLI")
            _cli(server, "cp", "--recursive", str(releases), "s3://artifacts/myapp/")

            _step("Listing: logical names and sizes, and what is really stored")
            _cli(
                server,
                "ls",
                "s3://artifacts/myapp/",
                "--human-readable",
                "--summarize",
                "--stored-size",
            )

            _step("Bucket statistics")
            _cli(server, "stats", "artifacts", "--detailed")

            _step("Downloading one release and verifying it")
            target = work / "download"
            last = f"myapp-2.{args.releases - 1}.0.zip"
            _cli(server, "cp", f"s3://artifacts/myapp/{last}", f"{target}/")
            same = (target / last).read_bytes() == (releases / last).read_bytes()
            print(f"byte-identical to the original: {same}")
            _cli(server, "verify", f"s3://artifacts/myapp/{last}")
            if not same:
                return 1
            _step("Stopping SeaweedFS")
    print(f"\nDemo finished in {time.monotonic() - started:.1f}s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
