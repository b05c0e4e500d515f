"""Listing benchmark: 10,000 delta objects listed with logical sizes and ETags (our default)
beside aioboto3's raw listing of the same bucket, on loopback and behind 20 ms RTT.

Each run is a fresh process with a fresh cache directory: ours lists cold (every delta HEADed
once), then warm (the client remembers each delta's HEAD by its stored ETag), then without
metadata (``FetchMetadata=False``); then a next process lists once with the same cache directory
(the first client wrote the HEADs there when it closed), as a second ``ls`` would.
Run: ``python -m benchmarks.listing``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import bench_client, run_worker, summarize, write_results
from .stats import BUCKET, SPACES, _boto, populate

WARM_ROUNDS = 3


def _raw(task: dict[str, Any]) -> dict[str, Any]:
    import aioboto3
    import anyio
    from botocore.config import Config

    async def run() -> dict[str, Any]:
        env = task["env"]
        async with aioboto3.Session().client(
            "s3",
            endpoint_url=task["endpoint"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        ) as client:
            times, keys = [], 0
            for _ in range(1 + WARM_ROUNDS):
                start = time.perf_counter()
                keys = 0
                async for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
                    keys += len(page.get("Contents", []))
                times.append(time.perf_counter() - start)
        return {"first": times[0], "again": statistics.median(times[1:]), "keys": keys}

    return anyio.run(run)


def _ours(task: dict[str, Any]) -> dict[str, Any]:
    import anyio

    from deltaglider_async import ReferenceCache

    async def listing(dg: Any, fetch: bool) -> tuple[float, int, int]:
        start = time.perf_counter()
        keys = total = 0
        async for page in dg.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, FetchMetadata=fetch
        ):
            for entry in page.get("Contents", []):
                keys += 1
                total += entry["Size"]
        return time.perf_counter() - start, keys, total

    async def run() -> dict[str, Any]:
        cache = ReferenceCache(directory=Path(task["cache_dir"]))
        async with bench_client(task, cache) as dg:
            cold, keys, total = await listing(dg, True)
            if task["kind"] == "next":
                return {"next": cold, "keys": keys, "total": total}
            warm = [(await listing(dg, True))[0] for _ in range(WARM_ROUNDS)]
            stored = [(await listing(dg, False))[0] for _ in range(WARM_ROUNDS)]
        return {
            "cold": cold,
            "warm": statistics.median(warm),
            "stored_sizes": statistics.median(stored),
            "keys": keys,
            "total": total,
        }

    return anyio.run(run)


WORKERS = {"raw": _raw, "ours": _ours, "next": _ours}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--objects", type=int, default=None)
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    if args.worker:
        task = json.loads(args.worker)
        print(json.dumps(WORKERS[task["kind"]](task)))
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.faultproxy import FaultProxy
    from tests.localserver import seaweedfs

    count = args.objects or (2000 if args.quick else 10_000)
    repeats = 1 if args.quick else 3
    results: dict[str, Any] = {"objects": count, "rtt_ms": args.rtt_ms, "repeats": repeats}
    with seaweedfs() as server:
        env = {k: v for k, v in server.env().items() if k != "AWS_ENDPOINT_URL"}
        populate(_boto(server.endpoint_url, env), count)
        port = int(server.endpoint_url.rsplit(":", 1)[1])
        with FaultProxy(port, delay=args.rtt_ms / 2000) as proxy:
            for where, endpoint in (("loopback", server.endpoint_url), ("rtt", proxy.endpoint_url)):
                base = {"endpoint": endpoint, "env": env}
                raw, ours, later = [], [], []
                for _ in range(repeats):
                    cache_dir = tempfile.mkdtemp(prefix="dg-bench-listing-")
                    mine = {**base, "cache_dir": cache_dir}
                    raw.append(run_worker("benchmarks.listing", {**base, "kind": "raw"}))
                    ours.append(run_worker("benchmarks.listing", {**mine, "kind": "ours"}))
                    later.append(run_worker("benchmarks.listing", {**mine, "kind": "next"}))
                    shutil.rmtree(cache_dir, ignore_errors=True)
                # the raw listing also shows each space's reference.bin
                assert all(r["keys"] == count + SPACES for r in raw), "a raw listing lost keys"
                assert all(r["keys"] == count for r in ours + later), "our listing lost keys"
                assert [r["total"] for r in later] == [r["total"] for r in ours]
                row = {
                    "raw_s": summarize([r["again"] for r in raw]),
                    "ours_warm_s": summarize([r["warm"] for r in ours]),
                    "ours_cold_s": summarize([r["cold"] for r in ours]),
                    "ours_stored_sizes_s": summarize([r["stored_sizes"] for r in ours]),
                    "ours_next_process_s": summarize([r["next"] for r in later]),
                }
                raw_median = row["raw_s"]["median"]
                row["warm_ratio"] = row["ours_warm_s"]["median"] / raw_median
                row["cold_ratio"] = row["ours_cold_s"]["median"] / raw_median
                row["next_ratio"] = row["ours_next_process_s"]["median"] / raw_median
                results[where] = row
    md = write_results("listing", results, render(results))
    print(md.read_text())
    return 0


def render(r: dict[str, Any]) -> str:
    lines = [
        f"## Listing: {r['objects']:,} deltas with logical sizes and ETags",
        "",
        f"Medians of {r['repeats']} runs, each in a fresh process (warm: median of "
        f"{WARM_ROUNDS} listings by one client). Target: warm ≤ 1.5× aioboto3's raw listing.",
        "",
        "| where | aioboto3 raw listing | ours, warm | ours, cold | ours, next process "
        "| ours, stored sizes | warm / raw | cold / raw | next process / raw |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for where, name in (("loopback", "loopback"), ("rtt", f"{r['rtt_ms']:.0f} ms RTT")):
        row = r[where]
        seconds = " | ".join(
            f"{row[k]['median']:.2f} s"
            for k in (
                "raw_s",
                "ours_warm_s",
                "ours_cold_s",
                "ours_next_process_s",
                "ours_stored_sizes_s",
            )
        )
        lines.append(
            f"| {name} | {seconds} | **{row['warm_ratio']:.2f}×** | {row['cold_ratio']:.1f}× "
            f"| {row['next_ratio']:.2f}× |"
        )
    lines += [
        "",
        "Cold, a client HEADs every delta once (64 at a time): S3 listings do not carry user "
        "metadata, and a delta's logical size and SHA-256 are in its metadata only. A next "
        "process with the same cache directory reads those HEADs from the encrypted note the "
        "first client left there, and HEADs only deltas it does not know.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
