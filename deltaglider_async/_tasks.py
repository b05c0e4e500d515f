"""Task groups whose failures surface as the SDK's own exceptions, not as ExceptionGroup."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

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
