"""`GET /metrics` (Prometheus text format) and the timing of Twilio's webhooks.

The endpoint renders the counters every worker recorded (`flowpbx.metrics.counters`) beside
the shared state it reads at scrape time: active calls from the call store, queues and agents
from the queue store and the agent directory, the history backlog, and the readiness checks.
Each read is bounded by CHECK_SECONDS and left out of the scrape when it fails; so is a
readiness check that could not look at what it checks (`health.verdicts`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowpbx import metrics
from flowpbx.engine.storage import CallStore
from flowpbx.history.sources import Backlog
from flowpbx.queues.engine import QueueEngine, Staffing
from flowpbx.web.health import CHECK_SECONDS, Readiness, verdicts
from flowpbx.web.http import error

log = logging.getLogger("flowpbx.web")

T = TypeVar("T")
WEBHOOK_PREFIXES = ("/api/calls/", "/api/webhooks/")


class WebhookTimer:
    """ASGI middleware: the latency and status of every webhook of `routes` (paths without
    parameters, so the path is the route's template); other requests pass untouched."""

    def __init__(self, app: ASGIApp, routes: Collection[str]) -> None:
        self.app = app
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = scope.get("path", "")
        if scope["type"] != "http" or route not in self.routes:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless an answer starts

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            metrics.webhook_answered(route, status, time.perf_counter() - started)


async def _bounded(read: Awaitable[T], what: str, seconds: float) -> T | None:
    """`await read` within `seconds`; None (logged) if it fails or takes longer."""
    try:
        async with asyncio.timeout(seconds):
            return await read
    except Exception as exc:
        log.debug("metrics: %s could not be read (%s)", what, type(exc).__name__)
        return None


@dataclass
class SharedState:
    """Reads what every process shares, for one scrape."""

    store: CallStore
    readiness: Readiness
    backlog: Callable[[], Awaitable[Backlog | None]] | None = None
    queues: QueueEngine | None = None
    clock: Callable[[], float] = time.time
    seconds: float = CHECK_SECONDS

    async def _queues(self) -> dict[str, metrics.QueueNow]:
        assert self.queues is not None
        names = sorted(self.queues.queues())
        oldest = await asyncio.gather(*(self.queues.store.oldest(name) for name in names))
        now = self.clock()
        return {
            name: metrics.QueueNow(size, 0.0 if joined is None else max(0.0, now - joined))
            for name, (size, joined) in zip(names, oldest, strict=True)
        }

    async def _agents(self) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        assert self.queues is not None
        engine = self.queues
        agents = await engine.directory.all()
        lives = await engine.store.agents([agent.id for agent in agents])
        now = self.clock()

        def by_status(staffing: Staffing) -> dict[str, int]:
            return {str(status): count for status, count in staffing.by_status.items()}

        everyone = by_status(Staffing.of((lives.get(a.id) for a in agents), now))
        per_queue = {
            queue: by_status(
                Staffing.of((lives.get(a.id) for a in agents if queue in a.skills), now)
            )
            for queue in sorted(engine.queues())
        }
        return everyone, per_queue

    async def snapshot(self) -> metrics.Snapshot:
        bound = self.seconds
        # The backlog is read once, for its gauges and for the readiness check alike.
        reading = (
            asyncio.ensure_future(_bounded(self.backlog(), "history backlog", bound))
            if self.backlog
            else None
        )
        active, backlog, queues, agents, checks = await asyncio.gather(
            _bounded(self.store.active_calls(), "active calls", bound),
            reading or _none(),
            _bounded(self._queues(), "queues", bound) if self.queues else _none(),
            _bounded(self._agents(), "agents", bound) if self.queues else _none(),
            self.readiness.check(backlog=reading),
        )
        return metrics.Snapshot(
            ready=verdicts(checks),
            active_calls=active,
            queues=queues,
            agents=agents[0] if agents else None,
            queue_agents=agents[1] if agents else None,
            backlog_entries=backlog.count if backlog else None,
            backlog_age=(backlog.oldest_seconds or 0.0) if backlog else None,
            backlog_limit=backlog.limit if backlog else None,
        )


async def _none() -> None:
    return None


def metrics_endpoint(
    state: SharedState, token: str = ""
) -> Callable[[Request], Awaitable[Response]]:
    """GET /metrics; with `token` (FLOWPBX_METRICS_TOKEN), only for `Authorization: Bearer
    <token>`."""
    expected = f"Bearer {token}".encode()

    async def endpoint(request: Request) -> Response:
        if token:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return error(
                    401,
                    "unauthorized",
                    "/metrics needs Authorization: Bearer <FLOWPBX_METRICS_TOKEN>",
                    {"WWW-Authenticate": "Bearer"},
                )
        snapshot = await state.snapshot()
        # Reading every worker's files is file I/O: off the event loop.
        counted = await asyncio.to_thread(metrics.counters)
        body = counted + metrics.render_state(snapshot)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    return endpoint
