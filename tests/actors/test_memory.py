"""The worker's memory budget: items wait while the process is near it, and one always runs."""

from __future__ import annotations

import asyncio

from actors.memory import ITEM_OVERHEAD_BYTES, MemoryBudget

MB = 1024 * 1024


def test_given_room_in_the_budget_when_items_reserve_then_they_are_admitted_until_it_is_full():
    async def scenario() -> list[str]:
        budget = MemoryBudget(budget_bytes=100 * MB, rss=lambda: 10 * MB)
        events: list[str] = []
        release = asyncio.Event()

        async def item(name: str) -> None:
            async with budget.reserve(40 * MB - ITEM_OVERHEAD_BYTES):
                events.append(f"start {name}")
                await release.wait()
            events.append(f"end {name}")

        tasks = [asyncio.create_task(item(name)) for name in ("a", "b", "c")]
        await asyncio.sleep(0.2)
        assert events == ["start a", "start b"]  # 10 + 40 + 40 fits; a third would not
        release.set()
        await asyncio.gather(*tasks)
        return events

    events = asyncio.run(scenario())
    assert events.index("start c") > events.index("end a")


def test_given_a_process_already_over_its_budget_when_nothing_runs_then_one_item_still_runs():
    async def scenario() -> int:
        budget = MemoryBudget(budget_bytes=100 * MB, rss=lambda: 500 * MB)
        async with budget.reserve(1 * MB):
            return budget.holders

    assert asyncio.run(scenario()) == 1


def test_given_resident_memory_over_the_budget_when_an_item_runs_then_the_next_waits_for_it():
    async def scenario() -> list[str]:
        resident = {"bytes": 50 * MB}
        budget = MemoryBudget(budget_bytes=100 * MB, rss=lambda: resident["bytes"])
        events: list[str] = []

        async def first() -> None:
            async with budget.reserve(MB):
                resident["bytes"] = 150 * MB  # it allocated far more than it reserved
                events.append("first runs")
                await asyncio.sleep(0.2)
                resident["bytes"] = 50 * MB
            events.append("first ends")

        async def second() -> None:
            await asyncio.sleep(0.05)
            async with budget.reserve(MB):
                events.append("second runs")

        await asyncio.gather(first(), second())
        return events

    assert asyncio.run(scenario()) == ["first runs", "first ends", "second runs"]
