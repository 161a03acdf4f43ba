"""The engine's service without HTTP: two services sharing one real Redis stay consistent, a
step and its call events are stored together, and a blinking store is retried in time."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from flowpbx.app import catalog_from
from flowpbx.engine.call_events import CallStarted, DialFinished, NodeEntered, StepRecord
from flowpbx.engine.events import (
    DialEnded,
    DialResult,
    Direction,
    KeysPressed,
    NewCall,
    QueueWaitTick,
)
from flowpbx.engine.service import CallService
from flowpbx.language.catalog import FlowCatalog
from flowpbx.settings import Settings
from flowpbx.store.redis import RedisCallStore, shard, stream_key
from flowpbx.twilio.twiml import TwimlRenderer, Urls
from servers import RedisServer, redis_server

pytestmark = pytest.mark.anyio
FLOWS = Path(__file__).resolve().parents[1] / "flows"
OPEN = dt.datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))
RENDER = TwimlRenderer(Urls("https://pbx.example.com"))
SID = "CA" + "ab" * 16


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def catalog() -> FlowCatalog:
    return catalog_from(Settings(twilio_auth_token="t", flows_dir=FLOWS), env_file=None)


@pytest.fixture
async def two_processes(
    redis: RedisServer, catalog: FlowCatalog
) -> AsyncIterator[tuple[CallService, CallService, RedisCallStore]]:
    """Two services, each with its own Redis client (as two processes have), on one Redis."""
    first = RedisCallStore.from_url(redis.url, 60)
    second = RedisCallStore.from_url(redis.url, 60)
    await first.client.flushdb()
    yield (
        CallService(catalog=catalog, store=first, renderer=RENDER, clock=lambda: OPEN),
        CallService(catalog=catalog, store=second, renderer=RENDER, clock=lambda: OPEN),
        first,
    )
    await first.aclose()
    await second.aclose()


CALL = NewCall(call_sid=SID, caller="+34600111222", called="+34910000000")


async def _state(store: RedisCallStore) -> tuple[str, int, int]:
    stored = await store.load(SID)
    assert stored is not None
    return stored.state.node, stored.state.seq, stored.revision


async def _records(store: RedisCallStore) -> list[StepRecord]:
    entries = await store.client.xrange(stream_key(shard(SID)))
    assert entries is not None
    return [StepRecord.from_json(fields[b"record"]) for _, fields in entries if fields]


async def test_service_steps_alternate_between_processes(
    two_processes: tuple[CallService, CallService, RedisCallStore],
) -> None:
    """Webhooks of one call served by different processes walk the flow in order."""
    a, b, store = two_processes
    assert "Bienvenido a Seguros." in (await a.start(CALL)).reply
    chose = await b.handle(CALL, 1, KeysPressed(digits="2"))
    assert "Ha elegido seguros de salud." in chose.reply
    voicemail = await a.handle(CALL, 2, DialEnded(result=DialResult.BUSY))
    assert "departamento de salud no puede atenderle" in voicemail.reply
    assert await _state(store) == ("buzon_salud", 3, 3)


async def test_service_stores_each_steps_events_with_it(
    two_processes: tuple[CallService, CallService, RedisCallStore],
) -> None:
    """Each step's call events reach the call's stream once, in order, with the revision and
    step they belong to; a repeated webhook adds none."""
    a, b, store = two_processes
    started = await a.start(CALL)
    await b.handle(CALL, 1, KeysPressed(digits="2"))
    await b.handle(CALL, 1, KeysPressed(digits="2"))  # Twilio's retry: same reply, no events
    await a.handle(CALL, 2, DialEnded(result=DialResult.BUSY))
    records = await _records(store)
    assert [(r.revision, r.seq) for r in records] == [(1, 1), (2, 2), (3, 3)]
    assert started.step is not None
    assert records[0].events == started.step.events
    assert records[0].events[0] == CallStarted(
        flow="seguros",
        version=records[0].version,
        caller="+34600111222",
        called="+34910000000",
        direction=Direction.INBOUND,
    )
    assert NodeEntered(node="menu_principal", kind="menu") in records[0].events
    assert DialFinished(node="llamar_salud", result=DialResult.BUSY, duration=0) in (
        records[2].events
    )
    assert len({r.id for r in records}) == 3


async def test_service_stale_local_state_does_not_advance_twice(
    two_processes: tuple[CallService, CallService, RedisCallStore],
) -> None:
    """A retried webhook reaching a process whose remembered state is stale gets the reply the
    other process gave, and the call advances once."""
    a, b, store = two_processes
    await a.start(CALL)
    # Process A remembers the call at step 1; process B takes step 1 (option 1: vida).
    reply_b = await b.handle(CALL, 1, KeysPressed(digits="1"))
    # Twilio retries step 1 to process A, with another key: A must not take it again.
    reply_a = await a.handle(CALL, 1, KeysPressed(digits="3"))
    assert reply_a.reply == reply_b.reply
    assert reply_a.step is None
    assert "Ha elegido seguros de vida." in reply_a.reply
    assert await _state(store) == ("llamar_vida", 2, 2)


async def test_service_new_call_created_once(
    two_processes: tuple[CallService, CallService, RedisCallStore],
) -> None:
    """The incoming webhook delivered to two processes creates the call once, same reply."""
    a, b, store = two_processes
    first = await a.start(CALL)
    second = await b.start(CALL)
    assert first.reply == second.reply
    assert second.step is None
    assert (await _state(store))[2] == 1


async def test_service_webhook_of_wrong_kind_changes_nothing(
    two_processes: tuple[CallService, CallService, RedisCallStore],
) -> None:
    """A dial result posted while the call waits for keys gets the last reply; no step."""
    a, _, store = two_processes
    greeting = await a.start(CALL)
    wrong = await a.handle(CALL, 1, DialEnded(result=DialResult.ANSWERED))
    assert wrong.reply == greeting.reply
    assert await _state(store) == ("menu_principal", 1, 1)


async def test_service_starts_a_flow_by_name(
    two_processes: tuple[CallService, CallService, RedisCallStore],
) -> None:
    """A call placed by flowpbx starts the flow it names, whatever number it reached."""
    a, _, store = two_processes
    outbound = NewCall(
        call_sid=SID,
        caller="+34910000000",
        called="+34699999999",
        direction=Direction.OUTBOUND,
        flow="seguros",
    )
    answer = await a.start(outbound)
    assert answer.step is not None
    assert answer.step.state.direction is Direction.OUTBOUND
    assert "Bienvenido a Seguros." in answer.reply
    assert (await _records(store))[0].events[0] == CallStarted(
        flow="seguros",
        version=answer.step.state.version,
        caller="+34910000000",
        called="+34699999999",
        direction=Direction.OUTBOUND,
    )


async def test_service_retries_a_store_that_blinks(
    redis: RedisServer, catalog: FlowCatalog
) -> None:
    """A store refusing connections for less than the retry time costs the caller a wait, not
    the call: the step is taken once the store is back."""
    with redis_server(persistent=True) as blinking:
        store = RedisCallStore.from_url(blinking.url, 60)
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)
            if len(slept) == 3:
                blinking.start()
            await asyncio.sleep(seconds)

        service = CallService(
            catalog=catalog, store=store, renderer=RENDER, clock=lambda: OPEN, sleep=sleep
        )
        try:
            assert "Bienvenido a Seguros." in (await service.start(CALL)).reply
            blinking.stop()
            answer = await service.handle(CALL, 1, KeysPressed(digits="2"))
            assert "Ha elegido seguros de salud." in answer.reply
            assert len(slept) >= 3
            assert sum(slept) < service.retry_seconds
        finally:
            await store.aclose()


async def test_service_gives_up_after_the_retry_time(catalog: FlowCatalog) -> None:
    """A store that stays down is tried for `retry_seconds`, then the caller hears the plain
    apology (a queued caller holds on instead)."""
    store = RedisCallStore.from_url("redis://127.0.0.1:1/0", 60)
    service = CallService(
        catalog=catalog, store=store, renderer=RENDER, clock=lambda: OPEN, retry_seconds=0.4
    )
    try:
        started = time.monotonic()
        answer = await service.start(CALL)
        elapsed = time.monotonic() - started
        assert 0.4 <= elapsed < 3
        assert "Disculpe las molestias." in answer.reply
        assert "<Hangup" in answer.reply
        assert answer.step is None
    finally:
        await store.aclose()


async def test_service_call_whose_flow_is_gone_goes_on(
    two_processes: tuple[CallService, CallService, RedisCallStore], catalog: FlowCatalog
) -> None:
    """After a release renames a call's flow, a caller waiting in its queue keeps the hold
    music (taken up at the same queue node), and a caller in a menu is recovered at the
    number's flow, not hung up on."""
    a, _, store = two_processes
    queued = NewCall(call_sid="CA" + "cd" * 16, caller="+34600111222", called="+34910000000")
    await a.start(CALL)
    await a.start(queued)
    await a.handle(queued, 1, KeysPressed(digits="9"))
    loaded = catalog.flows["seguros"]
    renamed = dataclasses.replace(loaded, flow=dataclasses.replace(loaded.flow, name="seguros2"))
    release = FlowCatalog({"seguros2": renamed}, {}, "seguros2")
    b = CallService(catalog=release, store=store, renderer=RENDER, clock=lambda: OPEN)
    wait = await b.handle(queued, 2, QueueWaitTick(waited=30), node="agente")
    assert "BusyStrings.mp3" in wait.reply
    assert "<Leave" not in wait.reply
    assert "<Hangup" not in wait.reply
    menu = await b.handle(CALL, 1, KeysPressed(digits="1"))
    assert "Volvemos al menú principal." in menu.reply
    assert "Bienvenido a Seguros." in menu.reply
    assert "<Gather" in menu.reply
    assert "<Enqueue" not in menu.reply
    recovered = await store.load(CALL.call_sid)
    assert recovered is not None
    assert recovered.state.flow == "seguros2"
    assert recovered.state.node == "menu_principal"


async def test_service_never_logs_the_keys_of_an_event_it_refuses(
    two_processes: tuple[CallService, CallService, RedisCallStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Keys posted to a step that does not take them (they may be a PIN) are not logged."""
    a, _, _ = two_processes
    await a.start(CALL)
    await a.handle(CALL, 1, KeysPressed(digits="1"))
    caplog.set_level(logging.INFO)
    refused = await a.handle(CALL, 2, KeysPressed(digits="918273"))
    assert refused.step is None
    assert "KeysPressed cannot happen at llamar_vida" in caplog.text
    assert "918273" not in caplog.text
