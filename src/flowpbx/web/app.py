"""The HTTP layer: parse, verify the Twilio signature, call the service, answer TwiML.

Routes only translate. Any failure inside a voice webhook still answers TwiML with status 200;
bad signatures get 403 and malformed parameters 400, with nothing executed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowpbx.engine.actions import Route as CallRoute
from flowpbx.engine.service import CallService
from flowpbx.language.catalog import FlowCatalog
from flowpbx.settings import Settings
from flowpbx.store import CallStore
from flowpbx.twilio import webhooks
from flowpbx.twilio.twiml import CONTENT_TYPE, Urls

log = logging.getLogger("flowpbx.web.app")

MAX_BODY = 64 * 1024

Handler = Callable[[Request, Mapping[str, str], Urls], Awaitable[str]]


async def _read_body(request: Request) -> bytes | None:
    """The body, or None once it passes MAX_BODY (counted as it streams, chunked or not)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


class Webhooks:
    """The Twilio-facing endpoints of one service."""

    def __init__(self, settings: Settings, service: CallService) -> None:
        self.settings = settings
        self.service = service
        self.checker = webhooks.SignatureChecker(settings.twilio_auth_token)

    async def _verified_form(self, request: Request) -> tuple[webhooks.Form, str] | Response:
        body = await _read_body(request)
        if body is None:
            return _error(413, "body_too_large", f"webhook bodies are at most {MAX_BODY} bytes")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if body and content_type != "application/x-www-form-urlencoded":
            detail = f"expected application/x-www-form-urlencoded, got {content_type or 'none'}"
            return _error(415, "unsupported_media_type", detail)
        form = webhooks.parse_form(body)
        if form is None:
            return _error(400, "bad_parameters", "the body is not UTF-8 form data")
        url = webhooks.public_url(
            request, self.settings.public_base_url, self.settings.trusted_proxies
        )
        if not self.settings.skip_signature:
            signature = request.headers.get(webhooks.SIGNATURE_HEADER, "")
            if not self.checker.is_valid(url, form, signature):
                log.warning(
                    "rejected %s %r: %s X-Twilio-Signature (from %s, CallSid %r)",
                    request.method,
                    url,
                    "bad" if signature else "missing",
                    request.client.host if request.client else "?",
                    form.get("CallSid", ["?"])[0],
                )
                return _error(403, "invalid_signature", "X-Twilio-Signature does not match")
        return form, url

    def voice(self, handle: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a TwiML handler: verify, parse, and never let an error become a 5xx."""

        async def endpoint(request: Request) -> Response:
            verified = await self._verified_form(request)
            if isinstance(verified, Response):
                return verified
            form, url = verified
            urls = Urls(webhooks.base_of(url, request.url.path))
            fields = form.first
            try:
                xml = await handle(request, fields, urls)
            except webhooks.BadWebhook as exc:
                log.warning("bad webhook %s: %s", request.url.path, exc)
                return _error(400, "bad_parameters", str(exc))
            except Exception:
                log.exception(
                    "webhook %s failed (CallSid %r)", request.url.path, fields.get("CallSid")
                )
                xml = self.service.apology()
            return Response(xml, media_type=CONTENT_TYPE)

        return endpoint

    def callback(self, name: str) -> Callable[[Request], Awaitable[Response]]:
        """Status callbacks do not steer the call: verify, log, answer 204."""

        async def endpoint(request: Request) -> Response:
            verified = await self._verified_form(request)
            if isinstance(verified, Response):
                return verified
            first = verified[0].first
            fields = {
                k: first[k]
                for k in (
                    "CallSid",
                    "CallStatus",
                    "RecordingSid",
                    "RecordingStatus",
                    "SequenceNumber",
                )
                if k in first
            }
            log.info("%s %r", name, fields)
            return Response(status_code=204)

        return endpoint


def create_app(
    settings: Settings, catalog: FlowCatalog, store: CallStore, service: CallService | None = None
) -> Starlette:
    """The flowpbx web application."""
    service = service or CallService(catalog, store, hours_override=settings.hours_override)
    hooks = Webhooks(settings, service)

    async def incoming(request: Request, fields: Mapping[str, str], urls: Urls) -> str:
        call = webhooks.call_params(fields)
        return await service.incoming(call.call_sid, call.caller, call.called, urls)

    def step(parse: Callable[[Mapping[str, str]], Any]) -> Handler:
        async def handle(request: Request, fields: Mapping[str, str], urls: Urls) -> str:
            sid = webhooks.call_sid(fields)
            seq = webhooks.sequence(request.query_params)
            return await service.event(sid, seq, parse(fields), urls)

        return handle

    async def queue_wait(request: Request, fields: Mapping[str, str], urls: Urls) -> str:
        sid = webhooks.call_sid(fields)
        return await service.queue_wait(sid, webhooks.queue_time(fields), urls)

    async def queue_key(request: Request, fields: Mapping[str, str], urls: Urls) -> str:
        sid = webhooks.call_sid(fields)
        return await service.queue_key(sid, webhooks.keys_pressed(fields).digits, urls)

    async def health(request: Request) -> Response:
        store_ok = await store.ping()
        body = {
            "status": "ok" if store_ok else "degraded",
            "store": "redis" if settings.redis_url else "memory",
            "flows": sorted(catalog.flows),
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

    calls = "/api/calls/"
    routes = [
        Route("/api/calls/incoming", hooks.voice(incoming), methods=["POST"]),
        Route(calls + CallRoute.GATHER, hooks.voice(step(webhooks.keys_pressed)), methods=["POST"]),
        Route(calls + CallRoute.DIAL, hooks.voice(step(webhooks.dial_ended)), methods=["POST"]),
        Route(calls + CallRoute.ENQUEUE, hooks.voice(step(webhooks.queue_left)), methods=["POST"]),
        Route(
            calls + CallRoute.RECORD, hooks.voice(step(webhooks.recording_ended)), methods=["POST"]
        ),
        Route(calls + CallRoute.QUEUE_WAIT, hooks.voice(queue_wait), methods=["POST"]),
        Route(calls + CallRoute.QUEUE_KEY, hooks.voice(queue_key), methods=["POST"]),
        Route("/api/webhooks/call-status", hooks.callback("call-status"), methods=["POST"]),
        Route(
            "/api/webhooks/recording-status", hooks.callback("recording-status"), methods=["POST"]
        ),
        Route("/health", health, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
