"""Benchmark webhook steps (issue #3): flowpbx's Spanish menu against a bare Starlette endpoint.

One run starts a private redis-server (tests/servers.py) and two servers under identical uvicorn
settings (one worker, uvloop + httptools, log level warning, no access log; see
benchmarks/webhook_server.py):

- flowpbx: `build_app(Settings.from_env())` on flows/seguros.yaml with Redis call state and
  signature checking on, so each webhook is parsed, verified, loaded from Redis, stepped, saved
  back (a compare-and-set script) and answered with rendered TwiML;
- baseline: one POST route answering a fixed TwiML document of the same size.

A separate load-generator process (benchmarks/loadgen.py) plays distinct calls over keep-alive
connections, signing every webhook as Twilio does; against flowpbx it follows the action URLs of
each reply (incoming -> menu digits -> dial no-answer -> voicemail -> hangup), and sends the same
webhooks, with the same bodies, to the baseline. With `taskset` (util-linux) and two or more cores,
both servers run on one core and the load generator (and Redis, by default) on another.

Each round measures, for both servers in alternating order, throughput with 32 connections and
latency with 4; the medians over the rounds are compared. The machines are noisy, so only the
ratios within one run count: flowpbx must reach at least 60% of the baseline's requests per
second at 32 connections, and its p99 latency at 4 connections must stay within 3x the baseline's.

Run it with `make bench` or `.venv/bin/python benchmarks/bench_webhooks.py` (about 2 minutes).
It prints a Markdown table and writes benchmarks/results/webhooks.json. It exits 0 whether or not
the targets are met, and 1 when a request failed (non-200, not TwiML, an apology) or a server
could not start. `--profile FILE` instead runs flowpbx alone under cProfile at 32 connections and
prints where its time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import pstats
import secrets
import shutil
import signal
import socket
import statistics
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
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import RedisServer, redis_server  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "webhooks.json"
PYTHON = sys.executable
LOADGEN_SCRIPT = ROOT / "benchmarks" / "loadgen.py"
HOST = "127.0.0.1"
THROUGHPUT_CONNECTIONS = 32
LATENCY_CONNECTIONS = 4
TARGET_THROUGHPUT_RATIO = 0.60
TARGET_P99_RATIO = 3.0
ROUNDS = 3
WARMUP_S = 2.0
THROUGHPUT_S = 8.0
LATENCY_WARMUP_S = 1.0
LATENCY_S = 5.0
MAX_RATE = 10_000.0
"""Requests per second the pool of pre-generated calls of each load-generator run is sized for."""
STEPS_PER_CALL = {"open": 4, "closed": 2}
"""The fewest webhooks a call of each branch sends (incoming, menu, dial, voicemail)."""
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CLIENT_BOUND = 0.85
"""A load generator busier than this share of its core may be what limits the baseline."""
PACKAGES = ("starlette", "uvicorn", "uvloop", "httptools", "redis", "hiredis", "twilio")


class BenchError(Exception):
    """A server did not start or a probe failed: no figures to report."""


@dataclass
class Server:
    """A server subprocess in its own session, with its output in a log file."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    stop_timeout: ClassVar[float] = STOP_TIMEOUT

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, limit: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-limit:]
        return ""

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=self.stop_timeout)


@dataclass(frozen=True)
class Pinning:
    """Which core runs what; empty when taskset or a second core is missing."""

    taskset: str | None
    server_core: int | None
    client_core: int | None
    redis_core: int | None

    def prefix(self, core: int | None) -> list[str]:
        if self.taskset is None or core is None:
            return []
        return [self.taskset, "-c", str(core)]

    def describe(self) -> str:
        if self.taskset is None:
            return "not pinned (taskset or a second core is missing)"
        return (
            f"servers on core {self.server_core}, load generator on core {self.client_core}, "
            f"redis-server on core {self.redis_core} (taskset)"
        )


def choose_pinning(redis_with: str) -> Pinning:
    taskset = shutil.which("taskset")
    cores = sorted(os.sched_getaffinity(0))
    if taskset is None or len(cores) < 2:
        return Pinning(None, None, None, None)
    server, client = cores[0], cores[1]
    return Pinning(taskset, server, client, server if redis_with == "server" else client)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def redis_process_id(redis: RedisServer) -> int:
    with socket.create_connection((redis.host, redis.port), timeout=5.0) as sock:
        sock.sendall(b"INFO server\r\n")
        data = b""
        while b"process_id:" not in data or not data.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("process_id:"):
            return int(line.split(":", 1)[1])
    raise BenchError("redis-server did not report its process_id")


def _http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5.0) as reply:
            status: int = reply.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def start_server(
    name: str,
    env: dict[str, str],
    pinning: Pinning,
    workdir: Path,
    args: Sequence[str] = (),
    *,
    kind: str | None = None,
    root: Path = ROOT,
) -> Server:
    """Start `root`'s webhook_server.py `kind` (flowpbx or baseline; default `name`) on a free
    port; `root` is another checkout for the engine measured against (--versus)."""
    port = free_port()
    log = workdir / f"{name}.log"
    env = dict(env, PUBLIC_BASE_URL=f"http://{HOST}:{port}")
    command = [
        *pinning.prefix(pinning.server_core),
        PYTHON,
        str(root / "benchmarks" / "webhook_server.py"),
        kind or name,
        "--port",
        str(port),
        *args,
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(name, port, proc, log)


def wait_ready(server: Server, probe_url: str, method_post: bool) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(
                f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}"
            )
        with contextlib.suppress(OSError):
            if _http(probe_url, b"" if method_post else None) == 200:
                return
        time.sleep(0.1)
    raise BenchError(
        f"{server.name} did not answer within {START_TIMEOUT:.0f}s:\n{server.log_tail()}"
    )


def probe_flowpbx(server: Server, token: str) -> dict[str, Any]:
    """One signed incoming call: the branch the flow takes now; and a bad signature is refused."""
    url = server.base + "/api/calls/incoming"
    params = {
        "CallSid": "CA" + secrets.token_hex(16),
        "From": "+34600000000",
        "To": "+34912345678",
        "AccountSid": "AC" + "0" * 32,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }
    body = urlencode(params).encode()
    signature = str(RequestValidator(token).compute_signature(url, params))
    request = urllib.request.Request(url, data=body, headers={"X-Twilio-Signature": signature})
    with urllib.request.urlopen(request, timeout=5.0) as reply:
        twiml = reply.read().decode()
    if "<Gather" in twiml:
        branch = "open"
    elif "<Record" in twiml:
        branch = "closed"
    else:
        raise BenchError(f"unexpected answer to a signed incoming call:\n{twiml}")
    params["CallSid"] = "CA" + secrets.token_hex(16)
    forged = _http(url, urlencode(params).encode(), {"X-Twilio-Signature": signature})
    if forged != 403:
        raise BenchError(f"a webhook with a wrong signature got {forged}, expected 403")
    return {"branch": branch, "forged_signature_status": forged}


@dataclass
class Bench:
    """One benchmark run: the servers, the pinning and every load-generator result."""

    token: str
    pinning: Pinning
    branch: str
    watch: dict[str, dict[str, int]]
    runs: list[dict[str, Any]] = field(default_factory=list)
    tag: str = field(default_factory=lambda: secrets.token_hex(2))

    def load(
        self, server: Server, connections: int, warmup: float, duration: float
    ) -> dict[str, Any]:
        """Run the load generator against `server`; flowpbx is followed, the baseline scripted."""
        is_engine = server.name in ("flowpbx", "versus")
        mode, path = ("follow", "/api/calls/incoming") if is_engine else ("script", "/twiml")
        spec = {
            "base": server.base,
            "mode": mode,
            "path": path,
            "branch": self.branch,
            "token": self.token,
            "connections": connections,
            "warmup": warmup,
            "duration": duration,
            "sid_prefix": f"{self.tag}{len(self.runs):04x}",
            "calls": int(MAX_RATE * (warmup + duration) / STEPS_PER_CALL[self.branch]) + 500,
            "seed": len(self.runs) + 1,
            "watch": self.watch[server.name],
        }
        command = [
            *self.pinning.prefix(self.pinning.client_core),
            PYTHON,
            str(LOADGEN_SCRIPT),
            json.dumps(spec),
        ]
        timeout = warmup + duration + 60
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise BenchError(f"load generator failed ({done.returncode}):\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout)
        result["server"] = server.name
        self.runs.append(result)
        return result


def failures(run: dict[str, Any]) -> int:
    """Requests that went wrong in one load-generator run (all must be zero)."""
    bad_status = sum(n for status, n in run["statuses"].items() if status != "200")
    return int(
        bad_status
        + run["not_twiml"]
        + run["apologies"]
        + sum(run["errors"].values())
        + (run["samples_total"] - run["samples_xml_ok"])
        + int(run["pool_exhausted"])
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = [n for n in ("flowpbx", "versus", "baseline") if any(r["server"] == n for r in runs)]
    for name in names:
        for conns in (THROUGHPUT_CONNECTIONS, LATENCY_CONNECTIONS):
            mine = [r for r in runs if r["server"] == name and r["connections"] == conns]
            out[f"{name}@{conns}"] = {
                "server": name,
                "connections": conns,
                "rounds": len(mine),
                "rps": median([r["rps"] for r in mine]),
                "p50_ms": median([r["p50_ms"] for r in mine]),
                "p99_ms": median([r["p99_ms"] for r in mine]),
                "server_cpu": median([r["cpu_share"].get("server", 0.0) for r in mine]),
                "redis_cpu": median([r["cpu_share"].get("redis", 0.0) for r in mine]),
                "client_cpu": median([r["client_cpu_share"] for r in mine]),
                "client_cpu_max": max((r["client_cpu_share"] for r in mine), default=0.0),
                "requests": sum(r["requests"] for r in mine),
                "failures": sum(failures(r) for r in mine),
                "routes": _sum_counts([r["routes"] for r in mine]),
                "rps_rounds": [round(r["rps"], 1) for r in mine],
                "p99_ms_rounds": [round(r["p99_ms"], 3) for r in mine],
            }
    return out


def _sum_counts(counts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for count in counts:
        for key, n in count.items():
            total[key] = total.get(key, 0) + n
    return dict(sorted(total.items()))


def ratios(summary: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    t, lat = THROUGHPUT_CONNECTIONS, LATENCY_CONNECTIONS
    flow_t, base_t = summary[f"flowpbx@{t}"], summary[f"baseline@{t}"]
    flow_l, base_l = summary[f"flowpbx@{lat}"], summary[f"baseline@{lat}"]
    throughput = flow_t["rps"] / base_t["rps"] if base_t["rps"] else 0.0
    p99 = flow_l["p99_ms"] / base_l["p99_ms"] if base_l["p99_ms"] else float("inf")

    def per_round(conns: int, key: str) -> list[float]:
        pairs = zip(
            (r[key] for r in runs if r["server"] == "flowpbx" and r["connections"] == conns),
            (r[key] for r in runs if r["server"] == "baseline" and r["connections"] == conns),
            strict=True,
        )
        return [round(a / b, 3) if b else 0.0 for a, b in pairs]

    def per_cpu(row: dict[str, Any]) -> float:
        return float(row["rps"] / row["server_cpu"]) if row["server_cpu"] else 0.0

    versus: dict[str, Any] = {}
    if f"versus@{t}" in summary:
        vs_t = summary[f"versus@{t}"]
        pairs = zip(
            (r["rps"] for r in runs if r["server"] == "flowpbx" and r["connections"] == t),
            (r["rps"] for r in runs if r["server"] == "versus" and r["connections"] == t),
            strict=True,
        )
        versus = {
            "versus_throughput_ratio": vs_t["rps"] / base_t["rps"] if base_t["rps"] else 0.0,
            "versus_requests_per_server_cpu_s": per_cpu(vs_t),
            "flowpbx_over_versus_rounds": [round(a / b, 3) if b else 0.0 for a, b in pairs],
        }
    return versus | {
        "throughput_ratio": throughput,
        "throughput_target": TARGET_THROUGHPUT_RATIO,
        "throughput_pass": throughput >= TARGET_THROUGHPUT_RATIO,
        "throughput_ratio_rounds": per_round(t, "rps"),
        "p99_ratio": p99,
        "p99_target": TARGET_P99_RATIO,
        "p99_pass": p99 <= TARGET_P99_RATIO,
        "p99_ratio_rounds": per_round(lat, "p99_ms"),
        "p50_ratio": flow_l["p50_ms"] / base_l["p50_ms"] if base_l["p50_ms"] else 0.0,
        "flowpbx_requests_per_server_cpu_s": per_cpu(flow_t),
        "baseline_requests_per_server_cpu_s": per_cpu(base_t),
        "cpu_efficiency_ratio": per_cpu(flow_t) / per_cpu(base_t) if per_cpu(base_t) else 0.0,
    }


def table(summary: dict[str, Any], result: dict[str, Any]) -> str:
    lines = [
        "| server | connections | req/s | p50 ms | p99 ms | server CPU | Redis CPU "
        "| client CPU | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary.values():
        lines.append(
            f"| {row['server']} | {row['connections']} | {row['rps']:,.0f} | "
            f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['server_cpu']:.0%} | "
            f"{row['redis_cpu']:.0%} | {row['client_cpu']:.0%} | {row['failures']} |"
        )
    r = result["ratios"]
    verdict = {True: "PASS", False: "FAIL"}
    lines += [
        "",
        f"- throughput at {THROUGHPUT_CONNECTIONS} connections, flowpbx/baseline: "
        f"**{r['throughput_ratio']:.2f}** (target >= {TARGET_THROUGHPUT_RATIO:.2f}): "
        f"**{verdict[r['throughput_pass']]}**; per round {r['throughput_ratio_rounds']}",
        f"- p99 latency at {LATENCY_CONNECTIONS} connections, flowpbx/baseline: "
        f"**{r['p99_ratio']:.2f}** (target <= {TARGET_P99_RATIO:.1f}): "
        f"**{verdict[r['p99_pass']]}**; per round {r['p99_ratio_rounds']}",
        f"- p50 latency at {LATENCY_CONNECTIONS} connections, flowpbx/baseline: "
        f"{r['p50_ratio']:.1f}",
        f"- requests per second of server CPU at {THROUGHPUT_CONNECTIONS} connections: flowpbx "
        f"{r['flowpbx_requests_per_server_cpu_s']:,.0f}, baseline "
        f"{r['baseline_requests_per_server_cpu_s']:,.0f} "
        f"(ratio {r['cpu_efficiency_ratio']:.2f})",
    ]
    if "versus_throughput_ratio" in r:
        lines += [
            f"- versus (the other checkout), throughput/baseline: "
            f"**{r['versus_throughput_ratio']:.2f}**; requests per second of server CPU "
            f"{r['versus_requests_per_server_cpu_s']:,.0f}",
            f"- flowpbx/versus throughput, per round: {r['flowpbx_over_versus_rounds']}",
        ]
    return "\n".join(lines)


@contextlib.contextmanager
def running_servers(
    redis: RedisServer,
    token: str,
    hours: str,
    pinning: Pinning,
    profile: Path | None,
    *,
    versus: Path | None = None,
) -> Iterator[tuple[Server, Server | None, Server | None]]:
    workdir = Path(tempfile.mkdtemp(prefix="flowpbx-bench-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLOWPBX_", "TWILIO_", "REDIS_", "DB_", "PUBLIC_BASE_URL"))
    }
    env.update(
        REDIS_HOST=redis.host,
        REDIS_PORT=str(redis.port),
        TWILIO_AUTH_TOKEN=token,
        FLOWPBX_FLOWS_DIR=str(ROOT / "flows"),
        FLOWPBX_HOURS_OVERRIDE="" if hours == "auto" else hours,
        LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")])),
    )
    servers: list[Server] = []
    try:
        extra = ["--profile", str(profile)] if profile else []
        flowpbx = start_server("flowpbx", env, pinning, workdir, extra)
        servers.append(flowpbx)
        baseline = None
        if profile is None:
            baseline = start_server("baseline", env, pinning, workdir)
            servers.append(baseline)
        other = None
        if versus is not None:
            paths = [str(versus / "src"), env.get("PYTHONPATH", "")]
            versus_env = dict(env, PYTHONPATH=os.pathsep.join(filter(None, paths)))
            other = start_server(
                "versus", versus_env, pinning, workdir, kind="flowpbx", root=versus
            )
            servers.append(other)
        wait_ready(flowpbx, flowpbx.base + "/health", method_post=False)
        if baseline is not None:
            wait_ready(baseline, baseline.base + "/twiml", method_post=True)
        if other is not None:
            wait_ready(other, other.base + "/health", method_post=False)
        yield flowpbx, baseline, other
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def server_log_problems(server: Server) -> list[str]:
    return [
        line
        for line in server.log_tail(200_000).splitlines()
        if " ERROR " in line or line.startswith("Traceback")
    ][:20]


def benchmark(args: argparse.Namespace) -> int:
    token = secrets.token_hex(16)
    pinning = choose_pinning(args.redis_core)
    print(f"pinning: {pinning.describe()}", flush=True)
    load_before = os.getloadavg()
    started = time.monotonic()
    with redis_server() as redis:
        redis_pid = redis_process_id(redis)
        if pinning.taskset is not None:
            subprocess.run(
                [pinning.taskset, "-a", "-p", "-c", str(pinning.redis_core), str(redis_pid)],
                check=True,
                capture_output=True,
            )
        with running_servers(redis, token, args.hours, pinning, None, versus=args.versus) as (
            flowpbx,
            baseline,
            versus,
        ):
            assert baseline is not None
            probe = probe_flowpbx(flowpbx, token)
            print(
                f"flowpbx answers the {probe['branch']} branch; forged signature -> 403", flush=True
            )
            watch = {
                "flowpbx": {"server": flowpbx.proc.pid, "redis": redis_pid},
                "baseline": {"server": baseline.proc.pid, "redis": redis_pid},
            }
            servers = [flowpbx, baseline]
            if versus is not None:
                probe_flowpbx(versus, token)
                watch["versus"] = {"server": versus.proc.pid, "redis": redis_pid}
                servers = [flowpbx, versus, baseline]
            bench = Bench(token, pinning, probe["branch"], watch)
            for round_no in range(args.rounds):
                shift = round_no % len(servers)
                order = servers[shift:] + servers[:shift]
                for server in order:
                    for conns, warm, dur in (
                        (THROUGHPUT_CONNECTIONS, args.warmup, args.duration),
                        (LATENCY_CONNECTIONS, LATENCY_WARMUP_S, args.latency_duration),
                    ):
                        run = bench.load(server, conns, warm, dur)
                        print(
                            f"round {round_no + 1} {server.name:8} {conns:2} conns: "
                            f"{run['rps']:8.0f} req/s  p50 {run['p50_ms']:6.2f} ms  "
                            f"p99 {run['p99_ms']:6.2f} ms  server CPU "
                            f"{run['cpu_share'].get('server', 0):.0%}  client CPU "
                            f"{run['client_cpu_share']:.0%}  failed {failures(run)}",
                            flush=True,
                        )
            log_problems = {s.name: server_log_problems(s) for s in servers}
    summary = summarize(bench.runs)
    result: dict[str, Any] = {
        "benchmark": "webhook steps (issue #3)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "git_commit": git_commit(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "packages": {p: _version(p) for p in PACKAGES},
        },
        "settings": {
            "uvicorn": "1 worker, loop=uvloop, http=httptools, log_level=warning, "
            "access_log=False, proxy_headers=False",
            "pinning": pinning.describe(),
            "rounds": args.rounds,
            "throughput": {
                "connections": THROUGHPUT_CONNECTIONS,
                "warmup_s": args.warmup,
                "duration_s": args.duration,
            },
            "latency": {
                "connections": LATENCY_CONNECTIONS,
                "warmup_s": LATENCY_WARMUP_S,
                "duration_s": args.latency_duration,
            },
            "hours_override": args.hours,
            "flowpbx_branch": bench.branch,
            "flow": "flows/seguros.yaml",
        },
        "probe": probe,
        "summary": summary,
        "server_log_problems": log_problems,
        "runs": bench.runs,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    result["ratios"] = ratios(summary, bench.runs)
    failed = sum(row["failures"] for row in summary.values()) + sum(
        len(v) for v in log_problems.values()
    )
    client_max = max(row["client_cpu_max"] for row in summary.values())
    result["client_bound_warning"] = client_max > CLIENT_BOUND
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(f"Webhook steps, {bench.branch} branch of flows/seguros.yaml; {pinning.describe()}")
    print(f"medians of {args.rounds} rounds; load average {load_before[0]:.2f} before the run")
    print()
    print(table(summary, result))
    if result["client_bound_warning"]:
        print(f"\nWARNING: the load generator used up to {client_max:.0%} of its core")
    for name, problems in log_problems.items():
        for line in problems:
            print(f"{name} log: {line}")
    print(f"\nwrote {args.output}")
    return 1 if failed else 0


def git_commit() -> str:
    """The checked-out commit, with '+dirty' when the work tree has changes."""
    try:
        head, dirty = (
            subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=False)
            for cmd in (["rev-parse", "--short", "HEAD"], ["status", "--porcelain"])
        )
    except OSError:
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def profile(args: argparse.Namespace) -> int:
    """flowpbx alone under cProfile at 32 connections; print the top costs."""
    token = secrets.token_hex(16)
    pinning = choose_pinning(args.redis_core)
    stats_file: Path = args.profile.resolve()
    with (
        redis_server() as redis,
        running_servers(redis, token, args.hours, pinning, stats_file) as (flowpbx, _, _),
    ):
        branch = probe_flowpbx(flowpbx, token)["branch"]
        bench = Bench(token, pinning, branch, {"flowpbx": {"server": flowpbx.proc.pid}})
        run = bench.load(flowpbx, THROUGHPUT_CONNECTIONS, 1.0, args.duration)
    print(f"under cProfile: {run['rps']:.0f} req/s, failed {failures(run)}")
    stats = pstats.Stats(str(stats_file))
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--warmup", type=float, default=WARMUP_S, help="seconds, 32 connections")
    parser.add_argument(
        "--duration", type=float, default=THROUGHPUT_S, help="seconds measured at 32 connections"
    )
    parser.add_argument(
        "--latency-duration", type=float, default=LATENCY_S, help="seconds measured at 4"
    )
    parser.add_argument(
        "--hours",
        choices=("open", "closed", "auto"),
        default="open",
        help="FLOWPBX_HOURS_OVERRIDE for the run; auto follows the clock (default: open, "
        "so that calls go through the menu whatever the time)",
    )
    parser.add_argument(
        "--redis-core",
        choices=("client", "server"),
        default="client",
        help="the core redis-server shares (default: the load generator's)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--profile", type=Path, default=None, help="cProfile flowpbx instead")
    parser.add_argument(
        "--versus",
        type=Path,
        default=None,
        metavar="CHECKOUT",
        help="also measure the engine of another checkout (e.g. a git worktree of an older "
        "commit) in the same rounds, as server 'versus'",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 10 or not 0 < args.duration <= 60:
        parser.error("--rounds must be 1-10 and --duration at most 60 s")
    if not 0 < args.latency_duration <= 60 or not 0 <= args.warmup <= 30:
        parser.error("--latency-duration must be at most 60 s and --warmup at most 30 s")

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    try:
        return profile(args) if args.profile is not None else benchmark(args)
    except BenchError as exc:
        print(f"bench_webhooks: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
