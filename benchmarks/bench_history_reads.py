"""Benchmark call history's reads (issue #8) on a private PostgreSQL with 1,000,000 calls.

The calls are spread evenly over `--months` months (12 by default: about 83,000 a month), with
2.5 path rows per call (call_started, node_entered, and a menu option for every other call) and
an agent (of 256) for every fourth call, generated inside PostgreSQL, then ANALYZEd. The
query functions the REST API runs (`flowpbx.history.queries`, `flowpbx.history.analytics`) are
timed directly, warm, median of `--runs`:

- analytics over the last month, in UTC and in Europe/Madrid (target: under 1 s);
- the first page of history (50 calls), a page 10,000 calls deep (by cursor), the company
  number's calls (a number in every call), one agent's calls, one status.

Run: `.venv/bin/python benchmarks/bench_history_reads.py` (a few minutes, most of it generating the
rows). Prints a Markdown table and writes benchmarks/results/history_reads.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from flowpbx.db import migrate  # noqa: E402
from flowpbx.db.database import Database  # noqa: E402
from flowpbx.history import analytics, queries  # noqa: E402
from flowpbx.history.queries import CallFilter, Position  # noqa: E402
from servers import postgres_server  # noqa: E402

COMPANY = "+34910000000"
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

CALLS_SQL = """
INSERT INTO calls (sid, from_number, to_number, direction, status, status_rank, status_seq,
                   started_at, answered_at, ended_at, duration, price_micros, price_unit, flow,
                   flow_version, queue, end_reason, last_node, last_seq, updated_at)
SELECT 'CA' || lpad(to_hex(g), 32, '0'),
       CASE WHEN g % 5 = 0 THEN :company ELSE '+346' || lpad((g % 99991)::text, 8, '0') END,
       CASE WHEN g % 5 = 0 THEN '+346' || lpad((g % 99991)::text, 8, '0') ELSE :company END,
       CASE WHEN g % 5 = 0 THEN 'outbound' ELSE 'inbound' END,
       status, 4, 3, started, CASE WHEN g % 3 <> 0 THEN started + interval '20 seconds' END,
       started + (g % 600) * interval '1 second', g % 600, -(g % 600) * 250, 'USD', 'seguros',
       'cbf29c7fff44', CASE WHEN g % 7 = 0 THEN 'ventas' END,
       (ARRAY[NULL, 'hangup', 'connected', 'agent', 'caller_hung_up'])[1 + g % 5],
       'node_' || (g % 40), 3, started
FROM (
    SELECT g, :start + g * :step * interval '1 second' AS started,
           (ARRAY['completed', 'completed', 'completed', 'completed', 'completed', 'completed',
                  'busy', 'no-answer', 'failed', 'canceled'])[1 + g % 10] AS status
    FROM generate_series(1, :count) AS g
) AS generated
"""
PARTIES_SQL = """
INSERT INTO call_parties (call_sid, identity, started_at)
SELECT sid, 'agent_' || (hashtext(sid) & 255), started_at FROM calls
WHERE (hashtext(sid) & 3) = 0
"""
STEPS_SQL = """
INSERT INTO call_steps (call_sid, record_id, position, seq, at, flow, event, node, outcome,
                        keys, data)
SELECT sid, substr(sid, 3, 32), position, 1, started_at, 'seguros', event, node, outcome, keys,
       '{}'
FROM calls,
     LATERAL (VALUES (0, 'call_started', '', 'inbound', NULL),
                     (1, 'node_entered', 'menu_principal', 'menu', NULL),
                     (2, 'option_chosen', 'menu_principal', 'target_' || (ascii(right(sid, 1)) % 4),
                      (ascii(right(sid, 1)) % 4)::text))
        AS step(position, event, node, outcome, keys)
WHERE position < 2 OR ascii(right(sid, 1)) % 2 = 0
"""


def generate(db: Database, count: int, months: int) -> None:
    span = months * 30 * 86400
    with db.engine.begin() as connection:
        connection.execute(
            text(CALLS_SQL),
            {"company": COMPANY, "start": START, "step": span / count, "count": count},
        )
        connection.execute(text(PARTIES_SQL))
        connection.execute(text(STEPS_SQL))
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))


def timed(work: Callable[[], Any], runs: int) -> dict[str, float]:
    work()  # warm
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": statistics.median(times), "max_ms": max(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks/results/history_reads.json"
    )
    args = parser.parse_args()
    with postgres_server() as server:
        db = Database(server.url)
        try:
            migrate.upgrade(db)
            started = time.perf_counter()
            generate(db, args.calls, args.months)
            print(f"generated {args.calls:,} calls in {time.perf_counter() - started:.0f} s")
            end = START + dt.timedelta(days=30 * args.months)
            month = analytics.Period(end - dt.timedelta(days=30), end, dt.UTC)
            madrid = analytics.Period(month.since, month.before, zoneinfo.ZoneInfo("Europe/Madrid"))
            with db.engine.connect() as connection:
                in_month = connection.execute(
                    text("SELECT count(*) FROM calls WHERE started_at >= :a AND started_at < :b"),
                    {"a": month.since, "b": month.before},
                ).scalar()
            print(f"calls in the last month: {in_month:,}")
            deep = queries.list_calls(db, CallFilter(), None, 10_000)[-1]
            cases: dict[str, Callable[[], Any]] = {
                "analytics, last month (UTC)": lambda: analytics.analyse(db, month),
                "analytics, last month (Europe/Madrid)": lambda: analytics.analyse(db, madrid),
                "history, first page": lambda: queries.list_calls(db, CallFilter(), None, 51),
                "history, 10,000 calls deep": lambda: queries.list_calls(
                    db, CallFilter(), Position(deep.started_at, deep.sid), 51
                ),
                "history, number=company": lambda: queries.list_calls(
                    db, CallFilter(number=COMPANY), None, 51
                ),
                "history, userId=agent_7": lambda: queries.list_calls(
                    db, CallFilter(identity="agent_7"), None, 51
                ),
                "history, status=failed": lambda: queries.list_calls(
                    db, CallFilter(status="failed"), None, 51
                ),
                "call detail": lambda: queries.find_call(db, deep.sid, None),
            }
            results = {name: timed(work, args.runs) for name, work in cases.items()}
        finally:
            db.dispose()
    print(f"\n| query ({args.calls:,} calls over {args.months} months) | median (ms) | max (ms) |")
    print("|---|---:|---:|")
    for name, result in results.items():
        print(f"| {name} | {result['median_ms']:.1f} | {result['max_ms']:.1f} |")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.strip()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "calls": args.calls,
                "months": args.months,
                "results": results,
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "date": dt.date.today().isoformat(),
                    "commit": commit,
                },
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
