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


def ordered_filters(argv: Sequence[str]) -> list[PathFilter]:
    """Recover the relative order of --exclude/--include from raw arguments.

    Typer collects each repeatable option into its own list, which loses the interleaving that
    aws semantics depend on; both ``--exclude P`` and ``--exclude=P`` forms are understood.
    """
    filters: list[PathFilter] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            break
        for kind in ("exclude", "include"):
            flag = f"--{kind}"
            if token == flag and i + 1 < len(argv):
                filters.append(PathFilter(kind, argv[i + 1]))
                i += 1
            elif token.startswith(flag + "="):
                filters.append(PathFilter(kind, token[len(flag) + 1 :]))
        i += 1
    return filters


def is_included(relative_path: str, filters: Sequence[PathFilter]) -> bool:
    """Everything is included unless a filter matches; the last matching filter decides."""
    included = True
    for item in filters:
        if fnmatch.fnmatchcase(relative_path, item.pattern):
            included = item.kind == "include"
    return included
