"""Stats benchmark: 10,000 delta objects behind 20 ms RTT (a delay proxy on loopback).

Side by side, interleaved: our detailed stats (cold: no session cache, no in-bucket document) vs
what the older tool does (list, then a 10-thread boto3 pool HEADing every .delta); then our re-run
in a new process after 1 % of the deltas changed.  Run: ``python -m benchmarks.stats``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ._common import bench_client, run_worker, summarize, write_results

BUCKET = "stats-bench"
SPACES = 20


def _boto(endpoint: str, env: dict[str, str]) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
        config=Config(
            max_pool_connections=64,
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def delta_meta(i: int, body: bytes) -> dict[str, str]:
    import hashlib

    return {
        "dg-tool": "bench",
        "dg-original-name": f"v{i}.zip",
        "dg-file-sha256": hashlib.sha256(b"%d" % i).hexdigest(),
        "dg-file-size": str(10_000_000 + i),
        "dg-created-at": "2026-11-22T00:00:00.000000Z",
        "dg-ref-key": f"s{i % SPACES}/reference.bin",
        "dg-ref-sha256": "0" * 64,
        "dg-delta-size": str(len(body)),
    }


def put_delta(client: Any, i: int, fill: bytes) -> None:
    """Delta object number ``i`` with dg metadata; ``fill`` varies its bytes (and so its ETag)."""
    body = fill * (100 + i % 900)
    client.put_object(
        Bucket=BUCKET,
        Key=f"s{i % SPACES}/v{i:05d}.zip.delta",
        Body=body,
        Metadata=delta_meta(i, body),
    )


def populate(client: Any, count: int) -> None:
    client.create_bucket(Bucket=BUCKET)
    for s in range(SPACES):
        client.put_object(
            Bucket=BUCKET,
            Key=f"s{s}/reference.bin",
            Body=b"r" * 10_000,
            Metadata={"dg-note": "reference", "dg-file-sha256": "0" * 64},
        )
    with ThreadPoolExecutor(48) as pool:
        list(pool.map(lambda i: put_delta(client, i, b"d"), range(count)))


def change(client: Any, count: int, fraction: float) -> None:
    """Rewrite every ``1/fraction``-th delta with other bytes."""
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: put_delta(client, i, b"c"), range(0, count, int(1 / fraction))))


# ---------------------------------------------------------------- workers
def _ours(task: dict[str, Any]) -> dict[str, Any]:
    import anyio

    async def run() -> dict[str, Any]:
        async with bench_client(task) as dg:
            start = time.perf_counter()
            stats = await dg.bucket_stats(BUCKET, "detailed", refresh=task.get("refresh", False))
            seconds = time.perf_counter() - start
        return {
            "seconds": seconds,
            "heads": stats.heads_issued,
            "objects": stats.object_count,
            "total": stats.total_size,
        }

    return anyio.run(run)


def _boto_pool(task: dict[str, Any]) -> dict[str, Any]:
    client = _boto(task["endpoint"], task["env"])
    start = time.perf_counter()
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".delta")]

    def size(key: str) -> int:
        meta = client.head_object(Bucket=BUCKET, Key=key)["Metadata"]
        return int(meta.get("dg-file-size", 0))

    with ThreadPoolExecutor(10) as pool:
        total = sum(pool.map(size, keys))
    return {"seconds": time.perf_counter() - start, "heads": len(keys), "total": total}


def _listing(task: dict[str, Any]) -> dict[str, Any]:
    """The floor of any re-run: listing every key once, pages one after another, no HEADs."""
    import anyio

    async def run() -> dict[str, Any]:
        async with bench_client(task) as dg:
            start = time.perf_counter()
            count = 0
            async for _ in dg._storage.iter_all(BUCKET):
                count += 1
            return {"seconds": time.perf_counter() - start, "keys": count}

    return anyio.run(run)


WORKERS = {"ours": _ours, "boto": _boto_pool, "listing": _listing}


def _run(task: dict[str, Any]) -> dict[str, Any]:
    return run_worker("benchmarks.stats", task)


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
    with seaweedfs() as server:
        env = {k: v for k, v in server.env().items() if k != "AWS_ENDPOINT_URL"}
        direct = _boto(server.endpoint_url, env)
        started = time.perf_counter()
        populate(direct, count)
        print(f"populated {count} deltas in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        port = int(server.endpoint_url.rsplit(":", 1)[1])
        with FaultProxy(port, delay=args.rtt_ms / 2000) as proxy:
            base = {"endpoint": proxy.endpoint_url, "env": env}
            ours, boto, slow = [], [], []
            for _ in range(repeats):
                direct.delete_object(Bucket=BUCKET, Key=".deltaglider/stats_detailed.json")
                ours.append(_run({**base, "kind": "ours", "refresh": True}))
                boto.append(_run({**base, "kind": "boto"}))
                direct.delete_object(Bucket=BUCKET, Key=".deltaglider/stats_detailed.json")
                slow.append(_run({**base, "kind": "ours", "refresh": True, "fast_path": False}))
            assert all(r["heads"] == count for r in ours + boto + slow)
            totals = {r["total"] for r in ours + boto + slow}
            assert len(totals) == 1, "tools disagree on the total"
            # the last cold run left the in-bucket document; change 1 % and re-run elsewhere
            change(direct, count, 0.01)
            rerun = [_run({**base, "kind": "ours"})]
            for _ in range(repeats - 1):
                change(direct, count, 0.01)
                rerun.append(_run({**base, "kind": "ours"}))
            listing = [_run({**base, "kind": "listing"}) for _ in range(repeats)]
        no_proxy = {"endpoint": server.endpoint_url, "env": env}
        listing_direct = [_run({**no_proxy, "kind": "listing"}) for _ in range(repeats)]
    cold = statistics.median(r["seconds"] for r in ours)
    pool = statistics.median(r["seconds"] for r in boto)
    again = statistics.median(r["seconds"] for r in rerun)
    results = {
        "objects": count,
        "rtt_ms": args.rtt_ms,
        "repeats": repeats,
        "ours_cold_s": summarize([r["seconds"] for r in ours]),
        "boto3_10_threads_s": summarize([r["seconds"] for r in boto]),
        "ours_fast_path_off_s": summarize([r["seconds"] for r in slow]),
        "ours_rerun_after_1pct_s": summarize([r["seconds"] for r in rerun]),
        "rerun_heads": [r["heads"] for r in rerun],
        "listing_only_s": summarize([r["seconds"] for r in listing]),
        "listing_only_no_proxy_s": summarize([r["seconds"] for r in listing_direct]),
        "speedup_cold_vs_boto3": pool / cold,
        "speedup_rerun_vs_cold": cold / again,
    }
    md = write_results("stats", results, render(results))
    print(md.read_text())
    return 0


def render(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"## Stats: {r['objects']:,} deltas behind {r['rtt_ms']:.0f} ms RTT (delay proxy)",
            "",
            f"Medians of {r['repeats']} interleaved runs, each in a fresh process.",
            "",
            "| run | seconds (median, min–max) | HEADs/s |",
            "|---|---|---|",
            _row("ours, detailed, cold", r["ours_cold_s"], r["objects"]),
            _row(
                "ours, detailed, cold, fast path off (`DG_FAST_PATH=0`)",
                r["ours_fast_path_off_s"],
                r["objects"],
            ),
            _row(
                "boto3 list + 10-thread HEAD pool (older tool)",
                r["boto3_10_threads_s"],
                r["objects"],
            ),
            _row(
                "ours, re-run after 1 % changed (new process)",
                r["ours_rerun_after_1pct_s"],
                r["rerun_heads"][0],
            ),
            _row("listing alone (every key, no HEADs)", r["listing_only_s"], 0),
            _row("listing alone, without the delay proxy", r["listing_only_no_proxy_s"], 0),
            "",
            f"- cold: **{r['speedup_cold_vs_boto3']:.1f}×** faster than the boto3 pool;",
            f"- re-run: **{r['speedup_rerun_vs_cold']:.0f}×** faster than cold "
            f"({r['rerun_heads'][0]} HEADs instead of {r['objects']:,}).",
            "",
        ]
    )


def _row(name: str, s: dict[str, float], heads: int) -> str:
    return (
        f"| {name} | {s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f}) | "
        f"{heads / s['median']:.0f} |"
    )


if __name__ == "__main__":
    raise SystemExit(main())
