"""Call state in this process: for one process only (no Redis configured) and for tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from flowpbx.engine.state import CallState


class MemoryCallStore:
    """A dict of JSON call states with expiry, behaving like the Redis store."""

    def __init__(self, ttl: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._calls: dict[str, tuple[int, str, float]] = {}

    async def get(self, call_sid: str) -> tuple[CallState | None, int]:
        entry = self._calls.get(call_sid)
        if entry is None or entry[2] <= self.clock():
            self._calls.pop(call_sid, None)
            return None, 0
        return CallState.from_json(entry[1]), entry[0]

    async def put(self, state: CallState, revision: int) -> bool:
        # No await between the check and the write: atomic within the event loop.
        entry = self._calls.get(state.call_sid)
        current = entry[0] if entry and entry[2] > self.clock() else 0
        if current != revision:
            return False
        self._calls[state.call_sid] = (revision + 1, state.to_json(), self.clock() + self.ttl)
        self._evict()
        return True

    def _evict(self) -> None:
        if len(self._calls) % 1024 == 0:
            now = self.clock()
            for sid in [sid for sid, (_, _, expiry) in self._calls.items() if expiry <= now]:
                del self._calls[sid]

    def recent(self, call_sid: str) -> tuple[CallState, int] | None:  # noqa: ARG002
        return None  # reading is free here

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._calls.clear()
