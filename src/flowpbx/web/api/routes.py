"""The REST endpoints: softphone tokens, outbound calls, API keys, the OpenAPI document (call
history's in `history`, queues' and agents' in `queues`)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowpbx.db import apikeys
from flowpbx.db.database import Database
from flowpbx.dialing.dialer import Dialer, DialRefused
from flowpbx.engine.progress import CallPlaced, Report
from flowpbx.engine.storage import StoreUnavailable
from flowpbx.language.catalog import Catalog
from flowpbx.privacy import mask_number, mask_numbers
from flowpbx.twilio.rest import TwilioFailure
from flowpbx.twilio.tokens import TokenIssuer
from flowpbx.twilio.twiml import Urls
from flowpbx.web.api import openapi, paths
from flowpbx.web.api.framework import (
    ApiError,
    Authenticator,
    Context,
    Operation,
    document_endpoint,
    endpoint,
    forbidden,
    pack_cursor,
    unpack_cursor,
)
from flowpbx.web.api.history import HistoryApi
from flowpbx.web.api.queues import QueueApi, queue_operations
from flowpbx.web.api.shapes import (
    ApiKeyOut,
    ApiKeyPage,
    CallRequest,
    CallResponse,
    PageQuery,
    TokenRequest,
    TokenResponse,
)

log = logging.getLogger("flowpbx.api")


@dataclass
class RestApi:
    """What the endpoints use; `tokens` and `dialer` are None when their settings are missing
    (named in `missing_token` / `missing_dialer`): those endpoints then answer 503."""

    db: Database
    catalog: Catalog
    base_url: Callable[[Request], str]
    """Where Twilio reaches this service: PUBLIC_BASE_URL, or the request's public address."""
    tokens: TokenIssuer | None
    missing_token: tuple[str, ...]
    dialer: Dialer | None
    missing_dialer: tuple[str, ...]
    report: Callable[[Report], Awaitable[None]] | None = None
    """Keeps a progress report for call history (the call store's `report`)."""
    queues: QueueApi | None = None
    """The queue and agent endpoints; without it they are documented and answer 503."""
    reads: Database | None = None
    """Where the call history endpoints read (DATABASE_READ_URL: a read replica), else `db`.
    API keys are always checked in `db`: a revoked key is refused at once."""

    # -- POST /api/token --

    async def token(self, ctx: Context) -> TokenResponse:
        body: TokenRequest = ctx.body
        ctx.act_for(body.identity)
        if self.tokens is None:
            raise _not_configured("softphone tokens", self.missing_token)
        token = self.tokens.issue(body.identity)
        log.info("token for %s (key %s)", body.identity, ctx.key.label)
        return TokenResponse(token=token, identity=body.identity)

    # -- POST /api/calls --

    async def place_call(self, ctx: Context) -> CallResponse:
        body: CallRequest = ctx.body
        if body.flow is not None and body.identity is not None:
            raise ApiError(
                422, "invalid", "give a flow or an identity, not both: a call does one or the other"
            )
        # A call acts for someone: the softphone it connects, or the key's own identity. A key
        # with no identity places calls only if it is an admin key.
        identity = body.identity or ctx.key.identity
        if body.flow is None and identity is None:
            raise ApiError(
                422, "invalid", "name a flow to run, or an identity (a softphone) to connect"
            )
        if identity is not None:
            ctx.act_for(identity)
        elif not ctx.key.admin:
            raise forbidden("this key has no identity: placing calls needs an admin key")
        if body.flow is not None and self.catalog.get(body.flow) is None:
            loaded = ", ".join(sorted(self.catalog.flows))
            raise ApiError(
                422, "unknown_flow", f"flow: no flow named {body.flow!r}; loaded: {loaded}"
            )
        if self.dialer is None:
            raise _not_configured("outbound calls", self.missing_dialer)
        urls = Urls(self.base_url(ctx.request))
        answer = urls.outbound(body.flow) if body.flow else urls.connect(identity or "")
        try:
            placed = await self.dialer.place(
                to=body.to,
                from_=body.from_,
                answer_url=answer,
                status_url=urls.call_status,
                still_wanted=_connected(ctx.request),
            )
        except DialRefused as exc:
            if exc.code == "busy":
                retry = str(max(1, math.ceil(exc.retry_after)))
                raise ApiError(429, "rate_limited", exc.detail, {"Retry-After": retry}) from None
            raise ApiError(422, exc.code, exc.detail) from None
        except TwilioFailure as exc:
            code = f" (Twilio error {exc.code})" if exc.code else ""
            log.error(
                "call to %s not placed: %s%s",
                mask_number(body.to),
                mask_numbers(exc.message),
                code,
            )
            raise ApiError(502, "twilio_error", f"{exc.message}{code}") from None
        log.info(
            "call %s placed to %s for %s by key %s",
            placed.call.sid,
            mask_number(body.to),
            f"flow {body.flow}" if body.flow else f"softphone {identity}",
            ctx.key.label,
        )
        await self._placed(placed.call.sid, placed.from_, body.to, body.flow, identity)
        return CallResponse(
            sid=placed.call.sid,
            status=placed.call.status,
            to=body.to,
            from_=placed.from_,
            flow=body.flow,
            identity=identity,
            waited=placed.waited,
        )

    async def _placed(
        self, sid: str, caller: str, called: str, flow: str | None, identity: str | None
    ) -> None:
        """Tell call history who the call was placed for (its status callbacks tell the rest)."""
        if self.report is None:
            return
        placed = CallPlaced(caller=caller, called=called, flow=flow, identity=identity)
        report = Report.of(sid, placed, time.time())
        try:
            await self.report(report)
        except StoreUnavailable as exc:
            log.warning("call %s: history will not know who placed it (%s)", sid, exc)

    # -- GET /api/keys --

    async def list_keys(self, ctx: Context) -> ApiKeyPage:
        ctx.require_admin()
        query: PageQuery = ctx.query
        after = _cursor_id(query.cursor)
        keys = await self.db.run(
            lambda: apikeys.list_keys(self.db, after=after, limit=query.limit + 1)
        )
        page = keys[: query.limit]
        more = len(keys) > query.limit
        return ApiKeyPage(
            keys=[
                ApiKeyOut(
                    id=k.id,
                    name=k.name,
                    prefix=f"fpbx_{k.prefix}",
                    identity=k.identity,
                    admin=k.admin,
                    created_at=k.created_at,
                    last_used_at=k.last_used_at,
                )
                for k in page
            ],
            next_cursor=_cursor(page[-1].id) if more else None,
        )

    def operations(self) -> list[Operation]:
        return [
            Operation(
                "POST",
                "/api/token",
                "createToken",
                "A Twilio access token for the browser softphone",
                self.token,
                TokenResponse,
                body=TokenRequest,
                errors=(503,),
                tags=("softphone",),
                description=(
                    "A Voice grant for `identity`: calls out through the TwiML App "
                    "(TWILIO_TWIML_APP_SID) and incoming calls allowed. A key with an identity "
                    "gets tokens for that identity only."
                ),
            ),
            Operation(
                "POST",
                "/api/calls",
                "createCall",
                "Place a call: run a flow, or connect a softphone, when it is answered",
                self.place_call,
                CallResponse,
                status=201,
                body=CallRequest,
                errors=(429, 502, 503),
                tags=("calls",),
                description=(
                    "Twilio places the call at its pace (one per second per account by "
                    "default): a call may wait for its turn (`waited`). Destinations outside "
                    "the allowed prefixes, or premium-rate, are refused with 422."
                ),
            ),
            Operation(
                "GET",
                "/api/keys",
                "listKeys",
                "API keys (admin keys only); secrets are never shown",
                self.list_keys,
                ApiKeyPage,
                query=PageQuery,
                tags=("keys",),
            ),
            *HistoryApi(self.reads or self.db).operations(),
            *queue_operations(self.queues),
        ]

    def routes(self, auth: Authenticator) -> list[Route]:
        paths.register()  # before any route names a sid convertor
        operations = self.operations()
        spec = openapi.document(operations)
        # One route per path, so that a 405 names every method the path has in `Allow`.
        by_path: dict[str, list[Operation]] = {}
        for op in operations:
            by_path.setdefault(op.path, []).append(op)
        routes = [
            Route(
                path,
                _by_method({op.method: endpoint(op, auth) for op in ops}),
                methods=[op.method for op in ops],
                name=ops[0].name,
            )
            for path, ops in by_path.items()
        ]
        document = document_endpoint(spec, auth)
        routes.append(Route("/api/openapi.json", document, methods=["GET"], name="openapi"))
        return routes


def _by_method(
    endpoints: Mapping[str, Callable[[Request], Awaitable[Response]]],
) -> Callable[[Request], Awaitable[Response]]:
    """One path's endpoints, by method (HEAD is GET's: Starlette allows it wherever GET is)."""

    async def run(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await endpoints[method](request)

    return run


def _not_configured(what: str, missing: Sequence[str]) -> ApiError:
    return ApiError(
        503, "not_configured", f"{what} need {', '.join(missing)} to be set in the environment"
    )


def _connected(request: Request) -> Callable[[], Awaitable[bool]]:
    async def still_wanted() -> bool:
        return not await request.is_disconnected()

    return still_wanted


def _cursor(last_id: int) -> str:
    return pack_cursor(f"k{last_id}")


def _cursor_id(cursor: str) -> int:
    if not cursor:
        return 0
    return int(unpack_cursor(cursor, r"k([0-9]{1,18})").group(1))
