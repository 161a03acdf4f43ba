"""What happened on a call, step by step: frozen values the engine emits with each step.

They are stored atomically with the call's state (a Redis stream, or the memory store's list)
and read back by call history. Each has a `type` string; `to_dict`/`from_dict` are their JSON
form, documented in docs/call-events.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar, get_args

import msgspec

from flowpbx.engine.events import DialResult, Direction
from flowpbx.errors import FlowpbxError


class QueueExit(StrEnum):
    """Why a caller left a queue."""

    AGENT = "agent"
    """Connected to an agent (the conversation has ended)."""
    HUNG_UP = "hung_up"
    TIMED_OUT = "timed_out"
    """Waited the node's max_wait."""
    LEFT = "left"
    """Pressed the node's leave key."""
    FULL = "full"
    CALLBACK = "callback"
    """Asked to be called back, keeping their place, and hung up."""
    REDIRECTED = "redirected"
    ERROR = "error"


class EndReason(StrEnum):
    """How a call's flow ended."""

    HANGUP = "hangup"
    """The flow said goodbye at a hangup node."""
    CONNECTED = "connected"
    """A dial was answered and the flow had nothing after it."""
    AGENT = "agent"
    """An agent took the call from a queue."""
    CALLER_HUNG_UP = "caller_hung_up"
    """The caller hung up while waiting in a queue."""
    REDIRECTED = "redirected"
    """The call was taken out of the flow (redirected from a queue)."""
    CALLBACK = "callback"
    """The caller will be called back from a queue, and was let go."""
    ERROR = "error"
    """flowpbx could not go on and said goodbye with an apology."""


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """What every call event is: a frozen value with a `type` tag in its JSON form. Not
    tracked by the garbage collector (they hold only texts, numbers and enums)."""


class CallStarted(_Event, tag="call_started", frozen=True, kw_only=True):
    type: ClassVar[str] = "call_started"
    flow: str
    version: str
    caller: str
    called: str
    direction: Direction


class NodeEntered(_Event, tag="node_entered", frozen=True, kw_only=True):
    type: ClassVar[str] = "node_entered"
    node: str
    kind: str


class HoursChecked(_Event, tag="hours_checked", frozen=True, kw_only=True):
    """An hours node decided: open, closed or holiday (and which holiday)."""

    type: ClassVar[str] = "hours_checked"
    node: str
    status: str
    """'open', 'closed' or 'holiday'."""
    holiday: str
    """The holiday's name when the day is one (even if open on shortened hours), else ''."""
    forced: bool
    """The operator's day/night switch (FLOWPBX_HOURS_OVERRIDE) decided, not the clock."""


class OptionChosen(_Event, tag="option_chosen", frozen=True, kw_only=True):
    type: ClassVar[str] = "option_chosen"
    node: str
    key: str
    target: str


class CaseMatched(_Event, tag="case_matched", frozen=True, kw_only=True):
    """A switch node chose its way: case `case` (1 for the first), or 0 for its default.
    Not the value compared: it may be what a caller typed."""

    type: ClassVar[str] = "case_matched"
    node: str
    case: int
    target: str


class InputCollected(_Event, tag="input_collected", frozen=True, kw_only=True):
    type: ClassVar[str] = "input_collected"
    node: str
    variable: str
    digits: str
    """The digits typed, or one '*' per digit when the input node is sensitive."""


class NoInput(_Event, tag="no_input", frozen=True, kw_only=True):
    type: ClassVar[str] = "no_input"
    node: str
    attempt: int
    """1 for the first silence at this node, 2 for the second..."""


class InvalidInput(_Event, tag="invalid_input", frozen=True, kw_only=True):
    type: ClassVar[str] = "invalid_input"
    node: str
    attempt: int
    digits: str
    """What was typed (masked at a sensitive input node)."""


class DialStarted(_Event, tag="dial_started", frozen=True, kw_only=True):
    type: ClassVar[str] = "dial_started"
    node: str
    targets: tuple[str, ...]
    record: bool


class DialFinished(_Event, tag="dial_finished", frozen=True, kw_only=True):
    type: ClassVar[str] = "dial_finished"
    node: str
    result: DialResult
    duration: int
    recording_url: str = ""
    """The recording of the conversation, when the dial records it ('' otherwise)."""


class RecordingMade(_Event, tag="recording_made", frozen=True, kw_only=True):
    type: ClassVar[str] = "recording_made"
    node: str
    url: str
    duration: int


class QueueJoined(_Event, tag="queue_joined", frozen=True, kw_only=True):
    type: ClassVar[str] = "queue_joined"
    node: str
    queue: str


class CallbackRequested(_Event, tag="callback_requested", frozen=True, kw_only=True):
    """A caller waiting in a queue confirmed the number to be called back at."""

    type: ClassVar[str] = "callback_requested"
    node: str
    queue: str
    number: str
    queued_at: int = 0
    """When the caller joined the queue (Unix seconds; 0 if not known): the callback's place."""


class QueueExited(_Event, tag="queue_exited", frozen=True, kw_only=True):
    type: ClassVar[str] = "queue_exited"
    node: str
    queue: str
    reason: QueueExit
    waited: int
    """Seconds in the queue."""


class FallbackTaken(_Event, tag="fallback_taken", frozen=True, kw_only=True):
    """A step failed (or the call's state was lost) and the caller heard the flow's apology."""

    type: ClassVar[str] = "fallback_taken"
    node: str
    """Where the call was when it failed."""
    error: str
    target: str | None
    """Where the call went on (the flow's on_error.next, or its entry), None: goodbye."""


class CallRecovered(_Event, tag="call_recovered", frozen=True, kw_only=True):
    """The call's stored state was lost or unreadable, and the engine took the call up again."""

    type: ClassVar[str] = "call_recovered"
    node: str
    """Where the call goes on from (the queue it still waits in, or the fallback)."""
    reason: str
    """'state_lost', 'state_corrupt', or 'flow_gone' (the flow it ran was removed or renamed)."""


class CallEnded(_Event, tag="call_ended", frozen=True, kw_only=True):
    type: ClassVar[str] = "call_ended"
    node: str
    how: EndReason


CallEvent = (
    CallStarted
    | NodeEntered
    | HoursChecked
    | OptionChosen
    | CaseMatched
    | InputCollected
    | NoInput
    | InvalidInput
    | DialStarted
    | DialFinished
    | RecordingMade
    | QueueJoined
    | CallbackRequested
    | QueueExited
    | FallbackTaken
    | CallRecovered
    | CallEnded
)

EVENT_TYPES: Mapping[str, type[CallEvent]] = {kind.type: kind for kind in get_args(CallEvent)}


class BadCallEvent(FlowpbxError):
    """A stored call event that does not match its type's fields."""


def to_dict(event: CallEvent) -> dict[str, Any]:
    """The JSON form: {"type": ..., field: value...}; enums as their strings, tuples as lists."""
    data: dict[str, Any] = msgspec.to_builtins(event)
    return {k: list(v) if type(v) is tuple else v for k, v in data.items()}


def from_dict(data: Mapping[str, Any]) -> CallEvent:
    """A call event from its JSON form; unknown fields (from a newer release) are ignored, and
    fields added later (with a default) may be absent."""
    try:
        event: CallEvent = msgspec.convert(data, CallEvent)
    except msgspec.ValidationError as exc:
        raise BadCallEvent(f"call event {data.get('type')!r}: {exc}") from exc
    return event


class StepRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One step's call events as the store keeps them, written with the call's state.

    `id` is unique per record, so a consumer that sees a record twice can tell; `revision` is
    the state's revision this step wrote, `seq` the step the call is at after it.
    """

    id: str
    call_sid: str
    revision: int
    seq: int
    at: float
    """Unix time of the step, in seconds."""
    flow: str
    version: str
    events: tuple[CallEvent, ...]

    def to_json(self) -> str:
        return self.encode().decode()

    def encode(self) -> bytes:
        """The JSON form as UTF-8 bytes (what the Redis store sends as is)."""
        return _ENCODER.encode(self)

    @classmethod
    def from_json(cls, text: str | bytes) -> StepRecord:
        try:
            return _RECORD_DECODER.decode(text)
        except msgspec.DecodeError as exc:
            raise BadCallEvent(f"unreadable step record: {exc}"[:300]) from exc


_ENCODER = msgspec.json.Encoder()
_RECORD_DECODER = msgspec.json.Decoder(StepRecord)
