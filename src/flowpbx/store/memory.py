"""Call state in this process: for one process only (no Redis configured) and for tests.

It behaves like the Redis store, JSON included, and keeps each step's call events in a
bounded list in the order they were saved.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from flowpbx.engine.call_events import StepRecord
from flowpbx.engine.state import CallState, StateError
from flowpbx.engine.storage import CorruptState, StoredCall

DEFAULT_RECORDS = 100_000


@dataclass(slots=True)
class _Entry:
    revision: int
    state: str
    reply: str
    first: str
    expires: float


class MemoryCallStore:
    """A dict of JSON call states with expiry, and a list of step records."""

    def __init__(
        self,
        ttl: int,
        clock: Callable[[], float] = time.monotonic,
        max_records: int = DEFAULT_RECORDS,
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._calls: dict[str, _Entry] = {}
        self.records: deque[StepRecord] = deque(maxlen=max_records)
        """Every step's call events, oldest first (the oldest go once `max_records` is passed)."""

    def _live(self, call_sid: str) -> _Entry | None:
        entry = self._calls.get(call_sid)
        if entry is not None and entry.expires <= self.clock():
            del self._calls[call_sid]
            return None
        return entry

    async def load(self, call_sid: str, *, seq: int | None = None) -> StoredCall | None:
        entry = self._live(call_sid)
        if entry is None:
            return None
        try:
            state = CallState.from_json(entry.state)
        except StateError as exc:
            raise CorruptState(call_sid, entry.revision, str(exc)) from exc
        return StoredCall(state=state, revision=entry.revision, reply=entry.reply)

    async def save(
        self, state: CallState, *, revision: int, reply: str, record: StepRecord | None
    ) -> bool:
        # No await between the check and the write: atomic within the event loop.
        entry = self._live(state.call_sid)
        if (entry.revision if entry else 0) != revision:
            return False
        first = entry.first if entry and revision else reply
        expires = self.clock() + self.ttl
        self._calls[state.call_sid] = _Entry(revision + 1, state.to_json(), reply, first, expires)
        if record is not None:
            self.records.append(record)
        self._evict()
        return True

    def put_raw(self, call_sid: str, state_json: str) -> None:
        """Overwrite a call's stored state text as is (for tests of unreadable states)."""
        entry = self._calls[call_sid]
        entry.state = state_json

    def forget(self, call_sid: str) -> None:
        """Drop a call, as a store that lost its data would."""
        self._calls.pop(call_sid, None)

    def _evict(self) -> None:
        if len(self._calls) % 1024 == 0:
            now = self.clock()
            for sid in [sid for sid, entry in self._calls.items() if entry.expires <= now]:
                del self._calls[sid]

    async def first_reply(self, call_sid: str) -> str | None:
        entry = self._live(call_sid)
        return entry.first if entry else None

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._calls.clear()
