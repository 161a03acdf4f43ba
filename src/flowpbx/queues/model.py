"""The queue engine's values: who waits in a queue, agents and their status, reservations (an
agent held for one caller while their phone rings), and what a queue has learned. No I/O."""

from __future__ import annotations

from enum import StrEnum

import msgspec

MAX_PRIORITY = 9
PRIORITY_BAND = 10**13
"""Scores order by priority first, then by the millisecond a caller joined (< 10^13 ms)."""


class WaiterKind(StrEnum):
    CALLER = "caller"
    """A caller on the line, waiting in Twilio's queue."""
    CALLBACK = "callback"
    """A caller who hung up and waits, in the same place, to be called back."""


class Waiter(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One place in a queue."""

    member: str
    """The place's id: the CallSid for a caller, 'cb:' + CallSid for a callback."""
    call_sid: str
    """The call that joined the queue."""
    caller: str
    """The caller's number (Twilio's From)."""
    queued_at: float
    """Unix seconds when the call joined; kept when it is re-adopted or becomes a callback."""
    priority: int = 0
    kind: WaiterKind = WaiterKind.CALLER
    number: str = ""
    """A callback's number to call (E.164)."""
    queue_sid: str = ""
    """Twilio's QueueSid of the queue the caller waits in (callers only)."""
    seq: int = 0
    """The call's step, which its webhook URLs carry."""
    flow: str = ""
    node: str = ""
    """The enqueue node the caller waits at."""
    attempts: int = 0
    """Callback calls placed so far."""
    called: str = ""
    """The number the caller called: a callback comes from it."""
    base: str = ""
    """Where Twilio reached flowpbx for this call (scheme://host): the base of the URLs the
    scheduler gives Twilio when PUBLIC_BASE_URL is not set."""
    not_before: float = 0.0
    """Unix seconds before which the place is not offered: a callback just booked waits for
    its caller to hang up."""

    @property
    def score(self) -> float:
        """The place's order: higher priority first, then earlier first."""
        return score(self.priority, self.queued_at)

    def evolve(self, **changes: object) -> Waiter:
        return msgspec.structs.replace(self, **changes)


def score(priority: int, queued_at: float) -> float:
    clamped = min(max(priority, 0), MAX_PRIORITY)
    return float((MAX_PRIORITY - clamped) * PRIORITY_BAND + round(queued_at * 1000))


def callback_member(call_sid: str) -> str:
    return f"cb:{call_sid}"


class JoinOutcome(StrEnum):
    JOINED = "joined"
    """A new place, at the back of its priority."""
    WAITING = "waiting"
    """Already in the queue (a later wait request): the place is kept, its details updated."""
    CLAIMED = "claimed"
    """Already taken out of the order: being offered to an agent."""
    FULL = "full"
    """No room: max_size places are taken."""


class QueuePlace(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    outcome: JoinOutcome
    position: int
    """1 for the front; 0 when not waiting in the order (claimed, full, or absent)."""
    size: int
    """Places waiting in the order (callers and callbacks, not those being offered)."""


class AgentStatus(StrEnum):
    """An agent's status as they (or flowpbx) set it."""

    AVAILABLE = "available"
    BUSY = "busy"
    """On a call, or not taking calls for a while (but still counted as serving the queue)."""
    WRAP_UP = "wrap-up"
    """After a call, for the queue's wrap-up time; available again by itself."""
    OFFLINE = "offline"


class AgentLive(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An agent's live state in the queue store."""

    agent: str
    status: AgentStatus = AgentStatus.OFFLINE
    since: float = 0.0
    """When `status` was set."""
    wrap_until: float = 0.0
    """With status wrap-up: when it ends by itself."""
    reservation: str = ""
    """The reservation the agent holds ('' when none): a call ringing or in progress."""
    idle_since: float = 0.0
    """When the agent last became free (for longest-idle)."""
    missed: int = 0
    """Calls offered and not answered, in a row."""
    answered: int = 0
    """Calls answered since the agent's state was made."""

    def status_at(self, now: float) -> AgentStatus:
        """The status as seen at `now`: a wrap-up that has run out is available; an agent
        holding a reservation is busy (unless offline)."""
        status = self.status
        if status is AgentStatus.WRAP_UP and now >= self.wrap_until:
            status = AgentStatus.AVAILABLE
        if self.reservation and status is not AgentStatus.OFFLINE:
            return AgentStatus.BUSY
        return status

    def is_free(self, now: float) -> bool:
        """May be offered a call now."""
        return not self.reservation and self.status_at(now) is AgentStatus.AVAILABLE

    def free_since(self) -> float:
        """For longest-idle: when the agent became free (the end of the wrap-up if any)."""
        if self.status is AgentStatus.WRAP_UP:
            return self.wrap_until
        return self.idle_since or self.since

    def evolve(self, **changes: object) -> AgentLive:
        return msgspec.structs.replace(self, **changes)


class Reservation(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An agent held for one place while their phone rings, then while they talk."""

    id: str
    agent: str
    queue: str
    member: str
    target: str
    """What is dialled: 'client:<identity>' or an E.164 number."""
    kind: WaiterKind = WaiterKind.CALLER
    at: float
    """When it was made."""
    until: float
    """When it lapses if nothing answers for it (ring timeout plus a margin, or the longest
    call once connected)."""
    connected: bool = False
    """The agent answered."""
    connected_at: float = 0.0
    waiter: Waiter | None = None
    """The place as it was when the agent was reserved for it (who, since when, which number
    a callback goes to, where the caller waits)."""

    def evolve(self, **changes: object) -> Reservation:
        return msgspec.structs.replace(self, **changes)


class Figures(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What a queue has learned from its recent calls (exponentially weighted means)."""

    handle_time: float | None = None
    """Seconds of talk + wrap-up per answered call; None until one is learned."""
    abandon_rate: float = 0.0
    """Share of callers who leave before an agent answers (0-1)."""
    answered_wait: float | None = None
    """Seconds answered callers waited; None until one is learned."""
    samples: int = 0
    """Calls learned from."""


HANDLE_WEIGHT = 0.2
"""How much each new completed call moves the learned handle time."""
ABANDON_WEIGHT = 0.1
"""How much each caller leaving the queue moves the learned abandonment rate."""
WAIT_WEIGHT = 0.2


def _weighted(old: float | None, sample: float, weight: float) -> float:
    return sample if old is None else old + weight * (sample - old)


def learned(
    figures: Figures,
    *,
    handle_time: float | None = None,
    answered_wait: float | None = None,
    abandoned: bool | None = None,
) -> Figures:
    """`figures` with one observation folded in (the first sample of a mean is taken as it
    is). Both stores fold the same way: the memory store calls this; the Redis store's Lua
    does the same arithmetic."""
    changes: dict[str, object] = {}
    if handle_time is not None:
        changes["handle_time"] = _weighted(figures.handle_time, handle_time, HANDLE_WEIGHT)
        changes["samples"] = figures.samples + 1
    if answered_wait is not None:
        changes["answered_wait"] = _weighted(figures.answered_wait, answered_wait, WAIT_WEIGHT)
    if abandoned is not None:
        target = 1.0 if abandoned else 0.0
        changes["abandon_rate"] = figures.abandon_rate + ABANDON_WEIGHT * (
            target - figures.abandon_rate
        )
    return msgspec.structs.replace(figures, **changes)
