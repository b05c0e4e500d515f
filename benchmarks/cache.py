"""Encrypted reference cache: encode speed reading the reference from the AES-GCM cache entry
(one 256 KiB chunk decrypted per block miss) vs from the plain file, with the SDK's encoder
settings, interleaved, medians.

Run: ``python -m benchmarks.cache``.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

from ._common import CACHE, MiB, summarize, versioned_files, write_results


def _encode(source: Any, size: int, target: Path) -> float:
    from deltaglider_async._engine.codec import TABLE_MEMORY, cache_memory_for
    from xdelta_ffi import Encoder

    start = time.perf_counter()
    encoder = Encoder(
        source,
        source_size=size,
        target_size=target.stat().st_size,
        table_memory=TABLE_MEMORY,
        cache_size=cache_memory_for(size),
    )
    with target.open("rb") as src:
        for _ in encoder.iter(iter(lambda: src.read(4 * MiB), b"")):
            pass
    return time.perf_counter() - start


async def _cache_entry(cache: Any, reference: Path) -> Any:
    async def chunks() -> AsyncIterator[bytes]:
        with reference.open("rb") as src:
            while chunk := src.read(4 * MiB):
                yield chunk

    return await cache.get(hashlib.sha256(reference.read_bytes()).hexdigest(), chunks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from deltaglider_async import ReferenceCache

    sizes = [64] if args.quick else [64, 256]
    repeats = 3 if args.quick else 5
    results: dict[str, Any] = {"repeats": repeats, "cases": []}
    for size in sizes:
        ref, new = versioned_files(CACHE / "synthetic", size * MiB, seed=size)
        with tempfile.TemporaryDirectory() as tmp:
            entry = anyio.run(_cache_entry, ReferenceCache(directory=Path(tmp)), ref)
            plain, encrypted = [], []
            for _ in range(repeats):
                plain.append(_encode(ref, ref.stat().st_size, new))
                encrypted.append(_encode(entry.codec_source(), entry.size, new))
            entry.close()
        overhead = statistics.median(encrypted) / statistics.median(plain) - 1
        results["cases"].append(
            {
                "size_mib": size,
                "plain_s": summarize(plain),
                "encrypted_s": summarize(encrypted),
                "overhead": overhead,
            }
        )
        print(f"{size} MiB: encrypted cache +{overhead:.1%}", file=sys.stderr)
    md = write_results("cache", results, render(results))
    print(md.read_text())
    return 0


def render(r: dict[str, Any]) -> str:
    lines = [
        "## Encode from the encrypted reference cache vs from the plain reference file",
        "",
        f"Level 6, medians of {r['repeats']} interleaved runs in one process; seconds (min–max).",
        "",
        "| size | plain file | encrypted cache | overhead |",
        "|---|---|---|---|",
    ]
    for c in r["cases"]:
        p, e = c["plain_s"], c["encrypted_s"]
        lines.append(
            f"| {c['size_mib']} MiB | {p['median']:.3f} ({p['min']:.3f}–{p['max']:.3f}) | "
            f"{e['median']:.3f} ({e['min']:.3f}–{e['max']:.3f}) | **{c['overhead']:+.1%}** |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
