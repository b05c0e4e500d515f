"""Work split into batches of whole delta spaces, for a cluster (pure).

A space is never split: its reference election, and the order in which its first object goes
before the others, stay inside one task.  Batches are few enough that the scheduler's cost per
task stays small against the work (thousands of tiny spaces share one task), and many enough
that every worker stays busy to the end: spaces go largest first into the lightest batch
(longest-processing-time packing), so one huge space is a batch of its own while small ones
fill the gaps.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")

#: What one object costs beyond its bytes (requests, a decode, an encode), in bytes of work.
OBJECT_OVERHEAD = 256 * 1024


def batch_by_space(
    items: Sequence[T],
    space: Callable[[T], Hashable],
    size: Callable[[T], int],
    *,
    batches: int,
    min_batch_work: int = 64 * 1024 * 1024,
) -> list[list[T]]:
    """``items`` in at most ``batches`` lists, whole spaces each, heaviest list first.

    Fewer lists are made when the work is small: each should carry at least ``min_batch_work``
    (bytes plus :data:`OBJECT_OVERHEAD` per object), as one task costs the scheduler about a
    millisecond and its worker a round trip.  Items keep their given order inside a space."""
    if batches < 1:
        raise ValueError("batches must be at least 1")
    spaces: dict[Hashable, list[T]] = {}
    for item in items:
        spaces.setdefault(space(item), []).append(item)
    work = {name: sum(size(i) + OBJECT_OVERHEAD for i in group) for name, group in spaces.items()}
    total = sum(work.values())
    wanted = min(len(spaces), batches, max(1, -(-total // max(1, min_batch_work))))
    heap: list[tuple[int, int, list[T]]] = [(0, n, []) for n in range(wanted)]
    for name in sorted(spaces, key=lambda s: -work[s]):
        load, n, batch = heapq.heappop(heap)
        batch.extend(spaces[name])
        heapq.heappush(heap, (load + work[name], n, batch))
    return [batch for _, _, batch in sorted(heap, key=lambda e: (-e[0], e[1])) if batch]
