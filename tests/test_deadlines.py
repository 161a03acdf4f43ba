"""Deadlines kept by one watchdog: late awaits time out, others are left alone."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest

from flowpbx.engine.deadlines import Deadlines


async def _slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


def test_deadline_cuts_off_a_late_await() -> None:
    """An await still running at its deadline raises TimeoutError, within a tick of it."""
    deadlines = Deadlines(tick=0.02)

    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await deadlines.run(lambda: _slow(5), 0.1)
        return time.monotonic() - started

    assert 0.1 <= asyncio.run(main()) < 0.5


def test_deadline_leaves_a_quick_await_and_the_task_alone() -> None:
    """An await that finishes in time returns its value, and the task is not cancelled later."""
    deadlines = Deadlines(tick=0.02)

    async def main() -> tuple[str, str]:
        first = await deadlines.run(lambda: _slow(0.01), 0.1)
        # Long after the deadline, the same task awaits again: nothing cancels it.
        second = await _slow(0.2)
        return first, second

    assert asyncio.run(main()) == ("done", "done")


def test_deadline_keeps_other_cancellations() -> None:
    """A task cancelled by someone else gets CancelledError, not a timeout."""
    deadlines = Deadlines(tick=0.02)

    async def main() -> None:
        task = asyncio.ensure_future(deadlines.run(lambda: _slow(5), 10))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_deadlines_serve_many_awaits_and_event_loops() -> None:
    """Concurrent awaits each get their own deadline, in one event loop after another."""
    deadlines = Deadlines(tick=0.02)

    async def one(seconds: float) -> str:
        try:
            return await deadlines.run(lambda: _slow(seconds), 0.15)
        except TimeoutError:
            return "timeout"

    async def main() -> list[str]:
        return list(await asyncio.gather(one(0.01), one(1), one(0.05), one(2)))

    for _ in range(2):
        assert asyncio.run(main()) == ["done", "timeout", "done", "timeout"]


def test_deadline_of_an_outer_block_holds_inside_a_longer_inner_one() -> None:
    """A block inside another is cut off at the earlier of the two deadlines."""
    deadlines = Deadlines(tick=0.02)

    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError), deadlines.cut_off(0.1), deadlines.cut_off(5):
            await _slow(2)
        return time.monotonic() - started

    assert asyncio.run(main()) < 0.5


def test_deadlines_in_two_event_loops_at_once() -> None:
    """Two event loops (two threads) sharing one Deadlines each get their deadlines kept."""
    deadlines = Deadlines(tick=0.02)
    results: dict[str, str] = {}

    def loop(name: str) -> None:
        async def main() -> str:
            try:
                return await deadlines.run(lambda: _slow(1.5), 0.2)
            except TimeoutError:
                return "timeout"

        results[name] = asyncio.run(main())

    threads = [threading.Thread(target=loop, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {"a": "timeout", "b": "timeout"}


def test_deadline_is_a_timeout_even_with_an_earlier_cancellation_pending() -> None:
    """As with asyncio.timeout, the deadline is a TimeoutError although the task had been
    cancelled once before (and took it back) entering the block."""
    deadlines = Deadlines(tick=0.02)

    async def main() -> str:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)
        try:
            await deadlines.run(lambda: _slow(2), 0.1)
        except TimeoutError:
            return "timeout"
        return "no timeout"

    assert asyncio.run(main()) == "timeout"
