"""The queue engine: callers' places, the offer of a caller to a free agent, and what happens
to the agent's leg. The order lives in the queue store (Redis), never in Twilio's FIFO: Twilio
holds callers on hold music, and flowpbx takes the one whose turn it is out of Twilio's queue.

Each change is made by one atomic store operation and then told to call history as a
`QueueActivity` report. The operations are safe to repeat (Twilio delivers webhooks late,
twice and out of order) and safe with several processes: a reservation is held by exactly one
of them, and a place is claimed by exactly one reservation.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from flowpbx.dialing.rules import Destinations
from flowpbx.engine.call_events import QueueExit
from flowpbx.engine.events import QueueView
from flowpbx.engine.progress import QueueActivity, QueueEvent, Report
from flowpbx.engine.storage import StoreUnavailable
from flowpbx.language.flow import QueueSpec, QueueStrategy
from flowpbx.logs import about_call
from flowpbx.privacy import mask_number
from flowpbx.queues.directory import AgentDef, AgentDirectory
from flowpbx.queues.estimate import estimate_wait
from flowpbx.queues.model import (
    AgentLive,
    AgentStatus,
    JoinOutcome,
    Reservation,
    Waiter,
    WaiterKind,
    callback_member,
)
from flowpbx.queues.store import QueueStore
from flowpbx.twilio.rest import PlacedCall, TwilioFailure
from flowpbx.twilio.twiml import QueueUrls, place_query

log = logging.getLogger("flowpbx.queues")

LONGEST_CALL = 4 * 3600 + 60
"""Seconds a connected reservation lasts at most (Twilio's <Dial> timeLimit is 4 hours)."""
RING_MARGIN = 60
"""Seconds past the ring timeout before an unanswered reservation lapses by itself: Twilio
may be slow to take the caller out of its queue, to fetch the connect URL (which may wait for
a store that blinks) and to report the dial's end (it adds 5 s to a dial's timeout)."""
CALLBACK_DELAY = 15.0
"""Seconds a callback just booked waits: the caller hears the goodbye and hangs up first."""
MAX_SIZE = 5000
"""The most places a queue may hold (the flow schema's limit)."""
MAX_MISSES = 3
"""Calls an agent may miss in a row before flowpbx sets them offline."""
MAX_CALLBACK_ATTEMPTS = 3
"""Calls placed to a caller who asked for a callback before giving up."""
OFFERS_PER_ROUND = 50
"""Offers one scheduling round of one queue makes at most (the next round goes on)."""
ABSENT_TRIES = 3
"""Offers in a row (RETRY_SECONDS apart) Twilio says a caller is not in its queue for before
the place is let go: a caller on their way back after a miss is there again within a second."""
RETRY_SECONDS = 5.0
"""A place whose offer failed (Twilio could not be asked) waits this long for the next."""
GONE_CODES = frozenset({20404, 21220})
"""Twilio's answers for a call that no longer exists or is no longer in progress."""

_EXIT_EVENTS: Mapping[QueueExit, QueueEvent] = {
    QueueExit.HUNG_UP: QueueEvent.ABANDONED,
    QueueExit.TIMED_OUT: QueueEvent.TIMED_OUT,
    QueueExit.LEFT: QueueEvent.LEFT,
    QueueExit.FULL: QueueEvent.FULL,
    QueueExit.ERROR: QueueEvent.ABANDONED,
}


class Twilio(Protocol):
    """What the queue engine asks of Twilio's REST API (`flowpbx.twilio.rest.TwilioRest`)."""

    async def dequeue(self, queue_sid: str, call_sid: str, url: str) -> None: ...

    async def redirect(self, call_sid: str, url: str) -> None: ...

    async def create_call(
        self,
        *,
        to: str,
        from_: str,
        url: str,
        status_callback: str,
        timeout: int = 30,
        events: tuple[str, ...] = ...,
    ) -> PlacedCall: ...


class Offer(enum.Enum):
    MADE = "made"
    GONE = "gone"
    """The caller's call is over: their place goes."""
    FAILED = "failed"
    """Twilio could not be asked now: the place waits for the next round."""


@dataclass(frozen=True, slots=True)
class Staffing:
    """A queue's agents right now."""

    serving: int
    """Available, busy or in wrap-up (not offline)."""
    free: int
    """May be offered a call now."""
    by_status: Mapping[AgentStatus, int]

    @classmethod
    def of(cls, lives: Iterable[AgentLive | None], now: float) -> Staffing:
        """The staffing of agents with these live states at `now` (None: never seen, so
        offline)."""
        counts = dict.fromkeys(AgentStatus, 0)
        free = 0
        for live in lives:
            counts[live.status_at(now) if live else AgentStatus.OFFLINE] += 1
            free += live is not None and live.is_free(now)
        serving = sum(counts.values()) - counts[AgentStatus.OFFLINE]
        return cls(serving=serving, free=free, by_status=counts)


@dataclass
class QueueEngine:
    store: QueueStore
    directory: AgentDirectory
    queues: Callable[[], Mapping[str, QueueSpec]]
    """The queues declared by the loaded flows (they may change on reload)."""
    report: Callable[[Report], Awaitable[None]]
    """Keeps a report for call history (the call store's `report`)."""
    twilio: Twilio | None = None
    """None without Twilio credentials: callers wait, and the scheduler says why."""
    base_url: str = ""
    """PUBLIC_BASE_URL; without it, the address the caller's webhooks came to."""
    company_number: str = ""
    """Callbacks come from the number the caller called, or this one."""
    destinations: Destinations | None = None
    """The numbers a callback may call (the outbound rules of the REST API)."""
    clock: Callable[[], float] = time.time
    callback_delay: float = CALLBACK_DELAY
    """Seconds a callback waits after it is booked before it may be placed."""
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when something may let a caller be offered now (a join, a free agent)."""
    _absent: dict[str, int] = field(default_factory=dict)
    """Offers in a row that Twilio answered "not in the queue", by place (this process)."""
    _retry: dict[str, float] = field(default_factory=dict)
    """Places whose offer failed, and when they may be offered again (this process)."""
    _warned: bool = False

    def wake(self) -> None:
        self.woken.set()

    def spec(self, queue: str) -> QueueSpec | None:
        return self.queues().get(queue)

    # -- telling call history --

    async def _tell(
        self,
        waiter: Waiter,
        queue: str,
        event: QueueEvent,
        *,
        reservation: Reservation | None = None,
        talk: int | None = None,
        final: bool = False,
    ) -> None:
        activity = QueueActivity(
            queue=queue,
            event=event,
            member=waiter.member,
            queued_at=waiter.queued_at,
            caller=waiter.caller,
            agent=reservation.agent if reservation else "",
            target=reservation.target if reservation else "",
            reservation=reservation.id if reservation else "",
            talk=talk,
            final=final,
        )
        try:
            await self.report(Report.of(waiter.call_sid, activity, self.clock()))
        except StoreUnavailable as exc:
            log.warning(
                "call %s: queue %s event %s not kept for history: %s",
                waiter.call_sid,
                queue,
                event,
                exc,
            )

    # -- the caller's side --

    async def _live(self, agents: list[AgentDef], now: float) -> dict[str, AgentLive]:
        """The agents' live states; an agent the queue store does not know (it lost its data,
        or was flushed) gets back the status they last set, as saved in the database."""
        live = await self.store.agents([a.id for a in agents])
        for agent in agents:
            if agent.id not in live and agent.status is not AgentStatus.OFFLINE:
                status = (
                    AgentStatus.AVAILABLE if agent.status is AgentStatus.WRAP_UP else agent.status
                )
                live[agent.id] = await self.store.set_status(agent.id, status, now)
                log.info("agent %s: status %s restored from the database", agent.id, status)
        return live

    async def staffing(self, queue: str, now: float) -> Staffing:
        agents = await self.directory.serving(queue)
        live = await self._live(agents, now)
        return Staffing.of((live.get(agent.id) for agent in agents), now)

    async def estimate(self, spec: QueueSpec, positions: range) -> list[int | None]:
        """Estimated waits (seconds; None without agents) for `positions` of a queue."""
        now = self.clock()
        staff = await self.staffing(spec.name, now)
        figures = await self.store.figures(spec.name)
        # Without Twilio no agent can be offered a call: none is free, whatever they say.
        free = staff.free if self.twilio is not None else 0
        return [
            estimate_wait(
                p,
                serving=staff.serving,
                free=free,
                figures=figures,
                default_handle=spec.handle_time,
            )
            for p in positions
        ]

    async def waiting(self, spec: QueueSpec, waiter: Waiter) -> QueueView:
        """A caller asks for hold music: their place (joining the queue the first time, or
        again after flowpbx lost it: re-adopted at their original time), and their wait."""
        place = await self.store.join(spec.name, waiter, spec.max_size)
        if place.outcome is JoinOutcome.FULL:
            log.info("call %s: queue %s is full", waiter.call_sid, spec.name)
            await self._tell(waiter, spec.name, QueueEvent.FULL)
            return QueueView(position=0, wait=None, full=True)
        if place.outcome is JoinOutcome.JOINED:
            log.info(
                "call %s: joined queue %s at position %d",
                waiter.call_sid,
                spec.name,
                place.position,
            )
            await self._tell(waiter, spec.name, QueueEvent.JOINED)
            self.wake()
        if place.outcome is JoinOutcome.CLAIMED:
            held = await self.store.claimed_by(spec.name, waiter.member)
            if held is None or await self.store.reservation(held) is not None:
                return QueueView(position=0, wait=None)
            # Claimed by a reservation that is gone (a store that failed half way): the caller
            # is back in Twilio's queue, so back in the order, at their place.
            log.warning("call %s: claimed by lost reservation %s", waiter.call_sid, held)
            await self.store.unclaim(spec.name, waiter.member, held)
            place = await self.store.join(spec.name, waiter, spec.max_size)
            if place.outcome is not JoinOutcome.WAITING:
                return QueueView(position=0, wait=None)
        (wait,) = await self.estimate(spec, range(place.position, place.position + 1))
        return QueueView(position=place.position, wait=wait)

    async def left(self, call_sid: str, why: QueueExit) -> None:
        """The flow took the caller out of the queue (the <Enqueue> action): they no longer
        wait. A caller being offered to an agent is left to their reservation."""
        event = _EXIT_EVENTS.get(why)
        queue = await self.store.where(call_sid)
        if event is None or queue is None:
            return
        waiter = await self.store.leave(queue, call_sid)
        if waiter is None:
            if why is QueueExit.HUNG_UP:
                await self.call_ended(call_sid)
            return
        await self.store.learn(queue, abandoned=True)
        await self._tell(waiter, queue, event)

    async def callback_requested(
        self, call_sid: str, queue: str, number: str, fallback: Waiter | None = None
    ) -> bool:
        """The caller confirmed a number to be called back at: their place becomes a callback
        (same place). Should an agent be offered them at that very moment, the callback is
        kept beside the offer, and dropped if the agent answers them. Should the caller not
        be in the queue at all (their joining failed: a store that blinked), `fallback` (the
        callback as the call knows it) joins. False if the callback could not be kept."""
        # Not before the caller has heard the goodbye and hung up: their phone would be busy.
        not_before = self.clock() + self.callback_delay
        waiter = await self.store.to_callback(queue, call_sid, number, not_before)
        if waiter is None:
            held = await self.store.claimed_by(queue, call_sid)
            reservation = await self.store.reservation(held) if held else None
            if reservation is not None and reservation.waiter is not None:
                waiter = reservation.waiter.evolve(
                    member=callback_member(call_sid),
                    kind=WaiterKind.CALLBACK,
                    number=number,
                    not_before=not_before,
                )
                await self.store.requeue(queue, waiter)
            elif fallback is not None:
                spec = self.spec(queue)
                size = spec.max_size if spec else MAX_SIZE
                waiter = fallback.evolve(not_before=not_before)
                place = await self.store.join(queue, waiter, size)
                if place.outcome is JoinOutcome.FULL:
                    log.error("call %s: no room in %s for the callback", call_sid, queue)
                    return False
            else:
                log.warning("call %s: callback asked but no longer in %s", call_sid, queue)
                return False
        log.info(
            "call %s: callback to %s keeps its place in %s", call_sid, mask_number(number), queue
        )
        await self._tell(waiter, queue, QueueEvent.CALLBACK_REQUESTED)
        self.wake()
        return True

    async def call_ended(self, call_sid: str) -> None:
        """The caller's call ended (its final status): a place still waiting is abandoned; a
        place being offered lets its agent go; a connected call goes to wrap-up."""
        queue = await self.store.where(call_sid)
        if queue is None:
            return
        waiter = await self.store.leave(queue, call_sid)
        if waiter is not None:
            await self.store.learn(queue, abandoned=True)
            await self._tell(waiter, queue, QueueEvent.ABANDONED)
            return
        held = await self.store.claimed_by(queue, call_sid)
        if held is None:
            return
        reservation = await self.store.reservation(held)
        if reservation is None:
            # Its reservation lapsed (or was lost): nothing holds the place any more.
            await self.store.done(queue, call_sid, held)
            return
        if reservation.connected:
            talk = round(self.clock() - reservation.connected_at)
            await self.agent_call_ended(held, answered=True, talk=talk)
        else:
            gone = await self.store.done(queue, call_sid, held)
            released = await self.store.release(held, self.clock())
            if released is not None:
                await self.store.learn(queue, abandoned=True)
                if gone is not None:
                    await self._tell(gone, queue, QueueEvent.ABANDONED, reservation=released)
                self.wake()

    # -- the agent's leg --

    async def offered(self, reservation_id: str) -> Reservation | None:
        """The reservation a connect request is for, if it still holds."""
        reservation = await self.store.reservation(reservation_id)
        if reservation is None or reservation.until < self.clock():
            return None
        return reservation

    async def agent_answered(self, reservation_id: str) -> Reservation | None:
        """The agent picked up: busy until the call ends."""
        now = self.clock()
        reservation = await self.store.connected(reservation_id, now, now + LONGEST_CALL)
        if reservation is None or reservation.waiter is None:
            return reservation
        waiter = reservation.waiter
        if reservation.kind is WaiterKind.CALLER:
            # A callback asked for while this offer was on its way is not needed any more,
            # even if another agent is being offered it.
            spare = callback_member(waiter.call_sid)
            if await self.store.leave(reservation.queue, spare) is None:
                other = await self.store.claimed_by(reservation.queue, spare)
                if other is not None:
                    await self.store.done(reservation.queue, spare, other)
                    await self.store.release(other, now)
            await self.store.learn(
                reservation.queue, answered_wait=now - waiter.queued_at, abandoned=False
            )
            await self._tell(
                waiter, reservation.queue, QueueEvent.ANSWERED, reservation=reservation
            )
        else:
            await self._tell(
                waiter, reservation.queue, QueueEvent.CALLBACK_PLACED, reservation=reservation
            )
        return reservation

    async def agent_call_ended(
        self, reservation_id: str, *, answered: bool, talk: int = 0, blame: bool = True
    ) -> Reservation | None:
        """The dial to the agent ended: after a conversation the agent goes to wrap-up and
        the place is done; unanswered, the agent missed it and the caller goes back to the
        front of the queue (`blame`: counted as a miss, unless the dial was canceled). None if
        this was already done."""
        now = self.clock()
        reservation = await self.store.reservation(reservation_id)
        if reservation is None:
            return None
        spec = self.spec(reservation.queue)
        # The place first, then the agent: should the store fail in between, doing it all
        # again (the webhook is retried) finds the reservation still there and finishes.
        if answered:
            if not reservation.connected:
                await self.agent_answered(reservation_id)
            wrap_up = spec.wrap_up if spec else 0
            waiter = await self.store.done(reservation.queue, reservation.member, reservation.id)
            finished = await self.store.finish(reservation_id, now, now + wrap_up)
            if finished is None:
                return None
            await self.store.learn(finished.queue, handle_time=talk + wrap_up)
            if waiter is not None:
                await self._tell(
                    waiter, finished.queue, QueueEvent.COMPLETED, reservation=finished, talk=talk
                )
            self.wake()
            return finished
        back = await self.store.unclaim(reservation.queue, reservation.member, reservation.id)
        if blame:
            missed = await self.store.missed(reservation_id, now)
        else:
            missed = await self.store.release(reservation_id, now)
        if missed is None:
            return None
        log.info(
            "queue %s: agent %s missed %s%s",
            missed.queue,
            missed.agent,
            missed.member,
            "; back at the front" if back else "",
        )
        if missed.waiter is not None:
            await self._tell(missed.waiter, missed.queue, QueueEvent.MISSED, reservation=missed)
        if blame:
            await self._rest(missed.agent, spec.ring_timeout if spec else 20, now)
        self.wake()
        return missed

    async def _rest(self, agent: str, seconds: float, now: float) -> None:
        """An agent who did not answer is not offered the next call at once (the caller goes
        to another agent, or waits `seconds`); after MAX_MISSES in a row (counted again from
        when they come back) they are set offline: ringing an absent agent keeps callers
        waiting for nothing."""
        live = (await self.store.agents([agent])).get(agent)
        if live is None or live.status_at(now) is not AgentStatus.AVAILABLE:
            return
        if live.missed % MAX_MISSES == 0:
            log.warning(
                "agent %s missed %d calls in a row: set offline until they are back",
                agent,
                live.missed,
            )
            await self.store.set_status(agent, AgentStatus.OFFLINE, now)
            return
        await self.store.set_status(agent, AgentStatus.WRAP_UP, now, now + seconds)

    async def callback_ended(
        self, reservation_id: str, *, answered: bool, talk: int = 0
    ) -> Reservation | None:
        """The call to the person who asked for a callback ended. Unanswered, the agent is
        free again (no miss: they answered) and the callback waits again at the back, up to
        MAX_CALLBACK_ATTEMPTS calls."""
        if answered:
            return await self.agent_call_ended(reservation_id, answered=True, talk=talk)
        now = self.clock()
        held = await self.store.reservation(reservation_id)
        if held is None or held.waiter is None:
            return None
        waiter = held.waiter.evolve(attempts=held.waiter.attempts + 1)
        final = waiter.attempts >= MAX_CALLBACK_ATTEMPTS
        # The place first, then the agent (see agent_call_ended).
        if final:
            await self.store.done(held.queue, held.member, held.id)
        else:
            await self.store.requeue(held.queue, waiter.evolve(queued_at=now))
        released = await self.store.release(reservation_id, now)
        if released is None:
            return None
        log.info(
            "queue %s: callback %s not answered (attempt %d)%s",
            released.queue,
            released.member,
            waiter.attempts,
            "; given up" if final else "; it waits again",
        )
        await self._tell(
            waiter, released.queue, QueueEvent.CALLBACK_FAILED, reservation=released, final=final
        )
        self.wake()
        return released

    # -- the scheduler's work --

    async def sweep(self) -> int:
        """Let reservations that lapsed go (Twilio never came back for them). An answered one
        ends as a completed call. An unanswered one frees its agent, blaming no one: whether
        their phone rang is not known. A callback goes back in its place; a caller's place
        stays claimed, since the caller may be talking to the agent (an answer that was not
        heard of): a caller back in Twilio's queue gets their place back at their next wait
        request, and a call that ends clears it. How many went."""
        now = self.clock()
        lapsed = [r for r in await self.store.reservations() if r.until < now]
        for reservation in lapsed:
            waiter = reservation.waiter
            with about_call(waiter.call_sid if waiter is not None else None):
                log.warning(
                    "queue %s: reservation %s of agent %s lapsed",
                    reservation.queue,
                    reservation.id,
                    reservation.agent,
                )
                if reservation.connected:
                    talk = round(now - reservation.connected_at)
                    await self.agent_call_ended(reservation.id, answered=True, talk=talk)
                elif reservation.kind is WaiterKind.CALLBACK:
                    await self.agent_call_ended(reservation.id, answered=False, blame=False)
                elif await self.store.release(reservation.id, now) is not None:
                    self.wake()
        return len(lapsed)

    async def match(self, spec: QueueSpec) -> int:
        """Offer the queue's first places to its free agents, while there are both; the
        caller holds the queue's lock. How many offers were made. A place whose offer failed
        (Twilio could not be asked) waits RETRY_SECONDS before it is offered again, and the
        places behind it go on."""
        if self.twilio is None:
            if not self._warned:
                self._warned = True
                log.warning(
                    "queues: Twilio is not configured (no TWILIO_ACCOUNT_SID, or the "
                    ".env.example placeholder): callers wait and hear their place, but no "
                    "call is offered to an agent"
                )
            return 0
        made = 0
        now = self.clock()
        self._retry = {m: at for m, at in self._retry.items() if at > now}
        skipped = set(self._retry)
        for _ in range(OFFERS_PER_ROUND):
            now = self.clock()
            front, _ = await self.store.waiting(spec.name, 0, len(skipped) + 1)
            waiter = next((w for w in front if w.member not in skipped), None)
            if waiter is None:
                break
            if waiter.not_before > now or (
                waiter.kind is WaiterKind.CALLBACK
                and await self.store.claimed_by(spec.name, waiter.call_sid)
            ):
                # Not yet (a callback whose caller is hanging up), or its caller is being
                # offered to an agent right now: the places behind it go on.
                skipped.add(waiter.member)
                continue
            reservation = await self._reserve(spec, waiter, now)
            if reservation is None:
                break
            claimed = await self.store.claim(
                spec.name, waiter.member, reservation.id, reservation.agent
            )
            if claimed is None:
                await self.store.release(reservation.id, now)
                continue
            # The lines logged about this offer carry the caller's CallSid.
            with about_call(claimed.call_sid):
                outcome = await self._offer(spec, claimed, reservation)
                if outcome is Offer.MADE:
                    await self._tell(
                        claimed, spec.name, QueueEvent.OFFERED, reservation=reservation
                    )
                    made += 1
                    continue
                # The place first, then the agent (see agent_call_ended).
                if outcome is Offer.GONE:
                    await self.store.done(spec.name, claimed.member, reservation.id)
                    await self.store.release(reservation.id, self.clock())
                    await self.store.learn(spec.name, abandoned=True)
                    event = (
                        QueueEvent.ABANDONED
                        if claimed.kind is WaiterKind.CALLER
                        else QueueEvent.CALLBACK_FAILED
                    )
                    await self._tell(claimed, spec.name, event, reservation=reservation, final=True)
                else:
                    await self.store.unclaim(spec.name, claimed.member, reservation.id)
                    await self.store.release(reservation.id, self.clock())
                    self._retry[claimed.member] = self.clock() + RETRY_SECONDS
                    skipped.add(claimed.member)
        return made

    async def _reserve(self, spec: QueueSpec, waiter: Waiter, now: float) -> Reservation | None:
        """Hold the agent whose turn it is among the free ones; None if none is free."""
        for agent in await self._candidates(spec, now):
            reservation = Reservation(
                id=uuid.uuid4().hex,
                agent=agent.id,
                queue=spec.name,
                member=waiter.member,
                target=agent.target,
                kind=waiter.kind,
                at=now,
                until=now + spec.ring_timeout + RING_MARGIN,
                waiter=waiter,
            )
            if await self.store.reserve(reservation, now):
                return reservation
        return None

    async def _candidates(self, spec: QueueSpec, now: float) -> list[AgentDef]:
        """Free agents of the queue in the order they are to be offered the next call: the
        best skill level first, then by the queue's strategy."""
        agents = await self.directory.serving(spec.name)
        live = await self._live(agents, now)
        free = [a for a in agents if a.id in live and live[a.id].is_free(now)]
        if not free:
            return []
        best = max(a.skills.get(spec.name, 0) for a in free)
        free = sorted((a for a in free if a.skills.get(spec.name, 0) == best), key=lambda a: a.id)
        if spec.strategy is QueueStrategy.LONGEST_IDLE:
            return sorted(free, key=lambda a: (_free_since(live[a.id]), a.id))
        last = await self.store.last_agent(spec.name)
        if last is None:
            return free
        after = [a for a in free if a.id > last]
        return after + [a for a in free if a.id <= last]

    async def _offer(self, spec: QueueSpec, waiter: Waiter, reservation: Reservation) -> Offer:
        base = self.base_url or waiter.base
        if self.twilio is None or not base:
            log.error(
                "queue %s: cannot offer %s: no PUBLIC_BASE_URL and no address its webhooks came to",
                spec.name,
                waiter.member,
            )
            return Offer.FAILED
        urls = QueueUrls(base)
        if waiter.kind is WaiterKind.CALLBACK:
            return await self._place_callback(spec, waiter, reservation, urls)
        place = place_query(spec.name, waiter.seq, waiter.flow, waiter.node)
        url = urls.connect(reservation.id, place)
        try:
            if waiter.queue_sid:
                try:
                    await self.twilio.dequeue(waiter.queue_sid, waiter.call_sid, url)
                except TwilioFailure as exc:
                    if exc.code != 20404:
                        raise
                    # Not in Twilio's queue: on its way back (after a miss), or gone from it
                    # (talking, in voicemail, hung up): never redirected from there. A place
                    # Twilio keeps not knowing is let go.
                    absent = self._absent.get(waiter.member, 0) + 1
                    self._absent[waiter.member] = absent
                    if absent >= ABSENT_TRIES:
                        self._absent.pop(waiter.member, None)
                        log.warning(
                            "queue %s: %s is not in Twilio's queue", spec.name, waiter.member
                        )
                        return Offer.GONE
                    return Offer.FAILED
                self._absent.pop(waiter.member, None)
                return Offer.MADE
            await self.twilio.redirect(waiter.call_sid, url)
        except TwilioFailure as exc:
            if exc.code in GONE_CODES:
                log.info("queue %s: %s is gone (%s)", spec.name, waiter.call_sid, exc.message)
                return Offer.GONE
            log.warning("queue %s: could not offer %s: %s", spec.name, waiter.call_sid, exc)
            return Offer.FAILED
        return Offer.MADE

    async def _place_callback(
        self, spec: QueueSpec, waiter: Waiter, reservation: Reservation, urls: QueueUrls
    ) -> Offer:
        """A callback's turn: ring the agent first; when they answer, the caller is dialled."""
        assert self.twilio is not None
        if self.destinations is not None:
            refused = self.destinations.refusal(waiter.number)
            if refused:
                log.warning(
                    "queue %s: callback to %s refused: %s",
                    spec.name,
                    mask_number(waiter.number),
                    refused,
                )
                return Offer.GONE
        source = waiter.called or self.company_number
        try:
            await self.twilio.create_call(
                to=reservation.target,
                from_=source,
                url=urls.callback(reservation.id),
                status_callback=urls.callback_status(reservation.id),
                timeout=spec.ring_timeout,
                events=("answered", "completed"),
            )
        except TwilioFailure as exc:
            log.warning("queue %s: could not place callback %s: %s", spec.name, waiter.member, exc)
            return Offer.FAILED
        return Offer.MADE

    # -- agents --

    async def set_status(self, agent: str, status: AgentStatus, wrap_up: int = 0) -> AgentLive:
        now = self.clock()
        live = await self.store.set_status(agent, status, now, now + wrap_up)
        if live.is_free(now):
            self.wake()
        return live


def _free_since(live: AgentLive) -> float:
    return live.free_since()
