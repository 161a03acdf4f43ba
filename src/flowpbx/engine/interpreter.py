"""The call interpreter: `step(state, event, ctx) -> (state, actions, call events)`, no I/O.

No Redis, no clock, no XML: the instant and the config come in as values. Nodes that need
nothing from the caller (say, set, switch, hours...) run one after another within a step;
nodes that wait (menu, input, dial, enqueue, record) end it. `flowpbx.engine.nodes` says what
entering each kind does; here, one handler per event says what it does at a waiting node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar, assert_never

from flowpbx.engine.actions import (
    Action,
    Gather,
    Hangup,
    Leave,
    Pause,
    Play,
    Prompt,
    Redirect,
    Say,
)
from flowpbx.engine.actions import Route as CallRoute
from flowpbx.engine.call_events import (
    CallbackRequested,
    CallEvent,
    CallStarted,
    DialFinished,
    EndReason,
    InputCollected,
    InvalidInput,
    NodeEntered,
    NoInput,
    OptionChosen,
    QueueExit,
    QueueExited,
    RecordingMade,
)
from flowpbx.engine.events import (
    DialEnded,
    DialResult,
    Event,
    KeysPressed,
    NewCall,
    QueueKeysPressed,
    QueueLeft,
    QueueResult,
    QueueWaitTick,
    RecordingEnded,
)
from flowpbx.engine.nodes import end, enter, gather
from flowpbx.engine.state import CallState, Waiting
from flowpbx.engine.walk import Context, StepError, Wait, Walk, prompt, resolve
from flowpbx.errors import FlowpbxError
from flowpbx.language.flow import (
    DialNode,
    EnqueueNode,
    InputNode,
    MenuNode,
    Node,
    QueueSpec,
    RecordNode,
    Speech,
)
from flowpbx.queues import spoken as spoken_words

N = TypeVar("N", bound=Node)

MAX_STEPS_PER_CALL = 1000
DIAL_STATUS_WORDS = {
    DialResult.ANSWERED: "completed",
    DialResult.BUSY: "busy",
    DialResult.NO_ANSWER: "no-answer",
    DialResult.FAILED: "failed",
    DialResult.CANCELED: "canceled",
}
"""The values of {dial_status} in flows, as docs/flows.md promises them."""
HOLD_SILENCE = 20
"""Seconds of silence between wait-music requests when a queue node has no hold music."""
CALLBACK_TIMEOUT = 8
"""Seconds a caller has to confirm a callback number (or type another)."""
CALLBACK_CONFIRM = "callback"
"""The queue phase of a caller asked to confirm their own number for a callback."""
CALLBACK_NUMBER = "callback-number"
"""The queue phase of a caller typing the number to be called back at."""
MIN_CALLBACK_DIGITS = 6
"""Fewer digits than this are a key pressed by mistake, not a phone number."""


class IllegalEvent(FlowpbxError):
    """An event the call cannot take in its current state."""

    def __init__(self, event: Event, state: CallState) -> None:
        self.event = event
        self.state = state
        where = f"call {state.call_sid} at node '{state.node}' waiting for {state.waiting}"
        super().__init__(f"{type(event).__name__} cannot happen to {where}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """A step's result: the call's new state, what the caller hears, and what happened."""

    state: CallState
    actions: tuple[Action, ...]
    events: tuple[CallEvent, ...]
    failure: Exception | None = None
    """A failure the step recovered from (the caller heard the apology), to be logged."""


def run(node_id: str, state: CallState, walk: Walk) -> CallState:
    """Enter nodes from `node_id` until one waits or the call ends."""
    nodes = walk.ctx.flow.nodes
    while True:
        # The loader rejects loops that never wait; this bounds what gets through anyway.
        if state.steps >= MAX_STEPS_PER_CALL:
            raise StepError(
                f"call {state.call_sid} passed {MAX_STEPS_PER_CALL} steps (at '{node_id}')"
            )
        node = nodes.get(node_id)
        if node is None:
            raise StepError(f"node '{node_id}' is not in flow '{walk.ctx.flow.name}'")
        state = state.evolve(node=node_id, steps=state.steps + 1)
        walk.note(NodeEntered(node=node_id, kind=node.kind))
        try:
            outcome = enter(node, state, walk)
        except StepError as exc:
            exc.node = exc.node or node_id
            exc.events = tuple(walk.events)
            raise
        if isinstance(outcome, Wait):
            return outcome.state
        node_id, state = outcome.node, outcome.state


def _finish(walk: Walk, state: CallState) -> Step:
    return Step(state=state, actions=tuple(walk.actions), events=tuple(walk.events))


def initial_state(call: NewCall, ctx: Context) -> CallState:
    """A call that has not yet entered its flow."""
    return CallState(
        call_sid=call.call_sid,
        flow=ctx.flow.name,
        version=ctx.version,
        node=ctx.flow.entry,
        waiting=Waiting.ENDED,
        direction=call.direction,
    ).evolve(variables={"caller": call.caller, "called": call.called})


def call_started(call: NewCall, ctx: Context) -> CallStarted:
    """The first call event of every call."""
    return CallStarted(
        flow=ctx.flow.name,
        version=ctx.version,
        caller=call.caller,
        called=call.called,
        direction=call.direction,
    )


def start(call: NewCall, ctx: Context) -> Step:
    """A new call enters the flow at its entry node; its first reply is step 1."""
    walk = Walk(ctx)
    walk.note(call_started(call, ctx))
    state = run(ctx.flow.entry, initial_state(call, ctx), walk)
    return _finish(walk, state.evolve(seq=1))


EXPECTS: Mapping[type[Event], Waiting] = {
    KeysPressed: Waiting.KEYS,
    DialEnded: Waiting.DIAL,
    QueueLeft: Waiting.QUEUE,
    RecordingEnded: Waiting.RECORDING,
    QueueWaitTick: Waiting.QUEUE,
    QueueKeysPressed: Waiting.QUEUE,
}
"""What a call must be waiting for to take each kind of event."""


def step(state: CallState, event: Event, ctx: Context) -> Step:
    """Take one webhook's event at the node the call waits at.

    An event that answers the step (keys, a dial's or queue's or recording's end) moves `seq`
    on by one; the queue's wait ticks and keys happen within the step and leave it as it is.
    """
    if EXPECTS.get(type(event)) is not state.waiting:
        raise IllegalEvent(event, state)
    node = ctx.flow.nodes.get(state.node)
    if node is None:
        raise StepError(f"node '{state.node}' is not in flow '{ctx.flow.name}'")
    walk = Walk(ctx)
    match event:
        case KeysPressed():
            new_state = _on_keys(node, event, state, walk)
        case DialEnded():
            new_state = _on_dial(node, event, state, walk)
        case QueueLeft():
            new_state = _on_queue(node, event, state, walk)
        case RecordingEnded():
            new_state = _on_recording(node, event, state, walk)
        case QueueWaitTick():
            return _finish(walk, _on_wait_tick(node, event, state, walk))
        case QueueKeysPressed():
            return _finish(walk, _on_queue_keys(node, event, state, walk))
        case _:
            assert_never(event)
    return _finish(walk, new_state.evolve(seq=state.seq + 1))


def _expect(node: Node, kind: type[N], event: Event, state: CallState) -> N:
    if not isinstance(node, kind):
        raise IllegalEvent(event, state)
    return node


def _masked(node: InputNode, digits: str) -> str:
    return "*" * len(digits) if node.is_sensitive else digits


def _retry(
    node: MenuNode | InputNode,
    state: CallState,
    walk: Walk,
    message: Speech | None,
) -> CallState:
    attempts = state.attempts + 1
    if attempts > node.retries:
        return run(node.exhausted, state.evolve(attempts=0), walk)
    if message:
        walk.play(*prompt(message, state, walk.ctx))
    return gather(node, state.evolve(attempts=attempts), walk).state


def _on_keys(node: Node, event: KeysPressed, state: CallState, walk: Walk) -> CallState:
    digits = event.digits
    attempt = state.attempts + 1
    if isinstance(node, MenuNode):
        if not digits:
            walk.note(NoInput(node=node.id, attempt=attempt))
            return _retry(node, state, walk, node.no_input)
        target = node.options.get(digits[:1])
        if target is None:
            walk.note(InvalidInput(node=node.id, attempt=attempt, digits=digits))
            return _retry(node, state, walk, node.invalid)
        walk.note(OptionChosen(node=node.id, key=digits[:1], target=target))
        variables = {**state.variables, "digits": digits[:1]}
        return run(target, state.evolve(variables=variables, attempts=0), walk)
    if isinstance(node, InputNode):
        if not digits:
            walk.note(NoInput(node=node.id, attempt=attempt))
            return _retry(node, state, walk, node.no_input)
        too_long = node.max_digits is not None and len(digits) > node.max_digits
        if len(digits) < node.min_digits or too_long or not digits.isdigit():
            walk.note(InvalidInput(node=node.id, attempt=attempt, digits=_masked(node, digits)))
            return _retry(node, state, walk, node.invalid)
        walk.note(
            InputCollected(node=node.id, variable=node.variable, digits=_masked(node, digits))
        )
        variables = {**state.variables, "digits": digits, node.variable: digits}
        return run(node.next, state.evolve(variables=variables, attempts=0), walk)
    raise IllegalEvent(event, state)


def _on_dial(node: Node, event: DialEnded, state: CallState, walk: Walk) -> CallState:
    dial = _expect(node, DialNode, event, state)
    walk.note(
        DialFinished(
            node=dial.id,
            result=event.result,
            duration=event.duration,
            recording_url=event.recording_url,
        )
    )
    status = DIAL_STATUS_WORDS[event.result]
    state = state.evolve(variables={**state.variables, "dial_status": status})
    match event.result:
        case DialResult.ANSWERED:
            if dial.answered:
                return run(dial.answered, state, walk)
            return end(state, walk, EndReason.CONNECTED, Hangup()).state
        case DialResult.BUSY:
            return run(dial.busy, state, walk)
        case DialResult.NO_ANSWER:
            return run(dial.no_answer, state, walk)
        case DialResult.FAILED | DialResult.CANCELED:
            return run(dial.failed, state, walk)
        case _:
            assert_never(event.result)


def _on_queue(node: Node, event: QueueLeft, state: CallState, walk: Walk) -> CallState:
    queue = _expect(node, EnqueueNode, event, state)
    waited = event.waited
    if state.queued_at:
        waited = max(waited, int(walk.ctx.now.timestamp()) - state.queued_at)

    def exited(reason: QueueExit) -> None:
        walk.note(QueueExited(node=queue.id, queue=queue.queue, reason=reason, waited=waited))

    state = state.evolve(queued_at=0, announced_at=0, queue_phase="")
    match event.result:
        case QueueResult.BRIDGED:
            exited(QueueExit.AGENT)
            return end(state, walk, EndReason.AGENT, Hangup()).state
        case QueueResult.BRIDGING:
            # The agent's leg is taking the call: answer nothing that could cut it.
            exited(QueueExit.AGENT)
            return end(state, walk, EndReason.AGENT).state
        case QueueResult.REDIRECTED:
            # Sent elsewhere by whoever redirected the call: this flow is done with it.
            exited(QueueExit.REDIRECTED)
            return end(state, walk, EndReason.REDIRECTED).state
        case QueueResult.HANGUP:
            exited(QueueExit.HUNG_UP)
            return end(state, walk, EndReason.CALLER_HUNG_UP).state
        case QueueResult.FULL:
            exited(QueueExit.FULL)
            return run(queue.full, state, walk)
        case QueueResult.ERROR:
            # The queue could not keep the caller: the same way on as a full queue.
            exited(QueueExit.ERROR)
            return run(queue.full, state, walk)
        case QueueResult.LEAVE:
            if state.leave_reason == "left" and queue.left:
                exited(QueueExit.LEFT)
                return run(queue.left, state, walk)
            if state.leave_reason == "full":
                exited(QueueExit.FULL)
                return run(queue.full, state, walk)
            if state.leave_reason == "callback":
                exited(QueueExit.CALLBACK)
                if queue.callback:
                    return run(queue.callback, state, walk)
                return end(state, walk, EndReason.CALLBACK, Hangup()).state
            # We asked the queue to let them go because of the wait (or we no longer know why).
            exited(QueueExit.TIMED_OUT)
            return run(queue.timed_out or queue.full, state, walk)
        case _:
            assert_never(event.result)


def _on_recording(node: Node, event: RecordingEnded, state: CallState, walk: Walk) -> CallState:
    record = _expect(node, RecordNode, event, state)
    if event.url:
        walk.note(RecordingMade(node=record.id, url=event.url, duration=event.duration))
    variables = {**state.variables, "recording_url": event.url}
    return run(record.next, state.evolve(variables=variables), walk)


def queue_spec(node: EnqueueNode, ctx: Context) -> QueueSpec:
    """The queue an enqueue node puts callers in (the loader checks it is declared)."""
    spec = ctx.flow.queues.get(node.queue)
    if spec is None:
        raise StepError(f"queue '{node.queue}' is not declared in flow '{ctx.flow.name}'")
    return spec


def hold_music(spec: QueueSpec, ctx: Context, waited: int = 0) -> tuple[Prompt, ...]:
    """What a caller waiting in queue `spec` hears until the queue asks again."""
    if spec.hold_music:
        return (Play(resolve(spec.hold_music, ctx)),)
    remaining = spec.max_wait - waited if spec.max_wait is not None else HOLD_SILENCE
    return (Pause(max(1, min(HOLD_SILENCE, remaining))),)


def _say(node: EnqueueNode, text: str) -> Say:
    return Say(text, node.voice, node.language)


def _has_keys(node: EnqueueNode, spec: QueueSpec) -> bool:
    return bool(node.leave_key or (node.callback_key and spec.callback))


def _on_wait_tick(node: Node, event: QueueWaitTick, state: CallState, walk: Walk) -> CallState:
    """The hold music ended: the caller's place and wait now and then, more music, or leave
    the queue (no room, or the queue's max_wait reached).

    The wait is counted from when the call entered the queue (the queue's own count is not
    sent on every request); `max_wait` is checked each time the hold music ends.
    """
    queue = _expect(node, EnqueueNode, event, state)
    spec = queue_spec(queue, walk.ctx)
    now = int(walk.ctx.now.timestamp())
    waited = event.waited
    if state.queued_at:
        waited = max(waited, now - state.queued_at)
    view = event.view
    if view is not None and view.full:
        walk.play(Leave())
        return state.evolve(leave_reason="full", queue_phase="")
    if spec.max_wait is not None and waited >= spec.max_wait:
        walk.play(Leave())
        return state.evolve(leave_reason="timed_out", queue_phase="")
    spoken: list[Prompt] = []
    announced_at = state.announced_at
    due = not announced_at or now - announced_at >= spec.announce_every
    if view is not None and view.position > 0 and spec.announce_every and due:
        spoken.append(
            _say(queue, spoken_words.announcement(view.position, view.wait, queue.language))
        )
        if _has_keys(queue, spec):
            callback_key = queue.callback_key if spec.callback else None
            offer = spoken_words.offer_keys(queue.leave_key, callback_key, queue.language)
            spoken.append(_say(queue, offer))
        announced_at = now
    heard = (*spoken, *hold_music(spec, walk.ctx, waited))
    if _has_keys(queue, spec):
        walk.play(Gather(heard, 1, 1, "", CallRoute.QUEUE_KEY))
    else:
        walk.play(*heard)
    return state.evolve(announced_at=announced_at, queue_phase="")


def _back_to_music(queue: EnqueueNode, state: CallState, walk: Walk, *said: str) -> CallState:
    for text in said:
        walk.play(_say(queue, text))
    walk.play(Redirect(CallRoute.QUEUE_WAIT, walk.ctx.flow.name, queue.id))
    return state.evolve(queue_phase="")


def _on_queue_keys(node: Node, event: QueueKeysPressed, state: CallState, walk: Walk) -> CallState:
    """A key pressed during hold music: the leave key takes the caller out of the queue; the
    callback key asks which number to call back (then the caller confirms it)."""
    queue = _expect(node, EnqueueNode, event, state)
    spec = queue_spec(queue, walk.ctx)
    caller = state.variables.get("caller", "")
    if state.queue_phase == CALLBACK_CONFIRM:
        match event.digits[:1]:
            case spoken_words.CONFIRM_KEY if spoken_words.is_phone_number(caller):
                if not _may_call(caller, walk.ctx):
                    # Not a number flowpbx may call (e.g. abroad): ask for another one.
                    walk.play(_say(queue, spoken_words.callback_bad_number(queue.language)))
                    return _ask_number(queue, state, walk)
                return _book_callback(queue, caller, state, walk)
            case spoken_words.OTHER_NUMBER_KEY:
                return _ask_number(queue, state, walk)
            case _:
                return _back_to_music(
                    queue, state, walk, spoken_words.callback_unclear(queue.language)
                )
    if state.queue_phase == CALLBACK_NUMBER:
        return _on_callback_number(queue, spec, event.digits, state, walk)
    key = event.digits[:1]
    if queue.leave_key and key == queue.leave_key:
        walk.play(Leave())
        return state.evolve(leave_reason="left")
    if queue.callback_key and spec.callback and key == queue.callback_key:
        if not spoken_words.is_phone_number(caller):
            return _ask_number(queue, state, walk)
        ask = spoken_words.callback_confirm(caller, queue.language)
        walk.play(Gather((_say(queue, ask),), CALLBACK_TIMEOUT, 1, "", CallRoute.QUEUE_KEY))
        return state.evolve(queue_phase=CALLBACK_CONFIRM)
    return _back_to_music(queue, state, walk)


def _ask_number(queue: EnqueueNode, state: CallState, walk: Walk) -> CallState:
    """Ask for the number to call back, ending with the finish key."""
    ask = spoken_words.callback_ask_number(queue.language)
    finish = spoken_words.FINISH_KEY
    walk.play(Gather((_say(queue, ask),), CALLBACK_TIMEOUT, None, finish, CallRoute.QUEUE_KEY))
    return state.evolve(queue_phase=CALLBACK_NUMBER)


def _on_callback_number(
    queue: EnqueueNode, spec: QueueSpec, digits: str, state: CallState, walk: Walk
) -> CallState:
    """The number the caller typed to be called back at."""
    typed = digits.rstrip(spoken_words.FINISH_KEY)
    if not typed:
        return _back_to_music(queue, state, walk, spoken_words.callback_unclear(queue.language))
    if len(typed) < MIN_CALLBACK_DIGITS:
        return _back_to_music(queue, state, walk, spoken_words.callback_bad_number(queue.language))
    number = spoken_words.callback_number(typed, spec.country_code)
    if number is None or not _may_call(number, walk.ctx):
        return _back_to_music(queue, state, walk, spoken_words.callback_bad_number(queue.language))
    return _book_callback(queue, number, state, walk)


def _may_call(number: str, ctx: Context) -> bool:
    """Whether flowpbx may call `number` back (the outbound rules: no premium numbers)."""
    return ctx.destinations is None or ctx.destinations.refusal(number) is None


def _book_callback(queue: EnqueueNode, number: str, state: CallState, walk: Walk) -> CallState:
    """The caller will be called back at `number`: they are told so, and leave the line."""
    walk.note(
        CallbackRequested(
            node=queue.id, queue=queue.queue, number=number, queued_at=state.queued_at
        )
    )
    walk.play(_say(queue, spoken_words.callback_booked(number, queue.language)), Leave())
    return state.evolve(queue_phase="", leave_reason="callback")


__all__ = ["Context", "IllegalEvent", "Step", "StepError", "initial_state", "run", "start", "step"]
