"""Twilio-facing endpoints: read the body, verify the signature, call the engine's service.

Any failure inside a voice webhook still answers TwiML with status 200; bad signatures get 403
and malformed parameters 400, with nothing executed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Final
from xml.sax.saxutils import escape, quoteattr

from starlette.requests import Request
from starlette.responses import Response

from flowpbx.engine.core import HOLD_ON, describe
from flowpbx.engine.progress import CallProgress, Report
from flowpbx.engine.service import Answer, CallService, Fallback, Renderer
from flowpbx.engine.storage import StoreUnavailable
from flowpbx.language.catalog import LoadedFlow
from flowpbx.logs import bind_call, unbind_call
from flowpbx.privacy import mask_numbers
from flowpbx.settings import Settings
from flowpbx.twilio import params
from flowpbx.twilio.signature import (
    SIGNATURE_HEADER,
    Form,
    SignatureChecker,
    base_of,
    parse_form,
    public_url,
)
from flowpbx.twilio.twiml import CONTENT_TYPE, TwimlRenderer, Urls
from flowpbx.web.http import MAX_BODY, error, read_body

log = logging.getLogger("flowpbx.web")

_XML: Final = '<?xml version="1.0" encoding="UTF-8"?>'
SORRY: Final = (
    f"{_XML}<Response><Say>We are sorry, an error has occurred. Please try again later.</Say>"
    "<Hangup /></Response>"
)
"""The last answer of a voice webhook that failed and whose apology failed too: a constant
in Twilio's default voice, which no flow, renderer or library can break."""
HOLD_ON_TWIML: Final = f'{_XML}<Response><Pause length="5" /></Response>'
"""`HOLD_ON` as a constant, for a queue's wait webhook that cannot render even that."""

Handler = Callable[[Request, Mapping[str, str], Renderer | None], Awaitable[Answer]]
DirectWrite = Callable[[Report], Awaitable[bool]]
"""Stores a report in the database at once (when the call store is down); False if it could
not."""


class Webhooks:
    """Wraps handlers with what every Twilio webhook needs."""

    def __init__(
        self, settings: Settings, service: CallService, direct: DirectWrite | None = None
    ) -> None:
        self.settings = settings
        self.service = service
        self.direct = direct
        self.checker = SignatureChecker(settings.twilio_auth_token)

    async def _verified_form(self, request: Request) -> tuple[Form, str] | Response:
        body = await read_body(request)
        if body is None:
            return error(413, "body_too_large", f"webhook bodies are at most {MAX_BODY} bytes")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if body and content_type != "application/x-www-form-urlencoded":
            detail = f"expected application/x-www-form-urlencoded, got {content_type or 'none'}"
            return error(415, "unsupported_media_type", detail)
        form = parse_form(body)
        if form is None:
            return error(400, "bad_parameters", "the body is not UTF-8 form data")
        sid = params.well_formed_call_sid(form.first)
        if sid is not None:
            # Every line logged while this webhook is answered carries it (see _about_call).
            request.state.log_call = bind_call(sid)
        url = public_url(request, self.settings.public_base_url, self.settings.trusted_proxies)
        if not self.settings.skip_signature:
            signature = request.headers.get(SIGNATURE_HEADER, "")
            if not self.checker.is_valid(url, form, signature):
                detail = (
                    "X-Twilio-Signature does not match"
                    if signature
                    else ("X-Twilio-Signature is missing")
                )
                log.warning(
                    "rejected %s %r: %s X-Twilio-Signature (from %s, CallSid %r)",
                    request.method,
                    url,
                    "bad" if signature else "missing",
                    request.client.host if request.client else "?",
                    params.call_sid_for_log(form.first),
                )
                return error(403, "invalid_signature", detail)
        return form, url

    def _flow_of(self, request: Request, fields: Mapping[str, str]) -> LoadedFlow:
        """The flow of the call a webhook is about, found as the call service finds it: the
        one its URL names (`flow`: calls flowpbx placed, a queue's wait), else the number
        called's (To); the default flow when neither tells."""
        catalog = self.service.catalog
        try:
            named = request.query_params.get("flow")
            loaded = catalog.get(named) if named else None
            return loaded or catalog.for_number(fields.get("To", ""))
        except Exception:
            return catalog.default_flow

    def _renderer(self, url: str, path: str) -> Renderer | None:
        """Without PUBLIC_BASE_URL, webhook URLs are built on the address this request came to."""
        if self.settings.public_base_url:
            return None
        return TwimlRenderer(Urls(base_of(url, path)))

    def _fallback(
        self, loaded: LoadedFlow, renderer: Renderer | None, *, is_wait: bool
    ) -> tuple[str, str]:
        """What a voice webhook that failed answers, and what failed on the way (for its log
        line; '' when nothing did). The renderer or a flow's goodbye may be what failed, so each
        answer has a simpler one behind it: the call's flow's apology, the default flow's, the
        default flow's goodbye written here without the renderer, and `SORRY`, which needs
        nothing. A caller waiting in a queue holds on instead (`HOLD_ON_TWIML` at the last):
        the end of a wait document sends Twilio back to the wait URL, so a pause, which needs
        no URL, keeps the caller's place; a hangup would lose it."""
        catalog = self.service.catalog
        attempts: tuple[tuple[str, Callable[[], str]], ...]
        if is_wait:
            attempts = (("holding on", lambda: (renderer or self.service.renderer)(HOLD_ON, 0)),)
            last = ("a pause", HOLD_ON_TWIML)
        else:
            attempts = (
                ("the flow's apology", lambda: self.service.apology(loaded, renderer)),
                ("the default flow's apology", lambda: self.service.apology(None, renderer)),
                (
                    "the default flow's goodbye, written without the renderer",
                    lambda: _goodbye_twiml(catalog.default_flow),
                ),
            )
            last = ("a plain apology", SORRY)
        failures: list[str] = []
        for name, attempt in attempts:
            try:
                xml = attempt()
            except Exception as exc:
                failures.append(f"{name} ({describe(exc)})")
                continue
            return xml, _cost(failures, name)
        return last[1], _cost(failures, last[0])

    def voice(
        self, handle: Handler, *, is_wait: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a TwiML handler: verify, parse, and never let an error become a 5xx. A queue's
        wait webhook (`is_wait`) that fails answers a pause: the caller keeps waiting."""

        async def endpoint(request: Request) -> Response:
            verified = await self._verified_form(request)
            if isinstance(verified, Response):
                return verified
            form, url = verified
            fields = form.first
            renderer = self._renderer(url, request.url.path)
            try:
                xml = (await handle(request, fields, renderer)).reply
            except params.BadWebhook as exc:
                log.warning("bad webhook %s: %s", request.url.path, mask_numbers(str(exc)))
                return error(400, "bad_parameters", str(exc))
            except Exception:
                loaded = self._flow_of(request, fields)
                xml, failed = self._fallback(loaded, renderer, is_wait=is_wait)
                # One line, with the first failure's traceback and what answering it cost.
                log.exception(
                    "webhook %s failed (CallSid %r)%s",
                    request.url.path,
                    params.call_sid_for_log(fields),
                    failed,
                )
                # Counted once the answer is made; an observer never raises (CallMetrics logs
                # what it cannot record), and none may stand between the caller and it.
                with contextlib.suppress(Exception):
                    self.service.observer.fell_back(loaded.flow.name, Fallback.WEBHOOK_ERROR)
            return Response(xml, media_type=CONTENT_TYPE)

        return _about_call(endpoint)

    def callback(
        self, name: str, handle: Callable[[Request, Mapping[str, str]], Awaitable[None]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A signed status callback that drives something (a queue's agent leg): answered 204,
        whatever happens inside (logged with the CallSid)."""

        async def endpoint(request: Request) -> Response:
            verified = await self._verified_form(request)
            if isinstance(verified, Response):
                return verified
            fields = verified[0].first
            try:
                await handle(request, fields)
            except params.BadWebhook as exc:
                log.warning("bad %s callback: %s", name, mask_numbers(str(exc)))
                return error(400, "bad_parameters", str(exc))
            except Exception:
                log.exception(
                    "%s callback failed (CallSid %r)", name, params.call_sid_for_log(fields)
                )
            return Response(status_code=204)

        return _about_call(endpoint)

    def progress(
        self,
        name: str,
        parse: Callable[[Mapping[str, str], float], Report],
        after: Callable[[Report], Awaitable[None]] | None = None,
    ) -> Callable[[Request], Awaitable[Response]]:
        """A status callback: kept for call history beside the call's steps (a final call
        status also closes the call's live state), then `after` (e.g. a caller who hung up
        leaves their queue), answered 204. Twilio delivers these late,
        twice and out of order: history sorts them out."""

        async def endpoint(request: Request) -> Response:
            verified = await self._verified_form(request)
            if isinstance(verified, Response):
                return verified
            fields = verified[0].first
            try:
                report = parse(fields, time.time())
            except params.BadWebhook as exc:
                log.warning("bad %s callback: %s", name, mask_numbers(str(exc)))
                return error(400, "bad_parameters", str(exc))
            progress = report.progress
            final = isinstance(progress, CallProgress) and progress.status.final
            try:
                await self.service.store.report(report, close=final)
            except StoreUnavailable as exc:
                kept = self.direct is not None and await self.direct(report)
                if not kept:
                    log.error(
                        "%s callback %s (call %s) is lost: neither the call store (%s) nor the "
                        "database took it",
                        name,
                        report.id,
                        report.call_sid,
                        exc,
                    )
            facts = params.callback_summary(fields)
            status = facts.get("call_status") or facts.get("recording_status") or "no status"
            log.info("%s callback: %s", name, status, extra=facts)
            if after is not None:
                try:
                    await after(report)
                except Exception:
                    log.exception("%s callback of call %s: follow-up failed", name, report.call_sid)
            return Response(status_code=204)

        return _about_call(endpoint)


def _cost(failures: list[str], answered: str) -> str:
    """The end of a failed webhook's log line: its fallbacks that failed too, and what it
    answered instead."""
    if not failures:
        return ""
    return f"; {', '.join(failures)} failed too: answered {answered}"


def _goodbye_twiml(loaded: LoadedFlow) -> str:
    """The flow's goodbye (its plain apology in its voice, then hang up) as TwiML written here,
    for when the renderer is what fails."""
    speech = loaded.flow.on_error.goodbye
    assert speech.text is not None
    voice, language = quoteattr(speech.voice), quoteattr(speech.language)
    say = f"<Say language={language} voice={voice}>{escape(speech.text.render({}))}</Say>"
    return f"{_XML}<Response>{say}<Hangup /></Response>"


def _about_call(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """`endpoint`, after which the CallSid `_verified_form` bound to the log lines is unbound."""

    async def about_call(request: Request) -> Response:
        try:
            return await endpoint(request)
        finally:
            tokens = getattr(request.state, "log_call", None)
            if tokens is not None:
                unbind_call(tokens)

    return about_call
