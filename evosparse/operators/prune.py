"""Magnitude pruning as a mutation: a dense-to-sparse path inside evolution.

Under Lamarckian inheritance a child carries its parents' trained weights, so
it can be pruned the way Han et al. (2015) prune a trained network: the share
of its enabled connections with the smallest |w| is disabled (kept as genes
for crossover), and its next training fine-tunes what is left. A lineage can
then start large and shrink along the FLOPs axis. Connections without a
trained weight (new genes, NaN) are never pruned. Pure function, no randomness.
"""

from __future__ import annotations

import numpy as np

from evosparse.genome import Genome, untrained


def magnitudes(g: Genome) -> np.ndarray:
    """Per connection, the mean |w| of its trained weight (a conv kernel: over its taps);
    NaN where it has none."""
    w = g.conn_weight
    if w is None:
        return np.full(len(g.conn_innov), np.nan)
    a = np.abs(w.astype(np.float64))
    if a.ndim == 1:
        return a
    rows = ~untrained(a)
    out = np.full(len(a), np.nan)
    out[rows] = np.nanmean(a[rows], axis=tuple(range(1, a.ndim)))
    return out


def prune_smallest(g: Genome, share: float) -> Genome:
    """`g` with floor(share x its trained, enabled connections) of the smallest |w| disabled
    (ties: the lower gene row first); at least one connection stays enabled."""
    mag = magnitudes(g)
    candidates = np.flatnonzero(g.conn_enabled & ~np.isnan(mag))
    count = min(int(share * candidates.size), int(g.conn_enabled.sum()) - 1)
    if count <= 0:
        return g
    drop = candidates[np.argsort(mag[candidates], kind="stable")[:count]]
    return g.with_disabled(tuple(int(i) for i in g.conn_innov[drop]))
