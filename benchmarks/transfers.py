"""Transfers under realistic latency (a delay proxy on loopback; no `tc netem` in this kernel).

1. Multipart upload and download of one large object: ours (parallel parts / ranged GETs, SHA-256
   computed and verified) vs boto3's ``upload_file``/``download_file`` (default TransferConfig).
2. Bulk upload of 50 consecutive releases of a real artifact (awscli wheels from PyPI): our CLI vs
   the deltaglider 6.2 CLI, in files per second.

Run: ``python -m benchmarks.transfers`` (``--quick``: 256 MiB, one RTT, 20 releases, 1 repeat).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from ._common import (
    CACHE,
    MiB,
    bench_client,
    cpu_seconds,
    pypi_wheels,
    run_worker,
    scratch_dir,
    server_cpu_seconds,
    summarize,
    write_results,
)
from .sdk import old_tool_python

ROOT = Path(__file__).resolve().parent.parent
AWSCLI_FIRST = (1, 45, 10)


def big_file(size_mib: int) -> Path:
    path = CACHE / "transfers" / f"blob-{size_mib}M.bin"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            for _ in range(size_mib // 8):
                out.write(os.urandom(8 * MiB))
    return path


def releases(count: int) -> Path:
    """``count`` consecutive awscli wheels, downloaded once with pip."""
    major, minor, patch = AWSCLI_FIRST
    versions = [f"{major}.{minor}.{p}" for p in range(patch, patch + count)]
    wheels = pypi_wheels("awscli", versions)
    # Named .zip (a wheel is a zip): deltaglider 6.2 does not treat .whl as delta-eligible, and
    # the comparison must have both tools encode deltas.
    selected = CACHE / "transfers" / f"awscli-{count}"
    selected.mkdir(parents=True, exist_ok=True)
    for version, wheel in zip(versions, wheels, strict=True):
        link = selected / f"awscli-{version}.zip"
        if not link.exists():
            os.link(wheel, link)
    return selected


# ---------------------------------------------------------------- workers
def _ours_object(task: dict[str, Any]) -> dict[str, Any]:
    import anyio

    from deltaglider_async import ReferenceCache

    async def run() -> dict[str, Any]:
        async with bench_client(task, ReferenceCache(backend="memory")) as dg:
            url = f"s3://{task['bucket']}/{Path(task['file']).name}"
            cpu, start = cpu_seconds(), time.perf_counter()
            await dg.upload(task["file"], url)
            up, up_cpu = time.perf_counter() - start, cpu_seconds() - cpu
            cpu, start = cpu_seconds(), time.perf_counter()
            await dg.download(url, task["out"])
            down, down_cpu = time.perf_counter() - start, cpu_seconds() - cpu
        return {"upload_s": up, "download_s": down, "upload_cpu": up_cpu, "download_cpu": down_cpu}

    return anyio.run(run)


def _boto_object(task: dict[str, Any]) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    env = task["env"]
    s3 = boto3.client(
        "s3",
        endpoint_url=task["endpoint"],
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=16,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
    key = Path(task["file"]).name
    cpu, start = cpu_seconds(), time.perf_counter()
    s3.upload_file(task["file"], task["bucket"], key)
    up, up_cpu = time.perf_counter() - start, cpu_seconds() - cpu
    cpu, start = cpu_seconds(), time.perf_counter()
    s3.download_file(task["bucket"], key, task["out"])
    down, down_cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {"upload_s": up, "download_s": down, "upload_cpu": up_cpu, "download_cpu": down_cpu}


WORKERS = {"ours": _ours_object, "boto": _boto_object}


def _worker(task: dict[str, Any]) -> dict[str, Any]:
    return run_worker("benchmarks.transfers", task)


def _cli(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed: {proc.stderr[-2000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.worker:
        task = json.loads(args.worker)
        print(json.dumps(WORKERS[task["kind"]](task)))
        return 0
    sys.path.insert(0, str(ROOT))
    import boto3

    from tests.faultproxy import FaultProxy
    from tests.localserver import seaweedfs

    size = 256 if args.quick else 1024
    rtts = [20.0] if args.quick else [20.0, 50.0]
    repeats = 1 if args.quick else 3
    count = 20 if args.quick else 50
    blob = big_file(size)
    wheels = releases(count)
    old_python = old_tool_python()
    results: dict[str, Any] = {
        "size_mib": size,
        "repeats": repeats,
        "scratch": scratch_dir() or "disk",
        "objects": [],
        "bulk": [],
    }
    with seaweedfs() as server:
        env = {k: v for k, v in server.env().items() if k != "AWS_ENDPOINT_URL"}
        s3 = boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
        )
        port = int(server.endpoint_url.rsplit(":", 1)[1])
        for rtt in rtts:
            with FaultProxy(port, delay=rtt / 2000) as proxy:
                runs: dict[str, list[dict[str, Any]]] = {"ours": [], "boto": []}
                for _ in range(repeats):
                    for kind in ("ours", "boto"):
                        bucket = f"tr-{uuid.uuid4().hex[:8]}"
                        s3.create_bucket(Bucket=bucket)
                        out = Path(scratch_dir() or CACHE / "transfers") / f"{bucket}.out"
                        server_cpu = server_cpu_seconds(port)
                        run = _worker(
                            {
                                "kind": kind,
                                "endpoint": proxy.endpoint_url,
                                "env": env,
                                "bucket": bucket,
                                "file": str(blob),
                                "out": str(out),
                            }
                        )
                        run["server_cpu"] = server_cpu_seconds(port) - server_cpu
                        runs[kind].append(run)
                        assert out.stat().st_size == blob.stat().st_size
                        out.unlink()
                entry: dict[str, Any] = {"rtt_ms": rtt}
                for kind, rs in runs.items():
                    entry[kind] = {
                        "upload_MBps": summarize([size * MiB / r["upload_s"] / 1e6 for r in rs]),
                        "download_MBps": summarize(
                            [size * MiB / r["download_s"] / 1e6 for r in rs]
                        ),
                        **{
                            name: statistics.median(r[name] for r in rs)
                            for name in ("upload_cpu", "download_cpu", "server_cpu")
                        },
                    }
                entry["upload_ratio"] = (
                    entry["ours"]["upload_MBps"]["median"] / entry["boto"]["upload_MBps"]["median"]
                )
                entry["download_ratio"] = (
                    entry["ours"]["download_MBps"]["median"]
                    / entry["boto"]["download_MBps"]["median"]
                )
                results["objects"].append(entry)
                print(
                    f"object @{rtt} ms: up {entry['upload_ratio']:.2f}x "
                    f"down {entry['download_ratio']:.2f}x",
                    file=sys.stderr,
                )

                # bulk: 50 consecutive releases, both CLIs, same proxy
                ours_s, old_s = [], []
                script = str(Path(sys.executable).with_name("deltaglider-async"))
                for _ in range(repeats):
                    b1, b2 = f"bk-{uuid.uuid4().hex[:8]}", f"bo-{uuid.uuid4().hex[:8]}"
                    s3.create_bucket(Bucket=b1)
                    s3.create_bucket(Bucket=b2)
                    cli_env = {
                        **os.environ,
                        **env,
                        "AWS_ENDPOINT_URL": proxy.endpoint_url,
                        "DG_CACHE_DIR": str(CACHE / "transfers" / f"cache-{b1}"),
                        "DG_SUPPRESS_DEPRECATION": "1",
                    }
                    ours_s.append(
                        _cli(
                            [
                                script,
                                "cp",
                                "-r",
                                "--no-progress",
                                "--quiet",
                                str(wheels),
                                f"s3://{b1}/awscli/",
                            ],
                            cli_env,
                        )
                    )
                    old_s.append(
                        _cli(
                            [
                                str(old_python.with_name("deltaglider")),
                                "cp",
                                "-r",
                                "--quiet",
                                str(wheels),
                                f"s3://{b2}/awscli/",
                            ],
                            cli_env,
                        )
                    )
                stored = {}
                for name, bucket in (("ours", b1), ("old", b2)):
                    objs = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
                    stored[name] = sum(o["Size"] for o in objs)
                total = sum(p.stat().st_size for p in wheels.iterdir())
                bulk = {
                    "rtt_ms": rtt,
                    "files": count,
                    "original_bytes": total,
                    "ours_s": summarize(ours_s),
                    "old_s": summarize(old_s),
                    "ours_files_per_s": count / summarize(ours_s)["median"],
                    "old_files_per_s": count / summarize(old_s)["median"],
                    "ours_stored_bytes": stored["ours"],
                    "old_stored_bytes": stored["old"],
                }
                bulk["speedup"] = bulk["ours_files_per_s"] / bulk["old_files_per_s"]
                results["bulk"].append(bulk)
                print(f"bulk @{rtt} ms: {bulk['speedup']:.1f}x", file=sys.stderr)
    md = write_results("transfers", results, render(results))
    print(md.read_text())
    return 0


def render(r: dict[str, Any]) -> str:
    lines = [
        f"## Transfers under latency: one {r['size_mib']} MiB object, ours vs boto3",
        "",
        f"Delay proxy on loopback; medians of {r['repeats']} interleaved runs (fresh processes), "
        "MB/s (min–max). Ours also computes and verifies SHA-256. Downloads are written to "
        f"{r.get('scratch', 'disk')} by both (docs/codec.md says why).",
        "",
        "| RTT | upload ours | upload boto3 | × | download ours | download boto3 | × |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in r["objects"]:
        lines.append(
            f"| {e['rtt_ms']:.0f} ms | {_m(e['ours']['upload_MBps'])} | "
            f"{_m(e['boto']['upload_MBps'])} | **{e['upload_ratio']:.2f}×** | "
            f"{_m(e['ours']['download_MBps'])} | {_m(e['boto']['download_MBps'])} | "
            f"**{e['download_ratio']:.2f}×** |"
        )
    lines += [
        "",
        "CPU seconds per run (medians): the client's own for the upload and for the download, and "
        "the S3 server's (SeaweedFS, on the same 2 cores) for both. Ours includes SHA-256 both "
        "ways (~0.5 s per GiB each), which boto3 does not compute.",
        "",
        "| RTT | client up ours | client up boto3 | client down ours | client down boto3 | "
        "server ours | server boto3 |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in r["objects"]:
        o, b = e["ours"], e["boto"]
        if "server_cpu" not in o:
            continue
        lines.append(
            f"| {e['rtt_ms']:.0f} ms | {o['upload_cpu']:.2f} | {b['upload_cpu']:.2f} | "
            f"{o['download_cpu']:.2f} | {b['download_cpu']:.2f} | {o['server_cpu']:.2f} | "
            f"{b['server_cpu']:.2f} |"
        )
    lines += [
        "",
        "## Bulk upload of consecutive awscli releases (CLI vs deltaglider 6.2 CLI)",
        "",
        "| RTT | files | ours s | 6.2 s | files/s ours | files/s 6.2 | × | stored ours "
        "| stored 6.2 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for b in r["bulk"]:
        lines.append(
            f"| {b['rtt_ms']:.0f} ms | {b['files']} ({b['original_bytes'] / MiB:.0f} MiB) | "
            f"{b['ours_s']['median']:.1f} | {b['old_s']['median']:.1f} | "
            f"{b['ours_files_per_s']:.1f} | {b['old_files_per_s']:.1f} | **{b['speedup']:.1f}×** | "
            f"{b['ours_stored_bytes'] / MiB:.1f} MiB | {b['old_stored_bytes'] / MiB:.1f} MiB |"
        )
    return "\n".join(lines) + "\n"


def _m(s: dict[str, float]) -> str:
    return f"{s['median']:.0f} ({s['min']:.0f}–{s['max']:.0f})"


if __name__ == "__main__":
    raise SystemExit(main())
