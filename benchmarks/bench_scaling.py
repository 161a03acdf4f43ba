"""Benchmark several processes (issue #11): `flowpbx serve --workers 2` against `--workers 1`.

One run starts a private redis-server (tests/servers.py) and two real `flowpbx serve`
processes, exactly as an operator starts them (the `flowpbx` command of this .venv):

- `--workers 1`, the baseline: one process, as `make run` (uvicorn in the process itself);
- `--workers 2`: a supervisor and two worker processes sharing its port.

Both use the same redis-server (databases 0 and 1, so that neither sees the other's calls and
history streams), the shipped flows/seguros.yaml, signature checking on, the queue scheduler,
the flow watcher and the history writer running as deployed, each with its own SQLite file
(the default database: with two workers, two history writers share it).

The load generator of the webhook benchmark (benchmarks/loadgen.py, its own process) plays
distinct calls of the Spanish menu over a fixed number of keep-alive connections (32 by
default), signing every webhook as Twilio does and following the action URLs of each reply
(incoming -> menu digits -> dial no-answer -> voicemail -> hangup). The kernel hands each new
connection to whichever worker accepts it first. Each round measures both servers, in
alternating order: requests per second and p50/p99 latency (write of the request to the last
byte of the reply) over the window, the CPU time each worker, the supervisor, Redis and the
load generator used in it (from /proc), and afterwards how long the history writers took to
store what the window left waiting. Medians over the rounds are compared: 2 workers / 1.

Nothing is pinned to a core: the point is to let two workers use two cores. On a machine whose
cores are shared with the load generator and Redis (these machines have two), the ratio says
what a second process gains when it competes with them, not what it gains on a machine of its
own; the CPU columns show where the cores went.

Run it with `.venv/bin/python benchmarks/bench_scaling.py` (about 1.5 minutes; `--quick`, a
smoke run of a few seconds per server, is what tests/test_bench_scaling.py runs). It prints a
Markdown table and writes benchmarks/results/scaling.json. It exits 0 whatever the ratio, and 1
when a request failed (non-200, not TwiML, an apology), a server could not start, or a server
logged an error.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_webhooks import (  # noqa: E402
    BenchError,
    Server,
    failures,
    free_port,
    git_commit,
    median,
    redis_process_id,
)
from servers import RedisServer, redis_server  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "scaling.json"
PYTHON = sys.executable
FLOWPBX = Path(sys.executable).with_name("flowpbx")
LOADGEN = ROOT / "benchmarks" / "loadgen.py"
HOST = "127.0.0.1"
WORKERS = (1, 2)
CONNECTIONS = 32
ROUNDS = 3
WARMUP_S = 2.0
DURATION_S = 8.0
QUICK = {"rounds": 1, "warmup": 0.5, "duration": 1.5}
MAX_RATE = 10_000.0
"""Requests per second each load-generator run's pool of calls is sized for."""
STEPS_PER_CALL = 4
"""The fewest webhooks a call of the open branch sends."""
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
DRAIN_TIMEOUT = 120.0
TOKEN = secrets.token_hex(16)


@dataclass
class Serve(Server):
    """A `flowpbx serve --workers N` process, its workers (process ids) and its log; stopped
    by SIGTERM (the supervisor stops its workers), SIGKILL of the group if it hangs."""

    workers: int = 1
    pids: list[int] = field(default_factory=list)
    """The processes that answer: the server itself with one worker, else its workers."""
    stop_timeout: ClassVar[float] = STOP_TIMEOUT

    def problems(self) -> list[str]:
        text = self.log_tail(1_000_000)
        return [
            line[:300]
            for line in text.splitlines()
            if '"level": "error"' in line or "Traceback" in line or " ERROR " in line
        ][:20]


def _health(serve: Serve) -> dict[str, Any]:
    """GET /health on a new connection (so on whichever worker takes it)."""
    try:
        with urllib.request.urlopen(serve.base + "/health", timeout=5.0) as answer:
            body = answer.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    health: dict[str, Any] = json.loads(body)
    return health


def start(workers: int, redis: RedisServer, db_index: int, workdir: Path) -> Serve:
    """`flowpbx serve --workers N` on a free port, in its own folder (SQLite file, pid file)."""
    port = free_port()
    folder = workdir / f"workers-{workers}"
    folder.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLOWPBX_", "TWILIO_", "REDIS_", "DB_", "PROMETHEUS_"))
        and k not in ("DATABASE_URL", "PUBLIC_BASE_URL", "PORT", "HOST", "LOG_LEVEL")
    }
    env.update(
        REDIS_HOST=redis.host,
        REDIS_PORT=str(redis.port),
        REDIS_DB=str(db_index),
        TWILIO_AUTH_TOKEN=TOKEN,
        PUBLIC_BASE_URL=f"http://{HOST}:{port}",
        FLOWPBX_FLOWS_DIR=str(ROOT / "flows"),
        FLOWPBX_HOURS_OVERRIDE="open",
        LOG_LEVEL="WARNING",
    )
    log = folder / "serve.log"
    command = [str(FLOWPBX), "serve", "--host", HOST, "--port", str(port)]
    command += ["--workers", str(workers)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    name = f"{workers} worker{'s' if workers > 1 else ''}"
    return Serve(name, port, proc, log, workers=workers)


def wait_ready(serve: Serve) -> None:
    """Until every worker has answered /health (each names its process)."""
    deadline = time.monotonic() + START_TIMEOUT
    seen: set[int] = set()
    while len(seen) < serve.workers:
        if serve.proc.poll() is not None:
            raise BenchError(
                f"{serve.name} exited with {serve.proc.returncode}:\n{serve.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise BenchError(f"{serve.name}: only {len(seen)} answered:\n{serve.log_tail()}")
        with contextlib.suppress(OSError, ValueError):
            health = _health(serve)
            if health.get("status") == "ok" and health.get("workers") == serve.workers:
                seen.add(int(health["pid"]))
                continue
        time.sleep(0.1)
    serve.pids = sorted(seen)
    if serve.workers == 1 and serve.pids != [serve.proc.pid]:
        raise BenchError(f"one worker, but /health names {serve.pids}, not {serve.proc.pid}")


def drain(serve: Serve) -> tuple[float, int]:
    """Seconds until the history writers have stored what waits; and how much waited."""
    started = time.monotonic()
    first: int | None = None
    while time.monotonic() - started < DRAIN_TIMEOUT:
        backlog = _health(serve)["history"]["backlog"]
        first = backlog if first is None else first
        if backlog == 0:
            return time.monotonic() - started, first
        time.sleep(0.1)
    raise BenchError(f"{serve.name}: call history still waits after {DRAIN_TIMEOUT:.0f} s")


@dataclass
class Bench:
    redis_pid: int
    connections: int
    warmup: float
    duration: float
    runs: list[dict[str, Any]] = field(default_factory=list)
    tag: str = field(default_factory=lambda: secrets.token_hex(2))

    def load(self, serve: Serve) -> dict[str, Any]:
        watch = {f"worker{n}": pid for n, pid in enumerate(serve.pids, 1)}
        if serve.workers > 1:
            watch["supervisor"] = serve.proc.pid
        watch["redis"] = self.redis_pid
        spec = {
            "base": serve.base,
            "mode": "follow",
            "path": "/api/calls/incoming",
            "token": TOKEN,
            "connections": self.connections,
            "warmup": self.warmup,
            "duration": self.duration,
            "sid_prefix": f"{self.tag}{len(self.runs):04x}",
            "calls": int(MAX_RATE * (self.warmup + self.duration) / STEPS_PER_CALL) + 500,
            "seed": len(self.runs) + 1,
            "watch": watch,
        }
        done = subprocess.run(
            [PYTHON, str(LOADGEN), json.dumps(spec)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=self.warmup + self.duration + 60,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"load generator failed ({done.returncode}):\n{done.stderr[-3000:]}")
        run: dict[str, Any] = json.loads(done.stdout)
        run.pop("samples", None)
        shares = run["cpu_share"]
        run["workers"] = serve.workers
        run["workers_cpu"] = sum(v for k, v in shares.items() if k.startswith("worker"))
        run["worker_cpu_each"] = [shares[k] for k in sorted(shares) if k.startswith("worker")]
        run["supervisor_cpu"] = shares.get("supervisor", 0.0)
        run["redis_cpu"] = shares["redis"]
        run["drain_s"], run["backlog_after"] = drain(serve)
        run["failures"] = failures(run)
        self.runs.append(run)
        return run


def split(run: dict[str, Any]) -> str:
    """How the workers shared the work: each one's CPU, e.g. '67% + 64%'."""
    return " + ".join(f"{share:.0%}" for share in run["worker_cpu_each"])


def balance(run: dict[str, Any]) -> float:
    """The least busy worker's CPU over the busiest's: 1.0 when the kernel gave them the
    connections evenly, near 0 when one worker got nearly all."""
    shares = run["worker_cpu_each"]
    return min(shares) / max(shares) if max(shares) else 0.0


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for workers in WORKERS:
        mine = [r for r in runs if r["workers"] == workers]
        rows[str(workers)] = {
            "workers": workers,
            "rounds": len(mine),
            "rps": median([r["rps"] for r in mine]),
            "p50_ms": median([r["p50_ms"] for r in mine]),
            "p99_ms": median([r["p99_ms"] for r in mine]),
            "workers_cpu": median([r["workers_cpu"] for r in mine]),
            "worker_cpu_each": [
                round(median([r["worker_cpu_each"][n] for r in mine]), 3) for n in range(workers)
            ],
            "supervisor_cpu": median([r["supervisor_cpu"] for r in mine]),
            "redis_cpu": median([r["redis_cpu"] for r in mine]),
            "client_cpu": median([r["client_cpu_share"] for r in mine]),
            "drain_s": median([r["drain_s"] for r in mine]),
            "backlog_after": median([r["backlog_after"] for r in mine]),
            "requests": sum(r["requests"] for r in mine),
            "failures": sum(r["failures"] for r in mine),
            "rps_rounds": [round(r["rps"], 1) for r in mine],
            "split_rounds": [split(r) for r in mine],
            "balance_rounds": [round(balance(r), 2) for r in mine],
        }
    one, two = rows["1"], rows["2"]
    pairs = zip(
        (r["rps"] for r in runs if r["workers"] == 2),
        (r["rps"] for r in runs if r["workers"] == 1),
        strict=True,
    )
    total_cpu = {
        key: row["workers_cpu"] + row["supervisor_cpu"] + row["redis_cpu"] + row["client_cpu"]
        for key, row in rows.items()
    }
    return {
        "rows": rows,
        "throughput_ratio": two["rps"] / one["rps"] if one["rps"] else 0.0,
        "throughput_ratio_rounds": [round(a / b, 3) if b else 0.0 for a, b in pairs],
        "p50_ratio": two["p50_ms"] / one["p50_ms"] if one["p50_ms"] else 0.0,
        "p99_ratio": two["p99_ms"] / one["p99_ms"] if one["p99_ms"] else 0.0,
        "requests_per_worker_cpu_s": {
            key: row["rps"] / row["workers_cpu"] if row["workers_cpu"] else 0.0
            for key, row in rows.items()
        },
        "cores_busy": total_cpu,
    }


def table(summary: dict[str, Any], connections: int) -> str:
    lines = [
        "| flowpbx serve | req/s | p50 ms | p99 ms | workers' CPU (each) | supervisor CPU "
        "| Redis CPU | load generator CPU | history drained in | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary["rows"].values():
        each = " + ".join(f"{c:.0%}" for c in row["worker_cpu_each"])
        lines.append(
            f"| `--workers {row['workers']}` | {row['rps']:,.0f} | {row['p50_ms']:.2f} | "
            f"{row['p99_ms']:.2f} | {row['workers_cpu']:.0%} ({each}) | "
            f"{row['supervisor_cpu']:.0%} | {row['redis_cpu']:.0%} | {row['client_cpu']:.0%} | "
            f"{row['drain_s']:.1f} s | {row['failures']} |"
        )
    per_cpu = summary["requests_per_worker_cpu_s"]
    lines += [
        "",
        f"- throughput at {connections} connections, 2 workers / 1: "
        f"**{summary['throughput_ratio']:.2f}**; per round {summary['throughput_ratio_rounds']}",
        f"- how the 2 workers shared the connections, CPU of each per round: "
        f"{', '.join(summary['rows']['2']['split_rounds'])}",
        f"- p50 latency, 2 workers / 1: {summary['p50_ratio']:.2f}; p99: "
        f"{summary['p99_ratio']:.2f}",
        f"- requests per second of worker CPU: 1 worker {per_cpu['1']:,.0f}, "
        f"2 workers {per_cpu['2']:,.0f}",
        f"- cores busy (workers + supervisor + Redis + load generator): "
        f"1 worker {summary['cores_busy']['1']:.2f}, 2 workers {summary['cores_busy']['2']:.2f} "
        f"of {os.cpu_count()}",
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def running(redis: RedisServer) -> Iterator[dict[int, Serve]]:
    workdir = Path(tempfile.mkdtemp(prefix="flowpbx-scaling-"))
    servers: dict[int, Serve] = {}
    try:
        for index, workers in enumerate(WORKERS):
            servers[workers] = start(workers, redis, index, workdir)
        for serve in servers.values():
            wait_ready(serve)
        yield servers
    finally:
        for serve in servers.values():
            serve.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def benchmark(args: argparse.Namespace) -> int:
    load_before = os.getloadavg()
    started = time.monotonic()
    with redis_server() as redis, running(redis) as servers:
        bench = Bench(redis_process_id(redis), args.connections, args.warmup, args.duration)
        order = [servers[w] for w in WORKERS]
        for round_no in range(args.rounds):
            for serve in order if round_no % 2 == 0 else order[::-1]:
                run = bench.load(serve)
                print(
                    f"round {round_no + 1} {serve.name:9}: {run['rps']:7.0f} req/s  "
                    f"p50 {run['p50_ms']:6.2f} ms  p99 {run['p99_ms']:6.2f} ms  workers CPU "
                    f"{run['workers_cpu']:.0%} ({split(run)})  Redis {run['redis_cpu']:.0%}  "
                    f"client {run['client_cpu_share']:.0%}  history drained in "
                    f"{run['drain_s']:.1f} s  "
                    f"failed {run['failures']}",
                    flush=True,
                )
        problems = {serve.name: serve.problems() for serve in servers.values()}
        workers_seen = {serve.name: serve.pids for serve in servers.values()}
    summary = summarize(bench.runs)
    result: dict[str, Any] = {
        "benchmark": "several processes (issue #11)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "git_commit": git_commit(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "settings": {
            "command": "flowpbx serve --workers N (uvicorn, uvloop, httptools, log level "
            "warning), SQLite history, Redis databases 0 and 1 of one redis-server",
            "pinning": "none",
            "rounds": args.rounds,
            "connections": args.connections,
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "flow": "flows/seguros.yaml, FLOWPBX_HOURS_OVERRIDE=open",
        },
        "workers_seen": workers_seen,
        "summary": summary,
        "server_log_problems": problems,
        "runs": bench.runs,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(
        f"Webhook steps of flows/seguros.yaml, {args.connections} connections, medians of "
        f"{args.rounds} round(s); {os.cpu_count()} cores shared by the servers, Redis and the "
        f"load generator (nothing pinned); load average {load_before[0]:.2f} before the run"
    )
    print()
    print(table(summary, args.connections))
    for name, lines in problems.items():
        for line in lines:
            print(f"{name} log: {line}")
    print(f"\nwrote {args.output}")
    failed = sum(row["failures"] for row in summary["rows"].values())
    return 1 if failed or any(problems.values()) else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 short round")
    parser.add_argument("--rounds", type=int, default=None, help=f"default {ROUNDS}")
    parser.add_argument("--warmup", type=float, default=None, help=f"seconds (default {WARMUP_S})")
    parser.add_argument(
        "--duration", type=float, default=None, help=f"seconds measured (default {DURATION_S})"
    )
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    defaults = (
        QUICK if args.quick else {"rounds": ROUNDS, "warmup": WARMUP_S, "duration": DURATION_S}
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not 1 <= args.rounds <= 10 or not 0 < args.duration <= 60 or not 0 <= args.warmup <= 30:
        parser.error("--rounds must be 1-10, --duration at most 60 s, --warmup at most 30 s")
    if not 1 <= args.connections <= 256:
        parser.error("--connections must be 1-256")

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    try:
        return benchmark(args)
    except BenchError as exc:
        print(f"bench_scaling: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
