"""Checks that recorded calls are announced first: the recording notice is a say node, and
no caller can reach a recorded step without passing it.

Recorded steps are the dials that record, and, when the flow records its dials
(`recording.dials`), its enqueue nodes too: the calls agents take from a queue are recorded
like those to a department.
"""

from __future__ import annotations

from collections.abc import Iterator

from flowpbx.errors import Problem, Severity
from flowpbx.language.flow import DialNode, EnqueueNode, SayNode
from flowpbx.language.graph_checks import walk_from
from flowpbx.language.outline import Outline, problem
from flowpbx.language.yamlsource import Path

EXAMPLE_NOTICE = "Esta llamada puede ser grabada."
"""What a notice may say, quoted in messages for flow authors."""

_ERROR_START = "after an error"
"""How a way in that starts at the error fallback (`on_error.next`) is shown."""


Recorded = DialNode | EnqueueNode


def _recorded(outline: Outline) -> list[Recorded]:
    """The steps whose calls are recorded, in the order they are written."""
    steps: list[Recorded] = [
        node
        for node in outline.nodes.values()
        if (isinstance(node, DialNode) and node.record)
        or (isinstance(node, EnqueueNode) and outline.recording.dials)
    ]
    return sorted(steps, key=lambda node: (node.mark.line, node.id))


def _names(steps: list[Recorded]) -> str:
    kinds = {step.kind for step in steps}
    noun = "dial" if kinds == {"dial"} else "enqueue node" if kinds == {"enqueue"} else "step"
    quoted = [f"'{step.id}'" for step in steps[:3]]
    if len(steps) > 3:
        return f"{noun}s {', '.join(quoted)} and {len(steps) - 3} more record"
    if len(steps) > 1:
        return f"{noun}s {', '.join(quoted[:-1])} and {quoted[-1]} record"
    return f"{noun} {quoted[0]} records"


def check_notice_kind(outline: Outline) -> Iterator[Problem]:
    """The recording notice is a say node: a menu's prompt, for one, stops at the first key."""
    notice = outline.recording.notice
    node = outline.nodes.get(notice) if notice else None
    if node is None or isinstance(node, SayNode):
        return
    yield problem(
        outline,
        ("recording", "notice"),
        Severity.ERROR,
        "notice-kind",
        f"'recording.notice' names node '{node.id}' (type: {node.kind}); the notice must be "
        "a say node, so that every caller hears it in full",
    )


def check_notice_named(outline: Outline) -> Iterator[Problem]:
    """A flow that records calls names the node that tells callers so."""
    steps = _recorded(outline)
    if not steps or outline.recording.notice is not None:
        return
    where: Path = ("recording",) if ("recording",) in outline.marks.keys else ("nodes", steps[0].id)
    yield problem(
        outline,
        where,
        Severity.WARNING,
        "no-recording-notice",
        f"{_names(steps)} the call, but the flow names no recording notice: in Spain callers "
        f"must be told first; add a say node that tells them, e.g. '{EXAMPLE_NOTICE}', "
        "and name it under 'recording:' as 'notice: <node>'",
        key=True,
    )


def _way_in(came_from: dict[str, str | None], node_id: str, entry: str | None) -> str:
    """The nodes on the way to `node_id`, from where the call began: a → b → c."""
    way = [node_id]
    while (previous := came_from[way[-1]]) is not None:
        way.append(previous)
    if way[-1] != entry:
        way.append(_ERROR_START)
    return " → ".join(reversed(way))


def _bypass(step: Recorded, notice: str, way: str) -> str:
    """The warning for a recorded step reached by `way` without passing `notice`."""
    tell = f"in Spain callers must be told first, e.g. '{EXAMPLE_NOTICE}'"
    if isinstance(step, EnqueueNode):
        return (
            f"enqueue node '{step.id}' puts callers through to agents, and those calls are "
            "recorded ('recording: dials: true'), but callers can reach it without hearing the "
            f"recording notice ('{notice}'), for example {way}: {tell}; make that way pass "
            f"through '{notice}'"
        )
    return (
        f"dial '{step.id}' records the call, but callers can reach it without hearing the "
        f"recording notice ('{notice}'), for example {way}: {tell}; make that way pass through "
        f"'{notice}', or write 'record: false' on the dial"
    )


def check_notice_heard(outline: Outline) -> Iterator[Problem]:
    """Every way from the entry (or the error fallback) to a recorded step passes the notice."""
    notice = outline.recording.notice
    if not outline.is_complete or notice is None:
        return
    if not isinstance(outline.nodes.get(notice), SayNode):
        return  # reported by check_references or check_notice_kind
    # A step can fail anywhere, even before the notice, and go on at the error fallback; ways
    # from the entry are shown first, as they are the ones most callers take.
    came_from = {
        **walk_from(outline, (outline.on_error_next,), avoiding=notice),
        **walk_from(outline, (outline.entry,), avoiding=notice),
    }
    for step in _recorded(outline):
        if step.id not in came_from:
            continue
        way = _way_in(came_from, step.id, outline.entry)
        yield problem(
            outline,
            ("nodes", step.id),
            Severity.WARNING,
            "recording-notice",
            _bypass(step, notice, way),
            key=True,
        )
