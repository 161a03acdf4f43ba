"""What the interpreter asks Twilio to do, before it becomes TwiML.

Actions are plain values with no URLs: the renderer knows where webhooks go.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from flowpbx.language.flow import RecordingChannels


@dataclass(frozen=True, slots=True)
class Say:
    text: str
    voice: str
    language: str
    loop: int = 1


@dataclass(frozen=True, slots=True)
class Play:
    url: str
    loop: int = 1


@dataclass(frozen=True, slots=True)
class Pause:
    seconds: int


Prompt = Say | Play | Pause


class Route(StrEnum):
    """The webhooks that answer an action; each is one path under /api/calls/."""

    GATHER = "gather"
    DIAL = "dial"
    ENQUEUE = "enqueue"
    QUEUE_WAIT = "queue-wait"
    QUEUE_KEY = "queue-key"
    RECORD = "record"


@dataclass(frozen=True, slots=True)
class Gather:
    """Wait for keys while playing `prompt`; the keys come back to `route`."""

    prompt: tuple[Prompt, ...]
    timeout: int
    num_digits: int | None
    finish_on_key: str
    route: Route = Route.GATHER


@dataclass(frozen=True, slots=True)
class Dial:
    """Connect the caller to `targets`; when `record`, the answered call is recorded on
    `channels`."""

    targets: tuple[str, ...]
    caller_id: str | None
    timeout: int
    record: bool
    channels: RecordingChannels = RecordingChannels.DUAL


@dataclass(frozen=True, slots=True)
class Enqueue:
    """Put the caller in `queue`; `flow` and `node` name the enqueue node, so that the hold
    music can go on even if the call's state is lost while the caller waits."""

    queue: str
    flow: str
    node: str


@dataclass(frozen=True, slots=True)
class Record:
    max_length: int
    timeout: int
    beep: bool
    finish_on_key: str
    transcribe: bool


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


@dataclass(frozen=True, slots=True)
class Leave:
    """Take the caller out of the queue (only in queue wait documents)."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """Go on at `route`; a queue's wait route also names the enqueue node (`flow`, `node`)."""

    route: Route
    flow: str = ""
    node: str = ""


Action = Say | Play | Pause | Gather | Dial | Enqueue | Record | Hangup | Leave | Redirect
