"""The state of one call between webhooks, and its JSON form for the call store."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Self

from flowpbx.errors import FlowpbxError


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


@dataclass(frozen=True, slots=True)
class CallState:
    """Where a call is in its flow. `seq` counts the steps taken; webhook URLs carry it."""

    call_sid: str
    flow: str
    version: str
    node: str
    waiting: Waiting
    seq: int = 0
    variables: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    attempts: int = 0
    visits: Mapping[str, int] = field(default_factory=lambda: _frozen({}))
    steps: int = 0
    leave_reason: str = ""
    queued_at: int = 0
    """When the call entered its queue (Unix seconds); 0 when it is not queued."""
    reply: str = ""
    """The TwiML answered for step `seq - 1`, sent again if that webhook comes again."""

    def evolve(self, **changes: Any) -> Self:
        for name in ("variables", "visits"):
            if name in changes:
                changes[name] = _frozen(changes[name])
        return replace(self, **changes)

    def to_json(self) -> str:
        data = {
            "call_sid": self.call_sid,
            "flow": self.flow,
            "version": self.version,
            "node": self.node,
            "waiting": str(self.waiting),
            "seq": self.seq,
            "variables": dict(self.variables),
            "attempts": self.attempts,
            "visits": dict(self.visits),
            "steps": self.steps,
            "leave_reason": self.leave_reason,
            "queued_at": self.queued_at,
            "reply": self.reply,
        }
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> CallState:
        try:
            data = json.loads(text)
            return cls(
                call_sid=_text(data["call_sid"]),
                flow=_text(data["flow"]),
                version=_text(data["version"]),
                node=_text(data["node"]),
                waiting=Waiting(data["waiting"]),
                seq=_number(data["seq"]),
                variables=_frozen({_text(k): _text(v) for k, v in data["variables"].items()}),
                attempts=_number(data["attempts"]),
                visits=_frozen({_text(k): _number(v) for k, v in data["visits"].items()}),
                steps=_number(data["steps"]),
                leave_reason=_text(data["leave_reason"]),
                queued_at=_number(data["queued_at"]),
                reply=_text(data["reply"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise StateError(f"stored call state is unreadable: {exc!r}"[:300]) from exc


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _number(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected a whole number, got {type(value).__name__}")
    return value
