"""The seam to where queues and agents live: `QueueStore`. Two implementations: Redis (Lua
scripts, one hash tag per queue and one for all agents, so it works on Redis Cluster) and memory
(one process, the embedded default). Every operation that changes more than one value is atomic.

Queue keys are `fq:{q:<name>}:...`: the order (a sorted set scored by priority and join time,
so a position is a rank, O(log n)), the places' details, the places being offered to an agent,
what the queue has learned, and the scheduler's lock. Agent keys are `fq:{agents}:...`: each
agent's live state and the reservations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from flowpbx.queues.model import AgentLive, AgentStatus, Figures, QueuePlace, Reservation, Waiter


class QueueStore(Protocol):
    # -- places in a queue --

    async def join(self, queue: str, waiter: Waiter, max_size: int) -> QueuePlace:
        """Put `waiter` in `queue` at its score, unless its member is there already (then its
        `queue_sid`, `seq`, `flow` and `node` are updated and its place kept) or `max_size`
        places wait (those with an agent, ringing or talking, do not count)."""
        ...

    async def place(self, queue: str, member: str) -> QueuePlace:
        """Where `member` is: outcome WAITING with its position, CLAIMED, or FULL/0 if absent
        (outcome JOINED is never returned here; absent is position 0 with outcome FULL)."""
        ...

    async def leave(self, queue: str, member: str) -> Waiter | None:
        """Take a waiting member out of the queue for good; None if it was not waiting (a
        claimed member stays: its reservation decides)."""
        ...

    async def waiting(self, queue: str, offset: int, limit: int) -> tuple[list[Waiter], int]:
        """Places in order from `offset` (0 = front), at most `limit`, and how many wait."""
        ...

    async def oldest(self, queue: str) -> tuple[int, float | None]:
        """How many places wait, and when the one waiting longest joined (None: empty),
        without reading the places: the earliest of each priority's first place."""
        ...

    async def to_callback(
        self, queue: str, member: str, number: str, not_before: float = 0.0
    ) -> Waiter | None:
        """Turn a waiting caller into a callback to `number` in the same place (member
        'cb:' + CallSid), not offered before `not_before`; None if the caller is no longer
        waiting."""
        ...

    async def requeue(self, queue: str, waiter: Waiter) -> None:
        """Put a place back in the order with `waiter`'s details (a callback to try again
        later: same member, new queued_at), whatever its state."""
        ...

    async def where(self, call_sid: str) -> str | None:
        """The queue a call last joined (while it waits or is being offered)."""
        ...

    # -- the scheduler --

    async def lock(self, queue: str, token: str, ttl: float) -> bool:
        """Take the queue's scheduling lock for `ttl` seconds (or renew it with the same
        token); False if another token holds it."""
        ...

    async def unlock(self, queue: str, token: str) -> None: ...

    async def claim(self, queue: str, member: str, reservation: str, agent: str) -> Waiter | None:
        """Take `member` out of the order for `reservation` (and remember `agent` as the one
        round-robin goes on from); None if it no longer waits."""
        ...

    async def unclaim(self, queue: str, member: str, reservation: str) -> bool:
        """Put a claimed member back in its place (its old score); False if `reservation` no
        longer holds it."""
        ...

    async def done(self, queue: str, member: str, reservation: str) -> Waiter | None:
        """Remove a claimed member for good (connected, or gone); None if `reservation` no
        longer holds it."""
        ...

    async def claimed_by(self, queue: str, member: str) -> str | None:
        """The reservation holding `member`, if it is claimed."""
        ...

    async def last_agent(self, queue: str) -> str | None:
        """The agent the queue's last call was offered to (where round-robin goes on)."""
        ...

    # -- agents --

    async def agents(self, ids: Sequence[str]) -> dict[str, AgentLive]:
        """Live states of `ids`; an agent never seen is absent from the answer."""
        ...

    async def set_status(
        self, agent: str, status: AgentStatus, now: float, wrap_until: float = 0.0
    ) -> AgentLive:
        """Set an agent's status (a reservation it holds is kept)."""
        ...

    async def forget_agent(self, agent: str) -> None: ...

    async def reserve(self, reservation: Reservation, now: float) -> bool:
        """Hold `reservation.agent` if it is free at `now` (status available or wrap-up
        ended, no reservation); False otherwise."""
        ...

    async def reservation(self, reservation: str) -> Reservation | None: ...

    async def reservations(self) -> list[Reservation]:
        """All reservations (for the sweep of those that lapsed)."""
        ...

    async def connected(self, reservation: str, now: float, until: float) -> Reservation | None:
        """The agent answered: the reservation lasts until `until`; None if it is gone."""
        ...

    async def finish(self, reservation: str, now: float, wrap_until: float) -> Reservation | None:
        """The call ended after it was answered: the agent goes to wrap-up until `wrap_until`
        (unless offline), answered + 1, missed = 0; the reservation is gone."""
        ...

    async def missed(self, reservation: str, now: float) -> Reservation | None:
        """The agent did not answer: free again, missed + 1; the reservation is gone."""
        ...

    async def release(self, reservation: str, now: float) -> Reservation | None:
        """The call went away before the agent answered (or could not be offered): the agent
        is free again, nothing counted; the reservation is gone."""
        ...

    # -- what a queue learned --

    async def figures(self, queue: str) -> Figures: ...

    async def learn(
        self,
        queue: str,
        *,
        handle_time: float | None = None,
        answered_wait: float | None = None,
        abandoned: bool | None = None,
    ) -> Figures:
        """Fold one observation into the queue's figures (weights in `flowpbx.queues.model`):
        a completed call's handle time, an answered caller's wait, or whether a caller who
        left the queue abandoned it (True) or was answered (False)."""
        ...

    # -- the store --

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...
