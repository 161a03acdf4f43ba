"""The flowpbx web application: routes only translate a request into a call to the service."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowpbx.dialing.rules import Destinations
from flowpbx.engine.actions import Route as CallRoute
from flowpbx.engine.events import Event
from flowpbx.engine.progress import CallProgress, Report
from flowpbx.engine.service import Answer, CallService, Renderer
from flowpbx.engine.storage import CallStore
from flowpbx.history.prices import PriceFiller
from flowpbx.history.sources import Backlog
from flowpbx.history.writer import HistoryWriter
from flowpbx.queues.engine import QueueEngine
from flowpbx.queues.scheduler import QueueScheduler
from flowpbx.reloading import FlowReloader, listen_for_hangup
from flowpbx.settings import Settings
from flowpbx.twilio import params
from flowpbx.web.api.framework import Authenticator
from flowpbx.web.api.routes import RestApi
from flowpbx.web.calls import DirectCalls
from flowpbx.web.health import Readiness, healthz, readyz
from flowpbx.web.http import error
from flowpbx.web.metrics import WEBHOOK_PREFIXES, SharedState, WebhookTimer, metrics_endpoint
from flowpbx.web.queues import QueueHooks
from flowpbx.web.webhooks import DirectWrite, Handler, Webhooks

log = logging.getLogger("flowpbx.web")

STOP_SECONDS = 5
"""How long the background tasks (history writer, prices, queue scheduler) get to stop."""
COUNT_SECONDS = 1.0
"""How long the stop line waits for the call store to count the calls in progress."""


def _step(parse: Callable[[Mapping[str, str]], Event], service: CallService) -> Handler:
    """A webhook that answers a step: the call, the step it answers and its event."""

    async def handle(
        request: Request, fields: Mapping[str, str], renderer: Renderer | None
    ) -> Answer:
        seq = params.sequence(request.query_params)
        event = parse(fields)
        call = params.new_call(fields, params.pinned_flow(request.query_params))
        return await service.handle(call, seq, event, renderer=renderer)

    return handle


def _wait(parse: Callable[[Mapping[str, str]], Event], service: CallService) -> Handler:
    """A queue's wait webhook: also names the enqueue node, to keep a lost call waiting."""

    async def handle(
        request: Request, fields: Mapping[str, str], renderer: Renderer | None
    ) -> Answer:
        seq = params.sequence(request.query_params)
        flow, node = params.wait_node(request.query_params)
        call = params.new_call(fields, flow)
        return await service.handle(call, seq, parse(fields), node=node, renderer=renderer)

    return handle


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    if status == 405:
        # RFC 9110: a 405 lists the methods the resource allows.
        headers = exc.headers if isinstance(exc, HTTPException) else None
        return error(405, "method_not_allowed", f"{request.method} is not allowed here", headers)
    return error(404, "not_found", f"nothing at {request.url.path}")


@dataclass
class RestParts:
    """The REST API and what its lifespan runs: `startup` (e.g. database migrations) before
    the first request, `shutdown` after the last."""

    api: RestApi
    auth: Authenticator
    startup: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=list)
    shutdown: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=list)


@dataclass
class HistoryParts:
    """Call history's parts in the web process: the writer its lifespan runs (None when
    `flowpbx history-writer` runs apart), how a callback reaches the database when the call
    store is down, and the backlog for /health."""

    writer: HistoryWriter | None
    prices: PriceFiller | None
    """Asks Twilio what ended calls cost (None without Twilio credentials, or without a
    writer in this process)."""
    direct: DirectWrite
    backlog: Callable[[], Awaitable[Backlog | None]]
    state: Callable[[], str]
    aclose: Callable[[], Awaitable[None]]


def _queue_routes(
    settings: Settings, service: CallService, hooks: Webhooks, queues: QueueParts
) -> tuple[dict[CallRoute, Handler], list[Route], Callable[[Report], Awaitable[None]]]:
    """The queue engine's webhooks: the caller's wait, keys and exit through the engine, the
    agents' and callbacks' legs, and what a caller's final status does to their place."""
    desk = QueueHooks(service, queues.engine, settings.public_base_url)
    steps: dict[CallRoute, Handler] = {
        CallRoute.ENQUEUE: desk.left,
        CallRoute.QUEUE_WAIT: desk.wait,
        CallRoute.QUEUE_KEY: desk.keys,
    }
    legs = [
        Route("/api/calls/queue-connect", hooks.voice(desk.connect), methods=["POST"]),
        Route("/api/calls/queue-dialed", hooks.voice(desk.dialed), methods=["POST"]),
        Route("/api/calls/callback", hooks.voice(desk.callback), methods=["POST"]),
        Route("/api/calls/callback-dialed", hooks.voice(desk.callback_dialed), methods=["POST"]),
        Route(
            "/api/webhooks/agent-answered",
            hooks.callback("agent-answered", desk.answered),
            methods=["POST"],
        ),
        Route(
            "/api/webhooks/callback-status",
            hooks.callback("callback-status", desk.callback_status),
            methods=["POST"],
        ),
    ]

    async def call_ended(report: Report) -> None:
        progress = report.progress
        if isinstance(progress, CallProgress) and progress.status.final:
            await desk.call_ended(report.call_sid)

    return steps, legs, call_ended


@dataclass
class QueueParts:
    """The queue engine in the web process: its webhooks' handlers, and the scheduler its
    lifespan runs (None: this process offers no callers, e.g. in tests that step it)."""

    engine: QueueEngine
    scheduler: QueueScheduler | None
    aclose: Callable[[], Awaitable[None]]


def _warn_of_development_settings(settings: Settings) -> None:
    if settings.skip_signature:
        log.warning(
            "!!! FLOWPBX_DEV_SKIP_SIGNATURE is on: webhooks are NOT verified. "
            "Anyone can drive calls. Never use this outside local development. !!!"
        )
    if settings.hours_override:
        log.warning(
            "FLOWPBX_HOURS_OVERRIDE=%s: every business-hours node answers '%s' whatever the time",
            settings.hours_override,
            settings.hours_override,
        )


def freeze_startup_objects() -> None:
    """Keep what start-up made (modules, flows, clients: alive for the whole process) out of
    the garbage collector's later rounds: every full collection would walk it again. Under
    load this is about 5% of a webhook's instructions (docs/benchmarks.md, issue #11). The
    app's shutdown unfreezes it, so that a process building several apps (tests, an embedding
    program) does not keep the earlier ones' cyclic garbage."""
    gc.collect(1)  # the young garbage of start-up; a full collection costs more than it frees
    gc.freeze()


def _background(
    history: HistoryParts | None, queues: QueueParts | None, reloader: FlowReloader | None
) -> list[asyncio.Task[None]]:
    """Start the tasks the process runs beside the webhooks."""
    background = []
    if history is not None and history.writer is not None:
        background.append(asyncio.create_task(history.writer.run_forever(), name="history-writer"))
    if history is not None and history.prices is not None:
        background.append(asyncio.create_task(history.prices.run(), name="call-prices"))
    if queues is not None and queues.scheduler is not None:
        background.append(
            asyncio.create_task(queues.scheduler.run_forever(), name="queue-scheduler")
        )
    if reloader is not None:
        background.append(asyncio.create_task(reloader.run_forever(), name="flow-reloader"))
    return background


def _store_kind(settings: Settings) -> str:
    """/health's "store": "memory", "redis" or "redis-cluster"."""
    if settings.redis_cluster_nodes:
        return "redis-cluster"
    return "redis" if settings.redis_url else "memory"


async def _log_stop(store: CallStore, settings: Settings) -> None:
    """The line that says this process stops (its lifespan ends: SIGTERM, Ctrl+C), with the
    calls in progress (every process's, when the store is shared)."""
    try:
        async with asyncio.timeout(COUNT_SECONDS):
            calls: int | None = await store.active_calls()
    except Exception:  # the store is down: the line is written all the same
        calls = None
    if calls is None:
        count = "calls in progress unknown (the call store does not answer)"
    elif settings.redis_url is None:
        count = f"{calls} call(s) in progress, whose state ends with this process"
    else:
        count = f"{calls} call(s) in progress, their state kept in {settings.redis_where}"
    logging.getLogger("flowpbx").info(
        "flowpbx: stopping; %s", count, extra={"calls_in_progress": calls}
    )


def create_app(
    settings: Settings,
    service: CallService,
    rest: RestParts | None = None,
    history: HistoryParts | None = None,
    queues: QueueParts | None = None,
    *,
    reloader: FlowReloader | None = None,
) -> Starlette:
    """The web application around a call service (and the REST API, call history, the
    queue engine and the flows' live reload, when given)."""
    hooks = Webhooks(settings, service, history.direct if history else None)
    store = service.store
    direct = DirectCalls(
        service=service,
        destinations=Destinations(settings.allowed_prefixes, settings.blocked_prefixes),
        company_number=settings.twilio_phone_number,
    )

    async def health(request: Request) -> Response:
        store_ok = await store.ping()
        body: dict[str, object] = {
            "status": "ok" if store_ok else "degraded",
            "store": _store_kind(settings),
            "flows": sorted(service.catalog.flows),
            "versions": {name: loaded.version for name, loaded in service.catalog.flows.items()},
            # Which process answered, and how many answer on this port (`flowpbx reload`
            # asks until every worker has said it serves the new versions).
            "pid": os.getpid(),
            "workers": settings.workers,
        }
        if history is not None:
            backlog = await history.backlog()
            body["history"] = {
                "writer": history.state(),
                "backlog": backlog.count if backlog else None,
                "limit": backlog.limit if backlog else None,
                "oldestSeconds": (
                    round(backlog.oldest_seconds, 1)
                    if backlog and backlog.oldest_seconds is not None
                    else None
                ),
            }
        return JSONResponse(body, status_code=200 if store_ok else 503)

    readiness = Readiness(
        store=store,
        catalog=service.catalog,
        database=rest.api.db if rest else None,
        backlog=history.backlog if history else None,
        backlog_fraction=settings.ready_backlog,
        backlog_limit=settings.events_max,
    )
    shared = SharedState(
        store=store,
        readiness=readiness,
        backlog=history.backlog if history else None,
        queues=queues.engine if queues else None,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        _warn_of_development_settings(settings)
        for start in rest.startup if rest else ():
            await start()
        freeze_startup_objects()
        background = _background(history, queues, reloader)
        stop_listening = listen_for_hangup(reloader) if reloader else lambda: None
        try:
            yield
        finally:
            await _log_stop(store, settings)
            stop_listening()
            for task in background:
                task.cancel()
            if background:
                # A task waiting on a worker thread stops when the thread is done: bounded, so
                # that a stuck database never keeps the process from stopping.
                _, stuck = await asyncio.wait(background, timeout=STOP_SECONDS)
                for task in stuck:
                    log.warning(
                        "%s did not stop within %d s; leaving it", task.get_name(), STOP_SECONDS
                    )
            if history is not None:
                await history.aclose()
            if queues is not None:
                await queues.aclose()
            for stop in rest.shutdown if rest else ():
                await stop()
            await readiness.aclose()
            await store.aclose()
            gc.unfreeze()  # what start-up made may go now (a process that builds apps again)

    steps: dict[CallRoute, Handler] = {
        CallRoute.GATHER: _step(params.keys_pressed, service),
        CallRoute.DIAL: _step(params.dial_ended, service),
        CallRoute.ENQUEUE: _step(params.queue_left, service),
        CallRoute.RECORD: _step(params.recording_ended, service),
        CallRoute.QUEUE_WAIT: _wait(params.queue_wait_tick, service),
        CallRoute.QUEUE_KEY: _wait(params.queue_keys_pressed, service),
    }
    legs: list[Route] = []
    call_ended: Callable[[Report], Awaitable[None]] | None = None
    if queues is not None:
        queue_steps, legs, call_ended = _queue_routes(settings, service, hooks, queues)
        steps |= queue_steps
    routes = [
        Route("/api/calls/incoming", hooks.voice(direct.incoming), methods=["POST"]),
        Route("/api/calls/outbound", hooks.voice(direct.outbound), methods=["POST"]),
        Route("/api/calls/connect", hooks.voice(direct.connect), methods=["POST"]),
        *(
            Route(
                f"/api/calls/{route}",
                hooks.voice(handle, is_wait=route in (CallRoute.QUEUE_WAIT, CallRoute.QUEUE_KEY)),
                methods=["POST"],
            )
            for route, handle in steps.items()
        ),
        Route(
            "/api/webhooks/call-status",
            hooks.progress("call-status", params.call_progress, call_ended),
            methods=["POST"],
        ),
        *legs,
        Route(
            "/api/webhooks/recording-status",
            hooks.progress("recording-status", params.recording_progress),
            methods=["POST"],
        ),
        Route("/health", health, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz(readiness), methods=["GET"]),
        Route("/metrics", metrics_endpoint(shared, settings.metrics_token), methods=["GET"]),
        *(rest.api.routes(rest.auth) if rest else ()),
    ]
    webhooks = {
        route.path
        for route in routes
        if isinstance(route, Route)
        and route.path.startswith(WEBHOOK_PREFIXES)
        and "{" not in route.path
        and "POST" in (route.methods or ())
    }
    middleware = [Middleware(WebhookTimer, routes=webhooks)]
    if settings.cors_origins:
        # For a softphone served from another origin: the REST API only (webhooks come from
        # Twilio, not browsers), with the key in the Authorization header (no cookies).
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["Authorization", "Content-Type"],
                expose_headers=["Retry-After"],
                max_age=600,
            )
        )
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers={404: _not_found, 405: _not_found},
    )
    # A redirect to the path with(out) a slash would be built from the Host header, before
    # any signature is checked: unknown paths get a plain 404 instead.
    app.router.redirect_slashes = False
    return app
