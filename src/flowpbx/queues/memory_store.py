"""Queues and agents in this process: the `QueueStore` for one process (no Redis configured),
and the reference the Redis store is tested against (both pass the same contract suite).

No method awaits anything, so each one runs to its end before another starts: every change is
atomic within the event loop, as each Lua script is in Redis. A queue's order is a list of
(score, member) kept sorted with `bisect`, in the order Redis keeps a sorted set (score, then
member): a position is a binary search, O(log n); a join or a leave also shifts the list, a
memmove that stays far below a millisecond at the sizes a queue reaches.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from flowpbx.queues.model import (
    MAX_PRIORITY,
    PRIORITY_BAND,
    AgentLive,
    AgentStatus,
    Figures,
    JoinOutcome,
    QueuePlace,
    Reservation,
    Waiter,
    WaiterKind,
    callback_member,
    learned,
)

WHERE_TTL = 86_400
"""Seconds the queue a call joined is remembered (`where`) unless it leaves before."""


@dataclass(slots=True)
class _Queue:
    """One queue: the same parts as the Redis store's keys of one hash tag."""

    order: list[tuple[float, str]] = field(default_factory=list)
    """(score, member) of the places waiting, front first."""
    scores: dict[str, float] = field(default_factory=dict)
    """The score of each member in `order`."""
    entries: dict[str, Waiter] = field(default_factory=dict)
    """Every place, waiting or claimed."""
    claimed: dict[str, str] = field(default_factory=dict)
    """Member -> the reservation it is offered under."""
    last_agent: str | None = None
    figures: Figures = field(default_factory=Figures)
    lock: tuple[str, float] | None = None
    """(token, when it expires on the store's clock)."""

    def add(self, member: str, score: float) -> None:
        bisect.insort(self.order, (score, member))
        self.scores[member] = score

    def remove(self, member: str) -> float:
        """Take a waiting member out of the order; its score."""
        score = self.scores.pop(member)
        del self.order[bisect.bisect_left(self.order, (score, member))]
        return score

    def position(self, member: str) -> int:
        """1 for the front; 0 when `member` is not waiting."""
        score = self.scores.get(member)
        if score is None:
            return 0
        return bisect.bisect_left(self.order, (score, member)) + 1


class MemoryQueueStore:
    """Queues, agents and reservations in dicts of immutable values (`flowpbx.queues.model`).

    `clock` (monotonic seconds) times the scheduler's locks and how long `where` remembers a
    call; tests pass their own.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._queues: dict[str, _Queue] = {}
        self._agents: dict[str, AgentLive] = {}
        self._reservations: dict[str, Reservation] = {}
        self._where: dict[str, tuple[str, float]] = {}

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue()
        return queue

    # -- places in a queue --

    async def join(self, queue: str, waiter: Waiter, max_size: int) -> QueuePlace:
        q = self._queue(queue)
        member = waiter.member
        old = q.entries.get(member)
        if old is not None and member in q.scores:
            q.entries[member] = old.evolve(
                queue_sid=waiter.queue_sid, seq=waiter.seq, flow=waiter.flow, node=waiter.node
            )
            place = QueuePlace(
                outcome=JoinOutcome.WAITING, position=q.position(member), size=len(q.order)
            )
        elif old is not None and member in q.claimed:
            q.entries[member] = old.evolve(queue_sid=waiter.queue_sid, seq=waiter.seq)
            place = QueuePlace(outcome=JoinOutcome.CLAIMED, position=0, size=len(q.order))
        elif len(q.order) >= max_size:
            return QueuePlace(outcome=JoinOutcome.FULL, position=0, size=len(q.order))
        else:
            q.entries[member] = waiter
            q.add(member, waiter.score)
            place = QueuePlace(
                outcome=JoinOutcome.JOINED, position=q.position(member), size=len(q.order)
            )
        self._remember(waiter.call_sid, queue)
        return place

    async def place(self, queue: str, member: str) -> QueuePlace:
        q = self._queues.get(queue)
        if q is None:
            return QueuePlace(outcome=JoinOutcome.FULL, position=0, size=0)
        position = q.position(member)
        if position:
            outcome = JoinOutcome.WAITING
        elif member in q.claimed:
            outcome = JoinOutcome.CLAIMED
        else:
            outcome = JoinOutcome.FULL
        return QueuePlace(outcome=outcome, position=position, size=len(q.order))

    async def leave(self, queue: str, member: str) -> Waiter | None:
        q = self._queues.get(queue)
        if q is None or member not in q.scores:
            return None
        q.remove(member)
        waiter = q.entries.pop(member)
        self._forget_where(waiter.call_sid, queue)
        return waiter

    async def waiting(self, queue: str, offset: int, limit: int) -> tuple[list[Waiter], int]:
        q = self._queues.get(queue)
        if q is None:
            return [], 0
        start = max(offset, 0)
        page = q.order[start : start + max(limit, 0)]
        return [q.entries[member] for _, member in page], len(q.order)

    async def oldest(self, queue: str) -> tuple[int, float | None]:
        q = self._queues.get(queue)
        if q is None:
            return 0, None
        firsts = []
        for band in range(MAX_PRIORITY + 1):
            at = bisect.bisect_left(q.order, (float(band * PRIORITY_BAND), ""))
            if at < len(q.order) and q.order[at][0] < (band + 1) * PRIORITY_BAND:
                # From the score, as Redis does: to the millisecond.
                firsts.append((q.order[at][0] - band * PRIORITY_BAND) / 1000)
        return len(q.order), min(firsts, default=None)

    async def to_callback(
        self, queue: str, member: str, number: str, not_before: float = 0.0
    ) -> Waiter | None:
        q = self._queues.get(queue)
        if q is None or member not in q.scores:
            return None
        old = q.entries[member]
        new_member = callback_member(old.call_sid)
        if new_member != member and new_member in q.claimed:
            return None
        score = q.remove(member)
        del q.entries[member]
        if new_member in q.scores:  # an earlier callback of the same call: replaced
            q.remove(new_member)
        callback = old.evolve(
            member=new_member, kind=WaiterKind.CALLBACK, number=number, not_before=not_before
        )
        q.entries[new_member] = callback
        q.add(new_member, score)
        return callback

    async def requeue(self, queue: str, waiter: Waiter) -> None:
        q = self._queue(queue)
        member = waiter.member
        if member in q.scores:
            q.remove(member)
        q.claimed.pop(member, None)
        q.entries[member] = waiter
        q.add(member, waiter.score)
        self._remember(waiter.call_sid, queue)

    async def where(self, call_sid: str) -> str | None:
        found = self._where.get(call_sid)
        if found is None:
            return None
        if found[1] <= self.clock():
            del self._where[call_sid]
            return None
        return found[0]

    def _remember(self, call_sid: str, queue: str) -> None:
        self._where[call_sid] = (queue, self.clock() + WHERE_TTL)
        if len(self._where) % 1024 == 0:  # now and then, drop what expired
            now = self.clock()
            for sid in [sid for sid, (_, until) in self._where.items() if until <= now]:
                del self._where[sid]

    def _forget_where(self, call_sid: str, queue: str) -> None:
        """Forget where a call waits, unless it has joined another queue since."""
        found = self._where.get(call_sid)
        if found is not None and found[0] == queue:
            del self._where[call_sid]

    # -- the scheduler --

    async def lock(self, queue: str, token: str, ttl: float) -> bool:
        q = self._queue(queue)
        now = self.clock()
        if q.lock is not None and q.lock[1] > now and q.lock[0] != token:
            return False
        q.lock = (token, now + ttl)
        return True

    async def unlock(self, queue: str, token: str) -> None:
        q = self._queues.get(queue)
        if q is not None and q.lock is not None and q.lock[0] == token:
            q.lock = None

    async def claim(self, queue: str, member: str, reservation: str, agent: str) -> Waiter | None:
        q = self._queues.get(queue)
        if q is None or member not in q.scores:
            return None
        q.remove(member)
        q.claimed[member] = reservation
        q.last_agent = agent
        return q.entries[member]

    async def unclaim(self, queue: str, member: str, reservation: str) -> bool:
        q = self._queues.get(queue)
        if q is None or q.claimed.get(member) != reservation:
            return False
        del q.claimed[member]
        q.add(member, q.entries[member].score)
        return True

    async def done(self, queue: str, member: str, reservation: str) -> Waiter | None:
        q = self._queues.get(queue)
        if q is None or q.claimed.get(member) != reservation:
            return None
        del q.claimed[member]
        waiter = q.entries.pop(member)
        self._forget_where(waiter.call_sid, queue)
        return waiter

    async def claimed_by(self, queue: str, member: str) -> str | None:
        q = self._queues.get(queue)
        return None if q is None else q.claimed.get(member)

    async def last_agent(self, queue: str) -> str | None:
        q = self._queues.get(queue)
        return None if q is None else q.last_agent

    # -- agents --

    async def agents(self, ids: Sequence[str]) -> dict[str, AgentLive]:
        return {agent: self._agents[agent] for agent in ids if agent in self._agents}

    async def set_status(
        self, agent: str, status: AgentStatus, now: float, wrap_until: float = 0.0
    ) -> AgentLive:
        live = self._agents.get(agent) or AgentLive(agent=agent)
        live = with_status(live, status, now, wrap_until)
        self._agents[agent] = live
        return live

    async def forget_agent(self, agent: str) -> None:
        self._agents.pop(agent, None)

    async def reserve(self, reservation: Reservation, now: float) -> bool:
        live = self._agents.get(reservation.agent)
        if live is None or not live.is_free(now) or reservation.id in self._reservations:
            return False
        self._agents[live.agent] = live.evolve(reservation=reservation.id)
        self._reservations[reservation.id] = reservation
        return True

    async def reservation(self, reservation: str) -> Reservation | None:
        return self._reservations.get(reservation)

    async def reservations(self) -> list[Reservation]:
        return list(self._reservations.values())

    async def connected(self, reservation: str, now: float, until: float) -> Reservation | None:
        held = self._reservations.get(reservation)
        if held is None:
            return None
        held = self._reservations[reservation] = held.evolve(
            connected=True, connected_at=now, until=until
        )
        return held

    async def finish(self, reservation: str, now: float, wrap_until: float) -> Reservation | None:
        return self._end(reservation, lambda live: finished(live, now, wrap_until))

    async def missed(self, reservation: str, now: float) -> Reservation | None:
        return self._end(reservation, lambda live: live.evolve(missed=live.missed + 1))

    async def release(self, reservation: str, now: float) -> Reservation | None:
        return self._end(reservation, lambda live: live)

    def _end(
        self, reservation: str, change: Callable[[AgentLive], AgentLive]
    ) -> Reservation | None:
        """Delete a reservation; its agent, if it still holds it, is freed and `change`d."""
        held = self._reservations.pop(reservation, None)
        if held is None:
            return None
        live = self._agents.get(held.agent)
        if live is not None and live.reservation == reservation:
            self._agents[held.agent] = change(live.evolve(reservation=""))
        return held

    # -- what a queue learned --

    async def figures(self, queue: str) -> Figures:
        q = self._queues.get(queue)
        return Figures() if q is None else q.figures

    async def learn(
        self,
        queue: str,
        *,
        handle_time: float | None = None,
        answered_wait: float | None = None,
        abandoned: bool | None = None,
    ) -> Figures:
        q = self._queue(queue)
        q.figures = learned(
            q.figures, handle_time=handle_time, answered_wait=answered_wait, abandoned=abandoned
        )
        return q.figures

    # -- the store --

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._queues.clear()
        self._agents.clear()
        self._reservations.clear()
        self._where.clear()


def with_status(live: AgentLive, status: AgentStatus, now: float, wrap_until: float) -> AgentLive:
    """`live` with `status` set at `now`: becoming available restarts its idle time (for
    longest-idle); a wrap-up ends by itself at `wrap_until`. The reservation and the counts
    are kept. (The Redis store's Lua does the same.)"""
    changes: dict[str, object] = {"status": status, "since": now}
    if status is AgentStatus.AVAILABLE:
        changes["idle_since"] = now
    elif status is AgentStatus.WRAP_UP:
        changes["wrap_until"] = wrap_until
    return live.evolve(**changes)


def finished(live: AgentLive, now: float, wrap_until: float) -> AgentLive:
    """`live` (its reservation already cleared) after a call it answered has ended: wrap-up
    until `wrap_until` (available at once if that is not after `now`) unless the agent set
    themselves offline or busy meanwhile, free for longest-idle from the end of the wrap-up;
    one more answered, none missed in a row. (The Redis store's Lua does the same.)"""
    changes: dict[str, object] = {"answered": live.answered + 1, "missed": 0}
    if live.status not in (AgentStatus.OFFLINE, AgentStatus.BUSY):
        changes["since"] = now
        changes["idle_since"] = max(now, wrap_until)
        if wrap_until > now:
            changes["status"] = AgentStatus.WRAP_UP
            changes["wrap_until"] = wrap_until
        else:
            changes["status"] = AgentStatus.AVAILABLE
    return live.evolve(**changes)
