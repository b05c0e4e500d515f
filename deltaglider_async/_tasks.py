"""Task groups whose failures surface as the SDK's own exceptions, not as ExceptionGroup, and
locks by key."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Hashable

import anyio
from anyio.abc import TaskGroup

from ._exceptions import DeltaGliderError


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


@contextlib.asynccontextmanager
async def task_group() -> AsyncIterator[TaskGroup]:
    """``anyio.create_task_group()`` that re-raises the most telling failure of its tasks.

    Callers catch ``DeltaGliderError`` as from any sequential call; the whole group stays
    attached as ``__cause__`` for debugging.  Groups of only cancellations or interrupts are
    left as anyio raised them.
    """
    try:
        async with anyio.create_task_group() as group:
            yield group
    except BaseExceptionGroup as failures:
        leaves = _leaves(failures)
        ours = [e for e in leaves if isinstance(e, DeltaGliderError)]
        others = [e for e in leaves if isinstance(e, Exception)]
        chosen = (ours or others or [None])[0]
        if chosen is None:
            raise
        raise chosen from failures


class RatePace:
    """At most ``rate`` starts per second on average, bursts of a tenth of a second allowed
    (S3 documents 5,500 GET/HEAD and 3,500 writes per second per prefix)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._burst = max(1.0, rate / 10) * self._interval
        self._next = 0.0

    async def wait(self) -> None:
        now = anyio.current_time()
        start = max(self._next, now - self._burst)
        self._next = start + self._interval
        if start > now:
            await anyio.sleep(start - now)


class KeyedLocks:
    """One holder at a time per key (one fetch of a reference, one expansion of it); a lock
    nobody holds or awaits is forgotten."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[anyio.Lock, int]] = {}

    def __len__(self) -> int:
        """Keys held or waited for."""
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (anyio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
