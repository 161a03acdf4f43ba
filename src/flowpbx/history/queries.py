"""Reads of call history for the REST API: pages of calls, one call with its path and
recordings, one recording. Synchronous (the API runs them with `Database.run`).

Pages are keyset pages, newest first by (started_at, sid): each query walks an index from the
last call of the previous page, so a page costs the same on the millionth call as on the first,
and calls written meanwhile neither shift nor repeat what follows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, bindparam, exists, or_, select, tuple_, union
from sqlalchemy.orm import InstrumentedAttribute

from flowpbx.db.database import Database
from flowpbx.db.models import Call, CallParty, CallStep, Recording, UtcDateTime


@dataclass(frozen=True, slots=True)
class CallFilter:
    """Which calls a page lists; None: any."""

    identity: str | None = None
    """Calls this softphone identity (or agent) took part in."""
    number: str | None = None
    """Calls from or to this number (`client:<identity>` for a softphone)."""
    status: str | None = None
    direction: str | None = None
    since: dt.datetime | None = None
    """Calls started at or after this moment."""
    before: dt.datetime | None = None
    """Calls started before this moment."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: the last call's (started_at, sid)."""

    started_at: dt.datetime
    sid: str


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call with everything history knows of it."""

    call: Call
    parties: list[str]
    steps: list[CallStep]
    recordings: list[Recording]


def _before(
    started_at: InstrumentedAttribute[dt.datetime],
    sid: InstrumentedAttribute[str],
    after: Position | None,
) -> list[ColumnElement[bool]]:
    if after is None:
        return []
    # A row comparison, which PostgreSQL answers from the (started_at, sid) index directly.
    moment = bindparam("after_started_at", after.started_at, type_=UtcDateTime())
    return [tuple_(started_at, sid) < tuple_(moment, bindparam("after_sid", after.sid))]


def _range(
    started_at: InstrumentedAttribute[dt.datetime], wanted: CallFilter
) -> list[ColumnElement[bool]]:
    found = []
    if wanted.since is not None:
        found.append(started_at >= wanted.since)
    if wanted.before is not None:
        found.append(started_at < wanted.before)
    return found


def _call_conditions(wanted: CallFilter) -> list[ColumnElement[bool]]:
    found = []
    if wanted.status is not None:
        found.append(Call.status == wanted.status)
    if wanted.direction is not None:
        found.append(Call.direction == wanted.direction)
    return found


def list_calls(
    db: Database, wanted: CallFilter, after: Position | None, limit: int
) -> Sequence[Call]:
    """At most `limit` calls matching `wanted`, newest first, from after `after` on."""
    with db.session() as session:
        return session.scalars(_page_query(wanted, after, limit)).all()


def _page_query(wanted: CallFilter, after: Position | None, limit: int) -> Select[Call]:
    if wanted.identity is not None:
        # A person's calls: their (identity, started_at, call_sid) index, newest first, each
        # call then fetched by its key; the other conditions are checked on the way.
        conditions = _call_conditions(wanted)
        if wanted.number is not None:
            conditions.append(
                or_(Call.from_number == wanted.number, Call.to_number == wanted.number)
            )
        return (
            select(Call)
            .join(CallParty, CallParty.call_sid == Call.sid)
            .where(
                CallParty.identity == wanted.identity,
                *_range(CallParty.started_at, wanted),
                *_before(CallParty.started_at, CallParty.call_sid, after),
                *conditions,
            )
            .order_by(CallParty.started_at.desc(), CallParty.call_sid.desc())
            .limit(limit)
        )
    conditions = [
        *_call_conditions(wanted),
        *_range(Call.started_at, wanted),
        *_before(Call.started_at, Call.sid, after),
    ]
    newest = (Call.started_at.desc(), Call.sid.desc())
    if wanted.number is None:
        return select(Call).where(*conditions).order_by(*newest).limit(limit)
    # From or to a number: the newest page of each side, each walking its own (number,
    # started_at) index, then merged; an OR would read every call of a busy number first.
    sides = [
        select(Call.sid)
        .where(column == wanted.number, *conditions)
        .order_by(*newest)
        .limit(limit)
        .subquery()
        for column in (Call.from_number, Call.to_number)
    ]
    merged = union(*(select(side.c.sid) for side in sides)).subquery()
    return select(Call).join(merged, merged.c.sid == Call.sid).order_by(*newest).limit(limit)


def _may_see(sid: str, identity: str | None) -> list[ColumnElement[bool]]:
    if identity is None:
        return []
    party = exists().where(CallParty.call_sid == sid, CallParty.identity == identity)
    return [party]


def find_call(db: Database, sid: str, identity: str | None) -> CallRecord | None:
    """The call `sid` with its parties, path and recordings; None when there is none, or when
    `identity` (None: anyone) took no part in it."""
    with db.session() as session:
        call = session.scalars(
            select(Call).where(Call.sid == sid, *_may_see(sid, identity))
        ).first()
        if call is None:
            return None
        parties = session.scalars(
            select(CallParty.identity).where(CallParty.call_sid == sid).order_by(CallParty.identity)
        ).all()
        steps = session.scalars(
            select(CallStep)
            .where(CallStep.call_sid == sid)
            .order_by(CallStep.seq, CallStep.at, CallStep.record_id, CallStep.position)
        ).all()
        recordings = session.scalars(
            select(Recording)
            .where(Recording.call_sid == sid)
            .order_by(Recording.started_at.asc().nulls_last(), Recording.sid)
        ).all()
        return CallRecord(call, list(parties), list(steps), list(recordings))


def find_recording(db: Database, sid: str, identity: str | None) -> Recording | None:
    """The recording `sid`; None when there is none, or when `identity` (None: anyone) took no
    part in its call."""
    with db.session() as session:
        query = select(Recording).where(Recording.sid == sid)
        if identity is not None:
            query = query.where(
                exists().where(
                    CallParty.call_sid == Recording.call_sid, CallParty.identity == identity
                )
            )
        return session.scalars(query).first()
