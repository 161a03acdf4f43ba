"""Twilio, faked at its HTTP boundary: signed webhooks in, TwiML out, checked like Twilio would.

`TwilioDriver` plays one call at a time against a Starlette app through a
`starlette.testclient.TestClient`: it posts the signed incoming webhook with the parameters a
real inbound call carries, then follows the TwiML it gets back (Gather, Dial, Enqueue and its
waitUrl, Record, Redirect) the way Twilio does. Every reply is parsed into `Reply`/`Verb` values
for assertions and validated twice: against the TwiML XSD in `tests/twiml-xsd/` with lxml, and
against our own allow-list of verbs, attributes and values (voice, absolute https webhook URLs
on the app's routes carrying `?seq=`, POST, integer timeouts, status 200, application/xml).
"""

from __future__ import annotations

import enum
import functools
import re
import uuid
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, overload
from urllib.parse import parse_qs, urlsplit

import httpx
from lxml import etree  # type: ignore[import-untyped]
from twilio.request_validator import RequestValidator

with warnings.catch_warnings():
    # Starlette asks for the httpx2 package; the project pins httpx, which still works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

__all__ = [
    "ACCOUNT_SID",
    "BASE_URL",
    "CALL_ROUTES",
    "LANGUAGE",
    "VOICE",
    "XSD_DIR",
    "Reply",
    "TestClient",
    "TwilioDriver",
    "Verb",
    "call_sid",
    "check_reply",
    "inbound_params",
    "signed_headers",
    "twiml_schema",
]

BASE_URL: Final = "https://pbx.example.test"
ACCOUNT_SID: Final = "AC" + "5a" * 16
VOICE: Final = "Polly.Lucia"
LANGUAGE: Final = "es-ES"
XSD_DIR: Final = Path(__file__).resolve().parent / "twiml-xsd"
SIGNATURE_HEADER: Final = "X-Twilio-Signature"

CALL_ROUTES: Final = frozenset(
    f"/api/calls/{name}"
    for name in (
        "gather",
        "dial",
        "enqueue",
        "record",
        "queue-wait",
        "queue-key",
        "queue-connect",
        "queue-dialed",
        "callback",
        "callback-dialed",
    )
)
# The queue engine's legs name their reservation (`res`); a caller's leg also where the caller
# waits, to be put back in the queue.
_LEG_QUERIES: Final[Mapping[str, frozenset[str]]] = {
    "/api/calls/queue-connect": frozenset({"res", "queue", "seq", "flow", "node"}),
    "/api/calls/queue-dialed": frozenset({"res", "queue", "seq", "flow", "node"}),
    "/api/calls/callback": frozenset({"res"}),
    "/api/calls/callback-dialed": frozenset({"res"}),
}
AGENT_ANSWERED_PATH: Final = "/api/webhooks/agent-answered"
RECORDING_STATUS_PATH: Final = "/api/webhooks/recording-status"

VERBS: Final = frozenset(
    {"Say", "Play", "Pause", "Gather", "Dial", "Enqueue", "Record", "Hangup", "Leave", "Redirect"}
)
# The attributes flowpbx may emit on each element: anything else is a bug (or a new feature
# that should be checked here too).
ATTRIBUTES: Final[Mapping[str, frozenset[str]]] = {
    "Say": frozenset({"voice", "language", "loop"}),
    "Play": frozenset({"loop"}),
    "Pause": frozenset({"length"}),
    "Gather": frozenset(
        {"action", "method", "input", "timeout", "numDigits", "finishOnKey", "actionOnEmptyResult"}
    ),
    "Dial": frozenset(
        {
            "action",
            "method",
            "timeout",
            "callerId",
            "answerOnBridge",
            "record",
            "recordingStatusCallback",
            "recordingStatusCallbackMethod",
            "recordingStatusCallbackEvent",
        }
    ),
    "Enqueue": frozenset({"action", "method", "waitUrl", "waitUrlMethod"}),
    "Record": frozenset(
        {
            "action",
            "method",
            "maxLength",
            "timeout",
            "playBeep",
            "finishOnKey",
            "transcribe",
            "recordingStatusCallback",
            "recordingStatusCallbackMethod",
        }
    ),
    "Hangup": frozenset(),
    "Leave": frozenset(),
    "Redirect": frozenset({"method"}),
    "Number": frozenset({"statusCallbackEvent", "statusCallback", "statusCallbackMethod"}),
    "Client": frozenset({"statusCallbackEvent", "statusCallback", "statusCallbackMethod"}),
    "Sip": frozenset(),
}
REQUIRED: Final[Mapping[str, frozenset[str]]] = {
    "Gather": frozenset({"action", "method"}),
    "Dial": frozenset({"action", "method"}),
    "Enqueue": frozenset({"action", "method", "waitUrl", "waitUrlMethod"}),
    "Record": frozenset({"action", "method"}),
    "Redirect": frozenset({"method"}),
}
DIAL_RECORD: Final = frozenset(
    {
        "do-not-record",
        "record-from-answer",
        "record-from-ringing",
        "record-from-answer-dual",
        "record-from-ringing-dual",
    }
)
# The recording events a <Dial> may ask for (a <Record> only sends completed or failed).
DIAL_RECORDING_EVENTS: Final = frozenset({"in-progress", "completed", "absent"})
_RFC2822: Final = "Tue, 24 Nov 2026 09:01:13 +0000"
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_BOOL = frozenset({"true", "false"})


def call_sid(n: int) -> str:
    """A well-formed CallSid, distinct for each `n`."""
    return f"CA{n:032x}"


def _sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


# --- Parsed replies --------------------------------------------------------------------------


@dataclass(frozen=True)
class Verb:
    """One TwiML element: its name, attributes, text and child elements."""

    name: str
    attrs: Mapping[str, str]
    text: str
    children: tuple[Verb, ...] = ()

    def __getitem__(self, attr: str) -> str:
        return self.attrs[attr]

    @overload
    def get(self, attr: str) -> str | None: ...
    @overload
    def get(self, attr: str, default: str) -> str: ...
    def get(self, attr: str, default: str | None = None) -> str | None:
        return self.attrs.get(attr, default)

    def named(self, name: str) -> tuple[Verb, ...]:
        """The child elements called `name`."""
        return tuple(child for child in self.children if child.name == name)


@dataclass(frozen=True)
class Reply:
    """A checked TwiML answer."""

    status: int
    content_type: str
    xml: str
    verbs: tuple[Verb, ...]
    urls: tuple[str, ...] = field(default=())

    @property
    def names(self) -> tuple[str, ...]:
        """The top-level verbs, in order."""
        return tuple(verb.name for verb in self.verbs)

    @property
    def says(self) -> tuple[str, ...]:
        """Every spoken text, in order, including the prompts inside a Gather."""
        return tuple(
            element.text
            for verb in self.verbs
            for element in (verb, *verb.children)
            if element.name == "Say"
        )

    @property
    def text(self) -> str:
        """All spoken text joined by spaces."""
        return " ".join(self.says)

    def all(self, name: str) -> tuple[Verb, ...]:
        return tuple(verb for verb in self.verbs if verb.name == name)

    def one(self, name: str) -> Verb:
        """The only top-level verb called `name` (fails if there is not exactly one)."""
        found = self.all(name)
        assert len(found) == 1, f"expected one <{name}> in {self.names}:\n{self.xml}"
        return found[0]

    def has(self, name: str) -> bool:
        return any(verb.name == name for verb in self.verbs)

    @property
    def seq(self) -> int | None:
        """The step number every webhook URL of this reply carries (None without URLs)."""
        queries = [parse_qs(urlsplit(url).query) for url in self.urls]
        seqs = {int(query["seq"][0]) for query in queries if "seq" in query}
        assert len(seqs) <= 1, f"webhook URLs disagree on seq: {self.urls}"
        return seqs.pop() if seqs else None


# --- Checking replies ------------------------------------------------------------------------


@functools.cache
def twiml_schema() -> etree.XMLSchema:
    """The (relaxed) TwiML XSD copied into tests/twiml-xsd."""
    path = XSD_DIR / "twiml_v20100401_twilioRealtimeCallSchema.xsd"
    return etree.XMLSchema(etree.parse(str(path)))


@dataclass
class _Checker:
    public_base: str
    voice: str
    language: str
    routes: frozenset[str]
    https: bool
    urls: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        raise AssertionError(message)

    def integer(self, verb: Verb, attr: str, low: int, high: int) -> None:
        value = verb.get(attr)
        if value is None:
            return
        assert re.fullmatch(r"-?[0-9]+", value), f"<{verb.name} {attr}={value!r}> is not an int"
        assert low <= int(value) <= high, f"<{verb.name} {attr}={value}> not in {low}..{high}"

    def boolean(self, verb: Verb, attr: str) -> None:
        value = verb.get(attr)
        assert value is None or value in _BOOL, f"<{verb.name} {attr}={value!r}> not a boolean"

    def post(self, verb: Verb, attr: str) -> None:
        value = verb.get(attr)
        assert value is None or value == "POST", f"<{verb.name} {attr}={value!r}>: expected POST"

    def webhook(self, url: str, where: str) -> None:
        """An absolute URL on the public base, to one of the app's call routes, with ?seq=N."""
        parts = urlsplit(url)
        base = urlsplit(self.public_base)
        if self.https:
            assert parts.scheme == "https", f"{where}: {url} is not https"
        assert (parts.scheme, parts.netloc) == (base.scheme, base.netloc), (
            f"{where}: {url} is not on the public base {self.public_base}"
        )
        prefix = base.path.rstrip("/")
        assert parts.path.startswith(prefix), f"{where}: {url} is outside {self.public_base}"
        route = parts.path[len(prefix) :]
        assert route in self.routes, f"{where}: {url} is not a route of the app"
        query = parse_qs(parts.query, keep_blank_values=True)
        # A queue's wait URL also names its flow and enqueue node; every other URL only seq,
        # and the flow on calls flowpbx placed.
        if route in _LEG_QUERIES:
            assert set(query) == _LEG_QUERIES[route], f"{where}: {url} has {set(query)}"
            assert re.fullmatch(r"[0-9a-f]{32}", query["res"][0]), f"{where}: bad res"
            if "seq" not in query:
                self.urls.append(url)
                return
        elif where == "<Enqueue waitUrl>" or route == "/api/calls/queue-wait":
            assert set(query) == {"seq", "flow", "node"}, f"{where}: {url} lacks flow/node"
        else:
            assert set(query) in ({"seq"}, {"seq", "flow"}), f"{where}: {url} has {set(query)}"
        for name, values in query.items():
            assert len(values) == 1, f"{where}: {url} repeats {name}"
        for name in set(query) - {"seq", "res"}:
            assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", query[name][0]), f"{where}: bad {name}"
        assert len(query["seq"]) == 1, f"{where}: {url} has seq twice"
        assert re.fullmatch(r"[0-9]{1,9}", query["seq"][0]), f"{where}: bad seq in {url}"
        self.urls.append(url)

    def status_callback(self, url: str, where: str) -> None:
        expected = self.public_base.rstrip("/") + RECORDING_STATUS_PATH
        assert url == expected, f"{where}: recording status callback {url} != {expected}"

    def attributes(self, verb: Verb) -> None:
        allowed = ATTRIBUTES.get(verb.name)
        assert allowed is not None, f"unknown element <{verb.name}>"
        extra = set(verb.attrs) - allowed
        assert not extra, f"<{verb.name}> has unexpected attributes {sorted(extra)}"
        missing = REQUIRED.get(verb.name, frozenset()) - set(verb.attrs)
        if verb.name == "Dial" and verb.get("answerOnBridge") == "true":
            # A call connected straight through (softphone, API call without a flow): no flow
            # step follows the dial, so there is no action; the call ends with it.
            missing -= {"action", "method"}
        assert not missing, f"<{verb.name}> lacks {sorted(missing)}"

    def prompt(self, verb: Verb) -> None:
        self.attributes(verb)
        assert not verb.children, f"<{verb.name}> has children"
        match verb.name:
            case "Say":
                assert verb.get("voice") == self.voice, f"<Say voice={verb.get('voice')!r}>"
                assert verb.get("language") == self.language, (
                    f"<Say language={verb.get('language')!r}>"
                )
                assert verb.text.strip(), "empty <Say>"
                self.integer(verb, "loop", 0, 1000)
            case "Play":
                assert re.fullmatch(r"https?://\S+", verb.text), f"<Play>{verb.text!r}</Play>"
                self.integer(verb, "loop", 0, 1000)
            case "Pause":
                assert not verb.text, "<Pause> has text"
                self.integer(verb, "length", 1, 600)
            case _:
                self.fail(f"<{verb.name}> is not a prompt")

    def verb(self, verb: Verb) -> None:
        assert verb.name in VERBS, f"unknown verb <{verb.name}>"
        if verb.name in ("Say", "Play", "Pause"):
            self.prompt(verb)
            return
        self.attributes(verb)
        for attr in ("method", "waitUrlMethod", "recordingStatusCallbackMethod"):
            self.post(verb, attr)
        if "action" in verb.attrs:
            self.webhook(verb["action"], f"<{verb.name} action>")
        if "recordingStatusCallback" in verb.attrs:
            self.status_callback(verb["recordingStatusCallback"], f"<{verb.name}>")
        match verb.name:
            case "Gather":
                assert verb.get("input", "dtmf") == "dtmf", f"<Gather input={verb.get('input')}>"
                self.integer(verb, "timeout", 1, 600)
                self.integer(verb, "numDigits", 1, 64)
                assert re.fullmatch(r"[0-9*#]?", verb.get("finishOnKey") or ""), (
                    f"<Gather finishOnKey={verb.get('finishOnKey')!r}>"
                )
                self.boolean(verb, "actionOnEmptyResult")
                assert not verb.text.strip(), "<Gather> has text"
                for child in verb.children:
                    self.prompt(child)
            case "Dial":
                self.integer(verb, "timeout", 5, 600)
                record = verb.get("record", "do-not-record")
                assert record in DIAL_RECORD, f"<Dial record={record!r}>"
                if record != "do-not-record":
                    assert "recordingStatusCallback" in verb.attrs, "recorded <Dial> unreported"
                    events = verb.get("recordingStatusCallbackEvent", "completed").split(" ")
                    assert set(events) <= DIAL_RECORDING_EVENTS, f"recording events {events}"
                    assert "completed" in events, f"recording events {events} lack completed"
                self.boolean(verb, "answerOnBridge")
                caller_id = verb.get("callerId")
                assert caller_id is None or _E164.match(caller_id), f"callerId {caller_id!r}"
                assert verb.children, "<Dial> without a destination"
                assert not verb.text.strip(), "<Dial> has bare text besides nouns"
                for noun in verb.children:
                    self.attributes(noun)
                    if "statusCallback" in noun.attrs:
                        self.post(noun, "statusCallbackMethod")
                        callback = urlsplit(noun["statusCallback"])
                        assert callback.path.endswith(AGENT_ANSWERED_PATH), noun["statusCallback"]
                        assert noun.get("statusCallbackEvent") == "answered", noun.attrs
                    if noun.name == "Number":
                        assert _E164.match(noun.text), f"<Number>{noun.text!r}</Number>"
                    else:
                        assert noun.text.strip(), f"empty <{noun.name}>"
            case "Enqueue":
                self.webhook(verb["waitUrl"], "<Enqueue waitUrl>")
                assert 0 < len(verb.text.strip()) <= 64, f"queue name {verb.text!r}"
                assert not verb.children
            case "Record":
                self.integer(verb, "maxLength", 1, 14400)
                self.integer(verb, "timeout", 0, 3600)
                self.boolean(verb, "playBeep")
                self.boolean(verb, "transcribe")
                assert re.fullmatch(r"[0-9*#]*", verb.get("finishOnKey") or "")
                assert not verb.children, "<Record> has children"
                assert not verb.text.strip(), "<Record> has text"
            case "Redirect":
                self.webhook(verb.text, "<Redirect>")
            case "Hangup" | "Leave":
                assert not verb.children, f"<{verb.name}> has children"
                assert not verb.text.strip(), f"<{verb.name}> has text"
            case _:  # pragma: no cover - VERBS and this match list the same names
                self.fail(f"unchecked verb <{verb.name}>")

    def document(self, verbs: tuple[Verb, ...]) -> None:
        for i, verb in enumerate(verbs):
            self.verb(verb)
            if verb.name in ("Hangup", "Redirect", "Leave"):
                assert i == len(verbs) - 1, f"<{verb.name}> is followed by unreachable verbs"


def _element(node: etree._Element) -> Verb:
    children = tuple(_element(child) for child in node if isinstance(child.tag, str))
    return Verb(
        str(node.tag), {str(k): str(v) for k, v in node.attrib.items()}, node.text or "", children
    )


def check_reply(
    response: httpx.Response,
    *,
    public_base: str = BASE_URL,
    voice: str = VOICE,
    language: str = LANGUAGE,
    routes: Iterable[str] = CALL_ROUTES,
    https: bool = True,
) -> Reply:
    """Parse a voice webhook's answer and check it as Twilio would need it; fails loudly."""
    body = response.content
    assert response.status_code == 200, f"status {response.status_code}: {response.text}"
    content_type = response.headers.get("content-type", "")
    assert content_type.split(";")[0].strip() == "application/xml", content_type
    root = etree.fromstring(body, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    schema = twiml_schema()
    assert schema.validate(root), f"TwiML fails the XSD: {schema.error_log}\n{response.text}"
    assert root.tag == "Response", f"root element <{root.tag}>"
    assert not root.attrib, f"<Response> has attributes {dict(root.attrib)}"
    assert not (root.text or "").strip(), "<Response> has bare text"
    verbs = tuple(_element(child) for child in root if isinstance(child.tag, str))
    checker = _Checker(public_base.rstrip("/"), voice, language, frozenset(routes), https)
    checker.document(verbs)
    reply = Reply(response.status_code, content_type, response.text, verbs, tuple(checker.urls))
    _ = reply.seq  # every webhook URL in one reply names the same step
    return reply


# --- Requests as Twilio sends them -------------------------------------------------------------


def inbound_params(
    sid: str, from_: str, to: str, status: str = "ringing", account_sid: str = ACCOUNT_SID
) -> dict[str, str]:
    """The parameters of every voice webhook of an inbound call (blank geo fields included)."""
    spanish = "ES" if to.startswith("+34") else ""
    return {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": sid,
        "CallStatus": status,
        "CallToken": "%7B%22parentCallInfoToken%22%3A%22eyJhbGciOiJFUzI1NiJ9%22%7D",
        "Called": to,
        "CalledCity": "",
        "CalledCountry": spanish,
        "CalledState": "",
        "CalledZip": "",
        "Caller": from_,
        "CallerCity": "",
        "CallerCountry": "ES" if from_.startswith("+34") else "",
        "CallerState": "",
        "CallerZip": "",
        "Direction": "inbound",
        "From": from_,
        "FromCity": "",
        "FromCountry": "ES" if from_.startswith("+34") else "",
        "FromState": "",
        "FromZip": "",
        "StirVerstat": "TN-Validation-Passed-A",
        "To": to,
        "ToCity": "",
        "ToCountry": spanish,
        "ToState": "",
        "ToZip": "",
    }


def signed_headers(auth_token: str, url: str, params: Mapping[str, str]) -> dict[str, str]:
    """The headers Twilio sends with a POST of `params` to `url`, X-Twilio-Signature included."""
    return {
        "User-Agent": "TwilioProxy/1.1",
        "Accept": "*/*",
        "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        SIGNATURE_HEADER: RequestValidator(auth_token).compute_signature(url, dict(params)),
    }


@dataclass(frozen=True)
class Sent:
    """A webhook as sent: enough to deliver it again byte for byte."""

    url: str
    params: Mapping[str, str]
    headers: Mapping[str, str]


class _Auto(enum.Enum):
    """Sign the request as Twilio would (the default of `signature=`)."""

    SIGN = "sign"


_SIGN: Final = _Auto.SIGN


class TwilioDriver:
    """Drives calls against an app through a TestClient, the way Twilio would.

    `public_base` is the address Twilio believes it calls (and signs); it defaults to the
    client's base URL. Requests go to the client with the same path and query.
    """

    def __init__(
        self,
        client: TestClient,
        auth_token: str,
        *,
        public_base: str | None = None,
        headers: Mapping[str, str] | None = None,
        voice: str = VOICE,
        language: str = LANGUAGE,
        account_sid: str = ACCOUNT_SID,
    ) -> None:
        self.client = client
        self.auth_token = auth_token
        self.public_base = (public_base or str(client.base_url)).rstrip("/")
        self.headers = dict(headers or {})
        self.voice = voice
        self.language = language
        self.account_sid = account_sid
        self.call_sid = ""
        self.from_ = ""
        self.to = ""
        self._reply: Reply | None = None
        self.last_wait: Reply | None = None
        self.sent: list[Sent] = []
        app_routes = {getattr(route, "path", "") for route in getattr(client.app, "routes", ())}
        self.routes = CALL_ROUTES & app_routes if app_routes else CALL_ROUTES
        assert self.routes, "the app serves none of flowpbx's call routes"

    # -- plumbing --

    def url(self, path: str) -> str:
        """The public URL of `path` (which may carry a query string)."""
        return self.public_base + path

    def params(self, status: str = "in-progress", **extra: str) -> dict[str, str]:
        """The current call's standard parameters plus `extra`."""
        return {
            **inbound_params(self.call_sid, self.from_, self.to, status, self.account_sid),
            **extra,
        }

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        return str(RequestValidator(self.auth_token).compute_signature(url, dict(params)))

    def post(
        self,
        url: str,
        params: Mapping[str, str],
        *,
        signature: str | _Auto | None = _SIGN,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST form `params` to the public `url`, signed unless `signature` is given or None."""
        sent_headers = {**signed_headers(self.auth_token, url, params), **self.headers}
        if signature is None:
            del sent_headers[SIGNATURE_HEADER]
        elif isinstance(signature, str):
            sent_headers[SIGNATURE_HEADER] = signature
        sent_headers.update(headers or {})
        self.sent.append(Sent(url, dict(params), sent_headers))
        return self._deliver(self.sent[-1])

    def _deliver(self, sent: Sent) -> httpx.Response:
        assert sent.url.startswith(self.public_base + "/"), f"{sent.url} is not on this app"
        parts = urlsplit(sent.url)
        prefix = urlsplit(self.public_base).path.rstrip("/")
        target = parts.path[len(prefix) :] + (f"?{parts.query}" if parts.query else "")
        response: httpx.Response = self.client.post(
            target, data=dict(sent.params), headers=dict(sent.headers)
        )
        return response

    def check(self, response: httpx.Response) -> Reply:
        """Check a voice webhook's answer against the XSD and the driver's expectations."""
        return check_reply(
            response,
            public_base=self.public_base,
            voice=self.voice,
            language=self.language,
            routes=self.routes,
        )

    def _step(self, url: str, params: Mapping[str, str]) -> Reply:
        self._reply = self.check(self.post(url, params))
        return self._reply

    @property
    def reply(self) -> Reply:
        """The TwiML document the call is running now."""
        assert self._reply is not None, "no call started"
        return self._reply

    def _after(self, name: str) -> Verb | None:
        names = self.reply.names
        index = names.index(name)
        return self.reply.verbs[index + 1] if index + 1 < len(names) else None

    def follow(self, name: str) -> Reply:
        """Twilio goes on with the verb after <name> (a Redirect) when <name> sends nothing."""
        following = self._after(name)
        assert following is not None, f"nothing after <{name}>: Twilio would hang up"
        assert following.name == "Redirect", f"after <{name}> Twilio would run <{following.name}>"
        return self._step(following.text, self.params())

    # -- a call --

    def start(self, call_sid: str, from_: str = "+34600111222", to: str = "+34910000000") -> Reply:
        """A new inbound call rings: Twilio posts the incoming webhook."""
        self.call_sid, self.from_, self.to = call_sid, from_, to
        self._reply = None
        self.last_wait = None
        return self._step(self.url("/api/calls/incoming"), self.params("ringing"))

    def press(self, digits: str) -> Reply:
        """The caller keys `digits` during the <Gather> ('' = silence until the timeout)."""
        gather = self.reply.one("Gather")
        finish = gather.get("finishOnKey")
        finish = "#" if finish is None else finish
        finished_on = ""
        if finish and finish in digits:
            digits, finished_on = digits[: digits.index(finish)], finish
        if gather.get("numDigits"):
            digits = digits[: int(gather["numDigits"])]
        if not digits and gather.get("actionOnEmptyResult") != "true":
            return self.follow("Gather")
        extra = {"msg": "Gather End", "FinishedOnKey": finished_on}
        if digits:
            extra["Digits"] = digits
        return self._step(gather["action"], self.params(**extra))

    def dial_result(self, status: str, duration: int = 42) -> Reply:
        """The <Dial> ends with `status` (completed, busy, no-answer, failed, canceled)."""
        dial = self.reply.one("Dial")
        extra = {"DialCallStatus": status, "DialBridged": str(status == "completed").lower()}
        if status != "failed":
            extra["DialCallSid"] = _sid("CA")
        if status == "completed":
            extra["DialCallDuration"] = str(duration)
            if dial.get("record", "do-not-record") != "do-not-record":
                recording = _sid("RE")
                extra["RecordingSid"] = recording
                extra["RecordingUrl"] = (
                    f"https://api.twilio.com/2010-04-01/Accounts/{self.account_sid}"
                    f"/Recordings/{recording}"
                )
        return self._step(dial["action"], self.params(**extra))

    def wait(self, queue_time: int, position: int = 1) -> Reply:
        """Twilio fetches the <Enqueue> waitUrl (the call stays in the queue document)."""
        enqueue = self.reply.one("Enqueue")
        extra = {
            "QueuePosition": str(position),
            "QueueSid": "QU" + "0f" * 16,
            "QueueTime": str(queue_time),
            "AvgQueueTime": str(queue_time // 2),
            "CurrentQueueSize": str(position),
            "MaxQueueSize": "100",
        }
        self.last_wait = self.check(self.post(enqueue["waitUrl"], self.params(**extra)))
        return self.last_wait

    def queue_result(self, result: str, queue_time: int = 0) -> Reply:
        """The caller leaves the queue with `result` (bridged, leave, hangup, queue-full...)."""
        enqueue = self.reply.one("Enqueue")
        extra = {"QueueResult": result}
        if result != "queue-full":
            extra |= {"QueueSid": "QU" + "0f" * 16, "QueueTime": str(queue_time)}
        return self._step(enqueue["action"], self.params(**extra))

    def record(self, url: str | None, duration: int = 12) -> Reply:
        """A voicemail ends: Twilio posts the <Record> action, or (None) runs the next verb."""
        record = self.reply.one("Record")
        if url is None:
            return self.follow("Record")
        extra = {
            "RecordingUrl": url,
            "RecordingDuration": str(duration),
            "RecordingSid": url.rsplit("/", 1)[-1] if "/RE" in url else _sid("RE"),
            "Digits": "#",
        }
        return self._step(record["action"], self.params(**extra))

    def replay(self) -> Reply:
        """Deliver the last webhook again, unchanged (as Twilio's retries do)."""
        assert self.sent, "nothing was sent"
        self._reply = self.check(self._deliver(self.sent[-1]))
        return self._reply

    def call_status(self, status: str, *, signature: str | _Auto | None = _SIGN) -> httpx.Response:
        """A call status callback (no TwiML in the answer)."""
        extra = {"CallbackSource": "call-progress-events", "SequenceNumber": "0"}
        if status == "completed":
            extra |= {"CallDuration": "73", "Duration": "2", "Timestamp": _RFC2822}
        params = self.params(status, **extra)
        return self.post(self.url("/api/webhooks/call-status"), params, signature=signature)

    def recording_status(self, *, signature: str | _Auto | None = _SIGN) -> httpx.Response:
        """A recording status callback for a completed dual-channel Dial recording."""
        recording = _sid("RE")
        params = {
            "AccountSid": self.account_sid,
            "CallSid": self.call_sid,
            "RecordingSid": recording,
            "RecordingUrl": (
                f"https://api.twilio.com/2010-04-01/Accounts/{self.account_sid}"
                f"/Recordings/{recording}"
            ),
            "RecordingStatus": "completed",
            "RecordingDuration": "31",
            "RecordingChannels": "2",
            "RecordingStartTime": _RFC2822,
            "RecordingSource": "DialVerb",
            "RecordingTrack": "both",
            "ErrorCode": "0",
        }
        return self.post(self.url(RECORDING_STATUS_PATH), params, signature=signature)
