"""Batching work by delta space for a cluster: spaces whole, batches balanced and few."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deltaglider_async._core.partition import OBJECT_OVERHEAD, batch_by_space

MiB = 1024 * 1024


def _batches(items: list[tuple[str, int]], **kw: int) -> list[list[tuple[str, int]]]:
    return batch_by_space(items, lambda i: i[0], lambda i: i[1], **kw)


@given(
    st.lists(st.tuples(st.sampled_from("abcdefghij"), st.integers(0, 50 * MiB)), max_size=60),
    st.integers(1, 12),
)
def test_every_item_once_and_no_space_split(items: list[tuple[str, int]], batches: int) -> None:
    found = _batches(items, batches=batches, min_batch_work=MiB)
    assert sorted(i for b in found for i in b) == sorted(items)
    assert len(found) <= batches
    owner = {}
    for n, batch in enumerate(found):
        for space, _ in batch:
            assert owner.setdefault(space, n) == n, f"space {space} split"
    for batch in found:  # the given order inside each space is kept
        for space in {s for s, _ in batch}:
            mine = [i for i in batch if i[0] == space]
            assert mine == [i for i in items if i[0] == space]


def test_small_work_makes_few_tasks_and_large_work_fills_the_workers() -> None:
    tiny = [(f"s{n}", 1000) for n in range(100)]
    few = _batches(tiny, batches=8, min_batch_work=8 * MiB)
    work = 100 * (1000 + OBJECT_OVERHEAD)
    assert len(few) == -(-work // (8 * MiB)) == 4
    assert max(len(b) for b in few) - min(len(b) for b in few) <= 1
    big = [(f"s{n}", 100 * MiB) for n in range(32)]
    assert [len(b) for b in _batches(big, batches=8, min_batch_work=MiB)] == [4] * 8


def test_one_huge_space_is_a_batch_of_its_own() -> None:
    items = [("huge", 500 * MiB)] + [(f"s{n}", 10 * MiB) for n in range(30)]
    found = _batches(items, batches=4, min_batch_work=MiB)
    assert found[0] == [("huge", 500 * MiB)]
    loads = [sum(size for _, size in b) for b in found[1:]]
    assert max(loads) - min(loads) <= 10 * MiB + OBJECT_OVERHEAD


def test_nothing_to_do_and_bad_counts() -> None:
    assert _batches([], batches=4) == []
    with pytest.raises(ValueError):
        _batches([("a", 1)], batches=0)
