"""Redis Cluster: the suite's cluster is a real one (three masters sharing the slots, refusing
commands whose keys are in different slots), flowpbx's keys spread over every master, and what
only a cluster does — scripts loaded again on the master that owns a slot, the history reader
polling each stream, a flush of every master, a master killed and failed over to its
replica — is handled.

The call-engine, queue and history scenarios themselves run on the cluster in their own
modules (test_store, test_queue_store, test_history_writer, test_history, test_e2e,
test_queues_e2e: their "cluster" parameters)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest
import redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ClusterCrossSlotError, RedisClusterException
from sqlalchemy import select

from conftest import FLOWS
from flowpbx.app import StoreNotReachable, check_store
from flowpbx.db import migrate
from flowpbx.db.database import Database
from flowpbx.db.models import Call
from flowpbx.engine.storage import StoreUnavailable
from flowpbx.history.sources import (
    CLUSTER_POLL_SECONDS,
    RedisEventSource,
)
from flowpbx.history.writer import HistoryWriter
from flowpbx.queues.redis_store import RedisQueueStore
from flowpbx.settings import Settings
from flowpbx.store.pacer import RedisPacer
from flowpbx.store.redis import (
    _SAVE,
    EVENT_SHARDS,
    RedisCallStore,
    call_key,
    connect,
    parse_cluster_url,
    shard,
    stream_key,
)
from serve_process import FLOWPBX, environment, free_port, serving, workdir
from servers import RedisClusterServer, redis_cluster, redis_command
from test_history_writer import _report
from test_queue_store import _waiter
from test_store import _record, _state

pytestmark = pytest.mark.anyio

SID = "CA" + "0" * 32


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def cluster(shared_redis_cluster: RedisClusterServer) -> RedisClusterServer:
    """The session's cluster, every master emptied."""
    shared_redis_cluster.flush()
    return shared_redis_cluster


@pytest.fixture
async def store(cluster: RedisClusterServer) -> AsyncIterator[RedisCallStore]:
    call_store = RedisCallStore.from_url(cluster.url, ttl=60)
    yield call_store
    await call_store.aclose()


def _info(port: int) -> dict[str, str]:
    text = redis_command(port, "CLUSTER", "INFO").decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _keys_on(port: int) -> set[str]:
    """The keys one node holds (KEYS on that node only, not through the cluster)."""
    node = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    try:
        keys: list[str] = node.keys("*")  # type: ignore[assignment]
    finally:
        node.close()
    return set(keys)


def _cluster_client(store: RedisCallStore) -> RedisCluster:
    assert isinstance(store.client, RedisCluster)
    return store.client


def _port_of(client: RedisCluster, key: str) -> int:
    """The port of the master that owns `key`'s slot (the client knows the slots)."""
    node = client.get_node_from_key(key)
    assert node is not None
    return int(node.port)


async def test_the_suites_cluster_is_three_masters_sharing_every_slot(
    cluster: RedisClusterServer,
) -> None:
    """Three masters, each owning a part of the 16384 slots, all saying cluster_state:ok."""
    assert len(cluster.ports) == 3
    client = connect(cluster.url)
    assert isinstance(client, RedisCluster)
    try:
        await client.initialize()
        primaries = client.get_primaries()
        assert sorted(node.port for node in primaries) == sorted(cluster.ports)
        owners = {_port_of(client, stream_key(n)) for n in range(EVENT_SHARDS)}
        assert owners == set(cluster.ports), "the 64 event streams are on every master"
    finally:
        await client.aclose()
    for port in cluster.ports:
        info = _info(port)
        assert (info["cluster_state"], info["cluster_size"]) == ("ok", "3")
        assert info["cluster_slots_assigned"] == "16384"


async def test_keys_of_calls_and_queues_spread_over_every_master(
    cluster: RedisClusterServer, store: RedisCallStore
) -> None:
    """After a few calls (and callers in two queues) every master holds call hashes and event
    streams; each call's hash is on the same master as its stream; nothing is left outside a
    hash tag but the flows' texts."""
    sids = [f"CA{n:032x}" for n in range(1, 31)]
    for sid in sids:
        state = _state().evolve(call_sid=sid)
        record = msgspec.structs.replace(_record(1), call_sid=sid)
        assert await store.save(state, revision=0, reply="<r/>", record=record)
        await store.report(_report(int(sid[2:], 16)), close=False)
    queues = RedisQueueStore.from_url(cluster.url)
    try:
        for n, queue in enumerate(("general-queue", "sales", "claims", "vida"), start=1):
            await queues.join(queue, _waiter(n), 10)
    finally:
        await queues.aclose()
    per_node = {port: _keys_on(port) for port in cluster.ports}
    for port, keys in per_node.items():
        assert any(":call:" in key for key in keys), f"no call state on the master at {port}"
        assert any(key.endswith(":events") for key in keys), f"no event stream on {port}"
    everything = set().union(*per_node.values())
    for sid in sids:
        (home,) = (port for port, keys in per_node.items() if call_key(sid) in keys)
        assert stream_key(shard(sid)) in per_node[home]
    untagged = {key for key in everything if "{" not in key}
    assert untagged == set()


async def test_the_cluster_refuses_keys_of_different_slots(
    cluster: RedisClusterServer, store: RedisCallStore
) -> None:
    """The save script with a stream of another shard (a mis-tagged key) is refused (by the
    client or by the server) and by a master itself; so is one XREADGROUP of every event
    stream, which is why the history reader reads each stream on its own there."""
    other = stream_key((shard(SID) + 1) % EVENT_SHARDS)
    assert key_slot(call_key(SID).encode()) != key_slot(other.encode())
    with pytest.raises((RedisClusterException, ClusterCrossSlotError), match=r"same (key )?slot"):
        await store.client.execute_command(
            "EVAL", _SAVE, 2, call_key(SID), other, "0 1 ab 60 100 ", "{}", "", ""
        )
    port = cluster.ports[0]
    answer = redis_command(port, "EVAL", "return 1", "2", call_key(SID), other)
    assert answer.startswith(b"-CROSSSLOT"), answer
    streams = [stream_key(n) for n in range(EVENT_SHARDS)]
    answer = redis_command(
        port, "XREADGROUP", "GROUP", "g", "c", "STREAMS", *streams, *([">"] * EVENT_SHARDS)
    )
    assert answer.startswith(b"-CROSSSLOT"), answer
    # The same script with the call's own stream is run (on the master of that slot).
    with pytest.raises(Exception, match="malformed save arguments"):
        await store.client.eval(_SAVE, 2, call_key(SID), stream_key(shard(SID)), "1 2", "", "", "")


async def test_scripts_are_loaded_again_on_every_master_after_a_flush(
    cluster: RedisClusterServer, store: RedisCallStore
) -> None:
    """Masters that lost their scripts (restarted, SCRIPT FLUSH) get them again on first use
    (run by their text on the master that owns the keys): the call store's, the queue
    store's and the pacer's, whichever master owns the keys."""
    for port in cluster.ports:
        assert redis_command(port, "SCRIPT", "FLUSH").startswith(b"+OK")
    sids = [f"CA{n:032x}" for n in range(40)]
    client = _cluster_client(store)
    await client.initialize()
    assert {_port_of(client, call_key(s)) for s in sids} == set(cluster.ports)
    for sid in sids:
        assert await store.save(_state().evolve(call_sid=sid), revision=0, reply="", record=None)
    queues = RedisQueueStore.from_url(cluster.url)
    pacer = RedisPacer.from_url(cluster.url)
    try:
        for n, queue in enumerate(("general-queue", "sales", "claims", "vida", "hogar")):
            place = await queues.join(queue, _waiter(n), 10)
            assert place.position == 1
        for account in ("AC1", "AC2", "AC3"):
            assert not (await pacer.reserve(account, 1.0, 5.0)).refused
    finally:
        await queues.aclose()
        await pacer.aclose()


async def test_kept_flows_and_the_first_reply_on_a_cluster(store: RedisCallStore) -> None:
    """A flow's text is kept (HSET and EXPIRE in one MULTI on its master) and read back."""
    await store.keep_flow("seguros", "v1", "seguros.yaml", b"name: seguros\n")
    assert await store.flow_text("seguros", "v1") == ("seguros.yaml", b"name: seguros\n")
    assert await store.client.ttl("flowpbx:flow:seguros:v1") > 0
    assert await store.save(_state(), revision=0, reply="<first/>", record=None)
    assert await store.first_reply(SID) == "<first/>"
    assert await store.ping()


async def test_the_history_reader_polls_each_stream_on_a_cluster(
    cluster: RedisClusterServer, store: RedisCallStore
) -> None:
    """Entries of calls on every master are read in one read; with nothing new, a read comes
    back after the poll interval (not the second a blocking read of one Redis waits)."""
    for n in range(1, 41):
        await store.report(_report(n))
    source = RedisEventSource(connect(cluster.url), consumer="writer-1")
    try:
        await source.setup()
        assert source.cluster
        found = await source.read(500)
        assert len(found) == 40
        assert len({d.stream for d in found}) > 20
        assert (await source.backlog()).count == 40
        started = time.monotonic()
        assert await source.read(500) == []
        waited = time.monotonic() - started
        assert CLUSTER_POLL_SECONDS * 0.9 <= waited < CLUSTER_POLL_SECONDS + 0.4
        await source.ack(found)
        assert (await source.backlog()).count == 0
    finally:
        await source.aclose()


async def test_the_writer_goes_on_after_every_master_lost_its_data(
    cluster: RedisClusterServer, tmp_path: Path
) -> None:
    """Every master flushed (the cluster restarted without persistence): the consumer group
    is gone from every stream; the writer creates it again and stores what comes next."""
    db = Database(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    migrate.upgrade(db)
    client = connect(cluster.url)
    writer = HistoryWriter(RedisEventSource(client, consumer="w"), db)
    try:
        await writer.source.setup()
        cluster.flush()
        await RedisCallStore(client, ttl=60).report(_report(1))
        stored = 0
        for _ in range(3):  # the first read finds the group gone and makes it again
            stored += await asyncio.wait_for(writer.step(), timeout=10)
        assert stored == 1
    finally:
        await client.aclose()
    with db.session() as session:
        assert [c.sid for c in session.scalars(select(Call))] == [_report(1).call_sid]
    db.dispose()


async def test_a_stopped_writer_stops_at_once_on_a_cluster(cluster: RedisClusterServer) -> None:
    """Cancelled at any moment of its polling, the reader stops (redis-py's sends can
    swallow a cancellation on Python 3.11; the reader honours it)."""
    source = RedisEventSource(connect(cluster.url), consumer="w")
    try:
        await source.setup()
        for attempt in range(60):
            task = asyncio.create_task(source.read(10))
            for _ in range(attempt % 12):
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=2)
            assert done, f"attempt {attempt}: the read went on after it was cancelled"
            assert task.cancelled(), f"attempt {attempt}: the read returned instead of stopping"
    finally:
        await source.aclose()


def test_a_missing_redis_cli_names_its_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-cli the suite fails (never skips), saying which package brings it."""
    found = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "redis-cli" else found(name))
    with pytest.raises(RuntimeError, match="Debian's redis-tools package"), redis_cluster():
        pytest.fail("started without redis-cli")


def test_cluster_urls() -> None:
    """`redis+cluster://` names seed nodes (IPv6 in brackets) and optional credentials;
    a bad node is named."""
    address = parse_cluster_url("redis+cluster://:p%40ss@10.0.0.1:7000,[::1]:7001,r-3:7002/0")
    assert address.nodes == (("10.0.0.1", 7000), ("::1", 7001), ("r-3", 7002))
    assert (address.username, address.password) == (None, "p@ss")
    assert parse_cluster_url("redis+cluster://ana:pw@h:1").username == "ana"
    assert parse_cluster_url("redis+cluster://h:1").password is None
    for bad, what in (
        ("redis+cluster://h", "'h' is not host:port"),
        ("redis+cluster://h:1,h2:99999", "'h2:99999' is not host:port"),
        ("redis+cluster://", "names no node"),
        ("redis://h:1", "not a Redis Cluster URL"),
    ):
        with pytest.raises(ValueError, match=what):
            parse_cluster_url(bad)
    client = connect("redis+cluster://:secret@127.0.0.1:7000,127.0.0.1:7001")
    assert isinstance(client, RedisCluster)
    assert client.get_connection_kwargs()["password"] == "secret"


async def test_a_cluster_that_does_not_answer_is_store_unavailable() -> None:
    """No seed node answers: the cluster client's own exception becomes StoreUnavailable (the
    service answers its fallback, not a 500), and ping says False."""
    url = "redis+cluster://127.0.0.1:1"
    store = RedisCallStore.from_url(url, ttl=60)
    queues = RedisQueueStore.from_url(url)
    source = RedisEventSource(connect(url), consumer="w")
    try:
        assert not await store.ping()
        assert not await queues.ping()
        with pytest.raises(StoreUnavailable):
            await store.load(SID)
        with pytest.raises(StoreUnavailable):
            await store.save(_state(), revision=0, reply="", record=None)
        with pytest.raises(StoreUnavailable):
            await queues.join("general-queue", _waiter(1), 10)
        with pytest.raises(StoreUnavailable):
            await source.read(10)
        with pytest.raises(StoreUnavailable):
            await RedisPacer.from_url(url).reserve("AC1", 1.0, 5.0)
    finally:
        await store.aclose()
        await queues.aclose()
        await source.aclose()


def _wait_until_replicated(port: int) -> None:
    """Until the replica of the master on `port` has everything the master wrote."""
    deadline = time.monotonic() + 10
    while True:
        text = redis_command(port, "INFO", "replication").decode()
        info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        replica = dict(part.split("=", 1) for part in info["slave0"].split(","))
        if int(replica["offset"]) >= int(info["master_repl_offset"]):
            return
        assert time.monotonic() < deadline, f"the replica lags: {info}"
        time.sleep(0.01)


async def test_a_failed_over_master_is_followed_without_a_new_client() -> None:
    """A master with a replica is killed. Before the failover, ping says False (every master
    must answer), the calls whose slots it owned are StoreUnavailable after one retry (the
    service's retry time rides that out) and the other masters' calls go on. Once the
    replica took over (node timeout 1 s here), the same client reads the calls that master
    held, none lost, and saves them again."""
    with redis_cluster(replicas=1, node_timeout_ms=1000) as own:
        store = RedisCallStore.from_url(own.url, ttl=60)
        try:
            client = _cluster_client(store)
            await client.initialize()
            sids = [f"CA{n:032x}" for n in range(30)]
            for sid in sids:
                assert await store.save(
                    _state().evolve(call_sid=sid), revision=0, reply="", record=None
                )
            home = {sid: _port_of(client, call_key(sid)) for sid in sids}
            victim = home[sids[0]]
            _wait_until_replicated(victim)
            own.processes[own.ports.index(victim)].kill()  # a crash: no goodbye
            killed = time.monotonic()
            lost = [sid for sid in sids if home[sid] == victim]
            alive = next(sid for sid in sids if home[sid] != victim)
            assert not await store.ping()  # every master must answer
            with pytest.raises(StoreUnavailable):
                await store.load(lost[0])
            assert await store.load(alive) is not None
            deadline = time.monotonic() + 15
            while True:
                try:
                    back = await store.load(lost[0])
                    break
                except StoreUnavailable:
                    assert time.monotonic() < deadline, "no failover within 15 s"
                    await asyncio.sleep(0.1)
            assert time.monotonic() - killed < 1 + 5  # node timeout, election: about 2.3 s
            assert back is not None
            assert back.revision == 1
            assert _port_of(client, call_key(lost[0])) != victim  # the replica, now master
            assert await store.ping()
            for sid in lost:
                stored = await store.load(sid)
                assert stored is not None
                assert await store.save(
                    stored.state.evolve(seq=2), revision=1, reply="", record=None
                )
        finally:
            await store.aclose()


def test_serve_names_the_cluster_and_the_master_that_does_not_answer(tmp_path: Path) -> None:
    """`flowpbx serve` on a cluster says at start which cluster holds the calls (seed nodes,
    never the password) and /health says "redis-cluster". With one of the three masters
    stopped, the start fails naming that master, and only it: the other two answer."""
    password = "cluster-pass-93d1f7"
    with redis_cluster() as own:
        for port in own.ports:
            assert redis_command(port, "CONFIG", "SET", "masterauth", password) == b"+OK\r\n"
            assert redis_command(port, "CONFIG", "SET", "requirepass", password) == b"+OK\r\n"
        env = environment(REDIS_CLUSTER_NODES=own.nodes_setting, REDIS_PASSWORD=password)
        cwd = workdir(tmp_path)
        with serving(cwd, env) as server:
            health = httpx.get(f"{server.base_url}/health", timeout=10.0)
            assert (health.status_code, health.json()["store"]) == (200, "redis-cluster")
        seeds = ", ".join(f"127.0.0.1:{port}" for port in own.ports)
        started = f"call state and queues in Redis Cluster (3 seed nodes: {seeds})"
        assert started in server.output()
        assert password not in server.output()

        victim = own.ports[1]
        process = own.processes[1]
        process.terminate()
        process.wait(timeout=10)
        done = subprocess.run(
            [str(FLOWPBX), "serve", "--flows", str(FLOWS), "--port", str(free_port())],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert (
        f"flowpbx cannot start: Redis Cluster at {own.nodes_setting}: master "
        f"127.0.0.1:{victim} does not answer (the others do); every master must answer"
    ) in done.stderr
    for port in own.ports:
        if port != victim:
            assert f"127.0.0.1:{port} does not" not in done.stderr


async def test_a_cluster_none_of_whose_seeds_answers_is_named_whole() -> None:
    """No seed node answers: the masters are unknown, so the start-up check names the cluster
    as configured and the settings to check."""
    closed = free_port()
    settings = Settings(redis_cluster_nodes=(("127.0.0.1", closed),))
    with pytest.raises(StoreNotReachable) as failed:
        await check_store(settings)
    assert str(failed.value) == (
        f"Redis Cluster at 127.0.0.1:{closed} does not answer; check REDIS_CLUSTER_NODES and "
        "REDIS_PASSWORD"
    )
