"""The REST API end to end: the real app with its database (SQLite and a real PostgreSQL),
keys made as `flowpbx apikey create` makes them, and Twilio's REST API faked at HTTP level.

Every endpoint refuses requests without a key, with a wrong one and with another identity's;
bad bodies get the JSON error and create nothing; tokens decode to the right Voice grant;
outbound calls reach the fake with Twilio's parameters, run their flow when answered, and keep
Twilio's pace.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import jwt
import pytest

from flowpbx.app import build_app
from flowpbx.db import apikeys
from flowpbx.db.database import Database
from flowpbx.settings import Settings
from twilio_fake import BASE_URL, Reply, TestClient, check_reply, signed_headers
from twilio_rest import TwilioRest, twilio_rest

ROOT = Path(__file__).resolve().parents[1]
FLOWS = ROOT / "flows"
APP_SID = "AP" + "a1" * 16
COMPANY = "+34910000000"
SECOND_NUMBER = "+34910000001"
CUSTOMER = "+34612345678"
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def shared_fake() -> Iterator[TwilioRest]:
    with twilio_rest() as server:
        yield server


@pytest.fixture
def fake(shared_fake: TwilioRest) -> TwilioRest:
    shared_fake.reset()
    return shared_fake


def settings_for(database_url: str, fake: TwilioRest, **overrides: object) -> Settings:
    settings = Settings(
        twilio_auth_token=fake.auth_token,
        twilio_account_sid=fake.account_sid,
        twilio_api_key=fake.api_key,
        twilio_api_secret=fake.api_secret,
        twilio_phone_number=COMPANY,
        twilio_twiml_app_sid=APP_SID,
        numbers={SECOND_NUMBER: "seguros"},
        public_base_url=BASE_URL,
        flows_dir=FLOWS,
        database_url_override=database_url,
        twilio_api_url=fake.base_url,
        hours_override="open",
        calls_per_second=50,
    )
    return replace(settings, **overrides)  # type: ignore[arg-type]


@dataclass
class Api:
    client: TestClient
    fake: TwilioRest
    db: Database
    admin: str
    ana: str
    bob: str
    anonymous: str
    """A non-admin key with no identity."""

    def call(self, key: str | None, **body: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response: httpx.Response = self.client.post("/api/calls", json=body, headers=headers)
        return response

    def token(self, key: str | None, identity: object = "ana") -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        body = {"identity": identity}
        response: httpx.Response = self.client.post("/api/token", json=body, headers=headers)
        return response


def running(settings: Settings, fake: TwilioRest) -> Iterator[Api]:
    app = build_app(settings)
    with TestClient(app, base_url=BASE_URL) as client:  # the lifespan migrates the database
        db = Database(settings.database_url)
        try:
            keys = {
                name: apikeys.create(db, name, identity=identity, admin=admin, now=NOW)[1]
                for name, identity, admin in (
                    ("admin", None, True),
                    ("ana", "ana", False),
                    ("bob", "bob", False),
                    ("anonymous", None, False),
                )
            }
            yield Api(client=client, db=db, **keys, fake=fake)
        finally:
            db.dispose()


@pytest.fixture
def api(database_url: str, fake: TwilioRest) -> Iterator[Api]:
    yield from running(settings_for(database_url, fake), fake)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'api.sqlite3'}"


# -- keys: every endpoint --

ENDPOINTS = [
    ("POST", "/api/token", {"identity": "ana"}),
    ("POST", "/api/calls", {"to": CUSTOMER, "flow": "seguros"}),
    ("GET", "/api/keys", None),
    ("GET", "/api/openapi.json", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_every_endpoint_needs_a_valid_key(
    api: Api, method: str, path: str, body: object, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = api.ana[:-3] + ("xyz" if not api.ana.endswith("xyz") else "abc")
    for headers, detail in (
        ({}, "an API key is required"),
        ({"Authorization": f"Bearer {wrong}"}, "not valid"),
        ({"Authorization": "Bearer fpbx_nonsense"}, "not valid"),
        ({"Authorization": f"Basic {api.ana}"}, "expected Authorization: Bearer"),
    ):
        with caplog.at_level(logging.WARNING, logger="flowpbx.api"):
            response = api.client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["content-type"] == "application/json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["error"] == "unauthorized"
        assert detail in response.json()["detail"]
    assert api.fake.received == []  # nothing reached Twilio
    # Failed attempts are logged, never with the key.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"refused {method} {path}" in logged
    assert api.ana not in logged
    assert wrong not in logged
    assert api.ana[len("fpbx_12345678_") :] not in logged  # the secret part


def test_a_revoked_key_stops_working_at_once(api: Api) -> None:
    assert api.token(api.ana).status_code == 200
    apikeys.revoke(api.db, "ana", now=NOW)
    response = api.token(api.ana)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_a_key_acts_only_for_its_own_identity(api: Api) -> None:
    response = api.token(api.ana, "bob")
    assert response.status_code == 403
    assert response.json() == {
        "error": "forbidden",
        "detail": "this key may act for its own identity 'ana' only (not 'bob')",
    }
    assert api.token(api.anonymous, "ana").status_code == 403
    assert api.token(api.admin, "bob").status_code == 200
    # Calls connected to another softphone: refused, and nothing placed.
    response = api.call(api.ana, to=CUSTOMER, identity="bob")
    assert response.status_code == 403
    assert api.call(api.anonymous, to=CUSTOMER).status_code == 422  # connect to no one
    assert api.fake.received == []
    # Listing keys is for admins.
    assert (
        api.client.get("/api/keys", headers={"Authorization": f"Bearer {api.ana}"}).status_code
        == 403
    )


# -- bad input: the JSON error, nothing created --


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "detail"),
    [
        (
            b'{"to": "+34612345678", "flow": "seguros"',
            "application/json",
            400,
            "bad_json",
            "not valid JSON",
        ),
        (b"[1, 2]", "application/json", 422, "invalid", "the body: expected `object`, got `array`"),
        (
            b'{"to": 34612345678, "flow": "seguros"}',
            "application/json",
            422,
            "invalid",
            "to: expected `str`, got `int`",
        ),
        (
            b'{"to": "612 34 56 78", "flow": "seguros"}',
            "application/json",
            422,
            "invalid",
            "to: expected a phone number in E.164 form, like +34612345678",
        ),
        (
            b'{"to": "+34612345678", "flow": "seguros", "priority": 1}',
            "application/json",
            422,
            "invalid",
            "unknown field `priority`",
        ),
        (b'{"flow": "seguros"}', "application/json", 422, "invalid", "missing required field `to`"),
        (
            b"to=%2B34612345678",
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
            "expected application/json",
        ),
        (
            b'{"to": "+34612345678", "flow": "' + b"x" * 70_000 + b'"}',
            "application/json",
            413,
            "body_too_large",
            "at most 65536 bytes",
        ),
    ],
)
def test_bad_bodies_get_the_json_error_and_create_nothing(
    api: Api, body: bytes, content_type: str, status: int, code: str, detail: str
) -> None:
    response = api.client.post(
        "/api/calls",
        content=body,
        headers={"Authorization": f"Bearer {api.admin}", "Content-Type": content_type},
    )
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert detail in response.json()["detail"]
    assert api.fake.received == []


def test_bad_identities_for_tokens(api: Api) -> None:
    for identity in ("user-123", "", "a" * 122, "ana maria", "client:ana"):
        response = api.token(api.admin, identity)
        assert response.status_code == 422, identity
        assert response.json() == {
            "error": "invalid",
            "detail": "identity: expected a softphone identity: letters, digits and "
            "underscores only, at most 121 (Twilio client identities), like user_123",
        }
    for wrong_type in (7, None):
        response = api.token(api.admin, wrong_type)
        assert response.status_code == 422
        assert response.json()["detail"].startswith("identity: expected `str`, got")


# -- tokens --


def test_a_token_decodes_to_the_voice_grant(api: Api) -> None:
    before = int(time.time())
    response = api.token(api.ana, "ana")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "identity"}  # the seed's shape, exactly
    assert body["identity"] == "ana"
    header = jwt.get_unverified_header(body["token"])
    assert header == {"alg": "HS256", "typ": "JWT", "cty": "twilio-fpa;v=1"}
    claims = jwt.decode(body["token"], api.fake.api_secret, algorithms=["HS256"])
    assert claims["iss"] == api.fake.api_key
    assert claims["sub"] == api.fake.account_sid
    assert claims["grants"] == {
        "identity": "ana",
        "voice": {"incoming": {"allow": True}, "outgoing": {"application_sid": APP_SID}},
    }
    assert before <= claims["exp"] - 3600 <= int(time.time()) + 1
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(body["token"], "another-secret-of-32-bytes-or-more!!", algorithms=["HS256"])


def test_token_ttl_is_configurable(sqlite_url: str, fake: TwilioRest) -> None:
    for api in running(settings_for(sqlite_url, fake, token_ttl=600), fake):
        before = int(time.time())
        token = api.token(api.ana).json()["token"]
        after = int(time.time())
        claims = jwt.decode(token, fake.api_secret, algorithms=["HS256"])
        assert before + 600 <= claims["exp"] <= after + 600


def test_without_twilio_keys_tokens_say_what_is_missing(sqlite_url: str, fake: TwilioRest) -> None:
    settings = settings_for(sqlite_url, fake, twilio_api_secret="", twilio_twiml_app_sid="")
    for api in running(settings, fake):
        response = api.token(api.ana)
        assert response.status_code == 503
        assert response.json() == {
            "error": "not_configured",
            "detail": "softphone tokens need TWILIO_API_SECRET, TWILIO_TWIML_APP_SID to be set "
            "in the environment",
        }


# -- outbound calls --


def test_a_call_for_a_flow_reaches_twilio_and_runs_the_flow_when_answered(api: Api) -> None:
    response = api.call(api.admin, to=CUSTOMER, flow="seguros")
    assert response.status_code == 201, response.text
    body = response.json()
    (created,) = api.fake.created()
    assert body == {
        "sid": body["sid"],
        "status": "queued",
        "to": CUSTOMER,
        "from": COMPANY,
        "flow": "seguros",
        "identity": None,
        "waited": body["waited"],
    }
    assert body["sid"] in api.fake.calls
    # What Twilio got, with its own parameter names, signed with the API key.
    assert created.username == api.fake.api_key
    assert created.path == f"/2010-04-01/Accounts/{api.fake.account_sid}/Calls.json"
    assert created.one("To") == CUSTOMER
    assert created.one("From") == COMPANY
    assert created.one("Url") == f"{BASE_URL}/api/calls/outbound?flow=seguros"
    assert created.one("Method") == "POST"
    assert created.one("StatusCallback") == f"{BASE_URL}/api/webhooks/call-status"
    assert created.one("StatusCallbackMethod") == "POST"
    assert created.form["StatusCallbackEvent"] == ("initiated", "ringing", "answered", "completed")
    # The person called answers: the flow runs for them (seguros, open: its main menu).
    answered = api.fake.answer(body["sid"], api.client)
    assert answered.status_code == 200
    reply = check_reply(answered)
    gather = reply.one("Gather")
    assert "Para hablar con un agente, pulse 9." in " ".join(reply.says)
    assert gather["action"].startswith(f"{BASE_URL}/api/calls/gather?seq=")
    # The status callbacks are signed webhooks the service accepts.
    assert api.fake.send_status(body["sid"], "ringing", api.client).status_code == 204


def test_a_call_without_a_flow_connects_the_keys_softphone(api: Api) -> None:
    response = api.call(api.ana, to=CUSTOMER, **{"from": SECOND_NUMBER})
    assert response.status_code == 201, response.text
    assert response.json()["identity"] == "ana"
    assert response.json()["from"] == SECOND_NUMBER
    (created,) = api.fake.created()
    assert created.one("Url") == f"{BASE_URL}/api/calls/connect?identity=ana"
    reply = check_reply(api.fake.answer(response.json()["sid"], api.client))
    dial = reply.one("Dial")
    assert dial["answerOnBridge"] == "true"
    assert [c.text for c in dial.named("Client")] == ["ana"]


@pytest.mark.parametrize(
    ("body", "code", "detail"),
    [
        (
            {"to": "+447700900123", "flow": "seguros"},
            "destination",
            "outside the allowed destinations",
        ),
        ({"to": "+34806123456", "flow": "seguros"}, "destination", "blocked destination (+34806"),
        ({"to": "+34905123456", "flow": "seguros"}, "destination", "blocked destination (+34905"),
        (
            {"to": CUSTOMER, "flow": "seguros", "from": "+34699999999"},
            "caller_id",
            "not one of this service's numbers",
        ),
        (
            {"to": CUSTOMER, "flow": "nonexistent"},
            "unknown_flow",
            "no flow named 'nonexistent'; loaded: seguros",
        ),
    ],
)
def test_refused_destinations_place_nothing(
    api: Api, body: dict[str, str], code: str, detail: str
) -> None:
    response = api.call(api.admin, **body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == code
    assert detail in response.json()["detail"]
    assert api.fake.received == []


def test_twilio_errors_are_reported_with_their_code(api: Api) -> None:
    api.fake.fail_next(status=400, code=21215, message="Geographic permission denied")
    response = api.call(api.admin, to=CUSTOMER, flow="seguros")
    assert response.status_code == 502
    assert response.json() == {
        "error": "twilio_error",
        "detail": "Twilio refused the call: Geographic permission denied (Twilio error 21215)",
    }


def test_a_burst_keeps_twilios_pace_and_drops_nothing(sqlite_url: str, fake: TwilioRest) -> None:
    for api in running(settings_for(sqlite_url, fake, calls_per_second=5), fake):

        def place(_: int, api: Api = api) -> httpx.Response:
            return api.call(api.admin, to=CUSTOMER, flow="seguros")

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(place, range(12)))
        assert [r.status_code for r in responses] == [201] * 12  # none dropped
        created = fake.created()
        assert len(created) == 12
        # Requests are sent 0.2 s apart; they reach Twilio give or take the network's jitter
        # (the first one also opens the connection). Whatever 6 calls in a row: at least
        # 5 gaps of 0.2 s between the first and the last, less that jitter.
        arrivals = [r.at for r in created]
        spans = [b - a for a, b in zip(arrivals, arrivals[5:], strict=False)]
        assert min(spans) >= 1.0 - 0.2, spans
        assert arrivals[-1] - arrivals[0] >= 11 * 0.2 - 0.2
        # The last calls waited their turn, and said so.
        assert max(r.json()["waited"] for r in responses) >= 1.5


def test_calls_beyond_the_longest_wait_are_refused_with_retry_after(
    sqlite_url: str, fake: TwilioRest
) -> None:
    for api in running(settings_for(sqlite_url, fake, calls_per_second=0.5, call_wait=0), fake):
        assert api.call(api.admin, to=CUSTOMER, flow="seguros").status_code == 201
        response = api.call(api.admin, to=CUSTOMER, flow="seguros")
        assert response.status_code == 429
        assert response.json()["error"] == "rate_limited"
        assert response.headers["retry-after"] in ("1", "2")  # 2 s, less the time since
        assert len(fake.created()) == 1


# -- the softphone calling out --


def softphone(api: Api, to: str, identity: str = "ana") -> Reply:
    params = {
        "AccountSid": api.fake.account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": "CA" + "e0" * 16,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": f"client:{identity}",
        "Caller": f"client:{identity}",
        "To": to,
        "Called": "",
        "ApplicationSid": APP_SID,
    }
    url = f"{BASE_URL}/api/calls/incoming"
    response = api.client.post(
        url, data=params, headers=signed_headers(api.fake.auth_token, url, params)
    )
    return check_reply(response)


def test_a_softphone_dials_numbers_with_the_company_caller_id(api: Api) -> None:
    reply = softphone(api, "+34 612 34 56 78")
    dial = reply.one("Dial")
    assert dial["callerId"] == COMPANY
    assert [n.text for n in dial.named("Number")] == [CUSTOMER]
    assert not reply.has("Gather")  # never the IVR


def test_a_softphone_calls_another_softphone(api: Api) -> None:
    dial = softphone(api, "client:bob").one("Dial")
    assert [c.text for c in dial.named("Client")] == ["bob"]
    assert dial.get("callerId") is None


@pytest.mark.parametrize("to", ["+34806123456", "+447700900123", "hello", "", "client:bad-id"])
def test_a_softphone_cannot_reach_blocked_destinations(api: Api, to: str) -> None:
    reply = softphone(api, to)
    assert reply.names == ("Say", "Hangup")
    assert reply.says == ("Lo sentimos, no es posible llamar a ese número.",)
    assert reply.one("Say")["voice"] == "Polly.Lucia"


# -- CORS --


def test_cors_lets_the_softphones_origin_in_and_no_other(sqlite_url: str, fake: TwilioRest) -> None:
    origin = "https://agents.example.com"
    for api in running(settings_for(sqlite_url, fake, cors_origins=(origin,)), fake):
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        ok = api.client.options("/api/token", headers={"Origin": origin, **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == origin
        bad = api.client.options(
            "/api/token", headers={"Origin": "https://evil.example", **preflight}
        )
        assert bad.status_code == 400
        assert "access-control-allow-origin" not in bad.headers
        real = api.client.post(
            "/api/token",
            json={"identity": "ana"},
            headers={"Origin": origin, "Authorization": f"Bearer {api.ana}"},
        )
        assert real.headers["access-control-allow-origin"] == origin


# -- pagination --


def test_keys_are_listed_in_pages(api: Api) -> None:
    for n in range(5):
        apikeys.create(api.db, f"extra{n}", identity=None, admin=False, now=NOW)
    headers = {"Authorization": f"Bearer {api.admin}"}
    names: list[str] = []
    cursor = ""
    pages = 0
    while True:
        page = api.client.get(
            "/api/keys", params={"limit": 3, "cursor": cursor}, headers=headers
        ).json()
        names += [k["name"] for k in page["keys"]]
        pages += 1
        assert all(
            set(k) == {"id", "name", "prefix", "identity", "admin", "createdAt", "lastUsedAt"}
            for k in page["keys"]
        )
        if page["nextCursor"] is None:
            break
        cursor = page["nextCursor"]
    assert names == [
        "admin",
        "ana",
        "bob",
        "anonymous",
        "extra0",
        "extra1",
        "extra2",
        "extra3",
        "extra4",
    ]
    assert pages == 3
    bad = api.client.get("/api/keys", params={"cursor": "abc"}, headers=headers)
    assert bad.status_code == 422
    assert bad.json()["detail"] == "cursor: not a cursor this API gave (use nextCursor)"
    assert api.client.get("/api/keys", params={"limit": 0}, headers=headers).status_code == 422


def test_a_placed_call_keeps_its_flow_when_its_state_is_lost(
    tmp_path: Path, sqlite_url: str, fake: TwilioRest
) -> None:
    """The number called is the customer's, which names no flow: the webhook URLs of a call
    flowpbx placed name its flow, so that a lost state is recovered in the right one."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "seguros.yaml").write_text((FLOWS / "seguros.yaml").read_text("utf-8"), "utf-8")
    private = ROOT / "tests" / "flows" / "engine" / "sensitive.yaml"
    (flows / "privados.yaml").write_text(private.read_text("utf-8"), "utf-8")
    settings = settings_for(sqlite_url, fake, flows_dir=flows, numbers={}, default_flow="seguros")
    for api in running(settings, fake):
        sid = api.call(api.admin, to=CUSTOMER, flow="datos-privados").json()["sid"]
        reply = check_reply(api.fake.answer(sid, api.client))
        assert reply.says == ("Marque su PIN de cuatro cifras.",)
        action = reply.one("Gather")["action"]
        assert action == f"{BASE_URL}/api/calls/gather?seq=1&flow=datos-privados"
    # A new process with the call state gone (memory store): Twilio posts the keys.
    elsewhere = replace(settings, database_url_override=f"sqlite:///{tmp_path / 'b.sqlite3'}")
    for api in running(elsewhere, fake):
        params = {
            "AccountSid": fake.account_sid,
            "CallSid": sid,
            "From": COMPANY,
            "To": CUSTOMER,
            "Direction": "outbound-api",
            "CallStatus": "in-progress",
            "Digits": "1234",
        }
        response = api.client.post(
            action, data=params, headers=signed_headers(fake.auth_token, action, params)
        )
        recovered = check_reply(response)
        # Recovered in its own flow (seguros would greet and offer its menu).
        assert recovered.says[-1] == "Marque su PIN de cuatro cifras."
        assert recovered.one("Gather")["action"].endswith("&flow=datos-privados")


def test_with_the_database_down_calls_go_on_and_the_api_answers_503(
    fake: TwilioRest, caplog: pytest.LogCaptureFixture
) -> None:
    down = "postgresql+psycopg://flowpbx:x@127.0.0.1:9/flowpbx"  # nothing listens on port 9
    settings = settings_for(down, fake)
    with TestClient(build_app(settings), base_url=BASE_URL) as client:
        # A caller rings: the IVR answers as ever (it does not need the database).
        params = {
            "AccountSid": fake.account_sid,
            "CallSid": "CA" + "d0" * 16,
            "From": CUSTOMER,
            "To": COMPANY,
            "Direction": "inbound",
            "CallStatus": "ringing",
        }
        url = f"{BASE_URL}/api/calls/incoming"
        reply = check_reply(
            client.post(url, data=params, headers=signed_headers(fake.auth_token, url, params))
        )
        assert reply.has("Gather")
        for method, path, body in ENDPOINTS:
            response = client.request(
                method, path, json=body, headers={"Authorization": "Bearer fpbx_x"}
            )
            assert response.status_code == 401  # a malformed key needs no database
            key = "fpbx_0123abcd_" + "A" * 43
            response = client.request(
                method, path, json=body, headers={"Authorization": f"Bearer {key}"}
            )
            assert response.status_code == 503, (path, response.text)
            assert response.json()["error"] == "unavailable"
            assert response.headers["retry-after"] == "5"
    assert "cannot be migrated" in caplog.text
    assert "migrations are tried again" in caplog.text


def test_deeply_nested_json_is_a_400_not_a_crash(api: Api) -> None:
    body = b"[" * 5000 + b"]" * 5000
    for path in ("/api/token", "/api/calls"):
        response = api.client.post(
            path,
            content=body,
            headers={"Authorization": f"Bearer {api.admin}", "Content-Type": "application/json"},
        )
        assert response.status_code in (400, 422), response.text
        assert response.json()["error"] in ("bad_json", "invalid")


@pytest.mark.parametrize("cursor", ["a8Ky", "azk5OTk5OTk5OTk5OTk5OTk5OTk5", "%%%", "k1"])
def test_foreign_cursors_are_a_422(api: Api, cursor: str) -> None:
    response = api.client.get(
        "/api/keys", params={"cursor": cursor}, headers={"Authorization": f"Bearer {api.admin}"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid"


def test_who_may_place_which_call(api: Api) -> None:
    both = api.call(api.admin, to=CUSTOMER, flow="seguros", identity="ana")
    assert both.status_code == 422
    assert both.json()["detail"].startswith("give a flow or an identity, not both")
    nobody = api.call(api.anonymous, to=CUSTOMER, flow="seguros")
    assert nobody.status_code == 403
    assert nobody.json()["detail"] == "this key has no identity: placing calls needs an admin key"
    assert api.fake.received == []
    own = api.call(api.ana, to=CUSTOMER, flow="seguros")
    assert own.status_code == 201, own.text
    assert own.json()["identity"] == "ana"  # placed for ana, who asked


def test_a_malformed_softphone_never_reaches_the_ivr(api: Api) -> None:
    reply = softphone(api, CUSTOMER, identity="bad-id")
    assert reply.names == ("Say", "Hangup")
