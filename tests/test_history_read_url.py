"""DATABASE_READ_URL (issue #11): the call history, analytics and queue statistics endpoints
read from a second database (a PostgreSQL read replica), while API keys, agents and the
history writer use DATABASE_URL. Two databases of the session's real PostgreSQL stand for the
primary and its replica; the replica is given a call the primary does not have, and the
primary a call the replica has not received yet, so that every answer shows where it read."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from conftest import fresh_postgres_url
from flowpbx.db import migrate
from flowpbx.db.database import Database
from flowpbx.db.models import Call
from flowpbx.settings import Settings, SettingsError
from servers import PostgresServer
from test_api import Api, running, settings_for
from twilio_fake import TwilioDriver, call_sid
from twilio_rest import TwilioRest, twilio_rest

ONLY_IN_REPLICA = call_sid(7001)


@pytest.fixture(scope="module")
def fake() -> Iterator[TwilioRest]:
    with twilio_rest() as server:
        yield server


def test_history_reads_the_read_url_and_everything_else_the_database(
    shared_postgres: PostgresServer, fake: TwilioRest
) -> None:
    primary, replica = fresh_postgres_url(shared_postgres), fresh_postgres_url(shared_postgres)
    reads = Database(replica)
    try:
        migrate.upgrade(reads)  # a replica has the primary's schema
        start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        with reads.session() as session:
            session.add(
                Call(
                    sid=ONLY_IN_REPLICA,
                    from_number="+34611111111",
                    to_number="+34910000000",
                    status="completed",
                    status_rank=4,
                    started_at=start,
                    ended_at=start + dt.timedelta(seconds=30),
                    duration=30,
                    updated_at=start,
                    flow="seguros",
                )
            )
        settings = settings_for(primary, fake, database_read_url=replica)
        assert "database_read_url" not in repr(settings)  # it may carry a password
        # The app, and its API keys made in the primary only.
        with contextlib.contextmanager(running)(settings, fake) as api:
            _check(api, settings)
    finally:
        reads.dispose()


def _check(api: Api, settings: Settings) -> None:
    admin = {"Authorization": f"Bearer {api.admin}"}
    listed = api.client.get("/api/calls/history", headers=admin)
    assert listed.status_code == 200, listed.text
    assert [call["sid"] for call in listed.json()["calls"]] == [ONLY_IN_REPLICA]
    assert api.client.get(f"/api/calls/{ONLY_IN_REPLICA}", headers=admin).status_code == 200
    analytics = api.client.get("/api/analytics", headers=admin)
    assert analytics.status_code == 200, analytics.text
    assert analytics.json()["calls"] == 1
    stats = api.client.get("/api/queues/general-queue/stats", headers=admin)
    assert stats.status_code == 200, stats.text

    # A call now: the history writer stores it in the primary; the "replica" never gets it
    # (here nothing replicates), so the history endpoints do not show it: they read there.
    driver = TwilioDriver(api.client, settings.twilio_auth_token)
    new = call_sid(7002)
    driver.start(new)
    assert driver.call_status("completed").status_code == 204
    deadline = time.monotonic() + 10
    while True:
        with api.db.session() as session:
            stored = session.scalars(select(Call.sid).order_by(Call.sid)).all()
        if list(stored) == [new]:
            break
        assert time.monotonic() < deadline, f"the primary has {stored}"
        time.sleep(0.1)
    assert api.client.get(f"/api/calls/{new}", headers=admin).status_code == 404
    # Agents are written and read in the primary, as keys are.
    agent = {"id": "ana", "name": "Ana", "identity": "ana", "queues": {"general-queue": 5}}
    assert api.client.post("/api/agents", json=agent, headers=admin).status_code == 201
    assert api.client.get("/api/agents/ana", headers=admin).status_code == 200


def test_a_read_url_that_is_not_a_database_is_refused_at_start() -> None:
    environ = {"TWILIO_AUTH_TOKEN": "t", "DATABASE_READ_URL": "mysql://reports@replica/pbx"}
    with pytest.raises(SettingsError, match="DATABASE_READ_URL is not valid"):
        Settings.from_env(environ, env_file=None)
    replica = "postgresql://reports:secret@replica:5432/pbx"
    settings = Settings.from_env(environ | {"DATABASE_READ_URL": replica}, env_file=None)
    assert settings.database_read_url == replica
