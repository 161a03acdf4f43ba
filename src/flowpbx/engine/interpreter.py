"""The call interpreter: `step(flow, state, event) -> (state, actions)`, with no I/O.

No Redis, no clock, no XML: the instant and the config come in as values. Nodes that need
nothing from the caller (say, set, switch, hours...) run one after another within a step;
nodes that wait (menu, input, dial, enqueue, record) end the step. One handler per node kind
says what entering it does; one per waiting kind says what its webhook's event does.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flowpbx.engine.actions import (
    Action,
    Dial,
    Enqueue,
    Gather,
    Hangup,
    Leave,
    Pause,
    Play,
    Prompt,
    Record,
    Redirect,
    Route,
    Say,
)
from flowpbx.engine.state import CallState, Waiting
from flowpbx.errors import FlowpbxError
from flowpbx.language.flow import (
    DialNode,
    EnqueueNode,
    Flow,
    GotoNode,
    HangupNode,
    HoursNode,
    InputNode,
    MenuNode,
    Node,
    PauseNode,
    RecordNode,
    SayNode,
    SetNode,
    Speech,
    SwitchNode,
    resolve_config,
)

MAX_STEPS_PER_CALL = 1000


# --- Events: what a webhook tells the interpreter ----------------------------------------------


@dataclass(frozen=True, slots=True)
class CallStarted:
    call_sid: str
    caller: str
    called: str


@dataclass(frozen=True, slots=True)
class KeysPressed:
    """Keys from a gather; '' when the caller pressed nothing."""

    digits: str


@dataclass(frozen=True, slots=True)
class DialEnded:
    status: str


@dataclass(frozen=True, slots=True)
class QueueLeft:
    result: str


@dataclass(frozen=True, slots=True)
class RecordingEnded:
    """A voicemail ended; `url` is '' when Twilio recorded nothing."""

    url: str
    duration: int


Event = CallStarted | KeysPressed | DialEnded | QueueLeft | RecordingEnded

EXPECTED_EVENT: Mapping[Waiting, type[Any]] = {
    Waiting.KEYS: KeysPressed,
    Waiting.DIAL: DialEnded,
    Waiting.QUEUE: QueueLeft,
    Waiting.RECORDING: RecordingEnded,
}


class IllegalEvent(FlowpbxError):
    """An event the call cannot take in its current state."""

    def __init__(self, event: Event, state: CallState) -> None:
        self.event = event
        self.state = state
        where = f"call {state.call_sid} at node '{state.node}' waiting for {state.waiting}"
        super().__init__(f"{type(event).__name__} cannot happen to {where}")


class StepError(FlowpbxError):
    """A step that cannot go on: a loop, a missing config value, an unknown Twilio result."""


@dataclass(frozen=True, slots=True)
class Context:
    """The values a step may read besides the flow and the state."""

    flow: Flow
    now: dt.datetime
    config: Mapping[str, str]
    hours_override: str = ""
    """'open' or 'closed' forces every hours node (the operator's day/night switch); '' = clock."""


# --- Outcomes of entering a node -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Go:
    """Continue at `node` within the same step."""

    node: str
    state: CallState
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True, slots=True)
class _Wait:
    """End the step: the call waits at its current node."""

    state: CallState
    actions: tuple[Action, ...]


Outcome = _Go | _Wait


def _resolve(value: str, ctx: Context) -> str:
    try:
        return resolve_config(value, ctx.config)
    except KeyError as exc:
        name = exc.args[0]
        raise StepError(
            f"config '{name}' has no value; set the environment variable {name}"
        ) from exc


def _prompt(speech: Speech, state: CallState, ctx: Context, loop: int = 1) -> tuple[Prompt, ...]:
    if speech.play is not None:
        return (Play(_resolve(speech.play, ctx), loop),)
    assert speech.text is not None
    text = speech.text.render(state.variables)
    return (Say(text, speech.voice, speech.language, loop),) if text.strip() else ()


def _ended(state: CallState, *actions: Action) -> _Wait:
    return _Wait(state.evolve(waiting=Waiting.ENDED), actions)


# --- Entering each kind of node ------------------------------------------------------------------


def _enter_say(node: SayNode, state: CallState, ctx: Context) -> Outcome:
    return _Go(node.next, state, _prompt(node.speech, state, ctx, node.loop))


def _enter_pause(node: PauseNode, state: CallState, ctx: Context) -> Outcome:
    return _Go(node.next, state, (Pause(node.seconds),))


def _gather(
    node: MenuNode | InputNode, state: CallState, ctx: Context, preface: tuple[Action, ...] = ()
) -> _Wait:
    if isinstance(node, MenuNode):
        gather = Gather(_prompt(node.prompt, state, ctx), node.timeout, 1, "")
    else:
        digits = node.max_digits
        gather = Gather(_prompt(node.prompt, state, ctx), node.timeout, digits, node.finish_on_key)
    return _Wait(state.evolve(node=node.id, waiting=Waiting.KEYS), (*preface, gather))


def _enter_keys(node: MenuNode | InputNode, state: CallState, ctx: Context) -> Outcome:
    return _gather(node, state.evolve(attempts=0), ctx)


def _enter_dial(node: DialNode, state: CallState, ctx: Context) -> Outcome:
    targets = tuple(_resolve(t, ctx) for t in node.targets)
    caller_id = _resolve(node.caller_id, ctx) if node.caller_id else None
    dial = Dial(targets, caller_id, node.timeout, node.record)
    return _Wait(state.evolve(node=node.id, waiting=Waiting.DIAL), (dial,))


def _enter_enqueue(node: EnqueueNode, state: CallState, ctx: Context) -> Outcome:
    waiting = state.evolve(
        node=node.id, waiting=Waiting.QUEUE, leave_reason="", queued_at=int(ctx.now.timestamp())
    )
    return _Wait(waiting, (Enqueue(node.queue),))


def _enter_record(node: RecordNode, state: CallState, ctx: Context) -> Outcome:
    prompt = _prompt(node.prompt, state, ctx) if node.prompt else ()
    record = Record(node.max_length, node.timeout, node.beep, node.finish_on_key, node.transcribe)
    return _Wait(state.evolve(node=node.id, waiting=Waiting.RECORDING), (*prompt, record))


def _enter_hangup(node: HangupNode, state: CallState, ctx: Context) -> Outcome:
    goodbye = _prompt(node.goodbye, state, ctx) if node.goodbye else ()
    return _ended(state.evolve(node=node.id), *goodbye, Hangup())


def _enter_goto(node: GotoNode, state: CallState, ctx: Context) -> Outcome:
    visits = dict(state.visits)
    visits[node.id] = visits.get(node.id, 0) + 1
    state = state.evolve(visits=visits)
    if node.limit is not None and visits[node.id] > node.limit:
        assert node.exhausted is not None
        return _Go(node.exhausted, state)
    return _Go(node.target, state)


def _enter_set(node: SetNode, state: CallState, ctx: Context) -> Outcome:
    variables = dict(state.variables)
    for name, value in node.values.items():
        variables[name] = value.render(variables)
    return _Go(node.next, state.evolve(variables=variables))


def _enter_switch(node: SwitchNode, state: CallState, ctx: Context) -> Outcome:
    value = state.variables.get(node.variable, "")
    for case in node.cases:
        if case.matches(value):
            return _Go(case.next, state)
    return _Go(node.default, state)


def business_hours(node: HoursNode, now: dt.datetime) -> str:
    """'open', 'closed' or 'holiday' for an aware instant, in the node's time zone."""
    local = now.astimezone(zoneinfo.ZoneInfo(node.timezone))
    minute = local.hour * 60 + local.minute
    today = [
        h
        for h in node.holidays
        if (h.month, h.day) == (local.month, local.day) and h.year in (None, local.year)
    ]
    if today:
        # One year's entry for a date is more specific than an every-year one.
        holiday = max(today, key=lambda h: h.year is not None)
        return "open" if any(r.contains(minute) for r in holiday.hours) else "holiday"
    return "open" if any(r.contains(minute) for r in node.weekly[local.weekday()]) else "closed"


def _enter_hours(node: HoursNode, state: CallState, ctx: Context) -> Outcome:
    outcome = ctx.hours_override or business_hours(node, ctx.now)
    target = {"open": node.open, "closed": node.closed, "holiday": node.holiday}[outcome]
    return _Go(target, state)


_ENTER: Mapping[str, Callable[[Any, CallState, Context], Outcome]] = {
    "say": _enter_say,
    "pause": _enter_pause,
    "menu": _enter_keys,
    "input": _enter_keys,
    "dial": _enter_dial,
    "enqueue": _enter_enqueue,
    "record": _enter_record,
    "hangup": _enter_hangup,
    "goto": _enter_goto,
    "set": _enter_set,
    "switch": _enter_switch,
    "hours": _enter_hours,
}


def _run(node_id: str, state: CallState, ctx: Context, actions: tuple[Action, ...]) -> _Wait:
    """Enter nodes from `node_id` until one waits or the call ends."""
    collected = list(actions)
    while True:
        # The loader rejects loops that never wait; this bounds what gets through anyway.
        if state.steps >= MAX_STEPS_PER_CALL:
            raise StepError(
                f"call {state.call_sid} passed {MAX_STEPS_PER_CALL} steps (at '{node_id}')"
            )
        node: Node = ctx.flow.nodes[node_id]
        state = state.evolve(node=node_id, steps=state.steps + 1)
        outcome = _ENTER[node.kind](node, state, ctx)
        collected.extend(outcome.actions)
        if isinstance(outcome, _Wait):
            return _Wait(outcome.state, tuple(collected))
        node_id, state = outcome.node, outcome.state


# --- Events at waiting nodes ---------------------------------------------------------------------


def _retry(
    node: MenuNode | InputNode, state: CallState, ctx: Context, message: Speech | None
) -> _Wait:
    attempts = state.attempts + 1
    if attempts > node.retries:
        return _run(node.exhausted, state.evolve(attempts=0), ctx, ())
    preface = _prompt(message, state, ctx) if message else ()
    return _gather(node, state.evolve(attempts=attempts), ctx, preface)


def _on_keys(node: Node, event: KeysPressed, state: CallState, ctx: Context) -> _Wait:
    digits = event.digits
    if isinstance(node, MenuNode):
        if not digits:
            return _retry(node, state, ctx, node.no_input)
        target = node.options.get(digits[:1])
        if target is None:
            return _retry(node, state, ctx, node.invalid)
        variables = {**state.variables, "digits": digits[:1]}
        return _run(target, state.evolve(variables=variables, attempts=0), ctx, ())
    if isinstance(node, InputNode):
        if not digits:
            return _retry(node, state, ctx, node.no_input)
        if len(digits) < node.min_digits or not digits.isdigit():
            return _retry(node, state, ctx, node.invalid)
        variables = {**state.variables, "digits": digits, node.variable: digits}
        return _run(node.next, state.evolve(variables=variables, attempts=0), ctx, ())
    raise IllegalEvent(event, state)


def _on_dial(node: Node, event: DialEnded, state: CallState, ctx: Context) -> _Wait:
    if not isinstance(node, DialNode):
        raise IllegalEvent(event, state)
    variables = {**state.variables, "dial_status": event.status}
    state = state.evolve(variables=variables)
    if event.status in ("completed", "answered"):
        if node.answered:
            return _run(node.answered, state, ctx, ())
        return _ended(state, Hangup())
    target = {"busy": node.busy, "no-answer": node.no_answer}.get(event.status, node.failed)
    return _run(target, state, ctx, ())


_QUEUE_DONE = frozenset({"bridged", "bridging-in-process", "redirected", "redirected-from-bridged"})


def _on_queue(node: Node, event: QueueLeft, state: CallState, ctx: Context) -> _Wait:
    if not isinstance(node, EnqueueNode):
        raise IllegalEvent(event, state)
    result = event.result
    if result in _QUEUE_DONE:
        # The caller spoke with an agent (or was sent elsewhere): this flow is done with them.
        return _ended(state, Hangup()) if result == "bridged" else _ended(state)
    if result == "hangup":
        return _ended(state)
    if result == "queue-full":
        return _run(node.full, state, ctx, ())
    if result == "leave" and state.leave_reason == "timed_out" and node.timed_out:
        return _run(node.timed_out, state, ctx, ())
    if result == "leave" and state.leave_reason == "left" and node.left:
        return _run(node.left, state, ctx, ())
    raise StepError(f"queue '{node.queue}' answered {result!r} (reason {state.leave_reason!r})")


def _on_recording(node: Node, event: RecordingEnded, state: CallState, ctx: Context) -> _Wait:
    if not isinstance(node, RecordNode):
        raise IllegalEvent(event, state)
    variables = {**state.variables, "recording_url": event.url}
    return _run(node.next, state.evolve(variables=variables), ctx, ())


_ON_EVENT: Mapping[type[Any], Callable[[Node, Any, CallState, Context], _Wait]] = {
    KeysPressed: _on_keys,
    DialEnded: _on_dial,
    QueueLeft: _on_queue,
    RecordingEnded: _on_recording,
}


def start(
    flow: Flow, event: CallStarted, ctx: Context, version: str
) -> tuple[CallState, tuple[Action, ...]]:
    """A new call enters the flow at its entry node."""
    result = _run(flow.entry, initial_state(flow, event, version), ctx, ())
    return result.state.evolve(seq=1), result.actions


def initial_state(flow: Flow, event: CallStarted, version: str) -> CallState:
    """A call that has not yet entered its flow."""
    state = CallState(event.call_sid, flow.name, version, flow.entry, Waiting.ENDED)
    return state.evolve(variables={"caller": event.caller, "called": event.called})


def step(state: CallState, event: Event, ctx: Context) -> tuple[CallState, tuple[Action, ...]]:
    """Take one webhook's event at the node the call waits at; `seq` moves on by one."""
    if isinstance(event, CallStarted) or EXPECTED_EVENT.get(state.waiting) is not type(event):
        raise IllegalEvent(event, state)
    node = ctx.flow.nodes.get(state.node)
    if node is None:
        raise StepError(f"node '{state.node}' is not in flow '{ctx.flow.name}'")
    result = _ON_EVENT[type(event)](node, event, state, ctx)
    return result.state.evolve(seq=state.seq + 1), result.actions


def recover(state: CallState, ctx: Context) -> tuple[CallState, tuple[Action, ...]]:
    """After a failed step: the flow's apology, then its fallback node, or goodbye."""
    on_error = ctx.flow.on_error
    if on_error.next and state.node != on_error.next:
        try:
            apology = _prompt(on_error.apology, state, ctx)
            result = _run(on_error.next, state.evolve(attempts=0), ctx, apology)
            return result.state.evolve(seq=state.seq + 1), result.actions
        except (StepError, KeyError):
            pass
    # The apology may promise the fallback ("le pasamos con un agente"): say goodbye instead.
    ended = state.evolve(waiting=Waiting.ENDED, seq=state.seq + 1)
    return ended, goodbye(ctx.flow)


def goodbye(flow: Flow) -> tuple[Action, ...]:
    """A plain apology in the flow's voice, then hang up: for a call that cannot go on."""
    speech = flow.on_error.goodbye
    assert speech.text is not None
    return Say(speech.text.render({}), speech.voice, speech.language), Hangup()


def queue_wait(
    state: CallState, queue_time: int, ctx: Context
) -> tuple[CallState, tuple[Action, ...]]:
    """What a caller hears while waiting in a queue; leaves it after `max_wait` seconds.

    The wait is counted from when the call entered the queue (Twilio's QueueTime is not sent
    on every request of the wait loop); `max_wait` is checked each time the hold music ends.
    """
    node = ctx.flow.nodes.get(state.node)
    if state.waiting is not Waiting.QUEUE or not isinstance(node, EnqueueNode):
        return state, (Leave(),)
    if state.queued_at:
        queue_time = max(queue_time, int(ctx.now.timestamp()) - state.queued_at)
    if node.max_wait is not None and queue_time >= node.max_wait:
        return state.evolve(leave_reason="timed_out"), (Leave(),)
    music: tuple[Prompt, ...]
    if node.hold_music:
        music = (Play(_resolve(node.hold_music, ctx)),)
    else:
        remaining = node.max_wait - queue_time if node.max_wait is not None else 20
        music = (Pause(max(1, min(20, remaining))),)
    if node.leave_key:
        return state, (Gather(music, 1, 1, "", Route.QUEUE_KEY),)
    return state, music


def queue_key(state: CallState, digits: str, ctx: Context) -> tuple[CallState, tuple[Action, ...]]:
    """A key pressed during hold music: the leave key takes the caller out of the queue."""
    node = ctx.flow.nodes.get(state.node)
    if (
        state.waiting is Waiting.QUEUE
        and isinstance(node, EnqueueNode)
        and node.leave_key
        and digits[:1] == node.leave_key
    ):
        return state.evolve(leave_reason="left"), (Leave(),)
    return state, (Redirect(Route.QUEUE_WAIT),)
