"""Shared helpers: measurements in child processes (for honest peak RSS), medians, results files."""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
CACHE = ROOT / ".cache"
MiB = 1 << 20


def scratch_dir() -> str | None:
    """Where timed runs put their temp files (deltas, decoded outputs), for every contender alike.

    tmpfs when the machine has one with room: on this VM's ext4 (mounted with ``discard``) writing
    a fresh 256 MiB file took 0.2 s or 0.9 s for the same `xdelta3 -d` depending on what the disk
    and the host's page reporting had done in the seconds before (a sleep of 5 s was enough to make
    it 0.8 s), which measured the VM rather than the codecs.  On /dev/shm the same runs took
    0.23-0.33 s, and ours 0.14-0.16 s, whatever came before.  ``DG_BENCH_SCRATCH`` overrides
    (a directory, or ``default`` for the system's temp dir).
    """
    chosen = os.environ.get("DG_BENCH_SCRATCH")
    if chosen:
        return None if chosen == "default" else chosen
    shm = "/dev/shm"
    try:
        st = os.statvfs(shm)
    except OSError:
        return None
    if os.access(shm, os.W_OK) and st.f_bavail * st.f_frsize > 4 << 30:
        return shm
    return None


def server_cpu_seconds(port: int) -> float:
    """CPU seconds used so far by the local S3 server processes listening on ``port``."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if not any(f"={port}".encode() == arg[-len(f"={port}") :] for arg in cmdline):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    t = os.times()
    return t.user + t.system


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def run_worker(
    module: str,
    payload: dict[str, Any],
    *,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 1800,
) -> dict[str, Any]:
    """One measurement in a fresh process: ``python -m module --worker JSON`` (or ``command``
    followed by the JSON); its last stdout line is the JSON answer."""
    argv = (command or [sys.executable, "-m", module, "--worker"]) + [json.dumps(payload)]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT.parent,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {module} failed:\n{proc.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return answer


def bench_client(task: dict[str, Any], cache: Any = None) -> Any:
    """Our client for a worker: endpoint and credentials from the task, nothing from the env."""
    from deltaglider_async import create_client

    env = task["env"]
    return create_client(
        task["endpoint"],
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        cache=cache,
        env={} if task.get("fast_path", True) else {"DG_FAST_PATH": "0"},
    )


def pypi_wheels(package: str, versions: list[str], folder: Path | None = None) -> list[Path]:
    """Wheels of ``package`` at ``versions``, fetched once with ``pip download``."""
    folder = folder or CACHE / "pypi" / package
    folder.mkdir(parents=True, exist_ok=True)
    wheels = []
    for version in versions:
        found = sorted(folder.glob(f"{package}-{version}-*.whl"))
        if not found:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "-q",
                    "--only-binary=:all:",
                    "-d",
                    str(folder),
                    f"{package}=={version}",
                ],
                check=True,
                capture_output=True,
            )
            found = sorted(folder.glob(f"{package}-{version}-*.whl"))
        wheels.append(found[0])
    return wheels


def self_peak_rss() -> int:
    """This process's peak RSS (VmHWM).  Not ru_maxrss: Linux carries that across exec, so a
    worker would report its parent's high-water mark."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def children_peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def summarize(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def versioned_files(directory: Path, size: int, seed: int, shift: bool = True) -> tuple[Path, Path]:
    """A synthetic release pair: scattered 64-byte edits every ~256 KiB plus a 4 KiB insertion."""
    directory.mkdir(parents=True, exist_ok=True)
    ref, new = (
        directory / f"syn-{size >> 20}M-{seed}.ref",
        directory / f"syn-{size >> 20}M-{seed}.new",
    )
    if ref.exists() and new.exists():
        return ref, new
    rng = random.Random(seed)
    source = bytearray()
    while len(source) < size:  # randbytes overflows past 256 MiB per call
        source += rng.randbytes(min(64 * MiB, size - len(source)))
    target = bytearray(source)
    for _ in range(max(1, size // (256 * 1024))):
        at = rng.randrange(len(target) - 64)
        target[at : at + 64] = rng.randbytes(64)
    if shift:
        at = rng.randrange(len(target))
        target[at:at] = rng.randbytes(4096)
    ref.write_bytes(source)
    new.write_bytes(target)
    return ref, new


def write_results(name: str, data: dict[str, Any], markdown: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine(), **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    md = RESULTS / f"{name}.md"
    md.write_text(markdown)
    return md


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
