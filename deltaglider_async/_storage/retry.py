"""One retry policy for every loop of ours that retries (the fast path's requests, resumed
streams, botocore's own attempts, the patient abort of a multipart upload): botocore's
standard-mode backoff, and at most one retry of a stall.

A stall is a request that moved no byte for a whole ``read_timeout`` (a stopped or wedged server,
a black-holed connection).  It is retried once, because a connection can die silently, but not
``max_attempts`` times: a server silent for a minute rarely answers the next try sooner, and each
try costs another ``read_timeout`` (five of them made a stopped server take five minutes to be
reported).  Errors that come back fast (5xx, resets, refused connections) keep every attempt.
"""

from __future__ import annotations

import io
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import aiohttp
import anyio
import botocore.exceptions

from .._tasks import task_group

T = TypeVar("T")

STALL_ATTEMPTS: Final = 2


class Fallback(Exception):
    """This request must go through botocore instead."""


class UploadStalled(TimeoutError):
    """The server took no byte of a request body for ``read_timeout`` seconds."""


def backoff(attempt: int, *, base: float = 0.05, cap: float = 2.0) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): botocore's standard mode, truncated
    binary exponential backoff with full jitter (``rand(0, 1) * min(base * 2**(attempt-1),
    cap)``), on a scale that suits one hot request or one resumed stream."""
    return random.random() * min(base * float(2 ** (attempt - 1)), cap)


_BOTOCORE_STALLS = (botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError)


def is_stall(exc: BaseException) -> bool:
    # botocore's timeouts derive from urllib3's TimeoutError, not the builtin one.
    return isinstance(exc, (TimeoutError, *_BOTOCORE_STALLS))


class Attempts:
    """Counts one request's failures: ``retry(exc)`` says whether another attempt is allowed."""

    def __init__(self, max_attempts: int) -> None:
        self.max_attempts = max_attempts
        self.failures = 0
        self._stalls = 0

    def retry(self, exc: BaseException) -> bool:
        self.failures += 1
        if is_stall(exc):
            self._stalls += 1
            if self._stalls >= STALL_ATTEMPTS:
                return False
        return self.failures < self.max_attempts

    def progressed(self) -> None:
        """A resumed stream moved forward: its next failure starts a fresh count."""
        self.failures = 0
        self._stalls = 0


async def with_retries(call: Callable[[], Awaitable[T]], attempts: int) -> T:
    """Retry connection errors, 5xx and (once) stalls, with :func:`backoff` between attempts."""
    counter = Attempts(attempts)
    while True:
        try:
            return await call()
        except Fallback:
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if not counter.retry(exc):
                raise
            await anyio.sleep(backoff(counter.failures))


def limit_stall_retries(attempts: int, caught_exception: BaseException | None, **_: Any) -> None:
    """botocore ``needs-retry`` hook: stop retrying a request that stalled twice (botocore's
    standard mode would give every timeout all ``max_attempts``)."""
    if caught_exception is not None and is_stall(caught_exception) and attempts >= STALL_ATTEMPTS:
        raise caught_exception


class WatchedBody(io.BytesIO):
    """A request body that remembers when it was last read: the HTTP client reads it as the
    socket takes bytes, so a body not read for ``read_timeout`` is a stalled upload (no client
    timeout covers writes)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._size = len(data)
        self.moved = time.monotonic()

    def read(self, size: int | None = -1, /) -> bytes:
        self.moved = time.monotonic()
        return super().read(size)

    @property
    def sent(self) -> bool:
        return self.tell() >= self._size


async def watch_upload(call: Callable[[], Awaitable[T]], body: WatchedBody, limit: float) -> T:
    """Run ``call`` (which sends ``body``); raise :class:`UploadStalled` once the body has not
    moved for ``limit`` seconds before it was sent whole (the answer after that is bounded by
    the read timeout)."""
    stalled = False
    result: list[T] = []
    async with task_group() as tg:

        async def watch() -> None:
            nonlocal stalled
            while True:
                await anyio.sleep(min(1.0, limit / 4))
                if not body.sent and time.monotonic() - body.moved > limit:
                    stalled = True
                    tg.cancel_scope.cancel()
                    return

        async def run() -> None:
            result.append(await call())
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        tg.start_soon(run)
    if stalled:
        raise UploadStalled(f"the server took no byte of the upload for {limit:g}s")
    return result[0]
