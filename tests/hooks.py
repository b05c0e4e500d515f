"""Deterministic interleavings: hold one storage call of a client until the test lets it go.

Integration tests still talk to a real server; only the *timing* of one request is controlled,
so that a race that happens one time in ten under load happens every time here.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio

from deltaglider_async import AsyncDeltaGliderClient


class Gate:
    """``reached`` is set when the held call arrives; it proceeds once ``release`` is set."""

    def __init__(self) -> None:
        self.reached = anyio.Event()
        self.release = anyio.Event()
        self.hits = 0

    async def wait_reached(self) -> None:
        with anyio.fail_after(30):
            await self.reached.wait()


def hold(
    client: AsyncDeltaGliderClient,
    method: str,
    when: Callable[..., bool],
    gate: Gate,
    *,
    after: bool = False,
) -> None:
    """Hold the first call of ``client``'s storage ``method`` for which ``when(*args)`` is true,
    before it is sent (or, with ``after``, once it has completed)."""
    storage: Any = client._storage
    original = getattr(storage, method)

    async def held(*args: Any, **kwargs: Any) -> Any:
        if gate.hits or not when(*args, **kwargs):
            return await original(*args, **kwargs)
        gate.hits += 1
        if not after:
            gate.reached.set()
            await gate.release.wait()
            return await original(*args, **kwargs)
        result = await original(*args, **kwargs)
        gate.reached.set()
        await gate.release.wait()
        return result

    setattr(storage, method, held)


def key_is(key: str) -> Callable[..., bool]:
    """A ``when`` for storage calls whose arguments are ``(bucket, key, ...)``."""
    return lambda *args, **kwargs: len(args) > 1 and args[1] == key


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "2m") -> Iterator[Path]:
    """A tiny real filesystem (tmpfs) at ``path``: the suite runs as root, as CI does."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise RuntimeError("mounting a small tmpfs needs root (the suite and CI run as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
