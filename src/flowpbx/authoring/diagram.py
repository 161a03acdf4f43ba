"""A flow as a diagram: its nodes labelled by kind and what they say, its outcomes as labelled
edges, and marks for the entry, unreachable nodes and dead ends; renderers draw it."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from flowpbx.language.flow import (
    CaseTest,
    DialNode,
    Edge,
    EdgeKind,
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
    TimeRange,
)
from flowpbx.language.templates import Template

TEXT_WIDTH = 40
"""Characters of what a node says shown in its label."""

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class Marking(StrEnum):
    """Something an author should notice about a node."""

    ENTRY = "entry"
    """Calls start here."""
    UNREACHABLE = "unreachable"
    """No way leads here from the entry or the error fallback: callers never hear it."""
    DEAD_END = "dead end"
    """No way from here leads to an end of the call (see `ENDS_CALL`): callers can only go
    round until they hang up themselves."""


MARK_NOTES: Mapping[Marking, str] = {
    Marking.UNREACHABLE: "never reached",
    Marking.DEAD_END: "dead end: the call cannot end from here",
}
"""The line a renderer adds to a marked node's label, so marks show even without colour."""


@dataclass(frozen=True, slots=True)
class DiagramNode:
    """A node as drawn: its id, kind, a few lines on what it does, and its marks."""

    id: str
    kind: str
    summary: tuple[str, ...]
    marks: frozenset[Marking] = frozenset()

    @property
    def label(self) -> str:
        """The kind and the start of what the node says: 'say: “Bienvenido a…”'."""
        return f"{self.kind}: {self.summary[0]}" if self.summary else self.kind

    def label_lines(self) -> tuple[str, ...]:
        """Every line of the node's box: id, label, further detail, then the marks' notes."""
        notes = tuple(note for mark, note in MARK_NOTES.items() if mark in self.marks)
        return (self.id, self.label, *self.summary[1:], *notes)


@dataclass(frozen=True, slots=True)
class DiagramEdge:
    """Every outcome of `source` that leads to `target`, by key ('1', '*') or outcome name."""

    source: str
    target: str
    labels: tuple[str, ...]

    @property
    def label(self) -> str:
        return ", ".join(self.labels)


@dataclass(frozen=True, slots=True)
class Diagram:
    """What to draw for one flow; `on_error` is where a failed step sends the call, if anywhere."""

    name: str
    entry: str
    on_error: str | None
    nodes: tuple[DiagramNode, ...]
    edges: tuple[DiagramEdge, ...]

    def node(self, node_id: str) -> DiagramNode:
        return next(n for n in self.nodes if n.id == node_id)


def shorten(text: str, width: int = TEXT_WIDTH) -> str:
    """`text` on one line, cut after a whole word and marked '…' when longer than `width`."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    cut = flat[:width]
    space = cut.rfind(" ")
    if space > width // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:") + "…"


def spoken(template: Template) -> str:
    """A text as the caller hears it, its variables written as in the flow file: {numero}."""
    return "".join(
        part if isinstance(part, str) else f"{{{part.name}{':digits' if part.spell else ''}}}"
        for part in template.parts
    )


def _said(speech: Speech | None) -> str:
    """The start of what a speech says, in quotes, or the audio file it plays."""
    if speech is None:
        return ""
    if speech.text is not None:
        return f"“{shorten(spoken(speech.text))}”"
    if speech.play is not None:
        return f"plays {shorten(speech.play.rsplit('/', 1)[-1])}"
    return ""


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _ranges(ranges: tuple[TimeRange, ...]) -> str:
    return ", ".join(f"{_clock(r.start)}-{_clock(r.end)}" for r in ranges)


def weekly_summary(weekly: tuple[tuple[TimeRange, ...], ...]) -> str:
    """Opening hours by runs of days with the same hours: 'Mon-Fri 09:00-19:00; Sat 10:00-14:00'."""
    runs: list[tuple[int, int, tuple[TimeRange, ...]]] = []
    for day, ranges in enumerate(weekly):
        if runs and runs[-1][1] == day - 1 and runs[-1][2] == ranges:
            runs[-1] = (runs[-1][0], day, ranges)
        else:
            runs.append((day, day, ranges))
    parts = [
        f"{DAY_NAMES[first]}{'' if first == last else '-' + DAY_NAMES[last]} {_ranges(ranges)}"
        for first, last, ranges in runs
        if ranges
    ]
    return "; ".join(parts) or "always closed"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(node: Node) -> tuple[str, ...]:
    """What a node does, in a few short lines: what it says, the number it dials, its queue."""
    match node:
        case HoursNode():
            holidays = f", {_plural(len(node.holidays), 'holiday')}" if node.holidays else ""
            return (weekly_summary(node.weekly), f"{node.timezone}{holidays}")
        case SayNode() | HangupNode():
            said = _said(node.speech if isinstance(node, SayNode) else node.goodbye)
            return (said,) if said else ()
        case MenuNode() | InputNode():
            return (_said(node.prompt),)
        case RecordNode():
            return (_said(node.prompt) or "a message",)
        case DialNode():
            return (shorten(", ".join(node.targets)),)
        case EnqueueNode():
            return (f"queue {node.queue}",)
        case PauseNode():
            return (f"{node.seconds} s",)
        case SetNode():
            values = ", ".join(f"{name} = {value.source}" for name, value in node.values.items())
            return (shorten(values),)
        case SwitchNode():
            return (f"on {node.variable}",)
        case GotoNode():
            return ()


def edge_label(node: Node, edge: Edge) -> str | None:
    """How the diagram names an outcome: the key pressed, the case, or the outcome's own key
    in the flow file ('no_answer', 'closed'); None for a node's only way on."""
    head = edge.path[0]
    if head == "options":
        return str(edge.path[1])
    if isinstance(node, SwitchNode) and head == "cases":
        case = node.cases[int(edge.path[1])]
        test = "=" if case.test is CaseTest.EQUALS else "starts with"
        return shorten(f"{test} {' / '.join(case.values)}", 24)
    if isinstance(node, GotoNode) and head == "target":
        return f"up to {node.limit} times" if edge.kind is EdgeKind.BOUNDED else None
    if head == "next" and not isinstance(node, InputNode):
        return None
    return str(head)


def _edges(node: Node) -> list[DiagramEdge]:
    """The node's outcomes, one edge per target, the outcomes to one target merged."""
    labels: dict[str, list[str]] = {}
    for edge in node.edges():
        label = edge_label(node, edge)
        names = labels.setdefault(edge.target, [])
        if label is not None and label not in names:
            names.append(label)
    return [DiagramEdge(node.id, target, tuple(names)) for target, names in labels.items()]


ENDS_CALL = (HangupNode, EnqueueNode)
"""Nodes at which a call can end: a hangup, and a queue (an agent takes the call). A dial can
too, when it has no `answered` way on: see `ends_call`."""


def ends_call(node: Node) -> bool:
    """Whether the call can end at `node` without the caller hanging up."""
    return isinstance(node, ENDS_CALL) or (isinstance(node, DialNode) and node.answered is None)


def _reached(origins: Iterable[str | None], graph: Mapping[str, Iterable[str]]) -> set[str]:
    """Every node reached from `origins` along `graph`."""
    seen = {origin for origin in origins if origin is not None and origin in graph}
    queue = deque(seen)
    while queue:
        for target in graph[queue.popleft()]:
            if target in graph and target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def marks(flow: Flow) -> dict[str, frozenset[Marking]]:
    """Each node's marks. Unreachable: not reached from the entry or the error fallback. Dead
    end: no way from it leads to a node where the call can end (`ends_call`)."""
    onwards = {node_id: [e.target for e in node.edges()] for node_id, node in flow.nodes.items()}
    back: dict[str, list[str]] = {node_id: [] for node_id in flow.nodes}
    for node_id, targets in onwards.items():
        for target in targets:
            if target in back:
                back[target].append(node_id)
    reachable = _reached((flow.entry, flow.on_error.next), onwards)
    can_end = _reached((n for n, node in flow.nodes.items() if ends_call(node)), back)
    result: dict[str, frozenset[Marking]] = {}
    for node_id in flow.nodes:
        found = {Marking.ENTRY} if node_id == flow.entry else set()
        if node_id not in reachable:
            found.add(Marking.UNREACHABLE)
        if node_id not in can_end:
            found.add(Marking.DEAD_END)
        result[node_id] = frozenset(found)
    return result


def diagram(flow: Flow) -> Diagram:
    """The diagram of `flow`, its nodes in the order of the flow file."""
    marked = marks(flow)
    nodes = tuple(
        DiagramNode(node.id, node.kind, summary(node), marked[node.id])
        for node in flow.nodes.values()
    )
    edges = tuple(edge for node in flow.nodes.values() for edge in _edges(node))
    return Diagram(flow.name, flow.entry, flow.on_error.next, nodes, edges)
