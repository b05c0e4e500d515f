"""Run every benchmark and publish the results: ``python -m benchmarks [--quick] [--only NAMES]``.

Each part measures side by side in one run and writes ``benchmarks/results/<part>.json`` and
``.md``; this driver then joins the markdown into ``results/README.md``, draws
``results/versions.png`` (savings and encode throughput per release of a real artifact) and
copies the summary into the README between its ``bench`` markers.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from . import archive, cache, codec, dask, fresh, listing, memory, sdk, stats, transfers
from ._common import RESULTS, machine

PARTS = {
    "codec": codec,
    "cache": cache,
    "sdk": sdk,
    "transfers": transfers,
    "stats": stats,
    "listing": listing,
    "archive": archive,
    "fresh": fresh,
    "dask": dask,
    "memory": memory,
}
ROOT = Path(__file__).resolve().parent.parent


def plot_versions(quick: bool) -> Path | None:
    """Savings and encode throughput of each awscli release against the first (as stored)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install -e '.[bench]'): no plot", file=sys.stderr)
        return None
    from xdelta_ffi import encode

    wheels = sorted(transfers.releases(20 if quick else 50).iterdir(), key=_version_key)
    reference = wheels[0].read_bytes()
    versions, savings, speed = [], [], []
    for wheel in wheels[1:]:
        data = wheel.read_bytes()
        start = time.perf_counter()
        delta = encode(reference, data)
        elapsed = time.perf_counter() - start
        versions.append(wheel.stem.split("-")[1])
        savings.append(100 * (1 - len(delta) / len(data)))
        speed.append(len(data) / elapsed / 1e6)
    fig, left = plt.subplots(figsize=(9, 4))
    left.plot(range(len(versions)), savings, color="tab:green", marker="o", markersize=3)
    left.set_ylabel("space saved vs storing the file (%)", color="tab:green")
    left.set_ylim(0, 100)
    right = left.twinx()
    right.bar(range(len(versions)), speed, alpha=0.3, color="tab:blue")
    right.set_ylabel("encode throughput (MB/s)", color="tab:blue")
    step = max(1, len(versions) // 10)
    left.set_xticks(range(0, len(versions), step))
    left.set_xticklabels(versions[::step], rotation=45, ha="right")
    left.set_title(f"awscli releases stored as deltas against {wheels[0].stem.split('-')[1]}")
    fig.tight_layout()
    out = RESULTS / "versions.png"
    fig.savefig(out, dpi=110)
    return out


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in path.stem.split("-")[1].split("."))


def publish(parts: list[str]) -> None:
    info = machine()
    header = [
        "# Benchmark results",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
        f"kernel {info['kernel']}; {info['date']}. Regenerate with `make bench`.",
        "",
    ]
    bodies = [
        (RESULTS / f"{name}.md").read_text() for name in PARTS if (RESULTS / f"{name}.md").exists()
    ]
    if (RESULTS / "versions.png").exists():
        bodies.append("![savings and throughput per release](versions.png)\n")
    summary = "\n".join(header) + "\n".join(bodies)
    (RESULTS / "README.md").write_text(summary)
    readme = ROOT / "README.md"
    text = readme.read_text()
    block = "\n".join(bodies).replace("](versions.png)", "](benchmarks/results/versions.png)")
    block = block.replace("](archive.png)", "](benchmarks/results/archive.png)")
    block = re.sub(r"^## ", "### ", block, flags=re.M)
    new = (
        "<!-- bench:start -->\n"
        + f"Measured {info['date']} on {info['cores']} cores ({info['cpu']}) by `make bench`; "
        "all figures in [benchmarks/results/](benchmarks/results/).\n\n"
        + block
        + "<!-- bench:end -->"
    )
    text = re.sub(r"<!-- bench:start -->.*<!-- bench:end -->", lambda _: new, text, flags=re.S)
    readme.write_text(text)
    print(f"published {', '.join(parts)} → {RESULTS / 'README.md'} and README.md", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts")
    parser.add_argument("--publish-only", action="store_true", help="only rebuild tables/plot")
    args = parser.parse_args(argv)
    parts = [p for p in args.only.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if not args.publish_only:
        for name in parts:
            print(f"== {name}", file=sys.stderr, flush=True)
            code = PARTS[name].main(["--quick"] if args.quick else [])
            if code:
                return code
    plot_versions(args.quick)
    publish(parts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
