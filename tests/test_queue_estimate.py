"""The estimated wait: learned from completed calls and callers leaving, (r - 1/2) * h for the
caller's round of agents, 0 with an agent free, None with no agent serving the queue."""

from __future__ import annotations

import pytest

from flowpbx.queues.estimate import (
    abandon_rate,
    effective_position,
    estimate_wait,
    estimate_waits,
    handle_time,
)
from flowpbx.queues.model import Figures, learned

DEFAULT_HANDLE = 180.0


def _wait(position: int, serving: int, free: int, figures: Figures) -> int | None:
    return estimate_wait(
        position, serving=serving, free=free, figures=figures, default_handle=DEFAULT_HANDLE
    )


def test_estimate_follows_what_the_queue_learns() -> None:
    """A queue's life: the default handle time until a call completes, then the weighted mean
    of completed calls, then abandonment shortening the line ahead."""
    figures = Figures()
    # Nothing learned: h = default 180, a = 0.
    # p=1, n=2, f=0: p'=1, r=ceil(1/2)=1, EWT = 0.5*180 = 90.
    assert _wait(1, 2, 0, figures) == 90
    # p=3, n=2, f=0: r=ceil(3/2)=2, EWT = 1.5*180 = 270.
    assert _wait(3, 2, 0, figures) == 270

    figures = learned(figures, handle_time=200)
    # The first sample is taken as it is: h = 200. p=3: 1.5*200 = 300.
    assert figures.handle_time == 200
    assert _wait(3, 2, 0, figures) == 300

    figures = learned(figures, handle_time=100)
    # h = 200 + 0.2*(100 - 200) = 180. p=3: 1.5*180 = 270.
    assert figures.handle_time == pytest.approx(180)
    assert _wait(3, 2, 0, figures) == 270

    figures = learned(figures, handle_time=300)
    # h = 180 + 0.2*(300 - 180) = 204.
    assert figures.handle_time == pytest.approx(204)
    # p=1, n=2: r=1, 0.5*204 = 102.
    assert _wait(1, 2, 0, figures) == 102
    # p=3, n=2: r=2, 1.5*204 = 306.
    assert _wait(3, 2, 0, figures) == 306
    # p=4, n=1: r=4, 3.5*204 = 714.
    assert _wait(4, 1, 0, figures) == 714
    # No abandonment yet: p=11, n=2: r=ceil(11/2)=6, 5.5*204 = 1122.
    assert _wait(11, 2, 0, figures) == 1122

    figures = learned(figures, abandoned=True)
    # a = 0 + 0.1*(1 - 0) = 0.1.
    assert figures.abandon_rate == pytest.approx(0.1)
    # p=11, n=2: p' = 1 + 10*0.9 = 10, r = ceil(10/2) = 5, 4.5*204 = 918 (docs/queues.md).
    assert _wait(11, 2, 0, figures) == 918
    # p=4, n=2, f=1: p' = 1 + 3*0.9 = 3.7 > 1, r = ceil((3.7-1)/2) = ceil(1.35) = 2, 306.
    assert _wait(4, 2, 1, figures) == 306
    # p=2, n=2, f=1: p' = 1.9 > 1 (the one ahead may stay), r = ceil(0.45) = 1, 102.
    assert _wait(2, 2, 1, figures) == 102

    figures = learned(figures, abandoned=True)
    # a = 0.1 + 0.1*(1 - 0.1) = 0.19. p=11, n=2: p' = 1 + 10*0.81 = 9.1, r = ceil(4.55) = 5.
    assert figures.abandon_rate == pytest.approx(0.19)
    assert _wait(11, 2, 0, figures) == 918
    # p=21, n=2: p' = 1 + 20*0.81 = 17.2, r = ceil(8.6) = 9, 8.5*204 = 1734.
    assert _wait(21, 2, 0, figures) == 1734

    figures = learned(figures, abandoned=False)
    # An answered caller: a = 0.19 + 0.1*(0 - 0.19) = 0.171. p=21: p' = 1 + 20*0.829 = 17.58,
    # r = ceil(8.79) = 9, still 1734; p=23: p' = 1 + 22*0.829 = 19.238, r = ceil(9.619) = 10,
    # 9.5*204 = 1938.
    assert figures.abandon_rate == pytest.approx(0.171)
    assert _wait(21, 2, 0, figures) == 1734
    assert _wait(23, 2, 0, figures) == 1938


def test_estimate_without_agents_is_none() -> None:
    """No agent serving the queue gives None whatever the position or what was learned."""
    assert _wait(1, 0, 0, Figures()) is None
    assert _wait(7, 0, 0, Figures(handle_time=100, abandon_rate=0.5)) is None


@pytest.mark.parametrize(
    ("position", "serving", "free", "expected"),
    [
        # p=1, f=1: p'=1 <= 1.
        pytest.param(1, 2, 1, 0, id="front-one-free"),
        # p=3, f=3: p'=3 <= 3.
        pytest.param(3, 5, 3, 0, id="third-three-free"),
        # p=4, n=5, f=3: p'=4 > 3, r = ceil(1/5) = 1, 0.5*100 = 50.
        pytest.param(4, 5, 3, 50, id="one-more-than-free"),
    ],
)
def test_estimate_with_free_agents(position: int, serving: int, free: int, expected: int) -> None:
    """A caller within reach of a free agent waits 0; the next one waits half a call."""
    figures = Figures(handle_time=100)
    assert _wait(position, serving, free, figures) == expected


def test_estimate_clamps_free_agents_to_those_serving() -> None:
    """More free agents than serving (racing counts) is read as all of them, fewer than 0 as
    none."""
    figures = Figures(handle_time=100)
    # f=5 read as 2: p=3 > 2, r = ceil((3-2)/2) = 1, 0.5*100 = 50 (not 0).
    assert _wait(3, 2, 5, figures) == 50
    # f=-1 read as 0: p=1, r=1, 50.
    assert _wait(1, 2, -1, figures) == 50


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        # Clamped to 0.9: p' = 1 + 20*0.1 = 3, r=3, 2.5*100 = 250 (0.95 would give p'=2, 150).
        pytest.param(0.95, 250, id="above-0.9"),
        # Clamped to 0: p' = 21, r=21, 20.5*100 = 2050 (-0.5 would give p'=31, 3050).
        pytest.param(-0.5, 2050, id="below-0"),
        # Within range: p' = 1 + 20*0.5 = 11, r=11, 10.5*100 = 1050.
        pytest.param(0.5, 1050, id="half"),
    ],
)
def test_estimate_clamps_abandonment(rate: float, expected: int) -> None:
    """The abandonment rate counts within [0, 0.9] only."""
    figures = Figures(handle_time=100, abandon_rate=rate)
    assert _wait(21, 1, 0, figures) == expected


def test_estimate_ignores_float_noise_in_the_effective_position() -> None:
    """1 + 20 * (1 - 0.7) is 7.000000000000001 in floats; it counts as 7, not a hair over."""
    figures = Figures(handle_time=100, abandon_rate=0.7)
    assert effective_position(21, figures) == pytest.approx(7)
    # p'=7, f=7: 0, not half a call.
    assert _wait(21, 10, 7, figures) == 0
    # p'=7, n=2, f=1: r = (7-1)/2 = 3 exactly, 2.5*100 = 250 (not r=4, 350).
    assert _wait(21, 2, 1, figures) == 250


def test_estimate_rounds_half_seconds_up() -> None:
    """0.5 * 201 = 100.5 s is said as 101, not Python's round-half-even 100."""
    assert _wait(1, 1, 0, Figures(handle_time=201)) == 101


def test_estimate_rejects_a_position_or_agent_count_that_cannot_be() -> None:
    """Position 0 (not waiting) and a negative agent count are programming errors."""
    with pytest.raises(ValueError, match="position must be 1 or more, got 0"):
        _wait(0, 2, 0, Figures())
    with pytest.raises(ValueError, match="serving must be 0 or more, got -1"):
        _wait(1, -1, 0, Figures())


def test_handle_time_and_abandon_rate_helpers() -> None:
    """The default stands in for an unlearned handle time; a learned one replaces it."""
    assert handle_time(Figures(), 180) == 180
    assert handle_time(Figures(handle_time=42.5), 180) == 42.5
    assert abandon_rate(Figures(abandon_rate=0.3)) == 0.3
    assert abandon_rate(Figures(abandon_rate=1.0)) == 0.9


def test_estimate_waits_gives_a_page_of_positions() -> None:
    """Entry i is the wait of position start + i."""
    figures = Figures(handle_time=100)
    # n=2, f=1. p=1: 0. p=2: r=ceil(1/2)=1, 50. p=3: r=ceil(2/2)=1, 50. p=4: r=ceil(3/2)=2, 150.
    page = estimate_waits(4, 1, serving=2, free=1, figures=figures, default_handle=180)
    assert page == [0, 50, 50, 150]
    # Positions 3 and 4 only.
    assert estimate_waits(2, 3, serving=2, free=1, figures=figures, default_handle=180) == [
        50,
        150,
    ]
    assert estimate_waits(3, 1, serving=0, free=0, figures=figures, default_handle=180) == [
        None,
        None,
        None,
    ]
    assert estimate_waits(0, 1, serving=2, free=1, figures=figures, default_handle=180) == []


def test_estimate_matches_a_simulated_clock_on_average_per_round() -> None:
    """With agents spread evenly through their calls, the callers of each round wait on
    average exactly what the formula says: the half round is the mean remaining call."""
    handle = 200.0
    serving = 4
    # Four busy agents, finishing in 25, 75, 125 and 175 s: evenly spread through a 200 s call,
    # so their mean remaining time is 100 = h/2.
    next_free = [25.0, 75.0, 125.0, 175.0]
    waits: list[float] = []
    for _ in range(12):
        # First come, first served: the caller at the front takes the agent free soonest.
        soonest = min(range(serving), key=next_free.__getitem__)
        waits.append(next_free[soonest])
        next_free[soonest] += handle
    figures = Figures(handle_time=handle)
    for round_index in range(3):
        positions = range(round_index * serving + 1, (round_index + 1) * serving + 1)
        simulated = waits[round_index * serving : (round_index + 1) * serving]
        estimates = [
            estimate_wait(p, serving=serving, free=0, figures=figures, default_handle=180)
            for p in positions
        ]
        # Round 1: (25+75+125+175)/4 = 100 = 0.5*200; round 2: 300 = 1.5*200; round 3: 500.
        assert sum(simulated) / serving == 100 + 200 * round_index
        assert estimates == [100 + 200 * round_index] * serving
