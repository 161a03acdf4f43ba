"""The history writer: drains step records and progress reports from the call store into the
database, in batches, acknowledging each batch only after its commit.

The caller never waits on it: the engine only appends to a stream. When the database is down
the batch in hand is retried (with a growing pause) and everything else waits in the stream;
nothing is acknowledged, so nothing is lost, even if the process stops meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from flowpbx.db.database import Database
from flowpbx.engine.storage import StoreUnavailable
from flowpbx.history import sink
from flowpbx.history.projection import Entry
from flowpbx.history.sources import Backlog, Delivery, EventSource

log = logging.getLogger("flowpbx.history")

T = TypeVar("T")
STORE = "waiting for the call store"
DATABASE = "waiting for the database"
_WAITED_FOR = {STORE: "the call store", DATABASE: "the database"}

BATCH = 500
LINGER = 0.5
"""Seconds the writer lets entries gather after a batch smaller than BATCH."""
UNAVAILABLE = (OperationalError, InterfaceError, ProgrammingError, PoolTimeout, OSError)
"""Errors of a database that is down, busy or not migrated yet: the batch waits and is tried
again. Any other error is the batch's own: its entries are stored one by one."""
RETRY_FIRST = 0.5
RETRY_MAX = 10.0
"""The longest pause between tries of the database."""
STORE_RETRY_MAX = 2.0
"""The longest pause between tries of the call store: a Redis back (restarted, failed over)
is written to again within 2 s; a try of a Redis that is down costs little (a connection
refused, or CONNECT_TIMEOUT)."""
RESTART_SECONDS = 5.0
NEARLY_FULL = 0.8
WARN_EVERY_SECONDS = 60.0


@dataclass
class WriterStatus:
    """What the writer is doing, for /health and `flowpbx history-writer`."""

    state: str = "starting"
    """'starting', 'writing', 'waiting for the database', 'waiting for the call store',
    'restarting after an error'."""
    since: float = field(default_factory=time.time)
    entries: int = 0
    """Entries stored since start."""
    last_error: str = ""


class HistoryWriter:
    def __init__(
        self, source: EventSource, db: Database, batch: int = BATCH, linger: float = LINGER
    ) -> None:
        self.source = source
        self.db = db
        self.batch = batch
        self.linger = linger
        self.status = WriterStatus()
        self._warned_full = -WARN_EVERY_SECONDS

    def _set(self, state: str, error: str = "") -> None:
        if state != self.status.state:
            self.status.state, self.status.since = state, time.time()
        self.status.last_error = error

    async def run_forever(self) -> None:
        """`run`, started again after any unexpected error (logged; /health says so), so that
        a bug in one entry's path never stops call history for good."""
        while True:
            try:
                await self.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception(
                    "call history: the writer stopped on an unexpected error; it starts again "
                    "in %.0f s",
                    RESTART_SECONDS,
                )
                self._set("restarting after an error", str(exc)[:300])
                await asyncio.sleep(RESTART_SECONDS)

    async def run(self) -> None:
        """Until cancelled."""
        await self._retried(self.source.setup, StoreUnavailable, STORE)
        self._writing()
        while True:
            stored = await self.step()
            if 0 < stored < self.batch // 4:
                # Little was waiting: let more gather before the next transaction (a few larger
                # ones cost the web process less than many small ones; history still comes
                # within a second or so). When more waits, the writer goes on at full pace.
                await asyncio.sleep(self.linger)

    async def step(self) -> int:
        """Read what is there (waiting about a second when nothing is) and store it; how many
        entries were stored."""
        deliveries = await self._retried(
            lambda: self.source.read(self.batch), StoreUnavailable, STORE
        )
        stored = 0
        for start in range(0, len(deliveries), self.batch):
            chunk = deliveries[start : start + self.batch]
            await self._commit(chunk)
            # Committed but not acknowledged yet: a redelivery is harmless (idempotent).
            await self._retried(functools.partial(self.source.ack, chunk), StoreUnavailable, STORE)
            stored += len(chunk)
        self._writing()
        self.status.entries += stored
        return stored

    def _writing(self) -> None:
        """Back to writing; after a wait, a line says how long the writer waited, for what."""
        waited_for = _WAITED_FOR.get(self.status.state)
        if waited_for is not None:
            log.info(
                "call history: writing again after waiting %.0f s for %s",
                time.time() - self.status.since,
                waited_for,
            )
        self._set("writing")

    async def _retried(
        self,
        work: Callable[[], Awaitable[T]],
        unavailable: type[Exception] | tuple[type[Exception], ...],
        state: str,
    ) -> T:
        """`work()`, tried again (0.5 s, doubling to 10 s for the database, to 2 s for the
        call store) while it fails with `unavailable`; any other error is the caller's."""
        pause = RETRY_FIRST
        longest = STORE_RETRY_MAX if state == STORE else RETRY_MAX
        while True:
            try:
                return await work()
            except unavailable as exc:
                self._waiting(state, exc, pause)
                if state == DATABASE:
                    await self._warn_if_nearly_full()
                await asyncio.sleep(pause)
                pause = min(longest, pause * 2)

    async def _store(self, entries: Sequence[Entry]) -> None:
        await self._retried(
            lambda: self.db.run(sink.write, self.db, entries), UNAVAILABLE, DATABASE
        )

    async def _commit(self, chunk: Sequence[Delivery]) -> None:
        entries = [d.entry for d in chunk if d.entry is not None]
        if not entries:
            return
        try:
            await self._store(entries)
        except Exception:
            # Something in the batch itself cannot be stored (a value the database refuses, a
            # date out of range...): store the entries one by one, and set aside (logged) only
            # the one that fails.
            for entry in entries:
                try:
                    await self._store([entry])
                except Exception as exc:
                    why = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
                    log.error(
                        "call history: entry %s of call %s cannot be stored, and is skipped: %s",
                        entry.id,
                        entry.call_sid,
                        str(why).splitlines()[0][:300] if str(why) else type(why).__name__,
                        extra={"call_sid": entry.call_sid},
                    )

    def _waiting(self, state: str, exc: Exception, pause: float) -> None:
        first = self.status.state != state
        self._set(state, str(exc)[:300])
        if first:
            log.error(
                "call history: %s (%s); nothing is lost: entries wait in the call store and "
                "are retried",
                state,
                str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__,
            )
        else:
            log.debug("call history: still %s; next try in %.1f s", state, pause)

    async def _warn_if_nearly_full(self) -> None:
        """While the database is away: say loudly (once a minute) when what waits nears what
        the call store keeps, before the oldest entries are dropped."""
        backlog = await self.backlog()
        if backlog is None or not backlog.limit or backlog.count < NEARLY_FULL * backlog.limit:
            return
        if time.monotonic() - self._warned_full < WARN_EVERY_SECONDS:
            return
        self._warned_full = time.monotonic()
        log.error(
            "call history: %d entries wait for the database, %.0f%% of the %d the call store "
            "keeps; past that the oldest are dropped and lost: bring the database back, or "
            "raise FLOWPBX_EVENTS_MAX",
            backlog.count,
            100 * backlog.count / backlog.limit,
            backlog.limit,
        )

    async def backlog(self) -> Backlog | None:
        """What waits to be stored; None when the call store does not answer."""
        try:
            return await self.source.backlog()
        except StoreUnavailable:
            return None

    async def drain(self, timeout: float = 30.0) -> None:
        """Store everything there is now (for tests and `flowpbx history-writer --once`)."""
        deadline = time.monotonic() + timeout
        await self.source.setup()
        while time.monotonic() < deadline:
            if not await self.step():
                backlog = await self.source.backlog()
                if backlog.count == 0:
                    return
        raise TimeoutError(f"call history still has entries waiting after {timeout} s")
