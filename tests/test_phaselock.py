"""Where the frame clock's boundaries go, given when media arrives (runner.phaselock)."""

from __future__ import annotations

import pytest

from runner.phaselock import ENOUGH, MARGIN, WORTH, ArrivalPhase

PERIOD = 0.020


def observed(*phases: float, frames: int = 50, jitter: float = 0.0003) -> ArrivalPhase:
    """Arrivals at each of `phases` (seconds into the period) for `frames` periods, a little jittered."""
    arrivals = ArrivalPhase(PERIOD)
    for frame in range(frames):
        for phase in phases:
            arrivals.observe(1000.0 + frame * PERIOD + phase + (frame % 3 - 1) * jitter)
    return arrivals


def mean_wait(phases: tuple[float, ...], boundary: float) -> float:
    return sum((boundary - phase) % PERIOD for phase in phases) / len(phases)


def test_too_few_arrivals_move_nothing() -> None:
    assert observed(0.0125, frames=ENOUGH - 1).move(0.0) is None


def test_boundaries_move_to_just_after_one_calls_arrivals() -> None:
    move = observed(0.0125).move(0.0)
    assert move is not None and -PERIOD / 2 <= move < PERIOD / 2
    boundary = move % PERIOD
    assert 0.0125 < boundary <= 0.0125 + MARGIN + 0.001  # after the arrivals, by about the margin


def test_arrivals_at_the_end_of_the_period_move_boundaries_across_its_start() -> None:
    move = observed(0.0195).move(0.010)
    assert move is not None
    boundary = (0.010 + move) % PERIOD
    assert boundary < 0.0025 or boundary > 0.0195  # just after 19.5 ms, wrapped past 20 ms


def test_boundaries_already_just_after_the_arrivals_stay() -> None:
    assert observed(0.0125).move(0.0125 + MARGIN + 0.0005) is None


def test_a_small_saving_is_not_worth_a_move() -> None:
    # Now waiting about 1.5 ms more than the best place: under WORTH, so no jolt for the streams.
    best = 0.0125 + MARGIN + 0.0005
    assert observed(0.0125).move(best + WORTH * 0.75) is None


@pytest.mark.parametrize("phases", [(0.005, 0.015), (0.002, 0.003, 0.011)])
def test_calls_on_different_phases_get_the_boundary_that_keeps_their_mean_wait_least(
        phases: tuple[float, ...]) -> None:
    move = observed(*phases).move(0.0195)
    assert move is not None
    boundary = (0.0195 + move) % PERIOD
    best = min(mean_wait(phases, phase + MARGIN) for phase in phases)
    # Within the jitter and the 0.5 ms counting bins of the best; after the wrong arrivals is worse.
    assert mean_wait(phases, boundary) <= best + 0.002


def test_counts_fade_so_the_lock_follows_a_provider_that_drifts() -> None:
    arrivals = observed(0.005)
    first = arrivals.move(0.0)
    assert first is not None
    offset = first % PERIOD
    for round_ in range(6):  # the same call, now arriving 7 ms later in the period
        for frame in range(50):
            arrivals.observe(2000.0 + round_ + frame * PERIOD + 0.012)
        move = arrivals.move(offset)
        offset = (offset + (move or 0.0)) % PERIOD
    assert 0.012 < offset <= 0.012 + MARGIN + 0.001
