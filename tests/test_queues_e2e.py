"""Option 9 of the Spanish menu end to end: the real app (shipped flows, real Redis, SQLite), its
queue scheduler running, Twilio played by signed webhooks and the local fake of its REST API.

Callers press 9, hear hold music and their place in Spanish; agents marked available get the
callers in round-robin order (Twilio's Queue Member API takes the one whose turn it is); an
agent who does not answer sends the caller back to the front and the next agent is tried; a
callback keeps its place and is placed when its turn comes; a caller who hangs up leaves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis as redis_client

from flowpbx.app import build_app
from flowpbx.db import apikeys
from flowpbx.db.database import Database
from servers import RedisClusterServer, RedisServer, redis_server
from test_api import NOW, settings_for
from twilio_fake import BASE_URL, Reply, TestClient, TwilioDriver, call_sid, inbound_params
from twilio_rest import Received, TwilioRest, twilio_rest

QUEUE = "general-queue"
QUEUE_SID = "QU" + "0f" * 16
WAIT_FOR = 10.0
ON_A_CLUSTER_TOO = pytest.mark.parametrize("office", ["redis", "cluster"], indirect=True)
"""The test runs on one Redis and on the session's 3-master Redis Cluster."""


@pytest.fixture(scope="module")
def fake() -> Iterator[TwilioRest]:
    with twilio_rest() as server:
        yield server


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@dataclass
class Office:
    client: TestClient
    fake: TwilioRest
    admin: str
    forget: Callable[[], None] = lambda: None
    """Empties the office's Redis (every master of a cluster): Redis lost its data."""

    def api(self, method: str, path: str, **body: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin}"}
        response: httpx.Response = self.client.request(
            method, path, headers=headers, json=body or None
        )
        return response

    def agent(self, agent_id: str) -> None:
        response = self.api(
            "POST",
            "/api/agents",
            id=agent_id,
            name=agent_id.title(),
            identity=agent_id,
            queues={QUEUE: 5},
        )
        assert response.status_code == 201, response.text

    def status(self, agent_id: str, status: str) -> dict[str, Any]:
        response = self.api("PUT", f"/api/agents/{agent_id}/status", status=status)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def queue(self) -> dict[str, Any]:
        response = self.api("GET", f"/api/queues/{QUEUE}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def caller(self, n: int, number: str) -> Caller:
        return Caller(self, TwilioDriver(self.client, self.fake.auth_token), call_sid(n), number)

    def dequeued(self, count: int) -> list[Received]:
        """The first `count` Queue Member updates (callers taken out of Twilio's queue)."""
        return self.fake.wait(count, "member", timeout=WAIT_FOR)

    def created(self, count: int) -> list[Received]:
        return self.fake.wait(count, "create", timeout=WAIT_FOR)


@dataclass
class Caller:
    office: Office
    driver: TwilioDriver
    sid: str
    number: str
    _enqueued: Reply | None = None

    def press_9(self) -> Reply:
        self.office.fake.add_call(self.sid, from_=self.number, to="+34910000000")
        self.driver.start(self.sid, from_=self.number, to="+34910000000")
        reply = self.driver.press("9")
        assert reply.one("Enqueue").text == QUEUE
        self._enqueued = reply
        self.office.fake.enqueue(self.sid, QUEUE_SID)
        return reply

    def wait(self, queue_time: int = 0) -> Reply:
        """Twilio asks the wait URL (the hold music ran out); keys go to what it answered."""
        self.driver._reply = self.enqueued
        heard = self.driver.wait(queue_time)
        self.driver._reply = heard
        return heard

    def left(self, result: str, queue_time: int = 0) -> Reply:
        """Twilio runs the <Enqueue> action: the caller left its queue with `result`."""
        self.driver._reply = self.enqueued
        return self.driver.queue_result(result, queue_time)

    @property
    def enqueued(self) -> Reply:
        assert self._enqueued is not None, "not in a queue"
        return self._enqueued

    def connect(self, url: str) -> Reply:
        """Twilio runs the URL the Queue Member update gave (the caller's turn)."""
        assert self.office.fake.calls[self.sid].queue_sid is None, "still in Twilio's queue"
        reply = self.driver.check(self.driver.post(url, self.driver.params()))
        self.driver._reply = reply
        return reply

    def agent_answers(self) -> None:
        client = self.driver.reply.one("Dial").children[0]
        response = self.driver.post(
            client["statusCallback"],
            self.driver.params(CallSid=call_sid(9000 + int(self.sid[-4:], 16))),
        )
        assert response.status_code == 204

    def dial_ends(self, status: str, duration: int = 60) -> Reply:
        reply = self.driver.dial_result(status, duration)
        if reply.has("Enqueue"):
            self._enqueued = reply
            self.office.fake.enqueue(self.sid, QUEUE_SID)
        return reply

    def hangs_up(self) -> None:
        self.office.fake.calls[self.sid].status = "completed"
        self.office.fake.calls[self.sid].queue_sid = None
        response = self.driver.call_status("completed")
        assert response.status_code == 204


def dequeued_sid(received: Received) -> str:
    return received.path.rsplit("/", 1)[-1].removesuffix(".json")


def agent_of(reply: Reply) -> str:
    return reply.one("Dial").children[0].text


@pytest.fixture
def office(
    request: pytest.FixtureRequest, tmp_path: Path, fake: TwilioRest, redis: RedisServer
) -> Iterator[Office]:
    """The office on one Redis, or (parametrized "cluster", `ON_A_CLUSTER_TOO`) on the
    session's Redis Cluster (REDIS_CLUSTER_NODES), emptied first."""
    fake.reset()
    where: dict[str, object]
    if getattr(request, "param", "redis") == "cluster":
        cluster: RedisClusterServer = request.getfixturevalue("shared_redis_cluster")
        forget = cluster.flush
        where = {"redis_cluster_nodes": cluster.nodes}
    else:

        def forget() -> None:
            redis_client.Redis(host=redis.host, port=redis.port).flushdb()

        where = {"redis_host": redis.host, "redis_port": redis.port}
    forget()
    url = f"sqlite:///{tmp_path / 'queues.sqlite3'}"
    settings = settings_for(url, fake, queue_tick=0.05, callback_delay=0.0, **where)
    with TestClient(build_app(settings), base_url=BASE_URL) as client:
        db = Database(url)
        try:
            _, admin = apikeys.create(db, "admin", identity=None, admin=True, now=NOW)
            yield Office(client, fake, admin, forget)
        finally:
            db.dispose()


@ON_A_CLUSTER_TOO
def test_pressing_9_queues_with_music_and_announcements_in_spanish(office: Office) -> None:
    """No agent serving: the caller hears there is none, not a made-up wait; with one busy
    agent, their place and the estimate (half a handle time of 180 s: 'unos 2 minutos')."""
    office.agent("ana")
    first = office.caller(1, "+34600000001")
    first.press_9()
    heard = first.wait()
    assert heard.one("Gather")["action"].startswith(f"{BASE_URL}/api/calls/queue-key")
    assert heard.says == (
        "Usted es el primero en la cola. En este momento no hay agentes atendiendo; le "
        "atenderemos en cuanto haya uno disponible.",
        "Si prefiere que le llamemos sin perder su turno, pulse 1. Para salir de la cola, pulse 0.",
    )
    music = heard.one("Gather").named("Play")
    assert [play.text for play in music] == [
        "http://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3"
    ]
    office.status("ana", "busy")
    second = office.caller(2, "+34600000002")
    second.press_9()
    assert second.wait().says[0] == (
        "Usted es el número 2 en la cola. "
        "El tiempo estimado de espera es de unos 5 minutos."  # ceil(2/1) = 2 rounds: 1.5 x 180
    )
    # Within a minute of the announcement, only music.
    assert first.wait(queue_time=30).says == ()
    assert office.queue()["currentSize"] == 2


@ON_A_CLUSTER_TOO
def test_available_agents_get_callers_in_round_robin_order(office: Office) -> None:
    """Three agents, six callers: ana, bob, carla, then ana, bob, carla again, each caller
    taken out of Twilio's queue by the Queue Member API and dialled to their agent."""
    for agent in ("ana", "bob", "carla"):
        office.agent(agent)
    callers = [office.caller(n, f"+3460000000{n}") for n in range(1, 7)]
    for caller in callers:
        caller.press_9()
        caller.wait()
    assert [c["callSid"] for c in office.queue()["calls"]] == [c.sid for c in callers]
    served: list[tuple[str, str]] = []
    for round_ in range(2):
        for agent in ("ana", "bob", "carla"):
            office.status(agent, "available")
        updates = office.dequeued(3 * (round_ + 1))[3 * round_ :]
        for update in updates:
            caller = next(c for c in callers if c.sid == dequeued_sid(update))
            reply = caller.connect(update.one("Url"))
            served.append((caller.sid, agent_of(reply)))
            caller.agent_answers()
            assert caller.dial_ends("completed").names == ("Hangup",)
    assert served == [
        (callers[0].sid, "ana"),
        (callers[1].sid, "bob"),
        (callers[2].sid, "carla"),
        (callers[3].sid, "ana"),
        (callers[4].sid, "bob"),
        (callers[5].sid, "carla"),
    ]
    assert office.queue()["currentSize"] == 0
    agents = {a["id"]: a for a in office.api("GET", "/api/agents").json()["agents"]}
    assert {a: agents[a]["answered"] for a in agents} == {"ana": 2, "bob": 2, "carla": 2}
    assert {a: agents[a]["status"] for a in agents} == dict.fromkeys(agents, "wrap-up")


@ON_A_CLUSTER_TOO
def test_an_unanswered_agent_sends_the_caller_back_to_the_front(office: Office) -> None:
    """ana does not answer: the caller is back at the front (before a later caller), ana is
    marked as having missed it, and bob gets the call."""
    office.agent("ana")
    office.agent("bob")
    first, second = office.caller(1, "+34600000001"), office.caller(2, "+34600000002")
    first.press_9()
    first.wait()
    office.status("ana", "available")
    (update,) = office.dequeued(1)
    assert dequeued_sid(update) == first.sid
    assert agent_of(first.connect(update.one("Url"))) == "ana"
    second.press_9()
    second.wait()
    back = first.dial_ends("no-answer")
    assert back.one("Enqueue").text == QUEUE
    assert [c["callSid"] for c in office.queue()["calls"]] == [first.sid, second.sid]
    first.wait()
    office.status("bob", "available")
    update = office.dequeued(2)[1]
    assert dequeued_sid(update) == first.sid
    assert agent_of(first.connect(update.one("Url"))) == "bob"
    ana = office.api("GET", "/api/agents/ana").json()
    # She rests for the ring timeout (20 s) before the next offer.
    assert (ana["missed"], ana["onCall"], ana["status"]) == (1, False, "wrap-up")


@ON_A_CLUSTER_TOO
def test_a_callback_keeps_its_place_and_is_placed_in_its_turn(office: Office) -> None:
    """The second caller asks to be called back and hangs up; a third caller joins after. The
    callback stays second; when an agent is free for it, flowpbx rings the agent, then dials
    the caller's number from the number they called."""
    office.agent("ana")
    first, second, third = (office.caller(n, f"+3461234567{n}") for n in (1, 2, 3))
    for caller in (first, second):
        caller.press_9()
        caller.wait()
    confirm = second.driver.press("1")
    assert confirm.says == (
        "Le llamaremos al número terminado en 5 6 7 2. Para confirmarlo, pulse 1. "
        "Para usar otro número, pulse 2.",
    )
    one_key = confirm.one("Gather")
    assert (one_key["numDigits"], one_key["finishOnKey"]) == ("1", "")
    booked = second.driver.press("1")
    assert booked.names == ("Say", "Leave")
    assert "cuando llegue su turno" in booked.says[0]
    goodbye = second.left("leave", queue_time=20)
    assert goodbye.names[-1] == "Hangup"
    second.hangs_up()
    third.press_9()
    third.wait()
    calls = office.queue()["calls"]
    assert [(c["callSid"], c["kind"], c["position"]) for c in calls] == [
        (first.sid, "caller", 1),
        (second.sid, "callback", 2),
        (third.sid, "caller", 3),
    ]
    office.status("ana", "available")
    (update,) = office.dequeued(1)
    first.connect(update.one("Url"))
    first.agent_answers()
    first.dial_ends("completed")
    office.status("ana", "available")  # ends her wrap-up
    (placed,) = office.created(1)
    assert (placed.one("To"), placed.one("From")) == ("client:ana", "+34910000000")
    agent_leg = office.fake.answer(
        next(c.sid for c in office.fake.calls.values() if c.to == "client:ana"), office.client
    )
    reply = second.driver.check(agent_leg)
    assert reply.says == (
        "Devolución de llamada de la cola general-queue. Le pasamos con el cliente.",
    )
    dial = reply.one("Dial")
    assert [n.text for n in dial.children] == ["+34612345672"]
    assert [c["callSid"] for c in office.queue()["calls"]] == [third.sid]
    done = second.driver.post(
        dial["action"],
        second.driver.params(DialCallStatus="completed", DialCallDuration="95"),
    )
    assert done.status_code == 200
    time.sleep(0.3)
    assert len(office.fake.created()) == 1  # placed once
    ana = office.api("GET", "/api/agents/ana").json()
    assert (ana["answered"], ana["status"]) == (2, "wrap-up")


@ON_A_CLUSTER_TOO
def test_a_caller_who_hangs_up_leaves_at_once(office: Office) -> None:
    office.agent("ana")
    first, second = office.caller(1, "+34600000001"), office.caller(2, "+34600000002")
    for caller in (first, second):
        caller.press_9()
        caller.wait()
    first.hangs_up()
    calls = office.queue()["calls"]
    assert [(c["callSid"], c["position"]) for c in calls] == [(second.sid, 1)]


@ON_A_CLUSTER_TOO
def test_the_wait_url_names_the_node_so_a_lost_caller_is_adopted(office: Office) -> None:
    """Redis loses everything while a caller waits: their next wait request puts them back in
    the queue at their original time, ahead of a caller who joined after them."""
    office.agent("ana")
    first = office.caller(1, "+34600000001")
    first.press_9()
    first.wait()
    office.forget()
    second = office.caller(2, "+34600000002")
    second.press_9()
    second.wait()
    heard = first.wait(queue_time=90)
    assert heard.one("Gather").named("Play"), "the caller keeps hearing the music"
    calls = office.queue()["calls"]
    assert [(c["callSid"], c["position"]) for c in calls] == [(first.sid, 1), (second.sid, 2)]
    query = parse_qs(urlsplit(first.enqueued.one("Enqueue")["waitUrl"]).query)
    assert query["node"] == ["agente"]


# One Redis only: it freezes the one server (SIGSTOP). A cluster master that stops
# answering is a failover, not a pause (docs/operations.md section 8).
def test_a_call_that_ends_while_redis_does_not_answer_is_finished_when_it_does(
    office: Office, redis: RedisServer
) -> None:
    """Redis freezes for 4 s as the agent's call ends: the webhook waits for it (within the
    service's retry time) instead of answering an apology, and the agent goes to wrap-up."""
    office.agent("ana")
    first = office.caller(1, "+34600000001")
    first.press_9()
    first.wait()
    office.status("ana", "available")
    (update,) = office.dequeued(1)
    first.connect(update.one("Url"))
    first.agent_answers()
    redis.pause()
    thaw = threading.Timer(4.0, redis.resume)
    thaw.start()
    try:
        assert first.dial_ends("completed").names == ("Hangup",)
    finally:
        thaw.join()
    ana = office.api("GET", "/api/agents/ana").json()
    assert (ana["answered"], ana["onCall"], ana["status"]) == (1, False, "wrap-up")


@ON_A_CLUSTER_TOO
def test_a_callback_whose_agent_hangs_up_before_the_customer_answers_waits_again(
    office: Office,
) -> None:
    """The agent answers the callback's call and hangs up during the whisper: the customer was
    not reached, so the callback is not done: it waits again, and (the agent being free again)
    is placed again."""
    office.agent("ana")
    caller = office.caller(1, "+34612345671")
    caller.press_9()
    caller.wait()
    caller.driver.press("1")
    assert caller.driver.press("1").names == ("Say", "Leave")
    caller.left("leave", queue_time=5)
    caller.hangs_up()
    office.status("ana", "available")
    (placed,) = office.created(1)
    leg = next(c for c in office.fake.calls.values() if c.to == "client:ana")
    assert caller.driver.check(office.fake.answer(leg.sid, office.client)).has("Dial")
    ended = inbound_params(leg.sid, "+34910000000", "client:ana", "completed") | {
        "Direction": "outbound-api",
        "CallDuration": "3",
    }
    response = caller.driver.post(placed.one("StatusCallback"), ended)
    assert response.status_code == 204
    again = office.created(2)[1]
    assert (again.one("To"), again.one("From")) == ("client:ana", "+34910000000")
    ana = office.api("GET", "/api/agents/ana").json()
    assert (ana["onCall"], ana["answered"], ana["missed"]) == (True, 0, 0)
