"""The call engine's policy, still without I/O: events in, (state, actions, call events) out.

It owns what happens when things go wrong: a failing step answers the flow's apology and
goes on at its fallback; an event the call cannot take moves nothing; a call whose state was
lost is taken up again (a queued caller keeps waiting, anyone else hears the apology and goes
on at the fallback). The service around it only loads, saves and renders.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowpbx.engine.actions import Action, Hangup, Pause, Say
from flowpbx.engine.call_events import (
    CallEnded,
    CallEvent,
    CallRecovered,
    EndReason,
    FallbackTaken,
)
from flowpbx.engine.events import (
    WAIT_EVENTS,
    Event,
    NewCall,
    QueueLeft,
    QueueResult,
    QueueWaitTick,
)
from flowpbx.engine.interpreter import (
    IllegalEvent,
    Step,
    call_started,
    initial_state,
    run,
    start,
    step,
)
from flowpbx.engine.state import CallState, Waiting
from flowpbx.engine.walk import Context, StepError, Walk, prompt
from flowpbx.language.flow import EnqueueNode, Flow

HOLD_ON = (Pause(5),)
"""What a queued caller hears when nothing better can be answered: a pause, then the queue
asks again. Never <Leave/>: a caller is not taken out of a queue for flowpbx's own trouble."""

_OVER = frozenset(
    {QueueResult.BRIDGED, QueueResult.BRIDGING, QueueResult.REDIRECTED, QueueResult.HANGUP}
)


def goodbye(flow: Flow) -> tuple[Action, ...]:
    """A plain apology in the flow's voice, then hang up: for a call that cannot go on."""
    speech = flow.on_error.goodbye
    assert speech.text is not None
    return Say(speech.text.render({}), speech.voice, speech.language), Hangup()


def describe(error: BaseException) -> str:
    """A failure in one line for call events: its kind and message, bounded."""
    return f"{type(error).__name__}: {error}"[:300]


@dataclass(frozen=True, slots=True)
class CallEngine:
    """Starts calls, takes their events, and recovers them; pure (the clock is in `Context`)."""

    def start(self, call: NewCall, ctx: Context) -> Step:
        """A new call enters its flow; a flow that fails at once still answers its fallback."""
        try:
            return start(call, ctx)
        except StepError as exc:
            state = initial_state(call, ctx).evolve(node=exc.node or ctx.flow.entry)
            return self.recover(state, ctx, exc, before=exc.events or (call_started(call, ctx),))

    def step(self, state: CallState, event: Event, ctx: Context) -> Step | None:
        """The call takes `event`; None when it cannot (nothing moves, the last reply stands)."""
        try:
            return step(state, event, ctx)
        except IllegalEvent:
            return None
        except StepError as exc:
            if isinstance(event, WAIT_EVENTS):
                # Within a queue wait: keep the caller waiting rather than move the call.
                return Step(state=state, actions=HOLD_ON, events=(), failure=exc)
            failed_at = state.evolve(node=exc.node or state.node)
            return self.recover(failed_at, ctx, exc, before=exc.events)

    def recover(
        self,
        state: CallState,
        ctx: Context,
        error: Exception,
        *,
        before: tuple[CallEvent, ...] = (),
    ) -> Step:
        """After a failed step: the flow's apology, then its fallback node, or goodbye.

        `before` are the call events of the failed step up to its failure, kept for history.
        """
        on_error = ctx.flow.on_error
        target = on_error.next
        if target and state.node != target:
            walk = Walk(ctx)
            walk.note(*before)
            walk.note(FallbackTaken(node=state.node, error=describe(error), target=target))
            try:
                walk.play(*prompt(on_error.apology, state, ctx))
                recovered = run(target, state.evolve(attempts=0, leave_reason=""), walk)
            except StepError:
                pass
            else:
                return Step(
                    state=recovered.evolve(seq=state.seq + 1),
                    actions=tuple(walk.actions),
                    events=tuple(walk.events),
                    failure=error,
                )
        # The apology may promise the fallback ("le pasamos con un agente"): goodbye instead.
        events = (
            *before,
            FallbackTaken(node=state.node, error=describe(error), target=None),
            CallEnded(node=state.node, how=EndReason.ERROR),
        )
        ended = state.evolve(waiting=Waiting.ENDED, seq=state.seq + 1)
        return Step(state=ended, actions=goodbye(ctx.flow), events=events, failure=error)

    def resume(self, call: NewCall, event: Event, *, seq: int, ctx: Context, reason: str) -> Step:
        """A step webhook for a call whose state was lost (`reason` 'state_lost') or cannot be
        read ('state_corrupt'): the apology, then the fallback (or the flow's entry)."""
        state = initial_state(call, ctx).evolve(seq=seq)
        if isinstance(event, QueueLeft) and event.result in _OVER:
            # The caller already left the queue for good: nothing to say, nowhere to go.
            how = {
                QueueResult.BRIDGED: EndReason.AGENT,
                QueueResult.BRIDGING: EndReason.AGENT,
                QueueResult.REDIRECTED: EndReason.REDIRECTED,
            }.get(event.result, EndReason.CALLER_HUNG_UP)
            events = (
                CallRecovered(node=state.node, reason=reason),
                CallEnded(node=state.node, how=how),
            )
            ended = state.evolve(waiting=Waiting.ENDED, seq=seq + 1)
            return Step(state=ended, actions=(), events=events)
        target = ctx.flow.on_error.next or ctx.flow.entry
        walk = Walk(ctx)
        walk.note(
            CallRecovered(node=target, reason=reason),
            FallbackTaken(node=target, error=reason.replace("_", " "), target=target),
        )
        try:
            walk.play(*prompt(ctx.flow.on_error.apology, state, ctx))
            resumed = run(target, state, walk)
        except StepError as exc:
            failed_at = state.evolve(node=exc.node or target)
            recovered = (CallRecovered(node=target, reason=reason),)
            return self.recover(failed_at, ctx, exc, before=recovered + exc.events)
        return Step(
            state=resumed.evolve(seq=seq + 1),
            actions=tuple(walk.actions),
            events=tuple(walk.events),
        )

    def adopt(
        self,
        call: NewCall,
        node_id: str,
        *,
        seq: int,
        tick: QueueWaitTick,
        ctx: Context,
        reason: str,
    ) -> Step:
        """A caller waiting in a queue whose state was lost: take them up again at their
        enqueue node (from the wait URL), waiting since `tick.waited` seconds ago; they hear
        the hold music (and their place) as before. Without that node, they hold on all the same."""
        node = ctx.flow.nodes.get(node_id)
        if not isinstance(node, EnqueueNode):
            return Step(state=initial_state(call, ctx), actions=HOLD_ON, events=())
        queued_at = int(ctx.now.timestamp()) - max(0, tick.waited)
        state = initial_state(call, ctx).evolve(
            node=node_id, waiting=Waiting.QUEUE, seq=seq, queued_at=queued_at
        )
        recovered = (CallRecovered(node=node_id, reason=reason),)
        result = self.step(state, tick, ctx)
        if result is None:  # pragma: no cover - a queued state always takes a wait tick
            return Step(state=state, actions=HOLD_ON, events=recovered)
        return Step(
            state=result.state,
            actions=result.actions,
            events=recovered + result.events,
            failure=result.failure,
        )
