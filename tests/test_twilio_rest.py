"""The fake Twilio REST API (tests/twilio_rest.py), checked with the real twilio-python client."""

from __future__ import annotations

import asyncio
import email.utils
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from twilio_fake import ACCOUNT_SID, BASE_URL, TestClient
from twilio_rest import API_KEY, API_SECRET, AUTH_TOKEN, TwilioRest, twilio_rest

TO = "+34911222333"
FROM = "+34955666777"
ANSWER_URL = f"{BASE_URL}/api/outbound/answer?campaign=7"
STATUS_URL = f"{BASE_URL}/api/outbound/status"
EVENTS = ["initiated", "ringing", "answered", "completed"]


# aiohttp 3.14 deprecates BasicAuth and the auth= parameter, which AsyncTwilioHttpClient.request
# (twilio 9.13) uses on every call.


@pytest.fixture(scope="module")
def shared() -> Iterator[TwilioRest]:
    with twilio_rest() as server:
        yield server


@pytest.fixture
def fake(shared: TwilioRest) -> TwilioRest:
    """One server for the module (stopping one takes ~0.2 s), emptied before each test."""
    shared.reset()
    return shared


def make_client(
    fake: TwilioRest, username: str, password: str, account: str | None = None
) -> Client:
    client = Client(username, password, account)
    client.api.base_url = fake.base_url
    return client


@pytest.fixture
def clients(fake: TwilioRest) -> Iterator[list[Client]]:
    """Sync clients made by a test; their requests sessions are closed afterwards."""
    made: list[Client] = []
    yield made
    for client in made:
        client.http_client.session.close()


@pytest.fixture
def client(fake: TwilioRest, clients: list[Client]) -> Client:
    made = make_client(fake, ACCOUNT_SID, AUTH_TOKEN)
    clients.append(made)
    return made


def create(client: Client, **kwargs: object) -> Any:
    """`client.calls.create` with our To, From and Url unless given (None leaves one out)."""
    params = {"to": TO, "from_": FROM, "url": ANSWER_URL} | kwargs
    return client.calls.create(**{k: v for k, v in params.items() if v is not None})


# --- creating calls ---------------------------------------------------------------------------


def test_sync_client_creates_a_call_and_the_fake_records_the_exact_form(
    fake: TwilioRest, client: Client
) -> None:
    call = create(
        client,
        method="POST",
        status_callback=STATUS_URL,
        status_callback_method="POST",
        status_callback_event=EVENTS,
        timeout=25,
        record=True,
        machine_detection="Enable",
    )

    [request] = fake.created()
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    assert request.username == ACCOUNT_SID
    assert dict(request.form) == {
        "To": (TO,),
        "From": (FROM,),
        "Url": (ANSWER_URL,),
        "Method": ("POST",),
        "StatusCallback": (STATUS_URL,),
        "StatusCallbackMethod": ("POST",),
        "StatusCallbackEvent": tuple(EVENTS),
        "Timeout": ("25",),
        "Record": ("true",),
        "MachineDetection": ("Enable",),
    }
    assert request.one("Url") == ANSWER_URL
    with pytest.raises(AssertionError, match="StatusCallbackEvent was sent 4 times"):
        request.one("StatusCallbackEvent")
    with pytest.raises(KeyError):
        request.one("Twiml")

    sid = call.sid
    assert len(sid) == 34
    assert sid.startswith("CA")
    int(sid[2:], 16)
    assert call.status == "queued"
    assert call.direction == "outbound-api"
    assert call.account_sid == ACCOUNT_SID
    assert call.to == TO
    assert call._from == FROM
    assert call.api_version == "2010-04-01"
    assert call.price is None
    assert call.date_created is not None
    assert call.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json"

    fake_call = fake.calls[sid]
    assert (fake_call.to, fake_call.from_, fake_call.url) == (TO, FROM, ANSWER_URL)
    assert fake_call.status_callback_events == tuple(EVENTS)
    assert (fake_call.timeout, fake_call.record, fake_call.status) == (25, True, "queued")
    assert fake_call.sequence == 0


def test_async_client_creates_updates_and_fetches(fake: TwilioRest) -> None:
    async def main() -> tuple[list[str], str, str]:
        http = AsyncTwilioHttpClient()
        try:
            client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=http)
            client.api.base_url = fake.base_url
            first = await client.calls.create_async(
                to=TO,
                from_=FROM,
                url=ANSWER_URL,
                status_callback=STATUS_URL,
                status_callback_event=["answered", "completed"],
            )
            second = await client.calls.create_async(
                to="client:ana", from_=FROM, twiml="<Response><Say>Hola</Say></Response>"
            )
            updated = await client.calls(first.sid).update_async(status="canceled")
            fetched = await client.calls(first.sid).fetch_async()
            return [first.sid, second.sid], updated.status, fetched.status
        finally:
            await http.close()

    sids, updated, fetched = asyncio.run(main())

    created = fake.created()
    assert [r.form["To"] for r in created] == [(TO,), ("client:ana",)]
    assert created[0].form["StatusCallbackEvent"] == ("answered", "completed")
    assert created[1].one("Twiml") == "<Response><Say>Hola</Say></Response>"
    assert "Url" not in created[1].form
    assert list(fake.calls) == sids
    assert updated == fetched == "canceled"
    assert [r.kind for r in fake.received] == ["create", "create", "update", "fetch"]
    assert [r.at for r in fake.received] == sorted(r.at for r in fake.received)


@pytest.mark.parametrize(
    ("kwargs", "code", "message"),
    [
        ({"to": ""}, 21201, "No 'To' number is specified"),
        ({"from_": ""}, 21213, "A 'From' phone number is required."),
        ({"url": None}, 21205, "Url parameter is required."),
        ({"url": "not a url"}, 21205, "Url is not a valid URL: not a url"),
        ({"to": "911222333"}, 21211, "The 'To' number 911222333 is not a valid phone number."),
    ],
)
def test_bad_creations_raise_twilio_errors(
    fake: TwilioRest, client: Client, kwargs: dict[str, object], code: int, message: str
) -> None:
    with pytest.raises(TwilioRestException) as caught:
        create(client, **kwargs)
    assert (caught.value.status, caught.value.code) == (400, code)
    assert message in caught.value.msg
    assert fake.created() == []
    assert fake.calls == {}
    assert [(r.kind, r.status) for r in fake.received] == [("create", 400)]


def test_error_bodies_have_twilios_shape(fake: TwilioRest) -> None:
    url = f"{fake.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    with httpx.Client(auth=(ACCOUNT_SID, AUTH_TOKEN)) as http:
        response = http.post(url, data={"From": FROM, "Url": ANSWER_URL})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "code": 21201,
        "message": "No 'To' number is specified",
        "more_info": "https://www.twilio.com/docs/errors/21201",
        "status": 400,
    }


def test_fail_next_answers_the_next_request_with_that_error(
    fake: TwilioRest, client: Client
) -> None:
    fake.fail_next(status=429, code=20429, message="Too Many Requests")
    with pytest.raises(TwilioRestException) as caught:
        create(client)
    assert (caught.value.status, caught.value.code) == (429, 20429)
    assert "Too Many Requests" in caught.value.msg

    call = create(client)
    assert [r.status for r in fake.received] == [429, 201]
    assert [r.form["To"] for r in fake.created()] == [(TO,)]
    assert list(fake.calls) == [call.sid]


def test_wait_returns_once_a_background_creation_arrived(fake: TwilioRest, client: Client) -> None:
    worker = threading.Thread(target=create, args=(client,))
    worker.start()
    [request] = fake.wait(1, timeout=5)
    worker.join()
    assert request.one("To") == TO
    with pytest.raises(AssertionError, match="expected 2 accepted 'create'"):
        fake.wait(2, timeout=0.05)


# --- authentication --------------------------------------------------------------------------


def test_wrong_auth_token_is_401_20003(fake: TwilioRest, clients: list[Client]) -> None:
    wrong = make_client(fake, ACCOUNT_SID, "not-the-token")
    clients.append(wrong)
    with pytest.raises(TwilioRestException) as caught:
        create(wrong)
    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert [(r.status, r.username) for r in fake.received] == [(401, ACCOUNT_SID)]
    assert fake.created() == []


def test_missing_auth_is_401_20003(fake: TwilioRest) -> None:
    url = f"{fake.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    with httpx.Client() as http:
        response = http.post(url, data={"To": TO, "From": FROM, "Url": ANSWER_URL})
    assert response.status_code == 401
    assert response.json()["code"] == 20003
    assert response.json()["message"] == "Authenticate"
    assert response.headers["www-authenticate"].startswith("Basic")
    assert fake.received[0].username == ""


def test_api_key_auth_works_and_its_secret_is_checked(
    fake: TwilioRest, clients: list[Client]
) -> None:
    keyed = make_client(fake, API_KEY, API_SECRET, ACCOUNT_SID)
    bad_secret = make_client(fake, API_KEY, AUTH_TOKEN, ACCOUNT_SID)
    clients.extend([keyed, bad_secret])

    create(keyed)
    with pytest.raises(TwilioRestException) as caught:
        create(bad_secret)
    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert [(r.username, r.status) for r in fake.received] == [(API_KEY, 201), (API_KEY, 401)]
    assert fake.created()[0].path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"


def test_another_account_in_the_path_is_refused(fake: TwilioRest, clients: list[Client]) -> None:
    other = "AC" + "0f" * 16
    stranger = make_client(fake, API_KEY, API_SECRET, other)
    clients.append(stranger)
    with pytest.raises(TwilioRestException) as caught:
        create(stranger)
    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert fake.received[0].path == f"/2010-04-01/Accounts/{other}/Calls.json"


# --- updating calls and queue members --------------------------------------------------------


def test_update_redirects_hangs_up_and_unknown_sids_are_404(
    fake: TwilioRest, client: Client
) -> None:
    sid = create(client).sid
    fake.calls[sid].status = "in-progress"

    client.calls(sid).update(url=f"{BASE_URL}/api/next", method="GET")
    assert (fake.calls[sid].url, fake.calls[sid].method) == (f"{BASE_URL}/api/next", "GET")
    client.calls(sid).update(status="canceled")
    assert fake.calls[sid].status == "in-progress"  # canceled leaves a live call alone
    done = client.calls(sid).update(status="completed")
    assert done.status == fake.calls[sid].status == "completed"
    [redirect, cancel, hangup] = fake.accepted("update")
    assert dict(redirect.form) == {"Url": (f"{BASE_URL}/api/next",), "Method": ("GET",)}
    assert redirect.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json"
    assert (cancel.one("Status"), hangup.one("Status")) == ("canceled", "completed")
    assert len(fake.calls[sid].updates) == 3

    with pytest.raises(TwilioRestException) as ended:
        client.calls(sid).update(url=f"{BASE_URL}/api/again")
    assert (ended.value.status, ended.value.code) == (400, 21220)

    unknown = "CA" + "0" * 32
    with pytest.raises(TwilioRestException) as missing:
        client.calls(unknown).update(status="completed")
    assert (missing.value.status, missing.value.code) == (404, 20404)
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{unknown}.json"
    assert f"The requested resource {path} was not found" in missing.value.msg
    with pytest.raises(TwilioRestException) as fetch_missing:
        client.calls(unknown).fetch()
    assert (fetch_missing.value.status, fetch_missing.value.code) == (404, 20404)


def test_queue_member_update_dequeues_that_caller(fake: TwilioRest, client: Client) -> None:
    queue = "QU" + "1a" * 16
    first, second = fake.add_call(), fake.add_call(from_="+34600111222")
    fake.enqueue(first.sid, queue)
    fake.enqueue(second.sid, queue)
    bridge = f"{BASE_URL}/api/queue/bridge?agent=ana"

    member = client.queues(queue).members(second.sid).update(url=bridge, method="POST")
    assert member.call_sid == second.sid
    assert member.queue_sid == queue
    assert member.position == 2
    assert member.wait_time == 0
    assert member.uri == (
        f"/2010-04-01/Accounts/{ACCOUNT_SID}/Queues/{queue}/Members/{second.sid}.json"
    )
    [request] = fake.accepted("member")
    assert dict(request.form) == {"Url": (bridge,), "Method": ("POST",)}
    assert (second.url, second.method, second.queue_sid) == (bridge, "POST", None)
    assert fake.queue(queue) == [first]

    front = client.queues(queue).members("Front").fetch()
    assert (front.call_sid, front.position) == (first.sid, 1)

    for sid in (second.sid, "CA" + "0" * 32):  # dequeued already, unknown
        with pytest.raises(TwilioRestException) as caught:
            client.queues(queue).members(sid).update(url=bridge, method="POST")
        assert (caught.value.status, caught.value.code) == (404, 20404)


# --- Twilio's webhooks -----------------------------------------------------------------------


@dataclass
class Hooks:
    """A tiny app standing for the server under test: validates and keeps every webhook."""

    token: str
    got: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        body = (await request.body()).decode()
        params = dict(parse_qsl(body, keep_blank_values=True))
        url = str(request.url)
        signature = request.headers.get("X-Twilio-Signature", "")
        if not RequestValidator(self.token).validate(url, params, signature):
            return Response(status_code=403)
        self.got.append((request.method, url, params))
        return Response("<Response/>", media_type="application/xml")


@pytest.fixture
def hooks() -> Hooks:
    return Hooks(AUTH_TOKEN)


@pytest.fixture
def webhook(hooks: Hooks) -> Iterator[TestClient]:
    app = Starlette(routes=[Route("/api/outbound/{name}", hooks.handle, methods=["GET", "POST"])])
    with TestClient(app) as test_client:
        yield test_client


def test_answer_posts_the_signed_outbound_api_parameters(
    fake: TwilioRest, client: Client, hooks: Hooks, webhook: TestClient
) -> None:
    sid = create(client, status_callback=STATUS_URL, status_callback_event=EVENTS).sid

    response = fake.answer(sid, webhook, ForwardedFrom="+34910000000")

    assert response.status_code == 200
    [(method, url, params)] = hooks.got
    assert (method, url) == ("POST", ANSWER_URL)
    assert params == {
        "CallSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": FROM,
        "To": TO,
        "Caller": FROM,
        "Called": TO,
        "CallStatus": "in-progress",
        "Direction": "outbound-api",
        "ApiVersion": "2010-04-01",
        "ForwardedFrom": "+34910000000",
    }
    assert fake.calls[sid].status == "in-progress"
    assert client.calls(sid).fetch().status == "in-progress"
    with pytest.raises(AssertionError, match="cannot be answered"):
        fake.answer(sid, webhook)


def test_answer_is_signed_with_the_auth_token_only(fake: TwilioRest, client: Client) -> None:
    strict = Hooks("some-other-token")
    app = Starlette(routes=[Route("/api/outbound/{name}", strict.handle, methods=["POST"])])
    sid = create(client).sid
    with TestClient(app) as other:
        assert fake.answer(sid, other).status_code == 403
    assert strict.got == []


def test_inline_twiml_calls_are_not_fetched(
    fake: TwilioRest, client: Client, webhook: TestClient
) -> None:
    sid = create(client, url=None, twiml="<Response><Hangup/></Response>").sid
    with pytest.raises(AssertionError, match="inline TwiML"):
        fake.answer(sid, webhook)


def test_status_callbacks_are_signed_and_numbered(
    fake: TwilioRest, client: Client, hooks: Hooks, webhook: TestClient
) -> None:
    sid = create(client, status_callback=STATUS_URL, status_callback_event=EVENTS).sid

    for status in ("initiated", "ringing"):
        assert fake.send_status(sid, status, webhook).status_code == 200
    fake.answer(sid, webhook)
    fake.send_status(sid, "in-progress", webhook)
    fake.send_status(sid, "completed", webhook, SipResponseCode="200")

    callbacks = [params for method, url, params in hooks.got if url == STATUS_URL]
    assert all(method == "POST" for method, _, _ in hooks.got)
    assert [p["CallStatus"] for p in callbacks] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    assert [p["SequenceNumber"] for p in callbacks] == ["0", "1", "2", "3"]
    assert fake.calls[sid].sequence == 4
    for params in callbacks:
        assert params["CallSid"] == sid
        assert params["AccountSid"] == ACCOUNT_SID
        assert (params["From"], params["To"]) == (FROM, TO)
        assert params["Direction"] == "outbound-api"
        assert params["CallbackSource"] == "call-progress-events"
        assert params["ApiVersion"] == "2010-04-01"
        assert email.utils.parsedate_to_datetime(params["Timestamp"]).utcoffset() is not None
    assert "CallDuration" not in callbacks[2]
    last = callbacks[-1]
    assert (last["CallDuration"], last["Duration"], last["SipResponseCode"]) == ("0", "0", "200")
    assert fake.calls[sid].status == "completed"


def test_status_callbacks_twilio_would_not_send_are_refused(
    fake: TwilioRest, client: Client, webhook: TestClient
) -> None:
    subscribed = create(client, status_callback=STATUS_URL).sid
    silent = create(client).sid
    with pytest.raises(AssertionError, match="did not subscribe to 'ringing'"):
        fake.send_status(subscribed, "ringing", webhook)
    with pytest.raises(AssertionError, match="no StatusCallback"):
        fake.send_status(silent, "completed", webhook)
    assert fake.send_status(subscribed, "no-answer", webhook).status_code == 200
    assert fake.calls[subscribed].sequence == 1


def test_get_status_callbacks_carry_the_parameters_in_the_signed_url(
    fake: TwilioRest, client: Client, hooks: Hooks, webhook: TestClient
) -> None:
    sid = create(client, status_callback=f"{STATUS_URL}?leg=a", status_callback_method="GET").sid
    assert fake.send_status(sid, "completed", webhook).status_code == 200
    [(method, url, params)] = hooks.got
    assert method == "GET"
    assert params == {}
    assert url.startswith(f"{STATUS_URL}?leg=a&")
    query = dict(parse_qsl(url.split("?", 1)[1]))
    assert (query["leg"], query["CallStatus"], query["SequenceNumber"]) == ("a", "completed", "0")


def test_close_stops_the_server_and_its_thread() -> None:
    with twilio_rest(auth_token="another-token") as own:
        url = f"{own.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/CA{'0' * 32}.json"
        with httpx.Client(auth=(ACCOUNT_SID, "another-token")) as http:
            assert http.get(url).json()["code"] == 20404
        name = f"twilio-rest-{own.base_url.rsplit(':', 1)[1]}"
        assert name in {thread.name for thread in threading.enumerate()}
    assert name not in {thread.name for thread in threading.enumerate()}
    with pytest.raises(httpx.ConnectError), httpx.Client() as http:
        http.get(url)
    own.close()  # idempotent
