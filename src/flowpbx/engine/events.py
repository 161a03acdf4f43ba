"""What the engine is told: a call connects, keys are pressed, a dial, queue or recording ends.

These are flowpbx's own words. Twilio's parameter names and strings are mapped to them in one
place, `flowpbx.twilio.params`; nothing past that edge knows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Direction(StrEnum):
    """Who placed the call."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"
    """Placed by flowpbx (the REST API, a callback) and answered by the person called."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NewCall:
    """A call that enters a flow: an inbound call, or one flowpbx placed (by flow name)."""

    call_sid: str
    caller: str
    called: str
    direction: Direction = Direction.INBOUND
    flow: str | None = None
    """The flow to run; None picks it from the number called."""


class DialResult(StrEnum):
    """How a dial to a department or person ended."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"
    CANCELED = "canceled"


class QueueResult(StrEnum):
    """Why a caller left a queue, as the queue reports it."""

    BRIDGED = "bridged"
    """Connected to an agent; the conversation is over when this arrives."""
    BRIDGING = "bridging"
    """Being connected to an agent: the call is the agent's now, nothing more to say."""
    REDIRECTED = "redirected"
    """Taken out of the queue and sent elsewhere (by an agent's or the queue engine's action)."""
    HANGUP = "hangup"
    """The caller hung up while waiting."""
    LEAVE = "leave"
    """flowpbx asked the caller to leave (waited too long, or pressed the leave key)."""
    FULL = "full"
    """The queue had no room."""
    ERROR = "error"
    """The queue could not keep the caller (an error on the queue's side)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class KeysPressed:
    """Keys from a prompt; '' when the caller pressed nothing before the timeout."""

    digits: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DialEnded:
    result: DialResult
    duration: int = 0
    """Seconds the caller spoke with the person dialled (0 unless answered)."""
    recording_url: str = ""
    """The conversation's recording, when the dial records ('' otherwise)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLeft:
    result: QueueResult
    waited: int = 0
    """Seconds the caller spent in the queue, as the queue counts them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingEnded:
    """A voicemail ended; `url` is '' when nothing was recorded."""

    url: str
    duration: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueView:
    """Where a waiting caller stands, as the queue engine sees it at a wait request."""

    position: int
    """1 for the front; 0 while the caller is being offered to an agent."""
    wait: int | None
    """The estimated wait in seconds; None when no agent serves the queue."""
    full: bool = False
    """The queue had no room: the caller was not admitted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueWaitTick:
    """The hold music ran out and the queue asks what the waiting caller hears next."""

    waited: int
    """Seconds in the queue as the queue counts them (0 when it does not say)."""
    view: QueueView | None = None
    """The caller's place (None without a queue engine, e.g. a store that did not answer:
    the caller then hears the music, without an announcement)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueKeysPressed:
    """Keys pressed by a caller waiting in a queue (during the hold music)."""

    digits: str


Event = KeysPressed | DialEnded | QueueLeft | RecordingEnded | QueueWaitTick | QueueKeysPressed

WAIT_EVENTS = (QueueWaitTick, QueueKeysPressed)
"""Events that happen while the call stays at its step: they do not move `seq` on."""
