"""Benchmark call history (issue #8): the history API over 10^4-10^6 calls, and the writer's cost.

Part 1, queries. A private PostgreSQL (tests/servers.py) is migrated and filled, in bulk with
`generate_series`, to 10^4, then 10^5, then 10^6 calls (the same tables grow; each size is
VACUUM ANALYZEd). The calls are spread over the 90 days before today, in business hours: 80%
inbound to three company numbers from a pool of 50,000 callers (a few call often), 20% placed;
85% completed, the rest busy, no-answer, failed or canceled; durations, prices (negative micro
USD), flow `seguros` with its menu choice, where the call left the flow and how it ended. About
30% of calls have a softphone party (1,000 identities, a few of them busy), every inbound call
has its `option_chosen` step at `menu_principal` (keys 1/2/3/4/9) and the `node_entered` that
followed, and 30% of all calls have a recording.

At each size the real app (uvicorn in a thread, as in bench_api.py, with an admin key) answers,
one request at a time over a keep-alive connection, in interleaved rounds:

- baseline: `GET /api/keys?limit=1`: the key check and one trivial indexed query;
- a softphone's history: `GET /api/calls/history?userId=<the busiest identity>&limit=50`;
- a filtered page: `?status=completed&direction=inbound&from=..&to=..&limit=50` (a week);
- a number's calls: `?number=<the most frequent caller>&limit=50`;
- the second page of all calls, through the first page's `nextCursor`;
- `GET /api/analytics?from=<first of last month>&to=<its last day>` (fewer requests).

It reports p50/p99 per endpoint, their ratio to the baseline's p50 and the growth of the p50
from the smallest to the largest size. The SQL each endpoint sends is captured from the
server's log (log_min_duration_statement=0 for one request) and run under
EXPLAIN (ANALYZE, BUFFERS); the plans are printed for any endpoint over its target, and all are
kept in the JSON. Targets: history pages p99 < 20 ms, analytics over a month < 1 s, at 10^6.

Part 2, the writer's cost. The webhook step benchmark (bench_webhooks.py's load generator and
servers), three flowpbx servers with the Redis store (a redis-server each) and PostgreSQL: the
history writer in the web process (the default), no writer (FLOWPBX_HISTORY_WRITER=false: the
reference) and a `flowpbx history-writer` process beside the web process on its core; measured
in alternating rounds (32 connections for req/s, 4 for p50/p99). After each window the
backlog (GET /health) is waited down to 0 before anything else runs, so that no window pays for
another's history; CPU per webhook counts that catch-up too. At the end the calls stored are
counted against the calls played. Target: the writer costs under 10% of the throughput.

Run: `.venv/bin/python benchmarks/bench_history.py` (about 6 minutes; `--quick` stops at
10^5 calls and runs two writer rounds). Prints Markdown tables, writes
benchmarks/results/history.json. Needs PostgreSQL and redis-server (scripts/install-servers).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_api  # noqa: E402
import bench_webhooks as bw  # noqa: E402
from flowpbx.db.database import Database  # noqa: E402
from flowpbx.db.migrate import upgrade  # noqa: E402
from flowpbx.settings import Settings  # noqa: E402
from servers import PostgresServer, RedisServer, postgres_server, redis_server  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "history.json"
SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
DAYS = 90
CALLERS = 50_000
IDENTITIES = 1_000
PAGE_TARGET_P99_MS = 20.0
ANALYTICS_TARGET_S = 1.0
WRITER_TARGET = 0.10
"""The writer may cost at most this share of throughput."""
DRAIN_TIMEOUT_S = 120.0
SETTINGS = Settings(twilio_auth_token="t" * 32, flows_dir=ROOT / "flows")
"""No Twilio account: the app asks Twilio for nothing (no prices for the generated calls)."""


# --------------------------------------------------------------------------- bulk data

# One batch of calls [lo, hi], generated in the database. `g` draws every random number a call
# needs once (random() after setseed(): the same data on every run); the derived columns
# follow in `c` and `d`. The calls start in the DAYS days before :end (midnight UTC today),
# between 07:00 and 19:00 UTC. Callers and identities are skewed (r * r): number 0 and
# identity 0 are the busiest.
BATCH_SQL = """
CREATE TEMP TABLE g ON COMMIT DROP AS
SELECT i,
       'CA' || md5('call' || i) AS sid,
       random() AS r_dir, random() AS r_status, random() AS r_dur, random() AS r_day,
       random() AS r_time, random() AS r_num, random() AS r_did, random() AS r_key,
       random() AS r_end, random() AS r_party, random() AS r_ident, random() AS r_rec,
       random() AS r_flow
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i;

CREATE TEMP TABLE c ON COMMIT DROP AS
SELECT g.*,
       started,
       CASE WHEN r_dir < 0.8 THEN 'inbound' ELSE 'outbound' END AS direction,
       '+34' || (600000000 + floor(%(callers)s * r_num * r_num))::bigint AS caller,
       '+3491234567' || (floor(r_did * 3) + 7)::int AS did,
       CASE WHEN r_status < 0.85 THEN 'completed'
            WHEN r_status < 0.89 THEN 'busy'
            WHEN r_status < 0.94 THEN 'no-answer'
            WHEN r_status < 0.96 THEN 'failed'
            ELSE 'canceled' END AS status,
       CASE WHEN r_key < 0.25 THEN '1' WHEN r_key < 0.45 THEN '2' WHEN r_key < 0.60 THEN '3'
            WHEN r_key < 0.85 THEN '4' ELSE '9' END AS key,
       CASE WHEN r_key < 0.25 THEN 'vida' WHEN r_key < 0.45 THEN 'salud'
            WHEN r_key < 0.60 THEN 'hogar' WHEN r_key < 0.85 THEN 'automovil'
            ELSE 'agente_aviso' END AS target,
       CASE WHEN r_key < 0.25 THEN 'llamar_vida' WHEN r_key < 0.45 THEN 'llamar_salud'
            WHEN r_key < 0.60 THEN 'llamar_hogar' WHEN r_key < 0.85 THEN 'llamar_partes'
            ELSE 'agente' END AS dial_node,
       CASE WHEN r_key < 0.25 THEN 'buzon_vida' WHEN r_key < 0.45 THEN 'buzon_salud'
            WHEN r_key < 0.60 THEN 'buzon_hogar' WHEN r_key < 0.85 THEN 'buzon_partes'
            ELSE 'buzon_general' END AS mailbox
FROM g,
     LATERAL (SELECT %(end)s::timestamptz - (1 + floor(r_day * %(days)s)) * interval '1 day'
                     + interval '7 hours' + r_time * interval '12 hours' AS started) s;

CREATE TEMP TABLE d ON COMMIT DROP AS
SELECT c.*,
       CASE WHEN status = 'completed'
            THEN least(3600, 8 + floor(-ln(1 - r_dur) * 150))::int ELSE 0 END AS duration,
       CASE WHEN status <> 'completed' THEN NULL
            WHEN direction = 'outbound' THEN CASE WHEN r_end < 0.8 THEN 'connected' END
            WHEN key = '9' THEN CASE WHEN r_end < 0.8 THEN 'agent' END
            WHEN r_end < 0.5 THEN 'connected'
            WHEN r_end < 0.85 THEN 'hangup' END AS end_reason
FROM c;

INSERT INTO calls (sid, parent_sid, from_number, to_number, direction, status, status_rank,
                   status_seq, started_at, answered_at, ended_at, duration, price_micros,
                   price_unit, flow, flow_version, queue, end_reason, last_node, last_seq,
                   updated_at)
SELECT sid, NULL,
       CASE WHEN direction = 'inbound' THEN caller ELSE did END,
       CASE WHEN direction = 'inbound' THEN did ELSE caller END,
       direction, status, 4, 3, started,
       CASE WHEN end_reason IN ('connected', 'agent')
            THEN started + interval '14 seconds' END,
       started + (duration + 2) * interval '1 second',
       duration,
       CASE WHEN status = 'completed'
            THEN -ceil(duration / 60.0)::bigint
                 * CASE WHEN direction = 'inbound' THEN 8500 ELSE 14000 END
            WHEN status = 'failed' THEN NULL ELSE 0 END,
       'USD',
       CASE WHEN direction = 'inbound' OR r_flow < 0.5 THEN 'seguros' END,
       CASE WHEN direction = 'outbound' AND r_flow >= 0.5 THEN NULL
            WHEN started < %(end)s::timestamptz - interval '45 days' THEN '3f9c2a7e1b0d'
            ELSE '8e41d0c5a6f2' END,
       CASE WHEN direction = 'inbound' AND key = '9' THEN 'general-queue' END,
       end_reason,
       CASE WHEN direction = 'outbound' THEN CASE WHEN r_flow < 0.5 THEN 'bienvenida' END
            WHEN status <> 'completed' THEN 'menu_principal'
            WHEN end_reason IN ('connected', 'agent') THEN dial_node
            WHEN end_reason = 'hangup' THEN 'despedida'
            WHEN r_end < 0.92 THEN mailbox
            ELSE 'menu_principal' END,
       6,
       started + (duration + 3) * interval '1 second'
FROM d;

INSERT INTO call_parties (call_sid, identity, started_at)
SELECT sid, 'agent_' || lpad(floor(%(identities)s * r_ident * r_ident)::int::text, 4, '0'),
       started
FROM d WHERE r_party < 0.3;

INSERT INTO call_steps (call_sid, record_id, position, seq, at, flow, event, node, outcome,
                        keys, data)
SELECT sid, md5('rec' || i), 0, 2, started + interval '12 seconds', 'seguros',
       'option_chosen', 'menu_principal', target, key,
       '{"type":"option_chosen","node":"menu_principal","key":"' || key
       || '","target":"' || target || '"}'
FROM d WHERE direction = 'inbound'
UNION ALL
SELECT sid, md5('rec' || i), 1, 2, started + interval '12 seconds', 'seguros',
       'node_entered', target, 'say', NULL,
       '{"type":"node_entered","node":"' || target || '","kind":"say"}'
FROM d WHERE direction = 'inbound';

INSERT INTO recordings (sid, call_sid, url, duration, channels, status, status_rank, source,
                        started_at, error_code, updated_at)
SELECT 'RE' || md5('recording' || i), sid,
       'https://api.twilio.com/2010-04-01/Accounts/AC' || repeat('1', 32) || '/Recordings/RE'
       || md5('recording' || i),
       greatest(1, duration - 14),
       CASE WHEN end_reason = 'connected' THEN 2 ELSE 1 END,
       'completed', 1,
       CASE WHEN end_reason = 'connected' THEN 'DialVerb' ELSE 'RecordVerb' END,
       started + interval '14 seconds', NULL,
       started + (duration + 5) * interval '1 second'
FROM d WHERE status = 'completed' AND r_rec < 0.353;
"""
# 0.353 of the completed calls (85%): recordings for 30% of all calls.


def midnight_today() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def grow(pg: PostgresServer, have: int, size: int, end: dt.datetime) -> float:
    """Add calls have+1..size (and their parties, steps, recordings); VACUUM ANALYZE. Seconds."""
    started = time.perf_counter()
    with psycopg.connect(pg.dsn) as conn:
        # The seed depends on the batch only: the same rows whatever ran before.
        conn.execute("SELECT setseed(%s)", (1.0 / (1 + size.bit_length()),))
        params = {
            "lo": have + 1,
            "hi": size,
            "end": end,
            "days": DAYS,
            "callers": CALLERS,
            "identities": IDENTITIES,
        }
        # Client-side binding: parameters in CREATE TABLE AS.
        with psycopg.ClientCursor(conn) as cur:
            for statement in filter(str.strip, BATCH_SQL.split(";\n")):
                cur.execute(statement, params)
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def table_sizes(pg: PostgresServer) -> dict[str, dict[str, Any]]:
    sizes: dict[str, dict[str, Any]] = {}
    with psycopg.connect(pg.dsn) as conn:
        for table in ("calls", "call_parties", "call_steps", "recordings"):
            rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            size = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (table,)).fetchone()
            assert rows is not None
            assert size is not None
            sizes[table] = {"rows": rows[0], "mb": round(size[0] / 2**20, 1)}
    return sizes


# --------------------------------------------------------------------------- the API


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    """Path and query; `{cursor}` is replaced by the first page's nextCursor."""
    kind: str
    """'baseline', 'page' or 'analytics' (which target applies)."""
    first_page: str = ""
    """For a second page: the path whose answer's nextCursor it follows."""


def endpoints(end: dt.datetime) -> list[Endpoint]:
    """What is measured, for data ending at `end` (midnight today)."""
    week_to = (end - dt.timedelta(days=24)).date()
    week_from = week_to - dt.timedelta(days=6)
    month_end = (end.replace(day=1) - dt.timedelta(days=1)).date()
    month_start = month_end.replace(day=1)
    history = "/api/calls/history"
    return [
        Endpoint("baseline: GET /api/keys?limit=1", "/api/keys?limit=1", "baseline"),
        Endpoint(
            "history ?userId=<busiest identity>",
            f"{history}?userId=agent_0000&limit=50",
            "page",
        ),
        Endpoint(
            "history ?status&direction&from&to (a week)",
            f"{history}?status=completed&direction=inbound&from={week_from}&to={week_to}&limit=50",
            "page",
        ),
        Endpoint(
            "history ?number=<most frequent caller>",
            f"{history}?number=%2B34600000000&limit=50",
            "page",
        ),
        Endpoint(
            "history, all calls, page 2 (nextCursor)",
            f"{history}?limit=50&cursor={{cursor}}",
            "page",
            first_page=f"{history}?limit=50",
        ),
        Endpoint(
            f"analytics {month_start:%Y-%m} (Europe/Madrid)",
            f"/api/analytics?from={month_start}&to={month_end}&timezone=Europe/Madrid",
            "analytics",
        ),
    ]


def endpoints_missing(base: str, key: str) -> list[str]:
    """The endpoints that do not exist (404 or 405) on the app at `base`."""
    missing = []
    with httpx.Client(timeout=30) as client:
        for path in ("/api/calls/history?limit=1", "/api/analytics"):
            reply = client.get(base + path, headers={"Authorization": f"Bearer {key}"})
            if reply.status_code in (404, 405):
                missing.append(path.split("?")[0])
    return missing


def resolve(client: httpx.Client, base: str, headers: dict[str, str], point: Endpoint) -> str:
    if not point.first_page:
        return point.path
    reply = client.get(base + point.first_page, headers=headers)
    reply.raise_for_status()
    cursor = reply.json().get("nextCursor")
    if not cursor:
        raise SystemExit(f"{point.first_page}: no nextCursor on the first page")
    return point.path.format(cursor=cursor)


def timed_get(client: httpx.Client, url: str, headers: dict[str, str], count: int) -> list[float]:
    """`count` sequential GETs; latencies in milliseconds."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        reply = client.get(url, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        if reply.status_code != 200:
            raise SystemExit(f"{url}: {reply.status_code} {reply.text[:300]}")
    return times


def items_in(body: Any) -> int | None:
    """How many calls a page holds (None: not a page)."""
    if isinstance(body, dict) and isinstance(body.get("calls"), list):
        return len(body["calls"])
    return None


# ---- the SQL behind an endpoint, from the server's log

_LOG_ENTRY = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[\d+\] ", re.M)
_EXECUTE = re.compile(r"LOG:  duration: ([0-9.]+) ms  (?:execute [^:]*|statement): (.*)", re.S)
_PARAM = re.compile(r"\$(\d+) = (NULL|'(?:[^']|'')*')")
HISTORY_TABLES = re.compile(r"\b(calls|call_parties|call_steps|recordings)\b")


def _log_path(pg: PostgresServer) -> Path:
    return pg.socket_dir / f"postgres-{pg.port}.log"


def _set_statement_logging(pg: PostgresServer, on: bool) -> None:
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        if on:
            conn.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
        else:
            conn.execute("ALTER SYSTEM RESET log_min_duration_statement")
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)  # every backend reads the new setting before its next command


def _fill(sql: str, params: dict[str, str]) -> str:
    """`sql` with its $n parameters replaced by their logged literals."""
    return re.sub(r"\$(\d+)\b", lambda m: params.get(m.group(1), m.group(0)), sql)


def statements_in(log_text: str) -> list[dict[str, Any]]:
    """The history statements executed in `log_text`, parameters filled in."""
    entries = [e for e in _LOG_ENTRY.split(log_text) if e.strip()]
    found: list[dict[str, Any]] = []
    for number, entry in enumerate(entries):
        match = _EXECUTE.search(entry)
        if match is None or not HISTORY_TABLES.search(match.group(2)):
            continue
        sql = match.group(2).strip()
        params: dict[str, str] = {}
        following = entries[number + 1] if number + 1 < len(entries) else ""
        if following.lower().startswith("detail:  parameters:"):
            params = dict(_PARAM.findall(following))
        found.append({"logged_ms": float(match.group(1)), "sql": _fill(sql, params)})
    return found


def capture_sql(
    pg: PostgresServer, client: httpx.Client, url: str, headers: dict[str, str]
) -> list[dict[str, Any]]:
    """The history statements one request to `url` sends (statement logging must be on)."""
    path = _log_path(pg)
    offset = path.stat().st_size
    client.get(url, headers=headers).raise_for_status()
    time.sleep(0.3)
    with path.open("rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    return statements_in(text)


def explain(pg: PostgresServer, statements: list[dict[str, Any]]) -> None:
    """Run each statement under EXPLAIN (ANALYZE, BUFFERS); adds `plan` and `execution_ms`."""
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        for statement in statements:
            try:
                rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement['sql']}").fetchall()
            except psycopg.Error as exc:
                statement["plan"] = f"(EXPLAIN failed: {exc})"
                statement["execution_ms"] = None
                continue
            plan = "\n".join(str(row[0]) for row in rows)
            statement["plan"] = plan
            found = re.search(r"Execution Time: ([0-9.]+) ms", plan)
            statement["execution_ms"] = float(found.group(1)) if found else None


# ---- one size


def measure_size(
    pg: PostgresServer,
    base: str,
    key: str,
    points: list[Endpoint],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """p50/p99 of each endpoint (interleaved rounds), and the SQL behind each, explained."""
    headers = {"Authorization": f"Bearer {key}"}
    nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    out: dict[str, Any] = {}
    with httpx.Client(timeout=60, transport=nodelay) as client:
        urls = {p.name: base + resolve(client, base, headers, p) for p in points}
        samples: dict[str, list[float]] = {p.name: [] for p in points}
        shown: dict[str, int | None] = {}
        for point in points:  # warm-up, and what a page holds
            reply = client.get(urls[point.name], headers=headers)
            if reply.status_code != 200:
                raise SystemExit(f"{urls[point.name]}: {reply.status_code} {reply.text[:300]}")
            shown[point.name] = items_in(reply.json())
            timed_get(client, urls[point.name], headers, 2 if point.kind == "analytics" else 20)
        rounds = args.rounds
        for round_no in range(rounds):
            shift = round_no % len(points)
            for point in points[shift:] + points[:shift]:
                total = args.analytics_requests if point.kind == "analytics" else args.requests
                count = total // rounds + (1 if round_no < total % rounds else 0)
                samples[point.name] += timed_get(client, urls[point.name], headers, count)
        _set_statement_logging(pg, True)
        try:
            sql = {p.name: capture_sql(pg, client, urls[p.name], headers) for p in points}
        finally:
            _set_statement_logging(pg, False)
    base_p50 = statistics.median(samples[points[0].name])
    for point in points:
        values = samples[point.name]
        statements = sql[point.name]
        explain(pg, statements)
        out[point.name] = {
            "kind": point.kind,
            "url": urls[point.name].removeprefix(base),
            "requests": len(values),
            "items": shown[point.name],
            "p50_ms": round(statistics.median(values), 3),
            "p99_ms": round(bench_api.pct(values, 0.99), 3),
            "max_ms": round(max(values), 3),
            "ratio_p50": round(statistics.median(values) / base_p50, 2),
            "statements": statements,
        }
    return out


def passes(kind: str, row: dict[str, Any]) -> bool | None:
    if kind == "page":
        return bool(row["p99_ms"] < PAGE_TARGET_P99_MS)
    if kind == "analytics":
        return bool(row["p99_ms"] < ANALYTICS_TARGET_S * 1000)
    return None


def queries(pg: PostgresServer, args: argparse.Namespace) -> dict[str, Any]:
    """Part 1: grow the data and measure the API at each size."""
    db = Database(pg.url)
    try:
        upgrade(db)
    finally:
        db.dispose()
    end = midnight_today()
    points = endpoints(end)
    result: dict[str, Any] = {"data_end": end.isoformat(), "sizes": {}}
    have = 0
    with bench_api.flowpbx(pg.url, SETTINGS) as (base, key):
        missing = endpoints_missing(base, key)
        if missing:
            result["missing_endpoints"] = missing
            print(f"NOT MEASURED: {', '.join(missing)} do not exist in this checkout")
            points = [p for p in points if not any(p.path.startswith(m) for m in missing)]
        for size in args.sizes:
            seconds = grow(pg, have, size, end)
            have = size
            sizes = table_sizes(pg)
            print(
                f"{size:>9,} calls generated in {seconds:.1f} s: "
                + ", ".join(f"{t} {v['rows']:,} rows {v['mb']} MB" for t, v in sizes.items()),
                flush=True,
            )
            measured = measure_size(pg, base, key, points, args)
            for name, row in measured.items():
                print(
                    f"  {name:48} p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms  "
                    f"x{row['ratio_p50']:.1f} baseline  ({row['items']} calls shown)",
                    flush=True,
                )
            result["sizes"][str(size)] = {
                "generated_s": round(seconds, 1),
                "tables": sizes,
                "endpoints": measured,
            }
    return result


# --------------------------------------------------------------------------- the writer's cost

WRITER_MODES = ("writer on", "writer off", "writer apart")
"""The history writer in the web process (the default); none (FLOWPBX_HISTORY_WRITER=false,
history not written: the reference); and a `flowpbx history-writer` process beside the web
process, on the same core (so the two configurations that write have the same CPU)."""
WRITING = ("writer on", "writer apart")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def health(server: bw.Server) -> dict[str, Any]:
    with urllib.request.urlopen(server.base + "/health", timeout=5.0) as reply:
        body: dict[str, Any] = json.loads(reply.read())
    return body


def backlog(server: bw.Server) -> int | None:
    value = health(server).get("history", {}).get("backlog")
    return int(value) if value is not None else None


def drain(server: bw.Server, timeout: float = DRAIN_TIMEOUT_S) -> float:
    """Wait until the server's history backlog is 0; seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if backlog(server) == 0:
            return time.monotonic() - started
        time.sleep(0.1)
    raise bw.BenchError(f"{server.name}: history backlog not drained after {timeout:.0f} s")


def pin_postgres(pg: PostgresServer, pinning: bw.Pinning) -> None:
    """Run PostgreSQL (the postmaster, its processes and the backends it forks later) on the
    load generator's core, as Redis is: the server core measures flowpbx alone."""
    if pinning.taskset is None or pg.process is None:
        return
    postmaster = int((pg.process.data_dir / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(stat.parent.name))
    for pid in pids:
        subprocess.run(
            [pinning.taskset, "-a", "-p", "-c", str(pinning.client_core), str(pid)],
            check=False,
            capture_output=True,
        )


@dataclass
class Setup:
    """One configuration: its web server, its redis-server, and its writer process if any."""

    mode: str
    server: bw.Server
    redis: RedisServer
    redis_pid: int
    database: str
    writer: bw.Server | None = None

    @property
    def pids(self) -> list[int]:
        """The processes whose CPU is flowpbx's: the web server, and the writer apart."""
        return [self.server.proc.pid] + ([self.writer.proc.pid] if self.writer else [])


@dataclass
class WriterRun:
    token: str
    pinning: bw.Pinning
    branch: str = "open"
    runs: list[dict[str, Any]] = field(default_factory=list)
    tag: str = field(default_factory=lambda: secrets.token_hex(2))

    def load(
        self, setup: Setup, connections: int, warmup: float, duration: float
    ) -> dict[str, Any]:
        """One load-generator run against `setup`'s server (following its replies), then,
        when history is written, the wait until its backlog is stored; flowpbx's CPU counts
        both."""
        server = setup.server
        watch = {"server": server.proc.pid, "redis": setup.redis_pid}
        if setup.writer is not None:
            watch["writer"] = setup.writer.proc.pid
        spec = {
            "base": server.base,
            "mode": "follow",
            "path": "/api/calls/incoming",
            "branch": self.branch,
            "token": self.token,
            "connections": connections,
            "warmup": warmup,
            "duration": duration,
            "sid_prefix": f"{self.tag}{len(self.runs):04x}",
            "calls": int(bw.MAX_RATE * (warmup + duration) / bw.STEPS_PER_CALL[self.branch]) + 500,
            "seed": len(self.runs) + 1,
            "watch": watch,
        }
        command = [
            *self.pinning.prefix(self.pinning.client_core),
            bw.PYTHON,
            str(bw.LOADGEN_SCRIPT),
            json.dumps(spec),
        ]
        cpu_before = sum(cpu_seconds(pid) for pid in setup.pids)
        done = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=warmup + duration + 60,
            check=False,
        )
        if done.returncode != 0:
            raise bw.BenchError(f"load generator failed ({done.returncode}):\n{done.stderr}")
        result: dict[str, Any] = json.loads(done.stdout)
        result["server"] = setup.mode
        result["backlog_at_end"] = backlog(server)
        result["drain_s"] = drain(server) if setup.mode in WRITING else None
        if setup.mode not in WRITING:
            # What nobody writes is dropped, as a writer deletes what it stored: the streams
            # stay short (and under FLOWPBX_EVENTS_MAX) however many rounds run.
            with contextlib.closing(redis.Redis.from_url(setup.redis.url)) as client:
                client.flushdb()
        cpu = sum(cpu_seconds(pid) for pid in setup.pids) - cpu_before
        result["cpu_ms_per_webhook"] = (
            cpu * 1000 / result["requests_total"] if result["requests_total"] else 0.0
        )
        self.runs.append(result)
        return result


def writer_env(redis_port: int, token: str, database_url: str, writer: bool) -> dict[str, str]:
    """The environment of a webhook server: no Twilio account (no price requests)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLOWPBX_", "TWILIO_", "REDIS_", "DB_", "DATABASE_", "PUBLIC_"))
    }
    env.update(
        REDIS_HOST=bw.HOST,
        REDIS_PORT=str(redis_port),
        TWILIO_AUTH_TOKEN=token,
        DATABASE_URL=database_url,
        FLOWPBX_HISTORY_WRITER="true" if writer else "false",
        FLOWPBX_FLOWS_DIR=str(ROOT / "flows"),
        FLOWPBX_HOURS_OVERRIDE="open",
        LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")])),
    )
    return env


def start_writer(
    env: dict[str, str], pinning: bw.Pinning, workdir: Path, core: int | None = None
) -> bw.Server:
    """`flowpbx history-writer` on `core` (the server core by default), logging to workdir."""
    log = workdir / "history-writer.log"
    command = [
        *pinning.prefix(pinning.server_core if core is None else core),
        bw.PYTHON,
        "-c",
        "from flowpbx.cli import main; main()",
        "history-writer",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return bw.Server("history-writer", 0, proc, log)


def _database(pg: PostgresServer, name: str) -> str:
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name} OWNER {pg.user}")
    return name


def _count_rows(pg: PostgresServer, database: str) -> dict[str, int]:
    stored = {}
    with psycopg.connect(pg.dsn.rsplit("/", 1)[0] + "/" + database) as conn:
        for table in ("calls", "call_steps", "call_parties", "recordings"):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            stored[table] = row[0] if row else 0
    return stored


def _print_run(round_no: int, run: dict[str, Any]) -> None:
    drained = (
        f"backlog {run['backlog_at_end']:,} drained in {run['drain_s']:.1f} s"
        if run["drain_s"] is not None
        else f"backlog {run['backlog_at_end']:,} (not written)"
    )
    print(
        f"round {round_no + 1} {run['server']:12} {run['connections']:2} conns: "
        f"{run['rps']:7.0f} req/s  p50 {run['p50_ms']:6.2f} ms  p99 {run['p99_ms']:6.2f} ms  "
        f"{run['cpu_ms_per_webhook']:.3f} CPU ms/webhook  {drained}  failed {bw.failures(run)}",
        flush=True,
    )


def writer_cost(pg: PostgresServer, args: argparse.Namespace) -> dict[str, Any]:
    """Part 2: webhook steps with the history writer in the process, apart, and none."""
    token = secrets.token_hex(16)
    pinning = bw.choose_pinning("client")
    print(f"writer cost: {pinning.describe()}; PostgreSQL with Redis", flush=True)
    pin_postgres(pg, pinning)
    workdir = Path(tempfile.mkdtemp(prefix="flowpbx-bench-history-"))
    setups: dict[str, Setup] = {}
    try:
        with contextlib.ExitStack() as stack:
            for mode in WRITER_MODES:
                store = stack.enter_context(redis_server())
                redis_pid = bw.redis_process_id(store)
                if pinning.taskset is not None:
                    subprocess.run(
                        [pinning.taskset, "-a", "-p", "-c", str(pinning.redis_core),
                         str(redis_pid)],
                        check=True,
                        capture_output=True,
                    )  # fmt: skip
                database = _database(pg, "flowpbx_" + mode.replace(" ", "_"))
                url = pg.url.rsplit("/", 1)[0] + "/" + database
                env = writer_env(store.port, token, url, writer=mode == "writer on")
                server = bw.start_server(
                    mode.replace(" ", "-"), env, pinning, workdir, kind="flowpbx"
                )
                setups[mode] = Setup(mode, server, store, redis_pid, database)
                # One at a time: the migrations run at start.
                bw.wait_ready(server, server.base + "/health", method_post=False)
                if mode == "writer apart":
                    core = pinning.client_core if args.apart_core == "client" else None
                    setups[mode].writer = start_writer(env, pinning, workdir, core)
            pin_postgres(pg, pinning)  # the backends the servers opened
            probes = {m: bw.probe_flowpbx(s.server, token) for m, s in setups.items()}
            branch = probes["writer on"]["branch"]
            bench = WriterRun(token, pinning, branch)
            for mode in WRITING:
                drain(setups[mode].server)
            for round_no in range(args.writer_rounds):
                shift = round_no % len(WRITER_MODES)
                for mode in WRITER_MODES[shift:] + WRITER_MODES[:shift]:
                    for conns, warm, dur in (
                        (bw.THROUGHPUT_CONNECTIONS, args.warmup, args.duration),
                        (bw.LATENCY_CONNECTIONS, bw.LATENCY_WARMUP_S, args.latency_duration),
                    ):
                        _print_run(round_no, bench.load(setups[mode], conns, warm, dur))
            final = {m: health(setups[m].server).get("history") for m in WRITING}
            log_problems = {
                s.name: bw.server_log_problems(s)
                for setup in setups.values()
                for s in (setup.server, setup.writer)
                if s is not None
            }
    finally:
        for setup in setups.values():
            for process in (setup.server, setup.writer):
                if process is not None:
                    process.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    checks = {}
    for mode in WRITING:
        # The probe's call, and the load generator's: a call counts as started before the
        # window check, so up to one per connection and run never sent its first webhook.
        mine = [r for r in bench.runs if r["server"] == mode]
        checks[mode] = {
            "calls_finished": 1 + sum(r["calls_done"] for r in mine),
            "calls_started": 1 + sum(r["calls_started"] for r in mine),
            "rows_stored": _count_rows(pg, setups[mode].database),
            "final_health": final[mode],
        }
    return {
        "pinning": pinning.describe() + "; PostgreSQL on the load generator's core; the "
        f"writer apart on the {'servers' if args.apart_core == 'server' else 'load generator'}'s "
        "core",
        "branch": branch,
        "rounds": args.writer_rounds,
        "summary": summarize_writer(bench.runs),
        "runs": bench.runs,
        "checks": checks,
        "server_log_problems": log_problems,
        "failures": sum(bw.failures(r) for r in bench.runs),
    }


def summarize_writer(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    keys = ("rps", "p50_ms", "p99_ms", "cpu_ms_per_webhook")
    for conns in (bw.THROUGHPUT_CONNECTIONS, bw.LATENCY_CONNECTIONS):
        mine = {
            mode: [r for r in runs if r["server"] == mode and r["connections"] == conns]
            for mode in WRITER_MODES
        }
        row: dict[str, Any] = {}
        for mode, values in mine.items():
            row[mode] = {key: statistics.median(r[key] for r in values) for key in keys} | {
                "backlog_at_end_max": max((r["backlog_at_end"] or 0) for r in values),
                "drain_s_max": max((r["drain_s"] or 0.0) for r in values),
                "rps_rounds": [round(r["rps"], 1) for r in values],
            }
        off = row["writer off"]
        for mode in WRITING:
            ratio = {key: row[mode][key] / off[key] if off[key] else 0.0 for key in keys}
            ratio["rps_rounds"] = [
                round(a["rps"] / b["rps"], 3)
                for a, b in zip(mine[mode], mine["writer off"], strict=True)
            ]
            row[mode]["ratio"] = ratio
        out[str(conns)] = row
    return out


# --------------------------------------------------------------------------- report


def _git_commit() -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
        check=False,
    ).stdout.strip()  # fmt: skip
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    return (head or "unknown") + ("+dirty" if dirty else "")


def _size_label(size: int) -> str:
    exponent = len(str(size)) - 1
    return f"10^{exponent}" if size == 10**exponent else f"{size:,}"


def query_table(result: dict[str, Any]) -> str:
    sizes = list(result["sizes"])
    if not sizes:
        return "(no sizes measured)"
    first, last = result["sizes"][sizes[0]], result["sizes"][sizes[-1]]
    small, large = _size_label(int(sizes[0])), _size_label(int(sizes[-1]))
    head = " | ".join(f"{_size_label(int(s))} p50 / p99 ms" for s in sizes)
    lines = [
        f"| endpoint | {head} | p50 / baseline at {large} | p50 growth {small} to {large} "
        "| target | verdict |",
        "|---|" + "---:|" * len(sizes) + "---:|---:|---|---|",
    ]
    for name, row in last["endpoints"].items():
        cells = " | ".join(
            f"{result['sizes'][s]['endpoints'][name]['p50_ms']:.2f} / "
            f"{result['sizes'][s]['endpoints'][name]['p99_ms']:.2f}"
            for s in sizes
        )
        growth = row["p50_ms"] / first["endpoints"][name]["p50_ms"]
        target = {
            "page": f"p99 < {PAGE_TARGET_P99_MS:.0f} ms",
            "analytics": f"p99 < {ANALYTICS_TARGET_S:.0f} s",
        }.get(row["kind"], "–")
        verdict = {True: "PASS", False: "**FAIL**", None: "–"}[passes(row["kind"], row)]
        lines.append(
            f"| {name} | {cells} | {row['ratio_p50']:.2f} | {growth:.2f}× | {target} | {verdict} |"
        )
    lines += [
        "",
        "| size | calls | call_parties | call_steps | recordings | on disk | generated in |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        tables = result["sizes"][size]["tables"]
        mb = sum(t["mb"] for t in tables.values())
        lines.append(
            f"| {_size_label(int(size))} | "
            + " | ".join(f"{tables[t]['rows']:,}" for t in tables)
            + f" | {mb:,.0f} MB | {result['sizes'][size]['generated_s']:.1f} s |"
        )
    lines += [
        "",
        f"Database time per endpoint at {large} (EXPLAIN ANALYZE of the statements it sent):",
        "",
    ]
    for name, row in last["endpoints"].items():
        times = [s.get("execution_ms") for s in row["statements"]]
        shown = ", ".join(f"{t:.2f} ms" if t is not None else "?" for t in times) or "none"
        lines.append(f"- {name}: {len(times)} statement(s): {shown}")
    return "\n".join(lines)


def slow_plans(result: dict[str, Any]) -> str:
    """The plans of every endpoint over its target at the largest size."""
    sizes = list(result["sizes"])
    if not sizes:
        return ""
    out = []
    for name, row in result["sizes"][sizes[-1]]["endpoints"].items():
        if passes(row["kind"], row) is False:
            for statement in row["statements"]:
                out += [f"### {name}", "", statement["sql"], "", statement.get("plan", ""), ""]
    return "\n".join(out)


def writer_table(result: dict[str, Any]) -> str:
    summary = result["summary"]
    t, lat = str(bw.THROUGHPUT_CONNECTIONS), str(bw.LATENCY_CONNECTIONS)
    lines = [
        f"| history | req/s at {t} conns | p50 / p99 ms at {lat} conns | flowpbx CPU ms per "
        f"webhook ({t} conns, incl. catch-up) | req/s / writer off | backlog at window end "
        "(max) | drained in (max) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in WRITER_MODES:
        a, b = summary[t][mode], summary[lat][mode]
        drained = f"{a['drain_s_max']:.1f} s" if mode in WRITING else "–"
        ratio = f"{a['ratio']['rps']:.3f}" if mode in WRITING else "1"
        lines.append(
            f"| {mode} | {a['rps']:,.0f} | {b['p50_ms']:.2f} / {b['p99_ms']:.2f} | "
            f"{a['cpu_ms_per_webhook']:.3f} | {ratio} | {a['backlog_at_end_max']:,} | "
            f"{drained} |"
        )
    lines.append("")
    for mode in WRITING:
        ratio_t, ratio_l = summary[t][mode]["ratio"], summary[lat][mode]["ratio"]
        cost = 1 - ratio_t["rps"]
        verdict = "PASS" if cost < WRITER_TARGET else "**FAIL**"
        check = result["checks"][mode]
        low, high = check["calls_finished"], check["calls_started"]
        stored = check["rows_stored"]
        counted = "OK" if low <= stored["calls"] <= high else "MISMATCH"
        lines += [
            f"- **{mode}** / writer off: throughput **{ratio_t['rps']:.3f}** (cost {cost:.1%}, "
            f"target < {WRITER_TARGET:.0%}: {verdict}; per round {ratio_t['rps_rounds']}); "
            f"CPU per webhook {ratio_t['cpu_ms_per_webhook']:.3f}; at {lat} connections "
            f"p50 {ratio_l['p50_ms']:.2f}, p99 {ratio_l['p99_ms']:.2f}",
            f"  - backlog at the end: GET /health history = {json.dumps(check['final_health'])}",
            f"  - calls played: {low:,} finished, {high:,} started; stored {stored['calls']:,} "
            f"calls ({counted}), {stored['call_steps']:,} path rows",
        ]
    lines.append(f"- failed requests: {result['failures']}")
    return "\n".join(lines)


def report(result: dict[str, Any]) -> None:
    load_before = result["machine"]["load_average_before"]
    print()
    print(
        f"Call history, {result['machine']['cpus']} CPUs, PostgreSQL "
        f"{result['machine']['postgresql']}, load average {load_before[0]:.2f} before"
    )
    if "queries" in result:
        q = result["queries"]
        if q.get("missing_endpoints"):
            print(f"\nNOT MEASURED (missing): {', '.join(q['missing_endpoints'])}")
        print()
        print(query_table(q))
        plans = slow_plans(q)
        if plans:
            print("\nPlans of the endpoints over their target:\n")
            print(plans)
    if "writer" in result:
        w = result["writer"]
        print(f"\nWriter cost ({w['pinning']}; {w['branch']} branch, {w['rounds']} rounds):\n")
        print(writer_table(w))
        for name, problems in w["server_log_problems"].items():
            for line in problems:
                print(f"{name} log: {line}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 10^4 and 10^5, 2 writer rounds")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="calls, increasing")
    parser.add_argument("--requests", type=int, default=300, help="per page endpoint and size")
    parser.add_argument("--analytics-requests", type=int, default=30, help="per size")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per size")
    parser.add_argument("--writer-rounds", type=int, default=None, help="default 4 (quick: 2)")
    parser.add_argument("--warmup", type=float, default=bw.WARMUP_S)
    parser.add_argument("--duration", type=float, default=bw.THROUGHPUT_S)
    parser.add_argument("--latency-duration", type=float, default=bw.LATENCY_S)
    parser.add_argument(
        "--apart-core",
        choices=("server", "client"),
        default="server",
        help="core of the separate history writer: the servers' (default), or the load "
        "generator's (a writer on its own machine, roughly)",
    )
    parser.add_argument("--no-queries", action="store_true", help="skip part 1")
    parser.add_argument("--no-writer", action="store_true", help="skip part 2")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    if list(args.sizes) != sorted(set(args.sizes)):
        parser.error("--sizes must increase")
    if args.writer_rounds is None:
        args.writer_rounds = 2 if args.quick else 4

    started = time.monotonic()
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "benchmark": "call history (issue #8)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "git_commit": _git_commit(),
            "load_average_before": load_before,
        },
        "settings": {
            k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
        },
    }
    try:
        with postgres_server() as pg:
            with psycopg.connect(pg.dsn) as conn:
                row = conn.execute("SHOW server_version").fetchone()
                result["machine"]["postgresql"] = row[0] if row else "?"
            if not args.no_queries:
                result["queries"] = queries(pg, args)
            if not args.no_writer:
                result["writer"] = writer_cost(pg, args)
    except bw.BenchError as exc:
        print(f"bench_history: {exc}", file=sys.stderr)
        return 1
    result["machine"]["load_average_after"] = os.getloadavg()
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    report(result)
    print(f"\nwrote {args.output} ({result['elapsed_s']:.0f} s)")
    failed = "writer" in result and (
        result["writer"]["failures"] or any(result["writer"]["server_log_problems"].values())
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
