"""1,000 callers and 10 agents through two `flowpbx serve` processes on one Redis (with AOF) and
one PostgreSQL, Twilio played by this test: signed webhooks sent to either process at random,
and the local fake of Twilio's REST API, whose Queue Member updates and calls placed the test
acts on as Twilio would. Callers arrive, wait, hang up, ask for callbacks; agents arrive,
answer, miss, pause and go offline, all at random from one seed. Redis restarts mid-run.

Every caller is connected exactly once, or leaves with a recorded reason; no agent ever holds
two calls; every callback is placed once; the queue ends empty with no agent held; call
history agrees. A second test checks the round-robin spread with equally available agents.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from conftest import fresh_postgres_url
from flowpbx.db import apikeys
from flowpbx.db.database import Database
from flowpbx.db.models import QueueCall
from serve_process import Server, environment, serving
from servers import PostgresServer, RedisServer, redis_server
from test_api import NOW
from twilio_fake import call_sid, inbound_params, signed_headers
from twilio_rest import Received, TwilioRest, twilio_rest

SEED = 20261201
PUBLIC = "http://pbx.test"
COMPANY = "+34910000000"
QUEUE = "carga"
QUEUE_SID = "QU" + "ab" * 16
DEADLINE = 150.0
FLOW = f"""\
name: carga
description: Una cola para la prueba de carga.
entry: cola
defaults:
  voice: Polly.Lucia
  language: es-ES
queues:
  {QUEUE}:
    max_size: 5000
    max_wait: ~
    ring_timeout: 5
    wrap_up: 0
    announce_every: 15
    callback: true
nodes:
  cola:
    type: enqueue
    queue: {QUEUE}
    callback_key: "1"
    full: fin
    callback: fin
  fin:
    type: hangup
    text: Gracias. Adiós.
"""


class Fate(enum.Enum):
    WAIT = "wait"
    ABANDON = "abandon"
    CALLBACK = "callback"


@dataclass(frozen=True)
class Chances:
    abandon: float = 0.08
    callback: float = 0.05
    miss: float = 0.03
    """An agent who misses rests for the ring timeout (5 s): kept rare so the run is short."""
    talk: float = 0.03
    """Longest talk, in seconds."""


class Where(enum.Enum):
    WAITING = "waiting"
    OFFERED = "offered"
    CONNECTED = "connected"
    ABANDONED = "abandoned"
    CALLBACK = "callback"
    """Hung up, waiting to be called back."""
    CALLED_BACK = "called back"


@dataclass
class Caller:
    sid: str
    number: str
    params: dict[str, str]
    enqueue: ET.Element
    where: Where = Where.WAITING
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    connected: int = 0
    callbacks: int = 0


def document(response: httpx.Response) -> ET.Element:
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/xml"), response.text
    return ET.fromstring(response.text)


def verbs(root: ET.Element) -> list[str]:
    return [child.tag for child in root]


@dataclass
class Run:
    fake: TwilioRest
    servers: list[Server]
    admin: str
    rng: random.Random
    http: httpx.AsyncClient
    chances: Chances
    callers: dict[str, Caller] = field(default_factory=dict)
    agent_on: dict[str, str] = field(default_factory=dict)
    """Agent identity -> the caller they are talking to (as Twilio would see it)."""
    violations: list[str] = field(default_factory=list)
    served: Counter[str] = field(default_factory=Counter)
    seen: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    # -- plumbing --

    def target(self, url: str) -> str:
        parts = urlsplit(url)
        server = self.rng.choice(self.servers)
        return f"{server.base_url}{parts.path}" + (f"?{parts.query}" if parts.query else "")

    async def post(self, url: str, params: dict[str, str]) -> httpx.Response:
        """A webhook as Twilio sends it: signed for the public URL, to either process."""
        assert url.startswith(PUBLIC), url
        headers = signed_headers(self.fake.auth_token, url, params)
        return await self.http.post(self.target(url), data=params, headers=headers)

    async def api(self, method: str, path: str, **body: Any) -> httpx.Response:
        server = self.rng.choice(self.servers)
        return await self.http.request(
            method,
            server.base_url + path,
            json=body or None,
            headers={"Authorization": f"Bearer {self.admin}"},
        )

    # -- callers --

    async def caller(self, n: int, arrive: float, fate: Fate, patience: float) -> None:
        await asyncio.sleep(arrive)
        sid, number = call_sid(n), f"+3461{n:07d}"
        self.fake.add_call(sid, from_=number, to=COMPANY)
        ringing = inbound_params(sid, number, COMPANY, "ringing", self.fake.account_sid)
        root = document(await self.post(f"{PUBLIC}/api/calls/incoming", ringing))
        enqueue = root.find("Enqueue")
        assert enqueue is not None, ET.tostring(root)
        caller = Caller(sid, number, ringing | {"CallStatus": "in-progress"}, enqueue)
        self.callers[sid] = caller
        self.fake.enqueue(sid, QUEUE_SID)
        wait = await self.wait(caller)
        if fate is Fate.ABANDON:
            await asyncio.sleep(patience)
            async with caller.lock:
                if caller.where is Where.WAITING:
                    await self.hang_up(caller, Where.ABANDONED)
        elif fate is Fate.CALLBACK and wait is not None:
            await asyncio.sleep(patience)
            await self.ask_callback(caller, wait)
        while caller.where is Where.WAITING:
            await asyncio.sleep(3.0)
            async with caller.lock:
                if caller.where is Where.WAITING and self.in_twilio_queue(caller):
                    await self.wait(caller)

    def in_twilio_queue(self, caller: Caller) -> bool:
        with self.fake._lock:
            return self.fake.calls[caller.sid].queue_sid is not None

    async def wait(self, caller: Caller) -> ET.Element | None:
        """Twilio asks the wait URL (the caller is in its queue)."""
        url = caller.enqueue.get("waitUrl", "")
        extra = {"QueueSid": QUEUE_SID, "QueueTime": "1", "QueuePosition": "1"}
        root = document(await self.post(url, caller.params | extra))
        return root.find("Gather")

    async def hang_up(self, caller: Caller, where: Where) -> None:
        with self.fake._lock:
            call = self.fake.calls[caller.sid]
            call.status, call.queue_sid = "completed", None
        caller.where = where
        await self.completed(caller)

    async def completed(self, caller: Caller) -> None:
        """Twilio's final status callback of the caller's call."""
        params = caller.params | {"CallStatus": "completed", "CallDuration": "30"}
        response = await self.post(f"{PUBLIC}/api/webhooks/call-status", params)
        assert response.status_code == 204, response.text

    async def ask_callback(self, caller: Caller, wait: ET.Element) -> None:
        async with caller.lock:
            if caller.where is not Where.WAITING:
                return
            confirm = document(
                await self.post(wait.get("action", ""), caller.params | {"Digits": "1"})
            )
            gather = confirm.find("Gather")
            if gather is None:
                return
            booked = document(
                await self.post(gather.get("action", ""), caller.params | {"Digits": "1"})
            )
            if verbs(booked)[-1:] != ["Leave"]:
                return
            with self.fake._lock:
                call = self.fake.calls[caller.sid]
                if call.queue_sid is None:
                    # Twilio took the caller out of its queue for an agent meanwhile: the
                    # redirect wins, the caller talks to the agent (offered() goes on).
                    return
                # The caller leaves the queue and hangs up: Twilio can no longer redirect.
                call.status, call.queue_sid = "completed", None
            caller.where = Where.CALLBACK
            left = caller.params | {"QueueResult": "leave", "QueueSid": QUEUE_SID, "QueueTime": "2"}
            goodbye = document(await self.post(caller.enqueue.get("action", ""), left))
            if verbs(goodbye)[-1:] != ["Hangup"]:
                self.violations.append(f"{caller.sid}: callback goodbye {verbs(goodbye)}")
            await self.completed(caller)

    # -- Twilio's side of the queue engine's requests --

    async def twilio(self) -> None:
        """Act on every request flowpbx made to Twilio's REST API, in order."""
        while not self.done.is_set():
            with self.fake._lock:
                new = self.fake.received[self.seen :]
                self.seen += len(new)
            for request in new:
                if request.status >= 300:
                    continue
                if request.kind in ("member", "update") and request.get("Url"):
                    sid = request.path.rsplit("/", 1)[-1].removesuffix(".json")
                    asyncio.get_running_loop().create_task(self.offered(sid, request))
                elif request.kind == "create":
                    asyncio.get_running_loop().create_task(self.callback(request))
            await asyncio.sleep(0.005)

    async def offered(self, sid: str, request: Received) -> None:
        """The caller was taken out of Twilio's queue: their call runs the connect URL."""
        caller = self.callers[sid]
        async with caller.lock:
            if caller.where is not Where.WAITING:
                self.violations.append(f"{sid}: offered while {caller.where.value}")
                return
            caller.where = Where.OFFERED
            redirected = caller.params | {"QueueResult": "redirected", "QueueSid": QUEUE_SID}
            nothing = document(await self.post(caller.enqueue.get("action", ""), redirected))
            if len(nothing):
                self.violations.append(f"{sid}: the redirected action answered {verbs(nothing)}")
            root = document(await self.post(request.one("Url"), caller.params))
            dial = root.find("Dial")
            if dial is None:  # the reservation lapsed: back in the queue
                again = root.find("Enqueue")
                caller.enqueue = again if again is not None else caller.enqueue
                caller.where = Where.WAITING
                self.fake.enqueue(sid, QUEUE_SID)
                await self.wait(caller)
                return
            noun = dial[0]
            agent = noun.text or ""
            if agent in self.agent_on:
                self.violations.append(f"{agent} offered {sid} while on {self.agent_on[agent]}")
            self.agent_on[agent] = sid
            answered = self.rng.random() >= self.chances.miss
            if answered:
                status = caller.params | {"CallSid": call_sid(10**6 + len(self.served))}
                await self.post(noun.get("statusCallback", ""), status)
                await asyncio.sleep(self.rng.uniform(0.0, self.chances.talk))
            outcome = {"DialCallStatus": "completed" if answered else "no-answer"}
            if answered:
                outcome["DialCallDuration"] = "42"
            del self.agent_on[agent]
            after = document(await self.post(dial.get("action", ""), caller.params | outcome))
            if answered:
                caller.connected += 1
                self.served[agent] += 1
                if verbs(after) != ["Hangup"]:
                    self.violations.append(f"{sid}: after the agent {verbs(after)}")
                await self.hang_up(caller, Where.CONNECTED)
                return
            enqueue = after.find("Enqueue")
            if enqueue is None:
                self.violations.append(f"{sid}: a missed offer answered {verbs(after)}")
                return
            caller.enqueue, caller.where = enqueue, Where.WAITING
            self.fake.enqueue(sid, QUEUE_SID)
            await self.wait(caller)

    async def callback(self, request: Received) -> None:
        """flowpbx rang an agent for a callback: they answer, and the customer too."""
        agent = request.one("To").removeprefix("client:")
        with self.fake._lock:
            placed = next(
                c
                for c in self.fake.calls.values()
                if c.to == request.one("To") and c.url == request.one("Url")
            )
        params = inbound_params(placed.sid, COMPANY, placed.to, "in-progress") | {
            "Direction": "outbound-api"
        }
        if agent in self.agent_on:
            self.violations.append(f"{agent} rang for a callback while on {self.agent_on[agent]}")
        self.agent_on[agent] = placed.sid
        root = document(await self.post(request.one("Url"), params))
        dial = root.find("Dial")
        if dial is None:
            del self.agent_on[agent]
            self.violations.append(f"callback {placed.sid}: {verbs(root)}")
            return
        number = dial[0].text or ""
        caller = next(c for c in self.callers.values() if c.number == number)
        caller.callbacks += 1
        if caller.where is not Where.CALLBACK:
            self.violations.append(f"{caller.sid}: called back while {caller.where.value}")
        done = {"DialCallStatus": "completed", "DialCallDuration": "30"}
        del self.agent_on[agent]
        await self.post(dial.get("action", ""), params | done)
        caller.where = Where.CALLED_BACK
        self.served[agent] += 1
        final = params | {"CallStatus": "completed", "CallDuration": "35"}
        await self.post(request.one("StatusCallback"), final)

    # -- agents --

    async def agent(self, identity: str, arrive: float, moody: bool) -> None:
        await asyncio.sleep(arrive)
        await self.status(identity, "available")
        while moody and not self.done.is_set():
            await asyncio.sleep(self.rng.uniform(0.5, 2.0))
            roll = self.rng.random()
            if roll < 0.15:
                await self.status(identity, "offline")
                await asyncio.sleep(self.rng.uniform(0.3, 1.5))
            elif roll < 0.3:
                await self.status(identity, "busy")
                await asyncio.sleep(self.rng.uniform(0.1, 0.8))
            await self.status(identity, "available")

    async def status(self, identity: str, status: str) -> None:
        """An agent's console sets their status; while Redis restarts the API answers 503
        ("try again shortly"), and the console does."""
        for _ in range(50):
            response = await self.api("PUT", f"/api/agents/{identity}/status", status=status)
            if response.status_code != 503:
                break
            await asyncio.sleep(0.2)
        assert response.status_code == 200, response.text

    # -- the end --

    def settled(self) -> bool:
        final = {Where.CONNECTED, Where.ABANDONED, Where.CALLED_BACK}
        return all(c.where in final for c in self.callers.values())


@pytest.fixture(scope="module")
def fake() -> Iterator[TwilioRest]:
    with twilio_rest() as server:
        yield server


@pytest.fixture
def redis_aof() -> Iterator[RedisServer]:
    with redis_server(persistent=True) as server:
        yield server


@contextlib.contextmanager
def office(
    tmp_path: Path, fake: TwilioRest, redis: RedisServer, postgres: PostgresServer
) -> Iterator[tuple[list[Server], str, str]]:
    """Two `flowpbx serve` processes on one Redis and one PostgreSQL; the admin key."""
    fake.reset()
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "carga.yaml").write_text(FLOW, encoding="utf-8")
    url = fresh_postgres_url(postgres)
    env = environment(
        TWILIO_AUTH_TOKEN=fake.auth_token,
        TWILIO_ACCOUNT_SID=fake.account_sid,
        TWILIO_API_KEY=fake.api_key,
        TWILIO_API_SECRET=fake.api_secret,
        TWILIO_PHONE_NUMBER=COMPANY,
        FLOWPBX_TWILIO_API_URL=fake.base_url,
        PUBLIC_BASE_URL=PUBLIC,
        REDIS_HOST=redis.host,
        REDIS_PORT=str(redis.port),
        DATABASE_URL=url,
        FLOWPBX_QUEUE_TICK="0.05",
        FLOWPBX_CALLBACK_DELAY="2",
        LOG_LEVEL="INFO",
    )
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(serving(tmp_path, env, flows))  # migrates the database
        second = stack.enter_context(serving(tmp_path, env, flows))
        db = Database(url)
        stack.callback(db.dispose)
        _, admin = apikeys.create(db, "admin", identity=None, admin=True, now=NOW)
        yield [first, second], admin, url


async def simulate(
    servers: list[Server],
    admin: str,
    fake: TwilioRest,
    *,
    callers: int,
    agents: int,
    moody: bool,
    chances: Chances,
    restart: RedisServer | None = None,
) -> Run:
    rng = random.Random(SEED)
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as http:
        run = Run(fake, servers, admin, rng, http, chances)
        for n in range(agents):
            identity = f"agente{n:02d}"
            response = await run.api(
                "POST",
                "/api/agents",
                id=identity,
                name=identity,
                identity=identity,
                queues={QUEUE: 5},
            )
            assert response.status_code == 201, response.text
        twilio = asyncio.create_task(run.twilio())
        # Moody agents arrive during the first 2 s; the others are all there before callers.
        staff = [
            asyncio.create_task(run.agent(f"agente{n:02d}", rng.uniform(0, 2.0) * moody, moody))
            for n in range(agents)
        ]
        arrivals, moment = [], 0.0 if moody else 1.0
        for n in range(1, callers + 1):
            moment += rng.expovariate(callers / 8.0)
            roll = rng.random()
            fate = (
                Fate.ABANDON
                if roll < chances.abandon
                else Fate.CALLBACK
                if roll < chances.abandon + chances.callback
                else Fate.WAIT
            )
            patience = rng.uniform(0.1, 3.0)
            arrivals.append(asyncio.create_task(run.caller(n, moment, fate, patience)))
        if restart is not None:
            await asyncio.sleep(4.0)
            await asyncio.to_thread(restart.restart)
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            if all(task.done() for task in arrivals) and run.settled():
                break
        run.done.set()
        for task in (*arrivals, *staff, twilio):
            task.cancel()
        results = await asyncio.gather(*arrivals, *staff, twilio, return_exceptions=True)
        failures = [
            r
            for r in results
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
        ]
        assert not failures, failures[:3]
        return run


def test_a_thousand_callers_ten_agents_two_processes_and_a_redis_restart(
    tmp_path: Path, fake: TwilioRest, redis_aof: RedisServer, shared_postgres: PostgresServer
) -> None:
    with office(tmp_path, fake, redis_aof, shared_postgres) as (servers, admin, url):
        run = asyncio.run(
            simulate(
                servers,
                admin,
                fake,
                callers=1000,
                agents=10,
                moody=True,
                chances=Chances(),
                restart=redis_aof,
            )
        )
        unsettled = {
            c.sid: c.where.value
            for c in run.callers.values()
            if c.where not in (Where.CONNECTED, Where.ABANDONED, Where.CALLED_BACK)
        }
        assert len(run.callers) == 1000
        assert not unsettled, (
            f"{len(unsettled)} callers never settled: {list(unsettled.items())[:5]}; their "
            f"Twilio calls: {[fake.calls[sid] for sid in list(unsettled)[:2]]}"
        )
        assert not run.violations, run.violations[:10]
        fates = Counter(c.where for c in run.callers.values())
        assert all(c.connected == (c.where is Where.CONNECTED) for c in run.callers.values())
        assert all(c.callbacks == (c.where is Where.CALLED_BACK) for c in run.callers.values())
        assert fates[Where.CONNECTED] > 700, fates
        assert fates[Where.CALLED_BACK] > 20, fates
        with httpx.Client(base_url=servers[0].base_url) as client:
            headers = {"Authorization": f"Bearer {admin}"}
            queue = client.get(f"/api/queues/{QUEUE}", headers=headers).json()
            assert (queue["currentSize"], queue["calls"]) == (0, [])
            agents = client.get("/api/agents", headers=headers).json()["agents"]
            assert not [a["id"] for a in agents if a["onCall"]]
            deadline = time.monotonic() + 60
            while (
                client.get("/health").json()["history"]["backlog"] and time.monotonic() < deadline
            ):
                time.sleep(0.5)
        db = Database(url)
        try:
            with db.session() as session:
                outcomes = dict(
                    session.execute(
                        select(QueueCall.outcome, func.count()).group_by(QueueCall.outcome)
                    ).all()
                )
        finally:
            db.dispose()
        assert outcomes.get("answered", 0) == fates[Where.CONNECTED]
        assert outcomes.get("callback", 0) == fates[Where.CALLED_BACK]
        assert outcomes.get("abandoned", 0) == fates[Where.ABANDONED]


def test_round_robin_spreads_calls_evenly_among_equally_available_agents(
    tmp_path: Path, fake: TwilioRest, shared_postgres: PostgresServer
) -> None:
    with (
        redis_server() as redis,
        office(tmp_path, fake, redis, shared_postgres) as (servers, admin, _),
    ):
        run = asyncio.run(
            simulate(
                servers,
                admin,
                fake,
                callers=200,
                agents=10,
                moody=False,
                chances=Chances(abandon=0, callback=0, miss=0, talk=0),
            )
        )
        assert not run.violations, run.violations[:10]
        counts = [run.served[f"agente{n:02d}"] for n in range(10)]
        assert sum(counts) == sum(c.where is not Where.ABANDONED for c in run.callers.values())
        assert max(counts) - min(counts) <= 1, counts
