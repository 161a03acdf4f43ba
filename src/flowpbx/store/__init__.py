"""Where call state lives between webhooks: a Protocol, an in-process twin and Redis."""

from __future__ import annotations

from typing import Protocol

from flowpbx.state import CallState


class CallStore(Protocol):
    """Call state by CallSid, with compare-and-set so two webhooks cannot both win."""

    async def get(self, call_sid: str) -> tuple[CallState | None, int]:
        """The stored state and its revision (0 when there is none)."""
        ...

    async def put(self, state: CallState, revision: int) -> bool:
        """Store `state` if the stored revision is still `revision`; False if it moved on."""
        ...

    async def ping(self) -> bool:
        """Whether the store answers."""
        ...

    async def aclose(self) -> None: ...
