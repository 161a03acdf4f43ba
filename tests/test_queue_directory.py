"""The agent directory on both databases (a SQLite file and a real PostgreSQL): migration 0003
up and down, agents made, listed, changed and removed, every refusal with the field at fault,
and the scheduler's cached view, which reads the database at most once per `ttl`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from sqlalchemy import event, func, inspect, select, text

from flowpbx.db import migrate
from flowpbx.db.database import Database
from flowpbx.db.models import AgentQueue
from flowpbx.queues import directory
from flowpbx.queues.directory import AgentDirectory, AgentError, AgentNotFound
from flowpbx.queues.model import AgentStatus

NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
QUEUE_TABLES = {"agents", "agent_queues", "queue_calls"}


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate.upgrade(database)
    yield database
    database.dispose()


def _tables(database: Database) -> set[str]:
    return set(inspect(database.engine).get_table_names())


def _downgrade(database: Database, revision: str) -> None:
    with database.engine.begin() as connection:
        command.downgrade(migrate.alembic_config(connection), revision)


def test_migration_0003_upgrades_and_downgrades(database_url: str) -> None:
    database = Database(database_url)
    try:
        migrate.upgrade(database, "0002")
        assert not QUEUE_TABLES & _tables(database)
        assert migrate.upgrade(database, "0003") == ("0002", "0003")
        assert _tables(database) >= QUEUE_TABLES
        directory.create_agent(database, "ana", "Ana", "client:ana", {"ventas": 7}, now=NOW)
        _downgrade(database, "0002")
        assert migrate.current(database) == "0002"
        assert not QUEUE_TABLES & _tables(database)
        assert {"calls", "call_steps", "api_keys"} <= _tables(database)  # 0002's are kept
        # Up again, to the head: the schema is exactly the models (autogenerate finds nothing).
        migrate.upgrade(database)
        assert migrate.current(database) == migrate.head()
        assert migrate.differences(database) == []
        assert directory.list_agents(database) == []
    finally:
        database.dispose()


def test_agents_are_made_read_listed_changed_and_removed(db: Database) -> None:
    ana = directory.create_agent(
        db, "ana", "  Ana García ", "client:ana", {"ventas": 7, "soporte": 5}, now=NOW
    )
    assert ana == directory.AgentDef(
        id="ana",
        name="Ana García",
        target="client:ana",
        status=AgentStatus.OFFLINE,
        skills={"soporte": 5, "ventas": 7},
    )
    assert list(ana.skills) == ["soporte", "ventas"]  # in queue order
    directory.create_agent(db, "carla.r", "Carla", "+34912345678", {"ventas": 10}, now=NOW)
    directory.create_agent(db, "bob-2", "Bob", "client:bob_2", {}, now=NOW)
    assert directory.get_agent(db, "ana") == ana
    assert directory.get_agent(db, "nadie") is None
    assert [a.id for a in directory.list_agents(db)] == ["ana", "bob-2", "carla.r"]
    assert [a.id for a in directory.list_agents(db, "ventas")] == ["ana", "carla.r"]
    assert [a.id for a in directory.list_agents(db, "soporte")] == ["ana"]
    assert directory.list_agents(db, "nada") == []

    # The queues given replace the agent's; what is not given is kept.
    later = NOW + dt.timedelta(hours=1)
    changed = directory.update_agent(db, "ana", queues={"soporte": 1}, now=later)
    assert (changed.name, changed.target, dict(changed.skills)) == (
        "Ana García",
        "client:ana",
        {"soporte": 1},
    )
    assert [a.id for a in directory.list_agents(db, "ventas")] == ["carla.r"]
    changed = directory.update_agent(db, "ana", name="Ana G.", target="+34600000001", now=later)
    assert (changed.name, changed.target, dict(changed.skills)) == (
        "Ana G.",
        "+34600000001",
        {"soporte": 1},
    )
    # Her old target is free again; keeping one's own target is no conflict.
    directory.update_agent(db, "bob-2", target="client:ana", now=later)
    directory.update_agent(db, "bob-2", target="client:ana", now=later)

    directory.save_status(db, "carla.r", AgentStatus.AVAILABLE, now=later)
    directory.save_status(db, "ana", "wrap-up", now=later)
    assert [(a.id, a.status) for a in directory.list_agents(db)] == [
        ("ana", AgentStatus.WRAP_UP),
        ("bob-2", AgentStatus.OFFLINE),
        ("carla.r", AgentStatus.AVAILABLE),
    ]

    directory.delete_agent(db, "ana")
    assert directory.get_agent(db, "ana") is None
    assert [a.id for a in directory.list_agents(db)] == ["bob-2", "carla.r"]
    with db.session() as session:  # her queues went with her
        assert session.scalar(select(func.count()).select_from(AgentQueue)) == 1
    # The id can be used again.
    directory.create_agent(db, "ana", "Ana", "client:ana_nueva", {"ventas": 5}, now=later)


def test_a_database_cascade_removes_an_agents_queues(db: Database) -> None:
    """agent_queues.agent_id is ON DELETE CASCADE on both databases (SQLite's foreign keys
    are on), so an agent deleted by hand in SQL leaves no queues behind."""
    directory.create_agent(db, "ana", "Ana", "client:ana", {"ventas": 7, "soporte": 2}, now=NOW)
    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM agents WHERE id = 'ana'"))
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(AgentQueue)) == 0


@pytest.mark.parametrize(
    ("agent_id", "name", "target", "queues", "field", "message"),
    [
        ("Ana", "Ana", "client:ana", {}, "id", "lowercase letters"),
        ("-ana", "Ana", "client:ana", {}, "id", "starting with a letter or digit"),
        ("a" * 65, "Ana", "client:ana", {}, "id", "1 to 64"),
        ("ana", " ", "client:ana", {}, "name", "1 to 100 printable"),
        ("ana", "Ana", "client:ana-maria", {}, "target", "client:<identity>"),
        ("ana", "Ana", "client:", {}, "target", "E.164"),
        ("ana", "Ana", "912345678", {}, "target", "E.164"),
        ("ana", "Ana", "sip:ana@example.com", {}, "target", "E.164"),
        ("ana", "Ana", "client:ana", {"Ventas": 5}, "queues", "queue id like"),
        ("ana", "Ana", "client:ana", {"ventas": 0}, "queues", "skill 0 is out of range"),
        ("ana", "Ana", "client:ana", {"ventas": 11}, "queues", "skill 11 is out of range"),
        ("ana", "Ana", "client:ana", {"ventas": True}, "queues", "whole number"),
    ],
)
def test_bad_agents_are_refused_with_the_field_at_fault(
    db: Database,
    agent_id: str,
    name: str,
    target: str,
    queues: dict[str, Any],
    field: str,
    message: str,
) -> None:
    with pytest.raises(AgentError, match=message) as caught:
        directory.create_agent(db, agent_id, name, target, queues, now=NOW)
    assert caught.value.field == field
    assert directory.list_agents(db) == []


def test_duplicates_and_missing_agents_are_refused(db: Database) -> None:
    directory.create_agent(db, "ana", "Ana", "client:ana", {"ventas": 5}, now=NOW)
    directory.create_agent(db, "bob", "Bob", "+34912345678", {"ventas": 5}, now=NOW)
    with pytest.raises(AgentError, match="agent 'ana' exists already") as caught:
        directory.create_agent(db, "ana", "Otra Ana", "client:otra", {}, now=NOW)
    assert caught.value.field == "id"
    with pytest.raises(AgentError, match="target 'client:ana' is agent 'ana''s already") as caught:
        directory.create_agent(db, "ana2", "Ana", "client:ana", {}, now=NOW)
    assert caught.value.field == "target"
    with pytest.raises(AgentError, match="'\\+34912345678' is agent 'bob''s") as caught:
        directory.update_agent(db, "ana", target="+34912345678", now=NOW)
    assert caught.value.field == "target"
    with pytest.raises(AgentError, match="skill 12") as caught:
        directory.update_agent(db, "ana", queues={"ventas": 12}, now=NOW)
    assert caught.value.field == "queues"
    with pytest.raises(AgentError, match="agent status 'lunch'") as caught:
        directory.save_status(db, "ana", "lunch")
    assert caught.value.field == "status"
    for change in (
        lambda: directory.update_agent(db, "nadie", name="X"),
        lambda: directory.delete_agent(db, "nadie"),
        lambda: directory.save_status(db, "nadie", AgentStatus.AVAILABLE),
    ):
        with pytest.raises(AgentNotFound, match="no agent 'nadie'"):
            change()
    # Nothing refused changed anything.
    assert [
        (a.id, a.name, a.target, dict(a.skills), a.status) for a in directory.list_agents(db)
    ] == [
        ("ana", "Ana", "client:ana", {"ventas": 5}, AgentStatus.OFFLINE),
        ("bob", "Bob", "+34912345678", {"ventas": 5}, AgentStatus.OFFLINE),
    ]


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _AgentReads:
    """Counts the statements that read `agents` (a listener on the real engine)."""

    def __init__(self, database: Database) -> None:
        self.count = 0
        event.listen(database.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM agents" in statement:
            self.count += 1


@pytest.mark.anyio
async def test_the_directory_reads_the_database_at_most_once_per_ttl(db: Database) -> None:
    directory.create_agent(db, "bob", "Bob", "client:bob", {"ventas": 5}, now=NOW)
    directory.create_agent(db, "ana", "Ana", "client:ana", {"ventas": 9, "soporte": 3}, now=NOW)
    clock = _Clock()
    agents = AgentDirectory(db, ttl=2.0, clock=clock)
    reads = _AgentReads(db)

    assert [a.id for a in await agents.serving("ventas")] == ["ana", "bob"]
    assert [a.id for a in await agents.serving("soporte")] == ["ana"]
    assert await agents.serving("nada") == []
    for _ in range(50):  # a scheduler ticking: no more queries within the ttl
        await agents.all()
    assert reads.count == 1

    # Changed elsewhere: seen once the ttl has run out, not before.
    directory.create_agent(db, "carla", "Carla", "+34912345678", {"soporte": 5}, now=NOW)
    reads.count = 1  # (create_agent's own checks read agents too)
    clock.now += 1.9
    assert [a.id for a in await agents.serving("soporte")] == ["ana"]
    assert reads.count == 1
    clock.now += 0.1
    assert [a.id for a in await agents.serving("soporte")] == ["ana", "carla"]
    assert reads.count == 2

    # Changed here: seen at once after invalidate().
    directory.save_status(db, "ana", AgentStatus.AVAILABLE)
    reads.count = 2
    assert (await agents.all())[0].status is AgentStatus.OFFLINE
    agents.invalidate()
    assert [(a.id, a.status) for a in await agents.all()] == [
        ("ana", AgentStatus.AVAILABLE),
        ("bob", AgentStatus.OFFLINE),
        ("carla", AgentStatus.OFFLINE),
    ]
    assert reads.count == 3

    # What is returned is the caller's own list: changing it changes nothing cached.
    mine = await agents.all()
    mine.clear()
    assert len(await agents.all()) == 3
    assert reads.count == 3
