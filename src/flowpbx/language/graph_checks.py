"""Checks on the shape of a flow's graph: dangling references, unreachable nodes, inputs with
no way out, loops that never wait for the caller."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping

from flowpbx.errors import Problem, Severity
from flowpbx.language.flow import (
    Edge,
    EdgeKind,
    InputNode,
    MenuNode,
)
from flowpbx.language.outline import NODE_ID, Outline, did_you_mean, problem
from flowpbx.language.schema import raw_references


def check_references(outline: Outline) -> Iterator[Problem]:
    """Every node named as an outcome, the entry, the error fallback or the recording notice
    exists."""
    ids = outline.node_ids
    named: tuple[tuple[tuple[str, ...], str | None], ...] = (
        (("entry",), outline.entry),
        (("on_error", "next"), outline.on_error_next),
        (("recording", "notice"), outline.recording.notice),
    )
    for path, target in named:
        if target is not None and target not in ids:
            yield problem(
                outline,
                path,
                Severity.ERROR,
                "unknown-node",
                f"'{'.'.join(map(str, path))}' names node '{target}', which does not exist"
                + did_you_mean(target, ids),
            )
    for node in outline.nodes.values():
        for edge in node.edges():
            if edge.target and edge.target not in ids:
                yield problem(
                    outline,
                    ("nodes", node.id, *edge.path),
                    Severity.ERROR,
                    "unknown-node",
                    f"node '{node.id}': {edge.label} goes to '{edge.target}', which does not exist"
                    + did_you_mean(edge.target, ids),
                )
    for node_id, raw in outline.broken.items():
        for ref_path, target in raw_references(raw):
            if target not in ids and NODE_ID.fullmatch(target):
                label = Edge(ref_path, target).label
                yield problem(
                    outline,
                    ("nodes", node_id, *ref_path),
                    Severity.ERROR,
                    "unknown-node",
                    f"node '{node_id}': {label} goes to '{target}', which does not exist"
                    + did_you_mean(target, ids),
                )


def walk_from(
    outline: Outline, origins: Iterable[str | None], *, avoiding: str | None = None
) -> dict[str, str | None]:
    """Every node reached from `origins` by following every outcome, without entering
    `avoiding`: each with the node it was first reached from (None for an origin), so that
    following them back gives a shortest way in."""
    came_from: dict[str, str | None] = {}
    queue: deque[str] = deque()
    for origin in origins:
        if origin is None or origin not in outline.nodes or origin == avoiding:
            continue
        if origin not in came_from:
            came_from[origin] = None
            queue.append(origin)
    while queue:
        node_id = queue.popleft()
        for edge in outline.nodes[node_id].edges():
            target = edge.target
            if target in outline.nodes and target != avoiding and target not in came_from:
                came_from[target] = node_id
                queue.append(target)
    return came_from


def check_reachable(outline: Outline) -> Iterator[Problem]:
    """Every node can be reached from the entry (or the error fallback)."""
    if not outline.is_complete or outline.entry not in outline.nodes:
        return
    seen = walk_from(outline, (outline.entry, outline.on_error_next))
    for node_id in outline.nodes:
        if node_id not in seen:
            yield problem(
                outline,
                ("nodes", node_id),
                Severity.WARNING,
                "unreachable",
                f"node '{node_id}' is never reached: no other node leads to it",
                key=True,
            )


def check_input_paths(outline: Outline) -> Iterator[Problem]:
    """Menus and inputs say where the call goes when the caller presses nothing."""
    for node in outline.nodes.values():
        if isinstance(node, MenuNode | InputNode) and not node.exhausted:
            yield problem(
                outline,
                ("nodes", node.id),
                Severity.ERROR,
                "no-input-path",
                f"node '{node.id}': no 'exhausted' node for when the caller presses nothing "
                f"or a wrong key {node.retries + 1} time(s); add e.g. 'exhausted: agente'",
                key=True,
            )


def _strongly_connected(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative so that long chains of nodes do not hit recursion limits."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            successors = graph[node]
            if child < len(successors):
                work.append((node, child + 1))
                nxt = successors[child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def check_loops(outline: Outline) -> Iterator[Problem]:
    """Every loop waits for the caller's keys or passes a goto with a limit."""
    graph: dict[str, list[str]] = {node_id: [] for node_id in outline.nodes}
    for node in outline.nodes.values():
        for edge in node.edges():
            if edge.kind is EdgeKind.STEP and edge.target in graph:
                graph[node.id].append(edge.target)
    for component in _strongly_connected(graph):
        first = component[0]
        if len(component) == 1 and first not in graph[first]:
            continue
        members = sorted(component, key=lambda n: (outline.nodes[n].mark.line, n))
        cycle = " → ".join([*members, members[0]])
        yield problem(
            outline,
            ("nodes", members[0]),
            Severity.ERROR,
            "unbounded-loop",
            f"nodes {cycle} can loop forever without the caller pressing a key; "
            "add a goto with a 'limit' to the loop, or end it",
            key=True,
        )
