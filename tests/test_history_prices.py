"""What calls cost: the price filler asks Twilio's REST API (faked at HTTP level) for the
price of recently ended calls without one, and stores it; calls too recent, too old, or
unknown to Twilio are not asked about (again)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator

import pytest

from flowpbx.db import migrate
from flowpbx.db.database import Database
from flowpbx.db.models import Call
from flowpbx.history import projection
from flowpbx.history.prices import ATTEMPTS, PriceFiller
from flowpbx.twilio.rest import TwilioCredentials
from flowpbx.twilio.rest import TwilioRest as RestClient
from twilio_fake import call_sid
from twilio_rest import TwilioRest, twilio_rest

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake() -> Iterator[TwilioRest]:
    with twilio_rest() as server:
        yield server


@pytest.fixture
async def rest(fake: TwilioRest) -> AsyncIterator[RestClient]:
    credentials = TwilioCredentials(
        account_sid=fake.account_sid,
        username=fake.api_key,
        password=fake.api_secret,
        base_url=fake.base_url,
    )
    client = RestClient(credentials)
    yield client
    await client.aclose()


def _ended(db: Database, n: int, ago: dt.timedelta, status: str = "completed") -> str:
    sid = call_sid(n)
    row = projection.new_call(sid, (NOW - ago).timestamp() - 60)
    row |= {"status": status, "status_rank": 4, "ended_at": NOW - ago}
    row |= {"duration": 60 if status == "completed" else 0}
    with db.session() as session:
        session.add(Call(**row))
    return sid


@pytest.mark.anyio
async def test_prices_of_ended_calls_are_asked_for_and_stored(
    database_url: str, fake: TwilioRest, rest: RestClient
) -> None:
    db = Database(database_url)
    migrate.upgrade(db)
    priced = _ended(db, 1, dt.timedelta(minutes=2))
    later = _ended(db, 2, dt.timedelta(minutes=3))
    too_soon = _ended(db, 3, dt.timedelta(seconds=10))
    too_old = _ended(db, 4, dt.timedelta(days=3))
    unknown = _ended(db, 5, dt.timedelta(minutes=4))
    busy = _ended(db, 6, dt.timedelta(minutes=5), status="busy")  # not billed, not asked
    for sid in (priced, later, too_soon, too_old, busy):
        fake.add_call(sid, status="completed")
    fake.calls[priced].price = "-0.01700"
    filler = PriceFiller(db, rest, clock=lambda: NOW)

    assert await filler.fill_once() == 1
    asked = [r.path.rsplit("/", 1)[-1] for r in fake.received if r.method == "GET"]
    assert sorted(asked) == sorted(f"{sid}.json" for sid in (priced, later, unknown))

    fake.calls[later].price = "-0.0085"
    assert await filler.fill_once() == 0  # asked ten minutes ago: not yet again
    filler.asked.clear()  # ten minutes later
    assert await filler.fill_once() == 1
    asked_again = [r.path for r in fake.received if r.method == "GET"][len(asked) :]
    assert [p.rsplit("/", 1)[-1] for p in asked_again] == [f"{later}.json"]  # not the unknown

    with db.session() as session:
        prices = {c.sid: (c.price_micros, c.price_unit) for c in session.query(Call)}
    assert prices == {
        priced: (-17000, "USD"),
        later: (-8500, "USD"),
        too_soon: (None, None),
        too_old: (None, None),
        unknown: (None, None),
        busy: (None, None),
    }
    db.dispose()


@pytest.mark.anyio
async def test_a_call_twilio_never_prices_is_asked_about_a_few_times_only(
    database_url: str, fake: TwilioRest, rest: RestClient
) -> None:
    db = Database(database_url)
    migrate.upgrade(db)
    sid = _ended(db, 1, dt.timedelta(minutes=2))
    fake.add_call(sid, status="completed")
    filler = PriceFiller(db, rest, clock=lambda: NOW)
    for _ in range(ATTEMPTS + 3):
        assert await filler.fill_once() == 0
        filler.asked.clear()  # ten minutes later
    assert len([r for r in fake.received if r.method == "GET"]) == ATTEMPTS
    db.dispose()
