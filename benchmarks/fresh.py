"""Downloads in a new process: what ``cp s3://… .`` costs a CI job or a shell script.

The archive benchmark times gets in the process that uploaded the series, where the reference
and its source form are in memory.  Here each download is its own CLI run, as a user runs one:
deltaglider 6.2's ``deltaglider cp`` against our ``deltaglider-async cp``, with the delta in the
default ``vcdiff`` format and in the ``archive`` format, with the reference cache warm (a deploy
host that downloaded the previous release) and empty (a fresh CI runner).  Each series' first,
second-to-last and last release are uploaded (by a process with a cache of its own), then the last
is downloaded five times per case, the cases taking turns (median, SHA-256 checked), each run with
a fresh copy of the warm cache, all on one SeaweedFS.  Run: ``python -m benchmarks.fresh`` (or
``python -m benchmarks --only fresh``).
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ._common import write_results

ROOT = Path(__file__).resolve().parent.parent
OURS = Path(sys.executable).with_name("deltaglider-async")
REPEATS = 5
_OLD_CP = """
import os, sys
from deltaglider import create_client
client = create_client(endpoint_url=os.environ["AWS_ENDPOINT_URL"], log_level="WARNING")
source, target = sys.argv[1:3]
if source.startswith("s3://"):
    client.download(source, target)
else:
    client.upload(source, target)
"""


def _series() -> list[tuple[str, list[Path]]]:
    from .archive import SERIES, series_files

    wanted = {"awscli wheels", "botocore wheels", "py4j jars"}
    found = []
    for name, _, package, versions, kind in SERIES:
        if name in wanted:
            files = series_files(package, [versions[0], versions[-2], versions[-1]], kind)
            found.append((name, files))
    return found


def _timed(command: list[str], env: dict[str, str], out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
    elapsed = time.perf_counter() - start
    out.unlink()
    return elapsed


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def measure(server_env: dict[str, str], bucket: str, tmp: Path) -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT))
    from tests.oldtool import ensure_old_tool

    # deltaglider 6.2 through its SDK (its CLI's cp to a prefix stores at the bucket's root)
    old = [str(ensure_old_tool() / "bin" / "python"), "-c", _OLD_CP]
    rows = []
    for name, files in _series():
        last = files[-1]
        digest = hashlib.sha256(last.read_bytes()).hexdigest()
        tools: dict[str, tuple[list[str], dict[str, str]]] = {}
        for tool, command, extra in (
            ("deltaglider 6.2", old, []),
            ("ours, vcdiff", [str(OURS), "cp"], ["--delta-format", "vcdiff"]),
            ("ours, archive", [str(OURS), "cp"], ["--delta-format", "archive"]),
        ):
            prefix = f"{uuid.uuid4().hex[:8]}/"
            uploader = {**server_env, "DG_CACHE_DIR": str(tmp / uuid.uuid4().hex)}
            for path in files:
                upload = [*command, str(path), f"s3://{bucket}/{prefix}", *extra]
                subprocess.run(upload, env=uploader, check=True, capture_output=True, timeout=600)
            # the deploy host: it downloaded the previous release
            host = tmp / f"host-{uuid.uuid4().hex[:8]}"
            env = {**server_env, "DG_CACHE_DIR": str(host)}
            previous = [*command, f"s3://{bucket}/{prefix}{files[-2].name}", str(tmp / "prev")]
            subprocess.run(previous, env=env, check=True, capture_output=True, timeout=600)
            tools[tool] = ([*command, f"s3://{bucket}/{prefix}{last.name}"], env)
        row: dict[str, Any] = {"series": name, "size": last.stat().st_size, "seconds": {}}
        times: dict[str, list[float]] = {}
        for _ in range(REPEATS):  # the tools take turns: a slower spell of the machine hits all
            for tool, (command, env) in tools.items():
                for state in ("warm", "empty"):
                    out = tmp / "out.bin"
                    run_cache = tmp / uuid.uuid4().hex
                    if state == "warm" and Path(env["DG_CACHE_DIR"]).exists():
                        shutil.copytree(env["DG_CACHE_DIR"], run_cache, symlinks=True)
                    run_env = {**env, "DG_CACHE_DIR": str(run_cache)}
                    elapsed = _timed([*command, str(out)], run_env, out)
                    times.setdefault(f"{tool}, {state} cache", []).append(elapsed)
                    shutil.rmtree(run_cache, ignore_errors=True)
        row["seconds"] = {case: _median(values) for case, values in times.items()}
        for tool, (command, env) in tools.items():
            # the last copy read back byte-exact (checked once per tool: timing excludes it)
            check = tmp / "check.bin"
            subprocess.run([*command, str(check)], env=env, check=True, capture_output=True)
            assert hashlib.sha256(check.read_bytes()).hexdigest() == digest, (name, tool)
            check.unlink()
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0]["seconds"]) if rows else []
    lines = [
        "## Downloads in a new process (CLI, SeaweedFS)",
        "",
        "Each download a CLI run of its own (`python -m benchmarks.fresh`): the last release of "
        f"a series whose first release is the reference, median of {REPEATS} runs (the tools "
        "taking turns), seconds (start-up "
        "included). Warm: a deploy host's reference cache, which downloaded the release before "
        "(each run starts from a fresh copy of it); empty: a fresh runner. The uploads ran with a "
        "cache of their own. deltaglider 6.2 (its SDK in `python -c`: its CLI's `cp` to a prefix "
        "stores at the bucket's root) keeps no cache between runs. Below 1×: slower than 6.2.",
        "",
        "| series | size | "
        + " | ".join(columns)
        + " | 6.2's time / vcdiff's (warm) | 6.2's time / archive's (warm) |",
        "|---|---|" + "---|" * len(columns) + "---|---|",
    ]
    for row in rows:
        seconds = row["seconds"]
        old = seconds["deltaglider 6.2, warm cache"]
        ratios = " | ".join(
            f"{old / seconds[f'ours, {fmt}, warm cache']:.2f}×" for fmt in ("vcdiff", "archive")
        )
        cells = " | ".join(f"{seconds[c]:.2f}" for c in columns)
        lines.append(f"| {row['series']} | {row['size'] / 1e6:.1f} MB | {cells} | {ratios} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="(same as without)")
    parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import boto3

    from tests.localserver import seaweedfs

    # what an installed package has: its modules compiled (this machine writes no .pyc itself)
    for package in ("deltaglider_async", "cli", "xdelta_ffi"):
        compileall.compile_dir(ROOT / package, quiet=1)

    with seaweedfs() as server, tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, **server.env(), "DG_SUPPRESS_DEPRECATION": "1"}
        bucket = f"fresh-{uuid.uuid4().hex[:8]}"
        boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
        ).create_bucket(Bucket=bucket)
        rows = measure(env, bucket, Path(tmp))
    print(write_results("fresh", {"rows": rows}, render(rows)).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
