"""What Twilio (or the REST API) tells about a call outside its steps: status and recording
callbacks, and calls placed. They travel to call history in the same streams as the engine's
step records, so that a database outage loses neither.

Twilio's words are parsed at the edge (`flowpbx.twilio.params`); these are our own values.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from flowpbx.engine.call_events import BadCallEvent
from flowpbx.engine.events import Direction


class CallStatus(StrEnum):
    """A call's status as Twilio reports it, in the order a call goes through them."""

    QUEUED = "queued"
    INITIATED = "initiated"
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    BUSY = "busy"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    CANCELED = "canceled"

    @property
    def rank(self) -> int:
        """Later statuses rank higher; the final ones rank highest, and equal."""
        return _CALL_RANK[self]

    @property
    def final(self) -> bool:
        return self.rank == FINAL_RANK


FINAL_RANK = 4
_CALL_RANK = {
    CallStatus.QUEUED: 0,
    CallStatus.INITIATED: 1,
    CallStatus.RINGING: 2,
    CallStatus.IN_PROGRESS: 3,
    CallStatus.COMPLETED: FINAL_RANK,
    CallStatus.BUSY: FINAL_RANK,
    CallStatus.FAILED: FINAL_RANK,
    CallStatus.NO_ANSWER: FINAL_RANK,
    CallStatus.CANCELED: FINAL_RANK,
}


class RecordingStatus(StrEnum):
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    ABSENT = "absent"
    """Twilio made no recording (nothing was said, or it was too short)."""
    FAILED = "failed"

    @property
    def rank(self) -> int:
        """in-progress, then completed, then absent or failed: a recording Twilio says it lost
        stays lost, whatever else arrives after."""
        return _RECORDING_RANK[self]


_RECORDING_RANK = {
    RecordingStatus.IN_PROGRESS: 0,
    RecordingStatus.COMPLETED: 1,
    RecordingStatus.ABSENT: 2,
    RecordingStatus.FAILED: 2,
}


class _Progress(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """What every progress report is: a frozen value with a `type` tag in its JSON form."""


class CallProgress(_Progress, tag="call_status", frozen=True, kw_only=True):
    """A call status callback."""

    status: CallStatus
    sequence: int
    """Twilio's SequenceNumber (-1 when the callback has none)."""
    timestamp: float | None
    """Unix time Twilio gives for the change (its Timestamp), if any."""
    caller: str
    called: str
    direction: Direction
    parent_sid: str = ""
    duration: int | None = None
    """Seconds (CallDuration), with a final status."""
    price_micros: int | None = None
    price_unit: str = ""


class RecordingProgress(_Progress, tag="recording_status", frozen=True, kw_only=True):
    """A recording status callback."""

    recording_sid: str
    status: RecordingStatus
    url: str
    duration: int | None = None
    channels: int | None = None
    source: str = ""
    started: float | None = None
    """Unix time the recording started (RecordingStartTime), if given."""
    error_code: str = ""


class CallPlaced(_Progress, tag="call_placed", frozen=True, kw_only=True):
    """The REST API placed a call: for a flow, or to connect a softphone."""

    caller: str
    called: str
    flow: str | None = None
    identity: str | None = None


class QueueEvent(StrEnum):
    """What happened to a place in a queue, as the queue engine reports it."""

    JOINED = "joined"
    OFFERED = "offered"
    """Offered to an agent (their phone rings)."""
    MISSED = "missed"
    """The agent offered the call did not answer; the place goes back to the front."""
    ANSWERED = "answered"
    """An agent answered: the caller is connected."""
    COMPLETED = "completed"
    """The answered call ended (`talk` seconds)."""
    ABANDONED = "abandoned"
    """The caller hung up while waiting (or while an agent's phone rang)."""
    TIMED_OUT = "timed_out"
    LEFT = "left"
    """The caller pressed the key to leave."""
    FULL = "full"
    """Turned away: the queue had no room."""
    CALLBACK_REQUESTED = "callback_requested"
    """The caller asked to be called back and hung up; the place is kept."""
    CALLBACK_PLACED = "callback_placed"
    """flowpbx placed the callback (the agent answered and the caller's phone is called)."""
    CALLBACK_FAILED = "callback_failed"
    """The callback did not reach the caller; tried again later, or given up (`final`)."""


QUEUE_EXITS = frozenset(
    {
        QueueEvent.ANSWERED,
        QueueEvent.ABANDONED,
        QueueEvent.TIMED_OUT,
        QueueEvent.LEFT,
        QueueEvent.FULL,
    }
)
"""Events after which the caller no longer waits on the line (a callback waits on)."""


class QueueActivity(_Progress, tag="queue", frozen=True, kw_only=True):
    """A queue engine event about one place (`member`) of `queue`."""

    queue: str
    event: QueueEvent
    member: str
    """The CallSid, or 'cb:' + CallSid for a callback."""
    queued_at: float
    """When the place was taken (Unix seconds)."""
    caller: str = ""
    agent: str = ""
    target: str = ""
    """What the agent was reached at: 'client:<identity>' or a number."""
    reservation: str = ""
    talk: int | None = None
    """Seconds the agent talked (COMPLETED)."""
    final: bool = False
    """CALLBACK_FAILED: given up after the last attempt."""


Progress = CallProgress | RecordingProgress | CallPlaced | QueueActivity


class Report(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One progress report as the call store keeps it until call history has it.

    `id` is the same for a callback Twilio delivers twice, so a consumer can tell.
    """

    id: str
    call_sid: str
    at: float
    """Unix time it was received, in seconds."""
    progress: Progress

    @classmethod
    def of(cls, call_sid: str, progress: Progress, at: float) -> Report:
        """The report of `progress` on a call, received at `at`, with its id."""
        return cls(id=report_id(call_sid, progress), call_sid=call_sid, at=at, progress=progress)

    def encode(self) -> bytes:
        return _ENCODER.encode(self)

    @classmethod
    def from_json(cls, text: str | bytes) -> Report:
        try:
            return _DECODER.decode(text)
        except msgspec.DecodeError as exc:
            raise BadCallEvent(f"unreadable progress report: {exc}"[:300]) from exc


def report_id(call_sid: str, progress: Progress) -> str:
    """The same id for the same callback, however often it is delivered."""
    match progress:
        case CallProgress():
            return f"{call_sid}:status:{progress.sequence}:{progress.status}"
        case RecordingProgress():
            return f"{progress.recording_sid}:{progress.status}"
        case CallPlaced():
            return f"{call_sid}:placed"
        case QueueActivity():
            tail = progress.reservation or f"{progress.queued_at:.3f}"
            return f"{call_sid}:queue:{progress.queue}:{progress.member}:{progress.event}:{tail}"


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Report)
