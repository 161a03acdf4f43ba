"""Queues and agents through the REST API: the real app (the shipped flows, whose `general-queue`
has handle_time 180, wrap_up 30, service_level 60, max_size 100) with keys made as `flowpbx
apikey create` makes them, the queue store seeded on the app's own event loop.

The queue endpoints run on the memory store and on a real Redis; agents and statistics on
SQLite and a real PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis

from flowpbx.app import build_service, catalog_from, rest_parts, store_from
from flowpbx.db import apikeys
from flowpbx.db.database import Database
from flowpbx.db.models import Call, QueueCall
from flowpbx.queues import directory
from flowpbx.queues.model import AgentLive, Reservation, Waiter
from flowpbx.queues.store import QueueStore
from flowpbx.settings import Settings
from flowpbx.web.app import create_app
from servers import RedisServer, redis_server
from test_api import settings_for
from twilio_fake import BASE_URL, TestClient
from twilio_rest import TwilioRest, twilio_rest

QUEUE = "general-queue"
NOW = dt.datetime.now(dt.UTC)
T = TypeVar("T")


def sid(n: int) -> str:
    return f"CA{n:032x}"


@dataclass
class QueueApp:
    client: TestClient
    db: Database
    store: QueueStore
    admin: str
    ana: str
    bob: str
    anonymous: str
    """A non-admin key with no identity."""
    wakes: list[float] = field(default_factory=list)
    """When the app woke the queue scheduler (`on_agent_change`)."""

    def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run a store operation on the app's event loop (where its Redis connections live)."""
        portal = self.client.portal
        assert portal is not None
        return portal.call(work)

    def request(
        self, method: str, key: str | None, path: str, body: object = None, **params: object
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response: httpx.Response = self.client.request(
            method, path, json=body, params=params, headers=headers
        )
        return response

    def get(self, key: str | None, path: str, **params: object) -> httpx.Response:
        return self.request("GET", key, path, **params)

    def add_agent(self, agent_id: str, **body: object) -> dict[str, Any]:
        response = self.request("POST", self.admin, "/api/agents", {"id": agent_id, **body})
        assert response.status_code == 201, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def set_status(self, key: str, agent_id: str, status: str) -> httpx.Response:
        path = f"/api/agents/{agent_id}/status"
        return self.request("PUT", key, path, {"status": status})

    def join(self, n: int, queued_at: float, priority: int = 0) -> None:
        waiter = Waiter(
            member=sid(n),
            call_sid=sid(n),
            caller=f"+3461111{n:04d}",
            queued_at=queued_at,
            priority=priority,
        )
        self.run(partial(self.store.join, QUEUE, waiter, 100))


def running(settings: Settings) -> Iterator[QueueApp]:
    """The app as `build_app` composes it (without call history), keeping hold of its queue
    store and counting the scheduler's wake-ups."""
    catalog = catalog_from(settings)
    calls = store_from(settings)
    wakes: list[float] = []
    parts = rest_parts(
        settings,
        catalog,
        Database(settings.database_url),
        calls,
        on_agent_change=lambda: wakes.append(time.time()),
    )
    assert parts.api.queues is not None
    app = create_app(settings, build_service(settings, catalog, calls), parts)
    with TestClient(app, base_url=BASE_URL) as client:  # the lifespan migrates the database
        db = Database(settings.database_url)
        try:
            keys = {
                name: apikeys.create(db, name, identity=identity, admin=admin, now=NOW)[1]
                for name, identity, admin in (
                    ("admin", None, True),
                    ("ana", "ana", False),
                    ("bob", "bob", False),
                    ("anonymous", None, False),
                )
            }
            yield QueueApp(client, db, parts.api.queues.store, wakes=wakes, **keys)
        finally:
            db.dispose()


@pytest.fixture(scope="module")
def fake() -> Iterator[TwilioRest]:
    with twilio_rest() as server:
        yield server


@pytest.fixture(scope="module")
def redis_service() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
def queues(request: pytest.FixtureRequest, tmp_path: Path, fake: TwilioRest) -> Iterator[QueueApp]:
    """The app on SQLite, with the memory queue store and with a real Redis."""
    overrides: dict[str, object] = {}
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_service")
        redis.Redis(host=server.host, port=server.port).flushall()
        overrides = {"redis_host": server.host, "redis_port": server.port}
    settings = settings_for(f"sqlite:///{tmp_path / 'queues.sqlite3'}", fake, **overrides)
    yield from running(settings)


@pytest.fixture
def api(database_url: str, fake: TwilioRest) -> Iterator[QueueApp]:
    """The app on SQLite and on a real PostgreSQL, with the memory queue store."""
    yield from running(settings_for(database_url, fake))


def staff(app: QueueApp) -> None:
    """Two agents of the queue: ana free, bob busy; a third, carla, never seen (offline)."""
    app.add_agent("ana", name="Ana", identity="ana", queues={QUEUE: 5})
    app.add_agent("bob", name="Bob", identity="bob", queues={QUEUE: 7})
    app.add_agent("carla", name="Carla", number="+34699000001", queues={QUEUE: 3})
    assert app.set_status(app.ana, "ana", "available").status_code == 200
    assert app.set_status(app.bob, "bob", "busy").status_code == 200


def iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC).isoformat().replace("+00:00", "Z")


# -- GET /api/queues/{queueId} --


def test_queue_status_has_the_seed_shape(queues: QueueApp) -> None:
    """The seed's keys, plus `nextCursor` and each place's `kind`; times in UTC to the second."""
    joined = time.time() - 95.75
    queues.join(1, joined)
    response = queues.get(queues.admin, f"/api/queues/{QUEUE}")
    assert response.status_code == 200, response.text
    body = response.json()
    seed_keys = {"id", "name", "currentSize", "maxSize", "averageWaitTime", "calls"}
    assert set(body) == seed_keys | {"nextCursor"}
    assert body == {
        "id": QUEUE,
        "name": QUEUE,
        "currentSize": 1,
        "maxSize": 100,
        "averageWaitTime": None,  # nothing learned yet
        "calls": [
            {
                "callSid": sid(1),
                "from": "+34611110001",
                "queuedAt": iso(joined),
                "position": 1,
                "estimatedWaitTime": None,  # no agent serves the queue
                "kind": "caller",
            }
        ],
        "nextCursor": None,
    }
    assert body["calls"][0]["queuedAt"].endswith("Z")
    assert len(body["calls"][0]["queuedAt"]) == len("2026-01-28T10:00:00Z")


def test_estimated_waits_follow_the_formula_by_hand(queues: QueueApp) -> None:
    """Positions 1 to 5 with two agents serving (one free, one busy) and learned figures."""
    staff(queues)
    queues.run(partial(queues.store.learn, QUEUE, handle_time=200))  # first sample: h = 200
    queues.run(partial(queues.store.learn, QUEUE, answered_wait=44.6))  # first sample: 44.6
    queues.run(partial(queues.store.learn, QUEUE, abandoned=True))  # a = 0 + 0.1 * (1 - 0)
    now = time.time()
    for n in range(1, 6):
        queues.join(n, now - 300 + n)
    body = queues.get(queues.ana, f"/api/queues/{QUEUE}").json()
    # estimate.py: p' = 1 + (p - 1)(1 - a); 0 when p' <= f; else r = ceil((p' - f) / n) and
    # EWT = (r - 1/2) h. Here n = 2 (ana available, bob busy; carla never seen: offline),
    # f = 1 (ana), a = 0.1, h = 200.
    #   p = 1: p' = 1.0 <= 1                          -> 0
    #   p = 2: p' = 1.9, (1.9 - 1) / 2 = 0.45, r = 1  -> 0.5 * 200 = 100
    #   p = 3: p' = 2.8, (2.8 - 1) / 2 = 0.90, r = 1  -> 100
    #   p = 4: p' = 3.7, (3.7 - 1) / 2 = 1.35, r = 2  -> 1.5 * 200 = 300
    #   p = 5: p' = 4.6, (4.6 - 1) / 2 = 1.80, r = 2  -> 300
    assert [c["estimatedWaitTime"] for c in body["calls"]] == [0, 100, 100, 300, 300]
    assert [c["position"] for c in body["calls"]] == [1, 2, 3, 4, 5]
    assert [c["callSid"] for c in body["calls"]] == [sid(n) for n in range(1, 6)]
    assert body["averageWaitTime"] == 45  # round(44.6)


def test_before_anything_is_learned_the_queues_handle_time_is_used(queues: QueueApp) -> None:
    """No completed call yet: h is the queue's handle_time (180); no agent: no estimate."""
    queues.add_agent("bob", name="Bob", identity="bob", queues={QUEUE: 5})
    now = time.time()
    queues.join(1, now - 20)
    queues.join(2, now - 10)

    def waits() -> list[int | None]:
        calls = queues.get(queues.admin, f"/api/queues/{QUEUE}").json()["calls"]
        return [c["estimatedWaitTime"] for c in calls]

    assert waits() == [None, None]  # bob never seen: offline, nobody serves
    queues.set_status(queues.bob, "bob", "busy")
    # n = 1, f = 0, a = 0, h = 180: p = 1 -> r = 1 -> 90; p = 2 -> r = 2 -> 270.
    assert waits() == [90, 270]
    queues.set_status(queues.bob, "bob", "offline")
    assert waits() == [None, None]


def test_a_callback_keeps_its_place_and_shows_the_number_to_call(queues: QueueApp) -> None:
    """A callback place is listed with the original CallSid and the number to call back."""
    now = time.time()
    queues.join(1, now - 60)
    queues.join(2, now - 30)
    queues.run(partial(queues.store.to_callback, QUEUE, sid(1), "+34699999999"))
    calls = queues.get(queues.admin, f"/api/queues/{QUEUE}").json()["calls"]
    assert [(c["callSid"], c["from"], c["kind"], c["position"]) for c in calls] == [
        (sid(1), "+34699999999", "callback", 1),
        (sid(2), "+34611110002", "caller", 2),
    ]
    assert calls[0]["queuedAt"] == iso(now - 60)


@pytest.mark.parametrize("limit", [1, 3, 7, 8], ids=lambda n: f"limit-{n}")
def test_queue_calls_are_paged_by_place(queues: QueueApp, limit: int) -> None:
    """Following nextCursor lists every place once, in order, with positions 1 to 7."""
    staff(queues)
    now = time.time()
    for n in range(1, 8):
        queues.join(n, now - 100 + n)
    whole = queues.get(queues.admin, f"/api/queues/{QUEUE}").json()["calls"]
    seen: list[dict[str, Any]] = []
    cursor = ""
    pages = 0
    while True:
        response = queues.get(queues.admin, f"/api/queues/{QUEUE}", limit=limit, cursor=cursor)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["currentSize"] == 7
        assert len(body["calls"]) <= limit
        seen += body["calls"]
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert seen == whole  # positions and estimates do not depend on the page
    assert [c["position"] for c in seen] == [1, 2, 3, 4, 5, 6, 7]
    assert pages == -(-7 // limit)


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 501}, {"cursor": "bm9wZQ"}, {"cursor": "not a cursor"}],
    ids=["limit-0", "limit-501", "foreign-cursor", "malformed-cursor"],
)
def test_bad_paging_is_a_422(queues: QueueApp, params: dict[str, object]) -> None:
    response = queues.get(queues.admin, f"/api/queues/{QUEUE}", **params)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid"


def test_higher_priority_goes_first_and_the_longest_wait_is_the_oldest_place(
    queues: QueueApp,
) -> None:
    """A priority caller who joined last is at the front; the list's longestWaitTime is the
    wait of the place waiting longest, wherever it is."""
    staff(queues)
    now = time.time()
    queues.join(1, now - 240)
    queues.join(2, now - 60)
    queues.join(3, now - 5, priority=5)
    calls = queues.get(queues.admin, f"/api/queues/{QUEUE}").json()["calls"]
    assert [c["callSid"] for c in calls] == [sid(3), sid(1), sid(2)]
    listed = queues.get(queues.bob, "/api/queues").json()
    assert listed == {
        "queues": [
            {
                "id": QUEUE,
                "name": QUEUE,
                "currentSize": 3,
                "maxSize": 100,
                "averageWaitTime": None,
                "longestWaitTime": listed["queues"][0]["longestWaitTime"],
                "agents": {"available": 1, "busy": 1, "wrapUp": 0, "offline": 1},
            }
        ]
    }
    assert 240 <= listed["queues"][0]["longestWaitTime"] <= 250


def test_an_empty_queue_is_listed_with_no_waits(queues: QueueApp) -> None:
    body = queues.get(queues.anonymous, "/api/queues").json()
    assert body["queues"] == [
        {
            "id": QUEUE,
            "name": QUEUE,
            "currentSize": 0,
            "maxSize": 100,
            "averageWaitTime": None,
            "longestWaitTime": None,
            "agents": {"available": 0, "busy": 0, "wrapUp": 0, "offline": 0},
        }
    ]


@pytest.mark.parametrize("path", ["/api/queues/nope", "/api/queues/nope/stats"])
def test_an_unknown_queue_is_a_404_naming_the_known_ones(queues: QueueApp, path: str) -> None:
    response = queues.get(queues.admin, path)
    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "detail": "no queue 'nope'; the queues are general-queue",
    }


ENDPOINTS = [
    ("GET", "/api/queues", None),
    ("GET", f"/api/queues/{QUEUE}", None),
    ("GET", f"/api/queues/{QUEUE}/stats", None),
    ("GET", "/api/agents", None),
    ("POST", "/api/agents", {"id": "ana", "name": "Ana", "identity": "ana"}),
    ("GET", "/api/agents/ana", None),
    ("PATCH", "/api/agents/ana", {"name": "Ana"}),
    ("DELETE", "/api/agents/ana", None),
    ("PUT", "/api/agents/ana/status", {"status": "available"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_every_queue_endpoint_needs_a_key(
    queues: QueueApp, method: str, path: str, body: object
) -> None:
    for headers in ({}, {"Authorization": "Bearer fpbx_nonsense"}):
        response = queues.client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_queue_operations_are_in_the_openapi_document(queues: QueueApp) -> None:
    doc = queues.get(queues.ana, "/api/openapi.json").json()
    operations = {
        (method.upper(), path, op["operationId"])
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if op["tags"][0] in ("queues", "agents")
    }
    assert operations == {
        ("GET", "/api/queues", "listQueues"),
        ("GET", "/api/queues/{queueId}", "getQueue"),
        ("GET", "/api/queues/{queueId}/stats", "getQueueStats"),
        ("GET", "/api/agents", "listAgents"),
        ("POST", "/api/agents", "createAgent"),
        ("GET", "/api/agents/{agentId}", "getAgent"),
        ("PATCH", "/api/agents/{agentId}", "updateAgent"),
        ("DELETE", "/api/agents/{agentId}", "deleteAgent"),
        ("PUT", "/api/agents/{agentId}/status", "setAgentStatus"),
    }
    parameter = doc["paths"]["/api/queues/{queueId}"]["get"]["parameters"][0]
    assert parameter["name"] == "queueId"
    assert parameter["in"] == "path"
    assert parameter["schema"]["pattern"] == "^[a-z0-9][a-z0-9_-]{0,63}$"
    status = doc["components"]["schemas"]["QueueStatus"]
    assert set(status["required"]) == {
        "id",
        "name",
        "currentSize",
        "maxSize",
        "averageWaitTime",
        "calls",
        "nextCursor",
    }
    assert status["properties"]["currentSize"]["examples"] == [3]
    assert [t["name"] for t in doc["tags"]] == ["queues", "agents"]


# -- agents --


def test_agents_are_added_read_changed_and_removed(api: QueueApp) -> None:
    """The directory's whole life through admin keys; each change wakes the scheduler."""
    created = api.add_agent("ana", name="Ana García", identity="ana", queues={QUEUE: 6})
    assert created == {
        "id": "ana",
        "name": "Ana García",
        "identity": "ana",
        "number": None,
        "queues": {QUEUE: 6},
        "status": "offline",
        "since": None,
        "wrapUpUntil": None,
        "onCall": False,
        "answered": 0,
        "missed": 0,
    }
    assert len(api.wakes) == 1
    assert api.get(api.admin, "/api/agents/ana").json() == created
    api.add_agent("bob", name="Bob", number="+34699000002")
    listed = api.get(api.admin, "/api/agents").json()["agents"]
    assert [(a["id"], a["identity"], a["number"]) for a in listed] == [
        ("ana", "ana", None),
        ("bob", None, "+34699000002"),
    ]
    serving = api.get(api.admin, "/api/agents", queue=QUEUE).json()["agents"]
    assert [a["id"] for a in serving] == ["ana"]

    changed = api.request(
        "PATCH", api.admin, "/api/agents/ana", {"name": "Ana G.", "number": "+34699000003"}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["name"], changed.json()["identity"], changed.json()["number"]) == (
        "Ana G.",
        None,
        "+34699000003",
    )
    assert changed.json()["queues"] == {QUEUE: 6}  # left out: kept
    queues_changed = api.request("PATCH", api.admin, "/api/agents/ana", {"queues": {}})
    assert queues_changed.json()["queues"] == {}
    assert len(api.wakes) == 4

    gone = api.request("DELETE", api.admin, "/api/agents/ana")
    assert gone.status_code == 200
    assert gone.json() == {"id": "ana", "deleted": True}
    assert api.get(api.admin, "/api/agents/ana").status_code == 404
    assert api.request("DELETE", api.admin, "/api/agents/ana").status_code == 404
    assert [a["id"] for a in api.get(api.admin, "/api/agents").json()["agents"]] == ["bob"]
    assert len(api.wakes) == 5


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {"identity": "ana2", "number": "+34699000009"},
            "number: give a softphone identity or a number, not both",
        ),
        ({}, "identity: give the agent's softphone identity, or a number"),
        ({"number": "612345678"}, "number: expected a phone number in E.164 form"),
        ({"identity": "ana-2"}, "identity: expected a softphone identity"),
        (
            {"identity": "ana2", "queues": {"ventas": 5, QUEUE: 5, "caja": 2}},
            "queues: no queue 'caja', 'ventas' in the flows; the queues are general-queue",
        ),
        ({"identity": "ana2", "queues": {QUEUE: 11}}, "expected `int` <= 10"),
        (
            {"identity": "ana2", "id": "Ana"},
            "id: expected an agent id: lowercase letters, digits, _, . and -, like ana",
        ),
        ({"identity": "ana2", "id": "ana"}, "id: agent 'ana' exists already"),
        ({"identity": "ana"}, "identity: target 'client:ana' is agent 'ana''s already"),
        ({"identity": "ana2", "name": "   "}, "name: agent name '': expected 1 to 100"),
        ({"identity": "ana2", "skills": {}}, "object contains unknown field `skills`"),
    ],
    ids=[
        "both",
        "neither",
        "not-e164",
        "bad-identity",
        "unknown-queues",
        "skill-11",
        "bad-id",
        "taken-id",
        "taken-target",
        "blank-name",
        "unknown-field",
    ],
)
def test_refused_agents_are_a_422_naming_the_field(
    api: QueueApp, body: dict[str, object], detail: str
) -> None:
    api.add_agent("ana", name="Ana", identity="ana")
    response = api.request("POST", api.admin, "/api/agents", {"id": "ana2", "name": "A"} | body)
    assert response.status_code == 422, response.text
    assert detail in response.json()["detail"]
    assert [a["id"] for a in api.get(api.admin, "/api/agents").json()["agents"]] == ["ana"]


def test_changes_to_an_unknown_agent_are_a_404(api: QueueApp) -> None:
    for method, path, body in [
        ("GET", "/api/agents/nadie", None),
        ("PATCH", "/api/agents/nadie", {"name": "X"}),
        ("DELETE", "/api/agents/nadie", None),
        ("PUT", "/api/agents/nadie/status", {"status": "available"}),
    ]:
        response = api.request(method, api.admin, path, body)
        assert response.status_code == 404, (method, path)
        assert response.json() == {"error": "not_found", "detail": "no agent 'nadie'"}


def test_only_admin_keys_manage_agents(api: QueueApp) -> None:
    api.add_agent("ana", name="Ana", identity="ana")
    for key in (api.ana, api.anonymous):
        for method, path, body in [
            ("POST", "/api/agents", {"id": "eve", "name": "Eve", "identity": "eve"}),
            ("PATCH", "/api/agents/ana", {"name": "Ana"}),
            ("DELETE", "/api/agents/ana", None),
            ("GET", f"/api/queues/{QUEUE}/stats", None),
        ]:
            response = api.request(method, key, path, body)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"] == "forbidden"


def test_an_agents_key_sees_and_sets_its_own_agent_only(api: QueueApp) -> None:
    """ana's key (identity ana) may act for the agent whose softphone is ana, not for bob,
    nor for an agent reached at a number; a key with neither identity nor admin sees none."""
    api.add_agent("ana-garcia", name="Ana", identity="ana", queues={QUEUE: 5})
    api.add_agent("bob", name="Bob", identity="bob", queues={QUEUE: 5})
    api.add_agent("carla", name="Carla", number="+34699000001")

    mine = api.get(api.ana, "/api/agents").json()["agents"]
    assert [a["id"] for a in mine] == ["ana-garcia"]
    assert api.get(api.ana, "/api/agents/ana-garcia").status_code == 200
    assert api.get(api.ana, "/api/agents/bob").status_code == 403
    assert api.get(api.anonymous, "/api/agents").status_code == 403

    own = api.set_status(api.ana, "ana-garcia", "available")
    assert own.status_code == 200, own.text
    assert own.json()["status"] == "available"
    for key, agent in [(api.ana, "bob"), (api.ana, "carla"), (api.anonymous, "ana-garcia")]:
        refused = api.set_status(key, agent, "offline")
        assert refused.status_code == 403, (agent, refused.text)
        assert refused.json()["error"] == "forbidden"
    assert (
        "its own identity 'ana' only (not 'bob')"
        in api.set_status(api.ana, "bob", "busy").json()["detail"]
    )
    assert api.set_status(api.admin, "carla", "busy").json()["status"] == "busy"
    bob = api.get(api.admin, "/api/agents/bob").json()
    assert bob["status"] == "offline"


def test_a_status_is_live_persisted_and_wakes_the_scheduler(api: QueueApp) -> None:
    """available, then wrap-up set by hand: it ends after the queue's wrap_up (30 s)."""
    api.add_agent("ana", name="Ana", identity="ana", queues={QUEUE: 5})
    before = len(api.wakes)
    answer = api.set_status(api.ana, "ana", "wrap-up").json()
    assert answer["status"] == "wrap-up"
    since = dt.datetime.fromisoformat(answer["since"])
    assert abs(since.timestamp() - time.time()) < 5
    assert dt.datetime.fromisoformat(answer["wrapUpUntil"]) - since == dt.timedelta(seconds=30)
    assert len(api.wakes) == before + 1
    stored = directory.get_agent(api.db, "ana")
    assert stored is not None
    assert stored.status == "wrap-up"
    live = api.run(partial(api.store.agents, ["ana"]))["ana"]
    assert live.wrap_until - live.since == pytest.approx(30)

    answer = api.set_status(api.ana, "ana", "available").json()
    assert (answer["status"], answer["wrapUpUntil"]) == ("available", None)
    assert api.get(api.ana, "/api/agents/ana").json() == answer


@pytest.mark.parametrize(
    "body",
    [{"status": "away"}, {"status": "AVAILABLE"}, {}, {"status": "busy", "until": 3}],
    ids=["unknown", "uppercase", "missing", "unknown-field"],
)
def test_a_bad_status_is_a_422(api: QueueApp, body: dict[str, object]) -> None:
    api.add_agent("ana", name="Ana", identity="ana")
    response = api.request("PUT", api.ana, "/api/agents/ana/status", body)
    assert response.status_code == 422, response.text


def test_an_agent_holding_a_reservation_is_on_call_and_busy(api: QueueApp) -> None:
    api.add_agent("ana", name="Ana", identity="ana", queues={QUEUE: 5})
    api.set_status(api.ana, "ana", "available")
    now = time.time()
    reservation = Reservation(
        id="r1",
        agent="ana",
        queue=QUEUE,
        member=sid(1),
        target="client:ana",
        at=now,
        until=now + 60,
    )
    assert api.run(partial(api.store.reserve, reservation, now))
    agent = api.get(api.admin, "/api/agents/ana").json()
    assert (agent["status"], agent["onCall"]) == ("busy", True)
    api.run(partial(api.store.finish, "r1", now + 1, now + 31))
    agent = api.get(api.admin, "/api/agents/ana").json()
    assert (agent["status"], agent["onCall"], agent["answered"]) == ("wrap-up", False, 1)


def test_removing_an_agent_forgets_its_live_state(api: QueueApp) -> None:
    api.add_agent("ana", name="Ana", identity="ana", queues={QUEUE: 5})
    api.set_status(api.ana, "ana", "available")
    lives: dict[str, AgentLive] = api.run(partial(api.store.agents, ["ana"]))
    assert "ana" in lives
    assert api.request("DELETE", api.admin, "/api/agents/ana").status_code == 200
    assert api.run(partial(api.store.agents, ["ana"])) == {}
    # Made again, it starts offline, with nothing of the old one.
    assert api.add_agent("ana", name="Ana", identity="ana")["status"] == "offline"


# -- GET /api/queues/{queueId}/stats --


def at(hour: int, minute: int = 0, day: int = 28) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, minute, tzinfo=dt.UTC)


def _place(n: int, joined: dt.datetime, outcome: str, **columns: Any) -> tuple[Call, QueueCall]:
    call = Call(
        sid=sid(n),
        direction="inbound",
        from_number=f"+3461111{n:04d}",
        to_number="+34910000000",
        status="completed",
        status_rank=4,
        started_at=joined - dt.timedelta(seconds=30),
        updated_at=joined,
        flow="seguros",
        queue=QUEUE,
    )
    place = QueueCall(
        call_sid=sid(n),
        queue=QUEUE,
        member=sid(n),
        caller=call.from_number,
        joined_at=joined,
        outcome=outcome,
        **columns,
    )
    return call, place


def seed_places(db: Database, places: list[tuple[Call, QueueCall]]) -> None:
    with db.session() as session:
        session.add_all(call for call, _ in places)
        session.flush()
        session.add_all(place for _, place in places)


def test_queue_stats_match_a_count_by_hand(api: QueueApp) -> None:
    """Ten places, as the history writer folds them into queue_calls; nine joined on the 28th.

    | # | outcome   | wait | talk | agent | missed | within 60 s |
    |---|-----------|------|------|-------|--------|-------------|
    | 1 | answered  | 10   | 100  | ana   | 1      | yes         |
    | 2 | answered  | 50   | 200  | ana   |        | yes         |
    | 3 | answered  | 90   | 60   | bob   | 2      | no          |
    | 4 | abandoned | 30   |      |       |        | yes (short) |
    | 5 | abandoned | 120  |      |       |        | no          |
    | 6 | full      |      |      |       |        |             |
    | 7 | timed_out | 600  |      |       |        |             |
    | 8 | left      | 20   |      |       |        |             |
    | 9 | callback  |      |      |       |        | (waiting)   |
    | 10| answered on the 27th: outside the range                        |
    """
    seed_places(
        api.db,
        [
            _place(1, at(9), "answered", wait_seconds=10, talk_seconds=100, agent="ana", missed=1),
            _place(2, at(9, 5), "answered", wait_seconds=50, talk_seconds=200, agent="ana"),
            _place(3, at(10), "answered", wait_seconds=90, talk_seconds=60, agent="bob", missed=2),
            _place(4, at(11), "abandoned", wait_seconds=30),
            _place(5, at(12), "abandoned", wait_seconds=120),
            _place(6, at(13), "full"),
            _place(7, at(14), "timed_out", wait_seconds=600),
            _place(8, at(15), "left", wait_seconds=20),
            _place(9, at(16), "callback", callback_requested_at=at(16, 1)),
            _place(10, at(23, day=27), "answered", wait_seconds=5, talk_seconds=9, agent="bob"),
        ],
    )  # fmt: skip
    response = api.get(
        api.admin, f"/api/queues/{QUEUE}/stats", **{"from": "2026-01-28"}, to="2026-01-28"
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "queue": QUEUE,
        "from": "2026-01-28T00:00:00Z",
        "to": "2026-01-29T00:00:00Z",  # a date-only `to` includes that day
        "serviceLevelThreshold": 60,
        "offered": 8,  # nine places, less the one turned away
        "turnedAway": 1,
        "answered": 3,
        "abandoned": 2,
        "timedOut": 1,
        "left": 1,
        "callbacks": 1,
        "waiting": 1,
        "missed": 3,  # 1 + 2
        "averageWait": 50.0,  # (10 + 50 + 90) / 3
        "longestWait": 600.0,  # the timed-out caller
        "serviceLevelPercent": 28.6,  # 2 answered within 60 s / (8 offered - 1 short abandon)
        "abandonRatePercent": 25.0,  # 2 / 8
        "averageTalk": 120.0,  # (100 + 200 + 60) / 3
        "callsPerAgent": {"ana": 2, "bob": 1},
    }


def test_queue_stats_cover_the_last_day_by_default_and_a_year_at_most(api: QueueApp) -> None:
    now = dt.datetime.now(dt.UTC)
    seed_places(
        api.db,
        [
            _place(1, now - dt.timedelta(hours=1), "answered", wait_seconds=4, agent="ana"),
            _place(2, now - dt.timedelta(hours=25), "abandoned", wait_seconds=40),
        ],
    )
    body = api.get(api.admin, f"/api/queues/{QUEUE}/stats").json()
    assert (body["offered"], body["answered"], body["abandoned"]) == (1, 1, 0)
    span = dt.datetime.fromisoformat(body["to"]) - dt.datetime.fromisoformat(body["from"])
    assert span == dt.timedelta(hours=24)
    assert abs(dt.datetime.fromisoformat(body["to"]) - now) < dt.timedelta(seconds=10)

    too_long = api.get(
        api.admin, f"/api/queues/{QUEUE}/stats", **{"from": "2025-01-01"}, to="2026-01-28"
    )
    assert too_long.status_code == 422
    assert "at most 366" in too_long.json()["detail"]
    backwards = api.get(
        api.admin, f"/api/queues/{QUEUE}/stats", **{"from": "2026-01-28"}, to="2026-01-27"
    )
    assert backwards.status_code == 422
    assert "the range is empty" in backwards.json()["detail"]
