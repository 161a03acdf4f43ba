"""The scheduler: in every flowpbx process, a loop that offers waiting callers to free agents.

No process is the master. Each round, a process takes each queue's lock in the queue store
(a short lease with its own token); the holder matches that queue's first places with free
agents while the others skip it. Reservations are atomic, so even without the lock no agent
could be held twice and no place claimed twice: the lock keeps processes from racing for
the same caller, and lets a stopped process's queues go on after the lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field

from flowpbx.engine.storage import StoreUnavailable
from flowpbx.queues.engine import QueueEngine

log = logging.getLogger("flowpbx.queues")

DEFAULT_TICK = 0.25
"""Seconds between rounds when nothing wakes the scheduler earlier."""
LOCK_SECONDS = 10.0
"""A queue's lock lapses this long after a process that held it stopped."""
QUIET_SECONDS = 60.0
"""A store that stays down is reported once per this many seconds."""


@dataclass
class QueueScheduler:
    engine: QueueEngine
    tick: float = DEFAULT_TICK
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    _last_outage: float = 0.0

    async def round(self) -> int:
        """One round over every queue: lapsed reservations go, then offers. How many offers."""
        await self.engine.sweep()
        made = 0
        store = self.engine.store
        for spec in list(self.engine.queues().values()):
            if not await store.lock(spec.name, self.token, LOCK_SECONDS):
                continue
            try:
                made += await self.engine.match(spec)
            finally:
                with contextlib.suppress(StoreUnavailable):
                    await store.unlock(spec.name, self.token)
        return made

    async def run_forever(self) -> None:
        """Rounds until cancelled: every `tick`, or at once when the engine is woken (a
        caller joined, an agent became free). A failing round is logged and tried again."""
        woken = self.engine.woken
        while True:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # Asked to stop, but a Redis call swallowed the cancellation (Python 3.11's
                # asyncio.wait_for, under every redis-py send, can): stop all the same.
                raise asyncio.CancelledError
            woken.clear()
            try:
                await self.round()
            except StoreUnavailable as exc:
                now = time.monotonic()
                if now - self._last_outage > QUIET_SECONDS:
                    self._last_outage = now
                    log.warning("queue scheduler: the queue store is down (%s); callers wait", exc)
            except Exception:
                log.exception("queue scheduler: a round failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), self.tick)
