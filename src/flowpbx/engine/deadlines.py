"""Deadlines for awaits, kept by one watchdog task per event loop instead of a timer per await.

`asyncio.timeout` schedules and cancels a timer for every webhook, a cost paid on every step
although a store almost never hangs. Here a block only records its task's deadline (a plain
`with`, no extra coroutine); a watchdog that runs while any deadline is pending in its loop
wakes a few times a second and cancels the tasks that passed theirs, and the block raises
TimeoutError as `asyncio.timeout` would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")

TICK_SECONDS = 0.1
"""How late past its deadline an await may be cut off."""

Task = asyncio.Task[object]


class Deadlines:
    """Deadlines for blocks of code in tasks, in any number of event loops."""

    def __init__(self, tick: float = TICK_SECONDS) -> None:
        self.tick = tick
        self._pending: dict[Task, list[float]] = {}
        """Each task's deadlines, one per block it is in (innermost last)."""
        self._expired: set[Task] = set()
        self._watchdogs: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    def cut_off(self, seconds: float) -> _Guard:
        """`with deadlines.cut_off(s):` raises TimeoutError once the block has taken `s`."""
        return _Guard(self, seconds)

    async def run(self, attempt: Callable[[], Awaitable[T]], seconds: float) -> T:
        """`await attempt()`, raising TimeoutError once it has taken `seconds`."""
        with self.cut_off(seconds):
            return await attempt()

    def _enter(self, seconds: float) -> Task:
        task = asyncio.current_task()
        assert task is not None, "deadlines need a task"
        loop = task.get_loop()
        self._pending.setdefault(task, []).append(loop.time() + seconds)
        watchdog = self._watchdogs.get(loop)
        if watchdog is None or watchdog.done():
            self._watchdogs[loop] = loop.create_task(self._watch(loop))
        return task

    def _exit(self, task: Task, baseline: int, error: BaseException | None) -> None:
        deadlines = self._pending.get(task)
        if deadlines:
            deadlines.pop()
            if not deadlines:
                del self._pending[task]
        if self._expired and task in self._expired:
            self._expired.discard(task)
            # Ours alone (no cancellation pending from before or from elsewhere): a timeout,
            # as asyncio.timeout decides it.
            if task.uncancel() <= baseline and isinstance(error, asyncio.CancelledError):
                raise TimeoutError from error

    async def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while any(task.get_loop() is loop for task in list(self._pending)):
                await asyncio.sleep(self.tick)
                now = loop.time()
                for task, deadlines in list(self._pending.items()):
                    if task.get_loop() is not loop:
                        if task.get_loop().is_closed():
                            self._pending.pop(task, None)  # left behind by a closed loop
                        continue
                    if min(deadlines) <= now and task not in self._expired and not task.done():
                        self._expired.add(task)
                        task.cancel()
        finally:
            if self._watchdogs.get(loop) is asyncio.current_task():
                del self._watchdogs[loop]


class _Guard:
    """One block under a deadline (see `Deadlines.cut_off`)."""

    __slots__ = ("_baseline", "_deadlines", "_seconds", "_task")

    def __init__(self, deadlines: Deadlines, seconds: float) -> None:
        self._deadlines = deadlines
        self._seconds = seconds

    def __enter__(self) -> None:
        self._task = self._deadlines._enter(self._seconds)
        self._baseline = self._task.cancelling()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._deadlines._exit(self._task, self._baseline, error)
