"""Faults a caller must not hear, each found by trying the service adversarially.

Every test here failed on the engine before call engine v2. The Redis ones run a real
`flowpbx serve` process against a real `redis-server` that the test stops, restarts or pauses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis

from conftest import FLOWS
from flowpbx.app import build_service, catalog_from
from flowpbx.engine.actions import Action
from flowpbx.language.catalog import FlowCatalog, LoadedFlow
from flowpbx.language.loader import load_flow
from flowpbx.logs import log_formatter
from flowpbx.settings import Settings
from flowpbx.store.memory import MemoryCallStore
from flowpbx.store.redis import RedisCallStore, call_key
from flowpbx.twilio.twiml import TwimlRenderer, Urls
from flowpbx.web.app import create_app
from serve_process import Server, environment, serving, workdir
from servers import RedisServer, redis_server
from twilio_fake import (
    BASE_URL,
    TestClient,
    TwilioDriver,
    call_sid,
    inbound_params,
    signed_headers,
)

TOKEN = "faults-token"
MADRID = ZoneInfo("Europe/Madrid")
OPEN = dt.datetime(2026, 11, 24, 10, 0, tzinfo=MADRID)
CALLER = "+34600111222"
CALLED = "+34910000000"
BIENVENIDA = (
    "Bienvenido a Seguros. Le informamos de que esta llamada puede ser grabada para mejorar "
    "la calidad del servicio."
)
MENU = (
    "Para seguros de vida, pulse 1. Para seguros de salud, pulse 2. "
    "Para seguros de hogar, pulse 3. Para seguros de automóvil, pulse 4. "
    "Para hablar con un agente, pulse 9."
)
APOLOGY = "Lo sentimos, se ha producido un error. Volvemos al menú principal."
COLA_LLENA = (
    "Lo sentimos, en este momento hay demasiadas personas esperando y no podemos atenderle. "
    "Puede dejarnos un mensaje y le llamaremos lo antes posible."
)
POLIZA_INVALID = "El número de póliza tiene ocho cifras."
BUZON_GENERAL = (
    "Si lo desea, deje su nombre, su teléfono y su mensaje después de la señal, y le llamaremos."
)
HOLD_MUSIC = "http://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3"


# --- In-process app on a real Redis ------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_db() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def rdb(redis_db: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(host=redis_db.host, port=redis_db.port, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="module")
def catalog() -> FlowCatalog:
    return catalog_from(Settings(twilio_auth_token=TOKEN, flows_dir=FLOWS), env_file=None)


class AppDriver:
    """A TwilioDriver on the real app (clock stopped at OPEN) over the test Redis."""

    def __init__(self, redis_db: RedisServer, catalog: FlowCatalog) -> None:
        settings = Settings(
            twilio_auth_token=TOKEN,
            flows_dir=FLOWS,
            redis_host=redis_db.host,
            redis_port=redis_db.port,
        )
        store = RedisCallStore.from_url(redis_db.url, 3600)
        service = build_service(settings, catalog, store, clock=lambda: OPEN)
        self.client = TestClient(create_app(settings, service), base_url=BASE_URL)

    def __enter__(self) -> TwilioDriver:
        self.client.__enter__()
        return TwilioDriver(self.client, TOKEN)

    def __exit__(self, *exc: object) -> None:
        self.client.__exit__(*exc)


@pytest.fixture
def call(redis_db: RedisServer, catalog: FlowCatalog, rdb: redis.Redis) -> Iterator[TwilioDriver]:
    with AppDriver(redis_db, catalog) as driver:
        yield driver


def test_queued_caller_with_lost_state_keeps_waiting(call: TwilioDriver, rdb: redis.Redis) -> None:
    """A caller in Twilio's queue whose state is gone hears hold music (inside the gather for
    the queue's keys), not <Leave/>."""
    sid = call_sid(1)
    call.start(sid)
    call.press("9")
    rdb.delete(call_key(sid))
    for waited in (5, 30):
        wait = call.wait(waited)
        assert not wait.has("Leave")
        assert not wait.has("Hangup")
        assert wait.names == ("Gather",)
        assert [play.text for play in wait.one("Gather").named("Play")] == [HOLD_MUSIC]


def test_repeated_incoming_answers_first_document(call: TwilioDriver) -> None:
    """An incoming webhook delivered again after the call moved on gets its first answer."""
    sid = call_sid(2)
    first = call.start(sid)
    call.press("4")
    incoming = call.sent[0]
    again = call.check(call.post(incoming.url, incoming.params))
    assert again.xml == first.xml


def test_input_longer_than_max_digits_is_invalid(call: TwilioDriver) -> None:
    """With max_digits 8, a 9-digit policy number is refused like any invalid input."""
    call.start(call_sid(3))
    call.press("4")
    call.press("1")
    gather = call.reply.one("Gather")
    params = call.params(Digits="123456789", msg="Gather End", FinishedOnKey="#")
    reply = call.check(call.post(gather["action"], params))
    assert reply.says[0] == POLIZA_INVALID
    assert reply.has("Gather")


def test_queue_error_result_goes_to_full_branch(call: TwilioDriver) -> None:
    """Twilio's queue 'error' sends the caller on to the queue's 'full' branch (cola_llena,
    then voicemail)."""
    for n, result in enumerate(("error", "system-error", "some-future-result")):
        call.start(call_sid(10 + n))
        call.press("9")
        reply = call.queue_result(result, 12)
        assert reply.says == (COLA_LLENA, BUZON_GENERAL), result
        assert reply.has("Record")


def test_lost_state_mid_menu_recovers_to_fallback(call: TwilioDriver, rdb: redis.Redis) -> None:
    """A menu key for a call whose state vanished answers the apology, the welcome (the
    recording notice) and the main menu."""
    sid = call_sid(4)
    call.start(sid)
    rdb.delete(call_key(sid))
    reply = call.press("1")
    assert reply.says == (APOLOGY, BIENVENIDA, MENU)
    assert not reply.has("Enqueue")
    assert rdb.exists(call_key(sid))


def test_corrupt_state_is_logged_as_corrupt_and_recovered(
    redis_db: RedisServer,
    catalog: FlowCatalog,
    rdb: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Unreadable stored state is logged as corrupt with the CallSid (not as a store outage),
    and the caller recovers at the fallback; another process, which never saw the call, reads
    it."""
    sid = call_sid(5)
    with AppDriver(redis_db, catalog) as first:
        first.start(sid)
    rdb.hset(call_key(sid), "state", '{"call_sid": 7}')
    caplog.set_level(logging.INFO)
    with AppDriver(redis_db, catalog) as second:
        second.call_sid, second.from_, second.to = sid, CALLER, CALLED
        url = BASE_URL + "/api/calls/gather?seq=1"
        reply = second.check(second.post(url, second.params(Digits="1")))
    assert reply.says == (APOLOGY, BIENVENIDA, MENU)
    assert reply.has("Gather")
    corrupt = [r for r in caplog.records if "corrupt" in r.getMessage()]
    assert corrupt
    assert sid in corrupt[0].getMessage()
    assert "unavailable" not in caplog.text


def test_state_of_an_older_release_reads_with_defaults(
    redis_db: RedisServer, catalog: FlowCatalog, rdb: redis.Redis
) -> None:
    """State written before a field existed is read with that field's default (rolling deploy):
    another process, which has never seen the call, takes its next step."""
    sid = call_sid(6)
    with AppDriver(redis_db, catalog) as first:
        first.start(sid)
    key = call_key(sid)
    blob = rdb.hget(key, "state")
    assert isinstance(blob, str)
    data = json.loads(blob)
    for name in ("queued_at", "leave_reason", "visits"):
        assert name in data
        del data[name]
    rdb.hset(key, "state", json.dumps(data))
    with AppDriver(redis_db, catalog) as second:
        second.call_sid, second.from_, second.to = sid, CALLER, CALLED
        url = BASE_URL + "/api/calls/gather?seq=1"
        reply = second.check(second.post(url, second.params(Digits="2")))
    assert reply.says == (
        "Ha elegido seguros de salud. Le pasamos con el departamento de seguros de salud.",
    )
    assert reply.has("Dial")


def test_trailing_slash_is_not_redirected_from_host_header(call: TwilioDriver) -> None:
    """A webhook path with a trailing slash gets a JSON 404, never a redirect built from Host."""
    params = inbound_params(call_sid(7), CALLER, CALLED)
    url = BASE_URL + "/api/calls/incoming/"
    headers = signed_headers(TOKEN, url, params) | {"Host": "evil.example"}
    response = call.client.post(
        "/api/calls/incoming/", data=params, headers=headers, follow_redirects=False
    )
    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.json()["error"] == "not_found"


INPUT_FLOW = """\
name: entrada
entry: pedir
nodes:
  pedir:
    type: input
    prompt: Marque su referencia y pulse almohadilla.
    variable: referencia
    exhausted: adios
    next: leer
  leer:
    type: say
    text: Ha marcado {referencia:digits}.
    next: adios
  adios:
    type: hangup
    text: Adiós.
"""


def test_input_without_max_digits_accepts_long_entry(
    tmp_path: Path, redis_db: RedisServer, rdb: redis.Redis
) -> None:
    """An input with no max_digits takes what Twilio sends, even 80 digits (no 400)."""
    path = tmp_path / "entrada.yaml"
    path.write_text(INPUT_FLOW, encoding="utf-8")
    catalog = FlowCatalog({"entrada": LoadedFlow(load_flow(path), "v1", {})}, {}, "entrada")
    digits = "1234567890" * 8
    with AppDriver(redis_db, catalog) as call:
        call.start(call_sid(8))
        reply = call.press(digits + "#")
    assert reply.says == (f"Ha marcado {' '.join(digits)}.", "Adiós.")


class BreakableRenderer:
    """The service's TwiML writer, which the test breaks (as a bug in it would): every
    document it is asked for, a step's or an apology's, fails."""

    def __init__(self) -> None:
        self.twiml = TwimlRenderer(Urls(BASE_URL))
        self.broken = False

    def __call__(self, actions: tuple[Action, ...], seq: int, flow: str = "") -> str:
        if self.broken:
            raise RuntimeError("the TwiML writer is broken")
        return self.twiml(actions, seq, flow)


def test_a_webhook_whose_apology_fails_too_still_answers_twiml(catalog: FlowCatalog) -> None:
    """When the TwiML writer fails, the step and its apology fail alike: a new call still gets
    an apology in the default flow's voice and a hangup, a caller waiting in a queue a pause
    (Twilio asks the wait URL again after it: the caller keeps their place), never a 500;
    each failure is logged once, as an error with the CallSid."""
    settings = Settings(twilio_auth_token=TOKEN, flows_dir=FLOWS, public_base_url=BASE_URL)
    renderer = BreakableRenderer()
    built = build_service(settings, catalog, MemoryCallStore(3600), clock=lambda: OPEN)
    service = dataclasses.replace(built, renderer=renderer)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(log_formatter("json"))
    web = logging.getLogger("flowpbx.web")
    web.addHandler(handler)
    try:
        with TestClient(create_app(settings, service), base_url=BASE_URL) as client:
            waiting = TwilioDriver(client, TOKEN)
            waiting.start(call_sid(40))
            assert waiting.press("9").has("Enqueue")
            renderer.broken = True
            held = waiting.wait(30)
            new = TwilioDriver(client, TOKEN)
            sorry = new.start(call_sid(41))
    finally:
        web.removeHandler(handler)
    assert held.names == ("Pause",)
    assert sorry.names == ("Say", "Hangup")
    assert sorry.says == ("Lo sentimos, se ha producido un error. Disculpe las molestias.",)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    failed = [line for line in lines if "failed" in line["event"]]
    assert [(line["level"], line["call_sid"]) for line in failed] == [
        ("error", call_sid(40)),
        ("error", call_sid(41)),
    ], failed
    assert all("the TwiML writer is broken" in line["exception"] for line in failed)


# --- A real server process and a Redis that restarts ---------------------------------------------


@pytest.fixture
def persistent_redis() -> Iterator[RedisServer]:
    with redis_server(persistent=True) as server:
        yield server


@pytest.fixture
def server(tmp_path: Path, persistent_redis: RedisServer) -> Iterator[Server]:
    env = environment(
        REDIS_HOST=persistent_redis.host,
        REDIS_PORT=str(persistent_redis.port),
        FLOWPBX_HOURS_OVERRIDE="open",
    )
    with serving(workdir(tmp_path), env) as running:
        yield running


async def _post(client: httpx.AsyncClient, url: str, params: dict[str, str]) -> str:
    headers = signed_headers("test-token", url, params)
    response = await client.post(url, data=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.text


async def _incoming(server: Server, sids: list[str]) -> list[str]:
    url = server.base_url + "/api/calls/incoming"
    async with httpx.AsyncClient(timeout=20.0) as client:
        return list(
            await asyncio.gather(
                *(_post(client, url, inbound_params(sid, CALLER, CALLED)) for sid in sids)
            )
        )


async def _press(server: Server, sids: list[str], digits: str) -> list[str]:
    url = server.base_url + "/api/calls/gather?seq=1"
    async with httpx.AsyncClient(timeout=20.0) as client:
        return list(
            await asyncio.gather(
                *(
                    _post(client, url, inbound_params(sid, CALLER, CALLED) | {"Digits": digits})
                    for sid in sids
                )
            )
        )


def test_redis_restart_costs_no_new_call(server: Server, persistent_redis: RedisServer) -> None:
    """After Redis restarts, stale pooled connections do not turn new calls into apologies."""
    first = [call_sid(100 + n) for n in range(50)]
    assert all(BIENVENIDA in xml for xml in asyncio.run(_incoming(server, first)))
    persistent_redis.restart()
    second = [call_sid(200 + n) for n in range(50)]
    answers = asyncio.run(_incoming(server, second))
    apologies = sum("Lo sentimos" in xml for xml in answers)
    assert apologies == 0, f"{apologies} of 50 new calls got the apology:\n{server.output()}"
    menus = asyncio.run(_press(server, first[:20], "1"))
    assert all("Ha elegido seguros de vida" in xml for xml in menus)


@pytest.mark.parametrize("fault", ["stopped", "paused"])
def test_redis_blip_does_not_end_calls_in_the_menu(
    server: Server, persistent_redis: RedisServer, fault: str
) -> None:
    """Redis gone for 1.5 s (refusing, or hanging) while twenty callers press keys: every
    caller gets the next step once it is back, none the apology."""
    sids = [call_sid(300 + n) for n in range(20)]
    assert all(BIENVENIDA in xml for xml in asyncio.run(_incoming(server, sids)))
    if fault == "stopped":
        persistent_redis.stop()
        back = threading.Timer(1.5, persistent_redis.start)
    else:
        persistent_redis.pause()
        back = threading.Timer(1.5, persistent_redis.resume)
    back.start()
    started = time.monotonic()
    try:
        answers = asyncio.run(_press(server, sids, "2"))
    finally:
        back.join()
    assert time.monotonic() - started < 10
    apologies = sum("Lo sentimos" in xml for xml in answers)
    assert apologies == 0, f"{apologies} of 20 callers got the apology:\n{server.output()}"
    assert all("Ha elegido seguros de salud" in xml for xml in answers)


@pytest.fixture
def empty_redis() -> Iterator[RedisServer]:
    with redis_server(persistent=False) as server:
        yield server


def test_redis_restart_empty_ejects_no_queued_caller(
    tmp_path: Path, empty_redis: RedisServer
) -> None:
    """Twenty calls, ten in the menu and ten waiting for an agent, when Redis restarts with
    nothing: new calls are greeted, queued callers keep their hold music (taken up again at
    their queue), and callers in the menu hear the apology and go back to the welcome and the
    main menu."""
    env = environment(
        REDIS_HOST=empty_redis.host,
        REDIS_PORT=str(empty_redis.port),
        FLOWPBX_HOURS_OVERRIDE="open",
    )
    with serving(workdir(tmp_path), env) as server:
        menu = [call_sid(400 + n) for n in range(10)]
        queued = [call_sid(500 + n) for n in range(10)]
        asyncio.run(_incoming(server, menu + queued))
        assert all("general-queue" in xml for xml in asyncio.run(_press(server, queued, "9")))
        empty_redis.restart()
        new = [call_sid(600 + n) for n in range(10)]
        assert all(BIENVENIDA in xml for xml in asyncio.run(_incoming(server, new)))
        waits = asyncio.run(_wait(server, queued, 45))
        assert all(HOLD_MUSIC in xml and "<Leave" not in xml for xml in waits)
        menus = asyncio.run(_press(server, menu, "1"))
        assert all(APOLOGY in xml and BIENVENIDA in xml for xml in menus)
        assert not any("<Enqueue" in xml for xml in menus)


async def _wait(server: Server, sids: list[str], waited: int) -> list[str]:
    url = server.base_url + "/api/calls/queue-wait?seq=2&flow=seguros&node=agente"
    async with httpx.AsyncClient(timeout=20.0) as client:
        return list(
            await asyncio.gather(
                *(
                    _post(
                        client,
                        url,
                        inbound_params(sid, CALLER, CALLED) | {"QueueTime": str(waited)},
                    )
                    for sid in sids
                )
            )
        )


def test_redis_that_hangs_is_cut_off_in_time(tmp_path: Path, persistent_redis: RedisServer) -> None:
    """A Redis that stops answering (frozen, connections left open) costs a caller at most the
    store's retry time: the apology comes well inside Twilio's 15 s, not after it."""
    env = environment(
        REDIS_HOST=persistent_redis.host,
        REDIS_PORT=str(persistent_redis.port),
        FLOWPBX_HOURS_OVERRIDE="open",
        FLOWPBX_STORE_RETRY_SECONDS="3",
    )
    with serving(workdir(tmp_path), env) as server:
        sids = [call_sid(700 + n) for n in range(3)]
        assert all(BIENVENIDA in xml for xml in asyncio.run(_incoming(server, sids)))
        persistent_redis.pause()
        try:
            started = time.monotonic()
            answers = asyncio.run(_press(server, sids, "1"))
            new = asyncio.run(_incoming(server, [call_sid(710)]))
            elapsed = time.monotonic() - started
        finally:
            persistent_redis.resume()
    assert all("Disculpe las molestias." in xml for xml in answers + new)
    # Two rounds of requests, each bounded by the 3 s retry time (plus one last attempt).
    assert elapsed < 2 * 4.5, f"answered after {elapsed:.1f} s"
