"""Call analytics over a period: five grouped queries whatever the number of calls, so only
their groups (hours, statuses, nodes) ever reach Python.

Calls are counted by hour of UTC in the database (the same on PostgreSQL and SQLite), and the
hours are then placed in days and hours of the period's time zone. A zone whose offset is not a
whole number of hours (Asia/Kolkata, +05:30) gets each UTC hour at the local time it starts.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Select,
    String,
    and_,
    case,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.orm import Session

from flowpbx.db.database import Database
from flowpbx.db.models import Call, CallStep
from flowpbx.engine.events import Direction
from flowpbx.engine.progress import CallStatus

FINAL = tuple(status.value for status in CallStatus if status.final)
HUNG_UP = "hung_up"
"""The exit reason of a call whose flow did not end it (the caller hung up first)."""
ABANDONING = "caller_hung_up"
"""The flow's own word for a caller who hung up (while queued)."""
PERCENTILE = 0.9
EXITS_SHOWN = 20
OPTIONS_SHOWN = 200


@dataclass(frozen=True, slots=True)
class Period:
    """From `since` (included) to `before` (excluded); days and hours are `zone`'s."""

    since: dt.datetime
    before: dt.datetime
    zone: dt.tzinfo


@dataclass(frozen=True, slots=True)
class MenuChoice:
    flow: str
    node: str
    key: str | None
    target: str | None
    times: int


@dataclass(frozen=True, slots=True)
class FlowExit:
    flow: str | None
    node: str | None
    reason: str
    calls: int


@dataclass(frozen=True, slots=True)
class Analytics:
    calls: int
    finished: int
    """Calls with a final status (completed, busy, failed, no-answer, canceled)."""
    answered: int
    """Finished calls a person answered (the callee, an agent, a number dialled)."""
    abandoned: int
    """Finished inbound calls nobody answered, which the caller hung up on: the flow did not
    end them, or ended them because the caller hung up while queued. (Nobody answering a call
    flowpbx placed is not the caller giving up: outbound calls are never abandoned.)"""
    completed_with_duration: int
    total_duration: int
    p90_duration: int | None
    per_day: dict[dt.date, int]
    per_hour: list[int]
    by_status: dict[str, int]
    by_direction: dict[str, int]
    menu_choices: list[MenuChoice]
    exits: list[FlowExit]
    cost_micros: dict[str, int]

    @property
    def answer_rate(self) -> float | None:
        return self.answered / self.finished if self.finished else None

    @property
    def abandonment_rate(self) -> float | None:
        return self.abandoned / self.finished if self.finished else None

    @property
    def average_duration(self) -> float | None:
        if not self.completed_with_duration:
            return None
        return self.total_duration / self.completed_with_duration


def analyse(db: Database, period: Period) -> Analytics:
    """The analytics of the calls started in `period`."""
    with db.session() as session:
        per_day, per_hour = _per_day_and_hour(session, db.dialect, period)
        totals = _Totals(session.execute(_totals_query(period)))
        completed = totals.with_duration
        return Analytics(
            calls=sum(totals.by_status.values()),
            finished=totals.finished,
            answered=totals.answered,
            abandoned=totals.abandoned,
            completed_with_duration=completed,
            total_duration=totals.total_duration,
            p90_duration=_p90(session, db.dialect, period, completed),
            per_day=per_day,
            per_hour=per_hour,
            by_status=dict(sorted(totals.by_status.items())),
            by_direction=dict(sorted(totals.by_direction.items())),
            menu_choices=[MenuChoice(*row) for row in session.execute(_options_query(period))],
            exits=[
                FlowExit(flow, node, reason or HUNG_UP, calls)
                for flow, node, reason, calls in session.execute(_exits_query(period))
            ],
            cost_micros=dict(sorted(totals.cost.items())),
        )


def _in(period: Period) -> list[ColumnElement[bool]]:
    return [Call.started_at >= period.since, Call.started_at < period.before]


def _utc_hour(dialect: str) -> ColumnElement[Any]:
    """The start of a call's hour of UTC (literal arguments: PostgreSQL must see the GROUP BY
    expression as the selected one, which bound parameters would hide)."""
    if dialect == "postgresql":
        utc = func.timezone(literal_column("'UTC'"), Call.started_at)
        return func.date_trunc(literal_column("'hour'"), utc, type_=DateTime())
    # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): its first 13 characters are the hour.
    return func.substr(Call.started_at, literal_column("1"), literal_column("13"), type_=String())


def _hour_start(value: dt.datetime | str) -> dt.datetime:
    if isinstance(value, str):
        return dt.datetime.strptime(value, "%Y-%m-%d %H").replace(tzinfo=dt.UTC)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _per_day_and_hour(
    session: Session, dialect: str, period: Period
) -> tuple[dict[dt.date, int], list[int]]:
    hour = _utc_hour(dialect)
    rows = session.execute(select(hour, func.count()).where(*_in(period)).group_by(hour))
    first = period.since.astimezone(period.zone).date()
    last = (period.before - dt.timedelta(microseconds=1)).astimezone(period.zone).date()
    per_day = {first + dt.timedelta(days=n): 0 for n in range((last - first).days + 1)}
    per_hour = [0] * 24
    for value, calls in rows:
        # The period's first hour may start before it (a zone at +05:30): count it from the
        # period's start, so that it lands on the period's first day.
        local = max(_hour_start(value), period.since).astimezone(period.zone)
        per_day[local.date()] = per_day.get(local.date(), 0) + calls
        per_hour[local.hour] += calls
    return per_day, per_hour


class _Totals:
    """Sums over the (status, direction, price unit) groups of the period's calls."""

    def __init__(self, groups: Iterable[TotalsRow]) -> None:
        self.by_status: Counter[str] = Counter()
        self.by_direction: Counter[str] = Counter()
        self.cost: Counter[str] = Counter()
        self.finished = self.answered = self.abandoned = 0
        self.with_duration = self.total_duration = 0
        for group in groups:
            status, direction, unit, calls, answered, abandoned, durations, total, price = group
            self.by_status[status] += calls
            self.by_direction[direction] += calls
            if status in FINAL:
                self.finished += calls
                self.answered += answered
                self.abandoned += int(abandoned or 0)
            if status == CallStatus.COMPLETED:
                self.with_duration += durations
                self.total_duration += int(total or 0)
            if unit is not None and price is not None:
                self.cost[unit] += int(price)


TotalsRow = tuple[str, str, str | None, int, int, Any, int, int | None, int | None]
"""status, direction, price unit, calls, answered, abandoned, calls with a duration, their
total duration, total price (sums come back as Decimal from PostgreSQL)."""


def _totals_query(period: Period) -> Select[*TotalsRow]:
    inbound = Call.direction == Direction.INBOUND.value
    nobody_answered = Call.answered_at.is_(None)
    flow_did_not_end = or_(Call.end_reason.is_(None), Call.end_reason == ABANDONING)
    return (
        select(
            Call.status,
            Call.direction,
            Call.price_unit,
            func.count(),
            func.count(Call.answered_at),
            func.sum(case((and_(inbound, nobody_answered, flow_did_not_end), 1), else_=0)),
            func.count(Call.duration),
            func.sum(Call.duration),
            func.sum(Call.price_micros),
        )
        .where(*_in(period))
        .group_by(Call.status, Call.direction, Call.price_unit)
    )


def _p90(session: Session, dialect: str, period: Period, count: int) -> int | None:
    """The 90th percentile of completed calls' durations, nearest rank: the smallest duration
    at least 90% of them do not exceed."""
    if count == 0:
        return None
    completed = [
        *_in(period),
        Call.status == CallStatus.COMPLETED.value,
        Call.duration.is_not(None),
    ]
    if dialect == "postgresql":
        percentile = func.percentile_disc(PERCENTILE).within_group(Call.duration)
        value = session.scalar(select(percentile).where(*completed))
    else:
        # The rank as PostgreSQL's percentile_disc computes it (in floating point), so that
        # both databases agree on every count.
        rank = max(1, math.ceil(PERCENTILE * count))
        value = session.scalar(
            select(Call.duration)
            .where(*completed)
            .order_by(Call.duration)
            .offset(rank - 1)
            .limit(1)
        )
    return None if value is None else int(value)


def _options_query(period: Period) -> Select[str, str, str | None, str | None, int]:
    times = func.count().label("times")
    columns = (CallStep.flow, CallStep.node, CallStep.keys, CallStep.outcome)
    return (
        select(*columns, times)
        .where(
            CallStep.event == "option_chosen",
            CallStep.at >= period.since,
            CallStep.at < period.before,
        )
        .group_by(*columns)
        .order_by(
            times.desc(),
            CallStep.flow,
            CallStep.node,
            func.coalesce(CallStep.keys, literal_column("''")),
            func.coalesce(CallStep.outcome, literal_column("''")),
        )
        .limit(OPTIONS_SHOWN)
    )


def _exits_query(period: Period) -> Select[str | None, str | None, str | None, int]:
    calls = func.count().label("calls")
    # Grouped by end_reason itself (NULL is its own group: hung_up); flows and nodes that are
    # NULL sort as '' on both databases.
    return (
        select(Call.flow, Call.last_node, Call.end_reason, calls)
        .where(*_in(period), Call.status.in_(FINAL))
        .group_by(Call.flow, Call.last_node, Call.end_reason)
        .order_by(
            calls.desc(),
            func.coalesce(Call.flow, literal_column("''")),
            func.coalesce(Call.last_node, literal_column("''")),
            func.coalesce(Call.end_reason, literal_column("''")),
        )
        .limit(EXITS_SHOWN)
    )
