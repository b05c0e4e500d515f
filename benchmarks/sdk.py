"""SDK benchmark: delta put and get with a warm reference, ours vs the deltaglider 6.2 SDK.

Same SeaweedFS, same files, interleaved runs in fresh processes (the old SDK in its own venv).
In each run the first version is uploaded untimed (it becomes the reference and warms the tool's
cache); then the second version's put (a delta) and get (a rebuild) are timed.  Also: peak RSS of
our 1 GiB put and 1 GiB get.  Run: ``python -m benchmarks.sdk``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ._common import (
    CACHE,
    MiB,
    bench_client,
    run_worker,
    scratch_dir,
    self_peak_rss,
    summarize,
    versioned_files,
    write_results,
)

ROOT = Path(__file__).resolve().parent.parent

OLD_WORKER = r"""
import json, os, sys, time
task = json.loads(sys.argv[1])
from deltaglider import create_client
c = create_client(endpoint_url=task["endpoint"], log_level="WARNING")
c.upload(task["v1"], f"s3://{task['bucket']}/app/")
t = time.perf_counter(); s = c.upload(task["v2"], f"s3://{task['bucket']}/app/")
put = time.perf_counter() - t
name = os.path.basename(task["v2"])
t = time.perf_counter(); c.download(f"s3://{task['bucket']}/app/{name}", task["out"])
get = time.perf_counter() - t
print(json.dumps({"put_s": put, "get_s": get, "stored": s.stored_size,
                  "size": os.path.getsize(task["out"])}))
"""


def old_tool_python() -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.oldtool import ensure_old_tool

    return ensure_old_tool() / "bin" / "python"


def _client(task: dict[str, Any]) -> Any:
    from deltaglider_async import ReferenceCache

    return bench_client(task, ReferenceCache(directory=Path(task["cache"])))


def _ours(task: dict[str, Any]) -> dict[str, Any]:
    import anyio

    async def run() -> dict[str, Any]:
        async with _client(task) as dg:
            await dg.upload(task["v1"], f"s3://{task['bucket']}/app/")
            start = time.perf_counter()
            summary = await dg.upload(task["v2"], f"s3://{task['bucket']}/app/")
            put = time.perf_counter() - start
            name = os.path.basename(task["v2"])
            start = time.perf_counter()
            await dg.download(f"s3://{task['bucket']}/app/{name}", task["out"])
            get = time.perf_counter() - start
        return {
            "put_s": put,
            "get_s": get,
            "stored": summary.stored_size,
            "size": os.path.getsize(task["out"]),
            "peak_rss": self_peak_rss(),
        }

    return anyio.run(run)


def _ours_big(task: dict[str, Any]) -> dict[str, Any]:
    """One phase per process, so each peak RSS is that operation's own."""
    import anyio

    async def run() -> dict[str, Any]:
        async with _client(task) as dg:
            start = time.perf_counter()
            if task["phase"] == "reference":
                await dg.upload(task["v1"], f"s3://{task['bucket']}/app/")
            elif task["phase"] == "put":
                await dg.upload(task["v2"], f"s3://{task['bucket']}/app/")
            else:
                name = os.path.basename(task["v2"])
                await dg.download(f"s3://{task['bucket']}/app/{name}", task["out"])
            return {"seconds": time.perf_counter() - start, "peak_rss": self_peak_rss()}

    return anyio.run(run)


WORKERS = {"ours": _ours, "big": _ours_big}


def _run(task: dict[str, Any], python: Path | None = None) -> dict[str, Any]:
    env = {
        **os.environ,
        **task["env"],
        "AWS_ENDPOINT_URL": task["endpoint"],
        "DG_SUPPRESS_DEPRECATION": "1",
    }
    scratch = scratch_dir()
    if scratch:
        env["TMPDIR"] = scratch  # 6.2 renames its temp output into place: same filesystem
    command = None if python is None else [str(python), "-c", OLD_WORKER]
    return run_worker("benchmarks.sdk", task, command=command, env=env)


def named_pair(size_mib: int) -> tuple[Path, Path]:
    """The synthetic release pair under delta-eligible names (hard links, no copies)."""
    ref, new = versioned_files(CACHE / "synthetic", size_mib * MiB, seed=size_mib)
    folder = CACHE / "sdk" / f"{size_mib}M"
    folder.mkdir(parents=True, exist_ok=True)
    pair = folder / "app-1.0.zip", folder / "app-1.1.zip"
    for source, link in zip((ref, new), pair, strict=True):
        if not link.exists():
            os.link(source, link)
    return pair


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.worker:
        task = json.loads(args.worker)
        print(json.dumps(WORKERS[task.get("kind", "ours")](task)))
        return 0
    sys.path.insert(0, str(ROOT))
    import boto3

    from tests.localserver import seaweedfs

    old = old_tool_python()
    sizes = [64] if args.quick else [64, 256]
    repeats = 1 if args.quick else 3
    results: dict[str, Any] = {
        "repeats": repeats,
        "scratch": scratch_dir() or "disk",
        "cases": [],
    }
    with seaweedfs() as server, tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        env = {k: v for k, v in server.env().items() if k != "AWS_ENDPOINT_URL"}
        s3 = boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
        )

        def task(v1: Path, v2: Path, **extra: Any) -> dict[str, Any]:
            bucket = f"sdk-{uuid.uuid4().hex[:8]}"
            s3.create_bucket(Bucket=bucket)
            return {
                "endpoint": server.endpoint_url,
                "env": env,
                "bucket": bucket,
                "v1": str(v1),
                "v2": str(v2),
                "out": f"{tmp}/{bucket}.out",
                "cache": f"{tmp}/cache-{bucket}",
                **extra,
            }

        for size in sizes:
            v1, v2 = named_pair(size)
            ours, theirs = [], []
            for _ in range(repeats):
                ours.append(_run(task(v1, v2)))
                theirs.append(_run(task(v1, v2), python=old))
            assert all(r["size"] == v2.stat().st_size for r in ours + theirs)
            entry = {
                "size_mib": size,
                "ours_put_s": summarize([r["put_s"] for r in ours]),
                "ours_get_s": summarize([r["get_s"] for r in ours]),
                "old_put_s": summarize([r["put_s"] for r in theirs]),
                "old_get_s": summarize([r["get_s"] for r in theirs]),
                "ours_stored": ours[0]["stored"],
                "old_stored": theirs[0]["stored"],
            }
            entry["put_speedup"] = entry["old_put_s"]["median"] / entry["ours_put_s"]["median"]
            entry["get_speedup"] = entry["old_get_s"]["median"] / entry["ours_get_s"]["median"]
            results["cases"].append(entry)
            print(
                f"{size} MiB: put {entry['put_speedup']:.1f}x get {entry['get_speedup']:.1f}x",
                file=sys.stderr,
            )
        if not args.quick:
            v1, v2 = named_pair(1024)
            big = task(v1, v2, kind="big")
            phases = {p: _run({**big, "phase": p}) for p in ("reference", "put", "get")}
            assert os.path.getsize(big["out"]) == v2.stat().st_size
            results["one_gib"] = phases
    md = write_results("sdk", results, render(results))
    print(md.read_text())
    return 0


def render(r: dict[str, Any]) -> str:
    lines = [
        "## SDK: delta put/get with a warm reference vs the deltaglider 6.2 SDK (SeaweedFS)",
        "",
        f"Medians of {r['repeats']} interleaved runs in fresh processes; seconds (min–max). "
        f"Downloads and both tools' reference caches on {r.get('scratch', 'disk')}.",
        "",
        "| size | put ours | put 6.2 | put × | get ours | get 6.2 | get × | delta ours "
        "| delta 6.2 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in r["cases"]:
        lines.append(
            f"| {c['size_mib']} MiB | {_s(c['ours_put_s'])} | {_s(c['old_put_s'])} | "
            f"**{c['put_speedup']:.1f}×** | {_s(c['ours_get_s'])} | {_s(c['old_get_s'])} | "
            f"**{c['get_speedup']:.1f}×** | {c['ours_stored']:,} B | {c['old_stored']:,} B |"
        )
    if "one_gib" in r:
        big = r["one_gib"]
        lines += [
            "",
            "Peak RSS of our 1 GiB operations (each in its own process): "
            f"reference upload {big['reference']['peak_rss'] / MiB:.0f} MiB "
            f"({big['reference']['seconds']:.1f} s), delta put "
            f"{big['put']['peak_rss'] / MiB:.0f} MiB ({big['put']['seconds']:.1f} s), get "
            f"{big['get']['peak_rss'] / MiB:.0f} MiB ({big['get']['seconds']:.1f} s, cold cache).",
        ]
    return "\n".join(lines) + "\n"


def _s(s: dict[str, float]) -> str:
    return f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"


if __name__ == "__main__":
    raise SystemExit(main())
