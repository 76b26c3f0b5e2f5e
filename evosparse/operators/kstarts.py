"""K-starts: prune at initialisation by choosing the best of K random masks.

A starting topology is drawn K times, each connection kept with probability p;
the K sparse networks train together for a short budget (one batched program)
and the winner is kept. The criteria score what the short training left:
`magnitude` (mean |w| of the trained weights: magnitude pruning's signal),
`gradient` (mean |dL/dw| summed over the steps), `magnitude_gradient` (mean
|w| x summed |dL/dw|, the connection saliency SNIP, Lee et al. 2019, scores at
initialisation) and `val_loss` (lower is better). Pure functions of genomes,
scores and an explicit generator; the training happens in `fitness.py`.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Protocol

import numpy as np

from evosparse.genome import HIDDEN, Genome


class Scored(Protocol):
    """What a criterion reads from an evaluation (`fitness.EvalResult`)."""

    @property
    def ok(self) -> bool: ...

    val_loss: float
    weight_magnitude: float
    grad_magnitude: float
    saliency: float


def narrowed(topology: Genome, width: float) -> np.ndarray:
    """Which of `topology`'s connections join the first ceil(width x n) hidden nodes of
    each layer of n (layers by position, nodes in id order) or the inputs and outputs:
    a narrower network whose genes keep the full topology's ids, so crossover aligns."""
    node_id, kind, pos, _ = topology.nodes
    kept = kind != HIDDEN
    for p in np.unique(pos[kind == HIDDEN]):
        layer = np.flatnonzero((kind == HIDDEN) & (pos == p))
        layer = layer[np.argsort(node_id[layer])]
        kept[layer[: math.ceil(width * len(layer))]] = True
    return kept[topology.index_of(topology.conn_src)] & kept[topology.index_of(topology.conn_dst)]


def masked(topology: Genome, genome_id: int, density: float, rng: np.random.Generator,
           width: float = 1.0) -> Genome:
    """`topology` with each connection kept (enabled) with probability `density`, at least one;
    with `width` below 1, only among the connections of its narrower part (`narrowed`).
    The other genes stay, disabled, so ids agree across the K masks; tap masks stay."""
    allowed = narrowed(topology, width) if width < 1.0 else np.ones(len(topology.conn_innov),
                                                                    dtype=bool)
    keep = (rng.random(len(topology.conn_innov)) < density) & allowed
    if not keep.any():
        rows = np.flatnonzero(allowed)
        keep[rows[rng.integers(len(rows))]] = True
    return Genome.build(genome_id, topology.nodes,
                        (topology.conn_innov, topology.conn_src, topology.conn_dst, keep)
                        ).with_taps(topology.conn_taps)


def new_genes(child: Genome, parents: list[Genome]) -> np.ndarray:
    """Which of the child's enabled connections none of its parents has (its mutation's)."""
    known = np.concatenate([p.conn_innov for p in parents])
    return child.conn_enabled & ~np.isin(child.conn_innov, known)


def masked_new(child: Genome, parents: list[Genome], genome_id: int, density: float,
               rng: np.random.Generator) -> Genome:
    """`child` under a new id with each connection its mutation added kept with probability
    `density`; what it inherited stays as it is."""
    new = new_genes(child, parents)
    en = child.conn_enabled & ~(new & (rng.random(len(new)) >= density))
    return replace(child, genome_id=genome_id, conn_enabled=en)


def score(result: Scored, criterion: str) -> float:
    """How good a trained mask is by `criterion`; higher is better, a failed one is -inf."""
    if not result.ok:
        return -np.inf
    values = {
        "magnitude": result.weight_magnitude,
        "gradient": result.grad_magnitude,
        "magnitude_gradient": result.saliency,
        "val_loss": -result.val_loss,
    }
    return float(values[criterion])


def winner(candidates: list[Genome], results: list[Scored], criterion: str) -> Genome:
    """The candidate that scores best (the first of equals)."""
    return candidates[int(np.argmax([score(r, criterion) for r in results]))]
