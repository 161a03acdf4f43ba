"""`GET /healthz` (the process is alive) and `GET /readyz` (it can serve calls): cheap,
unauthenticated, and saying nothing about the configuration.

Readiness checks run concurrently, each bounded by `CHECK_SECONDS`: Redis answers (the call
store's ping; the memory store always does), the database answers a `SELECT 1`, flows are
loaded, and the history backlog is below FLOWPBX_READY_BACKLOG of what the call store keeps.
A failing check says why in a few fixed words ("unreachable", "no answer"), never with a host,
a URL or an exception's text. The backlog check cannot tell the backlog while the call store
(Redis, where it waits) does not answer: it fails then ("unknown", "no answer"), but with no
verdict on the backlog, which `verdicts` (the metrics' view) leaves out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flowpbx.db.database import Database
from flowpbx.engine.storage import CallStore
from flowpbx.history.sources import Backlog
from flowpbx.language.catalog import Catalog

log = logging.getLogger("flowpbx.web")

CHECK_SECONDS = 1.0
"""The longest one readiness check may take: a load balancer's probe must not hang."""
OK = "ok"
UNREACHABLE = "unreachable"
"""It answered that it cannot be used (connection refused, an error)."""
NO_ANSWER = "no answer"
"""It did not answer within CHECK_SECONDS."""
UNKNOWN = "unknown"
"""What it checks could not be read (the backlog, while the call store does not answer)."""
OVER_THRESHOLD = "over threshold"
NO_VERDICT: Mapping[str, frozenset[str]] = {"backlog": frozenset({UNKNOWN, NO_ANSWER})}
"""The results of a check that say nothing of what it checks, only that it could not look:
the backlog waits in Redis, whose own check fails then."""
NO_CACHE = {"Cache-Control": "no-store"}


def _select_one(db: Database) -> None:
    with db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


class DatabaseProbe:
    """A `SELECT 1` in the database's worker thread. At most one runs at a time: a database
    that hangs holds one thread, however often the probe is asked (a new check waits for the
    one still running, within its own time limit)."""

    def __init__(self, db: Database, seconds: float = CHECK_SECONDS) -> None:
        self.db = db
        self.seconds = seconds
        self._running: asyncio.Task[str] | None = None

    async def _probe(self) -> str:
        try:
            await self.db.run(_select_one, self.db)
        except Exception as exc:
            log.debug("readiness: the database does not answer: %s", type(exc).__name__)
            return UNREACHABLE
        return OK

    async def __call__(self) -> str:
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._probe(), name="database-probe")
        try:
            async with asyncio.timeout(self.seconds):
                return await asyncio.shield(self._running)
        except TimeoutError:
            return NO_ANSWER

    async def aclose(self) -> None:
        if self._running is not None and not self._running.done():
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._running


@dataclass
class Readiness:
    """What /readyz checks. `database` None: no database check (an app without the REST
    API); `backlog` None or `backlog_fraction` 0: no backlog check."""

    store: CallStore
    catalog: Catalog
    database: Database | None = None
    backlog: Callable[[], Awaitable[Backlog | None]] | None = None
    backlog_fraction: float = 0.0
    """Unready once the backlog passes this fraction of what the call store keeps."""
    backlog_limit: int = 0
    """What the call store keeps when the backlog does not say (FLOWPBX_EVENTS_MAX)."""
    seconds: float = CHECK_SECONDS
    _probe: DatabaseProbe | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.database is not None:
            self._probe = DatabaseProbe(self.database, self.seconds)

    async def _redis(self) -> str:
        try:
            async with asyncio.timeout(self.seconds):
                return OK if await self.store.ping() else UNREACHABLE
        except TimeoutError:
            return NO_ANSWER

    async def _flows(self) -> str:
        return OK if self.catalog.flows else "none loaded"

    async def _backlog(self, read: Awaitable[Backlog | None] | None) -> str:
        assert self.backlog is not None
        try:
            async with asyncio.timeout(self.seconds):
                # A read shared with another reader is not cancelled by this one's timeout.
                backlog = await (asyncio.shield(read) if read is not None else self.backlog())
        except TimeoutError:
            return NO_ANSWER
        if backlog is None:
            return UNKNOWN
        limit = backlog.limit or self.backlog_limit
        if limit and backlog.count > self.backlog_fraction * limit:
            return OVER_THRESHOLD
        return OK

    async def check(self, backlog: Awaitable[Backlog | None] | None = None) -> dict[str, str]:
        """Each check's result: "ok", or why it fails. `backlog`: the backlog being read
        already (a scrape of /metrics reports it too), instead of a read of its own."""
        checks: dict[str, Callable[[], Awaitable[str]]] = {
            "redis": self._redis,
            "flows": self._flows,
        }
        if self._probe is not None:
            checks["database"] = self._probe
        if self.backlog is not None and self.backlog_fraction > 0:
            checks["backlog"] = partial(self._backlog, backlog)
        results = await asyncio.gather(*(check() for check in checks.values()))
        return dict(zip(checks, results, strict=True))

    async def aclose(self) -> None:
        if self._probe is not None:
            await self._probe.aclose()


def passed(results: Mapping[str, str]) -> dict[str, bool]:
    return {name: result == OK for name, result in results.items()}


def verdicts(results: Mapping[str, str]) -> dict[str, bool]:
    """Each check that could look at what it checks: True passing, False failing. A check
    that could not (`NO_VERDICT`: the backlog while Redis does not answer) is left out rather
    than said to fail, which would claim a backlog over its threshold."""
    return {
        name: result == OK
        for name, result in results.items()
        if result not in NO_VERDICT.get(name, frozenset())
    }


async def healthz(request: Request) -> Response:
    """The event loop answers: nothing else is looked at."""
    return JSONResponse({"status": "ok"}, headers=NO_CACHE)


def readyz(readiness: Readiness) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        results = await readiness.check()
        ready = all(passed(results).values())
        body = {"status": "ready" if ready else "unready", "checks": results}
        return JSONResponse(body, status_code=200 if ready else 503, headers=NO_CACHE)

    return endpoint
