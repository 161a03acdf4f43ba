"""/healthz and /readyz on real servers: the real app (shipped flows) in-process on a real Redis
and a real PostgreSQL that the tests stop, pause and start again, and a real `flowpbx serve`
process whose Redis stops and comes back.

Every answer is checked to say nothing of the configuration: no host, port, URL or password.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_client
from prometheus_client.parser import text_string_to_metric_families

from conftest import FLOWS, fresh_postgres_url
from flowpbx.app import build_app, catalog_from
from flowpbx.history.sources import Backlog
from flowpbx.language.catalog import FlowCatalog
from flowpbx.settings import Settings
from flowpbx.store.memory import MemoryCallStore
from flowpbx.store.redis import RedisCallStore
from flowpbx.web.health import NO_ANSWER, OVER_THRESHOLD, UNKNOWN, UNREACHABLE, Readiness
from flowpbx.web.metrics import SharedState
from serve_process import environment, serving, workdir
from servers import PostgresServer, RedisServer, postgres_server, redis_server
from twilio_fake import BASE_URL, TestClient, TwilioDriver, call_sid

TOKEN = "health-auth-token"
CHANGE_SECONDS = 10.0
"""How long /readyz may take to see a server stop or come back."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def redis_db() -> Iterator[RedisServer]:
    """A Redis of this module's own: the tests stop and pause it."""
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this module's own: a test stops it."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def redis_up(redis_db: RedisServer) -> Iterator[RedisServer]:
    """The module's Redis, running and empty at the start of the test and after it."""
    if redis_db.process is None:
        redis_db.start()
    redis_client.Redis(host=redis_db.host, port=redis_db.port).flushdb()
    yield redis_db
    if redis_db.process is None:
        redis_db.start()


def settings_for(redis_db: RedisServer | None, database_url: str, **overrides: Any) -> Settings:
    settings = Settings(
        twilio_auth_token=TOKEN,
        flows_dir=FLOWS,
        database_url_override=database_url,
        hours_override="open",
        queue_scheduler=False,
    )
    if redis_db is not None:
        settings = dataclasses.replace(settings, redis_host=redis_db.host, redis_port=redis_db.port)
    return dataclasses.replace(settings, **overrides)


def secrets_of(redis_db: RedisServer | None, postgres: PostgresServer | None) -> list[str]:
    """What no health answer may contain."""
    found = ["redis://", "postgresql", "sqlite", TOKEN, "Error", "Traceback"]
    if redis_db is not None:
        found += [str(redis_db.port), redis_db.host]
    if postgres is not None:
        found += [str(postgres.port), postgres.password, postgres.user, postgres.dbname]
    return found


def ready(client: TestClient, leaks: list[str]) -> tuple[int, dict[str, Any]]:
    """GET /readyz: its status and body, checked to leak nothing and to answer quickly."""
    started = time.monotonic()
    response = client.get("/readyz")
    took = time.monotonic() - started
    assert took < 2.5, f"/readyz took {took:.1f} s"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    for secret in leaks:
        assert secret not in response.text, f"/readyz says {secret!r}: {response.text}"
    body: dict[str, Any] = response.json()
    assert body["status"] == ("ready" if response.status_code == 200 else "unready")
    assert response.status_code in (200, 503)
    return response.status_code, body


def until(check: Callable[[], tuple[int, dict[str, Any]]], status: int) -> dict[str, Any]:
    """Ask until the status is `status` (within CHANGE_SECONDS); the last body."""
    deadline = time.monotonic() + CHANGE_SECONDS
    while True:
        got, body = check()
        if got == status:
            return body
        assert time.monotonic() < deadline, f"/readyz still {got}: {body}"
        time.sleep(0.1)


ALL_OK = {"redis": "ok", "database": "ok", "flows": "ok", "backlog": "ok"}


def test_readyz_follows_redis_stopping_pausing_and_returning(
    redis_up: RedisServer, postgres: PostgresServer
) -> None:
    """Ready with Redis and PostgreSQL up; Redis stopped: 503, "redis": "unreachable" (the
    backlog, kept in Redis, "unknown"), while /healthz stays 200; back: ready again; paused
    (nothing answers): 503 "no answer" within the check's second; resumed: ready."""
    settings = settings_for(redis_up, fresh_postgres_url(postgres))
    leaks = secrets_of(redis_up, postgres)
    with TestClient(build_app(settings), base_url=BASE_URL) as client:

        def check() -> tuple[int, dict[str, Any]]:
            return ready(client, leaks)

        assert until(check, 200) == {"status": "ready", "checks": ALL_OK}
        redis_up.stop()
        body = until(check, 503)
        assert body["checks"] == ALL_OK | {"redis": "unreachable", "backlog": "unknown"}
        healthz = client.get("/healthz")
        assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
        redis_up.start()
        assert until(check, 200)["checks"] == ALL_OK
        redis_up.pause()
        try:
            body = until(check, 503)
            assert body["checks"]["redis"] == "no answer"
        finally:
            redis_up.resume()
        assert until(check, 200)["checks"] == ALL_OK


def ready_series(client: TestClient) -> dict[str, float]:
    """flowpbx_ready of /metrics: each check exported, and its value."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == "flowpbx_ready":
            found |= {sample.labels["check"]: sample.value for sample in family.samples}
    return found


def test_metrics_leave_out_the_backlog_check_while_redis_is_down(
    redis_up: RedisServer, tmp_path: Path
) -> None:
    """Redis stopped: /readyz says the backlog (kept in Redis) is "unknown"; /metrics leaves
    that check out of flowpbx_ready rather than export it failing, which would say the backlog
    is over its threshold (and page a second time for one cause): only the redis check fails.
    Redis back: the backlog check is exported again, passing."""
    settings = settings_for(redis_up, f"sqlite:///{tmp_path / 'flowpbx.sqlite3'}")
    with TestClient(build_app(settings), base_url=BASE_URL) as client:

        def check() -> tuple[int, dict[str, Any]]:
            return ready(client, [])

        until(check, 200)
        assert ready_series(client) == {"redis": 1, "database": 1, "flows": 1, "backlog": 1}
        redis_up.stop()
        assert until(check, 503)["checks"]["backlog"] == "unknown"
        assert ready_series(client) == {"redis": 0, "database": 1, "flows": 1}
        redis_up.start()
        until(check, 200)
        assert ready_series(client) == {"redis": 1, "database": 1, "flows": 1, "backlog": 1}


@pytest.mark.anyio
async def test_a_backlog_that_does_not_answer_is_no_verdict_in_metrics() -> None:
    """A backlog read that takes longer than its time: /readyz says "no answer" (unready), the
    metrics' snapshot has no verdict for it; a backlog over its threshold is a failing one."""
    catalog = catalog_from(Settings(twilio_auth_token=TOKEN, flows_dir=FLOWS), env_file=None)

    async def slow_backlog() -> None:
        await asyncio.sleep(30)

    async def full_backlog() -> Backlog:
        return Backlog(count=90, oldest_seconds=5.0, limit=100)

    store = MemoryCallStore(60)
    slow = Readiness(store, catalog, backlog=slow_backlog, backlog_fraction=0.5, seconds=0.2)
    assert (await slow.check())["backlog"] == "no answer"
    snapshot = await SharedState(store=store, readiness=slow, seconds=0.2).snapshot()
    assert snapshot.ready == {"redis": True, "flows": True}
    full = Readiness(store, catalog, backlog=full_backlog, backlog_fraction=0.5)
    snapshot = await SharedState(store=store, readiness=full).snapshot()
    assert snapshot.ready == {"redis": True, "flows": True, "backlog": False}


READYZ_REASONS = {
    "redis": (UNREACHABLE, NO_ANSWER),
    "database": (UNREACHABLE, NO_ANSWER),
    "flows": ("none loaded",),
    "backlog": (OVER_THRESHOLD, UNKNOWN, NO_ANSWER),
}
"""What each check of /readyz says when it does not pass."""


def test_the_operations_guide_lists_every_reason_of_each_check() -> None:
    """docs/operations.md section 3: the table of /readyz's checks names every reason each
    check can give (the backlog's "no answer" too)."""
    text = (FLOWS.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("## 3. Health", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].strip("`") in READYZ_REASONS:
            rows[cells[0].strip("`")] = cells[2]
    assert rows.keys() == READYZ_REASONS.keys()
    for check, reasons in READYZ_REASONS.items():
        for reason in reasons:
            assert f"`{reason}`" in rows[check], (check, reason)


def test_readyz_follows_the_database(redis_up: RedisServer) -> None:
    """PostgreSQL stopped: 503 with "database": "unreachable" and nothing else failing; started
    again: ready. Calls go on meanwhile (a webhook still answers its TwiML)."""
    with postgres_server() as postgres:
        settings = settings_for(redis_up, postgres.url)
        leaks = secrets_of(redis_up, postgres)
        with TestClient(build_app(settings), base_url=BASE_URL) as client:

            def check() -> tuple[int, dict[str, Any]]:
                return ready(client, leaks)

            until(check, 200)
            postgres.stop()
            body = until(check, 503)
            assert body["checks"] == ALL_OK | {"database": "unreachable"}
            reply = TwilioDriver(client, TOKEN).start(call_sid(1))
            assert reply.has("Gather"), "calls go on without the database"
            postgres.start()
            assert until(check, 200)["checks"] == ALL_OK


def test_readyz_turns_unready_when_the_history_backlog_passes_its_threshold(
    redis_up: RedisServer, tmp_path: Path
) -> None:
    """No history writer (FLOWPBX_HISTORY_WRITER=false): entries pile up in Redis. With
    FLOWPBX_READY_BACKLOG=0.001 of the 6400 entries the streams keep (FLOWPBX_EVENTS_MAX=1000),
    the 7th entry makes the service unready: "backlog": "over threshold"."""
    settings = settings_for(
        redis_up,
        f"sqlite:///{tmp_path / 'flowpbx.sqlite3'}",
        history_writer=False,
        events_max=1000,
        ready_backlog=0.001,
    )
    leaks = secrets_of(redis_up, None)
    with TestClient(build_app(settings), base_url=BASE_URL) as client:
        driver = TwilioDriver(client, TOKEN)
        driver.start(call_sid(2))  # one step record
        for _ in range(5):
            assert driver.call_status("ringing").status_code == 204  # one report each
        assert ready(client, leaks) == (200, {"status": "ready", "checks": ALL_OK})
        driver.call_status("in-progress")
        status, body = ready(client, leaks)
        assert status == 503
        assert body["checks"] == ALL_OK | {"backlog": "over threshold"}


def test_readyz_without_redis_checks_the_memory_store_and_sqlite(tmp_path: Path) -> None:
    """Without REDIS_HOST the call state is in the process: always reachable; the SQLite
    database answers its SELECT 1 too. FLOWPBX_READY_BACKLOG=0 leaves the backlog out."""
    settings = settings_for(None, f"sqlite:///{tmp_path / 'flowpbx.sqlite3'}", ready_backlog=0)
    with TestClient(build_app(settings), base_url=BASE_URL) as client:
        status, body = ready(client, [*secrets_of(None, None), str(tmp_path)])
    assert (status, body["checks"]) == (200, {"redis": "ok", "database": "ok", "flows": "ok"})


def test_start_up_objects_are_frozen_out_of_later_collections(tmp_path: Path) -> None:
    """What start-up made lives as long as the process: it is frozen (gc.freeze) once the app
    has started, so that the collector's full rounds under load no longer walk it; and thawed
    when the app stops."""
    settings = settings_for(None, f"sqlite:///{tmp_path / 'flowpbx.sqlite3'}")
    app = build_app(settings)  # made after any earlier freeze: not frozen yet
    before = gc.get_freeze_count()
    with TestClient(app, base_url=BASE_URL) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > before
    # Stopped: unfrozen, so that the next app of this process does not keep this one's garbage.
    assert gc.get_freeze_count() == 0


@pytest.mark.anyio
async def test_readiness_fails_without_flows() -> None:
    """A catalog with no flow is not ready to answer a call."""
    readiness = Readiness(store=MemoryCallStore(60), catalog=FlowCatalog({}, {}, ""))
    assert await readiness.check() == {"redis": "ok", "flows": "none loaded"}


@pytest.mark.anyio
async def test_readiness_checks_run_concurrently_each_bounded(redis_up: RedisServer) -> None:
    """A paused Redis is given one second, not one per check: /readyz answers within it."""
    store = RedisCallStore.from_url(redis_up.url, 60)
    catalog = catalog_from(Settings(twilio_auth_token=TOKEN, flows_dir=FLOWS), env_file=None)

    async def slow_backlog() -> None:
        await asyncio.sleep(30)

    readiness = Readiness(
        store=store, catalog=catalog, backlog=slow_backlog, backlog_fraction=0.5, seconds=0.5
    )
    redis_up.pause()
    try:
        started = time.monotonic()
        result = await readiness.check()
        took = time.monotonic() - started
    finally:
        redis_up.resume()
        await store.aclose()
    assert result == {"redis": "no answer", "flows": "ok", "backlog": "no answer"}
    assert took < 0.9, f"the checks took {took:.2f} s: not concurrent, or not bounded"


def test_readyz_of_a_real_serve_process_follows_its_redis(
    redis_up: RedisServer, tmp_path: Path
) -> None:
    """The issue's "done when": `flowpbx serve` (Redis, the embedded SQLite) is ready; its
    Redis stops: unready; Redis returns: ready again. /healthz answers throughout."""
    env = environment(REDIS_HOST=redis_up.host, REDIS_PORT=str(redis_up.port))
    leaks = [*secrets_of(redis_up, None), str(tmp_path)]
    with serving(workdir(tmp_path), env) as server:

        def check() -> tuple[int, dict[str, Any]]:
            response = httpx.get(server.base_url + "/readyz", timeout=5.0)
            for secret in leaks:
                assert secret not in response.text, f"/readyz says {secret!r}: {response.text}"
            body: dict[str, Any] = response.json()
            return response.status_code, body

        def alive() -> None:
            response = httpx.get(server.base_url + "/healthz", timeout=5.0)
            assert (response.status_code, response.json()) == (200, {"status": "ok"})

        assert until(check, 200)["checks"] == ALL_OK
        alive()
        redis_up.stop()
        assert until(check, 503)["checks"]["redis"] == "unreachable"
        alive()
        redis_up.start()
        assert until(check, 200)["checks"] == ALL_OK
        alive()
