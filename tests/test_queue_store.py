"""Queue stores: the in-process store and Redis keep the same contract — places ordered by
priority then join time, a join that is repeated keeps its place, room counted with the places
being offered, claims and reservations that only one contender wins, agents' states after each
end of a call, the scheduler's lock, callbacks in the caller's place, and the same learned
figures. Redis also keeps each script's keys in one Cluster slot and its data across a restart.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from redis.crc import key_slot

from flowpbx.engine.storage import StoreUnavailable
from flowpbx.queues.memory_store import MemoryQueueStore
from flowpbx.queues.model import (
    AgentLive,
    AgentStatus,
    Figures,
    JoinOutcome,
    QueuePlace,
    Reservation,
    Waiter,
    WaiterKind,
    callback_member,
    learned,
)
from flowpbx.queues.redis_store import SCRIPTS, RedisQueueStore, Script
from flowpbx.queues.store import QueueStore
from servers import RedisClusterServer, RedisServer, redis_server

pytestmark = pytest.mark.anyio

Q = "general-queue"
T0 = 1_790_000_000.123456
"""A join time with more digits than Redis's cjson would keep."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(params=["redis", "cluster"])
def redis_url(request: pytest.FixtureRequest, redis: RedisServer) -> str:
    """One Redis, or the session's 3-master Redis Cluster (each test flushes it: on a cluster
    client FLUSHDB goes to every master). The restart test is not run on the cluster (it
    restarts its own single server), nor the outage test (a closed port)."""
    if request.param == "cluster":
        cluster: RedisClusterServer = request.getfixturevalue("shared_redis_cluster")
        return cluster.url
    return redis.url


@pytest.fixture(params=["memory", "redis", "cluster"])
async def store(request: pytest.FixtureRequest, redis: RedisServer) -> AsyncIterator[QueueStore]:
    if request.param == "memory":
        yield MemoryQueueStore()
        return
    url = redis.url
    if request.param == "cluster":
        cluster: RedisClusterServer = request.getfixturevalue("shared_redis_cluster")
        url = cluster.url
    redis_store = RedisQueueStore.from_url(url)
    await redis_store.client.flushdb()
    yield redis_store
    await redis_store.aclose()


def _sid(n: int) -> str:
    return f"CA{n:032x}"


def _waiter(n: int, at: float = T0, priority: int = 0, **changes: Any) -> Waiter:
    """Caller `n`, joined `at` + n seconds unless told."""
    sid = _sid(n)
    waiter = Waiter(
        member=sid,
        call_sid=sid,
        caller=f"+3460000{n:04d}",
        queued_at=at + n,
        priority=priority,
        queue_sid="QU1",
        seq=3,
        flow="seguros",
        node="agente",
    )
    return waiter.evolve(**changes)


def _reservation(rid: str, agent: str = "alice", now: float = T0, **changes: Any) -> Reservation:
    reservation = Reservation(
        id=rid,
        agent=agent,
        queue=Q,
        member=_sid(1),
        target=f"client:{agent}",
        at=now,
        until=now + 30.25,
    )
    return reservation.evolve(**changes)


async def _order(store: QueueStore, queue: str = Q) -> list[str]:
    waiters, total = await store.waiting(queue, 0, 1000)
    assert total == len(waiters)
    return [w.member for w in waiters]


# --------------------------------------------------------------------------- places


async def test_priority_first_then_first_come(store: QueueStore) -> None:
    """Higher priority goes ahead; within a priority, who joined first; positions are ranks."""
    joins = [_waiter(1), _waiter(2, priority=5), _waiter(3), _waiter(4, priority=5)]
    places = [await store.join(Q, w, 100) for w in joins]
    assert [(p.outcome, p.position, p.size) for p in places] == [
        (JoinOutcome.JOINED, 1, 1),
        (JoinOutcome.JOINED, 1, 2),
        (JoinOutcome.JOINED, 3, 3),
        (JoinOutcome.JOINED, 2, 4),
    ]
    assert await _order(store) == [_sid(2), _sid(4), _sid(1), _sid(3)]
    for position, member in enumerate(await _order(store), start=1):
        assert await store.place(Q, member) == QueuePlace(
            outcome=JoinOutcome.WAITING, position=position, size=4
        )
    waiters, _ = await store.waiting(Q, 0, 1)
    assert waiters == [joins[1]]  # details as they were given


async def test_join_again_keeps_the_place_and_updates_the_call(store: QueueStore) -> None:
    """A second join of a waiting member keeps its place, join time, priority and kind, and
    takes the call's new step, Twilio queue and node."""
    await store.join(Q, _waiter(1), 100)
    await store.join(Q, _waiter(2), 100)
    again = _waiter(1, at=T0 + 500, priority=9, seq=7, queue_sid="QU2", flow="f2", node="n2")
    place = await store.join(Q, again, 100)
    assert place == QueuePlace(outcome=JoinOutcome.WAITING, position=1, size=2)
    [first, _], _ = await store.waiting(Q, 0, 10)
    assert first == _waiter(1, seq=7, queue_sid="QU2", flow="f2", node="n2")


async def test_join_of_a_claimed_member_updates_its_step_only(store: QueueStore) -> None:
    await store.join(Q, _waiter(1), 100)
    await store.join(Q, _waiter(2), 100)
    assert await store.claim(Q, _sid(1), "R1", "alice") is not None
    again = _waiter(1, seq=9, queue_sid="QU9", flow="other", node="other")
    assert await store.join(Q, again, 100) == QueuePlace(
        outcome=JoinOutcome.CLAIMED, position=0, size=1
    )
    assert await store.unclaim(Q, _sid(1), "R1")
    [first, _], _ = await store.waiting(Q, 0, 10)
    assert first == _waiter(1, seq=9, queue_sid="QU9")


async def test_full_counts_the_places_waiting(store: QueueStore) -> None:
    """max_size counts the places waiting, not those with an agent (claimed: ringing or
    talking, until the call ends); a member already in is never refused."""
    await store.join(Q, _waiter(1), 2)
    await store.join(Q, _waiter(2), 2)
    full = await store.join(Q, _waiter(3), 2)
    assert full == QueuePlace(outcome=JoinOutcome.FULL, position=0, size=2)
    assert await store.place(Q, _sid(3)) == QueuePlace(outcome=JoinOutcome.FULL, position=0, size=2)
    assert await store.where(_sid(3)) is None
    assert (await store.join(Q, _waiter(2), 2)).outcome is JoinOutcome.WAITING
    await store.claim(Q, _sid(1), "R1", "alice")
    assert (await store.join(Q, _waiter(1), 2)).outcome is JoinOutcome.CLAIMED
    assert await store.join(Q, _waiter(3), 2) == QueuePlace(
        outcome=JoinOutcome.JOINED, position=2, size=2
    )
    assert (await store.join(Q, _waiter(4), 2)).outcome is JoinOutcome.FULL


async def test_positions_after_leave(store: QueueStore) -> None:
    for n in range(1, 6):
        await store.join(Q, _waiter(n), 100)
    left = await store.leave(Q, _sid(2))
    assert left == _waiter(2)
    assert await store.leave(Q, _sid(2)) is None
    assert [(await store.place(Q, _sid(n))).position for n in range(1, 6)] == [1, 0, 2, 3, 4]
    assert (await store.place(Q, _sid(5))).size == 4
    # A claimed member does not leave: its reservation decides.
    await store.claim(Q, _sid(1), "R1", "alice")
    assert await store.leave(Q, _sid(1)) is None
    assert await store.claimed_by(Q, _sid(1)) == "R1"
    assert await _order(store) == [_sid(3), _sid(4), _sid(5)]


async def test_waiting_pages(store: QueueStore) -> None:
    for n in range(25):
        await store.join(Q, _waiter(n, priority=n % 3), 100)
    everyone, total = await store.waiting(Q, 0, 100)
    assert total == 25
    pages = [await store.waiting(Q, offset, 10) for offset in (0, 10, 20)]
    assert [len(page) for page, _ in pages] == [10, 10, 5]
    assert [w for page, _ in pages for w in page] == everyone
    assert [w.priority for w in everyone] == sorted((w.priority for w in everyone), reverse=True)
    assert await store.waiting(Q, 30, 10) == ([], 25)
    assert await store.waiting(Q, 0, 0) == ([], 25)
    assert await store.waiting("empty", 0, 10) == ([], 0)


async def test_claim_and_unclaim_put_the_member_back_in_front(store: QueueStore) -> None:
    for n in (1, 2, 3):
        await store.join(Q, _waiter(n), 100)
    assert await store.claim(Q, _sid(9), "R9", "bob") is None
    claimed = await store.claim(Q, _sid(1), "R1", "alice")
    assert claimed == _waiter(1)
    assert await store.claim(Q, _sid(1), "R2", "bob") is None  # not waiting any more
    assert await store.place(Q, _sid(1)) == QueuePlace(
        outcome=JoinOutcome.CLAIMED, position=0, size=2
    )
    assert (await store.place(Q, _sid(2))).position == 1
    assert await store.claimed_by(Q, _sid(1)) == "R1"
    assert await store.last_agent(Q) == "alice"
    assert not await store.unclaim(Q, _sid(1), "R2")
    assert await store.unclaim(Q, _sid(1), "R1")
    assert not await store.unclaim(Q, _sid(1), "R1")
    assert await store.claimed_by(Q, _sid(1)) is None
    assert await _order(store) == [_sid(1), _sid(2), _sid(3)]
    assert await store.last_agent(Q) == "alice"


async def test_done_removes_a_claimed_member_for_good(store: QueueStore) -> None:
    await store.join(Q, _waiter(1), 100)
    await store.join(Q, _waiter(2), 100)
    assert await store.done(Q, _sid(1), "R1") is None  # waiting, not claimed
    await store.claim(Q, _sid(1), "R1", "alice")
    assert await store.done(Q, _sid(1), "R2") is None
    assert await store.done(Q, _sid(1), "R1") == _waiter(1)
    assert await store.done(Q, _sid(1), "R1") is None
    assert await store.place(Q, _sid(1)) == QueuePlace(outcome=JoinOutcome.FULL, position=0, size=1)
    assert await store.claimed_by(Q, _sid(1)) is None
    assert await store.where(_sid(1)) is None
    assert not await store.unclaim(Q, _sid(1), "R1")


async def test_concurrent_claims_of_one_member_one_wins(store: QueueStore) -> None:
    await store.join(Q, _waiter(1), 100)
    results = await asyncio.gather(
        *(store.claim(Q, _sid(1), f"R{i}", f"agent{i}") for i in range(20))
    )
    winners = [i for i, waiter in enumerate(results) if waiter is not None]
    assert len(winners) == 1
    assert await store.claimed_by(Q, _sid(1)) == f"R{winners[0]}"
    assert await store.last_agent(Q) == f"agent{winners[0]}"


async def test_requeue_puts_a_place_back_whatever_its_state(store: QueueStore) -> None:
    await store.join(Q, _waiter(1), 100)
    await store.join(Q, _waiter(2), 100)
    await store.claim(Q, _sid(1), "R1", "alice")
    later = _waiter(1, at=T0 + 100, attempts=1)
    await store.requeue(Q, later)
    assert await store.claimed_by(Q, _sid(1)) is None
    assert not await store.unclaim(Q, _sid(1), "R1")
    waiters, total = await store.waiting(Q, 0, 10)
    assert (waiters, total) == ([_waiter(2), later], 2)
    await store.requeue(Q, _waiter(1, at=T0 - 100))  # waiting: moved
    assert await _order(store) == [_sid(1), _sid(2)]
    assert await store.where(_sid(1)) == Q


async def test_to_callback_keeps_the_place(store: QueueStore) -> None:
    for n in (1, 2, 3):
        await store.join(Q, _waiter(n), 100)
    callback = await store.to_callback(Q, _sid(2), "+34600999888")
    expected = _waiter(2).evolve(
        member=callback_member(_sid(2)), kind=WaiterKind.CALLBACK, number="+34600999888"
    )
    assert callback == expected
    assert await _order(store) == [_sid(1), callback_member(_sid(2)), _sid(3)]
    assert (await store.place(Q, callback_member(_sid(2)))).position == 2
    assert (await store.place(Q, _sid(2))).outcome is JoinOutcome.FULL
    assert await store.to_callback(Q, _sid(2), "+34600999888") is None
    # Not waiting (claimed, or absent): nothing changes.
    await store.claim(Q, _sid(1), "R1", "alice")
    assert await store.to_callback(Q, _sid(1), "+34600111111") is None
    assert await store.claimed_by(Q, _sid(1)) == "R1"
    # A callback's number changes in its place.
    again = await store.to_callback(Q, callback_member(_sid(2)), "+34600777666")
    assert again == expected.evolve(number="+34600777666")
    assert await _order(store) == [callback_member(_sid(2)), _sid(3)]
    # The same call waiting again as a caller: its new callback replaces the old one, once.
    await store.join(Q, _waiter(2, at=T0 + 10), 100)
    assert await store.to_callback(Q, _sid(2), "+34600555444") is not None
    assert await _order(store) == [_sid(3), callback_member(_sid(2))]


async def test_where_a_call_waits(store: QueueStore) -> None:
    assert await store.where(_sid(1)) is None
    await store.join("q1", _waiter(1), 100)
    assert await store.where(_sid(1)) == "q1"
    await store.join("q2", _waiter(1), 100)
    assert await store.where(_sid(1)) == "q2"
    # Leaving the first queue does not forget the one joined since.
    assert await store.leave("q1", _sid(1)) is not None
    assert await store.where(_sid(1)) == "q2"
    assert await store.leave("q2", _sid(1)) is not None
    assert await store.where(_sid(1)) is None


async def test_lock_is_exclusive_renewable_and_expires(store: QueueStore) -> None:
    assert await store.lock(Q, "A", 5)
    assert not await store.lock(Q, "B", 5)
    assert await store.lock(Q, "A", 5)  # renewed by its holder
    await store.unlock(Q, "B")  # not B's: nothing happens
    assert not await store.lock(Q, "B", 5)
    await store.unlock(Q, "A")
    assert await store.lock(Q, "B", 5)
    assert not await store.lock(Q, "A", 5)
    assert await store.lock("other", "A", 5)  # one lock per queue

    assert await store.lock("q2", "A", 0.3)
    await asyncio.sleep(0.2)
    assert await store.lock("q2", "A", 0.3)  # renewed: now lasts until 0.5 s
    await asyncio.sleep(0.2)
    assert not await store.lock("q2", "B", 0.3)
    await asyncio.sleep(0.2)
    assert await store.lock("q2", "B", 0.3)  # expired


# --------------------------------------------------------------------------- agents


async def test_set_status_and_agents(store: QueueStore) -> None:
    assert await store.agents(["alice", "bob"]) == {}
    alice = await store.set_status("alice", AgentStatus.AVAILABLE, T0)
    assert alice == AgentLive(agent="alice", status=AgentStatus.AVAILABLE, since=T0, idle_since=T0)
    wrap = await store.set_status("alice", AgentStatus.WRAP_UP, T0 + 1.5, T0 + 31.5)
    assert wrap == alice.evolve(status=AgentStatus.WRAP_UP, since=T0 + 1.5, wrap_until=T0 + 31.5)
    bob = await store.set_status("bob", AgentStatus.BUSY, T0)
    assert bob == AgentLive(agent="bob", status=AgentStatus.BUSY, since=T0)
    assert await store.agents(["alice", "bob", "carol"]) == {"alice": wrap, "bob": bob}
    assert await store.agents([]) == {}
    await store.forget_agent("bob")
    assert await store.agents(["alice", "bob"]) == {"alice": wrap}


async def test_reserve_only_a_free_agent(store: QueueStore) -> None:
    now = T0
    assert not await store.reserve(_reservation("R0", "nobody"), now)
    await store.set_status("alice", AgentStatus.OFFLINE, now)
    assert not await store.reserve(_reservation("R1"), now)
    await store.set_status("alice", AgentStatus.BUSY, now)
    assert not await store.reserve(_reservation("R1"), now)
    await store.set_status("alice", AgentStatus.WRAP_UP, now, now + 30)
    assert not await store.reserve(_reservation("R1"), now + 29.999)
    assert await store.reservations() == []
    # The wrap-up has ended: available.
    reservation = _reservation("R1", now=now + 30, waiter=_waiter(1))
    assert await store.reserve(reservation, now + 30)
    assert await store.reservation("R1") == reservation
    live = (await store.agents(["alice"]))["alice"]
    assert live.reservation == "R1"
    assert live.status_at(now + 30) is AgentStatus.BUSY
    assert not await store.reserve(_reservation("R2"), now + 60)  # holds one already
    # Its status can change meanwhile; the reservation stays.
    busy = await store.set_status("alice", AgentStatus.AVAILABLE, now + 61)
    assert busy.reservation == "R1"
    assert not await store.reserve(_reservation("R2"), now + 62)
    # A reservation id is never taken twice.
    await store.set_status("bob", AgentStatus.AVAILABLE, now)
    assert not await store.reserve(_reservation("R1", "bob"), now)
    assert await store.reservations() == [reservation]


async def test_concurrent_reserves_of_one_agent_one_wins(store: QueueStore) -> None:
    await store.set_status("alice", AgentStatus.AVAILABLE, T0)
    results = await asyncio.gather(*(store.reserve(_reservation(f"R{i}"), T0) for i in range(10)))
    assert sum(results) == 1
    [held] = await store.reservations()
    assert held.id == f"R{results.index(True)}"
    assert (await store.agents(["alice"]))["alice"].reservation == held.id


async def test_connected_then_finish(store: QueueStore) -> None:
    await store.set_status("alice", AgentStatus.AVAILABLE, T0)
    reservation = _reservation("R1", waiter=_waiter(1))
    assert await store.reserve(reservation, T0)
    connected = await store.connected("R1", T0 + 7.25, T0 + 3607.25)
    expected = reservation.evolve(connected=True, connected_at=T0 + 7.25, until=T0 + 3607.25)
    assert connected == expected
    assert await store.reservation("R1") == expected
    finished = await store.finish("R1", T0 + 100.5, T0 + 130.5)
    assert finished == expected
    live = (await store.agents(["alice"]))["alice"]
    assert live == AgentLive(
        agent="alice",
        status=AgentStatus.WRAP_UP,
        since=T0 + 100.5,
        wrap_until=T0 + 130.5,
        idle_since=T0 + 130.5,
        answered=1,
    )
    assert live.free_since() == T0 + 130.5
    # Once: the second finish is a no-op.
    assert await store.finish("R1", T0 + 200, T0 + 230) is None
    assert await store.connected("R1", T0, T0) is None
    assert (await store.agents(["alice"]))["alice"] == live
    assert await store.reservations() == []


async def test_finish_without_wrap_up_or_offline(store: QueueStore) -> None:
    """No wrap-up left: available at once; an agent gone offline meanwhile stays offline (but
    the call counts)."""
    await store.set_status("alice", AgentStatus.AVAILABLE, T0)
    assert await store.reserve(_reservation("R1"), T0)
    assert await store.finish("R1", T0 + 50, T0 + 50) is not None
    alice = (await store.agents(["alice"]))["alice"]
    assert alice == AgentLive(
        agent="alice", status=AgentStatus.AVAILABLE, since=T0 + 50, idle_since=T0 + 50, answered=1
    )
    assert await store.reserve(_reservation("R2"), T0 + 60)
    await store.set_status("alice", AgentStatus.OFFLINE, T0 + 61)
    assert await store.finish("R2", T0 + 90, T0 + 120) is not None
    offline = (await store.agents(["alice"]))["alice"]
    assert offline == alice.evolve(status=AgentStatus.OFFLINE, since=T0 + 61, answered=2)
    # Busy set during a call ("not taking calls for a while") stays busy after it.
    await store.set_status("alice", AgentStatus.AVAILABLE, T0 + 130)
    assert await store.reserve(_reservation("R3"), T0 + 131)
    await store.set_status("alice", AgentStatus.BUSY, T0 + 132)
    assert await store.finish("R3", T0 + 150, T0 + 180) is not None
    busy = (await store.agents(["alice"]))["alice"]
    assert (busy.status, busy.since, busy.answered) == (AgentStatus.BUSY, T0 + 132, 3)


async def test_missed_and_release(store: QueueStore) -> None:
    await store.set_status("alice", AgentStatus.AVAILABLE, T0)
    assert await store.reserve(_reservation("R1"), T0)
    assert await store.missed("R1", T0 + 20) == _reservation("R1")
    assert await store.missed("R1", T0 + 21) is None
    alice = (await store.agents(["alice"]))["alice"]
    assert alice == AgentLive(
        agent="alice", status=AgentStatus.AVAILABLE, since=T0, idle_since=T0, missed=1
    )
    assert alice.is_free(T0 + 22)
    assert await store.reserve(_reservation("R2"), T0 + 22)
    assert await store.release("R2", T0 + 23) == _reservation("R2")
    assert await store.release("R2", T0 + 23) is None
    assert (await store.agents(["alice"]))["alice"] == alice
    # An answered call clears the misses in a row.
    assert await store.reserve(_reservation("R3"), T0 + 24)
    assert await store.finish("R3", T0 + 30, T0 + 30) is not None
    assert (await store.agents(["alice"]))["alice"].missed == 0


async def test_forgotten_agent_keeps_its_reservation(store: QueueStore) -> None:
    """Forgetting an agent leaves its reservation to its own end; ending it then changes no
    agent made since under the same name."""
    await store.set_status("alice", AgentStatus.AVAILABLE, T0)
    assert await store.reserve(_reservation("R1"), T0)
    await store.forget_agent("alice")
    assert await store.reservation("R1") == _reservation("R1")
    again = await store.set_status("alice", AgentStatus.AVAILABLE, T0 + 5)
    assert again.reservation == ""
    assert await store.finish("R1", T0 + 10, T0 + 40) == _reservation("R1")
    assert await store.agents(["alice"]) == {"alice": again}


# --------------------------------------------------------------------------- learned


async def test_learn_folds_exponentially_weighted_means(store: QueueStore) -> None:
    assert await store.figures(Q) == Figures()
    await store.learn(Q, handle_time=100.0)
    await store.learn(Q, handle_time=200.0)  # 100 + 0.2 * 100
    await store.learn(Q, handle_time=50.0)  # 120 + 0.2 * -70
    await store.learn(Q, answered_wait=30.0)
    await store.learn(Q, answered_wait=40.0)  # 30 + 0.2 * 10
    await store.learn(Q, abandoned=True)  # 0 + 0.1 * 1
    figures = await store.learn(Q, abandoned=False)  # 0.1 + 0.1 * -0.1
    assert figures == await store.figures(Q)
    assert figures.samples == 3
    assert figures.handle_time == pytest.approx(106.0, abs=1e-9)
    assert figures.answered_wait == pytest.approx(32.0, abs=1e-9)
    assert figures.abandon_rate == pytest.approx(0.09, abs=1e-9)
    assert await store.figures("other") == Figures()


async def test_both_stores_learn_the_same(redis_url: str) -> None:
    """The Redis script folds as `learned` does, on a long random sequence."""
    memory = MemoryQueueStore()
    on_redis = RedisQueueStore.from_url(redis_url)
    rng = random.Random(9)
    expected = Figures()
    try:
        await on_redis.client.flushdb()
        for _ in range(300):
            sample: dict[str, Any] = rng.choice(
                [
                    {"handle_time": rng.uniform(1, 900)},
                    {"answered_wait": rng.expovariate(1 / 40)},
                    {"abandoned": rng.random() < 0.3},
                    {"handle_time": rng.uniform(1, 900), "abandoned": False},
                ]
            )
            expected = learned(expected, **sample)
            mine = await memory.learn(Q, **sample)
            theirs = await on_redis.learn(Q, **sample)
            assert mine == expected
            assert theirs.samples == expected.samples
            for name in ("handle_time", "answered_wait", "abandon_rate"):
                assert getattr(theirs, name) == pytest.approx(getattr(expected, name), abs=1e-9)
        assert await on_redis.figures(Q) == expected  # to the last bit, in fact
    finally:
        await on_redis.aclose()


# --------------------------------------------------------------------------- Redis only


class _Recording(RedisQueueStore):
    """Remembers the keys each script ran on."""

    calls: list[tuple[str, tuple[str, ...]]]

    async def _run(self, script: Script, keys: Sequence[str], *args: Any) -> Any:
        self.calls.append((script.name, tuple(keys)))
        return await super()._run(script, keys, *args)


async def test_redis_every_script_touches_one_slot(redis_url: str) -> None:
    store = _Recording.from_url(redis_url)
    store.calls = []
    try:
        await store.client.flushdb()
        await store.join(Q, _waiter(1), 10)
        await store.join("sales", _waiter(2), 10)
        await store.place(Q, _sid(1))
        await store.waiting(Q, 0, 10)
        await store.oldest(Q)
        await store.claim(Q, _sid(1), "R1", "alice")
        await store.unclaim(Q, _sid(1), "R1")
        await store.claim(Q, _sid(1), "R1", "alice")
        await store.done(Q, _sid(1), "R1")
        await store.join(Q, _waiter(3), 10)
        await store.to_callback(Q, _sid(3), "+34600111222")
        await store.requeue(Q, _waiter(4))
        await store.leave(Q, _sid(4))
        await store.lock(Q, "token", 5)
        await store.unlock(Q, "token")
        await store.learn(Q, handle_time=60.0)
        await store.set_status("alice", AgentStatus.AVAILABLE, T0)
        await store.reserve(_reservation("R1"), T0)
        await store.connected("R1", T0, T0 + 60)
        await store.finish("R1", T0 + 60, T0 + 90)
        await store.missed("R1", T0)
        await store.release("R1", T0)
    finally:
        await store.aclose()
    assert {name for name, _ in store.calls} == set(SCRIPTS)
    for name, keys in store.calls:
        assert len({key_slot(key.encode()) for key in keys}) == 1, (name, keys)
    # A queue's keys share a slot; queues spread; agents have their own.
    keys = store.keys(Q)
    assert len({key_slot(key.encode()) for key in keys}) == 1
    assert key_slot(keys.order.encode()) != key_slot(store.keys("sales").order.encode())
    assert key_slot(store.live_key.encode()) == key_slot(store.res_key.encode())


async def test_redis_keeps_the_queue_across_a_restart() -> None:
    with redis_server(persistent=True) as server:
        store = RedisQueueStore.from_url(server.url)
        try:
            for n in (1, 2, 3):
                await store.join(Q, _waiter(n, priority=n % 2), 100)
            before = await store.waiting(Q, 0, 10)
            server.restart()
            await store.client.script_flush()  # loaded again on demand
            assert await store.waiting(Q, 0, 10) == before
            assert [w.member for w in before[0]] == [_sid(1), _sid(3), _sid(2)]
            assert (await store.place(Q, _sid(2))).position == 3
            assert await store.where(_sid(2)) == Q
            assert await store.claim(Q, _sid(1), "R1", "alice") == _waiter(1, priority=1)
        finally:
            await store.aclose()


async def test_redis_unclaim_scores_as_python_does(redis_url: str) -> None:
    """The Lua score of an entry is `Waiter.score` to the bit: halves round to even, priorities
    out of range are clamped."""
    store = RedisQueueStore.from_url(redis_url)
    try:
        await store.client.flushdb()
        cases = [
            _waiter(0, at=1_790_000_000.0625, priority=0),  # ...62.5 ms: rounds down (even)
            _waiter(0, at=1_790_000_000.1875, priority=3),  # ...187.5 ms: rounds up (even)
            _waiter(0, at=1_790_000_000.0005, priority=12),
            _waiter(0, at=T0, priority=-4),
            _waiter(0, at=0.0, priority=9),
        ]
        for i, case in enumerate(cases):
            waiter = case.evolve(member=f"m{i}")
            await store.join(Q, waiter, 100)
            await store.claim(Q, waiter.member, f"R{i}", "alice")
            assert await store.unclaim(Q, waiter.member, f"R{i}")
            stored = await store.client.zscore(store.keys(Q).order, waiter.member)
            assert stored == waiter.score, waiter
    finally:
        await store.aclose()


async def test_redis_down_raises_store_unavailable() -> None:
    store = RedisQueueStore.from_url("redis://127.0.0.1:1/0")
    try:
        assert not await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.join(Q, _waiter(1), 10)
        with pytest.raises(StoreUnavailable):
            await store.where(_sid(1))
        with pytest.raises(StoreUnavailable):
            await store.reserve(_reservation("R1"), T0)
    finally:
        await store.aclose()


async def test_redis_prefix_keeps_stores_apart(redis_url: str) -> None:
    first = RedisQueueStore.from_url(redis_url)
    second = RedisQueueStore.from_url(redis_url, prefix="other")
    try:
        await first.client.flushdb()
        await first.join(Q, _waiter(1), 10)
        assert await second.waiting(Q, 0, 10) == ([], 0)
        assert first.keys(Q).order == "fq:{q:general-queue}:order"
        assert second.where_key(_sid(1)) == f"other:where:{{{_sid(1)}}}"
    finally:
        await first.aclose()
        await second.aclose()
    with pytest.raises(ValueError, match="braces"):
        RedisQueueStore(first.client, prefix="{x}")


async def test_oldest_finds_the_longest_wait_across_priorities(store: QueueStore) -> None:
    """The place waiting longest need not be at the front: here a priority-9 caller who joined
    last is first, and the longest wait is a priority-0 caller behind two others."""
    assert await store.oldest(Q) == (0, None)
    await store.join(Q, _waiter(3, priority=0), 100)  # joined at T0 + 3
    await store.join(Q, _waiter(1, at=T0 - 0.25, priority=2), 100)  # T0 + 0.75: the oldest
    await store.join(Q, _waiter(7, priority=9), 100)
    await store.join(Q, _waiter(2, priority=2), 100)

    async def oldest() -> tuple[int, float]:
        size, at = await store.oldest(Q)
        assert at is not None
        return size, round(at - T0, 3)  # to the millisecond: the scores' precision

    assert await oldest() == (4, 0.75)
    front, _ = await store.waiting(Q, 0, 1)
    assert front[0].member == _sid(7)
    await store.leave(Q, _sid(1))
    assert await oldest() == (3, 2.0)
    await store.claim(Q, _sid(2), "R1", "alice")
    assert await oldest() == (2, 3.0)


async def test_a_callback_waits_until_its_not_before(store: QueueStore) -> None:
    """The callback a caller books is kept with the moment before which it is not offered
    (the engine's FLOWPBX_CALLBACK_DELAY), to the microsecond, in the caller's place."""
    await store.join(Q, _waiter(1), 10)
    await store.join(Q, _waiter(2), 10)
    callback = await store.to_callback(Q, _sid(2), "+34600111222", T0 + 15.123456)
    assert callback is not None
    assert callback.not_before == T0 + 15.123456
    waiting, _ = await store.waiting(Q, 0, 10)
    assert [(w.member, w.not_before) for w in waiting] == [
        (_sid(1), 0.0),
        (f"cb:{_sid(2)}", T0 + 15.123456),
    ]
