"""The flowpbx web application: routes only translate a request into a call to the service."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowpbx.engine.actions import Route as CallRoute
from flowpbx.engine.events import Event
from flowpbx.engine.service import Answer, CallService, Renderer
from flowpbx.settings import Settings
from flowpbx.twilio import params
from flowpbx.web.webhooks import Handler, Webhooks, error

log = logging.getLogger("flowpbx.web")


def _step(parse: Callable[[Mapping[str, str]], Event], service: CallService) -> Handler:
    """A webhook that answers a step: the call, the step it answers and its event."""

    async def handle(
        request: Request, fields: Mapping[str, str], renderer: Renderer | None
    ) -> Answer:
        seq = params.sequence(request.query_params)
        event = parse(fields)
        return await service.handle(params.new_call(fields), seq, event, renderer=renderer)

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
        return error(405, "method_not_allowed", f"{request.method} is not allowed here")
    return error(404, "not_found", f"nothing at {request.url.path}")


def create_app(settings: Settings, service: CallService) -> Starlette:
    """The web application around a call service."""
    hooks = Webhooks(settings, service)
    store = service.store

    async def incoming(
        request: Request, fields: Mapping[str, str], renderer: Renderer | None
    ) -> Answer:
        return await service.start(params.new_call(fields), renderer=renderer)

    async def health(request: Request) -> Response:
        store_ok = await store.ping()
        body = {
            "status": "ok" if store_ok else "degraded",
            "store": "redis" if settings.redis_url else "memory",
            "flows": sorted(service.catalog.flows),
        }
        return JSONResponse(body, status_code=200 if store_ok else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.skip_signature:
            log.warning(
                "!!! FLOWPBX_DEV_SKIP_SIGNATURE is on: webhooks are NOT verified. "
                "Anyone can drive calls. Never use this outside local development. !!!"
            )
        if settings.hours_override:
            log.warning(
                "FLOWPBX_HOURS_OVERRIDE=%s: every business-hours node answers '%s' "
                "whatever the time",
                settings.hours_override,
                settings.hours_override,
            )
        yield
        await store.aclose()

    steps = {
        CallRoute.GATHER: _step(params.keys_pressed, service),
        CallRoute.DIAL: _step(params.dial_ended, service),
        CallRoute.ENQUEUE: _step(params.queue_left, service),
        CallRoute.RECORD: _step(params.recording_ended, service),
        CallRoute.QUEUE_WAIT: _wait(params.queue_wait_tick, service),
        CallRoute.QUEUE_KEY: _wait(params.queue_keys_pressed, service),
    }
    routes = [
        Route("/api/calls/incoming", hooks.voice(incoming), methods=["POST"]),
        *(
            Route(
                f"/api/calls/{route}",
                hooks.voice(handle, is_wait=route in (CallRoute.QUEUE_WAIT, CallRoute.QUEUE_KEY)),
                methods=["POST"],
            )
            for route, handle in steps.items()
        ),
        Route("/api/webhooks/call-status", hooks.callback("call-status"), methods=["POST"]),
        Route(
            "/api/webhooks/recording-status", hooks.callback("recording-status"), methods=["POST"]
        ),
        Route("/health", health, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _not_found},
    )
    # A redirect to the path with(out) a slash would be built from the Host header, before
    # any signature is checked: unknown paths get a plain 404 instead.
    app.router.redirect_slashes = False
    return app
