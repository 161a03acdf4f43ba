"""Twilio's pace for new calls: by default one call per second per account. Calls over the
pace wait their turn (a slot reserved atomically, shared by every process through Redis);
only a call that would wait longer than the configured limit is refused, before anything is
placed."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Slot:
    """`delay` seconds until the call may be placed; when refused, `retry_after` seconds."""

    delay: float
    refused: bool = False
    retry_after: float = 0.0


class Pacer(Protocol):
    async def reserve(self, account: str, interval: float, max_wait: float) -> Slot:
        """Reserve the next free slot `interval` seconds after the last, unless it is more
        than `max_wait` seconds away."""
        ...

    async def aclose(self) -> None: ...


@dataclass
class MemoryPacer:
    """The pace within this one process (the embedded default, without Redis)."""

    _next: dict[str, float] = field(default_factory=dict)

    async def reserve(self, account: str, interval: float, max_wait: float) -> Slot:
        # No await between reading and writing the slot: atomic within the event loop.
        now = time.monotonic()
        slot = max(now, self._next.get(account, 0.0))
        if slot - now > max_wait:
            return Slot(delay=0.0, refused=True, retry_after=slot - now - max_wait)
        self._next[account] = slot + interval
        return Slot(delay=slot - now)

    async def aclose(self) -> None:
        return None


async def wait_for(slot: Slot) -> None:
    if slot.delay > 0:
        await asyncio.sleep(slot.delay)
