"""Magnitude pruning as a mutation: a dense-to-sparse path inside evolution.

Under Lamarckian inheritance a child carries its parents' trained weights, so
it can be pruned the way Han et al. (2015) prune a trained network: the share
of its smallest trained weights goes, and its next training fine-tunes what is
left. An MLP's weight is a connection (disabled, kept as a gene for crossover);
a conv family's is a kernel tap (switched off in the kernel's tap mask; a kernel
left without taps is disabled) or a head link (its `bins` weights, by their mean
|w|). A lineage can then start large and shrink along the FLOPs axis. Weights
without a trained value (new genes, NaN) are never pruned. Pure functions, no
randomness.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from evosparse.conv_geometry import tap_bits
from evosparse.genome import OUTPUT, Genome, untrained


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
    """`g` with floor(share x its trained, enabled weights) of the smallest |w| pruned
    (ties: the lower gene row, then the lower tap, first); at least one weight stays."""
    w = g.conn_weight
    if w is not None and w.ndim > 1:
        return _prune_taps(g, share)
    mag = magnitudes(g)
    candidates = np.flatnonzero(g.conn_enabled & ~np.isnan(mag))
    count = min(int(share * candidates.size), int(g.conn_enabled.sum()) - 1)
    if count <= 0:
        return g
    drop = candidates[np.argsort(mag[candidates], kind="stable")[:count]]
    return g.with_disabled(tuple(int(i) for i in g.conn_innov[drop]))


def prune_to_cost(g: Genome, budget: float, cost: Callable[[Genome], int],
                  resolution: float = 1e-4) -> Genome | None:
    """`g` with the smallest share of its smallest |w| pruned (`prune_smallest`, to within
    `resolution`) that brings `cost` to at most `budget`; None when pruning all but one
    weight does not. The pruned sets grow with the share, so the cost falls with it and a
    bisection finds the share."""
    if cost(g) <= budget:
        return g
    lo, hi = 0.0, 1.0 - 1e-9
    best = prune_smallest(g, hi)
    if cost(best) > budget:
        return None
    while hi - lo > resolution:
        mid = (lo + hi) / 2
        pruned = prune_smallest(g, mid)
        if cost(pruned) <= budget:
            hi, best = mid, pruned
        else:
            lo = mid
    return best


def _prune_taps(g: Genome, share: float) -> Genome:
    """A conv genome's pruning: kernel taps and head links ranked together by |w|."""
    assert g.conn_weight is not None
    w = np.abs(g.conn_weight.reshape(len(g.conn_weight), -1).astype(np.float64))
    taps = w.shape[1]
    bits = (np.full(len(w), -1, dtype=np.int64) if g.conn_taps is None else g.conn_taps)
    on = tap_bits(bits, taps) & ~np.isnan(w)
    head = g.node_kind[g.index_of(g.conn_dst)] == OUTPUT
    mag = magnitudes(g)
    links = np.flatnonzero(g.conn_enabled & head & ~np.isnan(mag))
    rows, cols = np.nonzero(on & (g.conn_enabled & ~head)[:, None])
    units = np.concatenate([w[rows, cols], mag[links]])
    count = min(int(share * units.size), units.size - 1)
    if count <= 0:
        return g
    drop = np.argsort(units, kind="stable")[:count]
    tap_drop, link_drop = drop[drop < rows.size], drop[drop >= rows.size] - rows.size
    kept = bits.copy()
    np.bitwise_and.at(kept, rows[tap_drop], ~(np.int64(1) << cols[tap_drop].astype(np.int64)))
    emptied = ~tap_bits(kept, taps).any(axis=1)  # disabled, their tap masks kept
    gone = np.concatenate([links[link_drop], np.flatnonzero(emptied)])
    pruned = g.with_taps(np.where(emptied, bits, kept))
    return pruned.with_disabled(tuple(int(i) for i in g.conn_innov[gone]))
