"""The state of one call between webhooks, and its versioned JSON form for the call store.

The JSON carries a format number. A field added later is read with its default when a state
written by an older release lacks it, and fields this release does not know are ignored, so a
rolling deploy never turns the calls in flight into apologies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Self, TypeVar

import msgspec

from flowpbx.engine.events import Direction
from flowpbx.errors import FlowpbxError

T = TypeVar("T")
_ENCODER = msgspec.json.Encoder()

STATE_FORMAT = 2
"""1: call engine v1 (no format field); 2: adds format and direction."""


class Waiting(StrEnum):
    """What the call waits for at its current node; the webhook that may come next."""

    KEYS = "keys"
    DIAL = "dial"
    QUEUE = "queue"
    RECORDING = "recording"
    ENDED = "ended"


class StateError(FlowpbxError):
    """Stored call state that cannot be read back."""


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


class CallState(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Where a call is in its flow. `seq` counts the steps taken; webhook URLs carry it.

    A msgspec Struct: made and copied at every step, it is much cheaper than a frozen dataclass,
    and it holds nothing that could form a reference cycle, so the garbage collector skips it.
    """

    call_sid: str
    flow: str
    version: str
    node: str
    waiting: Waiting
    seq: int = 0
    direction: Direction = Direction.INBOUND
    variables: Mapping[str, str] = msgspec.field(default_factory=lambda: _frozen({}))
    attempts: int = 0
    visits: Mapping[str, int] = msgspec.field(default_factory=lambda: _frozen({}))
    steps: int = 0
    leave_reason: str = ""
    """Why flowpbx asked the queue to let the caller go: 'timed_out', 'left', 'full',
    'callback' or ''."""
    queued_at: int = 0
    """When the call entered its queue (Unix seconds); 0 when it is not queued."""
    announced_at: int = 0
    """When the caller last heard their place in the queue (Unix seconds); 0: not yet."""
    queue_phase: str = ""
    """'' while the caller listens to the hold music; 'callback' while they confirm their own
    number to be called back at; 'callback-number' while they type another one."""

    def evolve(self, **changes: Any) -> Self:
        for name in ("variables", "visits"):
            if name in changes:
                changes[name] = _frozen(changes[name])
        return msgspec.structs.replace(self, **changes)

    def to_json(self) -> str:
        return self.encode().decode()

    def encode(self) -> bytes:
        """The JSON form as UTF-8 bytes (what the Redis store sends as is)."""
        data = {
            "format": STATE_FORMAT,
            "call_sid": self.call_sid,
            "flow": self.flow,
            "version": self.version,
            "node": self.node,
            "waiting": str(self.waiting),
            "seq": self.seq,
            "direction": str(self.direction),
            "variables": dict(self.variables),
            "attempts": self.attempts,
            "visits": dict(self.visits),
            "steps": self.steps,
            "leave_reason": self.leave_reason,
            "queued_at": self.queued_at,
            "announced_at": self.announced_at,
            "queue_phase": self.queue_phase,
        }
        return _ENCODER.encode(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> CallState:
        """Read a stored state of any format so far; StateError if it cannot be read."""
        try:
            data = msgspec.json.decode(text)
            if not isinstance(data, dict):
                raise TypeError(f"expected an object, got {type(data).__name__}")
            return cls(
                call_sid=_text(data["call_sid"]),
                flow=_text(data["flow"]),
                version=_text(data["version"]),
                node=_text(data["node"]),
                waiting=Waiting(data["waiting"]),
                seq=_number(data["seq"]),
                direction=Direction(_optional(data, "direction", _text, "inbound")),
                variables=_frozen(_optional(data, "variables", _texts, {})),
                attempts=_optional(data, "attempts", _number, 0),
                visits=_frozen(_optional(data, "visits", _numbers, {})),
                steps=_optional(data, "steps", _number, 0),
                leave_reason=_optional(data, "leave_reason", _text, ""),
                queued_at=_optional(data, "queued_at", _number, 0),
                announced_at=_optional(data, "announced_at", _number, 0),
                queue_phase=_optional(data, "queue_phase", _text, ""),
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            # msgspec.DecodeError is a ValueError: unreadable JSON lands here too.
            raise StateError(f"stored call state is unreadable: {exc!r}"[:300]) from exc


def _optional(data: dict[str, Any], name: str, read: Callable[[Any], T], default: T) -> T:
    """A field that an older format may lack: its default then (but a present bad value fails)."""
    return read(data[name]) if name in data else default


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _number(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected a whole number, got {type(value).__name__}")
    return value


def _texts(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return {_text(k): _text(v) for k, v in value.items()}


def _numbers(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return {_text(k): _number(v) for k, v in value.items()}
