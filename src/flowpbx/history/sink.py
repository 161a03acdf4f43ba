"""Writes a batch of step records and progress reports to the database, in one transaction.

Idempotent: path rows are unique on (record, position) and inserted with ON CONFLICT DO
NOTHING; calls and recordings are folded with the pure functions of `projection`, which a
redelivery leaves unchanged. Several writers may run at once: the rows a batch touches are
created if missing, then locked in a fixed order (SELECT ... FOR UPDATE on PostgreSQL; SQLite
has one writer at a time anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from flowpbx.db.database import Database
from flowpbx.db.models import Call, CallParty, CallStep, Recording
from flowpbx.engine.call_events import StepRecord
from flowpbx.engine.progress import RecordingProgress
from flowpbx.history import projection
from flowpbx.history.projection import Entry


@dataclass(frozen=True, slots=True)
class Written:
    """What one batch stored (rows new or changed)."""

    calls: int
    steps: int
    recordings: int


def write(db: Database, entries: Sequence[Entry]) -> Written:
    """Store `entries` (in stream order) in one transaction."""
    with db.session() as session:
        return _write(db, session, entries)


def _upsert_missing(db: Database, session: Session, table: Any, rows: list[dict[str, Any]]) -> int:
    """Insert rows, skipping those whose key is there already; how many were new."""
    if not rows:
        return 0
    dialect = postgresql if db.dialect == "postgresql" else sqlite
    # In key order: two writers inserting the same new rows cannot wait on each other.
    key = [c.name for c in table.primary_key.columns] if table is not CallStep.__table__ else []
    ordered = sorted(rows, key=lambda r: tuple(r[k] for k in key or ("record_id", "position")))
    result = cast(
        CursorResult[Any],
        session.execute(dialect.insert(table).on_conflict_do_nothing(), ordered),
    )
    return max(0, result.rowcount or 0)


def _write(db: Database, session: Session, entries: Sequence[Entry]) -> Written:
    locking = db.dialect == "postgresql"
    first = projection.calls_of(entries)
    sids = sorted(first)
    _upsert_missing(
        db, session, Call.__table__, [projection.new_call(sid, at) for sid, at in first.items()]
    )
    query = select(Call).where(Call.sid.in_(sids)).order_by(Call.sid)
    calls = {c.sid: c for c in session.scalars(query.with_for_update() if locking else query)}
    before = {sid: call.started_at for sid, call in calls.items()}

    steps: list[dict[str, Any]] = []
    recording_news: list[tuple[str, RecordingProgress, float]] = []
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
        for identity in projection.identities(entry):
            parties[(entry.call_sid, identity[:121])] = None
        call.updated_at = max(call.updated_at, projection.moment(entry.at))

    new_steps = _upsert_missing(db, session, CallStep.__table__, steps)
    recordings = _recordings(db, session, recording_news, locking)
    moved = [sid for sid, call in calls.items() if call.started_at != before[sid]]
    for sid in moved:
        session.execute(
            update(CallParty)
            .where(CallParty.call_sid == sid)
            .values(started_at=calls[sid].started_at)
        )
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
    return Written(calls=len(calls), steps=new_steps, recordings=recordings)


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
