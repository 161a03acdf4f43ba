"""Benchmark the Redis queue store (issue #9): one queue's operations with 100 to 10,000 callers
waiting, against a Redis PING in the same run.

A private redis-server (tests/servers.py; no persistence) holds one queue of N callers (N = 100,
1,000, 10,000), all of priority 0, joined one millisecond apart. `RedisQueueStore` (the store
the service uses, on the same client settings) then runs, one operation at a time over one
connection, interleaved rounds of:

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

Run: `.venv/bin/python benchmarks/bench_queues.py` (about half a minute; `--quick` a few
seconds). Prints Markdown tables, writes benchmarks/results/queues.json, exits 0 whether the
target is met or not (1 if an operation did not do what it should).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import importlib.metadata
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from flowpbx.queues.model import JoinOutcome, Waiter  # noqa: E402
from flowpbx.queues.redis_store import SCRIPTS, RedisQueueStore  # noqa: E402
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


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


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


def _git_commit() -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
        check=False,
    ).stdout.strip()  # fmt: skip
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    return (head or "unknown") + ("+dirty" if dirty else "")


def _runner() -> tuple[Callable[[Any], Any], str]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run, "asyncio"
    return uvloop.run, f"uvloop {importlib.metadata.version('uvloop')}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_OPS} operations per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--ops", type=int, default=None, help=f"per operation and size ({OPS})")
    parser.add_argument("--passes", type=int, default=None, help=f"over all sizes ({PASSES})")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    ops = args.ops or (QUICK_OPS if args.quick else OPS)
    passes = args.passes or (1 if args.quick else PASSES)
    run, loop = _runner()

    started = time.monotonic()
    result: dict[str, Any] = {
        "benchmark": "queue store (issue #9)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "git_commit": _git_commit(),
            "load_average_before": os.getloadavg(),
            "event_loop": loop,
        },
        "settings": {"sizes": args.sizes, "ops": ops, "passes": passes, "warmup": WARMUP},
    }
    with redis_server() as server:
        result["machine"]["pinning"] = pin(server)
        version = subprocess.run(
            [server.binary, "--version"], capture_output=True, text=True, check=False
        ).stdout.split()
        result["machine"]["redis"] = next((v[2:] for v in version if v.startswith("v=")), "?")
        print(
            f"queue store: redis-server {result['machine']['redis']}, {loop}, "
            f"{result['machine']['pinning']}; {passes} passes of {ops} operations per size",
            flush=True,
        )
        try:
            result["sizes"] = run(measure(server.url, args.sizes, ops, passes))
        except BenchError as exc:
            print(f"bench_queues: {exc}", file=sys.stderr)
            return 1
    result["machine"]["load_average_after"] = os.getloadavg()
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    largest = result["sizes"][str(max(args.sizes))]
    worst = max(largest["client"][op]["p99_ms"] for op in OPERATIONS if op != "ping")
    result["target"] = {"p99_ms_under": TARGET_P99_MS, "worst_p99_ms": worst}
    result["pass"] = worst < TARGET_P99_MS
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

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
    print(f"wrote {args.output} ({result['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
