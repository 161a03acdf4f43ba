"""Benchmark queues (issue #9): part 1, the Redis queue store's operations with 100 to 10,000
callers waiting, against a Redis PING in the same run; part 2 (`--api`, on by default), the
queue endpoints of the REST API served by the real app, against its trivial endpoints.

Part 1, the store. A private redis-server (tests/servers.py; no persistence) holds one queue of
N callers (N = 100, 1,000, 10,000), all of priority 0, joined one millisecond apart.
`RedisQueueStore` (the store the service uses, on the same client settings) then runs, one
operation at a time over one connection, interleaved rounds of:

- PING: the baseline, one round trip that does nothing (`RedisQueueStore.ping`);
- join: a new caller at the back (the join script, then the separate SET of `where`);
- place: the position of a random waiting caller;
- claim: the front of the queue claimed for a reservation (the front is read, untimed,
  before); then unclaim, timed apart, puts it back in front;
- leave: a random waiting caller leaves for good (so the queue stays at N).

Each operation is timed `--ops` times per size (5,000; `--quick` 500) after a warm-up; the
script reports p50 and p99 in milliseconds, each p99 as a multiple of PING's p99, and the
growth of p50 and p99 from the smallest size to the largest. Target: every operation's p99
under 1 ms with 10,000 waiting. With `taskset` and two or more cores, this process runs on
core 0 and redis-server on core 1; the event loop is uvloop's when installed (as under uvicorn).

Part 2, the API. The same redis-server, flushed, and a temporary SQLite database serve the real
app (`flowpbx.app.build_app`, uvicorn in a thread of this process as in bench_api.py, with an
admin key; FLOWPBX_QUEUE_SCHEDULER off so that no caller is offered, the history writer off).
Ten agents serve general-queue, made and set through the REST API: four available, six busy.
general-queue grows to 100, 1,000 and 10,000 waiting through the app's own queue store
(`RedisQueueStore.join`, 50 joins at a time, past the flow's max_size): callers joined a tenth
of a second apart, one in twenty with priority 1, one in ten a callback. At each size, one
request at a time over one keep-alive connection, in interleaved rounds (`--requests` per
endpoint, 600; `--quick` 100):

- GET /health: the first baseline (it pings Redis and reads the history backlog:
  one PING and a pipeline of 128 stream commands);
- GET /api/keys?limit=1: a second baseline, the same key check as the queue endpoints and one
  SQLite query, no Redis;
- GET /api/queues/general-queue: the first page (50 places, estimated waits);
- GET /api/queues, twice: on the shipped flows (general-queue's max_size 100), and on a second
  app, same database and Redis, whose copy of the flows sets it to 5,000, the most a flow may
  declare (this endpoint reads up to max_size places to find the one waiting longest).

Every answer is checked (sizes, positions, waits, agent counts). The script reports p50/p99,
the p99 as a multiple of each baseline's p99, the growth from 100 to 10,000, and Redis's own
time per request (SLOWLOG). Target: GET /api/queues/general-queue p99 under 50 ms with 10,000
waiting.

Run: `.venv/bin/python benchmarks/bench_queues.py` (about 70 seconds; `--quick` about
12 seconds; `--no-api` or `--no-store` for one part). Prints Markdown tables, writes
benchmarks/results/queues.json, exits 0 whether the targets are met or not (1 if an operation
or an answer was not what it should be).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import importlib.metadata
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_api  # noqa: E402
import bench_webhooks  # noqa: E402
from flowpbx.app import build_app, queue_store_from  # noqa: E402
from flowpbx.queues.model import JoinOutcome, Waiter, WaiterKind, callback_member  # noqa: E402
from flowpbx.queues.redis_store import SCRIPTS, RedisQueueStore  # noqa: E402
from flowpbx.settings import Settings  # noqa: E402
from served import served  # noqa: E402
from servers import RedisServer, redis_server  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "queues.json"
SIZES = (100, 1_000, 10_000)
OPS = 5_000
QUICK_OPS = 500
PASSES = 3
WARMUP = 300
TARGET_P99_MS = 1.0
QUEUE = "general-queue"
OPERATIONS = ("ping", "join", "place", "claim", "unclaim", "leave")
T0 = 1_790_000_000.0


class BenchError(Exception):
    """An operation did not do what it should: the figures would mean nothing."""


pct = bench_api.pct


def waiter(n: int) -> Waiter:
    """Caller `n`: joined n milliseconds after T0 (later callers at the back)."""
    sid = f"CA{n:032x}"
    return Waiter(
        member=sid,
        call_sid=sid,
        caller=f"+346{n:08d}",
        queued_at=T0 + n / 1000,
        queue_sid="QU" + "0" * 32,
        seq=4,
        flow="seguros",
        node="agente",
    )


def pin(server: RedisServer) -> str:
    """This process on core 0, redis-server on core 1, when taskset and two cores exist."""
    taskset = shutil.which("taskset")
    cores = sorted(os.sched_getaffinity(0))
    if taskset is None or len(cores) < 2 or server.process is None:
        return "not pinned (taskset or a second core is missing)"
    subprocess.run(
        [taskset, "-a", "-p", "-c", str(cores[1]), str(server.process.pid)],
        check=True,
        capture_output=True,
    )
    os.sched_setaffinity(0, {cores[0]})
    return f"this process on core {cores[0]}, redis-server on core {cores[1]} (taskset)"


class Bench:
    """One queue of `size` waiting callers and the timed operations on it."""

    def __init__(self, store: RedisQueueStore, rng: random.Random) -> None:
        self.store = store
        self.rng = rng
        self.members: list[str] = []
        self.next = 0
        self.times: dict[str, list[float]] = {op: [] for op in OPERATIONS}

    async def fill(self, size: int) -> None:
        await self.store.client.flushdb()
        self.members, self.next = [], 0
        for start in range(0, size, 50):  # (the client's pool holds 100 connections)
            batch = [waiter(n) for n in range(start, min(start + 50, size))]
            await asyncio.gather(*(self.store.join(QUEUE, w, 10**9) for w in batch))
            self.members.extend(w.member for w in batch)
        self.next = size

    async def _timed(self, op: str, call: Callable[[], Awaitable[Any]], keep: bool) -> Any:
        started = time.perf_counter_ns()
        result = await call()
        if keep:
            self.times[op].append((time.perf_counter_ns() - started) / 1e6)
        return result

    async def round(self, keep: bool) -> None:
        store, rng = self.store, self.rng
        await self._timed("ping", store.ping, keep)

        new = waiter(self.next)
        self.next += 1
        place = await self._timed("join", lambda: store.join(QUEUE, new, 10**9), keep)
        if place.outcome is not JoinOutcome.JOINED or place.position != place.size:
            raise BenchError(f"join: {place}")
        self.members.append(new.member)

        member = rng.choice(self.members)
        place = await self._timed("place", lambda: store.place(QUEUE, member), keep)
        if place.outcome is not JoinOutcome.WAITING:
            raise BenchError(f"place: {place}")

        [front], _ = await store.waiting(QUEUE, 0, 1)
        reservation = f"RS{self.next}"
        claimed = await self._timed(
            "claim", lambda: store.claim(QUEUE, front.member, reservation, "agent_1"), keep
        )
        if claimed is None:
            raise BenchError(f"claim of {front.member} failed")
        back = await self._timed(
            "unclaim", lambda: store.unclaim(QUEUE, front.member, reservation), keep
        )
        if not back:
            raise BenchError(f"unclaim of {front.member} failed")

        index = rng.randrange(len(self.members))
        self.members[index], self.members[-1] = self.members[-1], self.members[index]
        gone = self.members.pop()
        left = await self._timed("leave", lambda: store.leave(QUEUE, gone), keep)
        if left is None:
            raise BenchError(f"leave of {gone} failed")


async def redis_times(store: RedisQueueStore, bench: Bench, rounds: int) -> dict[str, Any]:
    """Microseconds Redis itself spends on each command of `rounds` more rounds (untimed by
    the client), from its SLOWLOG with every command logged: the store's own cost, which the
    machine's scheduling noise does not reach (the round trip is not in it)."""
    client = store.client
    names = {script.sha: script.name for script in SCRIPTS.values()}
    await client.config_set("slowlog-max-len", rounds * 8)
    await client.config_set("slowlog-log-slower-than", 0)
    await client.slowlog_reset()
    for _ in range(rounds):
        await bench.round(keep=False)
    await client.config_set("slowlog-log-slower-than", 10_000)
    entries = await client.slowlog_get(rounds * 8)
    await client.slowlog_reset()
    await client.config_set("slowlog-max-len", 128)
    times: dict[str, list[float]] = {}
    for entry in entries:
        args = entry["command"].split()
        command = args[0].decode().upper()
        if command == "EVALSHA":
            name = names.get(args[1].decode(), "?") + " (script)"
        elif command in ("PING", "SET"):
            name = command
        else:
            continue
        times.setdefault(name, []).append(float(entry["duration"]))
    return {
        name: {"n": len(values), "p50_us": pct(values, 0.50), "p99_us": pct(values, 0.99)}
        for name, values in sorted(times.items())
    }


async def one_size(store: RedisQueueStore, rng: random.Random, size: int, ops: int) -> Any:
    """Client-side times of each operation (ms) and Redis's own (µs) with `size` waiting."""
    bench = Bench(store, rng)
    await bench.fill(size)
    for _ in range(WARMUP):
        await bench.round(keep=False)
    gc.collect()
    for _ in range(ops):
        await bench.round(keep=True)
    server = await redis_times(store, bench, min(ops, 1_000))
    _, waiting = await store.waiting(QUEUE, 0, 0)
    if waiting != size:
        raise BenchError(f"{waiting} waiting at the end, not {size}")
    return bench.times, server


async def measure(url: str, sizes: Sequence[int], ops: int, passes: int) -> dict[str, Any]:
    """Every size in each pass; per size, the median over the passes of each percentile (a
    burst of load on the machine spoils one pass, not the figure)."""
    store = RedisQueueStore.from_url(url)
    rng = random.Random(9)
    runs: dict[int, list[dict[str, list[float]]]] = {size: [] for size in sizes}
    server: dict[int, dict[str, Any]] = {}
    try:
        for number in range(passes):
            for size in sizes:
                times, server[size] = await one_size(store, rng, size, ops)
                runs[size].append(times)
                print(f"  pass {number + 1}/{passes}: {size:>6,} waiting", flush=True)
    finally:
        await store.aclose()
    out: dict[str, Any] = {}
    for size in sizes:
        client: dict[str, Any] = {}
        for op in OPERATIONS:
            p50s = [pct(times[op], 0.50) for times in runs[size]]
            p99s = [pct(times[op], 0.99) for times in runs[size]]
            client[op] = {
                "ops_per_pass": ops,
                "p50_ms": statistics.median(p50s),
                "p99_ms": statistics.median(p99s),
                "p99_ms_passes": p99s,
                "max_ms": max(max(times[op]) for times in runs[size]),
            }
        for op in OPERATIONS:
            client[op]["p99_vs_ping_p99"] = client[op]["p99_ms"] / client["ping"]["p99_ms"]
        out[str(size)] = {"client": client, "redis": server[size]}
    return out


def table(sizes: dict[str, Any]) -> str:
    largest = max(sizes, key=int)
    lines = [
        "| waiting | operation | p50 (ms) | p99 (ms) | p99 per pass (ms) | max (ms) "
        "| p99 / PING p99 |",
        "|---:|---|---:|---:|---|---:|---:|",
    ]
    for size, row in sizes.items():
        for op in OPERATIONS:
            f = row["client"][op]
            p99 = f"{f['p99_ms']:.3f}"
            if op != "ping" and size == largest:
                p99 = f"**{p99}**"
            passes = ", ".join(f"{v:.2f}" for v in f["p99_ms_passes"])
            ratio = "1" if op == "ping" else f"{f['p99_vs_ping_p99']:.2f}×"
            lines.append(
                f"| {int(size):,} | {op.upper() if op == 'ping' else op} | {f['p50_ms']:.3f} "
                f"| {p99} | {passes} | {f['max_ms']:.2f} | {ratio} |"
            )
    return "\n".join(lines)


def redis_table(sizes: dict[str, Any]) -> str:
    """Redis's own time per command (SLOWLOG), p50 / p99 in µs, a column per size."""
    names = sorted({name for row in sizes.values() for name in row["redis"]})
    lines = [
        "| command | " + " | ".join(f"{int(size):,} waiting" for size in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for name in names:
        cells = []
        for row in sizes.values():
            f = row["redis"].get(name)
            cells.append(f"{f['p50_us']:.0f} / {f['p99_us']:.0f}" if f else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def growth(sizes: dict[str, Any]) -> str:
    first, last = min(sizes, key=int), max(sizes, key=int)
    lines = [
        f"| operation | p50 {int(last):,} / {int(first):,} | p99 {int(last):,} / {int(first):,} |",
        "|---|---:|---:|",
    ]
    for op in OPERATIONS:
        a, b = sizes[first]["client"][op], sizes[last]["client"][op]
        lines.append(
            f"| {op} | {b['p50_ms'] / a['p50_ms']:.2f}× | {b['p99_ms'] / a['p99_ms']:.2f}× |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- part 2: the API

API_REQUESTS = 600
QUICK_API_REQUESTS = 100
API_ROUNDS = 6
API_WARMUP = 30
API_TARGET_P99_MS = 50.0
SLOWLOG_REQUESTS = 50
SHIPPED_MAX_SIZE = 100
LARGEST_MAX_SIZE = 5_000
"""The most a flow may declare (flow.schema.json: queues.max_size)."""
AGENTS = 10
AVAILABLE = 4
"""agent_0 to agent_3 available, the other six busy."""
SEED_SPACING_S = 0.1
"""Callers joined a tenth of a second apart, the last one a second before the seeding."""


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    app: str
    """'shipped' (flows/ as they are) or 'largest' (general-queue's max_size at 5,000)."""
    key: bool
    """Sent with the admin key."""


ENDPOINTS = (
    Endpoint("GET /health", "/health", "shipped", key=False),
    Endpoint("GET /api/keys?limit=1", "/api/keys?limit=1", "shipped", key=True),
    Endpoint(f"GET /api/queues/{QUEUE}", f"/api/queues/{QUEUE}", "shipped", key=True),
    Endpoint("GET /api/queues (max_size 100)", "/api/queues", "shipped", key=True),
    Endpoint("GET /api/queues (max_size 5,000)", "/api/queues", "largest", key=True),
)
BASELINE = ENDPOINTS[0].name
KEYS = ENDPOINTS[1].name
"""A second baseline: the same key check as the queue endpoints, one SQLite query, no Redis."""
QUEUE_PAGE = ENDPOINTS[2].name


def api_waiter(n: int, newest: float, count: int) -> Waiter:
    """Caller `n` of `count`: the later `n`, the later it joined, the last at `newest`. One in
    twenty has priority 1 (ahead of the others), one in ten is a callback (keeps its place,
    waits for its number to be called)."""
    sid = f"CA{n:032x}"
    callback = n % 10 == 7
    return Waiter(
        member=callback_member(sid) if callback else sid,
        call_sid=sid,
        caller=f"+346{n:08d}",
        queued_at=newest - (count - 1 - n) * SEED_SPACING_S,
        priority=1 if n % 20 == 3 else 0,
        kind=WaiterKind.CALLBACK if callback else WaiterKind.CALLER,
        number=f"+346{n:08d}" if callback else "",
        queue_sid="" if callback else "QU" + "0" * 32,
        seq=4,
        flow="seguros",
        node="agente",
        called="+34910000000",
    )


async def seed(settings: Settings, waiters: Sequence[Waiter]) -> float:
    """`waiters` join general-queue through the app's queue store (no max_size: the bench
    holds more than a flow may declare), 50 at a time; seconds taken."""
    store = queue_store_from(settings)
    started = time.perf_counter()
    try:
        for start in range(0, len(waiters), 50):
            batch = waiters[start : start + 50]
            places = await asyncio.gather(*(store.join(QUEUE, w, 10**9) for w in batch))
            if any(p.outcome is not JoinOutcome.JOINED for p in places):
                raise BenchError(f"seeding: {[p for p in places if p.outcome != 'joined'][:3]}")
    finally:
        await store.aclose()
    return time.perf_counter() - started


async def learn_figures(settings: Settings) -> None:
    """What the queue would have learned from answered calls: handle time and waits."""
    store = queue_store_from(settings)
    try:
        for handle, wait in ((240.0, 90.0), (200.0, 120.0), (260.0, 75.0)):
            await store.learn(QUEUE, handle_time=handle, answered_wait=wait, abandoned=False)
    finally:
        await store.aclose()


def flows_with_max_size(source: Path, target: Path, max_size: int) -> Path:
    """A copy of the flows with general-queue's max_size at `max_size`."""
    shutil.copytree(source, target)
    flow = target / "seguros.yaml"
    text = flow.read_text()
    old = f"  {QUEUE}:\n"
    head, found, tail = text.partition(old)
    block, setting, rest = tail.partition(f"    max_size: {SHIPPED_MAX_SIZE}\n")
    if not found or not setting or "\n  " in block.replace("\n    ", ""):
        raise BenchError(f"{flow}: no 'max_size: {SHIPPED_MAX_SIZE}' under {QUEUE}")
    flow.write_text(head + old + block + f"    max_size: {max_size}\n" + rest)
    return target


def add_agents(client: httpx.Client, base: str, headers: dict[str, str]) -> None:
    """Ten agents on general-queue through the REST API, four available and six busy."""
    for n in range(AGENTS):
        agent = f"agent_{n}"
        made = client.post(
            f"{base}/api/agents",
            json={
                "id": agent,
                "name": f"Agente {n}",
                "identity": agent,
                "queues": {QUEUE: 5 + n % 3},
            },
            headers=headers,
        )
        status = "available" if n < AVAILABLE else "busy"
        set_ = client.put(
            f"{base}/api/agents/{agent}/status", json={"status": status}, headers=headers
        )
        for reply in (made, set_):
            if reply.status_code not in (200, 201):
                raise BenchError(f"{reply.request.url}: {reply.status_code} {reply.text[:200]}")


def check_reply(point: Endpoint, body: Any, size: int) -> None:
    """The reply says what it should with `size` waiting: the figures would mean nothing
    otherwise."""
    if point.path.startswith(f"/api/queues/{QUEUE}"):
        calls = body["calls"]
        waits = [c["estimatedWaitTime"] for c in calls]
        if (
            body["currentSize"] != size
            or len(calls) != min(50, size)
            or [c["position"] for c in calls] != list(range(1, len(calls) + 1))
            or None in waits
            or waits != sorted(waits)
            or (size > 50) != (body["nextCursor"] is not None)
        ):
            raise BenchError(f"{point.name}: {json.dumps(body)[:300]}")
    elif point.path == "/api/queues":
        [summary] = [q for q in body["queues"] if q["id"] == QUEUE]
        counts = summary["agents"]
        if (
            summary["currentSize"] != size
            or summary["longestWaitTime"] is None
            or counts["available"] != AVAILABLE
            or counts["busy"] != AGENTS - AVAILABLE
        ):
            raise BenchError(f"{point.name}: {json.dumps(summary)[:300]}")


def redis_per_request(redis_client: Any, send: Callable[[], Any], requests: int) -> dict[str, Any]:
    """Redis's own time (SLOWLOG, every command logged) per request for `requests` more
    requests: the commands each sends (a script's own commands are in its time) and how long
    Redis is busy with them, during which it answers no other client."""
    names = {script.sha: script.name for script in SCRIPTS.values()}
    redis_client.config_set("slowlog-max-len", requests * 200)
    redis_client.config_set("slowlog-log-slower-than", 0)
    redis_client.slowlog_reset()
    for _ in range(requests):
        send()
    redis_client.config_set("slowlog-log-slower-than", 10_000)
    entries = redis_client.slowlog_get(requests * 200)
    redis_client.slowlog_reset()
    redis_client.config_set("slowlog-max-len", 128)
    total = 0.0
    by_command: dict[str, list[float]] = {}
    for entry in entries:
        args = entry["command"].split()
        command = args[0].decode().upper()
        if command in ("CONFIG", "SLOWLOG") or entry["client_address"] == b"?:0":
            continue  # (?:0: a command of a script, counted in the script's time)
        if command == "EVALSHA":
            command = names.get(args[1].decode(), "?") + " (script)"
        by_command.setdefault(command, []).append(float(entry["duration"]))
        total += float(entry["duration"])
    return {
        "us_per_request": total / requests,
        "commands_per_request": sum(len(v) for v in by_command.values()) / requests,
        "commands": {
            name: {"per_request": len(v) / requests, "p50_us": pct(v, 0.5), "max_us": max(v)}
            for name, v in sorted(by_command.items())
        },
    }


def api_size(
    client: httpx.Client,
    bases: dict[str, str],
    headers: dict[str, str],
    redis_client: Any,
    *,
    size: int,
    requests: int,
    rounds: int,
) -> dict[str, Any]:
    """Every endpoint, one request at a time, `requests` each in `rounds` interleaved rounds
    (the order turns each round): p50/p99 ms, and Redis's own time per request."""

    def get(point: Endpoint) -> httpx.Response:
        reply = client.get(bases[point.app] + point.path, headers=headers if point.key else {})
        if reply.status_code != 200:
            raise BenchError(f"{point.name}: {reply.status_code} {reply.text[:300]}")
        return reply

    sizes: dict[str, int] = {}
    for point in ENDPOINTS:  # warm-up, and what each answer holds
        reply = get(point)
        check_reply(point, reply.json(), size)
        sizes[point.name] = len(reply.content)
        for _ in range(API_WARMUP):
            get(point)
    samples: dict[str, list[float]] = {point.name: [] for point in ENDPOINTS}
    gc.collect()
    for number in range(rounds):
        shift = number % len(ENDPOINTS)
        for point in ENDPOINTS[shift:] + ENDPOINTS[:shift]:
            count = requests // rounds + (1 if number < requests % rounds else 0)
            url, sent = bases[point.app] + point.path, headers if point.key else {}
            times = samples[point.name]
            for _ in range(count):
                started = time.perf_counter_ns()
                reply = client.get(url, headers=sent)
                times.append((time.perf_counter_ns() - started) / 1e6)
                if reply.status_code != 200:
                    raise BenchError(f"{point.name}: {reply.status_code} {reply.text[:300]}")
    out: dict[str, Any] = {}
    for point in ENDPOINTS:
        values = samples[point.name]
        out[point.name] = {
            "requests": len(values),
            "bytes": sizes[point.name],
            "p50_ms": statistics.median(values),
            "p99_ms": pct(values, 0.99),
            "max_ms": max(values),
            "redis": redis_per_request(redis_client, partial(get, point), SLOWLOG_REQUESTS),
        }
    health, keys = out[BASELINE], out[KEYS]
    for point in ENDPOINTS:
        row = out[point.name]
        row["p50_vs_health_p50"] = row["p50_ms"] / health["p50_ms"]
        row["p99_vs_health_p99"] = row["p99_ms"] / health["p99_ms"]
        row["p50_vs_keys_p50"] = row["p50_ms"] / keys["p50_ms"]
        row["p99_vs_keys_p99"] = row["p99_ms"] / keys["p99_ms"]
    return out


def measure_api(
    server: RedisServer, sizes: Sequence[int], requests: int, rounds: int, run: Any
) -> dict[str, Any]:
    """Part 2: the real app on `server` and a temporary SQLite, the queue grown from size to
    size through the app's queue store, each size measured over HTTP."""
    redis_client = redis.Redis(host=server.host, port=server.port)
    redis_client.flushdb()  # the store part's queue has the same keys
    out: dict[str, Any] = {"sizes": {}}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        settings = Settings(
            twilio_auth_token="t" * 32,
            flows_dir=ROOT / "flows",
            redis_host=server.host,
            redis_port=server.port,
            database_url_override=f"sqlite:///{tmp}/bench.sqlite3",
            queue_scheduler=False,  # no offers: the callers stay where they are
            history_writer=False,  # nothing to write; its polling would only add noise
            log_level="WARNING",
        )
        largest = replace(
            settings,
            flows_dir=flows_with_max_size(ROOT / "flows", Path(tmp) / "flows", LARGEST_MAX_SIZE),
        )
        bases = {}
        bases["shipped"], key = stack.enter_context(
            bench_api.flowpbx(settings.database_url, settings)
        )
        bases["largest"] = stack.enter_context(served(build_app(largest)))
        headers = {"Authorization": f"Bearer {key}"}
        # TCP_NODELAY: see bench_api.py (httpx writes headers and body apart).
        nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        client = stack.enter_context(httpx.Client(timeout=60, transport=nodelay))
        add_agents(client, bases["shipped"], headers)
        run(learn_figures(settings))
        count = max(sizes)
        newest = time.time() - 1.0
        waiters = [api_waiter(n, newest, count) for n in range(count)]
        have = 0
        for size in sorted(sizes):  # the queue grows: later callers join behind (by priority)
            took = run(seed(settings, waiters[have:size]))
            print(f"  {size:>6,} waiting (seeded {size - have:,} in {took:.1f} s)", flush=True)
            have = size
            out["sizes"][str(size)] = api_size(
                client, bases, headers, redis_client, size=size, requests=requests, rounds=rounds
            )
    redis_client.close()
    return out


def api_table(sizes: dict[str, Any]) -> str:
    """p50 / p99 per endpoint, a column per size; at the largest size the p99 against the
    baselines' (/health, and /api/keys with the same key check); the growth."""
    first, last = min(sizes, key=int), max(sizes, key=int)
    lines = [
        f"| endpoint | bytes at {int(last):,} | "
        + " | ".join(f"{int(size):,} waiting p50 / p99 (ms)" for size in sizes)
        + f" | p99 / health p99 at {int(last):,} | p99 / keys p99 at {int(last):,} "
        f"| growth {int(first):,}→{int(last):,} p50 / p99 |",
        "|---|---:|" + "---:|" * len(sizes) + "---:|---:|---:|",
    ]
    for point in ENDPOINTS:
        cells = []
        for size, row in sizes.items():
            f = row[point.name]
            p99 = f"{f['p99_ms']:.2f}"
            if point.name == QUEUE_PAGE and size == last:
                p99 = f"**{p99}**"
            cells.append(f"{f['p50_ms']:.2f} / {p99}")
        a, b = sizes[first][point.name], sizes[last][point.name]
        health = "1" if point.name == BASELINE else f"{b['p99_vs_health_p99']:.2f}×"
        keys = "1" if point.name == KEYS else f"{b['p99_vs_keys_p99']:.2f}×"
        lines.append(
            f"| {point.name} | {b['bytes']:,} | " + " | ".join(cells) + f" | {health} | {keys} "
            f"| {b['p50_ms'] / a['p50_ms']:.2f}× / {b['p99_ms'] / a['p99_ms']:.2f}× |"
        )
    return "\n".join(lines)


def api_redis_table(sizes: dict[str, Any]) -> str:
    """Redis's own time per request (SLOWLOG): commands, µs in all, the longest command."""
    lines = [
        "| endpoint | commands | "
        + " | ".join(f"{int(size):,} waiting: µs per request (longest command)" for size in sizes)
        + " |",
        "|---|---:|" + "---:|" * len(sizes),
    ]
    for point in ENDPOINTS:
        cells = []
        for row in sizes.values():
            r = row[point.name]["redis"]
            if not r["commands"]:
                cells.append("0 (none)")
                continue
            name, longest = max(r["commands"].items(), key=lambda kv: kv[1]["max_us"])
            cells.append(f"{r['us_per_request']:.0f} ({name} {longest['max_us']:.0f})")
        r = sizes[max(sizes, key=int)][point.name]["redis"]
        lines.append(
            f"| {point.name} | {r['commands_per_request']:.0f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def print_api(api: dict[str, Any]) -> None:
    sizes = api["sizes"]
    print()
    print(api_table(sizes))
    print(f"\nRedis's own time per request (SLOWLOG, {SLOWLOG_REQUESTS} requests):\n")
    print(api_redis_table(sizes))
    verdict = "PASS" if api["pass"] else "FAIL"
    print(
        f"\n{verdict}: {QUEUE_PAGE} p99 with {int(max(sizes, key=int)):,} waiting is "
        f"{api['target']['queue_page_p99_ms']:.2f} ms (target < {API_TARGET_P99_MS:g} ms)"
    )


def _runner() -> tuple[Callable[[Any], Any], str]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run, "asyncio"
    return uvloop.run, f"uvloop {importlib.metadata.version('uvloop')}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_OPS} operations per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--ops", type=int, default=None, help=f"per operation and size ({OPS})")
    parser.add_argument("--passes", type=int, default=None, help=f"over all sizes ({PASSES})")
    parser.add_argument(
        "--store", action=argparse.BooleanOptionalAction, default=True, help="part 1 (on)"
    )
    parser.add_argument(
        "--api", action=argparse.BooleanOptionalAction, default=True, help="part 2 (on)"
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        help=f"per endpoint and size ({API_REQUESTS}; --quick {QUICK_API_REQUESTS})",
    )
    parser.add_argument("--rounds", type=int, default=API_ROUNDS, help="interleaved, per size")
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ops = args.ops or (QUICK_OPS if args.quick else OPS)
    passes = args.passes or (1 if args.quick else PASSES)
    requests = args.requests or (QUICK_API_REQUESTS if args.quick else API_REQUESTS)
    run, loop = _runner()

    started = time.monotonic()
    result: dict[str, Any] = {
        "benchmark": "queues (issue #9)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "git_commit": bench_webhooks.git_commit(),
            "load_average_before": os.getloadavg(),
            "event_loop": loop,
        },
        "settings": {
            "sizes": args.sizes,
            "ops": ops,
            "passes": passes,
            "warmup": WARMUP,
            "store": args.store,
            "api": args.api,
            "api_requests": requests,
            "api_rounds": args.rounds,
            "api_warmup": API_WARMUP,
        },
    }
    with redis_server() as server:
        result["machine"]["pinning"] = pin(server)
        version = subprocess.run(
            [server.binary, "--version"], capture_output=True, text=True, check=False
        ).stdout.split()
        result["machine"]["redis"] = next((v[2:] for v in version if v.startswith("v=")), "?")
        try:
            if args.store:
                print(
                    f"queue store: redis-server {result['machine']['redis']}, {loop}, "
                    f"{result['machine']['pinning']}; {passes} passes of {ops} operations "
                    "per size",
                    flush=True,
                )
                result["sizes"] = run(measure(server.url, args.sizes, ops, passes))
            if args.api:
                print(
                    f"queue API: the app under uvicorn (asyncio) in a thread, SQLite, "
                    f"{requests} requests per endpoint and size in {args.rounds} rounds",
                    flush=True,
                )
                result["api"] = measure_api(server, args.sizes, requests, args.rounds, run)
        except BenchError as exc:
            print(f"bench_queues: {exc}", file=sys.stderr)
            return 1
    result["machine"]["load_average_after"] = os.getloadavg()
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    if args.store:
        largest = result["sizes"][str(max(args.sizes))]
        worst = max(largest["client"][op]["p99_ms"] for op in OPERATIONS if op != "ping")
        result["target"] = {"p99_ms_under": TARGET_P99_MS, "worst_p99_ms": worst}
        result["pass"] = worst < TARGET_P99_MS
    if args.api:
        page = result["api"]["sizes"][str(max(args.sizes))][QUEUE_PAGE]["p99_ms"]
        result["api"]["target"] = {"p99_ms_under": API_TARGET_P99_MS, "queue_page_p99_ms": page}
        result["api"]["pass"] = bool(page < API_TARGET_P99_MS)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    if args.store:
        print()
        print(table(result["sizes"]))
        print()
        print(growth(result["sizes"]))
        print("\nRedis's own time per command, µs p50 / p99 (SLOWLOG):\n")
        print(redis_table(result["sizes"]))
        verdict = "PASS" if result["pass"] else "FAIL"
        print(
            f"\n{verdict}: worst p99 with {max(args.sizes):,} waiting is {worst:.3f} ms "
            f"(target < {TARGET_P99_MS:g} ms)"
        )
    if args.api:
        print_api(result["api"])
    print(f"wrote {args.output} ({result['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
