"""Codec benchmark: xdelta_ffi side by side with the xdelta3 CLI as DeltaGlider invokes it.

Each measurement runs in a fresh child process (peak RSS is that process's own), ours and the CLI
interleaved per repeat; medians with min-max are reported.  Run: ``python -m benchmarks.codec``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ._common import (
    CACHE,
    MiB,
    children_peak_rss,
    fmt_bytes,
    pypi_wheels,
    run_worker,
    scratch_dir,
    self_peak_rss,
    summarize,
    versioned_files,
    write_results,
)

REAL_PACKAGES = {
    "botocore": ["1.35.0", "1.35.1", "1.35.2", "1.35.3", "1.35.4"],
    "pip": ["24.1", "24.1.1", "24.1.2", "24.2", "24.3"],
    "setuptools": ["75.1.0", "75.2.0", "75.3.0", "75.4.0", "75.5.0"],
}


# ---------------------------------------------------------------- workers (one measurement each)
def _worker(task: dict[str, Any]) -> dict[str, Any]:
    kind = task["kind"]
    ref, new = Path(task["ref"]), Path(task["new"])
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        delta_path = Path(tmp) / "d"
        out_path = Path(tmp) / "out"
        if kind == "ours":
            from xdelta_ffi import Encoder, release_memory

            opts = task.get("options", {})
            start = time.perf_counter()
            enc = Encoder(ref, target_size=new.stat().st_size, **opts)
            with new.open("rb") as src, delta_path.open("wb") as dst:
                for piece in enc.iter(iter(lambda: src.read(4 * MiB), b"")):
                    dst.write(piece)
            encode_s = time.perf_counter() - start
            enc_rss = self_peak_rss()
            release_memory()  # what the CLI's exit does before its decode
            # The decode gets its own fresh process, as the CLI's does: right after an encode has
            # freed hundreds of MiB, this VM made the next big allocations (the output's page
            # cache) several times slower, which measured the VM rather than the decoder.
            decoded = run_worker(
                "benchmarks.codec",
                {
                    "worker": "decode",
                    "ref": str(ref),
                    "delta": str(delta_path),
                    "out": str(out_path),
                    "target_size": new.stat().st_size,
                },
            )
            decode_s = decoded["decode_s"]
            rss = max(enc_rss, decoded["peak_rss"])
        else:
            level = f"-{task.get('level', 9)}"
            start = time.perf_counter()
            subprocess.run(
                ["xdelta3", "-e", level, "-f", "-s", ref, new, delta_path],
                check=True,
                capture_output=True,
            )
            encode_s = time.perf_counter() - start
            enc_rss = children_peak_rss()
            start = time.perf_counter()
            subprocess.run(
                ["xdelta3", "-d", "-f", "-s", ref, delta_path, out_path],
                check=True,
                capture_output=True,
            )
            decode_s = time.perf_counter() - start
            rss = children_peak_rss()
        ok = _same(out_path, new)
        return {
            "delta_size": delta_path.stat().st_size,
            "encode_s": encode_s,
            "decode_s": decode_s,
            "encode_peak_rss": enc_rss,
            "peak_rss": rss,
            "roundtrip_ok": ok,
        }


def _same(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(8 * MiB), fb.read(8 * MiB)
            if x != y:
                return False
            if not x:
                return True


def _decode_worker(task: dict[str, Any]) -> dict[str, Any]:
    """Our decode to a file, alone in its process."""
    from xdelta_ffi import Decoder

    start = time.perf_counter()
    dec = Decoder(task["ref"], target_size=task["target_size"])
    with open(task["delta"], "rb") as src, open(task["out"], "wb") as dst:
        dec.pipe(iter(lambda: src.read(1 * MiB), b""), dst)
    return {"decode_s": time.perf_counter() - start, "peak_rss": self_peak_rss()}


def _latency_worker(task: dict[str, Any]) -> dict[str, Any]:
    """Per-call latency on 100 KiB files: in-process calls vs a CLI process per call."""
    from xdelta_ffi import encode

    ref, new = Path(task["ref"]), Path(task["new"])
    source, target = ref.read_bytes(), new.read_bytes()
    calls = task["calls"]
    start = time.perf_counter()
    for _ in range(calls):
        encode(source, target, level=task["level"])
    ours = (time.perf_counter() - start) / calls
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        start = time.perf_counter()
        for _ in range(max(5, calls // 20)):
            subprocess.run(
                ["xdelta3", "-e", "-9", "-f", "-s", ref, new, Path(tmp) / "d"],
                check=True,
                capture_output=True,
            )
        cli = (time.perf_counter() - start) / max(5, calls // 20)
    return {"ours_s": ours, "cli_s": cli}


def _threads_worker(task: dict[str, Any]) -> dict[str, Any]:
    """Two encodes in sequence vs the same two in two threads (the GIL is released in C)."""
    from xdelta_ffi import encode

    pairs = [(Path(r).read_bytes(), Path(n).read_bytes()) for r, n in task["pairs"]]

    def one(i: int) -> None:
        encode(*pairs[i], level=task["level"])

    def both_in_threads() -> float:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - start

    # Scaling, not first-call cost: a warm-up round in two threads first, so that both sides find
    # the process as a busy SDK keeps it (the codec keeps freed tables for reuse, see
    # docs/codec.md); otherwise only the threaded side would fault in a second set of tables.
    both_in_threads()
    start = time.perf_counter()
    one(0)
    one(1)
    sequential = time.perf_counter() - start
    return {"sequential_s": sequential, "parallel_s": both_in_threads()}


def _big_worker(task: dict[str, Any]) -> dict[str, Any]:
    """1 GiB target against a 1 GiB source: peak RSS of encode and of decode, separately."""
    from xdelta_ffi import Decoder, Encoder

    ref, new = Path(task["ref"]), Path(task["new"])
    out = Path(task["delta"])
    if task["phase"] == "encode":
        start = time.perf_counter()
        enc = Encoder(ref, target_size=new.stat().st_size, level=task["level"])
        with new.open("rb") as src, out.open("wb") as dst:
            for piece in enc.iter(iter(lambda: src.read(4 * MiB), b"")):
                dst.write(piece)
        return {
            "seconds": time.perf_counter() - start,
            "peak_rss": self_peak_rss(),
            "delta_size": out.stat().st_size,
        }
    start = time.perf_counter()
    dec = Decoder(ref, target_size=new.stat().st_size)
    import hashlib

    digest = hashlib.sha256()
    with out.open("rb") as src:
        for piece in dec.iter(iter(lambda: src.read(1 * MiB), b"")):
            digest.update(piece)
    expected = hashlib.sha256()
    with new.open("rb") as f:
        while chunk := f.read(8 * MiB):
            expected.update(chunk)
    return {
        "seconds": time.perf_counter() - start,
        "peak_rss": self_peak_rss(),
        "ok": digest.digest() == expected.digest(),
    }


WORKERS = {
    "pair": _worker,
    "decode": _decode_worker,
    "latency": _latency_worker,
    "threads": _threads_worker,
    "big": _big_worker,
}


# ---------------------------------------------------------------- driver
def _run(task: dict[str, Any]) -> dict[str, Any]:
    return run_worker("benchmarks.codec", task)


def real_artifacts() -> list[tuple[str, list[Path]]]:
    """Consecutive releases of a few PyPI packages (pip download, cached under .cache/)."""
    return [
        (package, pypi_wheels(package, versions)) for package, versions in REAL_PACKAGES.items()
    ]


def pair_cases(quick: bool) -> list[tuple[str, Path, Path]]:
    syn = CACHE / "synthetic"
    sizes = [8, 64] if quick else [8, 64, 256]
    cases = []
    for size in sizes:
        ref, new = versioned_files(syn, size * MiB, seed=size)
        cases.append((f"synthetic {size} MiB (edits + shift)", ref, new))
    for package, files in real_artifacts():
        for older, newer in itertools.pairwise(files):
            cases.append((f"{package} {_version(older)}→{_version(newer)}", older, newer))
    return cases


def _version(path: Path) -> str:
    return path.name.split("-")[1]


def rotated_case() -> tuple[Path, Path]:
    folder = CACHE / "synthetic"
    ref, new = folder / "rot256.ref", folder / "rot256.new"
    if not (ref.exists() and new.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        data = os.urandom(256 * MiB)
        ref.write_bytes(data)
        new.write_bytes(data[96 * MiB :] + data[: 96 * MiB])
    return ref, new


def big_case() -> tuple[Path, Path]:
    return versioned_files(CACHE / "synthetic", 1024 * MiB, seed=1024)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    if args.worker:
        task = json.loads(args.worker)
        print(json.dumps(WORKERS[task.get("worker", "pair")](task)))
        return 0
    if shutil.which("xdelta3") is None:
        print("xdelta3 binary missing: run scripts/setup.sh", file=sys.stderr)
        return 2
    from xdelta_ffi import DEFAULT_LEVEL

    repeats = args.repeats or (1 if args.quick else 5)
    results: dict[str, Any] = {
        "repeats": repeats,
        "default_level": DEFAULT_LEVEL,
        "scratch": scratch_dir() or "the system's temp dir",
        "pairs": [],
    }

    # 1. Pairs: ours at the default level and at -9 vs the CLI at -9, interleaved.
    for label, ref, new in pair_cases(args.quick):
        runs: dict[str, list[dict[str, Any]]] = {"ours": [], "ours_default": [], "cli": []}
        for _ in range(repeats):
            runs["ours"].append(
                _run({"kind": "ours", "ref": str(ref), "new": str(new), "options": {"level": 9}})
            )
            runs["ours_default"].append(
                _run(
                    {
                        "kind": "ours",
                        "ref": str(ref),
                        "new": str(new),
                        "options": {"level": DEFAULT_LEVEL},
                    }
                )
            )
            runs["cli"].append(_run({"kind": "cli", "ref": str(ref), "new": str(new)}))
        size = new.stat().st_size
        entry: dict[str, Any] = {"case": label, "size": size}
        for name, rs in runs.items():
            assert all(r["roundtrip_ok"] for r in rs), (label, name)
            entry[name] = {
                "delta_size": rs[0]["delta_size"],
                "encode_MBps": summarize([size / r["encode_s"] / 1e6 for r in rs]),
                "decode_MBps": summarize([size / r["decode_s"] / 1e6 for r in rs]),
                "encode_peak_rss": statistics.median(r["encode_peak_rss"] for r in rs),
                "peak_rss": statistics.median(r["peak_rss"] for r in rs),
            }
        results["pairs"].append(entry)
        print(
            f"{label}: ours {entry['ours']['delta_size']} B, cli {entry['cli']['delta_size']} B",
            file=sys.stderr,
        )

    # 2. 100 KiB per-call latency.
    small_ref, small_new = versioned_files(CACHE / "synthetic", 100 * 1024, seed=100)
    lat = [
        _run(
            {
                "worker": "latency",
                "ref": str(small_ref),
                "new": str(small_new),
                "calls": 200,
                "level": 9,
            }
        )
        for _ in range(repeats)
    ]
    results["latency_100k"] = {
        "ours_ms": summarize([r["ours_s"] * 1e3 for r in lat]),
        "cli_ms": summarize([r["cli_s"] * 1e3 for r in lat]),
    }

    # 3. Two threads vs one.
    pairs = [versioned_files(CACHE / "synthetic", 64 * MiB, seed=s) for s in (64, 65)]
    thr = [
        _run(
            {
                "worker": "threads",
                "pairs": [[str(r), str(n)] for r, n in pairs],
                "level": DEFAULT_LEVEL,
            }
        )
        for _ in range(repeats)
    ]
    results["threads"] = {"speedup": summarize([r["sequential_s"] / r["parallel_s"] for r in thr])}

    # 4. Content moved by 96 MiB in a 256 MiB file.
    if not args.quick:
        ref, new = rotated_case()
        rot = _run({"kind": "ours", "ref": str(ref), "new": str(new), "options": {}})
        results["rotated_256M_by_96M"] = {
            "delta_size": rot["delta_size"],
            "encode_s": rot["encode_s"],
        }
        # 5. 1 GiB vs 1 GiB: memory.
        ref, new = big_case()
        delta = CACHE / "synthetic" / "big.delta"
        enc = _run(
            {
                "worker": "big",
                "phase": "encode",
                "ref": str(ref),
                "new": str(new),
                "delta": str(delta),
                "level": DEFAULT_LEVEL,
            }
        )
        dec = _run(
            {
                "worker": "big",
                "phase": "decode",
                "ref": str(ref),
                "new": str(new),
                "delta": str(delta),
            }
        )
        assert dec["ok"]
        results["one_gib"] = {"encode": enc, "decode": dec}
        delta.unlink(missing_ok=True)

    md = write_results("codec", results, render(results))
    print(md.read_text())
    return 0


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "n/a"


def render(r: dict[str, Any]) -> str:
    lines = [
        "## Codec: xdelta_ffi vs `xdelta3 -e -9 -s` (subprocess, temp files)",
        "",
        f"Medians of {r['repeats']} interleaved runs, each in a fresh process. "
        "Encode/decode in MB/s of target; RSS is the process peak. Both tools' temp files "
        f"(deltas, decoded outputs) on {r.get('scratch', 'disk')} (docs/codec.md says why).",
        "",
        f"| case | size | delta ours -9 | delta ours -{r['default_level']} (default) | "
        f"delta CLI -9 | encode ours -9 | encode ours -{r['default_level']} | encode CLI -9 | "
        "enc ×CLI (-9) | decode ours | decode CLI | dec ×CLI | "
        "RSS ours -9 | RSS CLI |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in r["pairs"]:
        o, o3, c = p["ours"], p["ours_default"], p["cli"]
        lines.append(
            f"| {p['case']} | {fmt_bytes(p['size'])} | {fmt_bytes(o['delta_size'])} | "
            f"{fmt_bytes(o3['delta_size'])} | {fmt_bytes(c['delta_size'])} | "
            f"{o['encode_MBps']['median']:.0f} | {o3['encode_MBps']['median']:.0f} | "
            f"{c['encode_MBps']['median']:.0f} | "
            f"{_ratio(o['encode_MBps']['median'], c['encode_MBps']['median'])} | "
            f"{o['decode_MBps']['median']:.0f} | {c['decode_MBps']['median']:.0f} | "
            f"{_ratio(o['decode_MBps']['median'], c['decode_MBps']['median'])} | "
            f"{fmt_bytes(o['peak_rss'])} | {fmt_bytes(c['peak_rss'])} |"
        )
    lat = r["latency_100k"]
    lines += [
        "",
        f"- 100 KiB per-call encode latency: ours {lat['ours_ms']['median']:.3f} ms, "
        f"CLI {lat['cli_ms']['median']:.1f} ms → "
        f"{lat['cli_ms']['median'] / lat['ours_ms']['median']:.0f}× lower.",
        f"- Two encoder threads vs one (2 × 64 MiB, level {r['default_level']}, after a warm-up "
        "round in two threads): "
        f"{r['threads']['speedup']['median']:.2f}× "
        f"(min {r['threads']['speedup']['min']:.2f}, max {r['threads']['speedup']['max']:.2f}).",
    ]
    if "rotated_256M_by_96M" in r:
        rot = r["rotated_256M_by_96M"]
        lines.append(
            f"- 256 MiB file rotated by 96 MiB: delta {fmt_bytes(rot['delta_size'])} "
            f"in {rot['encode_s']:.1f} s."
        )
    if "one_gib" in r:
        big = r["one_gib"]
        lines.append(
            f"- 1 GiB target vs 1 GiB source: encode peak RSS "
            f"{fmt_bytes(big['encode']['peak_rss'])} ({big['encode']['seconds']:.1f} s, delta "
            f"{fmt_bytes(big['encode']['delta_size'])}), decode peak RSS "
            f"{fmt_bytes(big['decode']['peak_rss'])} ({big['decode']['seconds']:.1f} s)."
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
