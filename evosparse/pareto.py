"""Multi-objective selection: NSGA-II, crowding, tournaments and hypervolume.

Objectives are in minimisation form: (validation error, non-zero FLOPs). A
failed evaluation has no objectives (None): it never enters a front and is only
kept in a population when there are not enough valid members to fill it.
Non-dominated sorting, crowding distance and hypervolume come from `deap.tools`
and `deap.benchmarks.tools` (moocore); no `creator` globals are used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from deap import base, tools
from deap.benchmarks.tools import hypervolume as _deap_hypervolume

Objectives = tuple[float, float]


class _Fitness(base.Fitness):
    weights = (-1.0, -1.0)


class _Point:
    """A stand-in individual for deap: an index into the caller's list and its fitness."""

    __slots__ = ("index", "fitness")

    def __init__(self, index: int, values: Objectives) -> None:
        self.index = index
        self.fitness = _Fitness(values)


def _points(objs: Sequence[Objectives | None]) -> list[_Point]:
    return [_Point(i, o) for i, o in enumerate(objs) if o is not None]


def nsga2_select(objs: Sequence[Objectives | None], k: int) -> list[int]:
    """Indices of the k survivors by NSGA-II; failed entries (None) fill in last, in order."""
    pts = _points(objs)
    chosen = [p.index for p in tools.selNSGA2(pts, min(k, len(pts)))]
    failed = [i for i, o in enumerate(objs) if o is None]
    return chosen + failed[: k - len(chosen)]


def rank_and_crowding(objs: Sequence[Objectives | None]) -> tuple[np.ndarray, np.ndarray]:
    """Front rank (0 = non-dominated; inf for failed) and crowding distance of each entry."""
    rank = np.full(len(objs), np.inf)
    crowd = np.zeros(len(objs))
    pts = _points(objs)
    for r, front in enumerate(tools.sortNondominated(pts, len(pts))):
        tools.emo.assignCrowdingDist(front)
        for p in front:
            rank[p.index] = r
            crowd[p.index] = p.fitness.crowding_dist
    return rank, crowd


def tournament(
    rank: np.ndarray, crowd: np.ndarray, rng: np.random.Generator, size: int = 2
) -> int:
    """Index of the winner of a tournament: lowest rank, then largest crowding distance."""
    entrants = rng.choice(len(rank), size=size, replace=False)
    return int(min(entrants, key=lambda i: (rank[i], -crowd[i], i)))


def first_front(objs: Sequence[Objectives | None]) -> list[int]:
    """Indices of the non-dominated valid entries, sorted by error then FLOPs."""
    pts = _points(objs)
    if not pts:
        return []
    front = tools.sortNondominated(pts, len(pts), first_front_only=True)[0]
    return sorted((p.index for p in front), key=lambda i: (objs[i], i))


def hypervolume(objs: Sequence[Objectives | None], reference: Objectives) -> float:
    """Hypervolume of the valid points, each objective divided by the reference point.

    The result is the dominated fraction of the box [0, ref_error] x [0, ref_flops],
    in [0, 1]. Points outside the box add nothing.
    """
    ref = np.asarray(reference, dtype=float)
    scaled = [
        _Point(i, tuple(np.asarray(o) / ref))
        for i, o in enumerate(objs)
        if o is not None and np.all(np.asarray(o) < ref)
    ]
    if not scaled:
        return 0.0
    return float(_deap_hypervolume(scaled, ref=np.ones(2)))
