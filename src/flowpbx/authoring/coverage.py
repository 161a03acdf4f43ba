"""Which nodes and outcomes of a flow scenario calls went through, read from their call events:
an outcome is one of a node's `edges()`, told apart by the event that chose it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from flowpbx.engine.call_events import (
    CallEvent,
    CallRecovered,
    CaseMatched,
    DialFinished,
    FallbackTaken,
    HoursChecked,
    InputCollected,
    NodeEntered,
    OptionChosen,
    QueueExit,
    QueueExited,
)
from flowpbx.engine.events import DialResult
from flowpbx.errors import Mark
from flowpbx.language.flow import Edge, EdgePath, Flow, InputNode, MenuNode
from flowpbx.language.yamlsource import parse

DIAL_WAYS: dict[DialResult, EdgePath] = {
    DialResult.ANSWERED: ("answered",),
    DialResult.BUSY: ("busy",),
    DialResult.NO_ANSWER: ("no_answer",),
    DialResult.FAILED: ("failed",),
    DialResult.CANCELED: ("failed",),
}
QUEUE_WAYS: dict[QueueExit, EdgePath] = {
    QueueExit.FULL: ("full",),
    QueueExit.ERROR: ("full",),
    QueueExit.TIMED_OUT: ("timed_out",),
    QueueExit.LEFT: ("left",),
    QueueExit.CALLBACK: ("callback",),
}
"""The outcome each way out of a queue takes (an agent or a hang-up ends the call instead)."""

Outcome = tuple[str, EdgePath]
"""A node's id and the path of one of its edges."""


def _choice(event: CallEvent) -> tuple[str, EdgePath] | None:
    """The node an event decides for, and the outcome it picks."""
    match event:
        case OptionChosen():
            return event.node, ("options", event.key)
        case CaseMatched():
            return event.node, ("cases", event.case - 1, "next") if event.case else ("default",)
        case InputCollected():
            return event.node, ("next",)
        case HoursChecked():
            return event.node, (event.status,)
        case DialFinished():
            return event.node, DIAL_WAYS[event.result]
        case QueueExited() if event.reason in QUEUE_WAYS:
            return event.node, QUEUE_WAYS[event.reason]
        case _:
            return None


def _edge(flow: Flow, node_id: str, target: str, chosen: EdgePath | None) -> Edge | None:
    """The edge of `node_id` the call took to `target`."""
    node = flow.nodes.get(node_id)
    if node is None:
        return None
    candidates = [edge for edge in node.edges() if edge.target == target]
    picked = [edge for edge in candidates if edge.path == chosen]
    if not picked and chosen == ("timed_out",):  # a queue without timed_out goes on by full
        picked = [edge for edge in candidates if edge.path == ("full",)]
    if not picked and chosen is None and isinstance(node, (MenuNode, InputNode)):
        picked = [edge for edge in candidates if edge.path == ("exhausted",)]
    found = picked or candidates
    return found[0] if found else None


def taken(flow: Flow, events: Iterable[CallEvent]) -> tuple[set[str], set[Outcome]]:
    """The nodes one call entered and the outcomes it took, from its events in order."""
    nodes: set[str] = set()
    outcomes: set[Outcome] = set()
    current: str | None = None
    chosen: EdgePath | None = None
    for event in events:
        decided = _choice(event)
        if decided is not None and decided[0] == current:
            chosen = decided[1]
        if isinstance(event, FallbackTaken | CallRecovered):
            current = None  # the flow's on_error, not an outcome of the node
        if isinstance(event, NodeEntered):
            nodes.add(event.node)
            edge = _edge(flow, current, event.node, chosen) if current else None
            if current is not None and edge is not None:
                outcomes.add((current, edge.path))
            current, chosen = event.node, None
    return nodes, outcomes


@dataclass(frozen=True, slots=True)
class Missed:
    """A node or an outcome no scenario took, and where the flow file says it."""

    what: str
    mark: Mark


@dataclass(frozen=True, slots=True)
class FlowCoverage:
    flow: Flow
    nodes: frozenset[str]
    outcomes: frozenset[Outcome]

    @property
    def all_outcomes(self) -> list[tuple[str, Edge]]:
        return [(node.id, edge) for node in self.flow.nodes.values() for edge in node.edges()]

    @property
    def node_counts(self) -> tuple[int, int]:
        return len(self.nodes & set(self.flow.nodes)), len(self.flow.nodes)

    @property
    def outcome_counts(self) -> tuple[int, int]:
        every = {(node, edge.path) for node, edge in self.all_outcomes}
        return len(self.outcomes & every), len(every)

    def below(self, percent: float) -> bool:
        """Whether the nodes or the outcomes covered are under `percent`."""
        return any(
            done * 100 < percent * total for done, total in (self.node_counts, self.outcome_counts)
        )

    def missed(self) -> tuple[list[Missed], list[Missed]]:
        """The nodes never entered and the outcomes never taken, with their place in the flow."""
        document = parse(Path(self.flow.source).read_text("utf-8"))
        nodes = [
            Missed(f"node '{node.id}'", node.mark)
            for node in self.flow.nodes.values()
            if node.id not in self.nodes
        ]
        outcomes = [
            Missed(
                f"{node} {edge.label} → {edge.target}",
                document.marks.key(("nodes", node, *edge.path)),
            )
            for node, edge in self.all_outcomes
            if (node, edge.path) not in self.outcomes
        ]
        return nodes, outcomes

    def summary(self) -> str:
        """'seguros: 28/28 nodes (100%), 51/51 outcomes (100%)'."""
        parts = []
        for (done, total), word in ((self.node_counts, "nodes"), (self.outcome_counts, "outcomes")):
            parts.append(f"{done}/{total} {word} ({percent(done, total)}%)")
        return f"{self.flow.name}: {', '.join(parts)}"


def percent(done: int, total: int) -> int:
    """Whole percent, rounded down (99.6% is not shown as 100%)."""
    return 100 if total == 0 else math.floor(done * 100 / total)


def coverage(flow: Flow, calls: Iterable[Iterable[CallEvent]]) -> FlowCoverage:
    """What the calls (each its events in order) covered of `flow`."""
    nodes: set[str] = set()
    outcomes: set[Outcome] = set()
    for events in calls:
        entered, took = taken(flow, events)
        nodes |= entered
        outcomes |= took
    return FlowCoverage(flow, frozenset(nodes), frozenset(outcomes))
