"""The process memory budget: reservations wait their turn, in order, and never exceed it."""

from __future__ import annotations

import anyio
import pytest

from deltaglider_async import InvalidArgumentError, MemoryLimitError
from deltaglider_async._engine.codec import encoder_plan
from deltaglider_async._engine.memory import MemoryBudget, parse_limit

MiB = 1 << 20


async def test_work_that_does_not_fit_waits_and_the_budget_is_never_exceeded() -> None:
    budget = MemoryBudget(100 * MiB)
    order: list[int] = []

    async def job(i: int, need: int) -> None:
        async with budget.reserve(need, f"job {i}"):
            assert budget.in_use <= budget.limit
            order.append(i)
            await anyio.sleep(0.02)

    async with anyio.create_task_group() as tg:
        for i, need in enumerate([60, 60, 10, 90, 30]):
            tg.start_soon(job, i, need * MiB)
            await anyio.sleep(0.001)
    assert budget.peak <= budget.limit
    assert order == [0, 1, 2, 3, 4]  # first come, first served: 2 does not overtake 1
    assert budget.in_use == 0


async def test_a_need_larger_than_the_budget_names_the_knob() -> None:
    budget = MemoryBudget(64 * MiB)
    with pytest.raises(MemoryLimitError, match="DG_MEMORY_LIMIT"):
        async with budget.reserve(65 * MiB, "encoding big.zip"):
            pass


async def test_a_cancelled_waiter_gives_its_turn_back() -> None:
    budget = MemoryBudget(100 * MiB)
    got: list[str] = []
    async with budget.reserve(80 * MiB, "holder"):
        with anyio.move_on_after(0.05):
            async with budget.reserve(50 * MiB, "cancelled"):
                got.append("cancelled")
        async with anyio.create_task_group() as tg:

            async def small() -> None:
                async with budget.reserve(20 * MiB, "small"):
                    got.append("small")

            tg.start_soon(small)
    assert got == ["small"]
    assert budget.in_use == 0


def test_limits_parse_with_units_and_refuse_nonsense() -> None:
    assert parse_limit("512M") == 512 * MiB
    assert parse_limit("1g") == 1 << 30
    assert parse_limit("1.5GiB") == 3 << 29
    assert parse_limit(str(200 * MiB)) == 200 * MiB
    for bad in ("lots", "100M", "-1G", ""):
        with pytest.raises(InvalidArgumentError, match="DG_MEMORY_LIMIT"):
            parse_limit(bad)


def test_encoders_shrink_their_tables_to_fit_a_small_budget() -> None:
    roomy = encoder_plan(1 << 30, 512 * MiB)
    tight = encoder_plan(1 << 30, 128 * MiB)
    assert roomy.need <= 512 * MiB
    assert tight.need <= 128 * MiB
    assert tight.table_memory < roomy.table_memory
    assert encoder_plan(1 << 20, 128 * MiB).need <= 128 * MiB
    assert encoder_plan(1 << 30, 128 * MiB).need <= 128 * MiB


async def test_the_budget_counts_the_process_up_to_a_quarter_of_it() -> None:
    small_process = MemoryBudget(256 * MiB, process=50 * MiB)
    assert small_process.room == 206 * MiB
    big_service = MemoryBudget(256 * MiB, process=2048 * MiB)
    assert big_service.room == 192 * MiB  # most of a big service is not ours to count
    with pytest.raises(MemoryLimitError, match=r"206 MiB the memory budget of 256 MiB"):
        async with small_process.reserve(210 * MiB, "encoding big.zip"):
            pass
    async with small_process.reserve(206 * MiB, "encoding fits.zip"):
        assert small_process.in_use == small_process.room
    measured = MemoryBudget(512 * MiB, process=None)
    assert 0 < measured.process_share <= 128 * MiB  # this test process's own resident size


def test_a_tight_encoder_shrinks_the_larger_of_its_table_and_cache() -> None:
    default = encoder_plan(256 * MiB, 512 * MiB)
    assert (default.table_memory, default.cache_size) == (128 * MiB, 256 * MiB)
    for source in (256 * MiB, 1 << 30):
        for room in (256, 192):
            plan = encoder_plan(source, room * MiB)
            assert plan.need <= room * MiB
            # Neither is starved for the other: a 32 MiB table made a 1 GiB put 1.5x slower.
            assert plan.table_memory >= 64 * MiB, (source, room)
            assert plan.cache_size >= 64 * MiB, (source, room)
        assert encoder_plan(source, 192 * MiB).need == 192 * MiB  # the cache takes what is left


def test_an_in_memory_source_needs_no_block_cache_and_a_table_half_its_size() -> None:
    plan = encoder_plan(79 * MiB, 512 * MiB, in_memory=True)
    assert (plan.table_memory, plan.cache_size) == (32 * MiB, 0)
    assert plan.need < encoder_plan(79 * MiB, 512 * MiB).need - 96 * MiB
    assert encoder_plan(5 * MiB, 512 * MiB, in_memory=True).table_memory == 32 * MiB
    assert encoder_plan(150 * MiB, 512 * MiB, in_memory=True).table_memory == 64 * MiB
    assert encoder_plan(600 * MiB, 512 * MiB, in_memory=True).table_memory == 128 * MiB
