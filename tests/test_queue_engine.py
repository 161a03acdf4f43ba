"""The queue engine over the memory store and agents in SQLite, on a clock the test moves:
what happens to agents who miss calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowpbx.db.database import Database
from flowpbx.db.migrate import upgrade
from flowpbx.engine.progress import Report
from flowpbx.language.loader import load_flow
from flowpbx.queues import directory
from flowpbx.queues.directory import AgentDirectory
from flowpbx.queues.engine import MAX_MISSES, QueueEngine
from flowpbx.queues.memory_store import MemoryQueueStore
from flowpbx.queues.model import AgentStatus, Reservation, Waiter, WaiterKind

ROOT = Path(__file__).resolve().parents[1]
QUEUES = load_flow(ROOT / "flows" / "seguros.yaml").queues
QUEUE = "general-queue"
T0 = 1_790_000_000.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'engine.sqlite3'}")
    upgrade(database)
    directory.create_agent(database, "ana", "Ana", "client:ana", {QUEUE: 5})
    yield database
    database.dispose()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def engine_on(db: Database, clock: Clock) -> QueueEngine:
    async def keep(report: Report) -> None:
        return None

    return QueueEngine(
        store=MemoryQueueStore(),
        directory=AgentDirectory(db, ttl=0),
        queues=lambda: QUEUES,
        report=keep,
        clock=clock,
    )


def reservation(n: int, at: float) -> Reservation:
    sid = f"CA{n:032x}"
    waiter = Waiter(member=sid, call_sid=sid, caller="+34600000001", queued_at=at)
    return Reservation(
        id=f"{n:032x}",
        agent="ana",
        queue=QUEUE,
        member=sid,
        target="client:ana",
        at=at,
        until=at + 80,
        waiter=waiter,
    )


@pytest.mark.anyio
async def test_an_agent_who_keeps_missing_is_rested_then_set_offline(db: Database) -> None:
    """Each miss rests the agent for the ring timeout (20 s); the third in a row, even after
    their rests ended (a stored wrap-up that has run out), sets them offline; when they come
    back, three more misses in a row are needed."""
    clock = Clock()
    engine = engine_on(db, clock)
    store = engine.store
    await store.set_status("ana", AgentStatus.AVAILABLE, clock.now)
    for n in range(1, 2 * MAX_MISSES + 1):
        assert await store.reserve(reservation(n, clock.now), clock.now)
        clock.now += 10
        assert await engine.agent_call_ended(f"{n:032x}", answered=False) is not None
        ana = (await store.agents(["ana"]))["ana"]
        if n % MAX_MISSES:
            assert (ana.status, ana.wrap_until) == (AgentStatus.WRAP_UP, clock.now + 20)
            clock.now += 21  # the rest runs out: free again
            assert ana.is_free(clock.now)
        else:
            assert ana.status is AgentStatus.OFFLINE, f"miss {n}"
            clock.now += 60
            await store.set_status("ana", AgentStatus.AVAILABLE, clock.now)


@pytest.mark.anyio
async def test_a_callback_from_a_caller_the_queue_lost_is_kept_at_their_place(
    db: Database,
) -> None:
    """A caller whose joining failed (Redis blinked at their first wait request) asks for a
    callback: it joins at the time the call says they joined, ahead of a later caller."""
    clock = Clock()
    engine = engine_on(db, clock)
    later = Waiter(
        member="CA" + "2" * 32, call_sid="CA" + "2" * 32, caller="+34600000002", queued_at=T0 + 30
    )
    await engine.store.join(QUEUE, later, 100)
    sid = "CA" + "1" * 32
    fallback = Waiter(
        member=f"cb:{sid}",
        call_sid=sid,
        caller="+34600000001",
        queued_at=T0 + 10,
        kind=WaiterKind.CALLBACK,
        number="+34600000001",
    )
    assert await engine.callback_requested(sid, QUEUE, "+34600000001") is False
    assert await engine.callback_requested(sid, QUEUE, "+34600000001", fallback) is True
    waiting, _ = await engine.store.waiting(QUEUE, 0, 10)
    assert [(w.member, w.kind) for w in waiting] == [
        (f"cb:{sid}", WaiterKind.CALLBACK),
        (later.member, WaiterKind.CALLER),
    ]
