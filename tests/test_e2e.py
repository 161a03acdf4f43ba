"""Whole calls over HTTP, signed as Twilio signs them, with call state in a real Redis.

Every branch of the Spanish insurance menu (flows/seguros.yaml) is driven from the incoming
webhook to the hangup; then duplicates, races, bad signatures, malformed parameters, unknown
calls, failures, TLS proxies, the development switch, status callbacks and /health.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import ipaddress
import json
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis
from starlette.applications import Starlette

from conftest import FLOWS
from flowpbx.app import build_service, catalog_from
from flowpbx.engine.state import CallState, Waiting
from flowpbx.language.catalog import FlowCatalog, LoadedFlow, flow_version
from flowpbx.language.loader import load_flow
from flowpbx.settings import Settings
from flowpbx.store.redis import RedisCallStore, call_key, shard, stream_key
from flowpbx.web.app import create_app
from servers import RedisClusterServer, RedisServer, redis_server
from twilio_fake import (
    BASE_URL,
    Reply,
    TestClient,
    TwilioDriver,
    call_sid,
    check_reply,
    inbound_params,
    signed_headers,
)

TOKEN = "e2e-auth-token"
CALL_TTL = 3600
MADRID = ZoneInfo("Europe/Madrid")
OPEN = dt.datetime(2026, 11, 24, 10, 0, tzinfo=MADRID)  # a Tuesday, mid-morning
CLOSED = dt.datetime(2026, 11, 24, 21, 0, tzinfo=MADRID)  # the same Tuesday, after 19:00
CALLER = "+34600111222"
CALLBACK_CONFIRM = (
    "Le llamaremos al número terminado en 1 2 2 2. Para confirmarlo, pulse 1. "
    "Para usar otro número, pulse 2."
)
CALLBACK_ASK_NUMBER = (
    "Marque el número en el que quiere que le llamemos, seguido de la tecla almohadilla."
)
CALLED = "+34910000000"
TWILIO_IP = ("54.172.60.3", 43512)

BIENVENIDA = (
    "Bienvenido a Seguros. Le informamos de que esta llamada puede ser grabada para mejorar "
    "la calidad del servicio."
)
MENU = (
    "Para seguros de vida, pulse 1. Para seguros de salud, pulse 2. "
    "Para seguros de hogar, pulse 3. Para seguros de automóvil, pulse 4. "
    "Para hablar con un agente, pulse 9."
)
CERRADO = (
    "Gracias por llamar a Seguros. Nuestro horario de atención es de lunes a viernes, "
    "de nueve de la mañana a siete de la tarde."
)
BUZON_GENERAL = (
    "Si lo desea, deje su nombre, su teléfono y su mensaje después de la señal, y le llamaremos."
)
DESPEDIDA = "Gracias por llamar a Seguros. Adiós."
AUTO_MENU = (
    "Seguros de automóvil. Para dar un parte, pulse 1. Para pedir un presupuesto, pulse 2. "
    "Para volver al menú principal, pulse asterisco."
)
POLIZA = "Para dar un parte, marque su número de póliza de ocho cifras."
POLIZA_INVALID = "El número de póliza tiene ocho cifras."
AGENTE = "Le pasamos con un agente. Por favor, espere."
NO_INPUT = "No hemos recibido ninguna opción."
INVALID = "Lo sentimos, esa opción no es válida."
ESPERA_AGOTADA = (
    "Lamentamos la espera. Todos nuestros agentes siguen ocupados. "
    "Puede dejarnos un mensaje y le llamaremos lo antes posible."
)
COLA_LLENA = (
    "Lo sentimos, en este momento hay demasiadas personas esperando y no podemos atenderle. "
    "Puede dejarnos un mensaje y le llamaremos lo antes posible."
)
APOLOGY = "Lo sentimos, se ha producido un error. Volvemos al menú principal."
PLAIN_APOLOGY = "Lo sentimos, se ha producido un error. Disculpe las molestias."
HOLD_MUSIC = "http://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3"
RECORDING = f"https://api.twilio.com/2010-04-01/Accounts/AC{'5a' * 16}/Recordings/RE{'ab' * 16}"


# --- Fixtures ----------------------------------------------------------------------------------

SyncRedis = redis.Redis | redis.RedisCluster
ON_A_CLUSTER_TOO = pytest.mark.parametrize("redis_target", ["redis", "cluster"], indirect=True)
"""The test runs on one Redis and on the session's 3-master Redis Cluster."""


@pytest.fixture(scope="session")
def redis_db() -> Iterator[RedisServer]:
    """One real redis-server for the whole session."""
    with redis_server() as server:
        yield server


@pytest.fixture
def redis_target(
    request: pytest.FixtureRequest, redis_db: RedisServer
) -> RedisServer | RedisClusterServer:
    """Where call state lives: the session's redis-server, or (a test marked
    `ON_A_CLUSTER_TOO`, in its "cluster" run) the session's Redis Cluster."""
    if getattr(request, "param", "redis") == "cluster":
        cluster: RedisClusterServer = request.getfixturevalue("shared_redis_cluster")
        return cluster
    return redis_db


@pytest.fixture
def rdb(redis_target: RedisServer | RedisClusterServer) -> Iterator[SyncRedis]:
    """A plain client on the test Redis, emptied before each test (every master of a
    cluster), to look at call state."""
    client: SyncRedis
    if isinstance(redis_target, RedisClusterServer):
        redis_target.flush()
        client = redis.RedisCluster(
            host=redis_target.host, port=redis_target.ports[0], decode_responses=True
        )
    else:
        client = redis.Redis(host=redis_target.host, port=redis_target.port, decode_responses=True)
        client.flushdb()
    yield client
    client.close()


@pytest.fixture
def settings(redis_target: RedisServer | RedisClusterServer) -> Settings:
    """Production-like settings: a token, the repo's flows and the test Redis."""
    settings = Settings(twilio_auth_token=TOKEN, flows_dir=FLOWS, call_ttl=CALL_TTL)
    if isinstance(redis_target, RedisClusterServer):
        return dataclasses.replace(settings, redis_cluster_nodes=redis_target.nodes)
    return dataclasses.replace(settings, redis_host=redis_target.host, redis_port=redis_target.port)


@pytest.fixture(scope="session")
def catalog() -> FlowCatalog:
    """The shipped flows, loaded as the service loads them."""
    return catalog_from(Settings(twilio_auth_token=TOKEN, flows_dir=FLOWS), env_file=None)


@pytest.fixture
def store(redis_target: RedisServer | RedisClusterServer, rdb: SyncRedis) -> RedisCallStore:
    """A fresh Redis call store (closed by the app's lifespan, or by the test)."""
    return RedisCallStore.from_url(redis_target.url, CALL_TTL)


def make_app(
    settings: Settings, catalog: FlowCatalog, store: RedisCallStore, when: dt.datetime
) -> Starlette:
    """The real app, with a service whose clock is stopped at `when`."""
    return create_app(settings, build_service(settings, catalog, store, clock=lambda: when))


@contextlib.contextmanager
def driving(
    app: Starlette,
    *,
    base_url: str = BASE_URL,
    public_base: str | None = None,
    client: tuple[str, int] = TWILIO_IP,
    headers: Mapping[str, str] | None = None,
) -> Iterator[TwilioDriver]:
    """A Twilio driver on a TestClient whose lifespan runs around the block."""
    with TestClient(app, base_url=base_url, client=client) as test_client:
        yield TwilioDriver(test_client, TOKEN, public_base=public_base, headers=headers)


@pytest.fixture
def open_app(settings: Settings, catalog: FlowCatalog, store: RedisCallStore) -> Starlette:
    """The app on Tuesday 2026-11-24 at 10:00 in Madrid: open."""
    return make_app(settings, catalog, store, OPEN)


@pytest.fixture
def closed_app(settings: Settings, catalog: FlowCatalog, store: RedisCallStore) -> Starlette:
    """The app on Tuesday 2026-11-24 at 21:00 in Madrid: closed."""
    return make_app(settings, catalog, store, CLOSED)


@pytest.fixture
def call(open_app: Starlette) -> Iterator[TwilioDriver]:
    """Twilio, ready to ring the open office."""
    with driving(open_app) as driver:
        yield driver


@pytest.fixture
def closed_call(closed_app: Starlette) -> Iterator[TwilioDriver]:
    """Twilio, ready to ring the closed office."""
    with driving(closed_app) as driver:
        yield driver


def stored(rdb: SyncRedis, sid: str) -> tuple[CallState | None, int]:
    """The call state and revision Redis holds for `sid`."""
    data = _hash(rdb, call_key(sid))
    if not data:
        return None, 0
    return CallState.from_json(data["state"]), int(data["rev"])


def snapshot(rdb: SyncRedis) -> dict[str, object]:
    """Everything in the test Redis: each call's hash, and each event stream's entries."""
    if isinstance(rdb, redis.RedisCluster):
        found = rdb.keys("*", target_nodes=redis.RedisCluster.PRIMARIES)  # every master's
    else:
        found = rdb.keys("*")
    keys = [key if isinstance(key, str) else key.decode() for key in found]
    return {key: _contents(rdb, key) for key in sorted(keys)}


def _contents(rdb: SyncRedis, key: str) -> object:
    """A call's hash, a stream's entries, or a set of active calls with their scores."""
    kind = rdb.type(key)
    if kind == "stream":
        return rdb.xrange(key)
    if kind == "zset":
        return rdb.zrange(key, 0, -1, withscores=True)
    return _hash(rdb, key)


def stored_reply(rdb: SyncRedis, sid: str) -> str:
    """The last reply Redis keeps for `sid` (the answer a retry of its last webhook gets)."""
    return _hash(rdb, call_key(sid))["reply"]


def _hash(rdb: SyncRedis, key: str) -> dict[str, str]:
    data: dict[str, str] = rdb.hgetall(key)  # type: ignore[assignment]
    return data


def assert_menu(reply: Reply, *preface: str) -> None:
    """The main menu: optional preface, the menu prompt in a one-key Gather, then a Redirect."""
    expected = ("Say",) * len(preface) + ("Gather", "Redirect")
    assert reply.names == expected
    assert reply.says == (*preface, MENU)
    gather = reply.one("Gather")
    assert (gather["numDigits"], gather["timeout"], gather["finishOnKey"]) == ("1", "5", "")
    assert gather["actionOnEmptyResult"] == "true"
    assert reply.one("Redirect").text == gather["action"]


def assert_goodbye(reply: Reply) -> None:
    """The goodbye node: the farewell and a hangup."""
    assert reply.names == ("Say", "Hangup")
    assert reply.says == (DESPEDIDA,)


def assert_voicemail(reply: Reply, prompt: str, *preface: str, max_length: int = 120) -> None:
    """A record node (after optional preface): its prompt, <Record>, and the Redirect Twilio
    runs when nothing came."""
    assert reply.names == ("Say",) * len(preface) + ("Say", "Record", "Redirect")
    assert reply.says == (*preface, prompt)
    record = reply.one("Record")
    assert record["maxLength"] == str(max_length)
    assert reply.one("Redirect").text == record["action"]


def assert_apology_hangup(reply: Reply) -> None:
    """An apology in the flow's voice (Polly.Lucia), then a hangup, with no webhook URLs."""
    assert reply.names == ("Say", "Hangup")
    # The plain goodbye promises nothing (not "le pasamos con un agente"): the call ends.
    assert reply.says == (PLAIN_APOLOGY,)
    assert reply.urls == ()


# --- Closed hours ------------------------------------------------------------------------------


@ON_A_CLUSTER_TOO
def test_closed_hours_message_voicemail_goodbye(
    closed_call: TwilioDriver, rdb: redis.Redis
) -> None:
    """Outside office hours the caller hears the hours, leaves a message and hears goodbye."""
    sid = call_sid(1)
    reply = closed_call.start(sid, CALLER, CALLED)
    assert reply.names == ("Say", "Say", "Record", "Redirect")
    assert reply.says == (CERRADO, BUZON_GENERAL)
    assert reply.one("Record")["maxLength"] == "120"
    assert reply.seq == 1
    done = closed_call.record(RECORDING)
    assert_goodbye(done)
    state, _ = stored(rdb, sid)
    assert state is not None
    assert (state.node, state.waiting, state.seq) == ("despedida", Waiting.ENDED, 2)
    assert state.variables["recording_url"] == RECORDING


def test_closed_hours_nothing_recorded_follows_redirect(closed_call: TwilioDriver) -> None:
    """When nothing is recorded Twilio runs the <Redirect>, and the caller still hears goodbye."""
    closed_call.start(call_sid(2))
    assert_goodbye(closed_call.record(None))


@pytest.mark.parametrize(
    ("when", "is_open"),
    [
        pytest.param(dt.datetime(2026, 11, 28, 11, 0, tzinfo=MADRID), False, id="saturday"),
        pytest.param(dt.datetime(2026, 12, 25, 11, 0, tzinfo=MADRID), False, id="navidad"),
        pytest.param(dt.datetime(2026, 12, 24, 15, 0, tzinfo=MADRID), False, id="nochebuena-pm"),
        pytest.param(dt.datetime(2026, 12, 24, 13, 0, tzinfo=MADRID), True, id="nochebuena-am"),
        pytest.param(dt.datetime(2026, 11, 24, 8, 59, tzinfo=MADRID), False, id="before-9"),
        pytest.param(dt.datetime(2026, 11, 24, 18, 59, tzinfo=MADRID), True, id="before-19"),
    ],
)
def test_hours_calendar_decides_greeting(
    settings: Settings,
    catalog: FlowCatalog,
    store: RedisCallStore,
    when: dt.datetime,
    is_open: bool,
) -> None:
    """Weekends, holidays and short days get the closed message; open hours get the menu."""
    with driving(make_app(settings, catalog, store, when)) as driver:
        reply = driver.start(call_sid(3))
    assert reply.says[0] == (BIENVENIDA if is_open else CERRADO)


# --- Open: main menu and departments -------------------------------------------------------------


@ON_A_CLUSTER_TOO
def test_incoming_open_hours_greets_and_offers_menu(call: TwilioDriver, rdb: redis.Redis) -> None:
    """In office hours the caller is welcomed and offered the main menu; state waits for keys."""
    sid = call_sid(10)
    reply = call.start(sid, CALLER, CALLED)
    assert_menu(reply, BIENVENIDA)
    assert reply.seq == 1
    assert reply.one("Gather")["action"] == f"{BASE_URL}/api/calls/gather?seq=1"
    state, revision = stored(rdb, sid)
    assert state is not None
    assert (state.node, state.waiting, state.seq, revision) == (
        "menu_principal",
        Waiting.KEYS,
        1,
        1,
    )
    assert dict(state.variables) == {"caller": CALLER, "called": CALLED}
    assert 0 < rdb.ttl(call_key(sid)) <= CALL_TTL


DEPARTMENTS = [
    pytest.param(("1", "vida", "+34912345671"), id="vida"),
    pytest.param(("2", "salud", "+34912345672"), id="salud"),
    pytest.param(("3", "hogar", "+34912345673"), id="hogar"),
]


@pytest.mark.parametrize("department", DEPARTMENTS)
@pytest.mark.parametrize("outcome", ["completed", "no-answer", "busy", "failed"])
@ON_A_CLUSTER_TOO
def test_department_dial_outcomes(
    call: TwilioDriver, rdb: redis.Redis, department: tuple[str, str, str], outcome: str
) -> None:
    """Keys 1-3 confirm and dial the department (recorded); answered hangs up, else voicemail."""
    key, name, number = department
    sid = call_sid(20)
    call.start(sid)
    reply = call.press(key)
    assert reply.names == ("Say", "Dial")
    assert reply.says == (
        f"Ha elegido seguros de {name}. Le pasamos con el departamento de seguros de {name}.",
    )
    dial = reply.one("Dial")
    assert [(n.name, n.text) for n in dial.children] == [("Number", number)]
    assert (dial["record"], dial["timeout"]) == ("record-from-answer-dual", "25")
    assert dial["action"] == f"{BASE_URL}/api/calls/dial?seq=2"
    after = call.dial_result(outcome)
    state, _ = stored(rdb, sid)
    assert state is not None
    assert state.variables["dial_status"] == outcome
    if outcome == "completed":
        assert after.names == ("Hangup",)
        assert state.waiting is Waiting.ENDED
        return
    assert_voicemail(
        after,
        f"En este momento el departamento de {name} no puede atenderle. "
        "Deje su mensaje después de la señal.",
    )
    assert after.seq == 3
    assert_goodbye(call.record(RECORDING))


@ON_A_CLUSTER_TOO
def test_automovil_parte_asks_policy_then_dials_partes(
    call: TwilioDriver, rdb: redis.Redis
) -> None:
    """4 then 1 asks for an 8-digit policy number (rejecting a short one) and dials claims."""
    sid = call_sid(30)
    call.start(sid)
    submenu = call.press("4")
    assert submenu.names == ("Gather", "Redirect")
    assert submenu.says == (AUTO_MENU,)
    policy = call.press("1")
    assert policy.says == (POLIZA,)
    gather = policy.one("Gather")
    assert (gather["numDigits"], gather["finishOnKey"]) == ("8", "#")
    short = call.press("1234#")
    assert short.says == (POLIZA_INVALID, POLIZA)
    dial = call.press("12345678")
    assert dial.says == ("Gracias. Le pasamos con el departamento de partes.",)
    assert [n.text for n in dial.one("Dial").named("Number")] == ["+34912345674"]
    assert dial.one("Dial")["record"] == "record-from-answer-dual"
    state, _ = stored(rdb, sid)
    assert state is not None
    assert state.variables["numero_poliza"] == "12345678"
    assert call.dial_result("completed").names == ("Hangup",)


def test_automovil_presupuesto_dials_sales_then_voicemail(call: TwilioDriver) -> None:
    """4 then 2 dials the quotes department; unanswered, it takes a message and says goodbye."""
    call.start(call_sid(31))
    call.press("4")
    reply = call.press("2")
    assert reply.says == (
        "Ha elegido pedir un presupuesto. Le pasamos con el departamento comercial.",
    )
    assert [n.text for n in reply.one("Dial").named("Number")] == ["+34912345675"]
    voicemail = call.dial_result("no-answer")
    assert voicemail.says[0].startswith("En este momento no podemos atenderle.")
    assert_goodbye(call.record(None))


def test_automovil_star_returns_to_main_menu(call: TwilioDriver) -> None:
    """In the car submenu, * goes back to the main menu (without the welcome)."""
    call.start(call_sid(32))
    call.press("4")
    assert_menu(call.press("*"))
    assert call.reply.seq == 3


def test_automovil_policy_retries_exhausted_still_dials_partes(
    call: TwilioDriver, rdb: redis.Redis
) -> None:
    """After three bad policy numbers the caller is put through to claims anyway."""
    sid = call_sid(33)
    call.start(sid)
    call.press("4")
    call.press("1")
    assert call.press("").says == ("No hemos recibido ningún número.", POLIZA)
    assert call.press("123#").says == (POLIZA_INVALID, POLIZA)
    reply = call.press("99#")
    assert reply.says == (
        "No hemos podido recoger su número de póliza; se lo pedirán al atenderle. "
        "Le pasamos con el departamento de partes.",
    )
    assert [n.text for n in reply.one("Dial").named("Number")] == ["+34912345674"]
    state, _ = stored(rdb, sid)
    assert state is not None
    assert "numero_poliza" not in state.variables


def test_automovil_submenu_mistakes_then_agent(call: TwilioDriver) -> None:
    """In the car submenu a wrong key and silences are retried twice, then an agent takes over."""
    call.start(call_sid(34))
    call.press("4")
    assert call.press("5").says == (INVALID, AUTO_MENU)
    assert call.press("").says == (NO_INPUT, AUTO_MENU)
    last = call.press("")
    assert last.says == (AGENTE,)
    assert last.one("Enqueue").text == "general-queue"


# --- Open: agent queue -------------------------------------------------------------------------


@ON_A_CLUSTER_TOO
def test_agent_queue_hold_music_then_timeout_voicemail(
    call: TwilioDriver, rdb: redis.Redis
) -> None:
    """9 queues the caller with hold music (in a one-key gather for the leave and callback
    keys; no announcement without the queue engine); after 600 s they leave, hear that the
    agents are still busy, and go to voicemail and goodbye."""
    sid = call_sid(40)
    call.start(sid)
    reply = call.press("9")
    assert reply.names == ("Say", "Enqueue")
    assert reply.says == (AGENTE,)
    enqueue = reply.one("Enqueue")
    assert enqueue.text == "general-queue"
    assert enqueue["waitUrl"] == f"{BASE_URL}/api/calls/queue-wait?seq=2&flow=seguros&node=agente"
    assert enqueue["action"] == f"{BASE_URL}/api/calls/enqueue?seq=2"
    for waited in (0, 45, 599):
        music = call.wait(waited)
        assert (music.names, music.says) == (("Gather",), ())
        gather = music.one("Gather")
        assert [play.text for play in gather.named("Play")] == [HOLD_MUSIC]
        assert gather["action"] == f"{BASE_URL}/api/calls/queue-key?seq=2"
        assert (gather["numDigits"], gather["timeout"]) == ("1", "1")
        # Silence ends the wait document, so Twilio asks the wait URL again.
        assert gather["actionOnEmptyResult"] == "false"
    leave = call.wait(600)
    assert leave.names == ("Leave",)
    state, _ = stored(rdb, sid)
    assert state is not None
    assert (state.node, state.leave_reason, state.seq) == ("agente", "timed_out", 2)
    assert_voicemail(call.queue_result("leave", 600), BUZON_GENERAL, ESPERA_AGOTADA)
    assert_goodbye(call.record(RECORDING))


def test_agent_queue_full_goes_to_voicemail(call: TwilioDriver) -> None:
    """A full queue says so, then sends the caller to the general voicemail."""
    call.start(call_sid(41))
    call.press("9")
    assert_voicemail(call.queue_result("queue-full"), BUZON_GENERAL, COLA_LLENA)
    assert_goodbye(call.record(RECORDING))


@ON_A_CLUSTER_TOO
def test_agent_queue_leave_key_goes_to_voicemail(call: TwilioDriver, rdb: redis.Redis) -> None:
    """0 during the hold music takes the caller out of the queue, to the general voicemail."""
    sid = call_sid(43)
    call.start(sid)
    call.press("9")
    gather = call.wait(30).one("Gather")
    left = call.check(call.post(gather["action"], call.params(Digits="0")))
    assert left.names == ("Leave",)
    state, _ = stored(rdb, sid)
    assert state is not None
    assert (state.node, state.leave_reason, state.seq) == ("agente", "left", 2)
    assert_voicemail(call.queue_result("leave", 30), BUZON_GENERAL)
    assert_goodbye(call.record(RECORDING))


def queue_key(call: TwilioDriver, reply: Reply, typed: str) -> Reply:
    """The caller keys `typed` at `reply`'s <Gather>, a question inside the queue's wait
    document: Twilio posts the digits (its finish key stripped) to the gather's action and
    plays the answer there, the call still in the <Enqueue> it runs (call.reply)."""
    gather = reply.one("Gather")
    finish = gather.get("finishOnKey")
    finish = "#" if finish is None else finish
    finished_on = ""
    if finish and typed.endswith(finish):
        typed, finished_on = typed.removesuffix(finish), finish
    params = call.params(Digits=typed, msg="Gather End", FinishedOnKey=finished_on)
    return call.check(call.post(gather["action"], params))


@ON_A_CLUSTER_TOO
def test_agent_queue_callback_key_books_a_callback(call: TwilioDriver, rdb: redis.Redis) -> None:
    """1 during the hold music reads back the end of the caller's number in a one-key gather
    (numDigits 1, no finish key); 1 confirms it at once, the caller is thanked and let go, and
    the flow says goodbye (its callback node)."""
    sid = call_sid(44)
    call.start(sid)
    call.press("9")
    ask = queue_key(call, call.wait(30), "1")
    assert ask.names == ("Gather",)
    assert ask.says == (CALLBACK_CONFIRM,)
    confirm = ask.one("Gather")
    assert (confirm["numDigits"], confirm["finishOnKey"], confirm["timeout"]) == ("1", "", "8")
    assert confirm["action"] == f"{BASE_URL}/api/calls/queue-key?seq=2"
    state, _ = stored(rdb, sid)
    assert state is not None
    assert (state.queue_phase, state.seq) == ("callback", 2)
    booked = queue_key(call, ask, "1")
    assert booked.names == ("Say", "Leave")
    assert booked.says == (
        "Gracias. Le llamaremos al número terminado en 1 2 2 2 cuando llegue su turno. "
        "Ya puede colgar.",
    )
    state, _ = stored(rdb, sid)
    assert state is not None
    assert (state.leave_reason, state.queue_phase) == ("callback", "")
    assert_goodbye(call.queue_result("leave", 40))


def test_agent_queue_callback_to_another_number(call: TwilioDriver, rdb: redis.Redis) -> None:
    """2 at the confirmation asks for another number in a gather ended by # (no numDigits);
    the typed national number is booked with +34 and read back by its last four digits."""
    sid = call_sid(45)
    call.start(sid)
    call.press("9")
    ask = queue_key(call, call.wait(30), "1")
    other = queue_key(call, ask, "2")
    assert (other.names, other.says) == (("Gather",), (CALLBACK_ASK_NUMBER,))
    gather = other.one("Gather")
    assert (gather["finishOnKey"], gather["timeout"]) == ("#", "8")
    assert gather.get("numDigits") is None
    state, _ = stored(rdb, sid)
    assert state is not None
    assert (state.queue_phase, state.leave_reason) == ("callback-number", "")
    booked = queue_key(call, other, "612345678#")
    assert booked.names == ("Say", "Leave")
    assert booked.says == (
        "Gracias. Le llamaremos al número terminado en 5 6 7 8 cuando llegue su turno. "
        "Ya puede colgar.",
    )
    state, _ = stored(rdb, sid)
    assert state is not None
    assert (state.leave_reason, state.queue_phase) == ("callback", "")
    assert_goodbye(call.queue_result("leave", 45))


def test_agent_queue_callback_bad_number_back_to_the_music(
    call: TwilioDriver, rdb: redis.Redis
) -> None:
    """A typed number that cannot be called is refused and the caller goes back to the wait
    URL's music, still queued, nothing booked."""
    sid = call_sid(46)
    call.start(sid)
    call.press("9")
    ask = queue_key(call, call.wait(30), "1")
    refused = queue_key(call, queue_key(call, ask, "2"), "12345678#")
    assert refused.names == ("Say", "Redirect")
    assert refused.says == ("Ese número no es válido.",)
    assert refused.one("Redirect").text == (
        f"{BASE_URL}/api/calls/queue-wait?seq=2&flow=seguros&node=agente"
    )
    state, _ = stored(rdb, sid)
    assert state is not None
    assert (state.node, state.waiting, state.queue_phase, state.leave_reason) == (
        "agente",
        Waiting.QUEUE,
        "",
        "",
    )


def test_agent_queue_callback_unclear_key_back_to_the_music(
    call: TwilioDriver, rdb: redis.Redis
) -> None:
    """A key other than 1 or 2 at the confirmation: no valid option, back to the music."""
    sid = call_sid(47)
    call.start(sid)
    call.press("9")
    ask = queue_key(call, call.wait(30), "1")
    unclear = queue_key(call, ask, "5")
    assert unclear.names == ("Say", "Redirect")
    assert unclear.says == ("No hemos recibido ninguna opción válida.",)
    state, _ = stored(rdb, sid)
    assert state is not None
    assert (state.queue_phase, state.leave_reason) == ("", "")


def test_agent_queue_callback_withheld_caller_is_asked_for_a_number(
    call: TwilioDriver, rdb: redis.Redis
) -> None:
    """A withheld caller has no number to confirm: the callback key asks for one at once."""
    sid = call_sid(48)
    call.start(sid, from_="anonymous")
    call.press("9")
    ask = queue_key(call, call.wait(30), "1")
    assert (ask.names, ask.says) == (("Gather",), (CALLBACK_ASK_NUMBER,))
    assert (ask.one("Gather")["finishOnKey"], ask.one("Gather").get("numDigits")) == ("#", None)
    state, _ = stored(rdb, sid)
    assert state is not None
    assert state.queue_phase == "callback-number"
    booked = queue_key(call, ask, "699887766#")
    assert booked.names == ("Say", "Leave")
    assert "terminado en 7 7 6 6 cuando" in booked.says[0]
    state, _ = stored(rdb, sid)
    assert state is not None
    assert (state.leave_reason, state.queue_phase) == ("callback", "")


@pytest.mark.parametrize(
    ("result", "names", "says"),
    [
        pytest.param("bridged", ("Hangup",), (), id="bridged"),
        pytest.param("hangup", (), (), id="caller-hung-up"),
        pytest.param("redirected", (), (), id="redirected"),
    ],
)
def test_agent_queue_end_results(
    call: TwilioDriver,
    rdb: redis.Redis,
    result: str,
    names: tuple[str, ...],
    says: tuple[str, ...],
) -> None:
    """Leaving the queue other than by timeout or a full queue ends the flow for the caller."""
    sid = call_sid(42)
    call.start(sid)
    call.press("9")
    reply = call.queue_result(result, 75)
    assert (reply.names, reply.says) == (names, says)
    state, _ = stored(rdb, sid)
    assert state is not None
    assert state.waiting is Waiting.ENDED


# --- Open: mistakes and silence ------------------------------------------------------------------


def test_menu_invalid_key_repeats_menu(call: TwilioDriver) -> None:
    """An unknown key is announced and the menu is offered again."""
    call.start(call_sid(50))
    assert_menu(call.press("7"), INVALID)


@ON_A_CLUSTER_TOO
def test_menu_three_silences_then_agent_queue(call: TwilioDriver, rdb: redis.Redis) -> None:
    """Three silences repeat the menu; the fourth sends the caller to an agent."""
    sid = call_sid(51)
    call.start(sid)
    for attempt in (1, 2, 3):
        assert_menu(call.press(""), NO_INPUT)
        state, _ = stored(rdb, sid)
        assert state is not None
        assert state.attempts == attempt
    last = call.press("")
    assert last.says == (AGENTE,)
    assert last.one("Enqueue").text == "general-queue"


def test_menu_silence_without_empty_action_follows_redirect(call: TwilioDriver) -> None:
    """Should Twilio not post the empty Gather result, the Redirect after it counts as silence."""
    call.start(call_sid(52))
    assert_menu(call.follow("Gather"), NO_INPUT)


# --- (a) Duplicate deliveries --------------------------------------------------------------------


@ON_A_CLUSTER_TOO
def test_duplicate_gather_webhook_advances_once(call: TwilioDriver, rdb: redis.Redis) -> None:
    """The same gather delivered twice gets the same TwiML and moves the call one step only."""
    sid = call_sid(60)
    call.start(sid)
    first = call.press("1")
    after_first = stored(rdb, sid)
    second = call.replay()
    assert second.xml == first.xml
    assert stored(rdb, sid) == after_first
    state, revision = after_first
    assert state is not None
    assert (state.seq, state.node, revision) == (2, "llamar_vida", 2)
    assert call.dial_result("no-answer").seq == 3


@ON_A_CLUSTER_TOO
def test_duplicate_incoming_webhook_same_reply(call: TwilioDriver, rdb: redis.Redis) -> None:
    """A repeated incoming webhook is answered with the first reply and starts nothing new."""
    sid = call_sid(61)
    first = call.start(sid)
    assert call.replay().xml == first.xml
    state, revision = stored(rdb, sid)
    assert state is not None
    assert (state.seq, revision) == (1, 1)


@ON_A_CLUSTER_TOO
def test_stale_step_webhook_does_not_advance(call: TwilioDriver, rdb: redis.Redis) -> None:
    """A webhook for an older step is answered without moving the call again."""
    sid = call_sid(62)
    call.start(sid)
    call.press("4")
    call.press("1")
    before = snapshot(rdb)
    stale = call.post(f"{BASE_URL}/api/calls/gather?seq=1", call.params(Digits="9"))
    reply = call.check(stale)
    assert snapshot(rdb) == before
    assert not reply.has("Enqueue")


# --- (b) Races ---------------------------------------------------------------------------------


def _gather_params(sid: str, digits: str) -> dict[str, str]:
    params = inbound_params(sid, CALLER, CALLED, "in-progress") | {"msg": "Gather End"}
    return params | ({"Digits": digits} if digits else {})


EXPECTED_AFTER = {
    "1": ("llamar_vida", Waiting.DIAL, 0),
    "9": ("agente", Waiting.QUEUE, 0),
    "": ("menu_principal", Waiting.KEYS, 1),
    "7": ("menu_principal", Waiting.KEYS, 1),
}


async def _race_rounds(
    app: Starlette, store: RedisCallStore, rdb: SyncRedis, rounds: int
) -> set[str]:
    """Start each call with a tripled incoming webhook, then send rival gathers for step 1 at once.

    Returns the keys that won the rounds.
    """
    winners: set[str] = set()
    gather_url = f"{BASE_URL}/api/calls/gather?seq=1"
    transport = httpx.ASGITransport(app=app, client=TWILIO_IP)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            for i in range(rounds):
                sid = call_sid(7000 + i)
                incoming = inbound_params(sid, CALLER, CALLED)
                incoming_url = f"{BASE_URL}/api/calls/incoming"
                started = await asyncio.gather(
                    *(
                        client.post(
                            "/api/calls/incoming",
                            data=incoming,
                            headers=signed_headers(TOKEN, incoming_url, incoming),
                        )
                        for _ in range(3)
                    )
                )
                assert len({check_reply(answer).xml for answer in started}) == 1
                assert stored(rdb, sid)[1] == 1, "a duplicated incoming webhook started twice"
                requests = [_gather_params(sid, digits) for digits in ("1", "9", "", "7", "1")]
                answers = await asyncio.gather(
                    *(
                        client.post(
                            "/api/calls/gather?seq=1",
                            data=params,
                            headers=signed_headers(TOKEN, gather_url, params),
                        )
                        for params in requests
                    )
                )
                replies = [check_reply(answer) for answer in answers]
                state, revision = stored(rdb, sid)
                assert state is not None
                assert (state.seq, revision) == (2, 2), "advanced twice"
                assert {reply.xml for reply in replies} == {stored_reply(rdb, sid)}, "disagree"
                if state.node == "menu_principal":
                    winner = "7" if INVALID in replies[0].says else ""
                else:
                    winner = {"llamar_vida": "1", "agente": "9"}[state.node]
                assert (state.node, state.waiting) == EXPECTED_AFTER[winner][:2]
                assert state.attempts == EXPECTED_AFTER[winner][2]
                assert replies[0].seq == 2
                winners.add(winner)
    finally:
        await store.aclose()
    return winners


@ON_A_CLUSTER_TOO
def test_concurrent_gathers_only_one_advances(
    open_app: Starlette, store: RedisCallStore, rdb: redis.Redis
) -> None:
    """Rival gathers for the same step at the same instant: one wins, all get its TwiML."""
    winners = asyncio.run(_race_rounds(open_app, store, rdb, rounds=40))
    assert winners  # the winner may vary; the invariants above hold for each round


# --- (c) Signatures ------------------------------------------------------------------------------


def _forgeries(driver: TwilioDriver, url: str, params: dict[str, str]) -> dict[str, httpx.Response]:
    good = driver.sign(url, params)
    added = params | {"ForwardedFrom": "+34911111111"}
    return {
        "forged": driver.post(url, params, signature="0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
        "missing": driver.post(url, params, signature=None),
        "other-url": driver.post(url, params, signature=driver.sign(url + "?x=1", params)),
        "other-token": driver.post(
            url, params, signature=TwilioDriver(driver.client, "wrong").sign(url, params)
        ),
        "param-added": driver.post(url, added, signature=good),
        "param-removed": driver.post(
            url, {k: v for k, v in params.items() if k != "FromZip"}, signature=good
        ),
    }


@ON_A_CLUSTER_TOO
def test_signature_bad_incoming_rejected_nothing_stored(
    call: TwilioDriver, rdb: redis.Redis
) -> None:
    """Forged, missing, misdirected or tampered signatures on the incoming webhook get 403."""
    call.call_sid, call.from_, call.to = call_sid(80), CALLER, CALLED
    url = call.url("/api/calls/incoming")
    for kind, response in _forgeries(call, url, call.params("ringing")).items():
        assert response.status_code == 403, kind
        assert response.headers["content-type"] == "application/json", kind
        assert response.json()["error"] == "invalid_signature", kind
    assert snapshot(rdb) == {}


@ON_A_CLUSTER_TOO
def test_signature_bad_step_rejected_state_unchanged(call: TwilioDriver, rdb: redis.Redis) -> None:
    """A gather with a bad signature (e.g. Digits added after signing) changes nothing."""
    sid = call_sid(81)
    call.start(sid)
    before = snapshot(rdb)
    url = f"{BASE_URL}/api/calls/gather?seq=1"
    silence = call.params(msg="Gather End")
    tampered = call.post(url, silence | {"Digits": "9"}, signature=call.sign(url, silence))
    assert tampered.status_code == 403
    for kind, response in _forgeries(call, url, silence).items():
        assert response.status_code == 403, kind
    assert snapshot(rdb) == before
    assert_menu(call.press("7"), INVALID)  # the call still waits at step 1


# --- (d) Malformed parameters --------------------------------------------------------------------


def test_malformed_incoming_rejected_400(call: TwilioDriver, rdb: redis.Redis) -> None:
    """A signed incoming webhook with a bad or missing CallSid is a 400 and stores nothing."""
    url = call.url("/api/calls/incoming")
    bad = inbound_params("xyz", CALLER, CALLED)
    missing = {
        k: v for k, v in inbound_params(call_sid(90), CALLER, CALLED).items() if k != "CallSid"
    }
    for params in (bad, missing):
        response = call.post(url, params)
        assert response.status_code == 400
        assert response.json()["error"] == "bad_parameters"
        assert "CallSid" in response.json()["detail"]
    assert snapshot(rdb) == {}


@pytest.mark.parametrize(
    ("path", "change"),
    [
        pytest.param("/api/calls/gather?seq=abc", {"Digits": "1"}, id="seq-abc"),
        pytest.param("/api/calls/gather", {"Digits": "1"}, id="seq-missing"),
        pytest.param("/api/calls/gather?seq=-1", {"Digits": "1"}, id="seq-negative"),
        pytest.param("/api/calls/gather?seq=1", {"CallSid": "xyz", "Digits": "1"}, id="callsid"),
        pytest.param("/api/calls/gather?seq=1", {"Digits": "1a"}, id="digits"),
        pytest.param("/api/calls/dial?seq=1", {}, id="dial-status-missing"),
        pytest.param("/api/calls/queue-wait?seq=1", {"QueueTime": "soon"}, id="queue-time"),
    ],
)
def test_malformed_step_rejected_400(
    call: TwilioDriver, rdb: redis.Redis, path: str, change: dict[str, str]
) -> None:
    """Signed step webhooks with malformed parameters are a 400 and execute nothing."""
    call.start(call_sid(91))
    before = snapshot(rdb)
    response = call.post(call.url(path), call.params(**change))
    assert response.status_code == 400
    assert response.json()["error"] == "bad_parameters"
    assert snapshot(rdb) == before


# --- (e) Unknown or expired calls ----------------------------------------------------------------


@ON_A_CLUSTER_TOO
def test_unknown_call_recovers_to_the_fallback(call: TwilioDriver, rdb: redis.Redis) -> None:
    """A step for a CallSid with no state (lost, or never seen) is not hung up on: the caller
    hears the flow's apology and goes on at its fallback: the welcome (the recording notice),
    then the main menu."""
    sid = call_sid(100)
    call.call_sid, call.from_, call.to = sid, CALLER, CALLED
    response = call.post(call.url("/api/calls/gather?seq=1"), call.params(Digits="1"))
    reply = call.check(response)
    assert_menu(reply, APOLOGY, BIENVENIDA)
    assert reply.seq == 2
    state, _ = stored(rdb, sid)
    assert state is not None
    assert (state.node, state.waiting, state.seq) == ("menu_principal", Waiting.KEYS, 2)


@ON_A_CLUSTER_TOO
def test_expired_call_recovers_to_the_fallback(call: TwilioDriver, rdb: redis.Redis) -> None:
    """Once Redis has expired a call's state, its next webhook recovers it at the fallback."""
    sid = call_sid(101)
    call.start(sid)
    rdb.pexpire(call_key(sid), 1)
    for _ in range(500):
        if not rdb.exists(call_key(sid)):
            break
        time.sleep(0.002)
    assert not rdb.exists(call_key(sid)), "Redis did not expire the call"
    reply = call.press("1")
    assert_menu(reply, APOLOGY, BIENVENIDA)
    assert not reply.has("Enqueue")


def test_unknown_call_queue_wait_holds_on(call: TwilioDriver, rdb: redis.Redis) -> None:
    """A wait-URL request for a call with no state, from a URL that names no enqueue node (as
    call engine v1 wrote them), keeps the caller in the flow's only queue with its music."""
    sid = call_sid(102)
    call.call_sid, call.from_, call.to = sid, CALLER, CALLED
    response = call.post(call.url("/api/calls/queue-wait?seq=2"), call.params(QueueTime="5"))
    music = call.check(response)
    assert music.names == ("Gather",)
    assert [play.text for play in music.one("Gather").named("Play")] == [HOLD_MUSIC]
    state, _ = stored(rdb, sid)
    assert state is not None
    assert (state.node, state.waiting, state.seq) == ("agente", Waiting.QUEUE, 2)


# --- (f) Failures inside a call ------------------------------------------------------------------


BROKEN_FLOW = """\
name: roto
entry: menu
defaults:
  voice: Polly.Lucia
  language: es-ES
config:
  DESTINO: ~
on_error:
  text: Perdone, ha habido un problema. Le atiende un agente.
  next: agente
queues:
  general-queue: {}
nodes:
  menu:
    type: menu
    prompt: Pulse 1 para llamar.
    options:
      1: llamar
    exhausted: agente
  llamar:
    type: dial
    to: ${DESTINO}
    no_answer: adios
  agente:
    type: enqueue
    queue: general-queue
    timed_out: adios
    full: adios
  adios:
    type: hangup
    text: Adiós.
"""


def test_failing_dial_apologises_then_agent_queue(
    tmp_path: Path,
    settings: Settings,
    store: RedisCallStore,
    rdb: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A dial whose number has no value at runtime answers the flow's apology and its fallback."""
    path = tmp_path / "roto.yaml"
    path.write_text(BROKEN_FLOW, encoding="utf-8")
    loaded = LoadedFlow(load_flow(path), "v-test", {})  # DESTINO is not set anywhere
    catalog = FlowCatalog({"roto": loaded}, {}, "roto")
    sid = call_sid(110)
    caplog.set_level(logging.INFO)
    with driving(make_app(settings, catalog, store, OPEN)) as call:
        assert call.start(sid).says == ("Pulse 1 para llamar.",)
        reply = call.press("1")
        assert reply.names == ("Say", "Enqueue")
        assert reply.says == ("Perdone, ha habido un problema. Le atiende un agente.",)
        assert reply.one("Enqueue").text == "general-queue"
        assert reply.seq == 2
        state, _ = stored(rdb, sid)
        assert state is not None
        assert (state.node, state.waiting) == ("agente", Waiting.QUEUE)
        assert call.queue_result("queue-full").says == ("Adiós.",)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and sid in r.getMessage()]
    assert errors, "the failure is logged with the CallSid"
    assert errors[0].exc_info is not None
    assert "DESTINO" in caplog.text


def test_failing_first_node_apologises_then_agent_queue(
    tmp_path: Path, settings: Settings, store: RedisCallStore, rdb: redis.Redis
) -> None:
    """A flow that fails on its very first node still answers the apology and the fallback."""
    path = tmp_path / "roto.yaml"
    path.write_text(BROKEN_FLOW.replace("entry: menu", "entry: llamar"), encoding="utf-8")
    catalog = FlowCatalog({"roto": LoadedFlow(load_flow(path), "v-test", {})}, {}, "roto")
    sid = call_sid(112)
    with driving(make_app(settings, catalog, store, OPEN)) as call:
        reply = call.start(sid)
    assert reply.names == ("Say", "Enqueue")
    assert reply.says == ("Perdone, ha habido un problema. Le atiende un agente.",)
    assert reply.seq == 1
    state, _ = stored(rdb, sid)
    assert state is not None
    assert (state.node, state.waiting, state.seq) == ("agente", Waiting.QUEUE, 1)


@pytest.mark.parametrize("kind", ["redis", "cluster"])
def test_store_down_answers_apology_never_5xx(
    settings: Settings, catalog: FlowCatalog, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """With Redis down (nothing listens on its port: one Redis, or every seed node of a
    cluster, whose client raises its own exceptions) every voice webhook still gets 200 TwiML
    once the retry time is spent, a queued caller holds on, and /health says 503."""
    closed = _closed_port()
    if kind == "cluster":
        down = dataclasses.replace(
            settings,
            redis_host="",
            redis_cluster_nodes=(("127.0.0.1", closed),),
            store_retry_seconds=0.3,
        )
    else:
        down = dataclasses.replace(
            settings, redis_host="127.0.0.1", redis_port=closed, store_retry_seconds=0.3
        )
    assert down.redis_url is not None
    store = RedisCallStore.from_url(down.redis_url, CALL_TTL)
    service = build_service(down, catalog, store, clock=lambda: OPEN)
    sid = call_sid(111)
    caplog.set_level(logging.INFO)
    with driving(create_app(down, service)) as call:
        started = time.monotonic()
        assert_apology_hangup(call.start(sid))
        assert time.monotonic() - started >= 0.25, "the store was not retried"
        step = call.post(call.url("/api/calls/gather?seq=1"), call.params(Digits="1"))
        assert_apology_hangup(call.check(step))
        wait = call.post(
            call.url("/api/calls/queue-wait?seq=1&flow=seguros&node=agente"),
            call.params(QueueTime="3"),
        )
        # A store that is down must not throw a waiting caller out of the queue: hold on.
        assert call.check(wait).names == ("Pause",)
        health = call.client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "degraded"
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and sid in r.getMessage()]
    assert len(logged) >= 3


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- (g) Behind a TLS-terminating proxy ----------------------------------------------------------


def _env_settings(redis_db: RedisServer, **env: str) -> Settings:
    base = {
        "TWILIO_AUTH_TOKEN": TOKEN,
        "FLOWPBX_FLOWS_DIR": str(FLOWS),
        "REDIS_HOST": redis_db.host,
        "REDIS_PORT": str(redis_db.port),
    }
    return Settings.from_env(base | env, env_file=None)


@pytest.mark.parametrize("public", ["https://pbx.example.com", "https://pbx.example.com/ivr"])
def test_proxy_public_base_url_signature_validates(
    redis_db: RedisServer,
    catalog: FlowCatalog,
    store: RedisCallStore,
    rdb: redis.Redis,
    public: str,
) -> None:
    """With PUBLIC_BASE_URL, a signature over https://pbx.example.com validates behind TLS."""
    settings = _env_settings(redis_db, PUBLIC_BASE_URL=public + "/")
    app = make_app(settings, catalog, store, OPEN)
    with driving(app, base_url="http://testserver", public_base=public) as call:
        reply = call.start(call_sid(120))
        assert reply.one("Gather")["action"] == f"{public}/api/calls/gather?seq=1"
        assert call.press("9").one("Enqueue")["waitUrl"].startswith(f"{public}/api/calls/")
        params = inbound_params(call_sid(121), CALLER, CALLED)
        inner = call.sign("http://testserver/api/calls/incoming", params)
        response = call.post(call.url("/api/calls/incoming"), params, signature=inner)
        assert response.status_code == 403
    assert stored(rdb, call_sid(121)) == (None, 0)


def test_proxy_trusted_forwarded_headers_honoured(
    redis_db: RedisServer, catalog: FlowCatalog, store: RedisCallStore
) -> None:
    """From a trusted proxy, X-Forwarded-Proto/Host rebuild the URL Twilio signed."""
    settings = _env_settings(redis_db, FLOWPBX_TRUSTED_PROXIES="10.0.0.0/8, 192.168.1.1")
    assert settings.trusted_proxies[0] == ipaddress.ip_network("10.0.0.0/8")
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "pbx.example.com"}
    app = make_app(settings, catalog, store, OPEN)
    with driving(
        app,
        base_url="http://flowpbx:3020",
        public_base="https://pbx.example.com",
        client=("10.20.30.40", 51000),
        headers=forwarded,
    ) as call:
        reply = call.start(call_sid(122))
        assert reply.one("Gather")["action"] == "https://pbx.example.com/api/calls/gather?seq=1"
        assert call.press("1").one("Dial")["action"].startswith("https://pbx.example.com/")


def test_proxy_untrusted_client_forwarded_headers_ignored(
    redis_db: RedisServer, catalog: FlowCatalog, store: RedisCallStore, rdb: redis.Redis
) -> None:
    """From an untrusted address the forwarded headers are ignored, so the signature fails."""
    settings = _env_settings(redis_db, FLOWPBX_TRUSTED_PROXIES="10.0.0.0/8")
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "pbx.example.com"}
    app = make_app(settings, catalog, store, OPEN)
    with driving(
        app,
        base_url="http://flowpbx:3020",
        public_base="https://pbx.example.com",
        client=("203.0.113.50", 51000),
        headers=forwarded,
    ) as call:
        call.call_sid, call.from_, call.to = call_sid(123), CALLER, CALLED
        response = call.post(call.url("/api/calls/incoming"), call.params("ringing"))
        assert response.status_code == 403
        params = call.params("ringing")
        own = call.sign("http://flowpbx:3020/api/calls/incoming", params)
        direct = call.post(call.url("/api/calls/incoming"), params, signature=own)
        assert direct.status_code == 200  # the URL the app really saw
    assert stored(rdb, call_sid(123))[0] is not None


# --- (h) Development switch ----------------------------------------------------------------------


def test_dev_skip_signature_accepts_unsigned_and_warns(
    redis_db: RedisServer,
    catalog: FlowCatalog,
    store: RedisCallStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """FLOWPBX_DEV_SKIP_SIGNATURE=true logs a loud warning at start and accepts unsigned calls."""
    settings = Settings.from_env(
        {"FLOWPBX_DEV_SKIP_SIGNATURE": "true", "FLOWPBX_FLOWS_DIR": str(FLOWS)}, env_file=None
    )
    caplog.set_level(logging.WARNING)
    with driving(make_app(settings, catalog, store, OPEN)) as call:
        warnings = [r for r in caplog.records if "FLOWPBX_DEV_SKIP_SIGNATURE" in r.getMessage()]
        assert len(warnings) == 1
        assert warnings[0].levelno == logging.WARNING
        assert "NOT verified" in warnings[0].getMessage()
        call.call_sid, call.from_, call.to = call_sid(130), CALLER, CALLED
        unsigned = call.post(
            call.url("/api/calls/incoming"), call.params("ringing"), signature=None
        )
        assert_menu(call.check(unsigned), BIENVENIDA)
        forged = call.post(
            call.url("/api/calls/gather?seq=1"), call.params(Digits="9"), signature="x"
        )
        assert call.check(forged).says == (AGENTE,)


# --- (i) Status callbacks ------------------------------------------------------------------------


@ON_A_CLUSTER_TOO
def test_status_callbacks_signed_204_unsigned_403(call: TwilioDriver, rdb: redis.Redis) -> None:
    """Call and recording status callbacks: 204 when signed (kept for call history in the
    call's stream; a final status closes the call's state within a minute), 403 when not,
    storing nothing."""
    call.start(call_sid(140))
    call.press("1")
    key, stream = call_key(call.call_sid), stream_key(shard(call.call_sid))
    assert rdb.ttl(key) > 600
    before = rdb.xlen(stream)
    signed = [call.call_status("completed"), call.recording_status()]
    assert [r.status_code for r in signed] == [204, 204]
    assert [r.content for r in signed] == [b"", b""]
    entries: list[tuple[str, dict[str, str]]] = rdb.xrange(stream)  # type: ignore[assignment]
    reports = [json.loads(fields["report"]) for _, fields in entries[before:]]
    assert [r["progress"]["type"] for r in reports] == ["call_status", "recording_status"]
    assert {r["call_sid"] for r in reports} == {call.call_sid}
    assert 0 < rdb.ttl(key) <= 60
    after = snapshot(rdb)
    refused = [
        call.call_status("completed", signature=None),
        call.recording_status(signature=None),
        call.call_status("completed", signature="bm90IGEgc2lnbmF0dXJl"),
        call.recording_status(signature="bm90IGEgc2lnbmF0dXJl"),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert {r.json()["error"] for r in refused} == {"invalid_signature"}
    assert snapshot(rdb) == after


# --- (j) Health ----------------------------------------------------------------------------------


@ON_A_CLUSTER_TOO
def test_health_reports_store_and_flows(
    call: TwilioDriver, redis_target: RedisServer | RedisClusterServer
) -> None:
    """/health answers JSON: ok, the Redis store (or Redis Cluster) and the loaded flows with
    their versions."""
    cluster = isinstance(redis_target, RedisClusterServer)
    response = call.client.get("/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    version = flow_version((FLOWS / "seguros.yaml").read_bytes())
    assert response.json() == {
        "status": "ok",
        "store": "redis-cluster" if cluster else "redis",
        "flows": ["seguros"],
        "versions": {"seguros": version},
        "pid": os.getpid(),  # the process that answered (the app runs in this one)
        "workers": 1,
    }


# --- Input hardening: non-ASCII digits, trailing newlines, chunked bodies, plain apologies ------


@pytest.mark.parametrize("seq", ["%C2%B2", "%D9%A1"], ids=["superscript-two", "arabic-one"])
def test_malformed_seq_non_ascii_digits_rejected_400(
    call: TwilioDriver, rdb: redis.Redis, seq: str
) -> None:
    """A seq of non-ASCII digits ('²', '١') is malformed: 400, and the call does not move."""
    call.start(call_sid(150))
    before = snapshot(rdb)
    response = call.post(call.url(f"/api/calls/gather?seq={seq}"), call.params(Digits="1"))
    assert response.status_code == 400
    assert snapshot(rdb) == before


def test_malformed_callsid_trailing_newline_rejected_400(
    call: TwilioDriver, rdb: redis.Redis
) -> None:
    """A CallSid with a trailing newline is malformed: 400, and nothing is stored."""
    params = inbound_params(call_sid(151) + "\n", CALLER, CALLED)
    response = call.post(call.url("/api/calls/incoming"), params)
    assert response.status_code == 400
    assert snapshot(rdb) == {}


def test_webhook_chunked_body_over_limit_rejected_413(call: TwilioDriver, rdb: redis.Redis) -> None:
    """A body over 64 KiB is refused with 413 even when sent chunked, without Content-Length."""
    url = call.url("/api/calls/incoming")
    params = inbound_params(call_sid(152), CALLER, CALLED) | {"Padding": "x" * 200_000}
    body = urlencode(params).encode()
    chunks = (body[i : i + 8192] for i in range(0, len(body), 8192))
    headers = signed_headers(TOKEN, url, params)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    response = call.client.post("/api/calls/incoming", content=chunks, headers=headers)
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413
    assert snapshot(rdb) == {}


# --- The fake's own checks catch bad TwiML -------------------------------------------------------

_GOOD_SAY = '<Say language="es-ES" voice="Polly.Lucia">Hola.</Say>'
_GATHER = (
    '<Gather action="{url}" method="POST" numDigits="1" timeout="5">' + _GOOD_SAY + "</Gather>"
)


def _twiml(body: str, status: int = 200, content_type: str = "application/xml") -> httpx.Response:
    document = f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>'
    return httpx.Response(status, headers={"content-type": content_type}, content=document.encode())


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(_twiml(_GOOD_SAY.replace("Lucia", "Conchita")), id="other-voice"),
        pytest.param(_twiml(_GOOD_SAY.replace("es-ES", "es-MX")), id="other-language"),
        pytest.param(_twiml(_GATHER.format(url="/api/calls/gather?seq=1")), id="relative-url"),
        pytest.param(
            _twiml(_GATHER.format(url="http://pbx.example.test/api/calls/gather?seq=1")),
            id="http-url",
        ),
        pytest.param(_twiml(_GATHER.format(url=f"{BASE_URL}/api/calls/gather")), id="missing-seq"),
        pytest.param(
            _twiml(_GATHER.format(url=f"{BASE_URL}/api/calls/other?seq=1")), id="unknown-route"
        ),
        pytest.param(
            _twiml(_GATHER.format(url="https://evil.example/api/calls/gather?seq=1")),
            id="other-host",
        ),
        pytest.param(
            _twiml(_GATHER.format(url=f"{BASE_URL}/api/calls/gather?seq=1").replace("POST", "GET")),
            id="get-method",
        ),
        pytest.param(
            _twiml(_GATHER.format(url=f"{BASE_URL}/api/calls/gather?seq=1").replace('"5"', '"5s"')),
            id="timeout-not-int",
        ),
        pytest.param(_twiml("<Foo/>"), id="unknown-verb"),
        pytest.param(_twiml("<Hangup/>" + _GOOD_SAY), id="after-hangup"),
        pytest.param(
            _twiml(
                f'<Enqueue action="{BASE_URL}/api/calls/enqueue?seq=2" method="POST" '
                f'waitUrl="{BASE_URL}/api/calls/queue-wait?seq=2" waitUrlMethod="POST" '
                'maxQueueSize="10">q</Enqueue>'
            ),
            id="undocumented-attribute",
        ),
        pytest.param(
            _twiml(
                f'<Redirect method="POST">{BASE_URL}/api/calls/gather?seq=1</Redirect>'
                + _GATHER.format(url=f"{BASE_URL}/api/calls/gather?seq=2")
            ),
            id="seq-mismatch",
        ),
        pytest.param(_twiml(_GOOD_SAY, content_type="text/html"), id="content-type"),
        pytest.param(_twiml(_GOOD_SAY, status=500), id="status-500"),
    ],
)
def test_fake_check_reply_rejects_bad_twiml(response: httpx.Response) -> None:
    """The driver's checks fail on TwiML Twilio would mishandle or that breaks our conventions."""
    with pytest.raises(AssertionError):
        check_reply(response)


def test_fake_check_reply_accepts_good_twiml() -> None:
    """A well-formed reply passes and is parsed into verbs, texts and its step number."""
    reply = check_reply(_twiml(_GATHER.format(url=f"{BASE_URL}/api/calls/gather?seq=4")))
    assert reply.names == ("Gather",)
    assert reply.says == ("Hola.",)
    assert reply.seq == 4


def test_unknown_path_and_wrong_method_answer_json(call: TwilioDriver) -> None:
    """A path flowpbx does not serve gets a JSON 404, a GET to a webhook a JSON 405."""
    missing = call.client.post("/api/calls/nowhere", data={})
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    wrong = call.client.get("/api/calls/incoming")
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")


def test_malformed_host_is_refused_not_an_error(call: TwilioDriver, rdb: redis.Redis) -> None:
    """A Host header the signature check cannot take apart (a bad port) gets 403, not a 500."""
    params = inbound_params(call_sid(160), CALLER, CALLED)
    headers = signed_headers(TOKEN, BASE_URL + "/api/calls/incoming", params) | {"Host": "pbx:x"}
    response = call.client.post("/api/calls/incoming", data=params, headers=headers)
    assert response.status_code == 403
    assert response.json() == {
        "error": "invalid_signature",
        "detail": "X-Twilio-Signature does not match",
    }
    assert snapshot(rdb) == {}


def test_missing_signature_says_missing(call: TwilioDriver, rdb: redis.Redis) -> None:
    """An unsigned webhook's 403 says the signature is missing (not that it does not match)."""
    call.call_sid, call.from_, call.to = call_sid(161), CALLER, CALLED
    response = call.post(call.url("/api/calls/incoming"), call.params("ringing"), signature=None)
    assert response.status_code == 403
    assert response.json() == {
        "error": "invalid_signature",
        "detail": "X-Twilio-Signature is missing",
    }
    assert snapshot(rdb) == {}
