"""What happened on a call, step by step: frozen values the engine emits with each step.

They are stored atomically with the call's state (a Redis stream, or the memory store's list)
and read back by call history. Each has a `type` string; `to_dict`/`from_dict` are their JSON
form, documented in docs/call-events.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, get_args, get_type_hints

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
    ERROR = "error"
    """flowpbx could not go on and said goodbye with an apology."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted:
    type: ClassVar[str] = "call_started"
    flow: str
    version: str
    caller: str
    called: str
    direction: Direction


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeEntered:
    type: ClassVar[str] = "node_entered"
    node: str
    kind: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HoursChecked:
    """An hours node decided: open, closed or holiday (and which holiday)."""

    type: ClassVar[str] = "hours_checked"
    node: str
    status: str
    """'open', 'closed' or 'holiday'."""
    holiday: str
    """The holiday's name when the day is one (even if open on shortened hours), else ''."""
    forced: bool
    """The operator's day/night switch (FLOWPBX_HOURS_OVERRIDE) decided, not the clock."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OptionChosen:
    type: ClassVar[str] = "option_chosen"
    node: str
    key: str
    target: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InputCollected:
    type: ClassVar[str] = "input_collected"
    node: str
    variable: str
    digits: str
    """The digits typed, or one '*' per digit when the input node is sensitive."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NoInput:
    type: ClassVar[str] = "no_input"
    node: str
    attempt: int
    """1 for the first silence at this node, 2 for the second..."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidInput:
    type: ClassVar[str] = "invalid_input"
    node: str
    attempt: int
    digits: str
    """What was typed (masked at a sensitive input node)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DialStarted:
    type: ClassVar[str] = "dial_started"
    node: str
    targets: tuple[str, ...]
    record: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DialFinished:
    type: ClassVar[str] = "dial_finished"
    node: str
    result: DialResult
    duration: int
    recording_url: str = ""
    """The recording of the conversation, when the dial records it ('' otherwise)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingMade:
    type: ClassVar[str] = "recording_made"
    node: str
    url: str
    duration: int


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueJoined:
    type: ClassVar[str] = "queue_joined"
    node: str
    queue: str


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueExited:
    type: ClassVar[str] = "queue_exited"
    node: str
    queue: str
    reason: QueueExit
    waited: int
    """Seconds in the queue."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackTaken:
    """A step failed (or the call's state was lost) and the caller heard the flow's apology."""

    type: ClassVar[str] = "fallback_taken"
    node: str
    """Where the call was when it failed."""
    error: str
    target: str | None
    """Where the call went on (the flow's on_error.next, or its entry), None: goodbye."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecovered:
    """The call's stored state was lost or unreadable, and the engine took the call up again."""

    type: ClassVar[str] = "call_recovered"
    node: str
    """Where the call goes on from (the queue it still waits in, or the fallback)."""
    reason: str
    """'state_lost', 'state_corrupt', or 'flow_gone' (the flow it ran was removed or renamed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded:
    type: ClassVar[str] = "call_ended"
    node: str
    how: EndReason


CallEvent = (
    CallStarted
    | NodeEntered
    | HoursChecked
    | OptionChosen
    | InputCollected
    | NoInput
    | InvalidInput
    | DialStarted
    | DialFinished
    | RecordingMade
    | QueueJoined
    | QueueExited
    | FallbackTaken
    | CallRecovered
    | CallEnded
)

EVENT_TYPES: Mapping[str, type[CallEvent]] = {kind.type: kind for kind in get_args(CallEvent)}


_ENCODER = msgspec.json.Encoder()
"""JSON for what is written at every step: several times faster than the json module."""


class BadCallEvent(FlowpbxError):
    """A stored call event that does not match its type's fields."""


_FIELD_NAMES: Mapping[type[CallEvent], tuple[str, ...]] = {
    kind: tuple(f.name for f in dataclasses.fields(kind)) for kind in EVENT_TYPES.values()
}
"""Each event type's fields, in order (dataclasses.fields is too slow for every step)."""


def to_dict(event: CallEvent) -> dict[str, Any]:
    """The JSON form: {"type": ..., field: value...}; enums as their strings, tuples as lists."""
    data: dict[str, Any] = {"type": event.type}
    for name in _FIELD_NAMES[type(event)]:
        value = getattr(event, name)
        data[name] = list(value) if type(value) is tuple else value
    return data


def _field_types(kind: type[CallEvent]) -> dict[str, Any]:
    return {name: hint for name, hint in get_type_hints(kind).items() if name != "type"}


_FIELD_TYPES = {name: _field_types(kind) for name, kind in EVENT_TYPES.items()}
_DEFAULTED = {
    name: frozenset(
        f.name for f in dataclasses.fields(kind) if f.default is not dataclasses.MISSING
    )
    for name, kind in EVENT_TYPES.items()
}


def _value(hint: Any, value: Any, where: str) -> Any:
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return hint(value)
    if hint == tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadCallEvent(f"{where}: expected a list of texts")
        return tuple(value)
    allowed = get_args(hint) or (hint,)
    if type(value) not in allowed:
        raise BadCallEvent(f"{where}: expected {hint}, got {type(value).__name__}")
    return value


def from_dict(data: Mapping[str, Any]) -> CallEvent:
    """A call event from its JSON form; unknown fields (from a newer release) are ignored."""
    kind = EVENT_TYPES.get(str(data.get("type")))
    if kind is None:
        raise BadCallEvent(f"unknown call event type {data.get('type')!r}")
    values: dict[str, Any] = {}
    for name, hint in _FIELD_TYPES[kind.type].items():
        if name not in data:
            if name in _DEFAULTED[kind.type]:
                continue  # a field added later, absent from older records
            raise BadCallEvent(f"{kind.type}: missing {name!r}")
        try:
            values[name] = _value(hint, data[name], f"{kind.type}.{name}")
        except ValueError as exc:
            raise BadCallEvent(f"{kind.type}.{name}: {exc}") from exc
    return kind(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRecord:
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
        data: dict[str, Any] = {
            "id": self.id,
            "call_sid": self.call_sid,
            "revision": self.revision,
            "seq": self.seq,
            "at": self.at,
            "flow": self.flow,
            "version": self.version,
            "events": [to_dict(e) for e in self.events],
        }
        return _ENCODER.encode(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> StepRecord:
        try:
            data = msgspec.json.decode(text)
            events = data["events"]
            if not isinstance(events, list):
                raise BadCallEvent("'events' is not a list")
            return cls(
                id=str(data["id"]),
                call_sid=str(data["call_sid"]),
                revision=int(data["revision"]),
                seq=int(data["seq"]),
                at=float(data["at"]),
                flow=str(data["flow"]),
                version=str(data["version"]),
                events=tuple(from_dict(item) for item in events),
            )
        except (ValueError, KeyError, TypeError, msgspec.DecodeError) as exc:
            raise BadCallEvent(f"unreadable step record: {exc!r}"[:300]) from exc
