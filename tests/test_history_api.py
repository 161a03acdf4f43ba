"""Call history, recordings and analytics through the REST API, on SQLite and a real PostgreSQL.

Eight hand-made calls over three days (26-28 January 2026, UTC; Madrid is UTC+1 then), written
with the ORM as the history writer leaves them; every endpoint must give exactly the counts
worked out by hand below.

| # | start (UTC) | dir | status      | answ | s   | price       | exit (flow/node, reason)      |
|---|-------------|-----|-------------|------|-----|-------------|-------------------------------|
| 1 | 26th 09:15  | in  | completed   | yes  | 120 | -0.02 USD   | seguros/cola_ventas, agent    |
| 2 | 26th 10:05  | in  | completed   | no   | 30  | -0.005 USD  | seguros/menu_principal, none  |
| 3 | 27th 08:00  | out | busy        | no   | 0   |             | no flow, none                 |
| 4 | 27th 12:30  | in  | completed   | yes  | 300 | -0.07 USD   | no flow (a softphone), none   |
| 5 | 27th 23:30  | in  | completed   | no   | 120 | -0.015 USD  | seguros/cola_ventas, c_h_u    |
| 6 | 28th 10:00  | in  | completed   | yes  | 180 | -0.03 USD   | seguros/llamar_vida, connected|
| 7 | 28th 10:00  | in  | in-progress | no   |     |             | (not finished)                |
| 8 | 28th 15:45  | out | completed   | yes  | 60  | -0.0125 EUR | seguros/despedida, hangup     |

(c_h_u: caller_hung_up; none: no end reason, the caller hung up first.)
Parties: ana took part in 1, 4 and 8; bob in 3.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from flowpbx.db.database import Database
from flowpbx.db.models import Call, CallParty, CallStep, Recording
from flowpbx.web.api.history_answers import decimal_text, media_url
from test_api import Api, running, settings_for
from twilio_rest import TwilioRest, twilio_rest

COMPANY = "+34910000000"
ACCOUNT = "AC" + "ab" * 16
RECORDINGS = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings"


def sid(n: int) -> str:
    return f"CA{n:032x}"


def rec(n: int) -> str:
    return f"RE{n:032x}"


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, minute, second, tzinfo=dt.UTC)


def _call(n: int, start: dt.datetime, **columns: Any) -> Call:
    final = columns.get("status", "completed") != "in-progress"
    values: dict[str, Any] = {
        "sid": sid(n),
        "direction": "inbound",
        "from_number": "+3461111111" + str(n),
        "to_number": COMPANY,
        "status": "completed",
        "status_rank": 4 if final else 3,
        "started_at": start,
        "updated_at": start,
        "flow": "seguros",
        "flow_version": "cbf29c7fff44",
    } | columns
    return Call(**values)


def _step(n: int, seq: int, position: int, when: dt.datetime, event: str, **more: Any) -> CallStep:
    return CallStep(
        call_sid=sid(n),
        record_id=f"r{n}-{seq}",
        position=position,
        seq=seq,
        at=when,
        flow="seguros",
        event=event,
        node=more.get("node", ""),
        outcome=more.get("outcome"),
        keys=more.get("keys"),
        data="{}",
    )


def seed(db: Database) -> None:
    """The eight calls of the module docstring, with parties, paths and recordings."""
    s = dt.timedelta(seconds=1)
    calls = [
        _call(1, at(26, 9, 15), answered_at=at(26, 9, 15, 40), ended_at=at(26, 9, 17, 40),
              duration=120, price_micros=-20_000, price_unit="USD", queue="ventas",
              last_node="cola_ventas", end_reason="agent"),
        _call(2, at(26, 10, 5), ended_at=at(26, 10, 5, 30), duration=30, price_micros=-5_000,
              price_unit="USD", last_node="menu_principal"),
        _call(3, at(27, 8), direction="outbound", from_number=COMPANY, to_number="+34633333333",
              status="busy", ended_at=at(27, 8, 0, 20), duration=0, flow=None,
              flow_version=None),
        _call(4, at(27, 12, 30), from_number="client:ana", to_number="+34644444444",
              answered_at=at(27, 12, 30, 10), ended_at=at(27, 12, 35, 10), duration=300,
              price_micros=-70_000, price_unit="USD", flow=None, flow_version=None),
        _call(5, at(27, 23, 30), from_number="+34611111111", ended_at=at(27, 23, 32),
              duration=120, price_micros=-15_000, price_unit="USD", queue="ventas",
              last_node="cola_ventas", end_reason="caller_hung_up"),
        _call(6, at(28, 10), answered_at=at(28, 10, 0, 50), ended_at=at(28, 10, 3),
              duration=180, price_micros=-30_000, price_unit="USD", last_node="llamar_vida",
              end_reason="connected"),
        _call(7, at(28, 10), status="in-progress", last_node="menu_principal"),
        _call(8, at(28, 15, 45), direction="outbound", from_number=COMPANY,
              to_number="+34677777777", answered_at=at(28, 15, 45, 10), ended_at=at(28, 15, 46, 10),
              duration=60, price_micros=-12_500, price_unit="EUR", last_node="despedida",
              end_reason="hangup"),
    ]  # fmt: skip
    parties = [(1, "ana"), (4, "ana"), (8, "ana"), (3, "bob")]
    steps = [
        # Call 1, stored out of order: the path comes back by seq, then position.
        _step(1, 2, 1, at(26, 9, 15, 20), "node_entered", node="cola_ventas", outcome="enqueue"),
        _step(1, 2, 0, at(26, 9, 15, 20), "option_chosen", node="menu_principal",
              outcome="ventas", keys="1"),
        _step(1, 1, 1, at(26, 9, 15), "node_entered", node="menu_principal", outcome="menu"),
        _step(1, 1, 0, at(26, 9, 15), "call_started", outcome="inbound"),
        _step(1, 3, 0, at(26, 9, 15, 40) + s / 4, "queue_exited", node="cola_ventas",
              outcome="agent"),
        _step(5, 2, 0, at(27, 23, 30, 15), "option_chosen", node="menu_principal",
              outcome="ventas", keys="1"),
        _step(6, 2, 0, at(28, 10, 0, 10), "option_chosen", node="menu_principal",
              outcome="vida", keys="2"),
        _step(8, 2, 0, at(28, 15, 45, 30), "option_chosen", node="encuesta",
              outcome="despedida", keys="5"),
        # Chosen outside 26-28 January: in no analytics of those days.
        _step(7, 2, 0, at(29, 0, 0, 1), "option_chosen", node="menu_principal",
              outcome="ventas", keys="1"),
    ]  # fmt: skip
    recordings = [
        Recording(sid=rec(1), call_sid=sid(1), url=f"https://AC1:secret@{RECORDINGS[8:]}/{rec(1)}",
                  duration=100, channels=2, status="completed", source="DialVerb",
                  started_at=at(26, 9, 15, 40), updated_at=at(26, 9, 18)),
        Recording(sid=rec(2), call_sid=sid(6), url=f"{RECORDINGS}/{rec(2)}.wav", duration=170,
                  channels=1, status="completed", source="DialVerb", started_at=at(28, 10, 1),
                  updated_at=at(28, 10, 4)),
        Recording(sid=rec(3), call_sid=sid(6), status="in-progress", updated_at=at(28, 10, 2)),
    ]  # fmt: skip
    with db.session() as session:
        session.add_all(calls)
        session.flush()
        session.add_all(
            CallParty(call_sid=sid(n), identity=who, started_at=calls[n - 1].started_at)
            for n, who in parties
        )
        session.add_all(steps)
        session.add_all(recordings)


@pytest.fixture(scope="module")
def fake() -> Iterator[TwilioRest]:
    with twilio_rest() as server:
        yield server


@pytest.fixture
def api(database_url: str, fake: TwilioRest) -> Iterator[Api]:
    for running_api in running(settings_for(database_url, fake), fake):
        seed(running_api.db)
        yield running_api


def get(api: Api, key: str | None, path: str, **params: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response: httpx.Response = api.client.get(path, params=params, headers=headers)
    return response


def sids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [int(call["sid"][2:], 16) for call in response.json()["calls"]]


NEWEST_FIRST = [8, 7, 6, 5, 4, 3, 2, 1]
OUT_OF_TIME = base64.urlsafe_b64encode(b"c" + b"9" * 18 + b".CA1").decode().rstrip("=")
"""A cursor of the right form, 31,000 years after 1970."""


# -- GET /api/calls/history --


def test_history_has_the_seed_shape_newest_first(api: Api) -> None:
    """Every call, newest first (equal start times by sid, descending), in the seed's shape."""
    response = get(api, api.admin, "/api/calls/history")
    assert sids(response) == NEWEST_FIRST
    body = response.json()
    assert body["nextCursor"] is None
    assert body["calls"][-1] == {
        "sid": sid(1),
        "from": "+34611111111",
        "to": COMPANY,
        "status": "completed",
        "direction": "inbound",
        "duration": "120",
        "startTime": "2026-01-26T09:15:00Z",
        "endTime": "2026-01-26T09:17:40Z",
        "price": "-0.02",
        "priceUnit": "USD",
    }
    in_progress = body["calls"][1]
    assert in_progress["sid"] == sid(7)
    assert (in_progress["duration"], in_progress["endTime"]) == (None, None)
    assert (in_progress["price"], in_progress["priceUnit"]) == (None, None)
    assert [c["price"] for c in body["calls"]] == [
        "-0.0125",
        None,
        "-0.03",
        "-0.015",
        "-0.07",
        None,
        "-0.005",
        "-0.02",
    ]


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 8], ids=lambda n: f"limit-{n}")
def test_history_pages_have_no_gaps_or_repeats(api: Api, limit: int) -> None:
    """Following nextCursor lists every call once, in order, whatever the page size (a page
    may end between two calls that started at the same moment)."""
    seen: list[int] = []
    cursor = ""
    pages = 0
    while True:
        response = get(api, api.admin, "/api/calls/history", limit=limit, cursor=cursor)
        page = sids(response)
        assert len(page) <= limit
        seen += page
        pages += 1
        cursor = response.json()["nextCursor"]
        if cursor is None:
            break
    assert seen == NEWEST_FIRST
    assert pages == -(-len(NEWEST_FIRST) // limit)


def test_history_pages_are_stable_while_calls_come_in(api: Api) -> None:
    """A call started after the first page was read does not shift the pages that follow."""
    first = get(api, api.admin, "/api/calls/history", limit=3)
    assert sids(first) == [8, 7, 6]
    with api.db.session() as session:
        session.add(_call(9, at(28, 20)))
        session.add(_call(10, at(28, 10)))  # same moment as 6 and 7, a higher sid than both
    cursor = first.json()["nextCursor"]
    assert sids(get(api, api.admin, "/api/calls/history", limit=3, cursor=cursor)) == [5, 4, 3]
    assert sids(get(api, api.admin, "/api/calls/history", limit=2)) == [9, 8]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"number": "+34611111111"}, [5, 1]),
        ({"number": COMPANY}, [8, 7, 6, 5, 3, 2, 1]),
        ({"number": "client:ana"}, [4]),
        ({"number": "+34699999999"}, []),
        ({"status": "completed"}, [8, 6, 5, 4, 2, 1]),
        ({"status": "busy"}, [3]),
        ({"direction": "outbound"}, [8, 3]),
        ({"direction": "inbound", "status": "in-progress"}, [7]),
        ({"from": "2026-01-27", "to": "2026-01-27"}, [5, 4, 3]),
        ({"from": "2026-01-28T10:00:00Z"}, [8, 7, 6]),
        ({"to": "2026-01-28T10:00:00Z"}, [5, 4, 3, 2, 1]),
        ({"from": "2026-01-28T11:00:00+01:00", "to": "2026-01-28T10:00:01"}, [7, 6]),
        ({"from": "2026-01-27 23:30"}, [8, 7, 6, 5]),
        ({"userId": "ana"}, [8, 4, 1]),
        ({"userId": "bob"}, [3]),
        ({"userId": "carol"}, []),
        ({"userId": "ana", "direction": "outbound"}, [8]),
        ({"userId": "ana", "number": "client:ana"}, [4]),
        ({"userId": "ana", "from": "2026-01-27", "to": "2026-01-28T15:45:00Z"}, [4]),
        ({"number": COMPANY, "status": "completed", "from": "2026-01-27"}, [8, 6, 5]),
    ],
    ids=lambda value: (
        "&".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else None
    ),
)
def test_history_filters(api: Api, params: dict[str, str], expected: list[int]) -> None:
    """Each filter, alone and combined, gives exactly the calls worked out by hand."""
    assert sids(get(api, api.admin, "/api/calls/history", **params)) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [({"number": COMPANY}, [8, 7, 6, 5, 3, 2, 1]), ({"userId": "ana"}, [8, 4, 1])],
    ids=["number", "userId"],
)
def test_filtered_history_pages(api: Api, params: dict[str, str], expected: list[int]) -> None:
    """Pages of a number's or a person's calls (their own index walks) join up too."""
    seen: list[int] = []
    cursor: str | None = ""
    while cursor is not None:
        response = get(api, api.admin, "/api/calls/history", limit=2, cursor=cursor, **params)
        seen += sids(response)
        cursor = response.json()["nextCursor"]
    assert seen == expected


def test_who_sees_whose_history(api: Api) -> None:
    """Admin keys see every call; a key with an identity its own; another identity's is 403,
    and so is a key with neither."""
    assert sids(get(api, api.ana, "/api/calls/history")) == [8, 4, 1]
    assert sids(get(api, api.ana, "/api/calls/history", userId="ana")) == [8, 4, 1]
    assert sids(get(api, api.bob, "/api/calls/history")) == [3]
    assert sids(get(api, api.admin, "/api/calls/history", userId="bob")) == [3]
    other = get(api, api.ana, "/api/calls/history", userId="bob")
    assert other.status_code == 403
    assert other.json() == {
        "error": "forbidden",
        "detail": "this key may act for its own identity 'ana' only (not 'bob')",
    }
    nobody = get(api, api.anonymous, "/api/calls/history")
    assert nobody.status_code == 403
    assert nobody.json()["detail"].startswith("this key has no identity")


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"limit": "201"}, "limit: expected `int` <= 200"),
        ({"limit": "0"}, "limit: expected `int` >= 1"),
        ({"limit": "ten"}, "limit: expected `int`, got `str`"),
        ({"status": "answered"}, "status: expected a call status: queued, initiated, ringing"),
        ({"direction": "sideways"}, "direction: expected a direction: inbound or outbound"),
        ({"number": " 34611111111"}, "number: expected a phone number in E.164 form"),
        ({"number": "client:ana-maria"}, "or a softphone as client:<identity>"),
        ({"userId": "ana maria"}, "userId: expected a softphone identity"),
        ({"from": "28/01/2026"}, "from: expected a date (2026-01-28) or a date and time"),
        ({"to": "2026-02-30"}, "to: '2026-02-30' is not a date or time of the calendar"),
        ({"from": "2026-01-28T25:00"}, "from: '2026-01-28T25:00' is not a date or time"),
        ({"from": "2026-01-28", "to": "2026-01-27"}, "from: 2026-01-28T00:00:00Z is not before"),
        ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor: not a cursor this API gave"),
        ({"cursor": OUT_OF_TIME}, "cursor: not a cursor this API gave"),
        ({"page": "2"}, "the query: object contains unknown field `page`"),
    ],
    ids=lambda value: "&".join(value) if isinstance(value, dict) else None,
)
def test_bad_history_queries_are_a_422_naming_the_parameter(
    api: Api, params: dict[str, str], detail: str
) -> None:
    """A bad query value is a 422 whose detail names the parameter and what was expected."""
    response = get(api, api.admin, "/api/calls/history", **params)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid"
    assert detail in response.json()["detail"]


# -- GET /api/calls/{sid} --


def test_a_call_with_its_path_parties_and_recordings(api: Api) -> None:
    """One call: the history fields and the rest, its path by seq then position, its
    recordings with media URLs that carry no credentials."""
    response = get(api, api.ana, f"/api/calls/{sid(1)}")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "sid": sid(1),
        "from": "+34611111111",
        "to": COMPANY,
        "status": "completed",
        "direction": "inbound",
        "duration": "120",
        "startTime": "2026-01-26T09:15:00Z",
        "endTime": "2026-01-26T09:17:40Z",
        "price": "-0.02",
        "priceUnit": "USD",
        "answerTime": "2026-01-26T09:15:40Z",
        "flow": "seguros",
        "flowVersion": "cbf29c7fff44",
        "queue": "ventas",
        "endReason": "agent",
        "lastNode": "cola_ventas",
        "parties": ["ana"],
        "path": [
            {"at": "2026-01-26T09:15:00Z", "event": "call_started", "node": "",
             "outcome": "inbound", "keys": None},
            {"at": "2026-01-26T09:15:00Z", "event": "node_entered", "node": "menu_principal",
             "outcome": "menu", "keys": None},
            {"at": "2026-01-26T09:15:20Z", "event": "option_chosen", "node": "menu_principal",
             "outcome": "ventas", "keys": "1"},
            {"at": "2026-01-26T09:15:20Z", "event": "node_entered", "node": "cola_ventas",
             "outcome": "enqueue", "keys": None},
            {"at": "2026-01-26T09:15:40.250000Z", "event": "queue_exited",
             "node": "cola_ventas", "outcome": "agent", "keys": None},
        ],
        "recordings": [
            {"sid": rec(1), "url": f"{RECORDINGS}/{rec(1)}.mp3", "duration": 100,
             "channels": 2, "status": "completed", "source": "DialVerb"},
        ],
    }  # fmt: skip
    detail = get(api, api.admin, f"/api/calls/{sid(6)}").json()
    assert detail["parties"] == []
    assert detail["answerTime"] == "2026-01-28T10:00:50Z"
    assert detail["recordings"] == [
        {"sid": rec(2), "url": f"{RECORDINGS}/{rec(2)}.wav", "duration": 170, "channels": 1,
         "status": "completed", "source": "DialVerb"},
        {"sid": rec(3), "url": None, "duration": None, "channels": None,
         "status": "in-progress", "source": ""},
    ]  # fmt: skip
    in_progress = get(api, api.admin, f"/api/calls/{sid(7)}").json()
    assert (in_progress["endTime"], in_progress["endReason"]) == (None, None)
    assert [step["at"] for step in in_progress["path"]] == ["2026-01-29T00:00:01Z"]


def test_a_call_is_404_when_unknown_malformed_or_not_the_keys(api: Api) -> None:
    """Unknown and malformed sids are a JSON 404; so is a call outside the key's identity, with
    the same words as an unknown one; a key with neither identity nor admin is 403."""
    unknown = get(api, api.admin, f"/api/calls/{sid(99)}")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "not_found", "detail": f"no call {sid(99)} in the history"}
    hidden = get(api, api.bob, f"/api/calls/{sid(1)}")
    assert hidden.status_code == 404
    assert hidden.json() == {"error": "not_found", "detail": f"no call {sid(1)} in the history"}
    assert get(api, api.bob, f"/api/calls/{sid(3)}").status_code == 200
    assert get(api, api.anonymous, f"/api/calls/{sid(1)}").status_code == 403
    for malformed in ("CA123", "CA" + "g" * 32, sid(1) + "0", "RE" + sid(1)[2:], "nowhere"):
        response = get(api, api.admin, f"/api/calls/{malformed}")
        assert response.status_code == 404, malformed
        assert response.json()["error"] == "not_found"
    # The webhooks under /api/calls/ are still there, for POST only.
    wrong = get(api, api.admin, "/api/calls/incoming")
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")


# -- GET /api/recordings/{sid} --


def test_a_recording_is_its_mp3_url_without_credentials(api: Api) -> None:
    """The seed's shape: the RecordingUrl with .mp3, never user:password@; a URL that names a
    format keeps it."""
    response = get(api, api.ana, f"/api/recordings/{rec(1)}")
    assert response.status_code == 200, response.text
    assert response.json() == {"url": f"{RECORDINGS}/{rec(1)}.mp3"}
    assert "secret" not in response.text
    other = get(api, api.admin, f"/api/recordings/{rec(2)}")
    assert other.json() == {"url": f"{RECORDINGS}/{rec(2)}.wav"}


def test_a_recording_is_404_when_unknown_pending_or_not_the_keys(api: Api) -> None:
    """Unknown, malformed, not yet sent by Twilio, or of a call outside the key's identity: 404
    (403 for a key with neither identity nor admin)."""
    cases = [
        (api.admin, rec(99), f"no recording {rec(99)} in the history"),
        (api.admin, rec(3), f"recording {rec(3)} has no media yet (Twilio has not sent it)"),
        (api.bob, rec(1), f"no recording {rec(1)} in the history"),
        (api.ana, rec(2), f"no recording {rec(2)} in the history"),
    ]
    for key, recording, detail in cases:
        response = get(api, key, f"/api/recordings/{recording}")
        assert response.status_code == 404, recording
        assert response.json() == {"error": "not_found", "detail": detail}
    assert get(api, api.admin, "/api/recordings/RE123").status_code == 404
    assert get(api, api.anonymous, f"/api/recordings/{rec(1)}").status_code == 403


def test_a_recording_twilio_did_not_make_is_404(api: Api) -> None:
    """A recording Twilio reported absent or failed has no media, even with a URL kept."""
    with api.db.session() as session:
        recording = session.get(Recording, rec(1))
        assert recording is not None
        recording.status, recording.status_rank = "failed", 2
    response = get(api, api.admin, f"/api/recordings/{rec(1)}")
    assert response.status_code == 404
    detail = f"recording {rec(1)} was not made (Twilio reported it failed)"
    assert response.json() == {"error": "not_found", "detail": detail}


# -- GET /api/analytics --


def analytics(api: Api, **params: str) -> dict[str, Any]:
    response = get(api, api.admin, "/api/analytics", **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _hours(counts: dict[int, int]) -> list[dict[str, int]]:
    return [{"hour": hour, "calls": counts.get(hour, 0)} for hour in range(24)]


def test_analytics_in_utc(api: Api) -> None:
    """Totals, rates, durations, days, hours, options, exits and cost of the eight calls."""
    body = analytics(api, **{"from": "2026-01-26", "to": "2026-01-28"})
    assert body == {
        "from": "2026-01-26T00:00:00Z",
        "to": "2026-01-29T00:00:00Z",
        "timezone": "UTC",
        "calls": 8,
        "finished": 7,
        "answered": 4,
        "abandoned": 2,
        "answerRate": 0.5714,
        "abandonmentRate": 0.2857,
        "averageDuration": 135.0,
        "p90Duration": 300,
        "perDay": [
            {"date": "2026-01-26", "calls": 2},
            {"date": "2026-01-27", "calls": 3},
            {"date": "2026-01-28", "calls": 3},
        ],
        "perHour": _hours({8: 1, 9: 1, 10: 3, 12: 1, 15: 1, 23: 1}),
        "byStatus": {"busy": 1, "completed": 6, "in-progress": 1},
        "byDirection": {"inbound": 6, "outbound": 2},
        "menuOptions": [
            {"flow": "seguros", "node": "menu_principal", "key": "1", "target": "ventas",
             "times": 2},
            {"flow": "seguros", "node": "encuesta", "key": "5", "target": "despedida",
             "times": 1},
            {"flow": "seguros", "node": "menu_principal", "key": "2", "target": "vida",
             "times": 1},
        ],
        "exits": [
            {"flow": None, "node": None, "reason": "hung_up", "calls": 2},
            {"flow": "seguros", "node": "cola_ventas", "reason": "agent", "calls": 1},
            {"flow": "seguros", "node": "cola_ventas", "reason": "caller_hung_up", "calls": 1},
            {"flow": "seguros", "node": "despedida", "reason": "hangup", "calls": 1},
            {"flow": "seguros", "node": "llamar_vida", "reason": "connected", "calls": 1},
            {"flow": "seguros", "node": "menu_principal", "reason": "hung_up", "calls": 1},
        ],
        "cost": {"EUR": "-0.0125", "USD": "-0.14"},
    }  # fmt: skip


def test_analytics_in_madrid(api: Api) -> None:
    """In Europe/Madrid (UTC+1 in January) dates are Madrid's days: call 5 (23:30 UTC on the
    27th) is on the 28th, at 00h, and every hour moves one on."""
    body = analytics(api, **{"from": "2026-01-26", "to": "2026-01-28"}, timezone="Europe/Madrid")
    assert (body["from"], body["to"]) == ("2026-01-25T23:00:00Z", "2026-01-28T23:00:00Z")
    assert body["timezone"] == "Europe/Madrid"
    assert body["calls"] == 8
    assert body["perDay"] == [
        {"date": "2026-01-26", "calls": 2},
        {"date": "2026-01-27", "calls": 2},
        {"date": "2026-01-28", "calls": 4},
    ]
    assert body["perHour"] == _hours({9: 1, 10: 1, 11: 3, 13: 1, 16: 1, 0: 1})
    # The 28th alone, in Madrid: from 23:00 UTC on the 27th.
    day = analytics(api, **{"from": "2026-01-28", "to": "2026-01-28"}, timezone="Europe/Madrid")
    assert day["calls"] == 4
    assert day["perDay"] == [{"date": "2026-01-28", "calls": 4}]
    assert day["byDirection"] == {"inbound": 3, "outbound": 1}
    assert day["cost"] == {"EUR": "-0.0125", "USD": "-0.045"}
    # Times without an offset are Madrid's too.
    times = {"from": "2026-01-28T00:00", "to": "2026-01-29T00:00:00"}
    assert analytics(api, **times, timezone="Europe/Madrid") == day


def test_analytics_of_an_empty_range(api: Api) -> None:
    """No calls: zero counts, null rates and durations, a zero for every day and hour."""
    body = analytics(api, **{"from": "2025-12-01", "to": "2025-12-02"})
    assert body["calls"] == body["finished"] == 0
    assert body["answerRate"] is body["abandonmentRate"] is None
    assert body["averageDuration"] is body["p90Duration"] is None
    assert body["perDay"] == [
        {"date": "2025-12-01", "calls": 0},
        {"date": "2025-12-02", "calls": 0},
    ]
    assert body["perHour"] == _hours({})
    assert (body["byStatus"], body["menuOptions"], body["exits"], body["cost"]) == ({}, [], [], {})


@pytest.mark.parametrize(
    ("durations", "p90"),
    [([7], 7), (list(range(1, 11)), 9), (list(range(1, 12)), 10), (list(range(20, 0, -1)), 18)],
    ids=["one", "ten", "eleven", "twenty"],
)
def test_analytics_p90_is_the_nearest_rank(api: Api, durations: list[int], p90: int) -> None:
    """The 90th percentile of completed calls' durations is the ceil(0.9 n)-th smallest, on
    both databases."""
    with api.db.session() as session:
        session.add_all(
            _call(100 + n, at(10, 12, n), duration=d, ended_at=at(10, 13))
            for n, d in enumerate(durations)
        )
    body = analytics(api, **{"from": "2026-01-10", "to": "2026-01-10"})
    assert body["p90Duration"] == p90
    assert body["averageDuration"] == round(sum(durations) / len(durations), 1)


def test_analytics_defaults_to_the_last_30_days_and_is_for_admin_keys(api: Api) -> None:
    """Without a range: the 30 days up to now; keys that are not admin keys get 403."""
    body = analytics(api)
    start = dt.datetime.fromisoformat(body["from"])
    end = dt.datetime.fromisoformat(body["to"])
    assert end - start == dt.timedelta(days=30)
    assert abs(end - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert len(body["perDay"]) == 31  # a partial day at each end
    for key in (api.ana, api.anonymous):
        response = get(api, key, "/api/analytics")
        assert response.status_code == 403
        assert response.json()["detail"].startswith("this needs an admin key")


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone: unknown time zone 'Mars/Olympus_Mons'"),
        ({"timezone": "Europe/Madird"}, "(did you mean 'Europe/Madrid'?)"),
        ({"timezone": "../../etc/passwd"}, "timezone: expected an IANA time zone name"),
        ({"from": "2025-01-01", "to": "2026-01-05"}, "at most 366 (give a nearer `from` or `to`)"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "from: 2026-02-01T00:00:00Z is not before"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "the range is empty"),
        ({"to": "9999-12-31"}, "to: '9999-12-31' is not a date or time of the calendar"),
        ({"to": "0001-01-02"}, "to: '0001-01-02' is not a date or time of the calendar"),
        (
            {"from": "0001-01-01T00:00Z", "timezone": "America/New_York"},
            "from: '0001-01-01T00:00Z' is not a date or time of the calendar between 1970",
        ),
        ({"from": "yesterday"}, "from: expected a date (2026-01-28)"),
        ({"days": "7"}, "the query: object contains unknown field `days`"),
    ],
    ids=lambda value: "&".join(value) if isinstance(value, dict) else None,
)
def test_bad_analytics_queries_are_a_422_naming_the_parameter(
    api: Api, params: dict[str, str], detail: str
) -> None:
    """A bad range or time zone is a 422 that says which parameter and what was expected."""
    response = get(api, api.admin, "/api/analytics", **params)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid"
    assert detail in response.json()["detail"]


# -- every endpoint --


@pytest.mark.parametrize(
    "path",
    ["/api/calls/history", f"/api/calls/{sid(1)}", f"/api/recordings/{rec(1)}", "/api/analytics"],
)
def test_every_history_endpoint_needs_a_key(api: Api, path: str) -> None:
    """Without a key, or with a wrong one: 401 and the JSON error."""
    for headers in ({}, {"Authorization": "Bearer fpbx_nonsense"}):
        response = api.client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_answers_with_data_match_the_openapi_document(api: Api) -> None:
    """Answers full of data (schemathesis only meets an empty history) keep to the schemas the
    document declares for them."""
    components = get(api, api.admin, "/api/openapi.json").json()["components"]
    answers = [
        ("/api/calls/history", {}, "CallHistoryPage"),
        ("/api/calls/history", {"limit": "3"}, "CallHistoryPage"),
        (f"/api/calls/{sid(1)}", {}, "CallDetail"),
        (f"/api/calls/{sid(6)}", {}, "CallDetail"),
        (f"/api/calls/{sid(7)}", {}, "CallDetail"),
        (f"/api/recordings/{rec(1)}", {}, "RecordingMedia"),
        ("/api/analytics", {"from": "2026-01-26", "to": "2026-01-28"}, "AnalyticsReport"),
        ("/api/analytics", {"from": "2025-12-01", "to": "2025-12-02"}, "AnalyticsReport"),
    ]
    for path, params, shape in answers:
        response = get(api, api.admin, path, **params)
        assert response.status_code == 200, response.text
        schema = {"$ref": f"#/components/schemas/{shape}", "components": components}
        jsonschema.Draft202012Validator(schema).validate(response.json())


# -- the pieces --


@pytest.mark.parametrize(
    ("stored", "media"),
    [
        (f"{RECORDINGS}/{rec(1)}", f"{RECORDINGS}/{rec(1)}.mp3"),
        (f"{RECORDINGS}/{rec(1)}.mp3", f"{RECORDINGS}/{rec(1)}.mp3"),
        (f"{RECORDINGS}/{rec(1)}.wav", f"{RECORDINGS}/{rec(1)}.wav"),
        (f"https://AC1:tok@api.twilio.com/R/{rec(1)}", f"https://api.twilio.com/R/{rec(1)}.mp3"),
        (f"https://user@api.twilio.com:8443/R/{rec(1)}#x", f"https://api.twilio.com:8443/R/{rec(1)}.mp3"),
        ("", None),
        ("ftp://api.twilio.com/R/x", None),
        ("https://api.twilio.com:99999/R/x", None),
    ],
    ids=["bare", "mp3", "wav", "credentials", "user-port-fragment", "empty", "ftp", "bad-port"],
)  # fmt: skip
def test_media_url(stored: str, media: str | None) -> None:
    """The media URL is the RecordingUrl with .mp3 unless it names a format, never with
    credentials or a fragment; nothing usable gives None."""
    assert media_url(stored) == media


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (-20_000, "-0.02"),
        (-8_500, "-0.0085"),
        (-1, "-0.000001"),
        (0, "0.00"),
        (1_000_000, "1.00"),
        (-12_345_670, "-12.34567"),
    ],
)
def test_decimal_text(micros: int, text: str) -> None:
    """Prices read as Twilio writes them: two decimals at least, no trailing zeros beyond."""
    assert decimal_text(micros) == text
