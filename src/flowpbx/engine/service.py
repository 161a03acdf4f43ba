"""The engine's shell: load a call's state, run the engine, save state and call events
together, and hand the actions to a renderer. No HTTP here: webhooks, the simulator and
(later) the queue engine and the REST API all drive calls through this one service.

Every call gets an answer: a duplicate webhook gets the reply already given, a store that
blinks is retried within a bounded time, a lost or unreadable state is recovered by the engine.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any, Protocol, TypeVar

from flowpbx.dialing.rules import Destinations
from flowpbx.engine.actions import Action
from flowpbx.engine.call_events import StepRecord
from flowpbx.engine.core import HOLD_ON, CallEngine, goodbye
from flowpbx.engine.deadlines import Deadlines
from flowpbx.engine.events import WAIT_EVENTS, Direction, Event, NewCall, QueueWaitTick
from flowpbx.engine.hours import HoursStatus
from flowpbx.engine.interpreter import Step, initial_state
from flowpbx.engine.state import CallState, Waiting
from flowpbx.engine.storage import CallStore, CorruptState, StoredCall, StoreUnavailable
from flowpbx.engine.walk import Context
from flowpbx.language.catalog import Catalog, LoadedFlow
from flowpbx.language.flow import EnqueueNode
from flowpbx.language.library import FlowLibrary

log = logging.getLogger("flowpbx.calls")

SAVE_ATTEMPTS = 5
"""Compare-and-set rounds lost to other webhooks of the same call before giving up."""
DEFAULT_RETRY_SECONDS = 5.0
"""How long a store that does not answer is retried before the caller hears the apology:
well inside the 15 s Twilio waits for an answer."""
MIN_ATTEMPT_SECONDS = 0.25
"""The least time one attempt is given, even with the retry time (nearly) spent."""
T = TypeVar("T")


class Renderer(Protocol):
    """Turns a step's actions into the document the caller's leg runs (TwiML for Twilio)."""

    def __call__(self, actions: tuple[Action, ...], seq: int, flow: str = "") -> str:
        """`flow`, when given, goes into the webhook URLs, for the call to be recovered in it."""
        ...


class Fallback(StrEnum):
    """Why a call was answered something else than its flow's next step: the flow's apology
    and its fallback, a plain goodbye, or (a queued caller) holding on."""

    STEP_FAILED = "step_failed"
    """A step of the flow failed (a number with no value, a bug in the engine)."""
    STATE_LOST = "state_lost"
    """The call's state was gone (expired, or Redis lost its data)."""
    STATE_CORRUPT = "state_corrupt"
    FLOW_GONE = "flow_gone"
    """The call's flow is no longer loaded."""
    STORE_UNAVAILABLE = "store_unavailable"
    """The call store did not answer within the retry time."""
    SAVE_CONFLICT = "save_conflict"
    """Other webhooks of the call kept saving first."""
    WEBHOOK_ERROR = "webhook_error"
    """The webhook failed outside the service (answered by the web layer)."""


class CallObserver(Protocol):
    """Told what calls do, for metrics (`flowpbx.metrics.CallMetrics`); must be quick and
    never raise."""

    def stepped(self, flow: str, kind: str) -> None:
        """A call took a step of `flow`, and waits now at a node of `kind` (menu, dial...)."""
        ...

    def fell_back(self, flow: str, reason: Fallback) -> None:
        """A webhook of a call in `flow` was answered its fallback, for `reason`."""
        ...


class Unobserved:
    """No metrics (the simulator, scenario tests)."""

    def stepped(self, flow: str, kind: str) -> None:
        return None

    def fell_back(self, flow: str, reason: Fallback) -> None:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What a call is answered, and the step taken for it (None for a repeated webhook, an
    event the call could not take, or a store that did not answer)."""

    reply: str
    step: Step | None = None


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class CallService:
    """Runs calls: one `start` per new call, one `handle` per event. A call runs on the
    version of its flow it started with, even after the flows are reloaded."""

    catalog: Catalog
    store: CallStore
    renderer: Renderer
    engine: CallEngine = field(default_factory=CallEngine)
    clock: Callable[[], dt.datetime] = utc_now
    hours_override: HoursStatus | None = None
    destinations: Destinations | None = None
    """The numbers flowpbx may call back (None: any number in E.164 form)."""
    retry_seconds: float = DEFAULT_RETRY_SECONDS
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    deadlines: Deadlines = field(default_factory=Deadlines)
    observer: CallObserver = field(default_factory=Unobserved)

    # -- helpers --

    def _context(self, loaded: LoadedFlow) -> Context:
        return Context(
            flow=loaded.flow,
            version=loaded.version,
            config=loaded.config,
            now=self.clock(),
            hours_override=self.hours_override,
            destinations=self.destinations,
        )

    def _flow_for(self, call: NewCall) -> LoadedFlow:
        if call.flow is not None:
            loaded = self.catalog.get(call.flow)
            if loaded is not None:
                return loaded
            log.warning("call %s: no flow named %r; using the number's", call.call_sid, call.flow)
        return self.catalog.for_number(call.called)

    async def started_on(self, call: NewCall, state: CallState) -> LoadedFlow | None:
        """The version of the flow the call started on: one this process knows, or one whose
        text the store kept (another process loaded it); else the flow's current version."""
        found = self.catalog.find(state.flow, state.version)
        if found is not None:
            return found
        if isinstance(self.catalog, FlowLibrary):
            try:
                kept = await self.store.flow_text(state.flow, state.version)
            except StoreUnavailable:
                kept = None
            if kept is not None:
                file, text = kept
                library = self.catalog
                revived = await asyncio.to_thread(
                    library.revive, state.flow, state.version, text, file
                )
                if revived is not None:
                    log.info(
                        "call %s: running version %s of flow %s, kept for its calls",
                        call.call_sid,
                        state.version,
                        state.flow,
                    )
                    return revived
        return self.catalog.get(state.flow)

    def apology(self, loaded: LoadedFlow | None = None, renderer: Renderer | None = None) -> str:
        """A plain apology and a hangup, in the flow's voice: for calls flowpbx cannot continue."""
        flow = (loaded or self.catalog.default_flow).flow
        return (renderer or self.renderer)(goodbye(flow), 0)

    async def patiently(self, attempt: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await attempt(*args)`, again while the store does not answer, for `retry_seconds` in
        all: a store that hangs is cut off at the deadline too, so Twilio answers in time.
        (The queue webhooks' store operations wait the same way.)"""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            remaining = max(deadline - time.monotonic(), MIN_ATTEMPT_SECONDS)
            try:
                with self.deadlines.cut_off(remaining):
                    return await attempt(*args)
            except TimeoutError as exc:
                raise StoreUnavailable(f"no answer within {self.retry_seconds:g} s") from exc
            except StoreUnavailable:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                await self.sleep(min(delay, remaining))
                delay = min(delay * 2, 1.0)

    def _safely(
        self,
        compute: Callable[[], Step | None],
        state: CallState,
        ctx: Context,
        *,
        is_wait: bool = False,
    ) -> Step | None:
        """Run the engine; a fault in it (a bug, not a flow's failure) is recovered like one,
        and a caller waiting in a queue holds on."""
        try:
            return compute()
        except Exception as exc:
            if is_wait:
                log.exception("call %s: queue wait failed; holding on", state.call_sid)
                return Step(state=state, actions=HOLD_ON, events=(), failure=exc)
            try:
                return self.engine.recover(state, ctx, exc)
            except Exception as again:
                log.exception("call %s: the flow's fallback failed too", state.call_sid)
                ended = state.evolve(waiting=Waiting.ENDED, seq=state.seq + 1)
                return Step(state=ended, actions=goodbye(ctx.flow), events=(), failure=again)

    async def _save(
        self,
        step: Step,
        revision: int,
        reply: str,
        ctx: Context,
        recovered: Fallback | None = None,
    ) -> bool:
        """Save the step; once saved, tell the observer (`recovered`: why the call was taken
        up again)."""
        record = None
        if step.events:
            record = StepRecord(
                id=f"{random.getrandbits(128):032x}",
                call_sid=step.state.call_sid,
                revision=revision + 1,
                seq=step.state.seq,
                at=round(ctx.now.timestamp(), 3),
                flow=step.state.flow,
                version=step.state.version,
                events=step.events,
            )
        saved = await self.store.save(step.state, revision=revision, reply=reply, record=record)
        if not saved:
            return False
        node = ctx.flow.nodes.get(step.state.node)
        self.observer.stepped(ctx.flow.name, node.kind if node is not None else "unknown")
        if recovered is not None:
            self.observer.fell_back(ctx.flow.name, recovered)
        elif step.failure is not None:
            self.observer.fell_back(ctx.flow.name, Fallback.STEP_FAILED)
        if step.failure is not None:
            log.error(
                "call %s: step %d failed at node %s; answered the flow's apology",
                step.state.call_sid,
                step.state.seq - 1,
                step.state.node,
                exc_info=step.failure,
            )
        return True

    # -- a new call --

    async def start(self, call: NewCall, *, renderer: Renderer | None = None) -> Answer:
        """A new call starts its flow; a repeated incoming webhook gets the first answer again."""
        render = renderer or self.renderer
        loaded = self._flow_for(call)
        try:
            return await self.patiently(self._start, call, loaded, render)
        except StoreUnavailable:
            log.exception("call %s: call store unavailable", call.call_sid)
        self.observer.fell_back(loaded.flow.name, Fallback.STORE_UNAVAILABLE)
        return Answer(reply=self.apology(loaded, render))

    async def _start(self, call: NewCall, loaded: LoadedFlow, render: Renderer) -> Answer:
        sid = call.call_sid
        for attempt in range(SAVE_ATTEMPTS):
            if attempt:
                # The call exists already: this is the incoming webhook again.
                first = await self.store.first_reply(sid)
                if first:
                    log.info("call %s: repeated incoming webhook, same reply", sid)
                    return Answer(reply=first)
            ctx = self._context(loaded)
            state = initial_state(call, ctx)
            step = self._safely(partial(self.engine.start, call, ctx), state, ctx)
            assert step is not None
            reply = render(step.actions, step.state.seq, _pinned(step.state))
            # A new call has no state: create it at revision 0 straight away.
            if await self._save(step, 0, reply, ctx):
                log.info("call %s: flow %s, now at %s", sid, loaded.flow.name, step.state.node)
                return Answer(reply=reply, step=step)
        self.observer.fell_back(loaded.flow.name, Fallback.SAVE_CONFLICT)
        return Answer(reply=self.apology(loaded, render))

    # -- an event in a call --

    async def handle(
        self,
        call: NewCall,
        seq: int,
        event: Event,
        *,
        node: str | None = None,
        renderer: Renderer | None = None,
    ) -> Answer:
        """An event answering step `seq` (or, for a queue's wait events, happening during it):
        advance the call once, however often the webhook comes. `node` is the enqueue node a
        wait event comes from, when the webhook says."""
        render = renderer or self.renderer
        is_wait = isinstance(event, WAIT_EVENTS)
        try:
            return await self.patiently(self._handle, call, seq, event, node, render)
        except StoreUnavailable:
            log.exception("call %s: call store unavailable", call.call_sid)
        loaded = self._flow_for(call)
        self.observer.fell_back(loaded.flow.name, Fallback.STORE_UNAVAILABLE)
        if is_wait:
            # A caller in a queue waits on: never taken out of it for flowpbx's own trouble.
            return Answer(reply=render(HOLD_ON, seq))
        return Answer(reply=self.apology(loaded, render))

    async def _handle(
        self, call: NewCall, seq: int, event: Event, node: str | None, render: Renderer
    ) -> Answer:
        sid = call.call_sid
        is_wait = isinstance(event, WAIT_EVENTS)
        for _ in range(SAVE_ATTEMPTS):
            try:
                stored = await self.store.load(sid, seq=seq)
            except CorruptState as exc:
                log.error("call %s: corrupt call state, recovering the call: %s", sid, exc.reason)
                answer = await self._recover(
                    call,
                    seq,
                    event,
                    node=node,
                    render=render,
                    revision=exc.revision,
                    reason="state_corrupt",
                )
            else:
                if stored is not None:
                    answer = await self._advance(call, seq, event, stored, render)
                else:
                    log.warning("call %s: %s for a call with no state", sid, type(event).__name__)
                    answer = await self._recover(
                        call, seq, event, node=node, render=render, revision=0, reason="state_lost"
                    )
            if answer is not None:
                return answer
        loaded = self._flow_for(call)
        self.observer.fell_back(loaded.flow.name, Fallback.SAVE_CONFLICT)
        if is_wait:
            return Answer(reply=render(HOLD_ON, seq))
        return Answer(reply=self.apology(loaded, render))

    async def _advance(
        self, call: NewCall, seq: int, event: Event, stored: StoredCall, render: Renderer
    ) -> Answer | None:
        """Take the step and save it; None if another webhook saved first."""
        state = stored.state
        is_wait = isinstance(event, WAIT_EVENTS)
        if seq != state.seq:
            if is_wait:
                log.info(
                    "call %s: wait event for step %d at step %d", call.call_sid, seq, state.seq
                )
                return Answer(reply=render(HOLD_ON, seq))
            log.info(
                "call %s: webhook for step %d, call is at step %d: same reply",
                call.call_sid,
                seq,
                state.seq,
            )
            return Answer(reply=stored.reply)
        loaded = await self.started_on(call, state)
        if loaded is None:
            # A release removed or renamed the call's flow: go on as if its state were lost.
            log.error("call %s: flow %s is no longer loaded", call.call_sid, state.flow)
            return await self._recover(
                call,
                seq,
                event,
                node=state.node if is_wait else None,
                render=render,
                revision=stored.revision,
                reason="flow_gone",
            )
        if loaded.version != state.version:
            log.warning(
                "call %s: version %s of flow %s is no longer known; going on with version %s",
                call.call_sid,
                state.version,
                state.flow,
                loaded.version,
            )
            state = state.evolve(version=loaded.version)
        ctx = self._context(loaded)
        compute = partial(self.engine.step, state, event, ctx)
        step = self._safely(compute, state, ctx, is_wait=is_wait)
        if step is None:
            # Not an event Twilio sends at this step (a webhook of the wrong kind): nothing moves.
            # The event's name only: its digits may be a caller's PIN.
            name = type(event).__name__
            log.warning("call %s: %s cannot happen at %s", call.call_sid, name, state.node)
            return Answer(reply=render(HOLD_ON, seq) if is_wait else stored.reply)
        reply = render(step.actions, step.state.seq, _pinned(step.state))
        if is_wait and step.state == stored.state and not step.events:
            if step.failure is not None:  # the wait failed: the caller holds on
                self.observer.fell_back(ctx.flow.name, Fallback.STEP_FAILED)
            return Answer(reply=reply, step=step)  # more hold music: nothing to save
        # A wait document does not replace the step's reply, which a retry must get again.
        saved_reply = stored.reply if is_wait else reply
        if not await self._save(step, stored.revision, saved_reply, ctx):
            return None
        return Answer(reply=reply, step=step)

    async def _recover(
        self,
        call: NewCall,
        seq: int,
        event: Event,
        *,
        node: str | None,
        render: Renderer,
        revision: int,
        reason: str,
    ) -> Answer | None:
        """Take up a call whose state is lost (revision 0), unreadable, or whose flow is gone;
        None if another webhook of the call saved first."""
        loaded = self._flow_for(call)
        ctx = self._context(loaded)
        state = initial_state(call, ctx).evolve(seq=seq)
        step: Step | None
        if isinstance(event, WAIT_EVENTS):
            tick = event if isinstance(event, QueueWaitTick) else QueueWaitTick(waited=0)
            queue = node or _only_queue(loaded)
            adopt = partial(
                self.engine.adopt, call, queue, seq=seq, tick=tick, ctx=ctx, reason=reason
            )
            step = self._safely(adopt, state, ctx, is_wait=True)
        else:
            resume = partial(self.engine.resume, call, event, seq=seq, ctx=ctx, reason=reason)
            step = self._safely(resume, state, ctx)
        assert step is not None
        reply = render(step.actions, step.state.seq, _pinned(step.state))
        if step.state.waiting is Waiting.ENDED and not step.events:
            return Answer(reply=reply, step=step)  # nothing known to keep
        if not await self._save(step, revision, reply, ctx, recovered=Fallback(reason)):
            return None
        log.warning("call %s: recovered (%s) at %s", call.call_sid, reason, step.state.node)
        return Answer(reply=reply, step=step)


def _pinned(state: CallState) -> str:
    """The flow to name in a call's webhook URLs: a call flowpbx placed cannot be told its flow
    by the number called (the person's), should its state be lost. Inbound calls: none."""
    return state.flow if state.direction is Direction.OUTBOUND else ""


def _only_queue(loaded: LoadedFlow) -> str:
    """The flow's enqueue node when it has exactly one ('' otherwise): where a queued caller
    whose wait URL names no node (one from before call engine v2) must be waiting."""
    queues = [n.id for n in loaded.flow.nodes.values() if isinstance(n, EnqueueNode)]
    return queues[0] if len(queues) == 1 else ""
