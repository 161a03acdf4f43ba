"""Checks that recorded calls are announced first: the recording notice is a say node, and
no caller can reach a recorded dial without passing it."""

from __future__ import annotations

from collections.abc import Iterator

from flowpbx.errors import Problem, Severity
from flowpbx.language.flow import DialNode, SayNode
from flowpbx.language.graph_checks import walk_from
from flowpbx.language.outline import Outline, problem
from flowpbx.language.yamlsource import Path

EXAMPLE_NOTICE = "Esta llamada puede ser grabada."
"""What a notice may say, quoted in messages for flow authors."""

_ERROR_START = "after an error"
"""How a way in that starts at the error fallback (`on_error.next`) is shown."""


def _recorded_dials(outline: Outline) -> list[DialNode]:
    dials = [n for n in outline.nodes.values() if isinstance(n, DialNode) and n.record]
    return sorted(dials, key=lambda node: (node.mark.line, node.id))


def _names(dials: list[DialNode]) -> str:
    quoted = [f"'{dial.id}'" for dial in dials[:3]]
    if len(dials) > 3:
        return f"dials {', '.join(quoted)} and {len(dials) - 3} more record"
    if len(dials) > 1:
        return f"dials {', '.join(quoted[:-1])} and {quoted[-1]} record"
    return f"dial {quoted[0]} records"


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
    """A flow that records dials names the node that tells callers so."""
    dials = _recorded_dials(outline)
    if not dials or outline.recording.notice is not None:
        return
    where: Path = ("recording",) if ("recording",) in outline.marks.keys else ("nodes", dials[0].id)
    yield problem(
        outline,
        where,
        Severity.WARNING,
        "no-recording-notice",
        f"{_names(dials)} the call, but the flow names no recording notice: in Spain callers "
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


def check_notice_heard(outline: Outline) -> Iterator[Problem]:
    """Every way from the entry (or the error fallback) to a recorded dial passes the notice."""
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
    for dial in _recorded_dials(outline):
        if dial.id not in came_from:
            continue
        yield problem(
            outline,
            ("nodes", dial.id),
            Severity.WARNING,
            "recording-notice",
            f"dial '{dial.id}' records the call, but callers can reach it without hearing the "
            f"recording notice ('{notice}'), for example "
            f"{_way_in(came_from, dial.id, outline.entry)}: in Spain callers must be told first, "
            f"e.g. '{EXAMPLE_NOTICE}'; make that way pass through '{notice}', "
            "or write 'record: false' on the dial",
            key=True,
        )
