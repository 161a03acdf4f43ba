"""Where call state lives between webhooks: a Protocol, an in-process twin and Redis."""

from __future__ import annotations

from typing import Protocol

from flowpbx.engine.state import CallState


class CallStore(Protocol):
    """Call state by CallSid, with compare-and-set so two webhooks cannot both win."""

    async def get(self, call_sid: str) -> tuple[CallState | None, int]:
        """The stored state and its revision (0 when there is none)."""
        ...

    async def put(self, state: CallState, revision: int) -> bool:
        """Store `state` if the stored revision is still `revision`; False if it moved on."""
        ...

    def recent(self, call_sid: str) -> tuple[CallState, int] | None:
        """The state this process last read or wrote for the call, without asking the store.

        It may be stale (another process may have moved the call on): use it only for a
        write that `put`'s compare-and-set will refuse if so.
        """
        ...

    async def ping(self) -> bool:
        """Whether the store answers."""
        ...

    async def aclose(self) -> None: ...
