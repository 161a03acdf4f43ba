"""Call stores: the in-process twin and Redis keep the same contract — compare-and-set on the
revision, the step's reply and call events saved with the state or not at all, the first reply
kept for a repeated incoming webhook, unreadable state reported as corrupt, an outage as one
StoreUnavailable."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.crc import key_slot
from redis.exceptions import ResponseError

from flowpbx.engine.call_events import (
    CallStarted,
    NodeEntered,
    StepRecord,
)
from flowpbx.engine.events import Direction
from flowpbx.engine.state import CallState, Waiting
from flowpbx.store import CallStore, CorruptState, StoreUnavailable
from flowpbx.store.memory import MemoryCallStore
from flowpbx.store.redis import (
    _SAVE,
    EVENT_SHARDS,
    RedisCallStore,
    call_key,
    shard,
    stream_key,
)
from servers import RedisClusterServer, RedisServer, redis_server

SID = "CA" + "0" * 32
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _state(seq: int = 1, node: str = "menu") -> CallState:
    state = CallState(
        call_sid=SID, flow="seguros", version="abc123", node=node, waiting=Waiting.KEYS, seq=seq
    )
    return state.evolve(variables={"caller": "+34600111222"}, visits={"volver": 2})


def _record(revision: int, seq: int = 1) -> StepRecord:
    events = (
        CallStarted(
            flow="seguros",
            version="abc123",
            caller="+34600111222",
            called="+34910000000",
            direction=Direction.INBOUND,
        ),
        NodeEntered(node="menu", kind="menu"),
    )
    return StepRecord(
        id=f"r{revision}",
        call_sid=SID,
        revision=revision,
        seq=seq,
        at=1_790_000_000.5,
        flow="seguros",
        version="abc123",
        events=events,
    )


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(params=["redis", "cluster"])
def redis_url(request: pytest.FixtureRequest, redis: RedisServer) -> str:
    """One Redis, or the session's 3-master Redis Cluster (each test flushes it: on a cluster
    client FLUSHDB goes to every master).

    Not run on the cluster: the restart test (it restarts its own single server; a cluster
    node's restart is a failover, docs/operations.md section 8), the outage test (a closed
    port; tests/test_redis_cluster.py has the cluster's) and stream trimming (one stream's
    XADD MAXLEN, the same on any node)."""
    if request.param == "cluster":
        cluster: RedisClusterServer = request.getfixturevalue("shared_redis_cluster")
        return cluster.url
    return redis.url


@pytest.fixture(params=["memory", "redis", "cluster"])
async def store(request: pytest.FixtureRequest, redis: RedisServer) -> AsyncIterator[CallStore]:
    if request.param == "memory":
        yield MemoryCallStore(ttl=60)
        return
    url = redis.url
    if request.param == "cluster":
        cluster: RedisClusterServer = request.getfixturevalue("shared_redis_cluster")
        url = cluster.url
    redis_store = RedisCallStore.from_url(url, ttl=60)
    await redis_store.client.flushdb()
    yield redis_store
    await redis_store.aclose()


async def _records(store: CallStore) -> list[StepRecord]:
    """Every step record the store holds for SID, oldest first."""
    if isinstance(store, MemoryCallStore):
        return [r for r in store.records if isinstance(r, StepRecord)]
    assert isinstance(store, RedisCallStore)
    entries = await store.client.xrange(stream_key(shard(SID)))
    assert entries is not None
    return [StepRecord.from_json(fields[b"record"]) for _, fields in entries if fields]


async def _corrupt(store: CallStore, text: str) -> None:
    if isinstance(store, MemoryCallStore):
        store.put_raw(SID, text)
    else:
        assert isinstance(store, RedisCallStore)
        await store.client.hset(call_key(SID), "state", text)


async def test_store_unknown_call_is_none(store: CallStore) -> None:
    """A call never stored loads as None and has no first reply."""
    assert await store.load(SID) is None
    assert await store.first_reply(SID) is None


async def test_store_save_then_load_round_trips(store: CallStore) -> None:
    """A saved state loads back equal, at the next revision, with its reply."""
    assert await store.save(_state(), revision=0, reply="<one/>", record=None)
    stored = await store.load(SID)
    assert stored is not None
    assert (stored.state, stored.revision, stored.reply) == (_state(), 1, "<one/>")


async def test_store_first_reply_is_kept_after_later_steps(store: CallStore) -> None:
    """The reply of the call's first save stays its first reply; later saves change `reply`."""
    assert await store.save(_state(seq=1), revision=0, reply="<first/>", record=None)
    assert await store.save(_state(seq=2), revision=1, reply="<second/>", record=None)
    stored = await store.load(SID)
    assert stored is not None
    assert stored.reply == "<second/>"
    assert await store.first_reply(SID) == "<first/>"


async def test_store_rejects_stale_revision(store: CallStore) -> None:
    """A save based on an old revision loses and leaves the newer state in place."""
    assert await store.save(_state(seq=1), revision=0, reply="", record=None)
    assert await store.save(_state(seq=2), revision=1, reply="", record=None)
    assert not await store.save(_state(seq=99), revision=1, reply="", record=None)
    assert not await store.save(_state(seq=99), revision=0, reply="", record=None)
    stored = await store.load(SID)
    assert stored is not None
    assert (stored.state.seq, stored.revision) == (2, 2)


async def test_store_concurrent_writers_exactly_one_wins(store: CallStore) -> None:
    """Of many savers starting from the same revision, exactly one succeeds."""
    assert await store.save(_state(seq=1), revision=0, reply="", record=None)
    results = await asyncio.gather(
        *(
            store.save(_state(seq=10 + i), revision=1, reply="", record=_record(2))
            for i in range(20)
        )
    )
    assert sum(results) == 1
    stored = await store.load(SID)
    assert stored is not None
    assert stored.revision == 2
    assert stored.state.seq == 10 + results.index(True)
    assert len(await _records(store)) == 1


async def test_store_events_saved_with_state_or_not_at_all(store: CallStore) -> None:
    """A step's call events are stored when its state is, and not when the save loses."""
    assert await store.save(_state(seq=1), revision=0, reply="", record=_record(1))
    assert not await store.save(_state(seq=2), revision=0, reply="", record=_record(9))
    assert await store.load(SID) is not None  # a lost save is followed by a fresh load
    assert await store.save(_state(seq=2), revision=1, reply="", record=None)
    assert await store.save(_state(seq=3), revision=2, reply="", record=_record(3, seq=3))
    records = await _records(store)
    assert [r.id for r in records] == ["r1", "r3"]
    assert records[0] == _record(1)


async def test_store_unreadable_state_is_corrupt_not_an_outage(store: CallStore) -> None:
    """A state that cannot be read raises CorruptState with the call and its revision."""
    assert await store.save(_state(), revision=0, reply="", record=None)
    assert await store.save(_state(seq=2), revision=1, reply="", record=None)
    await _corrupt(store, '{"call_sid": 7}')
    with pytest.raises(CorruptState) as caught:
        await store.load(SID)
    assert (caught.value.call_sid, caught.value.revision) == (SID, 2)
    # The corrupt state can be replaced by saving against its revision.
    assert await store.save(_state(seq=5), revision=2, reply="", record=None)
    stored = await store.load(SID)
    assert stored is not None
    assert stored.state.seq == 5


async def test_store_reads_state_of_the_previous_format(store: CallStore) -> None:
    """A state saved by call engine v1 (no format, no direction) loads with defaults."""
    assert await store.save(_state(), revision=0, reply="", record=None)
    v1 = json.loads(_state().to_json())
    del v1["format"], v1["direction"]
    v1["reply"] = "<Response/>"
    await _corrupt(store, json.dumps(v1))
    stored = await store.load(SID)
    assert stored is not None
    assert stored.state == _state()
    assert stored.state.direction is Direction.INBOUND


async def test_store_ping(store: CallStore) -> None:
    """A running store answers ping."""
    assert await store.ping()


async def test_redis_store_keys_share_a_hash_tag_per_call(redis_url: str) -> None:
    """A call's hash and its event stream hash to the same Redis Cluster slot, and calls
    spread over every shard."""
    store = RedisCallStore.from_url(redis_url, ttl=123)
    try:
        await store.client.flushdb()
        assert await store.save(_state(), revision=0, reply="", record=_record(1))
        stream = stream_key(shard(SID))
        assert key_slot(call_key(SID).encode()) == key_slot(stream.encode())
        assert await store.client.xlen(stream) == 1
        ttl = await store.client.ttl(call_key(SID))
        assert 0 < ttl <= 123
    finally:
        await store.aclose()
    shards = {shard(f"CA{n:032x}") for n in range(500)}
    assert shards == set(range(EVENT_SHARDS))
    slots = {key_slot(stream_key(n).encode()) for n in range(EVENT_SHARDS)}
    assert len(slots) == EVENT_SHARDS


async def test_redis_store_trims_event_streams(redis: RedisServer) -> None:
    """Each event stream keeps about its share of `events_max` entries, dropping the oldest."""
    store = RedisCallStore.from_url(redis.url, ttl=60, events_max=EVENT_SHARDS * 1000)
    try:
        await store.client.flushdb()
        assert await store.save(_state(seq=0), revision=0, reply="", record=_record(1))
        for revision in range(1, 3001):
            state = _state(seq=revision)
            assert await store.save(state, revision=revision, reply="", record=_record(revision))
        length = await store.client.xlen(stream_key(shard(SID)))
        assert 1000 <= length < 2000
    finally:
        await store.aclose()


async def test_redis_store_down_raises_store_unavailable() -> None:
    """A Redis that does not answer raises StoreUnavailable (and pings false)."""
    store = RedisCallStore.from_url("redis://127.0.0.1:1/0", ttl=60)
    try:
        assert not await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.load(SID)
        with pytest.raises(StoreUnavailable):
            await store.save(_state(), revision=0, reply="", record=None)
        with pytest.raises(StoreUnavailable):
            await store.first_reply(SID)
    finally:
        await store.aclose()


async def test_redis_store_reconnects_after_restart() -> None:
    """After Redis restarts, the next command on a pooled connection works (it is retried on a
    fresh connection) instead of failing with 'connection closed'."""
    with redis_server(persistent=True) as server:
        store = RedisCallStore.from_url(server.url, ttl=60)
        try:
            # Several pooled connections, all left open.
            await asyncio.gather(*(store.ping() for _ in range(10)))
            assert await store.save(_state(), revision=0, reply="", record=None)
            server.restart()
            results = await asyncio.gather(*(store.load(SID) for _ in range(10)))
            assert all(r is not None and r.state == _state() for r in results)
        finally:
            await store.aclose()


async def test_redis_store_cache_is_checked_by_the_compare_and_set(redis_url: str) -> None:
    """A process whose remembered state is stale cannot save over another's newer one; its
    next load reads Redis."""
    first = RedisCallStore.from_url(redis_url, ttl=60)
    second = RedisCallStore.from_url(redis_url, ttl=60)
    try:
        await first.client.flushdb()
        assert await first.save(_state(seq=1), revision=0, reply="", record=None)
        remembered = await first.load(SID, seq=1)
        assert remembered is not None
        assert remembered.revision == 1
        assert await second.load(SID) is not None
        assert await second.save(_state(seq=2), revision=1, reply="", record=None)
        # `first` still answers from memory for step 1, but its save is refused.
        stale = await first.load(SID, seq=1)
        assert stale is not None
        assert stale.revision == 1
        assert not await first.save(_state(seq=2), revision=1, reply="", record=None)
        fresh = await first.load(SID, seq=1)
        assert fresh is not None
        assert (fresh.state.seq, fresh.revision) == (2, 2)
    finally:
        await first.aclose()
        await second.aclose()


async def test_memory_store_expires_calls() -> None:
    """The in-process store forgets a call once its TTL has passed, like Redis."""
    now = [1000.0]
    store = MemoryCallStore(ttl=10, clock=lambda: now[0])
    assert await store.save(_state(), revision=0, reply="", record=None)
    now[0] += 9.9
    stored = await store.load(SID)
    assert stored is not None
    assert stored.revision == 1
    now[0] += 0.2
    assert await store.load(SID) is None
    assert await store.save(_state(), revision=0, reply="", record=None)


async def test_memory_store_keeps_a_bounded_list_of_records() -> None:
    """The memory store keeps the newest `max_records` step records."""
    store = MemoryCallStore(ttl=60, max_records=3)
    assert await store.save(_state(seq=0), revision=0, reply="", record=_record(1))
    for revision in range(1, 6):
        state = _state(seq=revision)
        assert await store.save(state, revision=revision, reply="", record=_record(revision + 1))
    assert [r.id for r in store.records] == ["r4", "r5", "r6"]


async def test_redis_store_stale_copy_cannot_win_after_redis_lost_its_data(
    redis_url: str,
) -> None:
    """Revisions start again at 1 when Redis loses its data; a process still remembering the
    old revision 2 cannot overwrite the new revision 2 (the write token differs)."""
    first = RedisCallStore.from_url(redis_url, ttl=60)
    second = RedisCallStore.from_url(redis_url, ttl=60)
    try:
        await first.client.flushdb()
        assert await first.save(_state(seq=1), revision=0, reply="", record=None)
        assert await first.save(_state(seq=2, node="old"), revision=1, reply="", record=None)
        await first.client.flushdb()  # Redis restarted empty
        assert await second.save(_state(seq=1), revision=0, reply="", record=None)
        assert await second.save(_state(seq=2, node="new"), revision=1, reply="<new/>", record=None)
        assert not await first.save(_state(seq=3, node="stale"), revision=2, reply="", record=None)
        stored = await first.load(SID)
        assert stored is not None
        assert (stored.state.node, stored.revision, stored.reply) == ("new", 2, "<new/>")
    finally:
        await first.aclose()
        await second.aclose()


async def test_redis_store_reads_a_call_engine_v1_call_and_moves_it(redis_url: str) -> None:
    """A call stored by call engine v1 (its old key, the reply inside the state) is read as a
    new call with its reply, and the next save moves it to the new key."""
    store = RedisCallStore.from_url(redis_url, ttl=60)
    try:
        await store.client.flushdb()
        v1 = json.loads(_state().to_json())
        del v1["format"], v1["direction"]
        v1["reply"] = "<Response><Gather/></Response>"
        await store.client.hset(f"flowpbx:call:{SID}", mapping={"rev": 3, "state": json.dumps(v1)})
        stored = await store.load(SID, seq=1)
        assert stored is not None
        assert (stored.state, stored.revision, stored.reply) == (_state(), 0, v1["reply"])
        assert await store.save(_state(seq=2), revision=0, reply="<two/>", record=None)
        moved = await store.client.hget(call_key(SID), "rev")
        assert moved == b"1"
    finally:
        await store.aclose()


async def test_redis_store_unreadable_revision_is_corrupt(redis_url: str) -> None:
    """A revision that is not a number is reported as corrupt, and a save replaces the call."""
    store = RedisCallStore.from_url(redis_url, ttl=60)
    try:
        await store.client.flushdb()
        assert await store.save(_state(), revision=0, reply="", record=None)
        await store.client.hset(call_key(SID), "rev", "garbage")
        fresh = RedisCallStore.from_url(redis_url, ttl=60)
        try:
            with pytest.raises(CorruptState) as caught:
                await fresh.load(SID)
            assert caught.value.revision == 0
            assert await fresh.save(_state(seq=7), revision=0, reply="", record=None)
            stored = await fresh.load(SID)
            assert stored is not None
            assert stored.state.seq == 7
        finally:
            await fresh.aclose()
    finally:
        await store.aclose()


async def test_redis_store_damaged_write_token_is_replaced(redis_url: str) -> None:
    """A call whose write token or revision was damaged (not hex, negative) can still be saved
    over by a process that read it, so recovery works instead of failing forever."""
    store = RedisCallStore.from_url(redis_url, ttl=60)
    try:
        await store.client.flushdb()
        assert await store.save(_state(), revision=0, reply="", record=None)
        for rev, wid in (("3", "-garbled-"), ("-2", "zz-top"), ("?", "a b")):
            await store.client.hset(call_key(SID), mapping={"rev": rev, "wid": wid})
            fresh = RedisCallStore.from_url(redis_url, ttl=60)
            try:
                try:
                    revision = (await fresh.load(SID) or pytest.fail("no call")).revision
                except CorruptState as exc:
                    revision = exc.revision
                assert await fresh.save(_state(seq=9), revision=revision, reply="", record=None)
            finally:
                await fresh.aclose()
    finally:
        await store.aclose()


async def test_redis_store_malformed_save_is_an_error_not_a_lost_race(redis_url: str) -> None:
    """The save script refuses arguments it cannot read with an error (an outage to the
    service), never with the 'moved on' answer that would make the service try again."""
    store = RedisCallStore.from_url(redis_url, ttl=60)
    try:
        with pytest.raises(ResponseError, match="malformed save arguments"):
            await store.client.eval(
                _SAVE, 2, call_key(SID), stream_key(shard(SID)), "1 2", "{}", "", ""
            )
    finally:
        await store.aclose()
