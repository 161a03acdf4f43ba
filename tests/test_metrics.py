"""/metrics on real servers: each metric moves when its cause happens, and several processes
writing to one PROMETHEUS_MULTIPROC_DIR are summed.

The real app (shipped flows, real Redis, SQLite, Twilio's REST API faked at HTTP level) is
driven with signed webhooks through the Spanish menu and its agent queue; /metrics is parsed
with prometheus_client's own parser. Two real `flowpbx serve` processes sharing Redis and a
metrics directory show that any of them reports every process's counters and the same shared
state.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_client
from prometheus_client import REGISTRY, values
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families
from redis.crc import key_slot

from conftest import FLOWS
from flowpbx import metrics
from flowpbx.app import build_app, build_service, catalog_from, events_kept
from flowpbx.db import apikeys
from flowpbx.db.database import Database
from flowpbx.engine.events import Direction, NewCall
from flowpbx.engine.interpreter import initial_state
from flowpbx.engine.progress import CallProgress, CallStatus, Report
from flowpbx.engine.service import CallService
from flowpbx.engine.walk import Context
from flowpbx.language.catalog import FlowCatalog, LoadedFlow
from flowpbx.language.loader import load_flow
from flowpbx.settings import Settings
from flowpbx.store.memory import MemoryCallStore
from flowpbx.store.redis import RedisCallStore, active_key, call_key, shard, stream_key
from flowpbx.twilio.rest import TwilioCredentials, TwilioFailure, TwilioRest
from flowpbx.web.app import create_app
from serve_process import FLOWPBX, TOKEN, Server, environment, serving, workdir
from servers import RedisClusterServer, RedisServer, redis_server
from test_api import NOW, settings_for
from test_e2e import BROKEN_FLOW
from twilio_fake import BASE_URL, TestClient, TwilioDriver, call_sid, inbound_params, signed_headers
from twilio_rest import TwilioRest as FakeTwilio
from twilio_rest import twilio_rest

QUEUE = "general-queue"
QUEUE_SID = "QU" + "0f" * 16
CALLER = "+34600111222"
CALLED = "+34910000000"
RECORDING = f"https://api.twilio.com/2010-04-01/Accounts/AC{'5a' * 16}/Recordings/RE{'ab' * 16}"
WAIT_FOR = 10.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTwilio]:
    with twilio_rest() as server:
        yield server


@pytest.fixture(scope="module")
def redis_db() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, fake: FakeTwilio, redis_db: RedisServer) -> Settings:
    """The full service on an empty Redis and a new SQLite file, its scheduler ticking fast."""
    fake.reset()
    redis_client.Redis(host=redis_db.host, port=redis_db.port).flushdb()
    return settings_for(
        f"sqlite:///{tmp_path / 'metrics.sqlite3'}",
        fake,
        redis_host=redis_db.host,
        redis_port=redis_db.port,
        queue_tick=0.05,
        callback_delay=0.0,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(build_app(settings), base_url=BASE_URL) as test_client:
        yield test_client


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def scrape(client: TestClient | httpx.Client, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when absent (a counter never moved)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def admin_key(settings: Settings) -> str:
    db = Database(settings.database_url)
    try:
        _, key = apikeys.create(db, "admin", identity=None, admin=True, now=NOW)
    finally:
        db.dispose()
    return key


# --- each metric moves when its cause happens ----------------------------------------------


def test_a_walk_of_the_spanish_menu_moves_webhook_step_and_active_call_metrics(
    client: TestClient, fake: FakeTwilio
) -> None:
    """4 automóvil, 1 dar un parte, the policy number, the department does not answer, a
    voicemail, goodbye, and Twilio's final status: every webhook is timed and counted by its
    route (never its query) and status, every step by flow and the kind of node it stops at,
    and the call is active from its first webhook to its final status."""
    driver = TwilioDriver(client, fake.auth_token)
    before = scrape(client)
    assert value(before, "flowpbx_active_calls") == 0
    driver.start(call_sid(1), from_=CALLER, to=CALLED)
    assert value(scrape(client), "flowpbx_active_calls") == 1
    driver.press("4")
    driver.press("1")
    assert driver.press("12345678").has("Dial")
    driver.dial_result("no-answer")
    assert driver.record(RECORDING).has("Hangup")
    assert value(scrape(client), "flowpbx_active_calls") == 1, "ended only when Twilio says so"
    assert driver.call_status("completed").status_code == 204
    unsigned = driver.post(driver.url("/api/calls/gather?seq=9"), driver.params(), signature=None)
    assert unsigned.status_code == 403
    after = scrape(client)

    count = "flowpbx_webhook_duration_seconds_count"
    routes = {"incoming": 1, "gather": 4, "dial": 1, "record": 1}
    for route, times in routes.items():
        assert moved(before, after, count, route=f"/api/calls/{route}") == times, route
    assert moved(before, after, count, route="/api/webhooks/call-status") == 1
    bucket = "flowpbx_webhook_duration_seconds_bucket"
    assert moved(before, after, bucket, route="/api/calls/gather", le="+Inf") == 4
    assert moved(before, after, bucket, route="/api/calls/gather", le="15.0") == 4
    took = moved(before, after, "flowpbx_webhook_duration_seconds_sum", route="/api/calls/gather")
    assert 0 < took < 4 * 5
    responses = "flowpbx_webhook_responses_total"
    assert moved(before, after, responses, route="/api/calls/gather", status="200") == 3
    assert moved(before, after, responses, route="/api/calls/gather", status="403") == 1
    assert moved(before, after, responses, route="/api/calls/incoming", status="200") == 1
    assert moved(before, after, responses, route="/api/webhooks/call-status", status="204") == 1
    assert not any("seq" in dict(labels).get("route", "") for _, labels in after)

    steps = {"menu": 2, "input": 1, "dial": 1, "record": 1, "hangup": 1}
    for kind, times in steps.items():
        assert moved(before, after, "flowpbx_steps_total", flow="seguros", kind=kind) == times
    assert value(after, "flowpbx_active_calls") == 0
    assert not any(
        name == "flowpbx_fallbacks_total" and moved(before, after, name, **dict(labels))
        for name, labels in after
    ), "a walk that goes as the flow says falls back nowhere"
    assert value(after, "flowpbx_ready", check="redis") == 1
    assert value(after, "flowpbx_ready", check="database") == 1


def test_fallbacks_are_counted_by_flow_and_reason(
    client: TestClient, fake: FakeTwilio, settings: Settings, tmp_path: Path
) -> None:
    """A step for a call with no state (state_lost), a flow whose dial has no number
    (step_failed, in that flow), and a call store that does not answer (store_unavailable):
    each caller hears the apology, and the fallback is counted."""
    driver = TwilioDriver(client, fake.auth_token)
    before = scrape(client)
    driver.call_sid, driver.from_, driver.to = call_sid(2), CALLER, CALLED
    driver.check(driver.post(driver.url("/api/calls/gather?seq=3"), driver.params(Digits="1")))
    after = scrape(client)
    fallbacks = "flowpbx_fallbacks_total"
    assert moved(before, after, fallbacks, flow="seguros", reason="state_lost") == 1

    path = tmp_path / "roto.yaml"
    path.write_text(BROKEN_FLOW, encoding="utf-8")
    broken = FlowCatalog({"roto": LoadedFlow(load_flow(path), "v-test", {})}, {}, "roto")
    service = build_service(settings, broken, MemoryCallStore(600))
    with TestClient(create_app(settings, service), base_url=BASE_URL) as roto:
        roto_driver = TwilioDriver(roto, fake.auth_token)
        roto_driver.start(call_sid(3))
        reply = roto_driver.press("1")
        assert reply.says == ("Perdone, ha habido un problema. Le atiende un agente.",)
        failed = scrape(roto)
    assert moved(before, failed, fallbacks, flow="roto", reason="step_failed") == 1

    closed = _closed_port()
    down = dataclasses.replace(
        settings, redis_host="127.0.0.1", redis_port=closed, store_retry_seconds=0
    )
    store = RedisCallStore.from_url(f"redis://127.0.0.1:{closed}/0", 600)
    service = build_service(down, catalog_from(settings, env_file=None), store)
    with TestClient(create_app(down, service), base_url=BASE_URL) as lost:
        TwilioDriver(lost, fake.auth_token).start(call_sid(4))
        response = lost.get("/metrics")
        unready = parse(response.text)
    assert moved(before, unready, fallbacks, flow="seguros", reason="store_unavailable") == 1
    assert value(unready, "flowpbx_ready", check="redis") == 0
    assert ("flowpbx_active_calls", frozenset()) not in unready, "unknown, not 0"


_RECORDED = (
    metrics.WEBHOOK_SECONDS,
    metrics.WEBHOOK_RESPONSES,
    metrics.STEPS,
    metrics.FALLBACKS,
    metrics.TWILIO_REQUESTS,
    metrics.TWILIO_ERRORS,
)


@pytest.fixture
def metrics_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's metrics in multiprocess mode, as those of a worker of `flowpbx serve
    --workers`: PROMETHEUS_MULTIPROC_DIR is set and prometheus_client given a multiprocess
    value class (it picks one when it is imported, which was before this test), and the
    metrics forget the values they made, so each is made anew in the folder. Restored after
    the test."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(directory))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())  # type: ignore[no-untyped-call]
    monkeypatch.setattr(values, "MmapedDict", metrics._AllocatedMmapedDict)  # as a worker's
    for metric in _RECORDED:
        monkeypatch.setattr(metric, "_metrics", {})
    monkeypatch.setattr(metrics, "_FAILURES", metrics._Failures())  # none said yet
    return directory


async def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("a bug outside the call service")


def test_metrics_that_cannot_be_written_never_fail_a_webhook(
    client: TestClient,
    fake: FakeTwilio,
    metrics_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The metrics folder removed after the start (`rm -rf data/metrics-<host>-<port>`, a disk
    fails): every metric write fails (FileNotFoundError), yet every webhook answers 200 TwiML
    in the flow's voice: the calls step on, a lost call is recovered, a webhook that fails
    answers the apology; each kind of metric that cannot be written is logged once, not once
    per webhook."""
    shutil.rmtree(metrics_folder)
    with pytest.raises(FileNotFoundError):
        metrics.STEPS.labels("seguros", "menu").inc()  # it fails for real
    caplog.set_level(logging.WARNING, logger="flowpbx.metrics")
    driver = TwilioDriver(client, fake.auth_token)
    for n in (20, 21):
        assert driver.start(call_sid(n), from_=CALLER, to=CALLED).has("Gather")
        assert driver.press("4").has("Gather"), "the step was saved: the next one follows it"
        assert driver.press("1").has("Gather")  # the policy number
    driver.call_sid = call_sid(22)  # a step of a call with no state: recovered (state_lost)
    lost = driver.check(driver.post(driver.url("/api/calls/gather?seq=3"), driver.params()))
    assert lost.says[0] == "Lo sentimos, se ha producido un error. Volvemos al menú principal."
    assert driver.start(call_sid(25), from_=CALLER, to=CALLED).has("Gather")
    monkeypatch.setattr(CallService, "handle", _boom)
    failed = driver.press("1")  # webhook_error: the web layer's own fallback
    assert failed.names == ("Say", "Hangup")
    assert failed.says == ("Lo sentimos, se ha producido un error. Disculpe las molestias.",)
    metrics.twilio_request("dequeue", "refused")
    lines = [r.getMessage() for r in caplog.records if r.name == "flowpbx.metrics"]
    kinds = {"webhooks", "steps", "fallbacks", "twilio requests"}
    assert len(lines) == len(kinds), lines
    for kind in kinds:
        assert any(f"{kind} cannot be recorded" in line for line in lines), (kind, lines)
    assert "FileNotFoundError" in lines[0]


VENTAS = """\
name: ventas
entry: menu
defaults:
  voice: Polly.Joanna
  language: en-US
nodes:
  menu:
    type: menu
    prompt: Press 1 for sales.
    options:
      1: adios
    exhausted: adios
  adios:
    type: hangup
"""
VENTAS_NUMBER = "+34910000099"


def test_a_failing_webhook_falls_back_in_the_flow_of_its_call(
    settings: Settings, fake: FakeTwilio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two flows: a webhook that fails outside the call service (webhook_error) is counted in
    the flow of its call, found as the call service finds it (the flow its URL names, else the
    number called), and its caller hears the apology in that flow's voice; a call to the
    company's number falls back in the default flow."""
    path = tmp_path / "ventas.yaml"
    path.write_text(VENTAS, encoding="utf-8")
    base = catalog_from(settings, env_file=None)
    catalog = FlowCatalog(
        {**base.flows, "ventas": LoadedFlow(load_flow(path), "v-test", {})},
        {**base.numbers, VENTAS_NUMBER: "ventas"},
        base.default,
    )
    service = build_service(settings, catalog, MemoryCallStore(600))
    fallbacks = "flowpbx_fallbacks_total"
    with TestClient(create_app(settings, service), base_url=BASE_URL) as app:
        before = scrape(app)
        english = TwilioDriver(app, fake.auth_token, voice="Polly.Joanna", language="en-US")
        assert english.start(call_sid(23), from_=CALLER, to=VENTAS_NUMBER).says == (
            "Press 1 for sales.",
        )
        monkeypatch.setattr(service, "handle", _boom)
        failed = english.press("1")
        assert failed.says == ("We are sorry, an error has occurred. Please try again later.",)
        # A call flowpbx placed names its flow in its URLs; To is the person called.
        pinned = english.params(Digits="1") | {"To": "+34600999888"}
        english.check(english.post(english.url("/api/calls/gather?seq=1&flow=ventas"), pinned))
        spanish = TwilioDriver(app, fake.auth_token)
        spanish.call_sid, spanish.from_, spanish.to = call_sid(24), CALLER, CALLED
        spanish.check(spanish.post(spanish.url("/api/calls/gather?seq=1"), spanish.params()))
        after = scrape(app)
    assert moved(before, after, fallbacks, flow="ventas", reason="webhook_error") == 2
    assert moved(before, after, fallbacks, flow="seguros", reason="webhook_error") == 1


def test_queues_agents_and_twilio_requests(
    client: TestClient, fake: FakeTwilio, settings: Settings
) -> None:
    """An agent made (offline), a caller presses 9 and hears the hold music (one waiting, for
    longer and longer), the agent becomes available (the scheduler asks Twilio to dequeue the
    caller: one REST request counted, the queue is empty again and the agent busy); an
    outbound call Twilio refuses is a request and a 'refused' error."""
    key = admin_key(settings)
    auth = {"Authorization": f"Bearer {key}"}
    made = client.post(
        "/api/agents",
        json={"id": "ana", "name": "Ana", "identity": "ana", "queues": {QUEUE: 5}},
        headers=auth,
    )
    assert made.status_code == 201, made.text
    before = scrape(client)
    assert value(before, "flowpbx_agents", status="offline") == 1
    assert value(before, "flowpbx_agents", status="available") == 0
    assert value(before, "flowpbx_queue_agents", queue=QUEUE, status="offline") == 1
    assert value(before, "flowpbx_queue_callers", queue=QUEUE) == 0
    assert value(before, "flowpbx_queue_longest_wait_seconds", queue=QUEUE) == 0

    sid = call_sid(5)
    fake.add_call(sid, from_=CALLER, to=CALLED)
    driver = TwilioDriver(client, fake.auth_token)
    driver.start(sid, from_=CALLER, to=CALLED)
    assert driver.press("9").one("Enqueue").text == QUEUE
    fake.enqueue(sid, QUEUE_SID)
    driver.wait(0)  # Twilio asks the wait URL: the caller takes their place
    waiting = scrape(client)
    assert value(waiting, "flowpbx_queue_callers", queue=QUEUE) == 1
    time.sleep(1.1)
    later = scrape(client)
    assert 1.0 <= value(later, "flowpbx_queue_longest_wait_seconds", queue=QUEUE) < 30

    status = client.put("/api/agents/ana/status", json={"status": "available"}, headers=auth)
    assert status.status_code == 200, status.text
    fake.wait(1, "member", timeout=WAIT_FOR)
    offered = scrape(client)
    assert moved(before, offered, "flowpbx_twilio_requests_total", operation="dequeue") == 1
    assert value(offered, "flowpbx_queue_callers", queue=QUEUE) == 0
    assert value(offered, "flowpbx_agents", status="offline") == 0
    assert value(offered, "flowpbx_agents", status="busy") == 1, "her phone rings"
    assert value(offered, "flowpbx_queue_agents", queue=QUEUE, status="busy") == 1

    fake.fail_next(status=400, code=21211, message="The 'To' number is not a valid phone number.")
    refused = client.post(
        "/api/calls", json={"to": "+34612345678", "flow": "seguros"}, headers=auth
    )
    assert refused.status_code == 502, refused.text
    after = scrape(client)
    assert moved(before, after, "flowpbx_twilio_requests_total", operation="create_call") == 1
    errors = "flowpbx_twilio_errors_total"
    assert moved(before, after, errors, operation="create_call", error="refused") == 1
    assert moved(before, after, errors, operation="dequeue", error="refused") == 0


@pytest.mark.anyio
async def test_twilio_out_of_reach_is_an_unreachable_error() -> None:
    """A Twilio that cannot be reached: a request and an 'unreachable' error."""
    labels = {"operation": "redirect"}
    requests_before = REGISTRY.get_sample_value("flowpbx_twilio_requests_total", labels) or 0
    errors = {"operation": "redirect", "error": "unreachable"}
    errors_before = REGISTRY.get_sample_value("flowpbx_twilio_errors_total", errors) or 0
    rest = TwilioRest(
        TwilioCredentials(
            account_sid="AC" + "5a" * 16,
            username="AC" + "5a" * 16,
            password="secret",
            base_url=f"http://127.0.0.1:{_closed_port()}",
        )
    )
    try:
        with pytest.raises(TwilioFailure, match="could not be reached"):
            await rest.redirect(call_sid(6), "https://pbx.example.test/api/calls/callback")
    finally:
        await rest.aclose()
    assert REGISTRY.get_sample_value("flowpbx_twilio_requests_total", labels) == (
        requests_before + 1
    )
    assert REGISTRY.get_sample_value("flowpbx_twilio_errors_total", errors) == errors_before + 1


def test_history_backlog_entries_and_age(settings: Settings) -> None:
    """Without a history writer the call's entries wait in Redis: the backlog counts them, its
    age grows, and its limit is what the streams keep."""
    quiet = dataclasses.replace(settings, history_writer=False, queue_scheduler=False)
    with TestClient(build_app(quiet), base_url=BASE_URL) as client:
        driver = TwilioDriver(client, settings.twilio_auth_token)
        driver.start(call_sid(7), from_=CALLER, to=CALLED)
        driver.call_status("ringing")
        first = scrape(client)
        time.sleep(1.1)
        second = scrape(client)
    assert value(first, "flowpbx_history_backlog_entries") == 2
    assert value(second, "flowpbx_history_backlog_entries") == 2
    assert value(second, "flowpbx_history_backlog_age_seconds") >= 1.0
    assert value(second, "flowpbx_history_backlog_limit_entries") == events_kept(quiet)


def test_a_metrics_token_guards_metrics(settings: Settings) -> None:
    """With FLOWPBX_METRICS_TOKEN, /metrics needs `Authorization: Bearer <token>`; the health
    endpoints stay open."""
    guarded = dataclasses.replace(settings, metrics_token="scrape-me")
    with TestClient(build_app(guarded), base_url=BASE_URL) as client:
        refused = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert value(scrape(client, Authorization="Bearer scrape-me"), "flowpbx_active_calls") == 0
        assert client.get("/readyz").status_code == 200
        assert client.get("/healthz").status_code == 200
    assert (refused.status_code, wrong.status_code) == (401, 401)
    assert refused.json()["error"] == "unauthorized"
    assert refused.headers["www-authenticate"] == "Bearer"
    assert "scrape-me" not in refused.text


# --- active calls in the stores ------------------------------------------------------------


def _new_call(n: int) -> NewCall:
    return NewCall(call_sid=call_sid(n), caller=CALLER, called=CALLED, direction=Direction.INBOUND)


def _report(n: int, status: CallStatus) -> Report:
    progress = CallProgress(
        status=status,
        sequence=1,
        timestamp=None,
        caller=CALLER,
        called=CALLED,
        direction=Direction.INBOUND,
    )
    return Report.of(call_sid(n), progress, time.time())


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["memory", "redis", "cluster"])
async def test_active_calls_counted_from_first_save_to_final_status(
    kind: str, redis_db: RedisServer, request: pytest.FixtureRequest
) -> None:
    """A call counts from its first save (not again on later saves) until a final status is
    reported; a status that is not final changes nothing; a call whose final status never
    comes stops counting after the call TTL. On one Redis and on a 3-master Redis Cluster
    (the count reads every shard's set, on every master)."""
    moment = [1000.0]
    raw: redis_client.Redis | redis_client.RedisCluster | None = None
    store: MemoryCallStore | RedisCallStore
    if kind == "memory":
        store = MemoryCallStore(60, clock=lambda: moment[0])
    elif kind == "redis":
        raw = redis_client.Redis(host=redis_db.host, port=redis_db.port)
        raw.flushdb()
        store = RedisCallStore.from_url(redis_db.url, 60)
    else:
        cluster: RedisClusterServer = request.getfixturevalue("shared_redis_cluster")
        cluster.flush()
        raw = redis_client.RedisCluster(host=cluster.host, port=cluster.ports[0])
        store = RedisCallStore.from_url(cluster.url, 60)
    loaded = LoadedFlow(load_flow(FLOWS / "seguros.yaml"), "v1", {})
    ctx = Context(flow=loaded.flow, version="v1", config={}, now=NOW)
    calls = range(10, 20)  # spread over shards, hence over the cluster's masters
    try:
        for n in calls:
            state = initial_state(_new_call(n), ctx)
            assert await store.save(state, revision=0, reply="<Response/>", record=None)
            assert await store.save(state, revision=1, reply="<Response/>", record=None)
        assert await store.active_calls() == len(calls)
        await store.report(_report(10, CallStatus.RINGING), close=False)
        assert await store.active_calls() == len(calls)
        await store.report(_report(10, CallStatus.COMPLETED), close=True)
        assert await store.active_calls() == len(calls) - 1
        if raw is None:
            moment[0] += 61
        else:
            # Started longer ago than the TTL: as if their final status never came.
            for n in calls:
                key = active_key(shard(call_sid(n)))
                raw.zadd(key, {call_key(call_sid(n)): time.time() - 61}, xx=True)
        assert await store.active_calls() == 0
    finally:
        await store.aclose()
        if raw is not None:
            raw.close()


def test_a_call_and_its_active_set_share_one_cluster_slot() -> None:
    """Each script touches one slot on a Redis Cluster: the call, its events and its shard's
    set of active calls."""
    for n in range(200):
        sid = call_sid(n)
        number = shard(sid)
        slots = {
            key_slot(k.encode()) for k in (call_key(sid), stream_key(number), active_key(number))
        }
        assert len(slots) == 1, sid


# --- several processes ---------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _default_folder(workdir: Path, port: int) -> Path:
    """The metrics folder of `flowpbx serve --workers` on `port` run from `workdir`."""
    return workdir / "data" / f"metrics-{socket.gethostname()}-{port}"


def _incoming(server: Server, n: int) -> None:
    url = server.base_url + "/api/calls/incoming"
    params = inbound_params(call_sid(n), CALLER, CALLED)
    response = httpx.post(url, data=params, headers=signed_headers(TOKEN, url, params), timeout=10)
    assert response.status_code == 200, response.text
    assert "<Gather" in response.text


def test_two_processes_sharing_a_metrics_directory_are_summed(
    tmp_path: Path, redis_db: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `flowpbx serve` processes (as two workers would) on one Redis and one
    PROMETHEUS_MULTIPROC_DIR, prepared by `prepare_multiprocess` (stale files from an earlier
    run removed): 3 calls to one and 2 to the other, and each one's /metrics says 5 incoming
    webhooks, 5 steps and 5 active calls; neither counts its shared state twice."""
    redis_client.Redis(host=redis_db.host, port=redis_db.port).flushdb()
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")  # restored after the test
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"left by an earlier run")
    prepared = metrics.prepare_multiprocess(directory)
    assert prepared == directory
    assert os.environ[metrics.MULTIPROC_ENV] == str(directory)
    assert list(directory.iterdir()) == []
    env = environment(
        REDIS_HOST=redis_db.host,
        REDIS_PORT=str(redis_db.port),
        FLOWPBX_HOURS_OVERRIDE="open",
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    )
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    with serving(workdir(first_dir), env) as first, serving(workdir(second_dir), env) as second:
        for n in range(3):
            _incoming(first, 100 + n)
        for n in range(2):
            _incoming(second, 200 + n)
        seen = []
        for server in (first, second):
            with httpx.Client(base_url=server.base_url, timeout=10) as http:
                seen.append(scrape(http))
    for samples in seen:
        incoming = {"route": "/api/calls/incoming"}
        assert value(samples, "flowpbx_webhook_duration_seconds_count", **incoming) == 5
        assert value(samples, "flowpbx_webhook_responses_total", **incoming, status="200") == 5
        assert value(samples, "flowpbx_steps_total", flow="seguros", kind="menu") == 5
        assert value(samples, "flowpbx_active_calls") == 5
        assert value(samples, "flowpbx_ready", check="redis") == 1
        assert not any(name.startswith("process_") for name, _ in samples), "per process"
    files = sorted(path.name.split("_")[0] for path in directory.iterdir())
    assert files.count("counter") == 2, files
    assert files.count("histogram") == 2, files


def test_prepare_multiprocess_names_what_cannot_be_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path that is a file cannot hold metric files: the error names the variable and the
    path; a missing directory is made; a worker that exited leaves its counters counted."""
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")
    taken = tmp_path / "file"
    taken.write_text("not a directory", encoding="utf-8")
    with pytest.raises(metrics.MetricsSetupError, match=r"PROMETHEUS_MULTIPROC_DIR=.*file"):
        metrics.prepare_multiprocess(taken)
    made = metrics.prepare_multiprocess(tmp_path / "new" / "metrics")
    assert made.is_dir()
    # This process chose its value class when it imported prometheus_client: its metrics
    # stay its own, and /metrics in this process keeps rendering them.
    assert metrics.multiprocess_dir() is None
    (made / "gauge_livesum_12345.db").write_bytes(b"")  # a live gauge of worker 12345
    (made / "counter_12345.db").write_bytes(b"")
    metrics.worker_exited(12345)
    assert [path.name for path in made.iterdir()] == ["counter_12345.db"], "counts stay"


def test_every_metric_of_the_code_is_documented(client: TestClient) -> None:
    """docs/operations.md's metric table lists exactly the flowpbx_ families /metrics has."""
    exposed = {
        family.name
        for family in text_string_to_metric_families(client.get("/metrics").text)
        if family.name.startswith("flowpbx_")
    }
    documented = set(_documented_metrics())
    assert exposed == documented


def _documented_metrics() -> Mapping[str, str]:
    """Metric name (as Prometheus queries it, without _total) -> its type, from the table."""
    text = (FLOWS.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("## 4. Metrics", 1)[1].split("\n## ", 1)[0]
    found: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("flowpbx_"):
            found[cells[0].removesuffix("_total")] = cells[1]
    return found


def test_metrics_of_serve_with_two_workers_count_every_worker(
    tmp_path: Path, redis_db: RedisServer
) -> None:
    """The issue's "done when": `flowpbx serve --workers 2` (FLOWPBX_WORKERS=2) on Redis, a
    simulated run of calls spread over its workers by the kernel (until both have answered
    some), and every scrape, whichever worker answers it (scrapes on new connections until
    both workers have answered /metrics, each known by the `pid` of /health asked on the same
    connection), shows the counters of all of them moving together, and the whole system's
    active calls."""
    redis_client.Redis(host=redis_db.host, port=redis_db.port).flushdb()
    env = environment(
        REDIS_HOST=redis_db.host,
        REDIS_PORT=str(redis_db.port),
        FLOWPBX_HOURS_OVERRIDE="open",
        FLOWPBX_WORKERS="2",
    )
    incoming = {"route": "/api/calls/incoming"}
    with serving(workdir(tmp_path), env) as server:
        shared = _default_folder(tmp_path, server.port)

        def writers() -> set[str]:
            return {path.name.split("_")[1] for path in shared.glob("counter_*.db")}

        before = _scrape_every_worker(server, 2)
        sent = 0
        while sent < 8 or (len(writers()) < 2 and sent < 60):
            _incoming(server, 300 + sent)
            sent += 1
        after = _scrape_every_worker(server, 2)
        assert len(writers()) == 2, f"one worker answered all {sent} webhooks"
    assert before.keys() == after.keys()
    for samples in before.values():
        assert value(samples, "flowpbx_webhook_duration_seconds_count", **incoming) == 0
    for samples in after.values():
        assert value(samples, "flowpbx_webhook_duration_seconds_count", **incoming) == sent
        assert value(samples, "flowpbx_steps_total", flow="seguros", kind="menu") == sent
        assert value(samples, "flowpbx_active_calls") == sent


def _scrape_every_worker(server: Server, workers: int) -> dict[int, Samples]:
    """A scrape answered by each of the server's `workers` worker processes, by their pid:
    scrapes on new connections (each goes to one worker, which /health names before and after
    the scrape on that connection) until every worker has answered one."""
    scraped: dict[int, Samples] = {}
    deadline = time.monotonic() + 20
    while len(scraped) < workers:
        assert time.monotonic() < deadline, f"only workers {sorted(scraped)} answered"
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            pid = http.get("/health").json()["pid"]
            samples = scrape(http)
            assert http.get("/health").json()["pid"] == pid, "the connection changed worker"
        scraped.setdefault(pid, samples)
    return scraped


def _dead_pid() -> int:
    """The id of a process that has exited."""
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    return gone.pid


def test_prepare_multiprocess_removes_only_the_files_of_processes_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder's files name the process that wrote them (counter_<pid>.db,
    gauge_livesum_<pid>.db): those of processes that have exited are removed (their counts
    would be added to this run's), and so are those bearing the id of the process preparing
    the folder (it has recorded nothing yet: an earlier process had its id, as pid 1 of a
    container started again); those of other live processes (a server running on the folder)
    are kept, and so are files that are not prometheus_client's."""
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")
    directory = tmp_path / "metrics"
    directory.mkdir()
    dead = _dead_pid()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        kept = {
            f"counter_{alive.pid}.db",
            f"histogram_{alive.pid}.db",
            f"gauge_livesum_{alive.pid}.db",
            "notes.txt",
        }
        removed = {
            f"counter_{dead}.db",
            f"histogram_{dead}.db",
            f"gauge_all_{dead}.db",
            f"counter_{os.getpid()}.db",
            "counter_unknown.db",
        }
        for name in kept | removed:
            (directory / name).write_bytes(b"")
        metrics.prepare_multiprocess(directory)
        assert {path.name for path in directory.iterdir()} == kept
    finally:
        alive.kill()
        alive.wait()


def test_a_second_serve_on_the_port_leaves_the_running_servers_metrics_alone(
    tmp_path: Path, redis_db: RedisServer
) -> None:
    """`flowpbx serve --workers 2` counts 10 calls; a second `flowpbx serve --workers 2` started
    on its port, from the same folder (so on the same metrics folder), fails to listen and
    touches nothing: 5 calls later the running server counts 15, and the file a process gone
    left in the folder is still there (one that cleaned the folder before binding the port
    would have removed it, even keeping the live processes' files)."""
    redis_client.Redis(host=redis_db.host, port=redis_db.port).flushdb()
    env = environment(
        REDIS_HOST=redis_db.host, REDIS_PORT=str(redis_db.port), FLOWPBX_HOURS_OVERRIDE="open"
    )
    cwd = workdir(tmp_path)
    count = "flowpbx_webhook_duration_seconds_count"
    incoming = {"route": "/api/calls/incoming"}
    with serving(cwd, env, args=["--workers", "2"]) as server:
        for n in range(10):
            _incoming(server, 500 + n)
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            assert value(scrape(http), count, **incoming) == 10
        # A file of a process gone, holding nothing (prometheus_client's own format, so that
        # scrapes read it): only the start of a server cleans it away.
        gone = _default_folder(cwd, server.port) / f"counter_{_dead_pid()}.db"
        MmapedDict(str(gone)).close()  # type: ignore[no-untyped-call]
        command = ["serve", "--port", str(server.port), "--flows", str(FLOWS), "--workers", "2"]
        second = subprocess.run(
            [str(FLOWPBX), *command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"cannot listen on 0.0.0.0:{server.port}" in second.stderr
        assert gone.exists(), "the second serve cleaned the folder before it bound the port"
        for n in range(5):
            _incoming(server, 510 + n)
        after = _scrape_every_worker(server, 2)
    for samples in after.values():
        assert value(samples, count, **incoming) == 15
        assert value(samples, "flowpbx_steps_total", flow="seguros", kind="menu") == 15


def test_serve_with_one_worker_and_a_multiprocess_folder_starts_from_zero(tmp_path: Path) -> None:
    """`flowpbx serve` (one worker) with PROMETHEUS_MULTIPROC_DIR: the files a previous run
    left in the folder are removed at the start, as with --workers (its counts start again
    from 0); the files left are the running server's."""
    directory = tmp_path / "metrics"
    env = environment(FLOWPBX_HOURS_OVERRIDE="open", PROMETHEUS_MULTIPROC_DIR=str(directory))
    count = "flowpbx_webhook_duration_seconds_count"
    incoming = {"route": "/api/calls/incoming"}
    with serving(workdir(tmp_path), env) as first:
        for n in range(3):
            _incoming(first, 600 + n)
        with httpx.Client(base_url=first.base_url, timeout=10) as http:
            assert value(scrape(http), count, **incoming) == 3
    with serving(workdir(tmp_path), env) as second:
        _incoming(second, 610)
        with httpx.Client(base_url=second.base_url, timeout=10) as http:
            samples = scrape(http)
        left = sorted(path.name for path in directory.iterdir())
    assert value(samples, count, **incoming) == 1
    assert left, "the running server's files"
    assert all(name.endswith(f"_{second.process.pid}.db") for name in left), left


def test_serve_workers_answer_twilio_when_their_metrics_folder_is_gone(
    tmp_path: Path, redis_db: RedisServer
) -> None:
    """The reviewer's trial: `flowpbx serve --workers 2`, then `rm -rf data/metrics-<host>-<port>`:
    every webhook still answers 200 TwiML (a new call, a step, a lost call recovered), and each
    worker says once per kind of metric that it cannot record them, not once per webhook.
    /metrics keeps answering on every worker (the folder made again), with the shared state:
    Prometheus must not take the server for down."""
    redis_client.Redis(host=redis_db.host, port=redis_db.port).flushdb()
    env = environment(
        REDIS_HOST=redis_db.host, REDIS_PORT=str(redis_db.port), FLOWPBX_HOURS_OVERRIDE="open"
    )
    with serving(workdir(tmp_path), env, args=["--workers", "2"]) as server:
        _scrape_every_worker(server, 2)  # both started (a worker makes the folder at its start)
        folder = _default_folder(tmp_path, server.port)
        shutil.rmtree(folder)
        for n in range(12):
            _incoming(server, 700 + n)
        url = server.base_url + "/api/calls/gather?seq=3"
        params = inbound_params(call_sid(720), CALLER, CALLED) | {"Digits": "1"}
        lost = httpx.post(url, data=params, headers=signed_headers(TOKEN, url, params), timeout=10)
        assert lost.status_code == 200, lost.text
        assert "Volvemos al menú principal" in lost.text
        for samples in _scrape_every_worker(server, 2).values():  # each scrape answered 200
            assert value(samples, "flowpbx_ready", check="redis") == 1
            assert ("flowpbx_active_calls", frozenset()) in samples
        assert folder.is_dir()
    output = server.output()
    assert "Traceback" not in output
    assert 1 <= output.count(f"{folder.name} was gone and is made again") <= 2, output
    for kind in ("webhooks", "steps"):
        assert 1 <= output.count(f"{kind} cannot be recorded") <= 2, output


_WRITE_METRICS = """
import sys
from flowpbx import metrics
for n in range(int(sys.argv[1])):
    metrics.webhook_answered(f"/route/{n}", 200, 0.01)
    metrics.CallMetrics().stepped("flow", f"kind-{n}")
sys.stdout.buffer.write(metrics.counters())
"""


def _write_metrics(directory: Path, routes: int, *setup: str) -> subprocess.CompletedProcess[str]:
    """A process in multiprocess mode on `directory` (after the lines `setup`) recording a
    webhook and a step on each of `routes` routes; its output is its /metrics counters."""
    env = environment(PROMETHEUS_MULTIPROC_DIR=str(directory))
    script = "\n".join(setup) + _WRITE_METRICS
    return subprocess.run(
        [sys.executable, "-c", script, str(routes)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_metric_files_have_their_blocks_allocated(tmp_path: Path) -> None:
    """In multiprocess mode every metric file has its disk blocks, when made and when grown:
    prometheus_client's own are sparse, and a write through mmap to a page without a block on
    a full disk is a SIGBUS that kills the process. Its counts are intact."""
    directory = tmp_path / "metrics"
    done = _write_metrics(directory, 400)
    files = sorted(directory.iterdir())
    assert [path.name.split("_")[0] for path in files] == ["counter", "histogram"]
    for path in files:
        stat = path.stat()
        assert stat.st_size > 1 << 16, f"{path.name} grew past its first 64 KiB"
        assert stat.st_blocks * 512 >= stat.st_size, f"{path.name} is sparse"
    samples = parse(done.stdout)
    assert value(samples, "flowpbx_steps_total", flow="flow", kind="kind-399") == 1
    assert value(samples, "flowpbx_webhook_duration_seconds_count", route="/route/0") == 1
    assert sum(v for (name, _), v in samples.items() if name == "flowpbx_steps_total") == 400


def test_a_full_disk_leaves_metrics_out_and_scrapes_answering(tmp_path: Path) -> None:
    """A disk with no room for a metric file (posix_fallocate failing as on a full disk): the
    metrics are left out and said in the log, no empty file is left for /metrics to choke on,
    and once there is room they are recorded again."""
    directory = tmp_path / "metrics"
    full = [
        "import errno, os",
        "real = os.posix_fallocate",
        "def full(fd, offset, length):",
        "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))",
        "os.posix_fallocate = full",
        "from flowpbx import metrics",
        "metrics.webhook_answered('/api/calls/incoming', 200, 0.01)",
        "assert metrics.counters() == b'', metrics.counters()",
        "os.posix_fallocate = real",
    ]
    done = _write_metrics(directory, 1, *full)
    assert "webhooks cannot be recorded (OSError: [Errno 28] No space left on device)" in (
        done.stderr
    )
    assert sorted(path.name.split("_")[0] for path in directory.iterdir()) == [
        "counter",
        "histogram",
    ]
    samples = parse(done.stdout)
    seconds = "flowpbx_webhook_duration_seconds_count"
    assert value(samples, seconds, route="/route/0") == 1
    assert value(samples, seconds, route="/api/calls/incoming") == 0, "recorded nowhere"


def test_the_default_metrics_folder_is_per_host_and_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`<FLOWPBX_RUN_DIR>/metrics-<hostname>-<port>`: two containers mounting one data volume
    (each its own hostname and process ids) never share, so never clean, each other's files."""
    from flowpbx.workers import metrics_dir

    settings = Settings(run_dir=tmp_path, port=3020)
    assert metrics_dir(settings) == tmp_path / f"metrics-{socket.gethostname()}-3020"
    monkeypatch.setattr(socket, "gethostname", lambda: "blue")
    blue = metrics_dir(settings)
    monkeypatch.setattr(socket, "gethostname", lambda: "green")
    green = metrics_dir(settings)
    assert (blue.name, green.name) == ("metrics-blue-3020", "metrics-green-3020")
    monkeypatch.setattr(socket, "gethostname", lambda: "a/../b")
    assert metrics_dir(settings).parent == tmp_path


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_with_an_unusable_metrics_folder_says_why_in_one_line(
    tmp_path: Path, redis_db: RedisServer, workers: str
) -> None:
    """PROMETHEUS_MULTIPROC_DIR naming a folder that cannot be made: `flowpbx serve` stops with
    the usual one line naming it, not a traceback."""
    env = environment(
        REDIS_HOST=redis_db.host,
        REDIS_PORT=str(redis_db.port),
        PROMETHEUS_MULTIPROC_DIR="/proc/nope",
    )
    command = ["serve", "--port", str(_closed_port()), "--flows", str(FLOWS), "--workers", workers]
    done = subprocess.run(
        [str(FLOWPBX), *command],
        cwd=workdir(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(
        "flowpbx cannot start: PROMETHEUS_MULTIPROC_DIR='/proc/nope' cannot hold metric files"
    ), done.stderr
