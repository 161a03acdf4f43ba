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
    reply_seq: int = -1
    reply: str = ""

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
            "reply_seq": self.reply_seq,
            "reply": self.reply,
        }
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> CallState:
        try:
            data = json.loads(text)
            return cls(
                call_sid=str(data["call_sid"]),
                flow=str(data["flow"]),
                version=str(data["version"]),
                node=str(data["node"]),
                waiting=Waiting(data["waiting"]),
                seq=int(data["seq"]),
                variables=_frozen({str(k): str(v) for k, v in data["variables"].items()}),
                attempts=int(data["attempts"]),
                visits=_frozen({str(k): int(v) for k, v in data["visits"].items()}),
                steps=int(data["steps"]),
                leave_reason=str(data["leave_reason"]),
                reply_seq=int(data["reply_seq"]),
                reply=str(data["reply"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateError(f"stored call state is unreadable: {exc}") from exc
