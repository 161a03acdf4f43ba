"""Call history end to end: calls driven through the real app with signed webhooks, status
and recording callbacks delivered shuffled and twice, the history writer running inside the
app; then the database holds exactly what happened. On SQLite with the memory store (the
embedded default), on a real PostgreSQL with a real Redis, and on SQLite with a real 3-master
Redis Cluster; and a PostgreSQL outage in the middle of a run loses and duplicates nothing.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from flowpbx.db.database import Database
from flowpbx.db.models import Call, CallParty, CallStep, Recording
from servers import RedisClusterServer, RedisServer, postgres_server, redis_server
from test_api import Api, running, settings_for, softphone
from twilio_fake import ACCOUNT_SID, TestClient, TwilioDriver, call_sid, inbound_params
from twilio_rest import TwilioRest, twilio_rest

COMPANY = "+34910000000"
T0 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
RECORDINGS = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/"


def recording_sid(n: int) -> str:
    return f"RE{n:032x}"


@dataclass
class Expected:
    """What one call did, counted by hand."""

    sid: str
    caller: str
    duration: int
    nodes: list[str]
    """The nodes entered, in order."""
    options: list[str]
    end_reason: str | None
    answered: bool
    started: dt.datetime
    price: str | None = None
    recordings: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    """RecordingSid: (final status, duration)."""


MENU = ["horario", "bienvenida", "menu_principal"]


def _rfc2822(moment: dt.datetime) -> str:
    return email.utils.format_datetime(moment)


def status_callbacks(call: Expected) -> list[dict[str, str]]:
    """ringing, in-progress and completed, as Twilio sends them to the status callback."""
    sent = []
    for seq, status in enumerate(("ringing", "in-progress", "completed")):
        at = call.started + dt.timedelta(seconds=call.duration if seq == 2 else seq)
        params = inbound_params(call.sid, call.caller, COMPANY, status)
        params |= {
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(seq),
            "Timestamp": _rfc2822(at),
        }
        if status == "completed":
            params |= {"CallDuration": str(call.duration), "Duration": "1"}
            if call.price is not None:
                params |= {"Price": call.price, "PriceUnit": "USD"}
        sent.append(params)
    return sent


def recording_callback(
    sid: str, rec: str, status: str, duration: int | None, source: str
) -> dict[str, str]:
    params = {
        "AccountSid": ACCOUNT_SID,
        "CallSid": sid,
        "RecordingSid": rec,
        "RecordingUrl": RECORDINGS + rec,
        "RecordingStatus": status,
        "RecordingChannels": "2" if source == "DialVerb" else "1",
        "RecordingSource": source,
        "RecordingStartTime": _rfc2822(T0),
        "ErrorCode": "0",
    }
    if duration is not None:
        params["RecordingDuration"] = str(duration)
    return params


def drive_calls(driver: TwilioDriver, first: int) -> list[Expected]:
    """Four calls through the Spanish menu: a department answers (recorded); a department
    does not answer and the caller leaves a voicemail; a caller hangs up in the menu; a caller
    hangs up waiting for an agent."""
    calls: list[Expected] = []

    sid = call_sid(first)
    driver.start(sid, from_="+34600000001", to=COMPANY)
    driver.press("1")
    reply = driver.dial_result("completed", duration=42)
    dial_recording = driver.sent[-1].params["RecordingSid"]
    assert not reply.has("Gather")
    calls.append(
        Expected(
            sid, "+34600000001", 60, [*MENU, "vida", "llamar_vida"], ["1"], "connected",
            answered=True, started=T0, price="-0.02",
            recordings={dial_recording: ("completed", 40)},
        )
    )  # fmt: skip

    sid = call_sid(first + 1)
    driver.start(sid, from_="+34600000002", to=COMPANY)
    driver.press("2")
    driver.dial_result("no-answer")
    voicemail = recording_sid(first + 1)
    driver.record(RECORDINGS + voicemail, duration=15)
    calls.append(
        Expected(
            sid, "+34600000002", 45, [*MENU, "salud", "llamar_salud", "buzon_salud", "despedida"],
            ["2"], "hangup", answered=False, started=T0 + dt.timedelta(hours=1),
            price="-0.0125", recordings={voicemail: ("completed", 15)},
        )
    )  # fmt: skip

    sid = call_sid(first + 2)
    driver.start(sid, from_="+34600000003", to=COMPANY)
    calls.append(
        Expected(
            sid, "+34600000003", 20, MENU, [], None, answered=False,
            started=T0 + dt.timedelta(hours=2),
        )
    )  # fmt: skip

    sid = call_sid(first + 3)
    driver.start(sid, from_="+34600000004", to=COMPANY)
    driver.press("9")
    driver.queue_result("hangup", queue_time=70)
    calls.append(
        Expected(
            sid, "+34600000004", 90, [*MENU, "agente_aviso", "agente"], ["9"], "caller_hung_up",
            answered=False, started=T0 + dt.timedelta(days=1),
        )
    )  # fmt: skip
    return calls


def deliver_callbacks(driver: TwilioDriver, calls: list[Expected], seed: int) -> None:
    """Every status and recording callback, shuffled, a third of them twice."""
    sent: list[tuple[str, dict[str, str]]] = []
    for call in calls:
        sent += [("/api/webhooks/call-status", p) for p in status_callbacks(call)]
        for rec, (_, duration) in call.recordings.items():
            source = "RecordVerb" if call.nodes[-1] == "despedida" else "DialVerb"
            if source == "DialVerb":
                progress = recording_callback(call.sid, rec, "in-progress", None, source)
                sent.append(("/api/webhooks/recording-status", progress))
            done = recording_callback(call.sid, rec, "completed", duration, source)
            sent.append(("/api/webhooks/recording-status", done))
    rng = random.Random(seed)
    sent += rng.sample(sent, len(sent) // 3)
    rng.shuffle(sent)
    for path, params in sent:
        response = driver.post(driver.url(path), params)
        assert response.status_code == 204, response.text


def wait_for_history(client: TestClient, timeout: float = 45.0) -> dict[str, Any]:
    """Until the history writer has stored everything waiting; the /health history block."""
    deadline = time.monotonic() + timeout
    while True:
        history: dict[str, Any] = client.get("/health").json()["history"]
        if history["backlog"] == 0 and history["writer"] == "writing":
            return history
        assert time.monotonic() < deadline, f"history still waiting: {history}"
        time.sleep(0.05)


def check_stored(db: Database, calls: list[Expected]) -> None:
    """The database holds each call once, with exactly its path, status and recordings."""
    with db.session() as session:
        rows = {c.sid: c for c in session.scalars(select(Call))}
        assert sorted(rows) == sorted(c.sid for c in calls)
        for call in calls:
            row = rows[call.sid]
            where = f"call {call.sid}"
            assert (row.from_number, row.to_number, row.direction) == (
                call.caller,
                COMPANY,
                "inbound",
            ), where
            assert (row.status, row.duration) == ("completed", call.duration), where
            assert row.started_at == call.started, where
            assert row.ended_at == call.started + dt.timedelta(seconds=call.duration), where
            assert (row.answered_at is not None) == call.answered, where
            assert row.end_reason == call.end_reason, where
            assert row.last_node == call.nodes[-1], where
            assert row.flow == "seguros", where
            expected_price = None if call.price is None else int(float(call.price) * 1_000_000)
            assert row.price_micros == expected_price, where
            steps = session.scalars(
                select(CallStep)
                .where(CallStep.call_sid == call.sid)
                .order_by(CallStep.seq, CallStep.position)
            ).all()
            assert [s.node for s in steps if s.event == "node_entered"] == call.nodes, where
            assert [s.keys for s in steps if s.event == "option_chosen"] == call.options, where
            assert [s.event for s in steps].count("call_started") == 1, where
            recordings = session.scalars(
                select(Recording).where(Recording.call_sid == call.sid)
            ).all()
            assert {r.sid: (r.status, r.duration) for r in recordings} == call.recordings, where
            for recording in recordings:
                assert recording.url == RECORDINGS + recording.sid, where
        parties = session.scalar(select(func.count()).select_from(CallParty))
        assert parties == 0  # no softphone took part in these calls


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_api(api: Api, calls: list[Expected]) -> None:
    """History, one call, its recordings and analytics answer what happened (a hand count)."""
    admin = {"Authorization": f"Bearer {api.admin}"}
    listed = api.client.get("/api/calls/history", headers=admin).json()
    newest_first = sorted(calls, key=lambda c: c.started, reverse=True)
    assert listed == {
        "calls": [
            {
                "sid": c.sid,
                "from": c.caller,
                "to": COMPANY,
                "status": "completed",
                "direction": "inbound",
                "duration": str(c.duration),
                "startTime": _iso(c.started),
                "endTime": _iso(c.started + dt.timedelta(seconds=c.duration)),
                "price": c.price,
                "priceUnit": None if c.price is None else "USD",
            }
            for c in newest_first
        ],
        "nextCursor": None,
    }
    for call in calls:
        one = api.client.get(f"/api/calls/{call.sid}", headers=admin).json()
        entered = [step["node"] for step in one["path"] if step["event"] == "node_entered"]
        assert entered == call.nodes
        assert {r["sid"]: (r["status"], r["duration"]) for r in one["recordings"]} == (
            call.recordings
        )
        for rec in call.recordings:
            got = api.client.get(f"/api/recordings/{rec}", headers=admin).json()
            assert got == {"url": RECORDINGS + rec + ".mp3"}

    today = dt.datetime.now(dt.UTC).date()
    query = f"from={T0.date()}&to={today}"
    stats = api.client.get(f"/api/analytics?{query}", headers=admin).json()
    assert (stats["calls"], stats["finished"], stats["answered"], stats["abandoned"]) == (
        4,
        4,
        1,
        2,
    )
    assert (stats["answerRate"], stats["abandonmentRate"]) == (0.25, 0.5)
    assert (stats["averageDuration"], stats["p90Duration"]) == (53.8, 90)  # 215 s / 4, to a tenth
    assert stats["byStatus"] == {"completed": 4}
    assert stats["byDirection"] == {"inbound": 4}
    days = {d["date"]: d["calls"] for d in stats["perDay"] if d["calls"]}
    assert days == {"2026-11-30": 3, "2026-12-01": 1}
    hours = {h["hour"]: h["calls"] for h in stats["perHour"] if h["calls"]}
    assert hours == {9: 2, 10: 1, 11: 1}
    chosen = {(o["node"], o["key"], o["target"]): o["times"] for o in stats["menuOptions"]}
    assert chosen == {
        ("menu_principal", "1", "vida"): 1,
        ("menu_principal", "2", "salud"): 1,
        ("menu_principal", "9", "agente_aviso"): 1,
    }
    exits = {(e["node"], e["reason"]): e["calls"] for e in stats["exits"]}
    assert exits == {
        ("llamar_vida", "connected"): 1,
        ("despedida", "hangup"): 1,
        ("menu_principal", "hung_up"): 1,
        ("agente", "caller_hung_up"): 1,
    }
    assert stats["cost"] == {"USD": "-0.0325"}


@pytest.fixture(scope="module")
def shared_fake() -> Iterator[TwilioRest]:
    with twilio_rest() as server:
        yield server


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def history_api(database_url: str, shared_fake: TwilioRest, redis: RedisServer) -> Iterator[Api]:
    """The app on SQLite with the memory store, or on PostgreSQL with Redis."""
    shared_fake.reset()
    overrides: dict[str, object] = {}
    if database_url.startswith("postgresql"):
        import redis as redis_client

        redis_client.Redis(host=redis.host, port=redis.port).flushdb()
        overrides = {"redis_host": redis.host, "redis_port": redis.port}
    yield from running(settings_for(database_url, shared_fake, **overrides), shared_fake)


def test_history_holds_exactly_what_happened(history_api: Api) -> None:
    """Four calls, their callbacks shuffled and duplicated: each call stored once, with its
    path, final status, duration, price and recordings; the history, call, recording and
    analytics endpoints answer the hand count."""
    driver = TwilioDriver(history_api.client, history_api.fake.auth_token)
    calls = drive_calls(driver, 1)
    deliver_callbacks(driver, calls, seed=8)
    wait_for_history(history_api.client)
    check_stored(history_api.db, calls)
    check_api(history_api, calls)


def test_history_holds_exactly_what_happened_on_a_redis_cluster(
    shared_fake: TwilioRest, shared_redis_cluster: RedisClusterServer, tmp_path: Path
) -> None:
    """The same calls with call state, the queues and the call-event streams on a 3-master
    Redis Cluster (REDIS_CLUSTER_NODES): the writer, reading each stream on its own there,
    stores exactly what happened."""
    shared_redis_cluster.flush()
    shared_fake.reset()
    url = f"sqlite:///{tmp_path / 'history.sqlite3'}"
    settings = settings_for(url, shared_fake, redis_cluster_nodes=shared_redis_cluster.nodes)
    for api in running(settings, shared_fake):
        test_history_holds_exactly_what_happened(api)


def test_history_outage_of_postgresql_loses_and_duplicates_nothing(
    shared_fake: TwilioRest, redis: RedisServer
) -> None:
    """PostgreSQL stops in the middle of a run: calls go on, their history waits in Redis
    (visible in /health), and once PostgreSQL is back every call and step is stored once."""
    import redis as redis_client

    redis_client.Redis(host=redis.host, port=redis.port).flushdb()
    shared_fake.reset()
    with postgres_server() as pg:
        settings = settings_for(pg.url, shared_fake, redis_host=redis.host, redis_port=redis.port)
        for api in running(settings, shared_fake):
            driver = TwilioDriver(api.client, shared_fake.auth_token)
            before = drive_calls(driver, 101)
            deliver_callbacks(driver, before, seed=1)
            wait_for_history(api.client)
            api.db.engine.dispose()

            pg.stop()
            during = drive_calls(driver, 201)  # every webhook still answers TwiML
            deliver_callbacks(driver, during, seed=2)
            deadline = time.monotonic() + 30
            while True:
                history = api.client.get("/health").json()["history"]
                if history["writer"] == "waiting for the database":
                    break
                assert time.monotonic() < deadline, history
                time.sleep(0.05)
            assert history["backlog"] > 0
            assert history["oldestSeconds"] is not None

            pg.start()
            wait_for_history(api.client)
            check_stored(api.db, before + during)


def test_softphone_and_placed_calls_are_found_by_user(history_api: Api) -> None:
    """A softphone's own call and a call the REST API placed for a softphone are in history
    under that identity (`userId`); an identity key sees its own calls only."""
    softphone(history_api, "+34612345678", identity="ana")
    placed = history_api.call(history_api.admin, to="+34699000111", identity="bob")
    assert placed.status_code == 201, placed.text
    placed_sid = placed.json()["sid"]
    history_api.fake.answer(placed_sid, history_api.client)
    history_api.fake.send_status(placed_sid, "completed", history_api.client)
    wait_for_history(history_api.client)

    def page(key: str, query: str = "") -> tuple[int, list[dict[str, Any]]]:
        response = history_api.client.get(
            f"/api/calls/history{query}", headers={"Authorization": f"Bearer {key}"}
        )
        return response.status_code, response.json().get("calls", [])

    status, ana = page(history_api.ana)
    assert status == 200
    assert [(c["sid"], c["from"], c["to"], c["direction"]) for c in ana] == [
        ("CA" + "e0" * 16, "client:ana", "+34612345678", "outbound")
    ]
    status, bob = page(history_api.admin, "?userId=bob")
    assert [(c["sid"], c["to"], c["status"], c["direction"]) for c in bob] == [
        (placed_sid, "+34699000111", "completed", "outbound")
    ]
    assert page(history_api.bob)[1] == bob
    assert page(history_api.ana, "?userId=bob")[0] == 403
