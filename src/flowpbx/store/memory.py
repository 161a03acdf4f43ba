"""Call state in this process: for one process only (no Redis configured) and for tests.

It behaves like the Redis store, JSON included, and keeps each step's call events and each
progress report in a bounded log, in the order they were saved, until call history has them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from flowpbx.engine.call_events import StepRecord
from flowpbx.engine.progress import Report
from flowpbx.engine.state import CallState, StateError
from flowpbx.engine.storage import CorruptState, StoredCall

DEFAULT_RECORDS = 100_000
CLOSE_GRACE_SECONDS = 60
"""How long a call's state stays after Twilio said it ended (a late webhook still finds it)."""

log = logging.getLogger("flowpbx.store")

Entry = StepRecord | Report


class EventLog:
    """Entries numbered from 1 in the order appended; a consumer reads after a number and
    acknowledges up to one. Past `max_entries` the oldest go, unread or not (counted in
    `dropped`)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: deque[tuple[int, float, Entry]] = deque()
        self._last = 0
        self.dropped = 0

    def append(self, entry: Entry, now: float) -> None:
        self._last += 1
        self._entries.append((self._last, now, entry))
        if len(self._entries) > self.max_entries:
            self._entries.popleft()
            self.dropped += 1
            if self.dropped in (1, 1000) or self.dropped % 100_000 == 0:
                log.error(
                    "call history is %d entries behind: the oldest are dropped (%d so far); "
                    "is the history writer running?",
                    self.max_entries,
                    self.dropped,
                )

    def read(self, after: int, limit: int) -> list[tuple[int, Entry]]:
        """Up to `limit` entries numbered above `after`, oldest first."""
        found: list[tuple[int, Entry]] = []
        for number, _, entry in self._entries:
            if number > after:
                found.append((number, entry))
                if len(found) == limit:
                    break
        return found

    def ack(self, upto: int) -> None:
        """Forget the entries numbered up to `upto` (call history has them)."""
        while self._entries and self._entries[0][0] <= upto:
            self._entries.popleft()

    def oldest(self) -> float | None:
        """When the oldest entry still held was appended (the store's clock)."""
        return self._entries[0][1] if self._entries else None

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return (entry for _, _, entry in self._entries)


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
        self._flows: dict[tuple[str, str], tuple[str, bytes]] = {}
        self._active: dict[str, float] = {}
        """Calls in progress and when they started (`clock`), until Twilio says they ended."""
        self.records = EventLog(max_records)
        """Step records and progress reports, oldest first, until call history takes them."""

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
        if not revision:
            self._active[state.call_sid] = self.clock()
        if record is not None:
            self.records.append(record, time.time())
        self._evict()
        return True

    async def report(self, report: Report, *, close: bool = False) -> None:
        self.records.append(report, time.time())
        if close:
            self._active.pop(report.call_sid, None)
            entry = self._live(report.call_sid)
            if entry is not None:
                entry.expires = min(entry.expires, self.clock() + CLOSE_GRACE_SECONDS)

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
            self._forget_inactive(now)

    async def first_reply(self, call_sid: str) -> str | None:
        entry = self._live(call_sid)
        return entry.first if entry else None

    async def keep_flow(self, name: str, version: str, file: str, text: bytes) -> None:
        self._flows[(name, version)] = (file, text)

    async def flow_text(self, name: str, version: str) -> tuple[str, bytes] | None:
        return self._flows.get((name, version))

    def _forget_inactive(self, now: float) -> None:
        """Calls started longer ago than the TTL whose final status never came."""
        since = now - self.ttl
        for sid in [sid for sid, started in self._active.items() if started < since]:
            del self._active[sid]

    async def active_calls(self) -> int:
        self._forget_inactive(self.clock())
        return len(self._active)

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._calls.clear()
        self._active.clear()
