"""How history's rows follow from what happened: pure functions that fold step records and
progress reports into a call's row, its recordings, its path and its places in queues.

Every fold is idempotent and, where Twilio's order is not guaranteed, order-free: a record
delivered twice changes nothing the second time, and a late `ringing` never overwrites
`completed` (statuses are ordered by rank, then by Twilio's SequenceNumber).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from flowpbx.db.models import Recording
from flowpbx.engine.call_events import (
    CallbackRequested,
    CallEnded,
    CallEvent,
    CallRecovered,
    CallStarted,
    CaseMatched,
    DialFinished,
    DialStarted,
    EndReason,
    FallbackTaken,
    HoursChecked,
    InputCollected,
    InvalidInput,
    NodeEntered,
    NoInput,
    OptionChosen,
    QueueExit,
    QueueExited,
    QueueJoined,
    RecordingMade,
    StepRecord,
)
from flowpbx.engine.events import DialResult, Direction
from flowpbx.engine.progress import (
    FINAL_RANK,
    CallPlaced,
    CallProgress,
    CallStatus,
    QueueActivity,
    QueueEvent,
    RecordingProgress,
    RecordingStatus,
    Report,
)
from flowpbx.twilio.params import recording_sid_in

SOFTPHONE = "client:"
ENDED = CallStatus.COMPLETED
"""The status a call gets when its flow ended and Twilio has not said more (yet)."""

Entry = StepRecord | Report
_JSON = msgspec.json.Encoder()
PARTY, NAME, URL = 160, 64, 2000
"""Column lengths (db/models.py): longer values are cut rather than refused by the database."""


def moment(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


@dataclass(slots=True, kw_only=True)
class CallRow:
    """A row of `calls` (db/models.py `Call`) as the folds change it: plain attributes, so
    that a batch of thousands costs no ORM bookkeeping."""

    sid: str
    parent_sid: str | None = None
    from_number: str = ""
    to_number: str = ""
    direction: str = Direction.INBOUND.value
    status: str = CallStatus.IN_PROGRESS.value
    status_rank: int = 0
    status_seq: int = -1
    started_at: dt.datetime
    answered_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    duration: int | None = None
    price_micros: int | None = None
    price_unit: str | None = None
    flow: str | None = None
    flow_version: str | None = None
    queue: str | None = None
    end_reason: str | None = None
    last_node: str | None = None
    last_seq: int = -1
    updated_at: dt.datetime

    def columns(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def new_call(sid: str, at: float) -> dict[str, Any]:
    """The columns of a call history first hears of at `at` (before anything is folded in)."""
    when = moment(at)
    return {
        "sid": sid,
        "from_number": "",
        "to_number": "",
        "direction": Direction.INBOUND.value,
        "status": CallStatus.IN_PROGRESS.value,
        "status_rank": 0,
        "status_seq": -1,
        "started_at": when,
        "last_seq": -1,
        "updated_at": when,
    }


def _earliest(current: dt.datetime | None, when: dt.datetime) -> dt.datetime:
    return when if current is None or when < current else current


def _identity(party: str) -> str | None:
    if party.startswith(SOFTPHONE) and len(party) > len(SOFTPHONE):
        return party[len(SOFTPHONE) :]
    return None


def identities(entry: Entry) -> set[str]:
    """The softphone identities (or agents) that take part in the call, as far as `entry`
    tells: `client:` callers and callees, softphones dialled, the identity a call was placed
    for."""
    parties: list[str] = []
    if isinstance(entry, StepRecord):
        for event in entry.events:
            if isinstance(event, CallStarted):
                parties += [event.caller, event.called]
            elif isinstance(event, DialStarted):
                parties += list(event.targets)
    else:
        progress = entry.progress
        if isinstance(progress, CallPlaced):
            found = {progress.identity} if progress.identity else set()
            return found | {i for p in (progress.caller, progress.called) if (i := _identity(p))}
        if isinstance(progress, CallProgress):
            parties += [progress.caller, progress.called]
        if isinstance(progress, QueueActivity) and progress.event in _AGENT_TALKS:
            parties.append(progress.target)
    return {identity for party in parties if (identity := _identity(party))}


_AGENT_TALKS = frozenset({QueueEvent.ANSWERED, QueueEvent.CALLBACK_PLACED})
"""Queue events after which the agent is a party to the call (found by their `userId`)."""


def fold_step(call: CallRow, record: StepRecord) -> None:
    """What a step's call events tell about the call."""
    at = moment(record.at)
    call.started_at = _earliest(call.started_at, at)
    if call.flow is None:
        call.flow, call.flow_version = record.flow, record.version
    for event in record.events:
        _fold_event(call, event, record, at)


def _fold_event(call: CallRow, event: CallEvent, record: StepRecord, at: dt.datetime) -> None:
    match event:
        case CallStarted():
            call.flow, call.flow_version = event.flow, event.version
            call.from_number, call.to_number = event.caller[:PARTY], event.called[:PARTY]
            call.direction = event.direction.value
        case NodeEntered():
            if record.seq >= call.last_seq:
                call.last_node, call.last_seq = event.node[:NAME], record.seq
        case QueueJoined():
            call.queue = event.queue[:NAME]
        case QueueExited() if event.reason is QueueExit.AGENT:
            call.answered_at = _earliest(call.answered_at, at)
        case DialFinished() if event.result is DialResult.ANSWERED:
            answered = max(call.started_at, at - dt.timedelta(seconds=max(0, event.duration)))
            call.answered_at = _earliest(call.answered_at, answered)
        case CallEnded():
            call.end_reason = event.how.value
            if call.ended_at is None:
                call.ended_at = at
            if call.status_rank < FINAL_RANK:
                call.status, call.status_rank = ENDED.value, FINAL_RANK
        case _:
            pass


def fold_progress(call: CallRow, report: Report) -> None:
    """What a status callback (or the REST API placing the call) tells about the call."""
    progress = report.progress
    received = moment(report.at)
    match progress:
        case CallProgress():
            when = moment(progress.timestamp) if progress.timestamp is not None else received
            if not call.from_number and not call.to_number:
                call.from_number, call.to_number = progress.caller[:PARTY], progress.called[:PARTY]
                call.direction = progress.direction.value
            if progress.parent_sid:
                call.parent_sid = progress.parent_sid
            if progress.status.rank < FINAL_RANK:
                call.started_at = _earliest(call.started_at, when)
            newer = (progress.status.rank, progress.sequence) > (call.status_rank, call.status_seq)
            if newer:
                call.status = progress.status.value
                call.status_rank, call.status_seq = progress.status.rank, progress.sequence
            outbound = call.direction == Direction.OUTBOUND.value
            if outbound and progress.status is CallStatus.IN_PROGRESS:
                call.answered_at = _earliest(call.answered_at, when)
            if progress.status.final:
                if newer or call.ended_at is None:
                    call.ended_at = when
                if progress.duration is not None:
                    call.duration = progress.duration
                    if outbound and progress.status is ENDED and progress.duration > 0:
                        answered = when - dt.timedelta(seconds=progress.duration)
                        answered = max(call.started_at, answered)
                        call.answered_at = _earliest(call.answered_at, answered)
            if progress.price_micros is not None:
                call.price_micros = progress.price_micros
                call.price_unit = progress.price_unit or call.price_unit or "USD"
        case CallPlaced():
            call.from_number, call.to_number = progress.caller[:PARTY], progress.called[:PARTY]
            call.direction = Direction.OUTBOUND.value
            if progress.flow and call.flow is None:
                call.flow = progress.flow
        case QueueActivity() if progress.event is QueueEvent.ANSWERED:
            # The scheduler took the caller out of the queue to an agent: the flow says
            # nothing more, so the queue tells that the call was answered, by an agent.
            if progress.member == report.call_sid:
                call.queue = call.queue or progress.queue[:NAME]
                call.answered_at = _earliest(call.answered_at, received)
                call.end_reason = call.end_reason or EndReason.AGENT.value
        case RecordingProgress() | QueueActivity():
            pass


def fold_recording(recording: Recording, progress: RecordingProgress, received: float) -> None:
    """A recording status callback: a later status (completed, absent, failed) is never
    replaced by `in-progress`."""
    if progress.status.rank >= recording.status_rank:
        recording.status, recording.status_rank = progress.status.value, progress.status.rank
    if progress.url:
        recording.url = progress.url[:URL]
    if progress.duration is not None:
        recording.duration = progress.duration
    if progress.channels is not None:
        recording.channels = progress.channels
    if progress.source:
        recording.source = progress.source
    if progress.started is not None:
        recording.started_at = moment(progress.started)
    if progress.error_code and progress.error_code != "0":
        recording.error_code = progress.error_code
    recording.updated_at = moment(received)


CALLBACK_MEMBER = "cb:"
MEMBER = 80
OUTCOME_RANK = {
    "waiting": 0,
    "full": 1,
    "left": 2,
    "timed_out": 3,
    "abandoned": 4,
    "callback": 5,
    "callback_failed": 6,
    "answered": 7,
}
"""A place's outcome only moves up this order, so that a report delivered late never undoes
a later one: answered is final; a caller who asked for a callback and hung up is a callback
(not abandoned) until the callback is answered or given up."""
_EXITS = {
    QueueEvent.ANSWERED: "answered",
    QueueEvent.ABANDONED: "abandoned",
    QueueEvent.TIMED_OUT: "timed_out",
    QueueEvent.LEFT: "left",
    QueueEvent.FULL: "full",
}
_COUNTED = {QueueEvent.OFFERED, QueueEvent.MISSED, QueueEvent.CALLBACK_PLACED}


@dataclass(slots=True, kw_only=True)
class QueueCallRow:
    """A row of `queue_calls` (db/models.py `QueueCall`): a call's place in one queue."""

    id: int | None = None
    call_sid: str
    queue: str
    member: str
    caller: str = ""
    kind: str = "caller"
    joined_at: dt.datetime
    left_at: dt.datetime | None = None
    outcome: str = "waiting"
    wait_seconds: float | None = None
    agent: str | None = None
    talk_seconds: int | None = None
    offers: int = 0
    missed: int = 0
    callback_requested_at: dt.datetime | None = None
    callback_attempts: int = 0
    counted: str = ""

    def columns(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def queue_key(report: Report) -> tuple[str, str]:
    """The queue_calls row a queue report is about: (call_sid, queue)."""
    activity = report.progress
    assert isinstance(activity, QueueActivity)
    return report.call_sid, activity.queue[:NAME]


def new_queue_call(report: Report) -> dict[str, Any]:
    """The columns of a place history first hears of from `report` (whichever event it is:
    the JOINED may come later)."""
    activity = report.progress
    assert isinstance(activity, QueueActivity)
    call_sid, queue = queue_key(report)
    return {
        "call_sid": call_sid,
        "queue": queue,
        "member": activity.member[:MEMBER],
        "caller": activity.caller[:PARTY],
        "kind": "callback" if activity.member.startswith(CALLBACK_MEMBER) else "caller",
        "joined_at": moment(activity.queued_at),
        "outcome": "waiting",
        "offers": 0,
        "missed": 0,
        "callback_attempts": 0,
        "counted": "",
    }


def _settle(row: QueueCallRow, outcome: str, left: dt.datetime | None, wait: float | None) -> bool:
    """Move the place to `outcome` unless it is at a later one (or at the same one since an
    earlier moment); whether it moved."""
    rank, current = OUTCOME_RANK[outcome], OUTCOME_RANK.get(row.outcome, 0)
    if rank < current:
        return False
    earlier = left is not None and row.left_at is not None and left < row.left_at
    if rank == current and not earlier:
        return False
    row.outcome, row.left_at, row.wait_seconds = outcome, left, wait
    return True


def _first_count(row: QueueCallRow, activity: QueueActivity) -> bool:
    """Whether this offer, miss or callback attempt is new to the row (and remember it): each
    is counted once per reservation, however often its report is delivered."""
    tail = activity.reservation or f"{activity.member}@{activity.queued_at:.3f}"
    key = f"{activity.event.value}:{tail}".replace("\n", " ")
    seen = row.counted.split("\n") if row.counted else []
    if key in seen:
        return False
    row.counted = "\n".join(sorted([*seen, key]))  # sorted: the same whatever the order
    return True


def fold_queue(row: QueueCallRow, report: Report) -> None:
    """What a queue engine report tells about the call's place in its queue. Idempotent and
    order-free: each report may come twice, and in any order (even before the JOINED)."""
    activity = report.progress
    assert isinstance(activity, QueueActivity)
    event = activity.event
    at = moment(report.at)
    row.joined_at = _earliest(row.joined_at, moment(activity.queued_at))
    if event is QueueEvent.JOINED:
        row.member = activity.member[:MEMBER]
    if activity.caller and (event is QueueEvent.JOINED or not row.caller):
        row.caller = activity.caller[:PARTY]
    if activity.member.startswith(CALLBACK_MEMBER) or event is QueueEvent.CALLBACK_REQUESTED:
        row.kind = "callback"
    wait = max(0.0, report.at - activity.queued_at)
    if event in _COUNTED and _first_count(row, activity):
        if event is QueueEvent.OFFERED:
            row.offers += 1
        elif event is QueueEvent.MISSED:
            row.missed += 1
        else:
            row.callback_attempts += 1
    elif event in _EXITS:
        moved = _settle(row, _EXITS[event], at, wait)
        if event is QueueEvent.ANSWERED and activity.agent and (moved or row.agent is None):
            row.agent = activity.agent[:NAME]
    elif event is QueueEvent.COMPLETED:
        if activity.talk is not None:
            row.talk_seconds = activity.talk
        if activity.agent and row.agent is None:
            row.agent = activity.agent[:NAME]
    elif event is QueueEvent.CALLBACK_REQUESTED:
        row.callback_requested_at = _earliest(row.callback_requested_at, at)
        _settle(row, "callback", None, None)
    elif event is QueueEvent.CALLBACK_FAILED and activity.final:
        _settle(row, "callback_failed", at, wait)


def recordings_in(record: StepRecord) -> list[RecordingProgress]:
    """Recordings a step names (a dial's conversation, a voicemail), as recording progress:
    the status callback, when it comes, completes them."""
    found: list[RecordingProgress] = []
    for event in record.events:
        if isinstance(event, DialFinished) and event.recording_url:
            sid = recording_sid_in(event.recording_url)
            if sid:
                found.append(
                    RecordingProgress(
                        recording_sid=sid,
                        status=RecordingStatus.IN_PROGRESS,
                        url=event.recording_url,
                        source="DialVerb",
                    )
                )
        elif isinstance(event, RecordingMade) and event.url:
            sid = recording_sid_in(event.url)
            if sid:
                found.append(
                    RecordingProgress(
                        recording_sid=sid,
                        status=RecordingStatus.COMPLETED,
                        url=event.url,
                        duration=event.duration,
                        source="RecordVerb",
                    )
                )
    return found


def new_recording(sid: str, call_sid: str, at: float) -> dict[str, Any]:
    return {
        "sid": sid,
        "call_sid": call_sid,
        "url": "",
        "status": RecordingStatus.IN_PROGRESS.value,
        "status_rank": 0,
        "source": "",
        "updated_at": moment(at),
    }


def _outcome(event: CallEvent) -> tuple[str | None, str | None]:
    """What happened at the node (outcome), and the keys pressed, for the path."""
    match event:
        case NodeEntered():
            return event.kind, None
        case HoursChecked():
            return (f"{event.status}: {event.holiday}" if event.holiday else event.status), None
        case OptionChosen():
            return event.target, event.key
        case CaseMatched():
            return (f"case {event.case}" if event.case else "default"), None
        case InputCollected():
            return event.variable, event.digits
        case NoInput():
            return f"attempt {event.attempt}", None
        case InvalidInput():
            return f"attempt {event.attempt}", event.digits
        case DialStarted():
            return ", ".join(event.targets), None
        case DialFinished():
            return event.result.value, None
        case RecordingMade():
            return f"{event.duration} s", None
        case QueueJoined() | CallbackRequested():
            return event.queue, None
        case QueueExited():
            return event.reason.value, None
        case FallbackTaken():
            return event.target or "goodbye", None
        case CallRecovered():
            return event.reason, None
        case CallEnded():
            return event.how.value, None
        case CallStarted():
            return event.direction.value, None


def path_rows(record: StepRecord) -> list[dict[str, Any]]:
    """One row per call event of the step: the call's path through its flow."""
    at = moment(record.at)
    rows: list[dict[str, Any]] = []
    for position, event in enumerate(record.events):
        outcome, keys = _outcome(event)
        rows.append(
            {
                "call_sid": record.call_sid,
                "record_id": record.id[:40],
                "position": position,
                "seq": record.seq,
                "at": at,
                "flow": record.flow,
                "event": event.type,
                "node": getattr(event, "node", "")[:NAME],
                "outcome": outcome[:200] if outcome else None,
                "keys": keys[:64] if keys else None,
                "data": _JSON.encode(event).decode(),  # as to_dict(event), in one step
            }
        )
    return rows


def calls_of(entries: Iterable[Entry]) -> dict[str, float]:
    """The calls `entries` are about, each with the earliest time they tell."""
    first: dict[str, float] = {}
    for entry in entries:
        sid = entry.call_sid
        first[sid] = min(first.get(sid, entry.at), entry.at)
    return first
