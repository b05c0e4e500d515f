"""One retry policy for every loop of ours that retries (the fast path's requests, resumed
streams, the patient abort of a multipart upload): botocore's standard-mode backoff."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import anyio


class Fallback(Exception):
    """This request must go through botocore instead."""


def backoff(attempt: int, *, base: float = 0.05, cap: float = 2.0) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): botocore's standard mode, truncated
    binary exponential backoff with full jitter (``rand(0, 1) * min(base * 2**(attempt-1),
    cap)``), on a scale that suits one hot request or one resumed stream."""
    return random.random() * min(base * float(2 ** (attempt - 1)), cap)


async def with_retries(call: Callable[[], Awaitable[Any]], attempts: int) -> Any:
    """Retry connection errors and 5xx, with :func:`backoff` between attempts."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Fallback:
            raise
        except (aiohttp.ClientError, OSError, TimeoutError):
            if attempt == attempts:
                raise
            await anyio.sleep(backoff(attempt))
    raise AssertionError("unreachable")
