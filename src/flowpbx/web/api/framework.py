"""How a REST endpoint is declared and run: an `Operation` names its method, path, body,
response and errors; `endpoint` wraps its handler with the API key check, the size limit, JSON
decoding and validation, and turns every failure into the one JSON error form."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy.exc import DBAPIError
from starlette.requests import Request
from starlette.responses import Response

from flowpbx.db.apikeys import KeyInfo, verify
from flowpbx.db.database import Database
from flowpbx.engine.storage import StoreUnavailable
from flowpbx.privacy import mask_numbers
from flowpbx.web.api.shapes import PATTERN_HELP
from flowpbx.web.http import MAX_BODY, error, read_body

log = logging.getLogger("flowpbx.api")

JSON = "application/json"


class ApiError(Exception):
    """An answer other than success: status, code and detail for the JSON error form."""

    def __init__(
        self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


def forbidden(detail: str) -> ApiError:
    return ApiError(403, "forbidden", detail)


@dataclass(frozen=True, slots=True)
class Context:
    """One authenticated request: its key, decoded body and query."""

    request: Request
    key: KeyInfo
    body: Any = None
    query: Any = None

    def act_for(self, identity: str | None) -> None:
        """Refuse (403) unless this key may act for `identity`."""
        if not self.key.may_act_for(identity):
            if self.key.identity is None:
                raise forbidden(
                    f"this key has no identity: acting for {identity!r} needs an admin key"
                )
            raise forbidden(
                f"this key may act for its own identity {self.key.identity!r} only "
                f"(not {identity!r})"
            )

    def require_admin(self) -> None:
        if not self.key.admin:
            raise forbidden("this needs an admin key (flowpbx apikey create --admin)")


Handler = Callable[[Context], Awaitable[Any]]

ERRORS: Mapping[int, str] = {
    400: "The body is not valid JSON.",
    401: "No API key, or one that is wrong or revoked.",
    403: "The key may not do this.",
    404: "Not found.",
    413: "The body is larger than 64 KiB.",
    415: "The body is not application/json.",
    422: "The request is well-formed but its values are not acceptable.",
    429: "Too many calls waiting for Twilio's pace; retry after `Retry-After` seconds.",
    502: "Twilio refused or did not answer.",
    503: "The service is not configured for this (see `detail`), or a store is down.",
}


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    name: str
    summary: str
    handler: Handler
    response: type
    status: int = 200
    body: type | None = None
    query: type | None = None
    errors: tuple[int, ...] = ()
    description: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def all_errors(self) -> tuple[int, ...]:
        base = {401, 403, 503}
        if self.body is not None:
            base |= {400, 413, 415, 422}
        if self.query is not None:
            base |= {422}
        return tuple(sorted(base | set(self.errors)))


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Authenticator:
    """Checks `Authorization: Bearer <key>` against the stored keys."""

    db: Database
    clock: Callable[[], dt.datetime] = utc_now

    async def __call__(self, request: Request) -> KeyInfo:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        where = f"{request.method} {request.url.path} from {_client(request)}"
        if not header:
            log.warning("refused %s: no API key", where)
            raise _unauthorized("an API key is required: Authorization: Bearer <key>")
        if scheme.lower() != "bearer" or not key.strip():
            log.warning("refused %s: Authorization is not a Bearer key", where)
            raise _unauthorized("expected Authorization: Bearer <key>")
        info, why = await self.db.run(verify, self.db, key.strip(), self.clock())
        if info is None:
            log.warning("refused %s: %s", where, why)
            raise _unauthorized("the API key is not valid (wrong, revoked or mistyped)")
        return info


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, {"WWW-Authenticate": 'Bearer realm="flowpbx"'})


def _validation_detail(exc: msgspec.ValidationError, whole: str = "the body") -> str:
    """msgspec's message ('Expected `str`, got `int` - at `$.identity`') in plainer words."""
    message = str(exc)
    text, _, where = message.partition(" - at `")
    pattern = re.search(r"matching regex '(.*)'$", text)
    if pattern:  # msgspec shows the pattern with its backslashes doubled
        text = PATTERN_HELP.get(pattern.group(1).replace("\\\\", "\\"), text)
    path = where.rstrip("`").removeprefix("$").lstrip(".") or whole
    return f"{path}: {text[0].lower()}{text[1:]}"


async def _decode_body(request: Request, shape: type) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != JSON:
        raise ApiError(
            415, "unsupported_media_type", f"expected {JSON}, got {content_type or 'none'}"
        )
    body = await read_body(request)
    if body is None:
        raise ApiError(413, "body_too_large", f"bodies are at most {MAX_BODY} bytes")
    if not body.strip():
        raise ApiError(400, "bad_json", "the body is empty: expected a JSON object")
    try:
        # Straight into the shape: a nested document is refused at its first wrong token, so
        # no depth of nesting can exhaust the stack.
        return msgspec.json.decode(body, type=shape)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "invalid", _validation_detail(exc)) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from None


def _decode_query(request: Request, shape: type) -> Any:
    params = request.query_params
    repeated = [name for name in params if len(params.getlist(name)) > 1]
    if repeated:
        raise ApiError(422, "invalid", f"query parameter {repeated[0]!r} is given twice")
    try:
        return msgspec.convert(dict(params), shape, strict=False)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "invalid", _validation_detail(exc, "the query")) from None


def pack_cursor(text: str) -> str:
    """An opaque cursor for `text` (URL-safe base64, no padding)."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def unpack_cursor(cursor: str, form: str) -> re.Match[str]:
    """What `pack_cursor` packed, matched against `form` (a regex); anything else is a 422."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        text = ""
    match = re.fullmatch(form, text)
    if match is None:
        raise ApiError(422, "invalid", "cursor: not a cursor this API gave (use nextCursor)")
    return match


_ENCODER = msgspec.json.Encoder()


def _failure(request: Request, exc: Exception) -> Response:
    """The JSON error for a failed request (a 500 only for flowpbx's own bugs)."""
    if isinstance(exc, ApiError):
        if exc.status in (403, 422, 429):  # refusals an operator wants to see (401s are logged)
            detail = mask_numbers(exc.detail)
            log.warning("refused %s %s: %s", request.method, request.url.path, detail)
        return error(exc.status, exc.code, exc.detail, exc.headers)
    if isinstance(exc, DBAPIError | StoreUnavailable):
        # The database is down, or not migrated yet (its tables missing): say so, 503.
        log.error("%s %s: %s", request.method, request.url.path, exc)
        detail = "the database or the call store does not answer; try again shortly"
        return error(503, "unavailable", detail, {"Retry-After": "5"})
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error(500, "internal", "an unexpected error; it has been logged")


def endpoint(operation: Operation, auth: Authenticator) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint for an operation."""

    async def run(request: Request) -> Response:
        try:
            key = await auth(request)
            body = await _decode_body(request, operation.body) if operation.body else None
            query = _decode_query(request, operation.query) if operation.query else None
            result = await operation.handler(Context(request, key, body, query))
        except Exception as exc:
            return _failure(request, exc)
        return Response(_ENCODER.encode(result), status_code=operation.status, media_type=JSON)

    return run


def document_endpoint(
    document: Mapping[str, Any], auth: Authenticator
) -> Callable[[Request], Awaitable[Response]]:
    """The OpenAPI document, for any valid key."""
    body = _ENCODER.encode(document)

    async def run(request: Request) -> Response:
        try:
            await auth(request)
        except Exception as exc:
            return _failure(request, exc)
        return Response(body, media_type=JSON)

    return run
