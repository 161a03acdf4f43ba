"""Retention: delete calls from call history (older than a date, or from or to one number)
with their path, participants and recording rows, a batch of calls per transaction.

Only flowpbx's rows go: the recordings' audio is kept by Twilio and deleted there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, delete, func, or_, select
from sqlalchemy.orm import Session

from flowpbx.db.database import Database
from flowpbx.db.models import Call, CallParty, CallStep, QueueCall, Recording
from flowpbx.privacy import mask_number

DEFAULT_BATCH = 5000
MAX_BATCH = 10_000
"""A batch's call sids are sent as parameters of one statement: well under the limits of
SQLite (32,766) and PostgreSQL (65,535)."""

# Children first: nothing relies on the database cascading (SQLite only does so with its
# foreign_keys pragma on).
_CHILDREN = (
    (CallStep.__table__, CallStep.call_sid),
    (CallParty.__table__, CallParty.call_sid),
    (Recording.__table__, Recording.call_sid),
    (QueueCall.__table__, QueueCall.call_sid),
)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which calls go: those that started before `before`, those from or to `number`, or
    (both given) that number's calls before that time."""

    before: dt.datetime | None = None
    number: str | None = None

    def __post_init__(self) -> None:
        if self.before is None and self.number is None:
            raise ValueError("a purge needs a time, a number or both: it never deletes it all")
        if self.before is not None and self.before.tzinfo is None:
            raise ValueError("naive datetime: give the cutoff in UTC")

    def condition(self) -> ColumnElement[bool]:
        conditions: list[ColumnElement[bool]] = []
        if self.before is not None:
            conditions.append(Call.started_at < self.before)
        if self.number is not None:
            conditions.append(or_(Call.from_number == self.number, Call.to_number == self.number))
        return and_(*conditions)

    def describe(self) -> str:
        """The calls in words, masked as logs mask numbers: 'that started before ...'."""
        parts = []
        if self.number is not None:
            parts.append(f"from or to {mask_number(self.number)}")
        if self.before is not None:
            when = self.before.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
            parts.append(f"that started before {when}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Purged:
    """Rows deleted (or, in a dry run, that would be)."""

    calls: int = 0
    steps: int = 0
    """Path rows: the call's steps through its flow, with the keys pressed."""
    parties: int = 0
    """Softphone identities and agents that took part in the calls."""
    recordings: int = 0
    """Recording rows (links to the audio at Twilio)."""
    queue_rows: int = 0
    """Queue history rows: the calls' waits in queues (with the numbers they gave for
    callbacks)."""

    def __add__(self, other: Purged) -> Purged:
        return Purged(
            self.calls + other.calls,
            self.steps + other.steps,
            self.parties + other.parties,
            self.recordings + other.recordings,
            self.queue_rows + other.queue_rows,
        )


def count(db: Database, selection: Selection) -> Purged:
    """What `purge` would delete now."""
    chosen = select(Call.sid).where(selection.condition())
    with db.session() as session:
        calls = session.scalar(select(func.count()).select_from(Call).where(selection.condition()))
        found = [
            session.scalar(select(func.count()).select_from(table).where(column.in_(chosen)))
            for table, column in _CHILDREN
        ]
    return Purged(calls or 0, *(n or 0 for n in found))


def recording_sids(db: Database, selection: Selection) -> list[str]:
    """The recordings of the selected calls (oldest call first): their audio is at Twilio."""
    query = (
        select(Recording.sid)
        .join(Call, Call.sid == Recording.call_sid)
        .where(selection.condition())
        .order_by(Call.started_at, Recording.sid)
    )
    with db.session() as session:
        return list(session.scalars(query))


def purge(
    db: Database,
    selection: Selection,
    *,
    batch: int = DEFAULT_BATCH,
    dry_run: bool = False,
    progress: Callable[[Purged], None] | None = None,
) -> Purged:
    """Delete the selected calls and their rows, oldest first, `batch` calls per transaction
    (a purge of millions never holds a long transaction or a lock on a whole table);
    `progress` hears the running total after each batch. A dry run only counts."""
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"batch must be 1 to {MAX_BATCH}, not {batch}")
    if dry_run:
        return count(db, selection)
    total = Purged()
    while True:
        with db.session() as session:
            done = _purge_batch(db, session, selection, batch)
        if done.calls == 0:
            return total
        total += done
        if progress is not None:
            progress(total)


def _purge_batch(db: Database, session: Session, selection: Selection, batch: int) -> Purged:
    oldest = (
        select(Call.sid)
        .where(selection.condition())
        .order_by(Call.started_at, Call.sid)
        .limit(batch)
    )
    sids: Sequence[str] = session.scalars(oldest).all()
    if not sids:
        return Purged()
    if db.dialect == "postgresql":
        # Lock the calls in sid order, as the history writer does, so that a writer storing a
        # late event for one of them waits instead of deadlocking with the purge.
        locked = select(Call.sid).where(Call.sid.in_(sids)).order_by(Call.sid).with_for_update()
        sids = session.scalars(locked).all()
    found = [_delete(session, table, column, sids) for table, column in _CHILDREN]
    calls = _delete(session, Call.__table__, Call.sid, sids)
    return Purged(calls, *found)


def _delete(session: Session, table: Any, column: Any, sids: Sequence[str]) -> int:
    result = cast(CursorResult[Any], session.execute(delete(table).where(column.in_(sids))))
    return max(0, result.rowcount or 0)
