"""History's folds without a database: Twilio's callbacks in any order and any number of
times give the same call; a late status never overwrites a final one."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from flowpbx.db.models import Recording
from flowpbx.engine.call_events import (
    CallEnded,
    CallStarted,
    DialStarted,
    EndReason,
    NodeEntered,
    StepRecord,
)
from flowpbx.engine.events import Direction
from flowpbx.engine.progress import (
    CallPlaced,
    CallProgress,
    CallStatus,
    RecordingProgress,
    RecordingStatus,
    Report,
    report_id,
)
from flowpbx.history import projection

SID = "CA" + "1" * 32
AT = 1_800_000_000.0


def _status(status: CallStatus, seq: int, at: float, **extra: Any) -> Report:
    progress = CallProgress(
        status=status,
        sequence=seq,
        timestamp=at,
        caller="+34600000001",
        called="+34910000000",
        direction=extra.pop("direction", Direction.INBOUND),
        **extra,
    )
    return Report(id=report_id(SID, progress), call_sid=SID, at=AT + 500, progress=progress)


def _call() -> projection.CallRow:
    return projection.CallRow(**projection.new_call(SID, AT + 500))


def _columns(call: projection.CallRow) -> dict[str, Any]:
    return call.columns()


CALLBACKS = [
    _status(CallStatus.RINGING, 0, AT),
    _status(CallStatus.IN_PROGRESS, 1, AT + 2),
    _status(CallStatus.COMPLETED, 2, AT + 62, duration=60, price_micros=-20000, price_unit="USD"),
]


def test_status_callbacks_in_any_order_and_twice_give_one_result() -> None:
    """Every order of ringing / in-progress / completed, each delivered once or twice, gives
    the same row: completed, started at ringing, ended at completed, 60 s, its price."""
    results = []
    for order in itertools.permutations(CALLBACKS):
        for doubled in (order, order + order[:2], order[1:] + order):
            call = _call()
            for report in doubled:
                projection.fold_progress(call, report)
            results.append(_columns(call))
    first = results[0]
    assert all(r == first for r in results)
    assert first["status"] == "completed"
    assert first["started_at"] == dt.datetime.fromtimestamp(AT, dt.UTC)
    assert first["ended_at"] == dt.datetime.fromtimestamp(AT + 62, dt.UTC)
    assert (first["duration"], first["price_micros"], first["price_unit"]) == (60, -20000, "USD")
    assert first["answered_at"] is None  # an inbound call answered by Twilio, not a person


def test_a_late_ringing_never_overwrites_completed() -> None:
    call = _call()
    projection.fold_progress(call, CALLBACKS[2])
    projection.fold_progress(call, CALLBACKS[0])
    assert call.status == "completed"
    assert call.status_seq == 2


def test_flow_end_marks_completed_until_twilio_says_more() -> None:
    """A call whose flow ended is completed in history even without a status callback; the
    real callback, when it comes, sets Twilio's times."""
    call = _call()
    record = StepRecord(
        id="r1",
        call_sid=SID,
        revision=1,
        seq=3,
        at=AT + 30,
        flow="seguros",
        version="v1",
        events=(NodeEntered(node="despedida", kind="hangup"),
                CallEnded(node="despedida", how=EndReason.HANGUP)),
    )  # fmt: skip
    projection.fold_step(call, record)
    assert (call.status, call.end_reason, call.last_node) == ("completed", "hangup", "despedida")
    assert call.ended_at == dt.datetime.fromtimestamp(AT + 30, dt.UTC)
    projection.fold_progress(call, CALLBACKS[2])
    assert call.ended_at == dt.datetime.fromtimestamp(AT + 62, dt.UTC)
    assert call.duration == 60
    projection.fold_step(call, record)  # redelivered
    assert call.ended_at == dt.datetime.fromtimestamp(AT + 62, dt.UTC)


def test_outbound_call_is_answered_when_in_progress() -> None:
    call = _call()
    projection.fold_progress(
        call, _status(CallStatus.IN_PROGRESS, 1, AT + 5, direction=Direction.OUTBOUND)
    )
    assert call.direction == "outbound"
    assert call.answered_at == dt.datetime.fromtimestamp(AT + 5, dt.UTC)


def test_busy_outbound_call_is_not_answered() -> None:
    call = _call()
    projection.fold_progress(
        call, _status(CallStatus.BUSY, 2, AT + 5, direction=Direction.OUTBOUND, duration=0)
    )
    assert (call.status, call.answered_at) == ("busy", None)


def test_softphone_parties() -> None:
    """Softphone callers, softphones dialled and identities calls were placed for."""
    record = StepRecord(
        id="r1",
        call_sid=SID,
        revision=1,
        seq=0,
        at=AT,
        flow="seguros",
        version="v1",
        events=(
            CallStarted(
                flow="seguros", version="v1", caller="client:ana", called="+34910000000",
                direction=Direction.INBOUND,
            ),
            DialStarted(node="x", targets=("client:bob", "+34912345678"), record=False),
        ),
    )  # fmt: skip
    assert projection.identities(record) == {"ana", "bob"}
    placed = CallPlaced(caller="+34910000000", called="+34600000001", identity="eva")
    report = Report(id=report_id(SID, placed), call_sid=SID, at=AT, progress=placed)
    assert projection.identities(report) == {"eva"}


def test_recording_statuses_keep_the_final_one() -> None:
    """in-progress after completed keeps completed, its duration and its URL."""
    recording = Recording(**projection.new_recording("RE" + "a" * 32, SID, AT))
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE" + "a" * 32
    done = RecordingProgress(
        recording_sid="RE" + "a" * 32,
        status=RecordingStatus.COMPLETED,
        url=url,
        duration=31,
        channels=2,
        source="DialVerb",
    )
    started = RecordingProgress(
        recording_sid="RE" + "a" * 32, status=RecordingStatus.IN_PROGRESS, url=url
    )
    projection.fold_recording(recording, done, AT)
    projection.fold_recording(recording, started, AT + 1)
    assert (recording.status, recording.duration, recording.channels, recording.url) == (
        "completed",
        31,
        2,
        url,
    )


def test_a_recording_twilio_lost_stays_lost() -> None:
    """A voicemail's step says completed, its callback says failed: failed, in either order."""
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE" + "b" * 32
    from_step = RecordingProgress(
        recording_sid="RE" + "b" * 32, status=RecordingStatus.COMPLETED, url=url, duration=9
    )
    failed = RecordingProgress(
        recording_sid="RE" + "b" * 32, status=RecordingStatus.FAILED, url=url, error_code="16104"
    )
    for order in ((from_step, failed), (failed, from_step)):
        recording = Recording(**projection.new_recording("RE" + "b" * 32, SID, AT))
        for progress in order:
            projection.fold_recording(recording, progress, AT)
        assert (recording.status, recording.error_code) == ("failed", "16104")


def test_path_rows_keep_each_event_in_its_documented_json_form() -> None:
    """`data` of a path row is the event exactly as docs/call-events.md shows it."""
    import json

    from flowpbx.engine.call_events import to_dict

    events = (
        NodeEntered(node="llamar", kind="dial"),
        DialStarted(node="llamar", targets=("+34912345678", "client:ana"), record=True),
    )
    record = StepRecord(
        id="r9", call_sid=SID, revision=1, seq=2, at=AT, flow="seguros", version="v", events=events
    )
    rows = projection.path_rows(record)
    assert [json.loads(r["data"]) for r in rows] == [to_dict(e) for e in events]
    assert [(r["event"], r["node"], r["outcome"]) for r in rows] == [
        ("node_entered", "llamar", "dial"),
        ("dial_started", "llamar", "+34912345678, client:ana"),
    ]


def test_call_rows_have_exactly_the_columns_of_calls() -> None:
    """The folds' plain rows and the `calls` table never drift apart."""
    from flowpbx.db.models import Call

    assert set(projection.CallRow.__slots__) == {c.name for c in Call.__table__.columns}
