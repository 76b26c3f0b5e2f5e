"""NSGA-II selection, fronts, tournaments and hypervolume on hand-made points."""

from __future__ import annotations

import numpy as np
import pytest

from evosparse.pareto import first_front, hypervolume, nsga2_select, rank_and_crowding, tournament


def test_first_front_and_ranks() -> None:
    objs = [(0.1, 900.0), (0.2, 500.0), (0.3, 600.0), (0.5, 100.0), None, (0.1, 950.0)]
    assert first_front(objs) == [0, 1, 3]
    rank, crowd = rank_and_crowding(objs)
    assert rank.tolist() == [0, 0, 1, 0, np.inf, 1]
    assert np.isinf(crowd[0]) and np.isinf(crowd[3]) and np.isfinite(crowd[1])


def test_nsga2_prefers_fronts_and_never_picks_failed_when_valid_suffice() -> None:
    objs = [None, (0.5, 100.0), (0.1, 900.0), (0.3, 950.0), (0.2, 500.0), None]
    assert sorted(nsga2_select(objs, 3)) == [1, 2, 4]
    chosen = nsga2_select(objs, 6)
    assert chosen[-2:] == [0, 5], "failed entries only fill what valid ones cannot"


def test_tournament_picks_lower_rank_then_wider_crowding() -> None:
    rank = np.array([0.0, 1.0])
    crowd = np.array([0.0, 5.0])
    rng = np.random.default_rng(0)
    assert all(tournament(rank, crowd, rng) == 0 for _ in range(20))
    assert tournament(np.zeros(2), np.array([1.0, 3.0]), rng) == 1


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([(0.5, 500.0)], 0.25),
        ([(0.2, 600.0), (0.6, 200.0)], 0.32 + 0.32 - 0.16),
        ([(0.2, 600.0), (0.6, 200.0), (0.7, 700.0)], 0.48),  # a dominated point adds nothing
        ([(1.5, 10.0), None], 0.0),  # outside the reference box
        ([], 0.0),
    ],
)
def test_hypervolume_by_hand(points, expected) -> None:
    assert hypervolume(points, (1.0, 1000.0)) == pytest.approx(expected)
