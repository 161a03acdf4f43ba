"""The call service across processes: two services sharing one real Redis stay consistent."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from flowpbx.app import catalog_from
from flowpbx.engine.interpreter import DialEnded, KeysPressed
from flowpbx.engine.service import CallService
from flowpbx.language.catalog import FlowCatalog
from flowpbx.settings import Settings
from flowpbx.store.redis import RedisCallStore
from flowpbx.twilio.twiml import Urls
from servers import RedisServer, redis_server

pytestmark = pytest.mark.anyio
FLOWS = Path(__file__).resolve().parents[1] / "flows"
OPEN = dt.datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))
URLS = Urls("https://pbx.example.com")
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
        CallService(catalog, first, clock=lambda: OPEN),
        CallService(catalog, second, clock=lambda: OPEN),
        first,
    )
    await first.aclose()
    await second.aclose()


async def test_service_steps_alternate_between_processes(
    two_processes: tuple[CallService, CallService, RedisCallStore],
) -> None:
    """Webhooks of one call served by different processes walk the flow in order."""
    a, b, store = two_processes
    assert "Bienvenido a Seguros." in await a.incoming(SID, "+34600111222", "+34910000000", URLS)
    assert "Ha elegido seguros de salud." in await b.event(SID, 1, KeysPressed("2"), URLS)
    voicemail = await a.event(SID, 2, DialEnded("busy"), URLS)
    assert "departamento de salud no puede atenderle" in voicemail
    state, revision = await store.get(SID)
    assert state is not None
    assert (state.node, state.seq, revision) == ("buzon_salud", 3, 3)


async def test_service_stale_local_state_does_not_advance_twice(
    two_processes: tuple[CallService, CallService, RedisCallStore],
) -> None:
    """A retried webhook reaching a process whose remembered state is stale gets the reply the
    other process gave, and the call advances once."""
    a, b, store = two_processes
    await a.incoming(SID, "+34600111222", "+34910000000", URLS)
    # Process A remembers the call at step 1; process B takes step 1 (option 1: vida).
    reply_b = await b.event(SID, 1, KeysPressed("1"), URLS)
    remembered = store.recent(SID)
    assert remembered is not None
    assert remembered[0].seq == 1
    # Twilio retries step 1 to process A, with another key: A must not take it again.
    reply_a = await a.event(SID, 1, KeysPressed("3"), URLS)
    assert reply_a == reply_b
    assert "Ha elegido seguros de vida." in reply_a
    state, revision = await store.get(SID)
    assert state is not None
    assert (state.node, state.seq, revision) == ("llamar_vida", 2, 2)


async def test_service_new_call_created_once(
    two_processes: tuple[CallService, CallService, RedisCallStore],
) -> None:
    """The incoming webhook delivered to two processes creates the call once, same reply."""
    a, b, store = two_processes
    first = await a.incoming(SID, "+34600111222", "+34910000000", URLS)
    second = await b.incoming(SID, "+34600111222", "+34910000000", URLS)
    assert first == second
    assert (await store.get(SID))[1] == 1


async def test_service_webhook_of_wrong_kind_changes_nothing(
    two_processes: tuple[CallService, CallService, RedisCallStore],
) -> None:
    """A dial result posted while the call waits for keys gets the last reply; no step."""
    a, _, store = two_processes
    greeting = await a.incoming(SID, "+34600111222", "+34910000000", URLS)
    assert await a.event(SID, 1, DialEnded("completed"), URLS) == greeting
    state, revision = await store.get(SID)
    assert state is not None
    assert (state.node, state.seq, revision) == ("menu_principal", 1, 1)
