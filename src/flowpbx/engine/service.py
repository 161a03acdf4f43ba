"""The one place that loads call state, runs the interpreter, saves state and answers TwiML.

Every answer is TwiML: a failing step gets the flow's apology and fallback, a duplicate
webhook gets the reply already given, and a store that is down gets an apology.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from flowpbx.engine.actions import Action, Hangup, Leave, Pause
from flowpbx.engine.interpreter import (
    CallStarted,
    Context,
    Event,
    IllegalEvent,
    goodbye,
    initial_state,
    queue_key,
    queue_wait,
    recover,
    start,
    step,
)
from flowpbx.engine.state import CallState, StateError, Waiting
from flowpbx.language.catalog import FlowCatalog, LoadedFlow
from flowpbx.store import CallStore
from flowpbx.twilio.twiml import EMPTY, Urls, render

log = logging.getLogger("flowpbx.calls")

PUT_ATTEMPTS = 5
STORE_ERRORS = (RedisError, OSError, StateError)
# While a queued caller's state cannot be read, keep them waiting: Twilio asks again after it.
HOLD_ON = (Pause(5),)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class _Step:
    """A step computed but not yet stored; `failure` is logged only if it is stored."""

    state: CallState
    reply: str
    failure: BaseException | None


@dataclass
class CallService:
    """Handles each voice webhook for one call."""

    catalog: FlowCatalog
    store: CallStore
    clock: Callable[[], dt.datetime] = utc_now
    hours_override: str = ""

    def _context(self, loaded: LoadedFlow) -> Context:
        return Context(loaded.flow, self.clock(), loaded.config, self.hours_override)

    def apology(self, loaded: LoadedFlow | None = None) -> str:
        """A plain apology and a hangup, in the flow's voice: for calls flowpbx cannot continue."""
        return render(goodbye((loaded or self.catalog.default_flow).flow), Urls(""), 0)

    def _recover(self, state: CallState, ctx: Context) -> tuple[CallState, tuple[Action, ...]]:
        try:
            return recover(state, ctx)
        except Exception:
            log.exception("call %s: the flow's fallback failed too", state.call_sid)
            return state.evolve(waiting=Waiting.ENDED, seq=state.seq + 1), (Hangup(),)

    def _log_failure(self, state: CallState, what: str, failure: BaseException | None) -> None:
        if failure is not None:
            log.error(
                "call %s: %s failed at node %s; answered the flow's apology",
                state.call_sid,
                what,
                state.node,
                exc_info=failure,
            )

    async def incoming(self, call_sid: str, caller: str, called: str, urls: Urls) -> str:
        """A new call starts the flow for the number dialled; a retry gets the same reply."""
        loaded = self.catalog.for_number(called)
        event = CallStarted(call_sid, caller, called)
        try:
            for attempt in range(PUT_ATTEMPTS):
                # A new call has no state: try to create it at revision 0 straight away.
                stored, revision = (None, 0) if attempt == 0 else await self.store.get(call_sid)
                if stored is not None:
                    log.info("call %s: repeated incoming webhook, same reply", call_sid)
                    return stored.reply or EMPTY
                ctx = self._context(loaded)
                failure: BaseException | None = None
                try:
                    state, actions = start(loaded.flow, event, ctx, loaded.version)
                except Exception as exc:
                    failure = exc
                    state, actions = self._recover(
                        initial_state(loaded.flow, event, loaded.version), ctx
                    )
                reply = render(actions, urls, state.seq)
                if await self.store.put(state.evolve(reply=reply), revision):
                    self._log_failure(state, "the start of the flow", failure)
                    log.info("call %s: flow %s, now at %s", call_sid, loaded.flow.name, state.node)
                    return reply
        except STORE_ERRORS:
            log.exception("call %s: call store unavailable", call_sid)
        return self.apology(loaded)

    async def event(self, call_sid: str, seq: int, event: Event, urls: Urls) -> str:
        """A webhook that answers step `seq`: advance the flow once, however often it comes."""
        try:
            recent = self.store.recent(call_sid)
            if recent is not None and recent[0].seq == seq:
                # Usually this process took the previous step: write with one round trip.
                reply = await self._advance(recent[0], recent[1], seq, event, urls)
                if reply is not None:
                    return reply
            for _ in range(PUT_ATTEMPTS):
                state, revision = await self.store.get(call_sid)
                if state is None:
                    name = type(event).__name__
                    log.warning("call %s: %s for an unknown or expired call", call_sid, name)
                    return self.apology()
                if seq != state.seq:
                    log.info(
                        "call %s: webhook for step %d, call is at step %d: same reply",
                        call_sid,
                        seq,
                        state.seq,
                    )
                    return state.reply or EMPTY
                reply = await self._advance(state, revision, seq, event, urls)
                if reply is not None:
                    return reply
        except STORE_ERRORS:
            log.exception("call %s: call store unavailable", call_sid)
        return self.apology()

    async def _advance(
        self, state: CallState, revision: int, seq: int, event: Event, urls: Urls
    ) -> str | None:
        """Take the step and store it; None if another webhook stored first."""
        loaded = self.catalog.get(state.flow)
        if loaded is None:
            log.error("call %s: flow %s is no longer loaded", state.call_sid, state.flow)
            return self.apology()
        if loaded.version != state.version:
            log.warning(
                "call %s: flow %s changed during the call (%s -> %s); going on with the new one",
                state.call_sid,
                state.flow,
                state.version,
                loaded.version,
            )
            state = state.evolve(version=loaded.version)
        ctx = self._context(loaded)
        failure: BaseException | None = None
        try:
            new_state, actions = step(state, event, ctx)
        except IllegalEvent as exc:
            # A webhook of the wrong kind for this step (not one Twilio sends): nothing moves.
            log.warning("call %s: %s; same reply", state.call_sid, exc)
            return state.reply or EMPTY
        except Exception as exc:
            failure = exc
            new_state, actions = self._recover(state, ctx)
        reply = render(actions, urls, new_state.seq)
        if not await self.store.put(new_state.evolve(reply=reply), revision):
            return None
        self._log_failure(state, f"{type(event).__name__} at step {seq}", failure)
        return reply

    async def _queue_document(
        self,
        call_sid: str,
        urls: Urls,
        decide: Callable[[CallState, Context], tuple[CallState, tuple[Action, ...]]],
    ) -> str:
        try:
            for _ in range(PUT_ATTEMPTS):
                state, revision = await self.store.get(call_sid)
                loaded = self.catalog.get(state.flow) if state else None
                if state is None or loaded is None:
                    log.warning("call %s: queue wait for an unknown or expired call", call_sid)
                    return render((Leave(),), urls, 0)
                new_state, actions = decide(state, self._context(loaded))
                reply = render(actions, urls, state.seq)
                if new_state is state or await self.store.put(new_state, revision):
                    return reply
        except STORE_ERRORS:
            log.exception("call %s: call store unavailable during queue wait", call_sid)
        except Exception:
            log.exception("call %s: queue wait failed", call_sid)
        return render(HOLD_ON, urls, 0)

    async def queue_wait(self, call_sid: str, waited: int, urls: Urls) -> str:
        """The document a queued caller hears; leaves the queue after the node's max_wait."""
        return await self._queue_document(
            call_sid, urls, lambda state, ctx: queue_wait(state, waited, ctx)
        )

    async def queue_key(self, call_sid: str, digits: str, urls: Urls) -> str:
        """A key pressed while waiting in a queue."""
        return await self._queue_document(
            call_sid, urls, lambda state, ctx: queue_key(state, digits, ctx)
        )
