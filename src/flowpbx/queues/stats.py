"""A queue's figures over a period, from queue history (`queue_calls`, folded from the queue
engine's reports by the history writer): two grouped queries whatever the number of calls, the
same on PostgreSQL and SQLite, so only sums and one row per agent ever reach Python.

A place counts in the period it joined the queue (`joined_at` in [since, before)). A callback
is one place with the call that asked for it: it counts once, with its final outcome.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.orm import Session

from flowpbx.db.database import Database
from flowpbx.db.models import QueueCall

ANSWERED, ABANDONED, TIMED_OUT, LEFT, FULL = "answered", "abandoned", "timed_out", "left", "full"


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What happened to the callers who joined `queue` in [since, before). Times in seconds."""

    queue: str
    since: dt.datetime
    before: dt.datetime
    service_level: int
    """The answer-time target, in seconds (e.g. 20: the usual '80% within 20 s')."""
    offered: int
    """Callers who entered the queue (all but those turned away because it was full),
    callbacks included."""
    turned_away: int
    """Callers who found the queue full."""
    answered: int
    abandoned: int
    """Hung up while waiting (or while an agent's phone rang)."""
    timed_out: int
    left: int
    """Pressed the key to leave."""
    callbacks: int
    """Asked to be called back (whatever came of it)."""
    waiting: int
    """Still waiting, on the line or for their callback, when asked."""
    missed: int
    """Offers to an agent that were not answered (an agent's phone rang out)."""
    average_wait: float | None
    """Of answered callers, from joining to being answered; None when none was answered."""
    longest_wait: float | None
    """The longest an answered, abandoning or timed-out caller waited."""
    service_level_percent: float | None
    """answered within `service_level` / (offered - abandoned within `service_level`) x 100.
    Short abandons do not count against the queue (the usual call-center definition: a
    caller who hangs up within the target gave the queue no chance). None when the
    denominator is 0."""
    abandon_rate_percent: float | None
    """abandoned / offered x 100; None when nobody was offered."""
    average_talk: float | None
    """Of answered calls whose end is known."""
    calls_per_agent: dict[str, int]
    """Agent -> callers they answered, by agent."""


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _float(value: float | Decimal | None) -> float | None:
    """Averages come back as Decimal from PostgreSQL's avg of integers."""
    return None if value is None else float(value)


def _percent(part: int, whole: int) -> float | None:
    return None if whole <= 0 else 100.0 * part / whole


def queue_stats(
    session_or_db: Session | Database,
    queue: str,
    since: dt.datetime,
    before: dt.datetime,
    service_level: int,
) -> QueueStats:
    """The figures of `queue` for the places that joined in [since, before)."""
    if since.tzinfo is None or before.tzinfo is None:
        raise ValueError("naive datetime: give the period in UTC (aware datetimes)")
    if service_level < 0:
        raise ValueError(f"service level {service_level} s: expected 0 or more seconds")
    if isinstance(session_or_db, Database):
        with session_or_db.session() as session:
            return _stats(session, queue, since, before, service_level)
    return _stats(session_or_db, queue, since, before, service_level)


def _stats(
    session: Session, queue: str, since: dt.datetime, before: dt.datetime, service_level: int
) -> QueueStats:
    q = QueueCall
    period = [q.queue == queue, q.joined_at >= since, q.joined_at < before]
    outcome, wait = q.outcome, q.wait_seconds
    within = wait <= service_level
    totals = session.execute(
        select(
            func.count(),
            _count_if(outcome == FULL),
            _count_if(outcome == ANSWERED),
            _count_if(outcome == ABANDONED),
            _count_if(outcome == TIMED_OUT),
            _count_if(outcome == LEFT),
            func.count(q.callback_requested_at),
            _count_if(outcome.in_(("waiting", "callback"))),
            func.coalesce(func.sum(q.missed), 0),
            _count_if(and_(outcome == ANSWERED, within)),
            _count_if(and_(outcome == ABANDONED, within)),
            func.avg(case((outcome == ANSWERED, wait))),
            func.max(case((outcome.in_((ANSWERED, ABANDONED, TIMED_OUT)), wait))),
            func.avg(case((outcome == ANSWERED, q.talk_seconds))),
        ).where(*period)
    ).one()
    places, full, answered, abandoned, timed_out, left, callbacks, waiting, missed = (
        int(n) for n in totals[:9]
    )
    answered_within, abandoned_within = int(totals[9]), int(totals[10])
    average_wait, longest_wait, average_talk = totals[11:]
    per_agent = session.execute(
        select(q.agent, func.count())
        .where(*period, outcome == ANSWERED, q.agent.is_not(None))
        .group_by(q.agent)
        .order_by(q.agent)
    )
    offered = places - full
    return QueueStats(
        queue=queue,
        since=since,
        before=before,
        service_level=service_level,
        offered=offered,
        turned_away=full,
        answered=answered,
        abandoned=abandoned,
        timed_out=timed_out,
        left=left,
        callbacks=callbacks,
        waiting=waiting,
        missed=missed,
        average_wait=_float(average_wait),
        longest_wait=_float(longest_wait),
        service_level_percent=_percent(answered_within, offered - abandoned_within),
        abandon_rate_percent=_percent(abandoned, offered),
        average_talk=_float(average_talk),
        calls_per_agent={str(agent): int(calls) for agent, calls in per_agent},
    )
