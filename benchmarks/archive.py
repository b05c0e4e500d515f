"""Archive benchmark: real release series stored by deltaglider 6.2 and by us in both formats.

Each series is uploaded release by release, in order, into its own prefix of one SeaweedFS: by the
deltaglider 6.2 SDK, by our SDK in the default ``vcdiff`` format and in the ``archive`` format.
Stored bytes are counted from a raw listing of the prefix (references and every internal object
included).  Each run is a fresh process; after its uploads it downloads the last release three
times (median timed, SHA-256 checked).  Peak RSS is the worker's own.  Run:
``python -m benchmarks.archive`` (or ``python -m benchmarks --only archive``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

from ._common import (
    CACHE,
    RESULTS,
    fmt_bytes,
    pypi_wheels,
    run_worker,
    scratch_dir,
    self_peak_rss,
    write_results,
)

ROOT = Path(__file__).resolve().parent.parent

#: the last 30 releases of pydantic-core up to 2.43.0 with a CPython 3.11 wheel (2.37.0 has none)
_PYDANTIC_CORE = [
    *("2.27.2", "2.28.0", "2.29.0", "2.30.0", "2.31.0", "2.31.1", "2.32.0", "2.33.0", "2.33.1"),
    *("2.33.2", "2.34.0", "2.34.1", "2.35.0", "2.35.1", "2.35.2", "2.36.0", "2.37.1", "2.37.2"),
    *("2.38.0", "2.39.0", "2.40.0", "2.40.1", "2.41.0", "2.41.1", "2.41.2", "2.41.3", "2.41.4"),
    *("2.41.5", "2.42.0", "2.43.0"),
]
#: every 0.10 release of py4j (the last 20 that ship the jar)
_PY4J = [
    *("0.10.0", "0.10.1", "0.10.2", "0.10.2.1", "0.10.3", "0.10.4", "0.10.5", "0.10.6", "0.10.7"),
    *("0.10.8.1", "0.10.9", *(f"0.10.9.{p}" for p in range(1, 10))),
]
#: stored bytes are also compared at this release, where every series has got to
COMPARED_AT = 8

# name, what it shows, package, versions, kind: 30 consecutive releases each (py4j: 20)
AWSCLI = [f"1.45.{p}" for p in range(10, 40)]
SERIES: list[tuple[str, str, str, list[str], str]] = [
    ("awscli wheels", "zip of text", "awscli", AWSCLI, "wheel"),
    ("awscli sdists", ".tar.gz", "awscli", AWSCLI, "sdist"),
    ("awscli sdists, tar czf", "GNU tar + gzip", "awscli", AWSCLI, "sdist-gnu"),
    (
        "botocore wheels",
        "nested .json.gz",
        "botocore",
        [f"1.40.{p}" for p in range(10, 40)],
        "wheel",
    ),
    ("pydantic-core wheels", "native .so", "pydantic_core", _PYDANTIC_CORE, "wheel"),
    ("py4j jars", "jar (Maven)", "py4j", _PY4J, "jar"),
]

OLD_WORKER = r"""
import hashlib, json, os, sys, time
task = json.loads(sys.argv[1])
import boto3
from deltaglider import create_client
c = create_client(endpoint_url=task["endpoint"], log_level="WARNING")
raw = boto3.client("s3", endpoint_url=task["endpoint"], region_name="us-east-1")
def stored():
    pages = raw.get_paginator("list_objects_v2").paginate(
        Bucket=task["bucket"], Prefix=task["prefix"] + "/")
    return sum(o["Size"] for page in pages for o in page.get("Contents", []))
puts, per_put = [], []
for path in task["files"]:
    t = time.perf_counter(); c.upload(path, f"s3://{task['bucket']}/{task['prefix']}/")
    puts.append(time.perf_counter() - t)
    per_put.append(stored())
name = os.path.basename(task["files"][-1])
gets, digest, error = [], None, None
for i in range(3):
    out = task["out"] + str(i)
    t = time.perf_counter()
    try:
        c.download(f"s3://{task['bucket']}/{task['prefix']}/{name}", out)
    except Exception as exc:  # 6.2 cannot read some of what it stores (re-gzips .gz)
        error = f"{type(exc).__name__}: {str(exc)[:120]}"
        break
    gets.append(time.perf_counter() - t)
    digest = hashlib.sha256(open(out, "rb").read()).hexdigest()
    os.unlink(out)
print(json.dumps({"puts": puts, "gets": gets, "sha256": digest, "stored_per_put": per_put,
                  "get_error": error}))
"""


# ---------------------------------------------------------------- artifacts
def _pip_download(spec: str, folder: Path, binary: bool) -> None:
    kind = "--only-binary=:all:" if binary else "--no-binary=:all:"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", kind, "-d", str(folder), spec],
        check=True,
        capture_output=True,
    )


def _repack_with_gnu_tar(sdist: Path, target: Path) -> None:
    """The sdist's files as a user's own ``tar czf`` packs them (GNU tar piping to GNU gzip -6,
    whose deflate is not zlib's): a release tarball as Linux build scripts make them."""
    with tempfile.TemporaryDirectory() as tree:
        subprocess.run(["tar", "xzf", str(sdist), "-C", tree], check=True)
        part = target.with_suffix(".part")
        flags = ["--sort=name", "--owner=0", "--group=0", "--numeric-owner"]
        subprocess.run(["tar", *flags, "-czf", str(part), "-C", tree, "."], check=True)
        os.replace(part, target)


def series_files(package: str, versions: list[str], kind: str) -> list[Path]:
    """The release files, downloaded once; named so that both tools treat them as archives
    (deltaglider 6.2 does not delta-encode ``.whl``: wheels are linked as ``.zip``)."""
    folder = CACHE / "archive" / f"{package}-{kind}"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for version in versions:
        if kind == "wheel":
            source = pypi_wheels(package, [version])[0]
            target = folder / f"{package}-{version}.zip"
        elif kind == "sdist":
            pool = CACHE / "pypi" / f"{package}-sdist"
            pool.mkdir(parents=True, exist_ok=True)
            found = sorted(pool.glob(f"{package}-{version}.tar.gz"))
            if not found:
                _pip_download(f"{package}=={version}", pool, binary=False)
                found = sorted(pool.glob(f"{package}-{version}.tar.gz"))
            source, target = found[0], folder / f"{package}-{version}.tar.gz"
        elif kind == "sdist-gnu":
            source = target = folder / f"{package}-{version}.tar.gz"
            if not target.exists():
                _repack_with_gnu_tar(series_files(package, [version], "sdist")[0], target)
        else:  # the jar a wheel carries
            wheel = pypi_wheels(package, [version])[0]
            target = folder / f"{package}-{version}.jar"
            if not target.exists():
                with zipfile.ZipFile(wheel) as zf:
                    name = next(n for n in zf.namelist() if n.endswith(".jar"))
                    tmp = target.with_suffix(".part")
                    tmp.write_bytes(zf.read(name))
                    os.replace(tmp, target)
            source = target
        if source != target and not target.exists():
            os.link(source, target)
        files.append(target)
    return files


# ---------------------------------------------------------------- workers
def _ours(task: dict[str, Any]) -> dict[str, Any]:
    import anyio
    import boto3

    from deltaglider_async import ReferenceCache, create_client
    from deltaglider_async._core.spaces import reference_number

    env = task["env"]
    raw = boto3.client(
        "s3",
        endpoint_url=task["endpoint"],
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )

    def listed() -> list[dict[str, Any]]:
        pages = raw.get_paginator("list_objects_v2").paginate(
            Bucket=task["bucket"], Prefix=task["prefix"] + "/"
        )
        return [o for page in pages for o in page.get("Contents", [])]

    def stored() -> int:
        return sum(o["Size"] for o in listed())

    async def run() -> dict[str, Any]:
        client = create_client(
            task["endpoint"],
            region_name="us-east-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            cache=ReferenceCache(directory=Path(task["cache"])),
            delta_format=task["format"],
            env={},
        )
        puts, formats, per_put = [], [], []
        async with client as dg:
            url = f"s3://{task['bucket']}/{task['prefix']}/"
            for path in task["files"]:
                start = time.perf_counter()
                summary = await dg.upload(path, url)
                puts.append(time.perf_counter() - start)
                formats.append(summary.delta_format or summary.stored_as)
                per_put.append(await anyio.to_thread.run_sync(stored))
            name = os.path.basename(task["files"][-1])
            gets = []
            for i in range(3):
                out = f"{task['out']}{i}"
                start = time.perf_counter()
                await dg.download(url + name, out)
                gets.append(time.perf_counter() - start)
                digest = hashlib.sha256(Path(out).read_bytes()).hexdigest()
                os.unlink(out)
        references = sum(1 for o in listed() if reference_number(o["Key"]) is not None)
        return {
            "puts": puts,
            "gets": gets,
            "references": references,
            "sha256": digest,
            "formats": formats,
            "stored_per_put": per_put,
            "peak_rss": self_peak_rss(),
        }

    return anyio.run(run)


def _run(task: dict[str, Any], python: Path | None = None) -> dict[str, Any]:
    env = {
        **os.environ,
        **task["env"],
        "AWS_ENDPOINT_URL": task["endpoint"],
        "DG_SUPPRESS_DEPRECATION": "1",
    }
    scratch = scratch_dir()
    if scratch:
        env["TMPDIR"] = scratch
    command = None if python is None else [str(python), "-c", OLD_WORKER]
    return run_worker("benchmarks.archive", task, command=command, env=env, timeout=3600)


def _added(run: dict[str, Any]) -> int:
    """Stored bytes the releases after the first added (raw listings after each put)."""
    per_put: list[int] = run["stored_per_put"]
    return per_put[-1] - per_put[0]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


# ---------------------------------------------------------------- choice of base
def base_choice(files: list[Path], every: int = 10, max_ratio: float = 0.5) -> dict[str, int]:
    """Stored bytes of a series in the archive format (references included) under four choices
    of base, each delta worse than ``max_ratio`` stored whole as the SDK would:

    - the first release only (deltaglider's rule);
    - the first, then a new reference whenever a release no longer fits (what we store);
    - snapshots every ``every`` releases, each delta against the latest (sparse-revlog style);
    - the previous release: a chain, which a read must decode step by step (not allowed: shown
      for scale).
    """
    sys.path.insert(0, str(ROOT))
    from deltaglider_async._engine.codec import encoder_plan
    from deltaglider_async._engine.memory import DEFAULT_LIMIT
    from deltaglider_async._formats._document import reference_form
    from deltaglider_async._formats.archive import _encode_sync, encode_reference_sync

    forms: dict[int, Any] = {}
    compact: dict[int, int] = {}
    deltas: dict[tuple[int, int], int] = {}

    def delta(base: int, target: int) -> int:
        if (base, target) not in deltas:
            deltas[base, target] = encode(base, target)
        return deltas[base, target]

    def encode(base: int, target: int) -> int:
        if base not in forms:
            forms[base] = reference_form(files[base].read_bytes())
        plan = encoder_plan(len(forms[base].source), DEFAULT_LIMIT, in_memory=True)
        with tempfile.TemporaryDirectory() as tmp:
            encoded = _encode_sync(forms[base], files[target], Path(tmp) / "d", None, plan)
        size = files[target].stat().st_size
        if encoded.result is None:  # the format cannot represent it: stored whole
            return size
        return encoded.result.delta_size if encoded.result.delta_size <= max_ratio * size else size

    def reference(index: int) -> int:
        if index not in compact:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "ref"
                form = encode_reference_sync(files[index], out, 2)
                compact[index] = out.stat().st_size if form else files[index].stat().st_size
        return compact[index]

    def whole(size: int, target: int) -> bool:
        return size >= files[target].stat().st_size

    first, misfit, sparse = "first only", "first, new on a misfit", f"snapshot every {every}"
    total = dict.fromkeys((first, misfit, sparse, "previous"), reference(0))
    references = [0]  # newest last
    for i in range(1, len(files)):
        total[first] += delta(0, i)
        total["previous"] += delta(i - 1, i)
        for base in [references[-1], *reversed(references[-4:-1])]:  # as a put tries them
            d = delta(base, i)
            if not whole(d, i):
                break
        else:
            references.append(i)
            d = reference(i)
        total[misfit] += d
        snapshot = (i // every) * every
        total[sparse] += delta(snapshot, i) if snapshot != i else reference(i)
        for stale in [k for k in forms if k not in (*references[-4:], snapshot, i - 1, i)]:
            del forms[stale]
    return total


def _add_base_choice(results: dict[str, Any]) -> None:
    choices = []
    for entry, spec in zip(results["series"], SERIES, strict=True):
        files = series_files(spec[2], spec[3][: entry["releases"]], spec[4])
        choices.append({"series": spec[0], "stored": base_choice(files)})
    results["base_choice"] = choices


# ---------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--base-choice-only", action="store_true", help="add the base measurement to results"
    )
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_ours(json.loads(args.worker))))
        return 0
    if args.base_choice_only:
        results = json.loads((RESULTS / "archive.json").read_text())
        _add_base_choice(results)
        print(write_results("archive", results, render(results)).read_text())
        return 0
    sys.path.insert(0, str(ROOT))
    import boto3

    from tests.localserver import seaweedfs
    from tests.oldtool import ensure_old_tool

    from .sdk import old_tool_python

    ensure_old_tool()
    old = old_tool_python()
    results: dict[str, Any] = {"series": []}
    with seaweedfs() as server, tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        env = {k: v for k, v in server.env().items() if k != "AWS_ENDPOINT_URL"}
        s3 = boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
        )
        bucket = f"archive-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)

        def stored(prefix: str) -> int:
            total = 0
            for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix + "/"
            ):
                total += sum(o["Size"] for o in page.get("Contents", []))
            return total

        for name, shows, package, versions, kind in SERIES:
            files = series_files(package, versions[:4] if args.quick else versions, kind)
            logical = sum(f.stat().st_size for f in files)
            last_sha = hashlib.sha256(files[-1].read_bytes()).hexdigest()
            entry: dict[str, Any] = {
                "series": name,
                "shows": shows,
                "releases": len(files),
                "first": files[0].name,
                "last": files[-1].name,
                "logical_bytes": logical,
                "last_size": files[-1].stat().st_size,
            }
            for tool in ("deltaglider 6.2", "vcdiff", "archive"):
                prefix = f"{tool.replace(' ', '')}/{package}-{kind}"
                task = {
                    "endpoint": server.endpoint_url,
                    "env": env,
                    "bucket": bucket,
                    "prefix": prefix,
                    "files": [str(f) for f in files],
                    "out": f"{tmp}/{uuid.uuid4().hex[:8]}.out",
                    "cache": f"{tmp}/cache-{uuid.uuid4().hex[:8]}",
                    "format": tool,
                }
                run = _run(task, python=old if tool == "deltaglider 6.2" else None)
                assert run.get("get_error") or run["sha256"] == last_sha, (name, tool)
                run["stored"] = stored(prefix)
                entry[tool] = run
                got = f"get {_median(run['gets']):.2f}s" if run["gets"] else run["get_error"]
                print(
                    f"{name} / {tool}: {fmt_bytes(run['stored'])} stored, "
                    f"put {sum(run['puts']):.1f}s, {got}",
                    file=sys.stderr,
                )
            old_run, ours = entry["deltaglider 6.2"], entry["archive"]
            entry["stored_ratio_vs_62"] = old_run["stored"] / ours["stored"]
            # What each release after the first adds: the cost of a long-lived series.
            entry["added_ratio_vs_62"] = _added(old_run) / max(1, _added(ours))
            entry["get_speedup_vs_62"] = (
                _median(old_run["gets"]) / _median(ours["gets"]) if old_run["gets"] else None
            )
            entry["get_mb_s"] = entry["last_size"] / _median(ours["gets"]) / 1e6
            entry["put_speedup_vs_62"] = sum(old_run["puts"]) / sum(ours["puts"])
            # A release's put once the space exists (the first put also makes the reference).
            entry["release_put_speedup_vs_62"] = _median(old_run["puts"][1:]) / _median(
                ours["puts"][1:]
            )
            if len(files) >= COMPARED_AT:
                at = COMPARED_AT - 1
                entry["stored_ratio_at_compared_vs_62"] = (
                    old_run["stored_per_put"][at] / ours["stored_per_put"][at]
                )
            results["series"].append(entry)
    _add_base_choice(results)
    for key in ("stored_ratio", "added_ratio", "stored_ratio_at_compared", "release_put_speedup"):
        ratios = [e[f"{key}_vs_62"] for e in results["series"] if f"{key}_vs_62" in e]
        if ratios:
            results[f"geomean_{key}_vs_62"] = math.exp(sum(map(math.log, ratios)) / len(ratios))
    md = write_results("archive", results, render(results))
    plot(results)
    print(md.read_text())
    return 0


def render(r: dict[str, Any]) -> str:
    lines = [
        "## Archive format: real release series (stored bytes, raw listing)",
        "",
        "Each series uploaded in order into SeaweedFS by deltaglider 6.2 and by us in both "
        "formats (`python -m benchmarks --only archive`). Stored = every object under the "
        "prefix, references included. Get: the last release, median of 3 in the uploading "
        "process (whose memo holds the members its puts deflated: a new process's downloads "
        "are in fresh.md); put: the whole series, and the median of a release's put after the "
        f"first (which also makes the reference). Stored is also compared at release "
        f"{COMPARED_AT}.",
        "",
        "| series | releases | logical | deltaglider 6.2 | ours, vcdiff | ours, archive "
        f"| references | stored vs 6.2 | at release {COMPARED_AT} | added per release vs 6.2 "
        "| get vs 6.2 | get MB/s | put vs 6.2 | a release's put vs 6.2 | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in r["series"]:
        lines.append(
            f"| {e['series']} ({e['shows']}) | {e['releases']} | {fmt_bytes(e['logical_bytes'])} "
            f"| {fmt_bytes(e['deltaglider 6.2']['stored'])} | {fmt_bytes(e['vcdiff']['stored'])} "
            f"| {fmt_bytes(e['archive']['stored'])} | {e['archive'].get('references', 1)} "
            f"| {e['stored_ratio_vs_62']:.1f}× smaller "
            f"| {_ratio(e.get('stored_ratio_at_compared_vs_62'))} "
            f"| {e['added_ratio_vs_62']:.1f}× smaller "
            f"| {_speedup(e['get_speedup_vs_62'])} | {e['get_mb_s']:.0f} "
            f"| {e['put_speedup_vs_62']:.1f}× | {_ratio(e.get('release_put_speedup_vs_62'))} "
            f"| {fmt_bytes(e['archive']['peak_rss'])} |"
        )
    lines += [
        "",
        f"Geometric mean over the series: stored bytes **{r['geomean_stored_ratio_vs_62']:.1f}× "
        "smaller** than deltaglider 6.2; what each release after the first adds "
        f"**{r['geomean_added_ratio_vs_62']:.1f}× smaller** (the first release's reference "
        "weighs most in short series: at release "
        f"{COMPARED_AT}, stored bytes are {_ratio(r.get('geomean_stored_ratio_at_compared_vs_62'))}"
        f" smaller); a release's put {_ratio(r.get('geomean_release_put_speedup_vs_62'))} "
        "deltaglider 6.2's speed.",
        "",
        "![stored bytes per release](archive.png)",
        "",
    ]
    choices = r.get("base_choice")
    if isinstance(choices, list) and choices:
        names = list(choices[0]["stored"])
        lines += [
            "Choice of base: stored bytes in the archive format, references included, each "
            "series encoded offline under four rules (a delta over max-ratio 0.5 stored whole). "
            "We store by the second rule; the last one is a chain, which reads cannot decode in "
            "one step:",
            "",
            "| series | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
            *(
                f"| {c['series']} | " + " | ".join(fmt_bytes(c["stored"][n]) for n in names) + " |"
                for c in choices
            ),
            "",
        ]
    return "\n".join(lines)


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}×"


def _speedup(value: float | None) -> str:
    return "6.2 cannot read it back" if value is None else f"{value:.1f}×"


def plot(r: dict[str, Any]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series = r["series"][0]
    fig, ax = plt.subplots(figsize=(9, 4))
    for tool, color in (
        ("deltaglider 6.2", "tab:red"),
        ("vcdiff", "tab:blue"),
        ("archive", "tab:green"),
    ):
        run = series[tool]
        sizes = run.get("stored_per_put")
        if sizes is None:
            continue
        ax.plot(range(1, len(sizes) + 1), [s / 2**20 for s in sizes], label=tool, color=color)
    ax.set_xlabel(f"release ({series['first']} … {series['last']})")
    ax.set_ylabel("stored MiB after this release")
    ax.set_title(f"{series['series']}: stored bytes as releases are uploaded")
    ax.legend()
    fig.tight_layout()
    out = RESULTS / "archive.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
