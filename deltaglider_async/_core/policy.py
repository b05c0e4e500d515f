"""Ratio policy: is a delta worth storing?  Pure arithmetic."""

from __future__ import annotations

import os
from collections.abc import Mapping

from .._exceptions import InvalidArgumentError

DEFAULT_MAX_RATIO = 0.5


def parse_max_ratio(value: float | str | None, env: Mapping[str, str] = os.environ) -> float:
    """The effective max ratio: explicit value, else ``DG_MAX_RATIO``, else 0.5."""
    raw: float | str | None = value if value is not None else env.get("DG_MAX_RATIO")
    if raw is None or raw == "":
        return DEFAULT_MAX_RATIO
    try:
        ratio = float(raw)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"max ratio must be a number in [0, 1], got {raw!r}") from None
    if not 0.0 <= ratio <= 1.0:
        raise InvalidArgumentError(f"max ratio must be in [0, 1], got {ratio}")
    return ratio


def delta_ratio(delta_size: int, original_size: int) -> float:
    """``delta_size / original_size`` (an empty original counts as ratio 0 when its delta is)."""
    if original_size <= 0:
        return 0.0 if delta_size == 0 else float("inf")
    return delta_size / original_size


def delta_budget(original_size: int, max_ratio: float) -> int:
    """Largest delta (bytes) still worth storing; an encoder may stop once it is exceeded."""
    return int(original_size * max_ratio)


def keep_delta(delta_size: int, original_size: int, max_ratio: float) -> bool:
    return delta_ratio(delta_size, original_size) <= max_ratio
