"""Checks that enqueue nodes and the file's `queues` section fit together: each node waits in a
declared queue, offers callbacks only where the queue allows them, gives each of its keys one
meaning, and every declared queue is used."""

from __future__ import annotations

from collections.abc import Iterator

from flowpbx.errors import Problem, Severity
from flowpbx.language.flow import EnqueueNode
from flowpbx.language.outline import Outline, did_you_mean, problem


def _enqueue_nodes(outline: Outline) -> Iterator[EnqueueNode]:
    return (node for node in outline.nodes.values() if isinstance(node, EnqueueNode))


def check_queue_declared(outline: Outline) -> Iterator[Problem]:
    """Every enqueue node names a queue declared in the same file."""
    declared = sorted(outline.queue_names)
    listed = ", ".join(declared) if declared else "none; add a 'queues:' section to the file"
    for node in _enqueue_nodes(outline):
        if node.queue in outline.queue_names:
            continue
        yield problem(
            outline,
            ("nodes", node.id, "queue"),
            Severity.ERROR,
            "unknown-queue",
            f"node '{node.id}': queue '{node.queue}' is not declared in this file's 'queues' "
            f"section (declared: {listed})" + did_you_mean(node.queue, declared),
        )


def check_queue_keys(outline: Outline) -> Iterator[Problem]:
    """A callback key is offered only by a queue that calls back, and differs from the leave
    key (one key, one meaning)."""
    for node in _enqueue_nodes(outline):
        if node.callback_key is None:
            continue
        where = ("nodes", node.id, "callback_key")
        if node.callback_key == node.leave_key:
            yield problem(
                outline,
                where,
                Severity.ERROR,
                "same-key",
                f"node '{node.id}': 'leave_key' and 'callback_key' are both "
                f"'{node.callback_key}'; give each its own key",
            )
        queue = outline.queues.get(node.queue)
        if queue is not None and not queue.callback:
            yield problem(
                outline,
                where,
                Severity.ERROR,
                "no-callback",
                f"node '{node.id}': 'callback_key' lets callers ask to be called back, but "
                f"queue '{queue.name}' does not call back; write 'callback: true' under "
                f"queues.{queue.name}, or remove 'callback_key'",
            )


def check_queue_outcomes(outline: Outline) -> Iterator[Problem]:
    """`timed_out` is given only when the queue has a `max_wait` to reach."""
    for node in _enqueue_nodes(outline):
        queue = outline.queues.get(node.queue)
        if node.timed_out and queue is not None and queue.max_wait is None:
            yield problem(
                outline,
                ("nodes", node.id, "timed_out"),
                Severity.WARNING,
                "unused-outcome",
                f"node '{node.id}': 'timed_out' is never taken: queue '{queue.name}' has no "
                "'max_wait' (callers wait with no limit)",
                key=True,
            )


def check_queue_used(outline: Outline) -> Iterator[Problem]:
    """Every declared queue is used by an enqueue node."""
    if not outline.is_complete:
        return
    used = {node.queue for node in _enqueue_nodes(outline)}
    for name in outline.queues:
        if name not in used:
            yield problem(
                outline,
                ("queues", name),
                Severity.WARNING,
                "unused-queue",
                f"queue '{name}' is never used: no enqueue node names it",
                key=True,
            )
