"""The history writer's delivery guarantees on a real Redis: entries a writer took and never
acknowledged come back (to it after a restart, to another writer after a while); unreadable
entries are skipped, not retried forever; a callback reaches the database when Redis is
down; and `flowpbx history-writer` stores what the web processes left in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner
from sqlalchemy import select

from conftest import fresh_postgres_url
from flowpbx.cli import main
from flowpbx.db import migrate
from flowpbx.db.database import Database
from flowpbx.db.models import Call
from flowpbx.engine.events import Direction
from flowpbx.engine.progress import CallProgress, CallStatus, Report, report_id
from flowpbx.engine.storage import StoreUnavailable
from flowpbx.history.sources import Backlog, Delivery, MemoryEventSource, RedisEventSource
from flowpbx.history.writer import HistoryWriter
from flowpbx.store.memory import EventLog
from flowpbx.store.redis import RedisCallStore, RedisClient, connect, shard, stream_key
from servers import PostgresServer, RedisClusterServer, RedisServer, redis_server
from test_api import running, settings_for
from test_history import check_stored, deliver_callbacks, drive_calls
from twilio_fake import TwilioDriver, call_sid, inbound_params
from twilio_rest import TwilioRest, twilio_rest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(params=["redis", "cluster"])
async def client(request: pytest.FixtureRequest, redis: RedisServer) -> AsyncIterator[RedisClient]:
    """A client on one Redis, or on the session's 3-master Redis Cluster (where the source
    reads each stream on its own), emptied (on a cluster FLUSHDB goes to every master)."""
    connection: RedisClient = aioredis.Redis(host=redis.host, port=redis.port)
    if request.param == "cluster":
        cluster: RedisClusterServer = request.getfixturevalue("shared_redis_cluster")
        connection = connect(cluster.url)
    await connection.flushdb()
    yield connection
    await connection.aclose()


def _report(n: int, status: CallStatus = CallStatus.COMPLETED) -> Report:
    progress = CallProgress(
        status=status,
        sequence=2,
        timestamp=1_800_000_000.0 + n,
        caller="+34600000001",
        called="+34910000000",
        direction=Direction.INBOUND,
        duration=30,
    )
    sid = call_sid(n)
    return Report(id=report_id(sid, progress), call_sid=sid, at=1_800_000_100.0, progress=progress)


async def _put(client: RedisClient, count: int) -> None:
    store = RedisCallStore(client, ttl=60)
    for n in range(1, count + 1):
        await store.report(_report(n))


@pytest.mark.anyio
async def test_unacknowledged_entries_come_back_after_a_restart(client: RedisClient) -> None:
    """A writer that read entries and stopped before acknowledging them reads them again when
    it starts (same consumer name); acknowledged entries leave the stream."""
    await _put(client, 3)
    first = RedisEventSource(client, consumer="writer-1")
    await first.setup()
    taken = await first.read(10)
    assert len(taken) == 3
    again = RedisEventSource(client, consumer="writer-1")
    await again.setup()
    redelivered = await again.read(10)
    assert [d.id for d in redelivered] == [d.id for d in taken]
    assert (await again.backlog()).count == 3
    await again.ack(redelivered)
    backlog = await again.backlog()
    assert (backlog.count, backlog.oldest_seconds) == (0, None)


@pytest.mark.anyio
async def test_another_writer_takes_over_a_stopped_writers_entries(
    client: RedisClient,
) -> None:
    """Entries a stopped writer never acknowledged are claimed by another one once idle."""
    await _put(client, 2)
    stopped = RedisEventSource(client, consumer="writer-1")
    await stopped.setup()
    taken = await stopped.read(10)
    other = RedisEventSource(client, consumer="writer-2", claim_idle_ms=0)
    await other.setup()
    claimed = await other.read(10)
    assert sorted(d.id for d in claimed) == sorted(d.id for d in taken)
    assert {d.entry.call_sid for d in claimed if d.entry} == {call_sid(1), call_sid(2)}


@pytest.mark.anyio
async def test_unreadable_entry_is_logged_and_skipped(
    client: RedisClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry that cannot be read is logged and acknowledged: it never blocks the ones
    after it."""
    db = Database(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    migrate.upgrade(db)
    await client.xadd(stream_key(shard(call_sid(1))), {"record": b"{not json"})
    await _put(client, 1)
    writer = HistoryWriter(RedisEventSource(client, consumer="w"), db)
    with caplog.at_level(logging.ERROR, logger="flowpbx.history"):
        await writer.drain(timeout=10)
    assert any("cannot be read" in r.getMessage() for r in caplog.records)
    with db.session() as session:
        assert [c.sid for c in session.scalars(select(Call))] == [call_sid(1)]
    db.dispose()


@pytest.fixture
def fake() -> Iterator[TwilioRest]:
    with twilio_rest() as server:
        yield server


def test_callback_reaches_the_database_when_redis_is_down(fake: TwilioRest, tmp_path: Path) -> None:
    """With Redis down, a status callback is written straight to the database (and still
    answered 204)."""
    with redis_server() as own:
        url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
        settings = settings_for(url, fake, redis_host=own.host, redis_port=own.port)
        for api in running(settings, fake):
            driver = TwilioDriver(api.client, fake.auth_token)
            own.stop()
            params = inbound_params(call_sid(7), "+34600000007", "+34910000000", "completed")
            params |= {"SequenceNumber": "2", "CallDuration": "33"}
            response = driver.post(driver.url("/api/webhooks/call-status"), params)
            assert response.status_code == 204
            with api.db.session() as session:
                call = session.get(Call, call_sid(7))
                assert call is not None
                assert (call.status, call.duration) == ("completed", 33)
            own.start()


@pytest.mark.parametrize("kind", ["redis", "cluster"])
def test_history_writer_command_stores_what_serve_left(
    fake: TwilioRest,
    redis: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    kind: str,
) -> None:
    """Web processes with FLOWPBX_HISTORY_WRITER=false leave history in Redis (their /health
    says so); `flowpbx history-writer --once` stores it. On one Redis and on a Redis Cluster
    (REDIS_CLUSTER_NODES), where both the web process and the command read per stream."""
    import redis as redis_client

    where: dict[str, object]
    if kind == "cluster":
        cluster: RedisClusterServer = request.getfixturevalue("shared_redis_cluster")
        cluster.flush()
        where = {"redis_cluster_nodes": cluster.nodes}
        redis_env = {"REDIS_CLUSTER_NODES": cluster.nodes_setting, "REDIS_HOST": ""}
    else:
        redis_client.Redis(host=redis.host, port=redis.port).flushdb()
        where = {"redis_host": redis.host, "redis_port": redis.port}
        redis_env = {"REDIS_HOST": redis.host, "REDIS_PORT": str(redis.port)}
    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    settings = settings_for(url, fake, history_writer=False, **where)
    for api in running(settings, fake):
        driver = TwilioDriver(api.client, fake.auth_token)
        calls = drive_calls(driver, 1)
        deliver_callbacks(driver, calls, seed=3)
        time.sleep(0.3)
        history = api.client.get("/health").json()["history"]
        assert history["writer"] == "separate process"
        assert history["backlog"] > 0
        monkeypatch.chdir(tmp_path)
        env = {"DATABASE_URL": url, "TWILIO_AUTH_TOKEN": "", **redis_env}
        result = CliRunner().invoke(main, ["history-writer", "--once"], env=env)
        assert result.exit_code == 0, result.output
        assert api.client.get("/health").json()["history"]["backlog"] == 0
        check_stored(api.db, calls)


def test_history_writer_command_needs_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'h.sqlite3'}", "REDIS_HOST": ""}
    result = CliRunner().invoke(main, ["history-writer"], env=env)
    assert result.exit_code == 2
    assert "REDIS_HOST is not set" in result.stderr


@pytest.mark.anyio
async def test_writer_goes_on_after_redis_lost_its_data(tmp_path: Path) -> None:
    """Redis restarted empty: the consumer group is gone with the data; the writer creates it
    again and stores what comes next."""
    db = Database(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    migrate.upgrade(db)
    with redis_server() as own:
        connection = aioredis.Redis(host=own.host, port=own.port)
        writer = HistoryWriter(RedisEventSource(connection, consumer="w"), db)
        await writer.source.setup()
        own.restart()
        await _put(connection, 1)
        stored = 0
        for _ in range(3):  # the first read finds the group gone and makes it again
            stored += await asyncio.wait_for(writer.step(), timeout=10)
        assert stored == 1
        await connection.aclose()
    with db.session() as session:
        assert [c.sid for c in session.scalars(select(Call))] == [call_sid(1)]
    db.dispose()


class _Listed:
    """An event source over a fixed list (the writer's edge, for a database-side test)."""

    def __init__(self, entries: list[Report]) -> None:
        self.entries = entries
        self.acked: list[str] = []

    async def setup(self) -> None:
        return None

    async def read(self, limit: int) -> list[Delivery]:
        if not self.entries:
            await asyncio.sleep(0.01)  # as a real source waits for more
        taken, self.entries = self.entries[:limit], self.entries[limit:]
        return [Delivery("list", str(i), e) for i, e in enumerate(taken)]

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        self.acked += [d.id for d in deliveries]

    async def backlog(self) -> Backlog:
        return Backlog(len(self.entries), None)

    async def aclose(self) -> None:
        return None


@pytest.mark.anyio
async def test_an_entry_the_database_refuses_does_not_block_the_others(
    shared_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL refuses a value (a NUL character): that entry is logged and skipped, the
    rest of its batch is stored, and history goes on."""
    db = Database(fresh_postgres_url(shared_postgres))
    migrate.upgrade(db)
    bad = CallProgress(
        status=CallStatus.COMPLETED, sequence=1, timestamp=None, caller="+34600\x00",
        called="+34910000000", direction=Direction.INBOUND,
    )  # fmt: skip
    poison = Report(id="bad", call_sid=call_sid(2), at=1_800_000_000.0, progress=bad)
    source = _Listed([_report(1), poison, _report(3)])
    writer = HistoryWriter(source, db)
    with caplog.at_level(logging.ERROR, logger="flowpbx.history"):
        assert await asyncio.wait_for(writer.step(), timeout=20) == 3
    assert len(source.acked) == 3
    assert any("entry bad of call" in r.getMessage() for r in caplog.records)
    with db.session() as session:
        assert sorted(c.sid for c in session.scalars(select(Call))) == [call_sid(1), call_sid(3)]
    db.dispose()


@pytest.mark.anyio
async def test_an_entry_that_cannot_be_folded_does_not_block_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry history cannot make a row of (a time beyond any calendar) is logged and
    skipped; the entries around it are stored."""
    db = Database(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    migrate.upgrade(db)
    far = CallProgress(
        status=CallStatus.COMPLETED, sequence=1, timestamp=1e15, caller="+34600000002",
        called="+34910000000", direction=Direction.INBOUND,
    )  # fmt: skip
    odd = Report(id="far", call_sid=call_sid(2), at=1_800_000_000.0, progress=far)
    source = _Listed([_report(1), odd, _report(3)])
    with caplog.at_level(logging.ERROR, logger="flowpbx.history"):
        assert await asyncio.wait_for(HistoryWriter(source, db).step(), timeout=20) == 3
    assert any("entry far of call" in r.getMessage() for r in caplog.records)
    with db.session() as session:
        assert sorted(c.sid for c in session.scalars(select(Call))) == [call_sid(1), call_sid(3)]
    db.dispose()


def test_callback_times_outside_any_likely_date_are_not_believed() -> None:
    """A Timestamp Twilio would never send (year 9999) is dropped: the time the callback was
    received stands in."""
    from flowpbx.twilio import params as twilio_params

    form = inbound_params(call_sid(1), "+34600000001", "+34910000000", "completed")
    form["Timestamp"] = "Fri, 31 Dec 9999 23:30:00 -0200"
    report = twilio_params.call_progress(form, 1_800_000_000.0)
    assert isinstance(report.progress, CallProgress)
    assert report.progress.timestamp is None
    form["Timestamp"] = "Tue, 01 Dec 2026 10:00:00 +0000"
    report = twilio_params.call_progress(form, 1_800_000_000.0)
    assert isinstance(report.progress, CallProgress)
    assert report.progress.timestamp == 1796119200.0


class _Stumbling(_Listed):
    """A source whose first read fails with an error nobody planned for."""

    def __init__(self, entries: list[Report]) -> None:
        super().__init__(entries)
        self.failed = False

    async def read(self, limit: int) -> list[Delivery]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a bug")
        return await super().read(limit)


@pytest.mark.anyio
async def test_the_writer_starts_again_after_an_unexpected_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error stops the writer's loop, not call history: it is logged, /health
    says so, and the writer starts again."""
    from flowpbx.history import writer as writer_module

    monkeypatch.setattr(writer_module, "RESTART_SECONDS", 0.05)
    db = Database(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    migrate.upgrade(db)
    writer = HistoryWriter(_Stumbling([_report(1)]), db)
    states: list[str] = []
    with caplog.at_level(logging.ERROR, logger="flowpbx.history"):
        task = asyncio.create_task(writer.run_forever())
        for _ in range(200):
            states.append(writer.status.state)
            if writer.status.entries:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert "restarting after an error" in states
    assert writer.status.entries == 1
    assert any("unexpected error" in r.getMessage() for r in caplog.records)
    db.dispose()


@pytest.mark.anyio
async def test_a_backlog_near_the_limit_is_said_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With the database away and the memory log 90% full, the writer logs an error that
    says entries will be lost, and the backlog tells its limit."""
    events = EventLog(10)
    for n in range(1, 10):
        events.append(_report(n), time.time())
    unreachable = f"postgresql://nobody:x@127.0.0.1:{_closed_port()}/none"
    db = Database(unreachable)
    writer = HistoryWriter(MemoryEventSource(events, poll_seconds=0.01), db)
    with caplog.at_level(logging.ERROR, logger="flowpbx.history"):
        task = asyncio.create_task(writer.step())
        for _ in range(300):
            if any("entries wait for the database" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    warned = [r.getMessage() for r in caplog.records if "% of the" in r.getMessage()]
    assert warned == [
        "call history: 9 entries wait for the database, 90% of the 10 the call store keeps; "
        "past that the oldest are dropped and lost: bring the database back, or raise "
        "FLOWPBX_EVENTS_MAX"
    ]
    assert (await writer.source.backlog()).limit == 10
    db.dispose()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Away(_Listed):
    """A call store that does not answer for its first `misses` reads."""

    def __init__(self, entries: list[Report], misses: int) -> None:
        super().__init__(entries)
        self.misses = misses

    async def read(self, limit: int) -> list[Delivery]:
        if self.misses:
            self.misses -= 1
            raise StoreUnavailable("Redis: Connection refused")
        return await super().read(limit)


@pytest.mark.anyio
async def test_back_from_waiting_for_the_store_the_writer_says_how_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """While the call store is away the writer tries it again at growing pauses that stop
    growing at 2 s (a Redis back is written to again within 2 s), and once it is back one line
    says what happened: writing again after waiting so long for the call store."""
    from flowpbx.history import writer as writer_module

    pauses: list[float] = []
    clock = [1_800_000_000.0]

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        clock[0] += seconds

    # The writer's own view of asyncio and time: its pauses take no time, its clock follows.
    fake_asyncio = SimpleNamespace(sleep=sleep, CancelledError=asyncio.CancelledError)
    monkeypatch.setattr(writer_module, "asyncio", fake_asyncio)
    monkeypatch.setattr(writer_module, "time", SimpleNamespace(time=lambda: clock[0]))
    db = Database(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    migrate.upgrade(db)
    writer = HistoryWriter(_Away([_report(1)], misses=6), db)
    writer.status.state = "writing"
    with caplog.at_level(logging.INFO, logger="flowpbx.history"):
        assert await writer.step() == 1
    assert pauses == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    said = [r.getMessage() for r in caplog.records if "again" in r.getMessage()]
    assert said == ["call history: writing again after waiting 10 s for the call store"]
    assert writer.status.state == "writing"
    db.dispose()
