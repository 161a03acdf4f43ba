"""Retention (`flowpbx.history.purge`) on SQLite and a real PostgreSQL: the selected calls go
with every row of theirs, the others and theirs stay, in batches of any size."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from flowpbx.db import migrate
from flowpbx.db.database import Database
from flowpbx.db.models import Call, CallParty, CallStep, Recording
from flowpbx.history.purge import Purged, Selection, count, purge, recording_sids

NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
CUTOFF = NOW - dt.timedelta(days=90)
CALLER = "+34612345678"
OTHER = "+34699000111"
COMPANY = "+34910000000"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate.upgrade(database)
    yield database
    database.dispose()


def add_call(
    db: Database,
    sid: str,
    started: dt.datetime,
    *,
    caller: str = OTHER,
    called: str = COMPANY,
    steps: int = 3,
    parties: tuple[str, ...] = ("ana",),
    recordings: int = 1,
) -> None:
    """A stored call with `steps` path rows, softphone `parties` and `recordings`."""
    with db.session() as session:
        session.add(
            Call(
                sid=sid,
                from_number=caller,
                to_number=called,
                started_at=started,
                updated_at=started,
                flow="seguros",
            )
        )
        session.flush()  # the call first: the children's foreign keys need it
        session.add_all(
            CallStep(
                call_sid=sid,
                record_id=f"{sid}-{n}",
                position=0,
                seq=n,
                at=started + dt.timedelta(seconds=n),
                flow="seguros",
                event="node_entered",
                node="menu",
                keys="1",
                data="{}",
            )
            for n in range(steps)
        )
        session.add_all(CallParty(call_sid=sid, identity=i, started_at=started) for i in parties)
        session.add_all(
            Recording(sid=f"RE{sid[2:]}{n}", call_sid=sid, status="completed", updated_at=started)
            for n in range(recordings)
        )


def rows(db: Database) -> dict[str, set[str]]:
    """The call sids each table holds rows for."""
    tables = {"calls": Call.sid, "steps": CallStep.call_sid}
    tables |= {"parties": CallParty.call_sid, "recordings": Recording.call_sid}
    with db.session() as session:
        return {name: set(session.scalars(select(column))) for name, column in tables.items()}


def total_rows(db: Database) -> int:
    with db.session() as session:
        return sum(
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Call, CallStep, CallParty, Recording)
        )


def history(db: Database) -> None:
    """Three calls older than CUTOFF, two newer (one a second after it)."""
    add_call(db, "CAold1", CUTOFF - dt.timedelta(days=30))
    add_call(db, "CAold2", CUTOFF - dt.timedelta(days=1), parties=("ana", "bob"), recordings=2)
    add_call(db, "CAold3", CUTOFF - dt.timedelta(seconds=1), steps=0, parties=(), recordings=0)
    add_call(db, "CAnew1", CUTOFF)
    add_call(db, "CAnew2", NOW - dt.timedelta(hours=1), caller=CALLER)


def test_purge_deletes_older_calls_with_all_their_rows_and_keeps_newer(db: Database) -> None:
    """Calls that started before the cutoff go with their path, parties and recordings; calls
    from the cutoff on keep every row."""
    history(db)
    purged = purge(db, Selection(before=CUTOFF))
    assert purged == Purged(calls=3, steps=6, parties=3, recordings=3)
    kept = {"CAnew1", "CAnew2"}
    assert rows(db) == {"calls": kept, "steps": kept, "parties": kept, "recordings": kept}
    assert purge(db, Selection(before=CUTOFF)) == Purged()  # nothing left to do


def test_a_dry_run_counts_exactly_what_a_purge_deletes_and_deletes_nothing(db: Database) -> None:
    """A dry run's counts are the purge's, and every row is still there after it."""
    history(db)
    before = total_rows(db)
    counted = purge(db, Selection(before=CUTOFF), dry_run=True)
    assert total_rows(db) == before
    assert counted == count(db, Selection(before=CUTOFF))
    assert purge(db, Selection(before=CUTOFF)) == counted


def test_a_purge_goes_batch_by_batch_oldest_first(db: Database) -> None:
    """With a batch of two, five old calls go in three transactions, oldest first, and the
    progress hears the running total after each."""
    for n in range(5):
        add_call(db, f"CAold{n}", CUTOFF - dt.timedelta(days=5 - n), steps=2)
    add_call(db, "CAnew", NOW)
    heard: list[Purged] = []
    purged = purge(db, Selection(before=CUTOFF), batch=2, progress=heard.append)
    assert [p.calls for p in heard] == [2, 4, 5]
    assert [p.steps for p in heard] == [4, 8, 10]
    assert purged == heard[-1] == Purged(calls=5, steps=10, parties=5, recordings=5)
    assert rows(db)["calls"] == {"CAnew"}


def test_a_purge_stopped_between_batches_keeps_the_newest(db: Database) -> None:
    """Each batch is its own transaction, oldest calls first: what a batch left is whole."""
    for n in range(3):
        add_call(db, f"CAold{n}", CUTOFF - dt.timedelta(days=3 - n))

    def stop(total: Purged) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        purge(db, Selection(before=CUTOFF), batch=1, progress=stop)
    left = {"CAold1", "CAold2"}
    assert rows(db) == {"calls": left, "steps": left, "parties": left, "recordings": left}


def test_purging_one_number_deletes_its_calls_whenever_they_were(db: Database) -> None:
    """--number: every call from or to the number goes, old or new; with a time too, only
    its older calls; nobody else's call is touched."""
    history(db)
    add_call(db, "CAfrom", NOW - dt.timedelta(days=200), caller=CALLER)
    add_call(db, "CAto", NOW - dt.timedelta(days=1), caller=COMPANY, called=CALLER)
    older = Selection(before=NOW - dt.timedelta(days=100), number=CALLER)
    assert recording_sids(db, older) == ["REfrom0"]
    assert purge(db, older).calls == 1
    assert "CAfrom" not in rows(db)["calls"]
    everything = Selection(number=CALLER)
    assert sorted(recording_sids(db, everything)) == ["REnew20", "REto0"]
    assert purge(db, everything, batch=1) == Purged(calls=2, steps=6, parties=2, recordings=2)
    left = {"CAold1", "CAold2", "CAold3", "CAnew1"}
    assert rows(db)["calls"] == left


@pytest.mark.parametrize(
    ("before", "number", "message"),
    [
        pytest.param(None, None, "needs a time, a number or both", id="nothing"),
        pytest.param(dt.datetime(2026, 1, 1), None, "naive datetime", id="naive"),
    ],
)
def test_a_selection_must_say_which_calls(
    before: dt.datetime | None, number: str | None, message: str
) -> None:
    """A purge of everything, or at a time of no zone, is refused before touching anything."""
    with pytest.raises(ValueError, match=message):
        Selection(before=before, number=number)


def test_selections_describe_themselves_with_the_number_masked() -> None:
    """What the command prints: the cutoff in UTC to the minute, the number masked."""
    assert Selection(before=CUTOFF).describe() == "that started before 2026-09-02 10:00 UTC"
    assert Selection(number=CALLER).describe() == "from or to +34******678"
