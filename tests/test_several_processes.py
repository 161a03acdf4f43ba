"""Several processes (issue #11): real `flowpbx serve` processes hold no call of their own.

- Two servers on different ports share one real Redis and one real PostgreSQL, behind a "load
  balancer" the test steers: Twilio's webhooks for the same calls (signed for the public
  address, PUBLIC_BASE_URL, as Twilio signs them) alternate between the servers, with a queue
  and an agent in play and Twilio's REST API played by the local fake. Whichever process's
  scheduler offers the caller, the agent's legs and the queue's waits go on at the other one,
  and call history ends with each call's path once although both processes write it.
- `flowpbx serve --workers 2`: two worker processes under one supervisor on one port; one
  call's webhooks are answered by both (told apart by keep-alive connections, each held by one
  worker, which names itself in /health), and `flowpbx reload` reaches both. Without Redis it
  refuses to start more than one worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from authoring_recipe import with_option_5
from conftest import FLOWS, fresh_postgres_url
from flowpbx.history.sources import GROUP
from flowpbx.language.catalog import flow_version
from flowpbx.store.redis import stream_key
from serve_process import (
    FLOWPBX,
    START_TIMEOUT,
    TOKEN,
    Server,
    environment,
    serving,
    workdir,
)
from servers import PostgresServer, RedisServer, redis_server
from twilio_fake import BASE_URL, Reply, call_sid, check_reply, inbound_params, signed_headers
from twilio_rest import ACCOUNT_SID, API_KEY, API_SECRET, AUTH_TOKEN, TwilioRest, twilio_rest

CALLED = "+34910000000"
QUEUE = "general-queue"
QUEUE_SID = "QU" + "0f" * 16
NO_AGENTS = (
    "En este momento no hay agentes atendiendo; le atenderemos en cuanto haya uno disponible."
)
WAIT_FOR = 10.0
QUEUE_PATH = [
    ("call_started", ""),
    ("node_entered", "horario"),
    ("hours_checked", "horario"),
    ("node_entered", "bienvenida"),
    ("node_entered", "menu_principal"),
    ("option_chosen", "menu_principal"),
    ("node_entered", "agente_aviso"),
    ("node_entered", "agente"),
    ("queue_joined", "agente"),
]
"""(event, node) of a caller's path to the queue, as call history stores it."""
CAR_CLAIM_PATH = [
    ("call_started", ""),
    ("node_entered", "horario"),
    ("hours_checked", "horario"),
    ("node_entered", "bienvenida"),
    ("node_entered", "menu_principal"),
    ("option_chosen", "menu_principal"),
    ("node_entered", "automovil"),
    ("option_chosen", "automovil"),
    ("node_entered", "pedir_poliza"),
    ("input_collected", "pedir_poliza"),
    ("node_entered", "parte"),
    ("node_entered", "llamar_partes"),
    ("dial_started", "llamar_partes"),
    ("dial_finished", "llamar_partes"),
    ("node_entered", "buzon_partes"),
    ("recording_made", "buzon_partes"),
    ("node_entered", "despedida"),
    ("call_ended", "despedida"),
]
"""(event, node) of a call to 4 (car), 1 (a claim), its policy number, no answer, voicemail."""


@pytest.fixture(scope="module")
def redis_db() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def fake() -> Iterator[TwilioRest]:
    with twilio_rest() as server:
        yield server


# -- two servers behind a load balancer --


@dataclass
class Balancer:
    """Twilio reaching the servers through a load balancer at PUBLIC_BASE_URL: each request
    goes to the server the test names, signed for the public URL as Twilio signs it."""

    servers: Mapping[str, Server]
    token: str
    served: list[tuple[str, str]] = field(default_factory=list)
    """(server, path) of every webhook sent."""

    def post(self, to: str, url: str, params: Mapping[str, str]) -> httpx.Response:
        assert url.startswith(BASE_URL + "/"), f"{url} is not under PUBLIC_BASE_URL"
        path = url.removeprefix(BASE_URL)
        self.served.append((to, path.partition("?")[0]))
        headers = signed_headers(self.token, url, params)
        return httpx.post(
            self.servers[to].base_url + path, data=dict(params), headers=headers, timeout=10.0
        )

    def step(self, to: str, url: str, params: Mapping[str, str]) -> Reply:
        """A voice webhook, whose TwiML answer is checked as Twilio would need it."""
        return check_reply(self.post(to, url, params))


@dataclass
class Caller:
    """One caller's call, whose webhooks the test sends to the server it names."""

    lb: Balancer
    fake: TwilioRest
    sid: str
    number: str
    reply: Reply | None = None
    enqueued: Reply | None = None

    def params(self, status: str = "in-progress", **extra: str) -> dict[str, str]:
        return inbound_params(self.sid, self.number, CALLED, status, ACCOUNT_SID) | extra

    def incoming(self, to: str) -> Reply:
        self.fake.add_call(self.sid, from_=self.number, to=CALLED)
        self.reply = self.lb.step(to, f"{BASE_URL}/api/calls/incoming", self.params("ringing"))
        return self.reply

    def press(self, to: str, digits: str) -> Reply:
        assert self.reply is not None
        action = self.reply.one("Gather")["action"]
        extra = {"Digits": digits, "FinishedOnKey": "", "msg": "Gather End"}
        self.reply = self.lb.step(to, action, self.params(**extra))
        if self.reply.has("Enqueue"):
            self.enqueued = self.reply
            self.fake.enqueue(self.sid, QUEUE_SID)  # what <Enqueue> does at Twilio
        return self.reply

    def wait(self, to: str, queue_time: int) -> Reply:
        """Twilio asks the <Enqueue>'s waitUrl (the hold music ran out)."""
        assert self.enqueued is not None
        extra = {
            "QueueSid": QUEUE_SID,
            "QueueTime": str(queue_time),
            "QueuePosition": "1",
            "CurrentQueueSize": "2",
            "AvgQueueTime": "0",
            "MaxQueueSize": "100",
        }
        return self.lb.step(to, self.enqueued.one("Enqueue")["waitUrl"], self.params(**extra))

    def run(self, to: str, url: str) -> Reply:
        """Twilio fetches a URL it was given through its REST API (the caller's turn)."""
        self.reply = self.lb.step(to, url, self.params())
        return self.reply

    def hangs_up(self, to: str) -> None:
        extra = {"CallbackSource": "call-progress-events", "SequenceNumber": "3"}
        extra |= {"CallDuration": "95", "Duration": "2"}
        params = self.params("completed", **extra)
        response = self.lb.post(to, f"{BASE_URL}/api/webhooks/call-status", params)
        assert response.status_code == 204, response.text


@dataclass
class Office:
    """The REST API, on the server each request names."""

    servers: Mapping[str, Server]
    keys: Mapping[str, str]

    def api(
        self, to: str, method: str, path: str, body: Any = None, key: str = "admin"
    ) -> dict[str, Any]:
        response = httpx.request(
            method,
            self.servers[to].base_url + path,
            headers={"Authorization": f"Bearer {self.keys[key]}"},
            json=body,
            timeout=10.0,
        )
        assert response.status_code in (200, 201), response.text
        answer: dict[str, Any] = response.json()
        return answer


def _apikey(cwd: Path, env: Mapping[str, str], *args: str) -> str:
    """`flowpbx apikey create ...`, as an operator makes a key; the key it printed."""
    made = subprocess.run(
        [str(FLOWPBX), "apikey", "create", *args],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def _history(url: str, sids: tuple[str, ...]) -> dict[str, Any]:
    """What PostgreSQL holds for the calls: their rows, their paths, their places in queues."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        calls = conn.execute(
            "SELECT sid, status, last_node FROM calls WHERE sid = ANY(%s) ORDER BY sid",
            (list(sids),),
        ).fetchall()
        steps = conn.execute(
            "SELECT call_sid, seq, position, event, node FROM call_steps "
            "WHERE call_sid = ANY(%s) ORDER BY call_sid, seq, position",
            (list(sids),),
        ).fetchall()
        places = conn.execute(
            "SELECT call_sid, queue, outcome, agent FROM queue_calls "
            "WHERE call_sid = ANY(%s) ORDER BY call_sid",
            (list(sids),),
        ).fetchall()
    return {"calls": calls, "steps": steps, "places": places}


def _no_errors(*servers: Server) -> None:
    for server in servers:
        bad = [
            line
            for line in server.output().splitlines()
            if '"level": "error"' in line or "Traceback" in line or " ERROR " in line
        ]
        assert not bad, f"port {server.port}:\n" + "\n".join(bad)


def test_two_servers_share_calls_queues_and_agents(
    tmp_path: Path,
    redis_db: RedisServer,
    fake: TwilioRest,
    shared_postgres: PostgresServer,
) -> None:
    """Two callers walk the menu to the queue (option 9), each webhook at the other server
    than the one before; agent ana is made and logs in at A; a scheduler (either process's)
    offers the first caller to her through Twilio's REST API; her leg's webhooks go to B; the
    second caller hears their place (2, then 1) at alternating servers, then hangs up at the
    other one and leaves the queue. PostgreSQL ends with both calls' paths exactly once."""
    fake.reset()
    redis.Redis(host=redis_db.host, port=redis_db.port).flushdb()
    database = fresh_postgres_url(shared_postgres)
    env = environment(
        REDIS_HOST=redis_db.host,
        REDIS_PORT=str(redis_db.port),
        DATABASE_URL=database,
        PUBLIC_BASE_URL=BASE_URL,  # the load balancer's address: what Twilio signs
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_API_KEY=API_KEY,
        TWILIO_API_SECRET=API_SECRET,
        TWILIO_PHONE_NUMBER=CALLED,
        FLOWPBX_TWILIO_API_URL=fake.base_url,
        FLOWPBX_HOURS_OVERRIDE="open",
        FLOWPBX_QUEUE_TICK="0.05",
    )
    cwd = workdir(tmp_path)
    with serving(cwd, env) as a, serving(cwd, env) as b:
        servers = {"A": a, "B": b}
        lb = Balancer(servers, AUTH_TOKEN)
        keys = {
            "admin": _apikey(cwd, env, "--name", "ops", "--admin"),
            "ana": _apikey(cwd, env, "--name", "ana-softphone", "--identity", "ana"),
        }
        office = Office(servers, keys)
        agent = {"id": "ana", "name": "Ana", "identity": "ana", "queues": {QUEUE: 5}}
        assert office.api("A", "POST", "/api/agents", agent)["status"] == "offline"

        first = Caller(lb, fake, call_sid(1101), "+34600000001")
        second = Caller(lb, fake, call_sid(1102), "+34600000002")
        first.incoming("A")
        assert first.press("B", "9").one("Enqueue").text == QUEUE
        assert first.wait("A", 0).says[0] == f"Usted es el primero en la cola. {NO_AGENTS}"
        second.incoming("B")
        assert second.press("A", "9").one("Enqueue").text == QUEUE
        assert second.wait("B", 0).says[0] == f"Usted es el número 2 en la cola. {NO_AGENTS}"

        # ana logs in with her own key at A: one of the schedulers offers her the first caller.
        office.api("A", "PUT", "/api/agents/ana/status", {"status": "available"}, key="ana")
        (offer,) = fake.wait(1, "member", timeout=WAIT_FOR)
        assert offer.path.endswith(f"/Queues/{QUEUE_SID}/Members/{first.sid}.json")
        connect = offer.one("Url")
        assert connect.startswith(f"{BASE_URL}/api/calls/queue-connect?")
        dial = first.run("B", connect).one("Dial")
        (client,) = dial.children
        assert (client.name, client.text) == ("Client", "ana")
        leg = inbound_params(call_sid(9101), CALLED, "client:ana", "in-progress", ACCOUNT_SID)
        answered = lb.post("B", client["statusCallback"], leg | {"Direction": "outbound-dial"})
        assert answered.status_code == 204, answered.text

        # The second caller waits on at both servers: music (announcements are a minute
        # apart, whichever server answers), and first in the queue now.
        assert second.wait("A", 20).says == ()
        assert second.wait("B", 40).says == ()
        waiting = office.api("A", "GET", f"/api/queues/{QUEUE}")
        assert [(c["callSid"], c["position"]) for c in waiting["calls"]] == [(second.sid, 1)]

        done = lb.step(
            "A",
            dial["action"],
            first.params(DialCallStatus="completed", DialCallDuration="95", DialBridged="true"),
        )
        assert done.names[-1] == "Hangup"
        first.hangs_up("B")
        second.hangs_up("A")  # its last webhook went to B
        assert office.api("B", "GET", f"/api/queues/{QUEUE}")["calls"] == []
        ana = office.api("B", "GET", "/api/agents/ana")
        assert (ana["answered"], ana["onCall"], ana["status"]) == (1, False, "wrap-up")
        assert {server for server, _ in lb.served} == {"A", "B"}

        # Call history: both calls, each step once, although two writers shared the streams.
        deadline = time.monotonic() + WAIT_FOR
        while True:
            found = _history(database, (first.sid, second.sid))
            places = [(sid, outcome) for sid, _, outcome, _ in found["places"]]
            finished = [status for _, status, _ in found["calls"]] == ["completed"] * 2
            if finished and places == [(first.sid, "answered"), (second.sid, "abandoned")]:
                break
            assert time.monotonic() < deadline, f"call history is not complete: {found}"
            time.sleep(0.2)
        time.sleep(1.0)  # anything written twice would come now
        found = _history(database, (first.sid, second.sid))
        paths = {
            sid: [(event, node) for call, _, _, event, node in found["steps"] if call == sid]
            for sid in (first.sid, second.sid)
        }
        assert paths == {first.sid: QUEUE_PATH, second.sid: QUEUE_PATH}
        keys_of = [(call, seq, position) for call, seq, position, _, _ in found["steps"]]
        assert len(keys_of) == len(set(keys_of))
        assert found["places"] == [
            (first.sid, QUEUE, "answered", "ana"),
            (second.sid, QUEUE, "abandoned", None),
        ]
        consumers = redis.Redis(host=redis_db.host, port=redis_db.port).xinfo_consumers(
            stream_key(0), GROUP
        )
        assert len(consumers) == 2, "each server runs its own history writer"
    _no_errors(a, b)


# -- flowpbx serve --workers 2 --


@dataclass
class Pinned:
    """A keep-alive connection, held by one worker for as long as it stays open."""

    client: httpx.Client
    pid: int
    local: tuple[str, int]

    def post(self, path: str, params: Mapping[str, str]) -> httpx.Response:
        url = str(self.client.base_url).rstrip("/") + path
        response = self.client.post(
            path, data=dict(params), headers=signed_headers(TOKEN, url, params)
        )
        # The same connection (our end's port), so the same worker as /health said.
        assert _local(response) == self.local, "the connection was opened again"
        return response


def _local(response: httpx.Response) -> tuple[str, int]:
    address: tuple[str, int] = response.extensions["network_stream"].get_extra_info("client_addr")
    return address


@contextlib.contextmanager
def _one_per_worker(
    server: Server, workers: int, leave_out: frozenset[int] | set[int] = frozenset()
) -> Iterator[list[Pinned]]:
    """A connection held by each worker: new connections until `workers` different processes
    (none of `leave_out`, which are gone) have answered /health."""
    clients: list[httpx.Client] = []
    pinned: dict[int, Pinned] = {}
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while len(pinned) < workers:
            assert time.monotonic() < deadline, f"only workers {sorted(pinned)} answered"
            client = httpx.Client(base_url=server.base_url, timeout=10.0)
            clients.append(client)
            with contextlib.suppress(httpx.TransportError):
                health = client.get("/health")
                pid = health.json()["pid"]
                assert pid not in leave_out, f"worker {pid} still answers"
                if pid not in pinned:
                    pinned[pid] = Pinned(client, pid, _local(health))
        yield list(pinned.values())
    finally:
        for client in clients:
            client.close()


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_serve_workers_answer_one_call_together_and_reload_together(
    tmp_path: Path, redis_db: RedisServer
) -> None:
    """`flowpbx serve --workers 2`: two worker processes of the server answer; one call's
    webhooks go to one and then the other (each reply right, the call advancing once per
    step), its history (SQLite, two writers) has its path once; `flowpbx reload` confirms
    that both workers serve the edit, and both do; stopping the server stops both."""
    flows = tmp_path / "flows"
    flows.mkdir()
    shutil.copy(FLOWS / "seguros.yaml", flows / "seguros.yaml")
    env = environment(
        REDIS_HOST=redis_db.host,
        REDIS_PORT=str(redis_db.port),
        FLOWPBX_HOURS_OVERRIDE="open",
        FLOWPBX_FLOWS_RELOAD="0",  # only `flowpbx reload` makes the workers reload
    )
    cwd = workdir(tmp_path)
    sid = call_sid(1201)
    with (
        serving(cwd, env, flows, ("--workers", "2")) as server,
        _one_per_worker(server, 2) as (one, two),
    ):
        assert _parent(one.pid) == _parent(two.pid) == server.process.pid
        health = one.client.get("/health").json()
        assert (health["workers"], health["store"]) == (2, "redis")

        def step(worker: Pinned, path: str, **extra: str) -> Reply:
            params = inbound_params(sid, "+34600111222", CALLED, "in-progress") | extra
            answer = worker.post(path, params)
            return check_reply(answer, public_base=server.base_url, https=False)

        params = inbound_params(sid, "+34600111222", CALLED)
        menu = check_reply(
            one.post("/api/calls/incoming", params), public_base=server.base_url, https=False
        )
        path = menu.one("Gather")["action"].removeprefix(server.base_url)
        for worker, keys in ((two, "4"), (one, "1"), (two, "12345678")):
            reply = step(worker, path, Digits=keys, FinishedOnKey="", msg="Gather End")
            path = (reply.one("Gather") if reply.has("Gather") else reply.one("Dial"))["action"]
            path = path.removeprefix(server.base_url)
        assert [n.text for n in reply.one("Dial").children] == ["+34912345674"]
        voicemail = step(one, path, DialCallStatus="no-answer", DialCallSid=call_sid(1202))
        record = voicemail.one("Record")["action"].removeprefix(server.base_url)
        recording = "RE" + "1" * 32
        goodbye = step(
            two,
            record,
            RecordingUrl=f"https://api.twilio.com/2010-04-01/Recordings/{recording}",
            RecordingSid=recording,
            RecordingDuration="12",
        )
        assert goodbye.names[-1] == "Hangup"
        ended = inbound_params(sid, "+34600111222", CALLED, "completed") | {"CallDuration": "60"}
        assert one.post("/api/webhooks/call-status", ended).status_code == 204

        # History in the SQLite file the two workers' writers share.
        deadline = time.monotonic() + WAIT_FOR
        while True:
            with contextlib.closing(sqlite3.connect(cwd / "data" / "flowpbx.sqlite3")) as db:
                status = db.execute("SELECT status FROM calls WHERE sid = ?", (sid,)).fetchall()
                steps = db.execute(
                    "SELECT event, node FROM call_steps WHERE call_sid = ? ORDER BY seq, position",
                    (sid,),
                ).fetchall()
            if status == [("completed",)] and steps and steps[-1] == ("call_ended", "despedida"):
                break
            assert time.monotonic() < deadline, f"history has {status} {steps}"
            time.sleep(0.2)
        assert steps == CAR_CLAIM_PATH  # each step once, whichever worker stored it

        # An edit, published by `flowpbx reload`: every worker serves it.
        edited = flows / "seguros.yaml"
        edited.write_text(with_option_5(edited.read_text("utf-8")), "utf-8")
        version = flow_version(edited.read_bytes())
        done = subprocess.run(
            [str(FLOWPBX), "reload", "--flows", str(flows)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert (
            f"port {server.port} (all 2 workers) now serves seguros (version {version})"
            in done.stdout
        )
        for worker in (one, two):
            answer = worker.client.get("/health")
            assert (answer.json()["pid"], answer.json()["versions"]) == (
                worker.pid,
                {"seguros": version},
            )

        # Another server on the same port is refused (the workers' sockets share the port
        # with SO_REUSEPORT, which must not let a second server in).
        second = subprocess.run(
            [str(FLOWPBX), "serve", "--port", str(server.port), "--workers", "2"],
            cwd=cwd,
            env=env | {"FLOWPBX_FLOWS_DIR": str(flows)},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert second.returncode == 1
        assert f"cannot listen on 0.0.0.0:{server.port}" in second.stderr

        # A worker that dies is replaced, on its socket: both answer again, the new one with
        # the flows as they are now.
        os.kill(one.pid, signal.SIGKILL)
        with _one_per_worker(server, 2, leave_out={one.pid}) as (three, four):
            assert two.pid in (three.pid, four.pid)  # the other worker answers on
            replaced = three if four.pid == two.pid else four
            assert _parent(replaced.pid) == server.process.pid
            assert replaced.client.get("/health").json()["versions"] == {"seguros": version}
    # The supervisor stopped its workers, and removed its pid file.
    for pid in (replaced.pid, two.pid):
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the server"
    assert not (cwd / "data" / f"flowpbx-{server.port}.pid").exists()
    _no_errors(server)
    # One output for the supervisor and its workers: each line says which process wrote it,
    # and each worker still running at the SIGTERM said it stopped.
    lines = [json.loads(line) for line in server.output().splitlines()]
    assert {server.process.pid, one.pid, two.pid, replaced.pid} <= {line["pid"] for line in lines}
    stopped = [line["pid"] for line in lines if line["event"].startswith("flowpbx: stopping")]
    assert sorted(stopped) == sorted([two.pid, replaced.pid]), stopped


@pytest.mark.parametrize(
    ("args", "extra"),
    [(("--workers", "2"), {}), ((), {"FLOWPBX_WORKERS": "3"})],
    ids=["option", "environment"],
)
def test_serve_refuses_several_workers_without_redis(
    tmp_path: Path, args: tuple[str, ...], extra: dict[str, str]
) -> None:
    """Without Redis each worker would keep its own calls and queues: refused before anything
    starts, naming what to set."""
    done = subprocess.run(
        [str(FLOWPBX), "serve", "--flows", str(FLOWS), *args],
        cwd=workdir(tmp_path),
        env=environment(**extra),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    workers = args[1] if args else extra["FLOWPBX_WORKERS"]
    assert f"flowpbx cannot start {workers} workers without Redis" in done.stderr
    assert "REDIS_HOST (or REDIS_CLUSTER_NODES)" in done.stderr
    assert not (tmp_path / "data").exists()  # no pid file, no database: nothing started


def test_serve_refuses_zero_workers(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(FLOWPBX), "serve", "--workers", "0"],
        cwd=workdir(tmp_path),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "--workers" in done.stderr
