"""Twilio's REST API faked at its HTTP boundary: a real server for the real `twilio.rest.Client`.

`twilio_rest()` starts a Starlette app under uvicorn in a background thread on a free port of
127.0.0.1 and yields a `TwilioRest`. Point a client at it with
``client.api.base_url = fake.base_url`` (sync, or async with
`twilio.http.async_http_client.AsyncTwilioHttpClient`). The fake answers the Calls and Queue
Members endpoints of the 2010-04-01 API the way Twilio does (HTTP Basic auth with the auth token
or an API key, Twilio's validation errors and JSON error bodies, 201 call resources), records
every request it gets, and then plays Twilio's side of the call: `TwilioRest.answer` fetches
the call's TwiML URL and `TwilioRest.send_status` delivers status callbacks, both signed with
the auth token exactly as Twilio signs them.

Error codes and messages are the ones Twilio's API returns (see `_error` callers):
20003 "Authenticate" (401), 20404 "The requested resource … was not found" (404),
21201 "No 'To' number is specified", 21213 for a missing From (21603 is the Messages code),
21205 "Url parameter is required…" / "Url is not a valid URL: …",
21211 "The 'To' number … is not a valid phone number.", 21220 "Call is not in-progress. Cannot
redirect.".
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import math
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from twilio_fake import ACCOUNT_SID, BASE_URL, signed_headers

__all__ = [
    "ACCOUNT_SID",
    "API_KEY",
    "API_SECRET",
    "AUTH_TOKEN",
    "BASE_URL",
    "FakeCall",
    "Received",
    "TwilioRest",
    "twilio_rest",
]

HOST: Final = "127.0.0.1"
API_VERSION: Final = "2010-04-01"
AUTH_TOKEN: Final = "7e57" * 8
API_KEY: Final = "SK" + "6b" * 16
API_SECRET: Final = "rest-api-key-secret-0123456789ab"
START_TIMEOUT: Final = 10.0
STOP_TIMEOUT: Final = 10.0

# Call statuses after which nothing more happens to a call.
ENDED: Final = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
# Statuses of a call that has not been answered yet.
NOT_ANSWERED: Final = frozenset({"queued", "initiated", "ringing"})
# The StatusCallbackEvent that makes Twilio send a callback with each CallStatus.
_EVENT_OF_STATUS: Final[Mapping[str, str]] = {
    "initiated": "initiated",
    "ringing": "ringing",
    "in-progress": "answered",
    **dict.fromkeys(ENDED, "completed"),
}
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_ACCOUNT = f"/{API_VERSION}/Accounts/(?P<account>[^/]+)"
_ROUTES: Final = (
    ("create", "POST", re.compile(rf"^{_ACCOUNT}/Calls\.json$")),
    ("update", "POST", re.compile(rf"^{_ACCOUNT}/Calls/(?P<sid>[^/]+)\.json$")),
    ("fetch", "GET", re.compile(rf"^{_ACCOUNT}/Calls/(?P<sid>[^/]+)\.json$")),
    (
        "member",
        "POST",
        re.compile(rf"^{_ACCOUNT}/Queues/(?P<queue>[^/]+)/Members/(?P<sid>[^/]+)\.json$"),
    ),
    (
        "member-fetch",
        "GET",
        re.compile(rf"^{_ACCOUNT}/Queues/(?P<queue>[^/]+)/Members/(?P<sid>[^/]+)\.json$"),
    ),
)
_SUBRESOURCES: Final = (
    "notifications",
    "recordings",
    "payments",
    "events",
    "siprec",
    "streams",
    "transcriptions",
    "user_defined_message_subscriptions",
    "user_defined_messages",
)


def _rfc2822(moment: datetime | None = None) -> str:
    """A date the way Twilio writes them: ``Tue, 24 Nov 2026 09:01:13 +0000``."""
    return email.utils.format_datetime(moment or datetime.now(UTC))


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)


# --- What the fake records ------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One request the fake got, accepted or not.

    `form` is the form-encoded body (repeated keys keep all their values, in order); `query`
    the query string. `kind` names the endpoint (``create``, ``update``, ``fetch``, ``member``,
    ``member-fetch``, or ``unknown``) and `status` the HTTP status the fake answered.
    """

    method: str
    path: str
    form: Mapping[str, tuple[str, ...]]
    username: str
    at: float
    status: int = 0
    kind: str = "unknown"
    query: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def one(self, name: str) -> str:
        """The single value of form field `name`: KeyError if absent, AssertionError if repeated."""
        values = self.form[name]
        assert len(values) == 1, f"{name} was sent {len(values)} times: {values}"
        return values[0]

    def get(self, name: str) -> str | None:
        """The single value of form field `name`, or None when it was not sent."""
        return self.one(name) if name in self.form else None

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class FakeCall:
    """A call the fake knows: created through the API, or registered with `TwilioRest.add_call`.

    Instructions follow Twilio's precedence when several are given: ApplicationSid, then Url,
    then Twiml (Twilio logs warning 32019 "Twiml and Voice URL are both set. Using Voice URL").
    """

    sid: str
    to: str
    from_: str
    url: str | None
    method: str
    status_callback: str | None
    status_callback_method: str
    status_callback_events: tuple[str, ...]
    status: str = "queued"
    sequence: int = 0
    direction: str = "outbound-api"
    twiml: str | None = None
    application_sid: str | None = None
    timeout: int | None = None
    record: bool = False
    machine_detection: str | None = None
    fallback_url: str | None = None
    params: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    updates: list[Mapping[str, tuple[str, ...]]] = field(default_factory=list)
    queue_sid: str | None = None
    enqueued_at: float | None = None
    price: str | None = None
    """What Twilio charged; None until it has priced the call (set it to price one)."""
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    answered_at: float | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def events(self) -> frozenset[str]:
        """The status callback events Twilio will send (``completed`` only, when none given)."""
        return frozenset(self.status_callback_events or ("completed",))


class _Rejected(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _error(status: int, code: int, message: str) -> JSONResponse:
    """Twilio's error body: twilio-python turns it into TwilioRestException(code, status)."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _not_found(path: str) -> _Rejected:
    return _Rejected(404, 20404, f"The requested resource {path} was not found")


def _multi(pairs: list[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for key, value in pairs:
        out[key] = (*out.get(key, ()), value)
    return out


def _first(form: Mapping[str, tuple[str, ...]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


# --- The fake -------------------------------------------------------------------------------


class TwilioRest:
    """Twilio's REST API (Calls, Queue Members) on ``http://127.0.0.1:<port>``.

    Use `twilio_rest()` rather than this class directly: it starts and stops the server.
    State is guarded by a lock: the server thread writes it while the test thread reads it.
    """

    def __init__(
        self,
        *,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        api_key: str = API_KEY,
        api_secret: str = API_SECRET,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.api_key = api_key
        self.api_secret = api_secret
        self.received: list[Received] = []
        self.calls: dict[str, FakeCall] = {}
        self.base_url = ""
        self._failures: list[tuple[int, int, str]] = []
        self._lock = threading.Condition()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._crash: BaseException | None = None

    # --- lifecycle ---

    def start(self) -> None:
        """Serve on a free port of 127.0.0.1; returns once the server accepts connections."""
        assert self._server is None, "already started"
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else ~40 ms per request
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        self._socket = sock
        app = Starlette(
            routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST", "DELETE"])]
        )
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",
            loop="asyncio",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._run, args=(self._server, sock), name=f"twilio-rest-{port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive():
                self.close()
                raise RuntimeError(f"the fake Twilio REST server died: {self._crash!r}")
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"the fake Twilio REST server did not start on port {port}")
            time.sleep(0.005)
        self.base_url = f"http://{HOST}:{port}"

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported by start()/close()
            self._crash = exc

    def close(self) -> None:
        """Stop the server and wait for its thread (idempotent)."""
        server, thread = self._server, self._thread
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(STOP_TIMEOUT)
            if thread.is_alive():
                server.force_exit = True
                thread.join(STOP_TIMEOUT)
            assert not thread.is_alive(), "the fake Twilio REST server did not stop"
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
        if self._crash is not None and not isinstance(self._crash, SystemExit):
            crash, self._crash = self._crash, None
            raise RuntimeError("the fake Twilio REST server crashed") from crash

    # --- what tests read and set ---

    def created(self) -> list[Received]:
        """The accepted call-creation requests, in order."""
        return self.accepted("create")

    def accepted(self, kind: str) -> list[Received]:
        """The accepted requests to one endpoint (``create``, ``update``, ``member``, …)."""
        with self._lock:
            return [r for r in self.received if r.kind == kind and r.accepted]

    def wait(self, count: int, kind: str = "create", timeout: float = 5.0) -> list[Received]:
        """Block until `count` requests of `kind` were accepted; returns them all."""
        with self._lock:
            done = self._lock.wait_for(
                lambda: sum(r.kind == kind and r.accepted for r in self.received) >= count,
                timeout,
            )
        found = self.accepted(kind)
        assert done, f"expected {count} accepted {kind!r} requests within {timeout}s: {found}"
        return found

    def reset(self) -> None:
        """Forget every request, call and pending failure (for a server shared by tests)."""
        with self._lock:
            self.received.clear()
            self.calls.clear()
            self._failures.clear()

    def fail_next(self, *, status: int, code: int, message: str) -> None:
        """Answer the next request (whatever it is) with this Twilio error; calls queue up."""
        with self._lock:
            self._failures.append((status, code, message))

    def add_call(
        self,
        sid: str | None = None,
        *,
        to: str = "+34910000000",
        from_: str = "+34600000000",
        status: str = "in-progress",
        direction: str = "inbound",
    ) -> FakeCall:
        """Make a call the fake did not create (an inbound call) known to the API."""
        call = FakeCall(
            sid=sid or "CA" + uuid.uuid4().hex,
            to=to,
            from_=from_,
            url=None,
            method="POST",
            status_callback=None,
            status_callback_method="POST",
            status_callback_events=(),
            status=status,
            direction=direction,
        )
        if status == "in-progress":
            call.answered_at = time.monotonic()
            call.started_at = datetime.now(UTC)
        with self._lock:
            self.calls[call.sid] = call
        return call

    def enqueue(self, sid: str, queue_sid: str) -> None:
        """Put a known call in a queue (what `<Enqueue>` does), behind those already there."""
        with self._lock:
            call = self.calls[sid]
            call.queue_sid = queue_sid
            call.enqueued_at = time.monotonic()

    def queue(self, queue_sid: str) -> list[FakeCall]:
        """The calls waiting in a queue, front first."""
        with self._lock:
            waiting = [c for c in self.calls.values() if c.queue_sid == queue_sid]
        return sorted(waiting, key=lambda c: c.enqueued_at or 0.0)

    # --- Twilio's side of the call ---

    def answer(self, sid: str, webhook: httpx.Client, **extra: str) -> httpx.Response:
        """The callee answers: Twilio requests the call's Url, signed, and the call is in progress.

        `webhook` is a client of the server under test (a `TestClient` is one). Sends the
        parameters of an answered outbound-api call, plus `extra` (which may override them);
        with MachineDetection, ``AnsweredBy=human`` unless given.
        """
        with self._lock:
            call = self.calls[sid]
            assert call.direction == "outbound-api", f"{sid} is not an outbound-api call"
            assert call.status in NOT_ANSWERED, f"{sid} cannot be answered: {call.status}"
            assert call.application_sid is None, f"{sid} runs application {call.application_sid}"
            assert call.url is not None, f"{sid} runs inline TwiML: Twilio requests no URL"
            call.status = "in-progress"
            call.answered_at = time.monotonic()
            call.started_at = datetime.now(UTC)
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": API_VERSION,
                "CallSid": call.sid,
                "CallStatus": "in-progress",
                "Called": call.to,
                "Caller": call.from_,
                "Direction": "outbound-api",
                "From": call.from_,
                "To": call.to,
            }
            if call.machine_detection is not None and _first(call.params, "AsyncAmd") != "true":
                params["AnsweredBy"] = "human"
            url, method = call.url, call.method
        return self._deliver(webhook, url, method, params | extra)

    def send_status(
        self, sid: str, status: str, webhook: httpx.Client, **extra: str
    ) -> httpx.Response:
        """Twilio's status callback for `status` (a CallStatus: ``ringing``, ``in-progress``…).

        Fails if Twilio would not send it: no StatusCallback, or the matching event
        (``answered`` for in-progress, ``completed`` for any final status) not subscribed.
        """
        with self._lock:
            call = self.calls[sid]
            event = _EVENT_OF_STATUS.get(status)
            assert event is not None, f"unknown CallStatus {status!r}"
            assert call.status_callback is not None, f"{sid} has no StatusCallback"
            assert event in call.events(), (
                f"{sid} did not subscribe to {event!r}: {sorted(call.events())}"
            )
            now = time.monotonic()
            if status == "in-progress" and call.answered_at is None:
                call.answered_at = now
                call.started_at = datetime.now(UTC)
            if status in ENDED and not call.ended:
                call.ended_at = datetime.now(UTC)
            call.status = status
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": API_VERSION,
                "CallSid": call.sid,
                "CallStatus": status,
                "CallbackSource": "call-progress-events",
                "Called": call.to,
                "Caller": call.from_,
                "Direction": call.direction,
                "From": call.from_,
                "SequenceNumber": str(call.sequence),
                "Timestamp": _rfc2822(),
                "To": call.to,
            }
            if status == "completed":
                seconds = 0 if call.answered_at is None else int(now - call.answered_at)
                params["CallDuration"] = str(seconds)
                params["Duration"] = str(math.ceil(seconds / 60) if seconds else 0)
            call.sequence += 1
            url, method = call.status_callback, call.status_callback_method
        return self._deliver(webhook, url, method, params | extra)

    def _deliver(
        self, webhook: httpx.Client, url: str, method: str, params: Mapping[str, str]
    ) -> httpx.Response:
        """A webhook request as Twilio makes it: form POST, or GET with the query string."""
        if method == "GET":
            full = url + ("&" if urlsplit(url).query else "?") + urlencode(dict(params))
            return webhook.get(full, headers=signed_headers(self.auth_token, full, {}))
        return webhook.post(
            url, data=dict(params), headers=signed_headers(self.auth_token, url, params)
        )

    # --- the HTTP side ---

    async def _endpoint(self, request: Request) -> Response:
        at = time.monotonic()
        body = (await request.body()).decode("utf-8", "replace")
        form = _multi(parse_qsl(body, keep_blank_values=True))
        query = _multi(parse_qsl(request.url.query, keep_blank_values=True))
        path = request.url.path
        username, password = _basic_auth(request.headers.get("authorization"))
        kind, match = _route(request.method, path)
        # Everything below is synchronous: requests are recorded in arrival order.
        with self._lock:
            try:
                status, payload = self._handle(
                    kind, match, path=path, form=form, username=username, password=password
                )
                response: Response = JSONResponse(payload, status_code=status)
            except _Rejected as rejected:
                status = rejected.status
                response = _error(rejected.status, rejected.code, rejected.message)
            self.received.append(
                Received(request.method, path, form, username, at, status, kind, query)
            )
            self._lock.notify_all()
        return response

    def _handle(
        self,
        kind: str,
        match: re.Match[str] | None,
        *,
        path: str,
        form: Mapping[str, tuple[str, ...]],
        username: str,
        password: str,
    ) -> tuple[int, dict[str, Any]]:
        if self._failures:
            raise _Rejected(*self._failures.pop(0))
        secrets = {self.account_sid: self.auth_token, self.api_key: self.api_secret}
        if not username or secrets.get(username) != password:
            raise _Rejected(401, 20003, "Authenticate")
        if match is None:
            raise _not_found(path)
        if match["account"] != self.account_sid:
            # Twilio's 20003 covers credentials of one account used on another one.
            raise _Rejected(401, 20003, "Authenticate")
        if kind == "create":
            return 201, self._call_json(self._create(form))
        call = self.calls.get(match["sid"]) if kind in {"update", "fetch"} else None
        if kind == "fetch" and call is not None:
            return 200, self._call_json(call)
        if kind == "update" and call is not None:
            return 200, self._call_json(self._update(call, form))
        if kind in {"member", "member-fetch"}:
            return 200, self._member(match["queue"], match["sid"], path, form, kind == "member")
        raise _not_found(path)

    def _create(self, form: Mapping[str, tuple[str, ...]]) -> FakeCall:
        to, from_ = _first(form, "To"), _first(form, "From")
        url, twiml, app = _first(form, "Url"), _first(form, "Twiml"), _first(form, "ApplicationSid")
        if not to:
            raise _Rejected(400, 21201, "No 'To' number is specified")
        if not from_:
            raise _Rejected(400, 21213, "A 'From' phone number is required.")
        if not (url or twiml or app):
            raise _Rejected(
                400,
                21205,
                "Url parameter is required. For more information, see "
                "http://www.twilio.com/docs/api/twiml",
            )
        if url and not _is_url(url):
            raise _Rejected(400, 21205, f"Url is not a valid URL: {url}")
        if not (_E164.match(to) or to.startswith(("client:", "sip:"))):
            raise _Rejected(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        timeout = _first(form, "Timeout")
        call = FakeCall(
            sid="CA" + uuid.uuid4().hex,
            to=to,
            from_=from_,
            url=url or None,
            method=_first(form, "Method") or "POST",
            status_callback=_first(form, "StatusCallback"),
            status_callback_method=_first(form, "StatusCallbackMethod") or "POST",
            status_callback_events=form.get("StatusCallbackEvent", ()),
            twiml=twiml,
            application_sid=app,
            timeout=int(timeout) if timeout is not None else None,
            record=_first(form, "Record") == "true",
            machine_detection=_first(form, "MachineDetection"),
            fallback_url=_first(form, "FallbackUrl"),
            params=form,
        )
        self.calls[call.sid] = call
        return call

    def _update(self, call: FakeCall, form: Mapping[str, tuple[str, ...]]) -> FakeCall:
        url, twiml, status = _first(form, "Url"), _first(form, "Twiml"), _first(form, "Status")
        if (url or twiml) and call.ended:
            raise _Rejected(400, 21220, "Call is not in-progress. Cannot redirect.")
        if url and not _is_url(url):
            raise _Rejected(400, 21205, f"Url is not a valid URL: {url}")
        if status not in {None, "canceled", "completed"}:
            raise _Rejected(400, 20001, f"Invalid Status: {status}")
        if url:
            call.url, call.twiml = url, None
            call.method = _first(form, "Method") or "POST"
        elif twiml:
            call.twiml = twiml
        for name, attr in (("StatusCallback", "status_callback"), ("FallbackUrl", "fallback_url")):
            if (value := _first(form, name)) is not None:
                setattr(call, attr, value)
        if (value := _first(form, "StatusCallbackMethod")) is not None:
            call.status_callback_method = value
        # "canceled" hangs up a queued or ringing call and leaves a call in progress alone;
        # "completed" hangs up either.
        if not call.ended and (
            status == "completed" or (status == "canceled" and call.status in NOT_ANSWERED)
        ):
            call.status = "canceled" if call.status in NOT_ANSWERED else "completed"
            call.ended_at = datetime.now(UTC)
            call.queue_sid = None
        call.updates.append(form)
        return call

    def _member(
        self,
        queue_sid: str,
        sid: str,
        path: str,
        form: Mapping[str, tuple[str, ...]],
        dequeue: bool,
    ) -> dict[str, Any]:
        waiting = sorted(
            (c for c in self.calls.values() if c.queue_sid == queue_sid),
            key=lambda c: c.enqueued_at or 0.0,
        )
        found = (
            waiting[:1] if sid == "Front" else [c for c in waiting if c.sid == sid]
        )  # a call not in this queue is no member of it
        if not found:
            raise _not_found(path)
        call = found[0]
        member = {
            "call_sid": call.sid,
            "date_enqueued": _rfc2822(),
            "position": waiting.index(call) + 1,
            "queue_sid": queue_sid,
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Queues/{queue_sid}"
            f"/Members/{call.sid}.json",
            "wait_time": int(time.monotonic() - (call.enqueued_at or time.monotonic())),
        }
        if dequeue:
            url = _first(form, "Url")
            if not url:
                raise _Rejected(400, 20001, "Missing required parameter Url in the post body")
            if not _is_url(url):
                raise _Rejected(400, 21205, f"Url is not a valid URL: {url}")
            call.url, call.twiml = url, None
            call.method = _first(form, "Method") or "POST"
            call.queue_sid = None
            call.updates.append(form)
        return member

    def _call_json(self, call: FakeCall) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{call.sid}"
        duration = None
        if call.ended and call.started_at is not None and call.ended_at is not None:
            duration = str(int((call.ended_at - call.started_at).total_seconds()))
        return {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": _rfc2822(call.created_at),
            "date_updated": _rfc2822(),
            "direction": call.direction,
            "duration": duration,
            "end_time": _rfc2822(call.ended_at) if call.ended_at else None,
            "forwarded_from": None,
            "from": call.from_,
            "from_formatted": call.from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": call.price,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": call.sid,
            "start_time": _rfc2822(call.started_at) if call.started_at else None,
            "status": call.status,
            "subresource_uris": {name: f"{uri}/{name}.json" for name in _SUBRESOURCES},
            "to": call.to,
            "to_formatted": call.to,
            "trunk_sid": None,
            "uri": f"{uri}.json",
        }


def _route(method: str, path: str) -> tuple[str, re.Match[str] | None]:
    for kind, route_method, pattern in _ROUTES:
        if method == route_method and (match := pattern.match(path)):
            return kind, match
    return "unknown", None


def _basic_auth(header: str | None) -> tuple[str, str]:
    """(user, password) of an HTTP Basic Authorization header; empty strings without one."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    user, _, password = decoded.partition(":")
    return user, password


@contextlib.contextmanager
def twilio_rest(
    *,
    account_sid: str = ACCOUNT_SID,
    auth_token: str = AUTH_TOKEN,
    api_key: str = API_KEY,
    api_secret: str = API_SECRET,
) -> Iterator[TwilioRest]:
    """Run the fake Twilio REST API for the duration of the block."""
    fake = TwilioRest(
        account_sid=account_sid, auth_token=auth_token, api_key=api_key, api_secret=api_secret
    )
    fake.start()
    try:
        yield fake
    finally:
        fake.close()
