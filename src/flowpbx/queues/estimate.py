"""The estimated wait (EWT) a caller is told: from their place in the queue, the agents serving
it and what the queue has learned (handle time, abandonment). Pure arithmetic, no I/O."""

from __future__ import annotations

import math

from flowpbx.queues.model import Figures

MAX_ABANDON_RATE = 0.9
"""The abandonment rate is capped here: a queue where nearly everyone hangs up would otherwise
shrink every queue ahead of a caller to nothing and promise waits of zero."""

_EPSILON = 1e-9
"""Slack for float noise: 1 + 10 * 0.9 may land a hair above 10, which must not cost a round."""


def handle_time(figures: Figures, default_handle: float) -> float:
    """Seconds an agent spends per call (talk + wrap-up): the learned mean, or the queue's
    configured `handle_time` until one call has completed. Never negative."""
    mean = figures.handle_time
    return max(0.0, default_handle if mean is None else mean)


def abandon_rate(figures: Figures) -> float:
    """The learned share of callers who leave before an agent answers, within
    [0, MAX_ABANDON_RATE]."""
    return min(max(figures.abandon_rate, 0.0), MAX_ABANDON_RATE)


def effective_position(position: int, figures: Figures) -> float:
    """How many callers, counting this one, an agent is expected to serve before this caller
    is answered: each of the `position - 1` callers ahead stays only with probability
    `1 - a`, and a caller who hangs up delays nobody."""
    return 1 + (position - 1) * (1 - abandon_rate(figures))


def estimate_wait(
    position: int,
    *,
    serving: int,
    free: int,
    figures: Figures,
    default_handle: float,
) -> int | None:
    """Seconds the caller at `position` (1 = front) is expected to wait before an agent answers.

    `serving` counts the agents serving the queue (available, busy or in wrap-up; not offline)
    and `free` those who could take a call right now (clamped to 0..serving). None when no
    agent serves the queue: no number would be honest, so the caller is told that instead.

    With p' the effective position (callers expected to abandon removed), p' <= free means an
    agent is free for this caller: 0. Otherwise the busy agents answer the rest in rounds of
    `serving` callers; this caller is in round r = ceil((p' - free) / serving). Agents already
    on a call are on average half way through it, so the first round takes h/2 and each later
    one a whole h: EWT = (r - 1/2) * h, rounded to the nearest second (halves up).

    Raises ValueError for a position below 1 (a caller not waiting has no wait) or a negative
    number of agents.
    """
    if position < 1:
        raise ValueError(f"position must be 1 or more, got {position}")
    if serving < 0:
        raise ValueError(f"serving must be 0 or more, got {serving}")
    if serving == 0:
        return None
    free = min(max(free, 0), serving)
    ahead = effective_position(position, figures)
    if ahead <= free + _EPSILON:
        return 0
    rounds = math.ceil((ahead - free) / serving - _EPSILON)
    return math.floor((rounds - 0.5) * handle_time(figures, default_handle) + 0.5)


def estimate_waits(
    count: int,
    start: int,
    *,
    serving: int,
    free: int,
    figures: Figures,
    default_handle: float,
) -> list[int | None]:
    """`estimate_wait` for the `count` positions from `start` on (a page of a queue's list):
    entry i is the wait of position `start + i`. Empty when `count` is 0 or less."""
    return [
        estimate_wait(
            start + offset,
            serving=serving,
            free=free,
            figures=figures,
            default_handle=default_handle,
        )
        for offset in range(max(count, 0))
    ]
