"""aws-cli style --exclude/--include filters: applied in command-line order, later wins."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

FilterKind = Literal["exclude", "include"]


@dataclass(frozen=True)
class PathFilter:
    kind: FilterKind
    pattern: str


def is_included(relative_path: str, filters: Sequence[PathFilter]) -> bool:
    """Everything is included unless a filter matches; the last matching filter decides."""
    included = True
    for item in filters:
        if fnmatch.fnmatchcase(relative_path, item.pattern):
            included = item.kind == "include"
    return included
