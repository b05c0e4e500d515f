"""Peak RSS and wall time under the memory budget: ``python -m benchmarks --only memory``.

Three workloads through one client each, in fresh processes on SeaweedFS, every one under the
default budget (512 MiB), a 256 MiB budget, and no budget to speak of (64 GiB: what the SDK did
before it had one):

- **one 1 GiB** delta put, then its get (cold reference cache);
- **8 × 256 MiB**: eight concurrent delta puts into eight spaces, then eight concurrent gets;
- **200 × 4 MiB**: two hundred concurrent delta puts into twenty spaces.

References are uploaded once into a template bucket and copied server-side into each run's
bucket, so every run starts from the same state.  Target: peak RSS ≤ budget + 64 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ._common import (
    CACHE,
    ROOT,
    bench_client,
    run_worker,
    scratch_dir,
    self_peak_rss,
    summarize,
    versioned_files,
    write_results,
)

MiB = 1 << 20
BUDGETS = {"default (512 MiB)": None, "256 MiB": 256 * MiB, "none (64 GiB)": 64 << 30}
TOLERANCE = 64 * MiB


def _workloads(quick: bool) -> dict[str, dict[str, Any]]:
    if quick:
        return {
            "one 256 MiB": {"size": 256 * MiB, "spaces": 1, "per_space": 1, "get": True},
            "4 × 64 MiB": {"size": 64 * MiB, "spaces": 4, "per_space": 1, "get": True},
            "50 × 4 MiB": {"size": 4 * MiB, "spaces": 5, "per_space": 10, "get": False},
        }
    return {
        "one 1 GiB": {"size": 1024 * MiB, "spaces": 1, "per_space": 1, "get": True},
        "8 × 256 MiB": {"size": 256 * MiB, "spaces": 8, "per_space": 1, "get": True},
        "200 × 4 MiB": {"size": 4 * MiB, "spaces": 20, "per_space": 10, "get": False},
    }


def _files(name: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Per space: a reference and ``per_space`` new versions of it (each a different edit)."""
    folder = CACHE / "memory" / name.replace(" ", "").replace("×", "x")
    folder.mkdir(parents=True, exist_ok=True)
    spaces = []
    for s in range(spec["spaces"]):
        ref, new = versioned_files(CACHE / "synthetic", spec["size"], seed=1000 + s)
        reference = folder / f"s{s}-base.zip"  # a delta-eligible name: it becomes the reference
        if not reference.exists():
            os.link(ref, reference)
        targets = []
        for v in range(spec["per_space"]):
            path = folder / f"s{s}-v{v}.zip"
            if not path.exists():
                data = bytearray(new.read_bytes())
                rng = random.Random(s * 1000 + v)
                at = rng.randrange(len(data) - 64)
                data[at : at + 64] = rng.randbytes(64)
                path.write_bytes(data)
            targets.append(str(path))
        spaces.append({"reference": str(reference), "targets": targets, "prefix": f"s{s}/"})
    return spaces


# ---------------------------------------------------------------- workers (fresh processes)
def _setup(task: dict[str, Any]) -> dict[str, Any]:
    import anyio

    async def run() -> None:
        async with bench_client(task) as dg:
            for space in task["spaces"]:
                await dg.upload(space["reference"], f"s3://{task['bucket']}/{space['prefix']}")

    anyio.run(run)
    return {}


def _measure(task: dict[str, Any]) -> dict[str, Any]:
    import anyio

    from deltaglider_async import ReferenceCache, create_client
    from deltaglider_async._engine.memory import _resident  # what the budget counts the process as

    async def run() -> dict[str, Any]:
        env = task["env"]
        dg = create_client(
            task["endpoint"],
            region_name="us-east-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            cache=ReferenceCache(directory=Path(task["cache"])),
            memory_limit=task["limit"],
            env={},
        )
        bucket = task["bucket"]
        async with dg:
            opened = _resident()
            uploads = [
                (target, f"s3://{bucket}/{space['prefix']}")
                for space in task["spaces"]
                for target in space["targets"]
            ]
            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for path, url in uploads:
                    tg.start_soon(dg.upload, path, url)
            put_s = time.perf_counter() - start
            get_s = None
            if task["get"]:
                out = Path(task["out"])
                out.mkdir(parents=True, exist_ok=True)
                start = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for i, (path, url) in enumerate(uploads):
                        name = os.path.basename(path)
                        tg.start_soon(dg.download, url + name, out / f"{i}-{name}")
                get_s = time.perf_counter() - start
                for i, (path, _) in enumerate(uploads):
                    got = out / f"{i}-{os.path.basename(path)}"
                    assert got.stat().st_size == os.path.getsize(path)
                shutil.rmtree(out)
            budget = dg._ctx.codec.memory
            return {
                "put_s": put_s,
                "get_s": get_s,
                "peak_rss": self_peak_rss(),
                "opened_rss": opened,
                "budget_peak": budget.peak,
                "limit": budget.limit,
            }

    return anyio.run(run)


WORKERS = {"setup": _setup, "measure": _measure}


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

    from tests.localserver import seaweedfs

    repeats = 1 if args.quick else 3
    results: dict[str, Any] = {"repeats": repeats, "tolerance": TOLERANCE, "rows": []}
    with seaweedfs() as server, tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        env = {k: v for k, v in server.env().items() if k != "AWS_ENDPOINT_URL"}
        s3 = boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
        )
        base = {"endpoint": server.endpoint_url, "env": env}
        for name, spec in _workloads(args.quick).items():
            spaces = _files(name, spec)
            template = f"tpl-{uuid.uuid4().hex[:8]}"
            s3.create_bucket(Bucket=template)
            run_worker(
                "benchmarks.memory", {**base, "kind": "setup", "bucket": template, "spaces": spaces}
            )
            runs: dict[str, list[dict[str, Any]]] = {label: [] for label in BUDGETS}
            for _ in range(repeats):
                for label, limit in BUDGETS.items():  # interleaved: drift hits all alike
                    bucket = f"mem-{uuid.uuid4().hex[:8]}"
                    s3.create_bucket(Bucket=bucket)
                    for obj in s3.list_objects_v2(Bucket=template)["Contents"]:
                        s3.copy_object(
                            Bucket=bucket,
                            Key=obj["Key"],
                            CopySource={"Bucket": template, "Key": obj["Key"]},
                        )
                    runs[label].append(
                        run_worker(
                            "benchmarks.memory",
                            {
                                **base,
                                "kind": "measure",
                                "bucket": bucket,
                                "spaces": spaces,
                                "get": spec["get"],
                                "limit": limit,
                                "cache": f"{tmp}/cache-{bucket}",
                                "out": f"{tmp}/out-{bucket}",
                            },
                        )
                    )
                    shutil.rmtree(f"{tmp}/cache-{bucket}", ignore_errors=True)
                    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                        for obj in page.get("Contents", []):
                            s3.delete_object(Bucket=bucket, Key=obj["Key"])
            for label, measured in runs.items():
                row = {
                    "workload": name,
                    "budget": label,
                    "limit": measured[0]["limit"],
                    "peak_rss": summarize([m["peak_rss"] for m in measured]),
                    "opened_rss": summarize([m["opened_rss"] for m in measured]),
                    "above_open": max(m["peak_rss"] - m["opened_rss"] for m in measured),
                    "budget_peak": max(m["budget_peak"] for m in measured),
                    "put_s": summarize([m["put_s"] for m in measured]),
                    "get_s": summarize([m["get_s"] for m in measured]) if spec["get"] else None,
                }
                results["rows"].append(row)
                print(
                    f"{name} / {label}: peak {row['peak_rss']['max'] / MiB:.0f} MiB, "
                    f"put {row['put_s']['median']:.1f} s",
                    file=sys.stderr,
                )
    md = write_results("memory", results, render(results))
    print(md.read_text())
    return 0


def render(r: dict[str, Any]) -> str:
    lines = [
        "## Memory: peak RSS and wall time under the memory budget (SeaweedFS)",
        "",
        f"Each run in a fresh process, one client, cold reference cache; medians of {r['repeats']} "
        "interleaved runs (min–max). Target: worst peak RSS ≤ budget + 64 MiB; time against "
        "the same workload without a budget (64 GiB).",
        "",
        "'Above the open client' subtracts what the process held once its client was open (the "
        "interpreter, botocore, aiohttp: about 70 MiB here), which the budget counts first (up "
        "to a quarter of it); 'budget's own peak' is what its reservations held at most.",
        "",
        "| workload | budget | peak RSS (worst) | ≤ budget + 64 MiB | above the open client "
        "(worst) | budget's own peak | put | get | time vs no budget |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    baseline = {row["workload"]: row for row in r["rows"] if row["limit"] >= 16 << 30}
    for row in r["rows"]:
        worst = row["peak_rss"]["max"]
        unbounded = row["limit"] >= 16 << 30
        fits = "—" if unbounded else ("yes" if worst <= row["limit"] + r["tolerance"] else "no")
        total = row["put_s"]["median"] + (row["get_s"]["median"] if row["get_s"] else 0)
        base = baseline[row["workload"]]
        base_total = base["put_s"]["median"] + (base["get_s"]["median"] if base["get_s"] else 0)
        get = _s(row["get_s"]) if row["get_s"] else "—"
        lines.append(
            f"| {row['workload']} | {row['budget']} | {worst / MiB:.0f} MiB | {fits} | "
            f"{row['above_open'] / MiB:.0f} MiB | {row['budget_peak'] / MiB:.0f} MiB | "
            f"{_s(row['put_s'])} | {get} | {total / base_total:.2f}× |"
        )
    return "\n".join(lines) + "\n"


def _s(s: dict[str, float]) -> str:
    return f"{s['median']:.1f} s ({s['min']:.1f}–{s['max']:.1f})"


if __name__ == "__main__":
    raise SystemExit(main())
