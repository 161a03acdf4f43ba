"""Entering a node: one handler per node kind, chosen by a `match` that the type checker
proves complete. Nodes that need nothing from the caller go on (`Go`); the others wait."""

from __future__ import annotations

from typing import assert_never

from flowpbx.engine.actions import Dial, Enqueue, Gather, Hangup, Pause, Record
from flowpbx.engine.call_events import (
    CallEnded,
    CaseMatched,
    DialStarted,
    EndReason,
    HoursChecked,
    QueueJoined,
)
from flowpbx.engine.hours import hours_at, hours_target
from flowpbx.engine.state import CallState, Waiting
from flowpbx.engine.walk import Go, Outcome, Wait, Walk, prompt, resolve
from flowpbx.language.flow import (
    DialNode,
    EnqueueNode,
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
    SwitchNode,
)


def enter(node: Node, state: CallState, walk: Walk) -> Outcome:
    """What entering `node` does: the actions it adds, and where the call goes or waits."""
    match node:
        case SayNode():
            walk.play(*prompt(node.speech, state, walk.ctx, node.loop))
            return Go(node.next, state)
        case PauseNode():
            walk.play(Pause(node.seconds))
            return Go(node.next, state)
        case MenuNode() | InputNode():
            return gather(node, state.evolve(attempts=0), walk)
        case DialNode():
            return _dial(node, state, walk)
        case EnqueueNode():
            return _enqueue(node, state, walk)
        case RecordNode():
            return _record(node, state, walk)
        case HangupNode():
            if node.goodbye:
                walk.play(*prompt(node.goodbye, state, walk.ctx))
            return end(state, walk, EndReason.HANGUP, Hangup())
        case GotoNode():
            return _goto(node, state)
        case SetNode():
            variables = dict(state.variables)
            for name, template in node.values.items():
                variables[name] = template.render(variables)
            return Go(node.next, state.evolve(variables=variables))
        case SwitchNode():
            value = state.variables.get(node.variable, "")
            number, target = next(
                ((i, c.next) for i, c in enumerate(node.cases, 1) if c.matches(value)),
                (0, node.default),
            )
            walk.note(CaseMatched(node=node.id, case=number, target=target))
            return Go(target, state)
        case HoursNode():
            status, holiday = hours_at(node, walk.ctx.now)
            forced = walk.ctx.hours_override is not None
            if walk.ctx.hours_override is not None:
                status = walk.ctx.hours_override
            walk.note(
                HoursChecked(node=node.id, status=str(status), holiday=holiday, forced=forced)
            )
            return Go(hours_target(node, status), state)
        case _:
            assert_never(node)


def end(state: CallState, walk: Walk, how: EndReason, *actions: Hangup) -> Wait:
    """The flow is over for this call."""
    walk.play(*actions)
    walk.note(CallEnded(node=state.node, how=how))
    return Wait(state.evolve(waiting=Waiting.ENDED))


def gather(node: MenuNode | InputNode, state: CallState, walk: Walk) -> Wait:
    """Ask for keys with the node's prompt and wait for them."""
    prompts = prompt(node.prompt, state, walk.ctx)
    if isinstance(node, MenuNode):
        walk.play(Gather(prompts, node.timeout, 1, ""))
    else:
        walk.play(Gather(prompts, node.timeout, node.max_digits, node.finish_on_key))
    return Wait(state.evolve(node=node.id, waiting=Waiting.KEYS))


def _dial(node: DialNode, state: CallState, walk: Walk) -> Outcome:
    targets = tuple(resolve(t, walk.ctx) for t in node.targets)
    caller_id = resolve(node.caller_id, walk.ctx) if node.caller_id else None
    walk.play(Dial(targets, caller_id, node.timeout, node.record, node.channels))
    walk.note(DialStarted(node=node.id, targets=targets, record=node.record))
    return Wait(state.evolve(waiting=Waiting.DIAL))


def _enqueue(node: EnqueueNode, state: CallState, walk: Walk) -> Outcome:
    queued_at = int(walk.ctx.now.timestamp())
    walk.play(Enqueue(node.queue, walk.ctx.flow.name, node.id))
    walk.note(QueueJoined(node=node.id, queue=node.queue))
    waiting = state.evolve(
        waiting=Waiting.QUEUE, leave_reason="", queued_at=queued_at, announced_at=0, queue_phase=""
    )
    return Wait(waiting)


def _record(node: RecordNode, state: CallState, walk: Walk) -> Outcome:
    if node.prompt:
        walk.play(*prompt(node.prompt, state, walk.ctx))
    walk.play(Record(node.max_length, node.timeout, node.beep, node.finish_on_key, node.transcribe))
    return Wait(state.evolve(waiting=Waiting.RECORDING))


def _goto(node: GotoNode, state: CallState) -> Outcome:
    visits = dict(state.visits)
    visits[node.id] = visits.get(node.id, 0) + 1
    state = state.evolve(visits=visits)
    if node.limit is not None and visits[node.id] > node.limit:
        assert node.exhausted is not None
        return Go(node.exhausted, state)
    return Go(node.target, state)
