"""The process's memory budget: the big buffers of every client draw from one pool of bytes.

Consumers reserve before they allocate and give back when they free: encoders (hash tables, the
source block cache and windows), decoders, multipart part buffers.  Work that does not fit waits,
first come first served, so a service with many concurrent requests holds its peak instead of
multiplying it; a single need larger than the budget's room is an error that names the knob.
The budget also counts the process it runs in (the interpreter and libraries, as resident at
its first reservation, up to a quarter of the budget), so that it bounds what the process
holds rather than what it adds.  The codec's pool of freed mappings (which still counts as
resident memory) is capped to an eighth of the budget.  See docs/configuration.md ("Memory")
for the formula.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Final

import anyio

import xdelta_ffi

from .._exceptions import InvalidArgumentError, MemoryLimitError

MiB: Final = 1 << 20
DEFAULT_LIMIT: Final = 512 * MiB
#: Below this the codec alone cannot work (its smallest tables, windows and block cache).
MINIMUM_LIMIT: Final = 128 * MiB
_POOL_SHARE: Final = 8
#: the process's own share is counted up to this fraction of the budget (in a big service
#: most of what it holds is not ours to count)
_PROCESS_SHARE: Final = 4


def parse_limit(text: str) -> int:
    """``DG_MEMORY_LIMIT``: bytes, or a number with K/M/G (KiB, MiB, GiB), e.g. ``512M``."""
    raw = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(raw[-1:], 1)
    try:
        value = int(float(raw[:-1] if scale > 1 else raw) * scale)
    except ValueError:
        value = -1
    if value < MINIMUM_LIMIT:
        raise InvalidArgumentError(
            f"DG_MEMORY_LIMIT={text!r}: give bytes or a size like 512M, at least "
            f"{MINIMUM_LIMIT >> 20}M"
        )
    return value


class MemoryBudget:
    """Bytes that reservations may hold at once; waiting reservations are served in order.

    ``process`` is what the process holds besides reservations (None: its resident size at the
    first reservation, once its client is open): reservations get ``room``, the limit less
    that, up to a quarter of the limit.
    """

    def __init__(self, limit: int, process: int | None = 0) -> None:
        self._process = process
        self.limit = limit
        self.in_use = 0
        self.peak = 0
        self._waiting: deque[tuple[int, anyio.Event]] = deque()

    @property
    def process_share(self) -> int:
        if self._process is None:
            self._process = _resident()
        return min(self._process, self.limit // _PROCESS_SHARE)

    @property
    def room(self) -> int:
        """What reservations may hold at once."""
        return self.limit - self.process_share

    def set_limit(self, limit: int) -> None:
        self.limit = limit
        xdelta_ffi.set_pool_limit(limit // _POOL_SHARE)
        self._wake()

    @contextlib.asynccontextmanager
    async def reserve(self, need: int, what: str) -> AsyncIterator[None]:
        """Hold ``need`` bytes for the body of the ``async with``; waits while they do not fit."""
        if need > self.room:
            raise MemoryLimitError(
                f"{what} needs {need / MiB:.0f} MiB, more than the {self.room / MiB:.0f} MiB "
                f"the memory budget of {self.limit / MiB:.0f} MiB leaves beside the process "
                f"itself: raise memory_limit (DG_MEMORY_LIMIT)"
            )
        if self._waiting or self.in_use + need > self.room:
            turn = (need, anyio.Event())
            self._waiting.append(turn)
            try:
                await turn[1].wait()
            except BaseException:
                if turn in self._waiting:
                    self._waiting.remove(turn)
                else:  # granted while being cancelled: give it back
                    self.in_use -= need
                    self._wake()
                raise
        else:
            self.in_use += need
        self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            self.in_use -= need
            if self._waiting and need >= _TRIM_AFTER and _malloc_trim is not None:
                # Others wait for room: give back what glibc keeps of the freed buffers
                # (unused, yet resident), without which they would not really have it.
                _malloc_trim(0)
            self._wake()

    def _wake(self) -> None:
        while self._waiting and self.in_use + self._waiting[0][0] <= self.room:
            need, event = self._waiting.popleft()
            self.in_use += need
            event.set()


_process_budget: MemoryBudget | None = None
_asked: dict[int, int] = {}
#: glibc's malloc_trim, once the allocator is tuned; None elsewhere
_malloc_trim: Callable[[int], int] | None = None
#: a released reservation this large trims the heap when others wait
_TRIM_AFTER: Final = 64 * MiB
_M_ARENA_MAX: Final = -8  # glibc's mallopt parameter
#: malloc arenas the process may use (glibc's default: 8 per core)
ARENAS: Final = 2


def _tune_malloc() -> None:
    """Keep glibc to a few malloc arenas.

    By default a freed 4 MiB buffer (a file chunk, a part) raises the mmap threshold, so later
    ones come from per-thread arenas, each keeping its own free buffers: with 50 concurrent small
    puts the process held 470 MiB more than its open client did.  Two arenas share and reuse
    those buffers (the same peak RSS as a 1 MiB mmap threshold, which this replaced: mapping every
    buffer afresh made a 64 MiB delta get take 0.32 s instead of 0.18 s, page faults mostly).
    ``DG_MALLOC_TUNING=0`` leaves the allocator alone.
    """
    if os.environ.get("DG_MALLOC_TUNING", "1").strip() in ("0", "false", "no", "off"):
        return
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return  # not glibc (musl, macOS): nothing to tune
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(_M_ARENA_MAX, ARENAS)
    global _malloc_trim
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        _malloc_trim = trim


def _resident() -> int:
    """The process's resident size now (0 where /proc is not there to say)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def process_budget() -> MemoryBudget:
    """The process's one budget."""
    global _process_budget
    if _process_budget is None:
        _tune_malloc()
        _process_budget = MemoryBudget(DEFAULT_LIMIT, process=None)
    return _process_budget


def ask_limit(limit: int) -> None:
    """An opened client asks for ``limit``: the budget is the smallest limit any open client
    asked for (clients of one process share it, so the strictest reading is the safe one)."""
    _asked[limit] = _asked.get(limit, 0) + 1
    process_budget().set_limit(min(_asked))


def drop_limit(limit: int) -> None:
    """That client closed."""
    left = _asked.get(limit, 0) - 1
    if left > 0:
        _asked[limit] = left
    else:
        _asked.pop(limit, None)
    if _asked:
        process_budget().set_limit(min(_asked))
