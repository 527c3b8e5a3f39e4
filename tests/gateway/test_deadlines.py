"""The coarse deadlines the accept path keeps for request bodies (``gateway/deadlines.py``): they fire
like ``asyncio.timeout`` (within one resolution after they are due), never swallow a cancellation
from elsewhere, and keep no timer running once nothing is watched."""

from __future__ import annotations

import asyncio
import time

import pytest

from trackgate.gateway.deadlines import Deadlines


def test_a_block_that_overstays_ends_in_timeout_error_within_one_resolution():
    deadlines = Deadlines(0.05)

    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError), deadlines.within(0.1):
            await asyncio.sleep(5)
        return time.monotonic() - started

    took = asyncio.run(main())
    assert 0.1 <= took < 0.5


def test_blocks_that_finish_in_time_are_untouched_and_the_timer_stops():
    deadlines = Deadlines(0.02)

    async def main() -> None:
        async def one(i: int) -> int:
            with deadlines.within(0.5):
                await asyncio.sleep(0.01 * (i % 3))
            await asyncio.sleep(0.06)  # past a sweep: a finished block is not cancelled afterwards
            return i

        assert await asyncio.gather(*(one(i) for i in range(50))) == list(range(50))
        await asyncio.sleep(0.05)
        assert deadlines._timer is None and not deadlines._watched

    asyncio.run(main())


def test_only_the_late_ones_of_many_are_cut_off():
    deadlines = Deadlines(0.02)

    async def main() -> list[str]:
        async def one(wait: float) -> str:
            try:
                with deadlines.within(0.1):
                    await asyncio.sleep(wait)
            except TimeoutError:
                return "timeout"
            return "ok"

        return await asyncio.gather(*(one(0.01 if i % 2 else 1.0) for i in range(10)))

    assert asyncio.run(main()) == ["timeout", "ok"] * 5


def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    deadlines = Deadlines(0.02)

    async def main() -> None:
        async def victim() -> None:
            with deadlines.within(10):
                await asyncio.sleep(5)

        task = asyncio.create_task(victim())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_one_instance_serves_one_loop_after_another():
    deadlines = Deadlines(0.02)

    async def late() -> None:
        with pytest.raises(TimeoutError), deadlines.within(0.05):
            await asyncio.sleep(5)

    async def abandoned() -> None:  # leaves its loop with a timer scheduled
        with deadlines.within(5):
            await asyncio.sleep(0)

    asyncio.run(abandoned())
    asyncio.run(late())
    asyncio.run(late())
