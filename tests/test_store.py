"""Call stores: the in-process twin and Redis keep the same compare-and-set contract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from flowpbx.engine.state import CallState, Waiting
from flowpbx.store import CallStore
from flowpbx.store.memory import MemoryCallStore
from flowpbx.store.redis import KEY_PREFIX, RedisCallStore
from servers import RedisServer, redis_server

SID = "CA" + "0" * 32
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _state(seq: int = 1, node: str = "menu") -> CallState:
    state = CallState(SID, "seguros", "abc123", node, Waiting.KEYS, seq=seq)
    return state.evolve(variables={"caller": "+34600111222"}, visits={"volver": 2})


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, redis: RedisServer) -> AsyncIterator[CallStore]:
    if request.param == "memory":
        yield MemoryCallStore(ttl=60)
        return
    redis_store = RedisCallStore.from_url(redis.url, ttl=60)
    await redis_store.client.flushdb()
    yield redis_store
    await redis_store.aclose()


async def test_store_unknown_call_is_empty(store: CallStore) -> None:
    """A call never stored reads as no state at revision 0."""
    assert await store.get(SID) == (None, 0)


async def test_store_put_then_get_round_trips(store: CallStore) -> None:
    """A stored state reads back equal, at the next revision."""
    assert await store.put(_state(), 0)
    state, revision = await store.get(SID)
    assert (state, revision) == (_state(), 1)


async def test_store_rejects_stale_revision(store: CallStore) -> None:
    """A write based on an old revision loses and leaves the newer state in place."""
    assert await store.put(_state(seq=1), 0)
    assert await store.put(_state(seq=2), 1)
    assert not await store.put(_state(seq=99), 1)
    assert not await store.put(_state(seq=99), 0)
    state, revision = await store.get(SID)
    assert state is not None
    assert (state.seq, revision) == (2, 2)


async def test_store_concurrent_writers_exactly_one_wins(store: CallStore) -> None:
    """Of many writers starting from the same revision, exactly one succeeds."""
    assert await store.put(_state(seq=1), 0)
    results = await asyncio.gather(*(store.put(_state(seq=10 + i), 1) for i in range(20)))
    assert sum(results) == 1
    state, revision = await store.get(SID)
    assert state is not None
    assert revision == 2
    assert state.seq == 10 + results.index(True)


async def test_store_ping(store: CallStore) -> None:
    """A running store answers ping."""
    assert await store.ping()


async def test_redis_store_sets_ttl(redis: RedisServer) -> None:
    """Redis keeps each call under one key with the configured expiry."""
    store = RedisCallStore.from_url(redis.url, ttl=123)
    try:
        await store.client.flushdb()
        assert await store.put(_state(), 0)
        ttl = await store.client.ttl(KEY_PREFIX + SID)
        assert 0 < ttl <= 123
        assert await store.client.hget(KEY_PREFIX + SID, "rev") == b"1"
    finally:
        await store.aclose()


async def test_redis_store_ping_false_when_down() -> None:
    """A Redis that does not answer pings false instead of raising."""
    store = RedisCallStore.from_url("redis://127.0.0.1:1/0", ttl=60)
    try:
        assert not await store.ping()
    finally:
        await store.aclose()


async def test_memory_store_expires_calls() -> None:
    """The in-process store forgets a call once its TTL has passed, like Redis."""
    now = [1000.0]
    store = MemoryCallStore(ttl=10, clock=lambda: now[0])
    assert await store.put(_state(), 0)
    now[0] += 9.9
    assert (await store.get(SID))[1] == 1
    now[0] += 0.2
    assert await store.get(SID) == (None, 0)
    assert await store.put(_state(), 0)
