"""Benchmark the REST API's request path (issue #7): `POST /api/token` against a bare endpoint.

One run serves three apps under uvicorn in threads of this process, with the same settings:

- flowpbx on SQLite, and flowpbx on a private PostgreSQL (tests/servers.py): each request is
  read, its API key looked up by prefix and its hash compared (in a worker thread), the body
  decoded and validated (msgspec), a Twilio access token signed (the twilio library) and the
  answer encoded;
- baseline: a bare Starlette route that reads the same JSON body and answers a JSON document of
  the same size, with no key check and no token.

Requests are sent one at a time over one keep-alive connection (httpx), after a warm-up, in
rounds alternating the three servers. The machines are noisy: the ratios to the baseline within
one run are the figures to read. The cost as the number of stored keys grows (1, 1,000, 10,000)
is measured too; the lookup goes through a unique index, so it should stay flat.

Run: `.venv/bin/python benchmarks/bench_api.py` (about a minute). Prints a Markdown table and
writes benchmarks/results/api.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from flowpbx.app import build_app  # noqa: E402
from flowpbx.db import apikeys  # noqa: E402
from flowpbx.db.database import Database  # noqa: E402
from flowpbx.db.models import ApiKey  # noqa: E402
from flowpbx.settings import Settings  # noqa: E402
from served import served  # noqa: E402
from servers import postgres_server  # noqa: E402

BODY = {"identity": "user_123"}
SETTINGS = Settings(
    twilio_auth_token="t" * 32,
    twilio_account_sid="AC" + "1" * 32,
    twilio_api_key="SK" + "2" * 32,
    twilio_api_secret="s" * 32,
    twilio_twiml_app_sid="AP" + "3" * 32,
    flows_dir=ROOT / "flows",
)


def baseline_app(size: int) -> Starlette:
    """Reads the JSON body and answers a JSON document of `size` bytes: no key, no token."""
    payload = json.dumps({"token": "x" * (size - 32), "identity": "user_123"}).encode()

    async def token(request: Request) -> Response:
        json.loads(await request.body())
        return Response(payload, media_type="application/json")

    return Starlette(routes=[Route("/api/token", token, methods=["POST"])])


def add_keys(url: str, count: int) -> None:
    """Bring the database to `count` keys (rows written in bulk: only the lookup is measured)."""
    db = Database(url)
    try:
        now = dt.datetime.now(dt.UTC)
        with db.session() as session:
            have = session.query(ApiKey).count()
            rows = [
                {
                    "name": f"bulk{n}",
                    "prefix": f"{n:08x}",
                    "secret_hash": "0" * 64,
                    "identity": None,
                    "admin": False,
                    "created_at": now,
                }
                for n in range(have, count)
            ]
            if rows:
                session.execute(insert(ApiKey), rows)
    finally:
        db.dispose()


def timed(client: httpx.Client, url: str, headers: dict[str, str], count: int) -> list[float]:
    """`count` sequential requests; latencies in milliseconds."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.post(url, json=BODY, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{url}: {response.status_code} {response.text[:200]}")
    return times


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.contextmanager
def flowpbx(url: str, settings: Settings = SETTINGS) -> Iterator[tuple[str, str]]:
    """The app on database `url`, with one admin key: (base URL, key)."""
    with served(build_app(replace(settings, database_url_override=url))) as base:
        db = Database(url)
        try:
            _, key = apikeys.create(
                db, "bench", identity=None, admin=True, now=dt.datetime.now(dt.UTC)
            )
        finally:
            db.dispose()
        yield base, key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="per server and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/api.json")
    args = parser.parse_args()

    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        postgres_server() as pg,
        contextlib.ExitStack() as stack,
    ):
        sqlite_url = f"sqlite:///{tmp}/bench.sqlite3"
        servers = {
            "flowpbx (SQLite)": stack.enter_context(flowpbx(sqlite_url)),
            "flowpbx (PostgreSQL)": stack.enter_context(flowpbx(pg.url)),
        }
        # TCP_NODELAY: httpx writes the headers and the body separately; without it each
        # request waits ~40 ms for a delayed ACK, on every server alike.
        nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        client = stack.enter_context(httpx.Client(timeout=30, transport=nodelay))
        base, key = servers["flowpbx (SQLite)"]
        size = len(
            client.post(
                f"{base}/api/token", json=BODY, headers={"Authorization": f"Bearer {key}"}
            ).content
        )
        servers["baseline"] = (stack.enter_context(served(baseline_app(size))), "")
        samples: dict[str, list[float]] = {name: [] for name in servers}
        for base, key in servers.values():  # warm-up
            timed(
                client, f"{base}/api/token", {"Authorization": f"Bearer {key}"} if key else {}, 100
            )
        for _ in range(args.rounds):
            for name, (base, key) in servers.items():
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                samples[name] += timed(client, f"{base}/api/token", headers, args.requests)
        base_p50 = statistics.median(samples["baseline"])
        for name, values in samples.items():
            results[name] = {
                "p50_ms": round(statistics.median(values), 3),
                "p99_ms": round(pct(values, 0.99), 3),
                "ratio_p50": round(statistics.median(values) / base_p50, 2),
                "requests": len(values),
            }
        growth: dict[str, dict[int, float]] = {}
        for name, url in (("SQLite", sqlite_url), ("PostgreSQL", pg.url)):
            base, key = servers[f"flowpbx ({name})"]
            growth[name] = {}
            for count in (1, 1_000, 10_000):
                add_keys(url, count)
                values = timed(
                    client, f"{base}/api/token", {"Authorization": f"Bearer {key}"}, args.requests
                )
                growth[name][count] = round(statistics.median(values), 3)
        results["growth_p50_ms_by_keys"] = growth

    print("| server | p50 ms | p99 ms | p50 / baseline |")
    print("|---|---:|---:|---:|")
    for name in ("baseline", "flowpbx (SQLite)", "flowpbx (PostgreSQL)"):
        r = results[name]
        print(f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['ratio_p50']:.2f} |")
    print()
    print("| keys stored | " + " | ".join(f"{n:,}" for n in (1, 1_000, 10_000)) + " |")
    print("|---|---:|---:|---:|")
    for name, by_count in growth.items():
        print(f"| p50 ms, {name} | " + " | ".join(f"{v:.2f}" for v in by_count.values()) + " |")
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
                "results": results,
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "commit": commit,
                "date": dt.datetime.now(dt.UTC).isoformat(),
                "requests_per_round": args.requests,
                "rounds": args.rounds,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
