"""Writes a batch of step records and progress reports to the database, in one transaction.

Idempotent: path rows are unique on (record, position) and inserted with ON CONFLICT DO
NOTHING; calls, recordings and places in queues are folded with the pure functions of
`projection`, which a redelivery leaves unchanged. Several writers may run at once: the rows a
batch touches are created if missing, then locked in a fixed order (SELECT ... FOR UPDATE on
PostgreSQL; SQLite has one writer at a time anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from flowpbx.db.database import Database
from flowpbx.db.models import Call, CallParty, CallStep, QueueCall, Recording
from flowpbx.engine.call_events import StepRecord
from flowpbx.engine.progress import QueueActivity, RecordingProgress, Report
from flowpbx.history import projection
from flowpbx.history.projection import Entry


@dataclass(frozen=True, slots=True)
class Written:
    """What one batch stored (rows new or changed)."""

    calls: int
    steps: int
    recordings: int
    queue_calls: int = 0
    """Places in queues (rows of queue_calls) new or changed."""


def write(db: Database, entries: Sequence[Entry]) -> Written:
    """Store `entries` (in stream order) in one transaction."""
    with db.session() as session:
        return _write(db, session, entries)


def _upsert_missing(
    db: Database,
    session: Session,
    table: Any,
    rows: list[dict[str, Any]],
    key: Sequence[str] | None = None,
) -> int:
    """Insert rows, skipping those whose key (`key`, else the primary key) is there already;
    how many were new."""
    if not rows:
        return 0
    # In key order: two writers inserting the same new rows cannot wait on each other.
    # (Path rows come in stream order and are new but for a redelivery: not sorted.)
    if table is CallStep.__table__:
        ordered = rows
    else:
        names = key or [c.name for c in table.primary_key.columns]
        ordered = sorted(rows, key=lambda r: tuple(r[k] for k in names))
    if db.dialect == "postgresql":
        return _insert_arrays(session, table, ordered)
    result = cast(
        CursorResult[Any],
        session.execute(sqlite.insert(table).on_conflict_do_nothing(), ordered),
    )
    return max(0, result.rowcount or 0)


def _insert_arrays(session: Session, table: Any, rows: list[dict[str, Any]]) -> int:
    """PostgreSQL: all the rows in one statement, one array per column
    (INSERT ... SELECT * FROM unnest(...)): one round trip and no per-row work in Python or
    SQLAlchemy, whatever the batch's size."""
    names = list(rows[0])
    columns = {c.name: c for c in table.columns}
    arrays = tuple([row[name] for row in rows] for name in names)
    # %b: arrays sent in binary (no per-element quoting and escaping in Python).
    casts = ", ".join(f"%b::{_pg_type(columns[name])}[]" for name in names)
    statement = (
        f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({casts}) "
        "ON CONFLICT DO NOTHING"
    )
    result = session.connection().exec_driver_sql(statement, arrays)
    return max(0, result.rowcount or 0)


_PG_TYPES: dict[str, str] = {}
_PG = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]


def _pg_type(column: Any) -> str:
    """The column's PostgreSQL type, without a length (varchar[] takes any)."""
    where = f"{column.table.name}.{column.key}"
    name = _PG_TYPES.get(where)
    if name is None:
        name = str(column.type.compile(dialect=_PG)).split("(")[0]
        _PG_TYPES[where] = name
    return name


def _write(db: Database, session: Session, entries: Sequence[Entry]) -> Written:
    locking = db.dialect == "postgresql"
    first = projection.calls_of(entries)
    sids = sorted(first)
    _upsert_missing(
        db, session, Call.__table__, [projection.new_call(sid, at) for sid, at in first.items()]
    )
    table = Call.__table__
    query = select(*table.columns).where(table.c.sid.in_(sids)).order_by(table.c.sid)
    found = session.execute(query.with_for_update() if locking else query).mappings()
    calls = {row["sid"]: projection.CallRow(**row) for row in found}
    before = {sid: call.columns() for sid, call in calls.items()}

    steps: list[dict[str, Any]] = []
    recording_news: list[tuple[str, RecordingProgress, float]] = []
    queue_news: list[Report] = []
    parties: dict[tuple[str, str], None] = {}
    for entry in entries:
        call = calls[entry.call_sid]
        if isinstance(entry, StepRecord):
            projection.fold_step(call, entry)
            steps += projection.path_rows(entry)
            recording_news += [
                (entry.call_sid, r, entry.at) for r in projection.recordings_in(entry)
            ]
        else:
            projection.fold_progress(call, entry)
            if isinstance(entry.progress, RecordingProgress):
                recording_news.append((entry.call_sid, entry.progress, entry.at))
            elif isinstance(entry.progress, QueueActivity):
                queue_news.append(entry)
        for identity in projection.identities(entry):
            parties[(entry.call_sid, identity[:121])] = None
        call.updated_at = max(call.updated_at, projection.moment(entry.at))

    new_steps = _upsert_missing(db, session, CallStep.__table__, steps)
    recordings = _recordings(db, session, recording_news, locking)
    queue_calls = _queue_calls(db, session, queue_news, locking)
    after = {sid: call.columns() for sid, call in calls.items()}
    changed = [row for sid, row in after.items() if row != before[sid]]
    _update_rows(db, session, cast(Table, Call.__table__), "sid", changed)
    # Parties carry their call's start (for the userId index): follow calls that moved, in
    # one statement for all of them.
    moved = [
        {"b_sid": sid, "b_started": row["started_at"]}
        for sid, row in after.items()
        if row["started_at"] != before[sid]["started_at"]
    ]
    if moved:
        parties_table = cast(Table, CallParty.__table__)
        follow = (
            update(parties_table)
            .where(parties_table.c.call_sid == bindparam("b_sid"))
            .values(started_at=bindparam("b_started", type_=parties_table.c.started_at.type))
        )
        session.execute(follow, moved)
    _upsert_missing(
        db,
        session,
        CallParty.__table__,
        [
            {"call_sid": sid, "identity": identity, "started_at": calls[sid].started_at}
            for sid, identity in parties
        ],
    )
    session.flush()
    return Written(
        calls=len(changed), steps=new_steps, recordings=recordings, queue_calls=queue_calls
    )


def _update_rows(
    db: Database, session: Session, table: Table, key: str, rows: list[dict[str, Any]]
) -> None:
    """Write the rows (of calls, queue_calls) the batch changed, found by their `key` column:
    on PostgreSQL one UPDATE ... FROM unnest(...)."""
    if not rows:
        return
    names = [name for name in rows[0] if name != key]
    if db.dialect != "postgresql":
        values = {name: bindparam(name, type_=table.c[name].type) for name in names}
        changes = update(table).where(table.c[key] == bindparam("b_key")).values(values)
        session.execute(changes, [{**row, "b_key": row[key]} for row in rows])
        return
    order = [key, *names]
    arrays = tuple([row[name] for row in rows] for name in order)
    casts = ", ".join(f"%b::{_pg_type(table.c[name])}[]" for name in order)
    assignments = ", ".join(f"{name} = v.{name}" for name in names)
    statement = (
        f"UPDATE {table.name} SET {assignments} FROM unnest({casts}) "
        f"AS v({', '.join(order)}) WHERE {table.name}.{key} = v.{key}"
    )
    session.connection().exec_driver_sql(statement, arrays)


def _recordings(
    db: Database,
    session: Session,
    news: list[tuple[str, RecordingProgress, float]],
    locking: bool,
) -> int:
    if not news:
        return 0
    first: dict[str, tuple[str, float]] = {}
    for call_sid, progress, at in news:
        first.setdefault(progress.recording_sid, (call_sid, at))
    _upsert_missing(
        db,
        session,
        Recording.__table__,
        [projection.new_recording(sid, call, at) for sid, (call, at) in first.items()],
    )
    query = select(Recording).where(Recording.sid.in_(sorted(first))).order_by(Recording.sid)
    found = {r.sid: r for r in session.scalars(query.with_for_update() if locking else query)}
    for _, progress, at in news:
        projection.fold_recording(found[progress.recording_sid], progress, at)
    return len(found)


def _queue_calls(db: Database, session: Session, news: list[Report], locking: bool) -> int:
    """Fold queue reports into their places (rows of queue_calls): the missing rows are made
    from the first report about each, then all are read (locked, in key order, on
    PostgreSQL), folded in stream order, and those that changed written in one statement."""
    if not news:
        return 0
    first: dict[tuple[str, str], Report] = {}
    for report in news:
        first.setdefault(projection.queue_key(report), report)
    keys = sorted(first)
    _upsert_missing(
        db,
        session,
        QueueCall.__table__,
        [projection.new_queue_call(report) for report in first.values()],
        key=("call_sid", "queue"),
    )
    table = cast(Table, QueueCall.__table__)
    query = (
        select(*table.columns)
        .where(table.c.call_sid.in_(sorted({sid for sid, _ in keys})))
        .order_by(table.c.call_sid, table.c.queue)
    )
    found = session.execute(query.with_for_update() if locking else query).mappings()
    rows = {
        (row["call_sid"], row["queue"]): projection.QueueCallRow(**row)
        for row in found
        if (row["call_sid"], row["queue"]) in first
    }
    before = {key: row.columns() for key, row in rows.items()}
    for report in news:
        projection.fold_queue(rows[projection.queue_key(report)], report)
    changed = [row.columns() for key, row in rows.items() if row.columns() != before[key]]
    _update_rows(db, session, table, "id", changed)
    return len(changed)
