"""Deadlines for awaits, kept by one watchdog task instead of a timer per await.

`asyncio.timeout` schedules and cancels a timer for every webhook, a cost paid on every step
although a store almost never hangs. Here each await only records its deadline; a watchdog
that runs while any deadline is pending wakes a few times a second and cancels the awaits that
passed theirs, which then raise TimeoutError as `asyncio.timeout` would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

TICK_SECONDS = 0.1
"""How late past its deadline an await may be cut off."""


class Deadlines:
    """Runs awaits with a deadline each; one per event loop that uses it."""

    def __init__(self, tick: float = TICK_SECONDS) -> None:
        self.tick = tick
        self._pending: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._watchdog: asyncio.Task[None] | None = None

    async def run(self, attempt: Callable[[], Awaitable[T]], seconds: float) -> T:
        """`await attempt()`, raising TimeoutError once it has taken `seconds`."""
        task = asyncio.current_task()
        assert task is not None, "deadlines need a task"
        loop = asyncio.get_running_loop()
        self._pending[task] = loop.time() + seconds
        watchdog = self._watchdog
        if watchdog is None or watchdog.done() or watchdog.get_loop() is not loop:
            self._watchdog = loop.create_task(self._watch())
        try:
            return await attempt()
        except asyncio.CancelledError:
            if task in self._expired:
                self._expired.discard(task)
                # Ours alone (no other cancellation pending): a timeout, as asyncio.timeout says.
                if task.uncancel() == 0:
                    raise TimeoutError from None
            raise
        finally:
            self._pending.pop(task, None)
            self._expired.discard(task)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            await asyncio.sleep(self.tick)
            now = loop.time()
            for task, deadline in list(self._pending.items()):
                if task.get_loop() is not loop:
                    del self._pending[task]  # left behind by an event loop that has closed
                elif deadline <= now and task not in self._expired and not task.done():
                    self._expired.add(task)
                    task.cancel()
