"""What the engine's service needs from a call store: the Protocol and its errors.

The store keeps call state between webhooks (its adapters, in-process and Redis, live in
`flowpbx.store`). A step's state, its reply and its call events are saved together or not at
all, with compare-and-set on the state's revision so that two webhooks of one call cannot both
win.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from flowpbx.engine.call_events import StepRecord
from flowpbx.engine.progress import Report
from flowpbx.engine.state import CallState
from flowpbx.errors import FlowpbxError


class StoreUnavailable(FlowpbxError):
    """The store does not answer (after the client's own retries)."""


class CorruptState(FlowpbxError):
    """A call's stored state cannot be read. Not an outage: the store answered."""

    def __init__(self, call_sid: str, revision: int, reason: str) -> None:
        self.call_sid = call_sid
        self.revision = revision
        self.reason = reason
        super().__init__(
            f"call {call_sid}: stored state (revision {revision}) is corrupt: {reason}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredCall:
    """A call as stored: its state, the revision to save against, and the last reply given."""

    state: CallState
    revision: int
    reply: str
    """The TwiML answered to the webhook of step `state.seq - 1`, for a retry of it."""


class CallStore(Protocol):
    """Call state by CallSid. Raises StoreUnavailable when the store cannot be reached."""

    async def load(self, call_sid: str, *, seq: int | None = None) -> StoredCall | None:
        """The stored call, or None. Raises CorruptState if its state cannot be read.

        With `seq`, a store may answer from what it saved last for the call if that is at
        step `seq`, without a round trip: a save based on it fails if another process has
        moved the call on since, and the next load then reads the store.
        """
        ...

    async def save(
        self, state: CallState, *, revision: int, reply: str, record: StepRecord | None
    ) -> bool:
        """Store the state, its reply and the step's call events if the stored call is still
        the one this store loaded or saved at `revision` (0: the call is new); False, storing
        nothing, if it moved on (then `load` again before saving)."""
        ...

    async def report(self, report: Report, *, close: bool = False) -> None:
        """Keep a progress report for call history, beside the call's step records. With
        `close` (Twilio said the call ended) the call's state goes soon after, instead of
        lingering until its TTL."""
        ...

    async def first_reply(self, call_sid: str) -> str | None:
        """The reply saved with the call's first state (the answer to its incoming webhook)."""
        ...

    async def keep_flow(self, name: str, version: str, file: str, text: bytes) -> None:
        """Keep a flow version's text (from `file`) for twice the call TTL, so that any
        process can run the calls that started on it after the file changed."""
        ...

    async def flow_text(self, name: str, version: str) -> tuple[str, bytes] | None:
        """The file name and text kept for flow `name` at `version`, or None."""
        ...

    async def active_calls(self) -> int:
        """Calls in progress across every process sharing the store: those saved since Twilio
        last said they ended, started within the call TTL (a call whose final status never
        came stops counting when its state would have expired)."""
        ...

    async def ping(self) -> bool:
        """Whether the store answers."""
        ...

    async def aclose(self) -> None: ...
