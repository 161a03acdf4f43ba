"""Deadlines for awaits, kept by one watchdog task instead of a timer per await.

`asyncio.timeout` schedules and cancels a timer for every webhook, a cost paid on every step
although a store almost never hangs. Here a block only records its task's deadline (a plain
`with`, no extra coroutine); a watchdog that runs while any deadline is pending wakes a few
times a second and cancels the tasks that passed theirs, and the block raises TimeoutError as
`asyncio.timeout` would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")

TICK_SECONDS = 0.1
"""How late past its deadline an await may be cut off."""


class Deadlines:
    """Deadlines for blocks of code in tasks; one watchdog per event loop that uses them."""

    def __init__(self, tick: float = TICK_SECONDS) -> None:
        self.tick = tick
        self._pending: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._watchdog: asyncio.Task[None] | None = None

    def cut_off(self, seconds: float) -> _Guard:
        """`with deadlines.cut_off(s):` raises TimeoutError once the block has taken `s`."""
        return _Guard(self, seconds)

    async def run(self, attempt: Callable[[], Awaitable[T]], seconds: float) -> T:
        """`await attempt()`, raising TimeoutError once it has taken `seconds`."""
        with self.cut_off(seconds):
            return await attempt()

    def _enter(self, seconds: float) -> asyncio.Task[object]:
        task = asyncio.current_task()
        assert task is not None, "deadlines need a task"
        loop = task.get_loop()
        self._pending[task] = loop.time() + seconds
        watchdog = self._watchdog
        if watchdog is None or watchdog.done() or watchdog.get_loop() is not loop:
            self._watchdog = loop.create_task(self._watch())
        return task

    def _exit(self, task: asyncio.Task[object], error: BaseException | None) -> None:
        self._pending.pop(task, None)
        if self._expired and task in self._expired:
            self._expired.discard(task)
            # Ours alone (no other cancellation pending): a timeout, as asyncio.timeout says.
            if task.uncancel() == 0 and isinstance(error, asyncio.CancelledError):
                raise TimeoutError from error

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


class _Guard:
    """One block under a deadline (see `Deadlines.cut_off`)."""

    __slots__ = ("_deadlines", "_seconds", "_task")

    def __init__(self, deadlines: Deadlines, seconds: float) -> None:
        self._deadlines = deadlines
        self._seconds = seconds

    def __enter__(self) -> None:
        self._task = self._deadlines._enter(self._seconds)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._deadlines._exit(self._task, error)
