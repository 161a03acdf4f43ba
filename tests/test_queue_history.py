"""Queue history on both databases (a SQLite file and a real PostgreSQL): the queue engine's
reports folded into `queue_calls` by the history writer's sink, delivered in every kind of
order, twice, in batches of any size, always give the same rows; and a queue's figures over a
period, counted by hand.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from flowpbx.db import migrate
from flowpbx.db.database import Database
from flowpbx.db.models import Call, QueueCall
from flowpbx.engine.progress import QueueActivity, QueueEvent, Report
from flowpbx.history import projection, purge, sink
from flowpbx.queues.stats import QueueStats, queue_stats

T0 = 1_800_000_000.0
"""2027-01-15 08:00:00 UTC."""
START = dt.datetime.fromtimestamp(T0, dt.UTC)
E = QueueEvent


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate.upgrade(database)
    yield database
    database.dispose()


def sid(n: int) -> str:
    return f"CA{n:032x}"


def at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(T0 + seconds, dt.UTC)


def report(
    call: str, event: QueueEvent, when: float, queued: float, queue: str = "ventas", **extra: Any
) -> Report:
    """The queue engine's report of `event` at T0 + `when` about the place `call` took at
    T0 + `queued`."""
    member = extra.pop("member", call)
    activity = QueueActivity(
        queue=queue,
        event=event,
        member=member,
        queued_at=T0 + queued,
        caller=extra.pop("caller", "+34600000001"),
        **extra,
    )
    return Report.of(call, activity, T0 + when)


def answered_caller(call: str) -> list[Report]:
    """Joins at 0; offered to bob, who lets it ring out; offered to ana, who answers at 30
    and talks 120 s."""
    return [
        report(call, E.JOINED, 0, 0),
        report(call, E.OFFERED, 2, 0, agent="bob", reservation="r1"),
        report(call, E.MISSED, 20, 0, agent="bob", reservation="r1"),
        report(call, E.OFFERED, 22, 0, agent="ana", reservation="r2"),
        report(call, E.ANSWERED, 30, 0, agent="ana", reservation="r2"),
        report(call, E.COMPLETED, 150, 0, agent="ana", reservation="r2", talk=120),
    ]


def callback_caller(call: str) -> list[Report]:
    """Joins at 0, asks for a callback at 45 and hangs up (the engine also says the caller
    hung up); the first callback (placed at 100) does not reach them and the place is queued
    again at 130; the second, placed at 200, is answered at 205 by carla."""
    cb = f"cb:{call}"
    return [
        report(call, E.JOINED, 0, 0, caller="+34600000002"),
        report(call, E.OFFERED, 10, 0, agent="bob", reservation="r1"),
        report(call, E.MISSED, 25, 0, agent="bob", reservation="r1"),
        report(call, E.CALLBACK_REQUESTED, 45, 0, member=cb, caller="+34600000002"),
        report(call, E.ABANDONED, 46, 0),
        report(call, E.CALLBACK_PLACED, 100, 0, member=cb, agent="carla", reservation="r2"),
        report(call, E.CALLBACK_FAILED, 128, 0, member=cb, agent="carla", reservation="r2"),
        report(call, E.CALLBACK_PLACED, 200, 130, member=cb, agent="carla", reservation="r3"),
        report(call, E.ANSWERED, 205, 130, member=cb, agent="carla", reservation="r3"),
    ]


def expected_answered(call: str) -> dict[str, Any]:
    return {
        "call_sid": call, "queue": "ventas", "member": call, "caller": "+34600000001",
        "kind": "caller", "joined_at": at(0), "left_at": at(30), "outcome": "answered",
        "wait_seconds": 30.0, "agent": "ana", "talk_seconds": 120, "offers": 2, "missed": 1,
        "callback_requested_at": None, "callback_attempts": 0,
        "counted": "missed:r1\noffered:r1\noffered:r2",
    }  # fmt: skip


def expected_callback(call: str) -> dict[str, Any]:
    return {
        "call_sid": call, "queue": "ventas", "member": call, "caller": "+34600000002",
        # Answered at 205, its place queued again at 130: 75 s (the wait of this attempt).
        "kind": "callback", "joined_at": at(0), "left_at": at(205), "outcome": "answered",
        "wait_seconds": 75.0, "agent": "carla", "talk_seconds": None, "offers": 1,
        "missed": 1, "callback_requested_at": at(45), "callback_attempts": 2,
        "counted": "callback_placed:r2\ncallback_placed:r3\nmissed:r1\noffered:r1",
    }  # fmt: skip


def rows(db: Database) -> dict[str, dict[str, Any]]:
    """queue_calls by call, without their ids."""
    with db.session() as session:
        found = session.execute(select(QueueCall.__table__)).mappings().all()
    return {row["call_sid"]: {k: v for k, v in row.items() if k != "id"} for row in found}


def deliveries(reports: list[Report], rng: random.Random) -> list[list[Report]]:
    """`reports` shuffled, about a third of them twice, cut into batches of 1 to 4."""
    shuffled = reports + [r for r in reports if rng.random() < 0.35]
    rng.shuffle(shuffled)
    batches = []
    while shuffled:
        size = rng.randint(1, 4)
        batches.append(shuffled[:size])
        shuffled = shuffled[size:]
    return batches


def test_a_place_is_the_same_whatever_the_order_and_however_often_delivered(
    db: Database,
) -> None:
    """The same reports, in 12 orders each (with duplicates, in batches), each time about
    another call: every call's row is the one counted by hand, including orders where the
    answer or a callback attempt arrives before the place's JOINED."""
    rng = random.Random(20261201)
    expected = {}
    for n in range(12):
        for make, expect, call in (
            (answered_caller, expected_answered, sid(100 + n)),
            (callback_caller, expected_callback, sid(200 + n)),
        ):
            reports = make(call)
            # Once exactly backwards, one by one, whatever the seed; then shuffled.
            batches = [[r] for r in reversed(reports)] if n == 0 else deliveries(reports, rng)
            for batch in batches:
                sink.write(db, batch)
            expected[call] = expect(call)
    assert rows(db) == expected
    # Delivering everything once more changes nothing.
    again = [r for n in range(12) for r in answered_caller(sid(100 + n))]
    assert sink.write(db, again).queue_calls == 0
    assert rows(db) == expected


def test_exits_callbacks_given_up_and_turned_away(db: Database) -> None:
    """Each way of leaving a queue, in stream order, then all of it again in one batch."""
    full, left, timed_out, gave_up, waiting = (sid(n) for n in range(1, 6))
    cb = f"cb:{gave_up}"
    reports = [
        report(full, E.FULL, 5, 5),  # turned away: no JOINED ever comes
        report(left, E.JOINED, 10, 10),
        report(left, E.LEFT, 25.5, 10),
        report(timed_out, E.JOINED, 20, 20),
        report(timed_out, E.OFFERED, 30, 20, agent="ana", reservation="t1"),
        report(timed_out, E.MISSED, 45, 20, agent="ana", reservation="t1"),
        report(timed_out, E.TIMED_OUT, 620, 20),
        report(gave_up, E.JOINED, 30, 30),
        report(gave_up, E.CALLBACK_REQUESTED, 40, 30, member=cb),
        report(gave_up, E.CALLBACK_PLACED, 60, 30, member=cb, reservation="g1"),
        report(gave_up, E.CALLBACK_FAILED, 90, 30, member=cb, reservation="g1", final=True),
        # A late report from before the failure does not undo it.
        report(gave_up, E.CALLBACK_FAILED, 50, 30, member=cb, reservation="g0"),
        report(waiting, E.JOINED, 40, 40, queue="soporte"),
        report(waiting, E.OFFERED, 41, 40, queue="soporte", reservation="w1"),
    ]
    written = sink.write(db, reports)
    assert written.queue_calls == 5
    found = rows(db)
    summary = {
        call: (r["outcome"], r["kind"], r["left_at"], r["wait_seconds"], r["offers"], r["missed"])
        for call, r in found.items()
    }
    assert summary == {
        full: ("full", "caller", at(5), 0.0, 0, 0),
        left: ("left", "caller", at(25.5), 15.5, 0, 0),
        timed_out: ("timed_out", "caller", at(620), 600.0, 1, 1),
        gave_up: ("callback_failed", "callback", at(90), 60.0, 0, 0),
        waiting: ("waiting", "caller", None, None, 1, 0),
    }
    assert (found[gave_up]["callback_requested_at"], found[gave_up]["callback_attempts"]) == (
        at(40),
        1,
    )
    assert found[waiting]["queue"] == "soporte"
    assert found[gave_up]["member"] == gave_up
    # Every call is in calls too (history's parent table).
    with db.session() as session:
        assert set(session.scalars(select(Call.sid))) == set(found)
    assert sink.write(db, reports).queue_calls == 0
    assert rows(db) == found


def test_one_call_in_two_queues_has_a_row_in_each(db: Database) -> None:
    call = sid(9)
    sink.write(
        db,
        [
            report(call, E.JOINED, 0, 0, queue="ventas"),
            report(call, E.TIMED_OUT, 60, 0, queue="ventas"),
            report(call, E.JOINED, 61, 61, queue="soporte"),
            report(call, E.ANSWERED, 70, 61, queue="soporte", agent="ana", reservation="x"),
        ],
    )
    with db.session() as session:
        found = session.execute(
            select(QueueCall.queue, QueueCall.outcome, QueueCall.wait_seconds).order_by(
                QueueCall.queue
            )
        ).all()
    assert [tuple(r) for r in found] == [
        ("soporte", "answered", 9.0),
        ("ventas", "timed_out", 60.0),
    ]


def test_a_purged_call_takes_its_queue_rows_with_it(db: Database) -> None:
    """Purging calls (history/purge.py) removes their places in queues too (with the numbers
    given for callbacks), on both databases, and counts them."""
    sink.write(db, answered_caller(sid(1)) + callback_caller(sid(2)))
    assert len(rows(db)) == 2
    selection = purge.Selection(before=START + dt.timedelta(days=1))
    assert purge.purge(db, selection, dry_run=True).queue_rows == 2
    assert purge.purge(db, selection).queue_rows == 2
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(QueueCall)) == 0


def test_the_pure_fold_lets_an_answer_beat_an_abandon_and_counts_an_offer_once() -> None:
    """Without a database: the fold alone, an answer arriving after an abandon of the same
    place (the caller hung up as the agent answered) and an offer delivered three times."""
    call = sid(1)
    row = projection.QueueCallRow(
        **projection.new_queue_call(report(call, E.OFFERED, 3, 0, reservation="a"))
    )
    for r in (
        report(call, E.OFFERED, 3, 0, reservation="a"),
        report(call, E.ABANDONED, 12, 0),
        report(call, E.OFFERED, 3, 0, reservation="a"),
        report(call, E.ANSWERED, 11, 0, agent="ana", reservation="a"),
        report(call, E.OFFERED, 3, 0, reservation="a"),
    ):
        projection.fold_queue(row, r)
    assert (row.offers, row.outcome, row.agent, row.wait_seconds) == (1, "answered", "ana", 11.0)


def _folded(reports: tuple[Report, ...]) -> dict[str, Any]:
    row = projection.QueueCallRow(**projection.new_queue_call(reports[0]))
    for r in reports:
        projection.fold_queue(row, r)
    return row.columns()


def test_the_pure_fold_gives_one_result_in_every_order() -> None:
    """Every order of two small stories gives one row: a caller who asks for a callback and
    hangs up stays a callback (not abandoned); of two answers (a stale one from a second
    agent) the earlier stands, and beats the abandon between them."""
    call, cb = sid(1), f"cb:{sid(1)}"
    stories: dict[str, tuple[list[Report], dict[str, Any]]] = {
        "callback": (
            [
                report(call, E.JOINED, 0, 0),
                report(call, E.CALLBACK_REQUESTED, 45, 0, member=cb),
                report(call, E.ABANDONED, 46, 0),
            ],
            {"outcome": "callback", "kind": "callback", "left_at": None, "wait_seconds": None,
             "callback_requested_at": at(45), "member": call, "agent": None},
        ),
        "answers": (
            [
                report(call, E.ANSWERED, 15, 0, agent="bob", reservation="b"),
                report(call, E.ABANDONED, 12, 0),
                report(call, E.ANSWERED, 11, 0, agent="ana", reservation="a"),
                report(call, E.JOINED, 0, 0),
            ],
            {"outcome": "answered", "kind": "caller", "left_at": at(11), "wait_seconds": 11.0,
             "callback_requested_at": None, "member": call, "agent": "ana"},
        ),
    }  # fmt: skip
    for reports, expected in stories.values():
        results = [_folded(order) for order in itertools.permutations(reports)]
        assert all(r == results[0] for r in results)
        assert {k: results[0][k] for k in expected} == expected


# -- statistics --

SL = 20
"""The service level's target: answered within 20 s."""


def _place(
    call: str,
    joined: float,
    outcome: QueueEvent | None,
    wait: float = 0,
    *,
    queue: str = "ventas",
    agent: str = "",
    talk: int | None = None,
    missed: int = 0,
) -> list[Report]:
    """A place that joined at T0 + `joined`, left with `outcome` after `wait` seconds (None:
    still waiting), with `missed` offers that rang out first."""
    reports = [] if outcome is E.FULL else [report(call, E.JOINED, joined, joined, queue=queue)]
    for n in range(missed):
        for event, offset in ((E.OFFERED, 1), (E.MISSED, 2)):
            reports.append(
                report(call, event, joined + offset, joined, queue=queue, reservation=f"m{n}")
            )
    if outcome is not None:
        reports.append(
            report(call, outcome, joined + wait, joined, queue=queue, agent=agent, reservation="x")
        )
    if talk is not None:
        reports.append(
            report(call, E.COMPLETED, joined + wait + talk, joined, queue=queue, talk=talk)
        )
    return reports


def _callback_answered(call: str, joined: float, wait: float, agent: str) -> list[Report]:
    cb = f"cb:{call}"
    return [
        report(call, E.JOINED, joined, joined),
        report(call, E.CALLBACK_REQUESTED, joined + 5, joined, member=cb),
        report(call, E.CALLBACK_PLACED, joined + wait - 3, joined, member=cb, reservation="c"),
        report(call, E.ANSWERED, joined + wait, joined, member=cb, agent=agent, reservation="c"),
    ]


def test_queue_figures_over_a_period_counted_by_hand(db: Database) -> None:
    """Ten places in 'ventas' within [T0, T0 + 1 h), and three that must not count:

    | place | outcome            | wait | agent | talk | missed |
    |-------|--------------------|------|-------|------|--------|
    | p1    | answered           | 10   | ana   | 100  | 1      |
    | p2    | answered           | 30   | ana   | 200  |        |
    | p3    | answered           | 20   | bob   | 60   |        |
    | p4    | abandoned          | 5    |       |      |        |
    | p5    | abandoned          | 50   |       |      |        |
    | p6    | timed_out          | 90   |       |      |        |
    | p7    | left               | 300  |       |      |        |
    | p8    | full               | 0    |       |      |        |
    | p9    | callback, answered | 40   | bob   | -    |        |
    | p10   | still waiting      | -    |       |      | 1      |

    offered = 10 places - 1 full = 9; turned_away = 1
    answered = p1, p2, p3, p9 = 4; abandoned = 2; timed_out = 1; left = 1; callbacks = 1;
    waiting = 1 (p10); missed = 1 (p1) + 1 (p10) = 2
    average_wait = (10 + 30 + 20 + 40) / 4 = 25.0
    longest_wait = max of answered, abandoned, timed out = max(10, 30, 20, 40, 5, 50, 90)
      = 90 (p7 left after 300 s: not a wait the queue answered or lost)
    service level: answered within 20 s = p1 (10), p3 (20, the limit counts) = 2;
      abandoned within 20 s = p4 (5) = 1; 2 / (9 - 1) x 100 = 25.0
    abandon rate = 2 / 9 x 100 = 22.22...
    average_talk = (100 + 200 + 60) / 3 = 120.0 (p9's talk is not known yet)
    calls_per_agent = ana: p1, p2 = 2; bob: p3, p9 = 2
    """
    places = [
        _place(sid(1), 0, E.ANSWERED, 10, agent="ana", talk=100, missed=1),
        _place(sid(2), 60, E.ANSWERED, 30, agent="ana", talk=200),
        _place(sid(3), 120, E.ANSWERED, 20, agent="bob", talk=60),
        _place(sid(4), 180, E.ABANDONED, 5),
        _place(sid(5), 240, E.ABANDONED, 50),
        _place(sid(6), 300, E.TIMED_OUT, 90),
        _place(sid(7), 360, E.LEFT, 300),
        _place(sid(8), 420, E.FULL),
        _callback_answered(sid(9), 480, 40, "bob"),
        _place(sid(10), 3599, None, missed=1),
        # Not counted: joined just before the period, at its end, in another queue.
        _place(sid(11), -1, E.ANSWERED, 1, agent="ana", talk=10),
        _place(sid(12), 3600, E.ABANDONED, 1),
        _place(sid(13), 100, E.ABANDONED, 1, queue="soporte"),
    ]
    sink.write(db, [r for place in places for r in place])
    stats = queue_stats(db, "ventas", START, START + dt.timedelta(hours=1), SL)
    assert stats.abandon_rate_percent == pytest.approx(200 / 9)
    assert stats == QueueStats(
        queue="ventas",
        since=START,
        before=START + dt.timedelta(hours=1),
        service_level=SL,
        offered=9,
        turned_away=1,
        answered=4,
        abandoned=2,
        timed_out=1,
        left=1,
        callbacks=1,
        waiting=1,
        missed=2,
        average_wait=25.0,
        longest_wait=90.0,
        service_level_percent=25.0,
        abandon_rate_percent=stats.abandon_rate_percent,  # (above)
        average_talk=120.0,
        calls_per_agent={"ana": 2, "bob": 2},
    )
    # With a session (inside a caller's transaction) the figures are the same.
    with db.session() as session:
        assert queue_stats(session, "ventas", START, START + dt.timedelta(hours=1), SL) == stats
    # A longer target: p2 (30) and p9 (40) within 60 s too, p5 (50) abandoned within it:
    # 4 / (9 - 2) x 100.
    longer = queue_stats(db, "ventas", START, START + dt.timedelta(hours=1), 60)
    assert longer.service_level_percent == pytest.approx(400 / 7)


def test_a_queue_without_calls_has_no_averages_or_rates(db: Database) -> None:
    sink.write(db, _place(sid(1), 0, E.FULL))
    stats = queue_stats(db, "ventas", START, START + dt.timedelta(hours=1), SL)
    assert (stats.offered, stats.turned_away, stats.answered) == (0, 1, 0)
    assert stats.service_level_percent is None
    assert stats.abandon_rate_percent is None
    assert (stats.average_wait, stats.longest_wait, stats.average_talk) == (None, None, None)
    assert stats.calls_per_agent == {}
    empty = queue_stats(db, "nada", START, START + dt.timedelta(hours=1), SL)
    assert (empty.offered, empty.turned_away, empty.longest_wait) == (0, 0, None)
    with pytest.raises(ValueError, match="naive"):
        queue_stats(db, "ventas", START.replace(tzinfo=None), START, SL)


def test_the_agent_who_answers_is_a_party_to_the_call() -> None:
    """An agent reached on a softphone is found by their identity (`userId` in the history
    API) once they answer, not when only offered the call; an agent on a phone number is no
    softphone identity."""

    def activity(event: QueueEvent, target: str) -> Report:
        progress = QueueActivity(
            queue="ventas",
            event=event,
            member=sid(1),
            queued_at=1.0,
            agent="ana",
            target=target,
            reservation="r" * 32,
        )
        return Report.of(sid(1), progress, 2.0)

    assert projection.identities(activity(QueueEvent.ANSWERED, "client:ana")) == {"ana"}
    assert projection.identities(activity(QueueEvent.CALLBACK_PLACED, "client:ana")) == {"ana"}
    assert projection.identities(activity(QueueEvent.OFFERED, "client:ana")) == set()
    assert projection.identities(activity(QueueEvent.ANSWERED, "+34600000000")) == set()


def test_a_call_answered_from_the_queue_is_answered_by_an_agent_in_call_history(
    db: Database,
) -> None:
    """The scheduler takes the caller to an agent outside the flow (no step says so): the
    queue's ANSWERED report marks the call answered, by an agent, for analytics. A callback's
    answer is not the original call's."""
    sink.write(db, answered_caller(sid(1)) + callback_caller(sid(2)))
    with db.session() as session:
        calls = {c.sid: c for c in session.scalars(select(Call))}
    assert (calls[sid(1)].end_reason, calls[sid(1)].answered_at) == ("agent", at(30))
    assert calls[sid(1)].queue == "ventas"
    assert (calls[sid(2)].end_reason, calls[sid(2)].answered_at) == (None, None)
