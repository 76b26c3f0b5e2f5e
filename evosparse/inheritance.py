"""Baldwinian or Lamarckian inheritance of trained weights.

Baldwinian evolution (the default) starts every child from a fresh random
initialisation: what a network learns shapes selection but is not passed on.
Lamarckian evolution writes an evaluated genome's trained weights back into it
(`written_back`), and a child starts each connection it shares with a parent
(same innovation id) and each node it shares (same node id) from that parent's
trained value (`inherit`); everything new starts from the usual random
initialisation. The weights travel inside the genome, so checkpoints, resume
and Ray workers need nothing more. Pure functions, no randomness.
"""

from __future__ import annotations

import numpy as np

from evosparse.genome import Genome, locate, untrained
from evosparse.network import Values, values_for


def written_back(genome: Genome, values: Values) -> Genome:
    """The evaluated genome carrying its trained weights (`EvalResult.values`)."""
    return genome.with_weights(*values_for(genome, values))


def _take(keys: np.ndarray, parents: list[tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray:
    """Per key, the value of the first parent that has a finite value for it (NaN if none);
    a conv kernel's row of taps (2-D values) comes whole from the first parent that has
    any of its taps."""
    out: np.ndarray | None = None
    for parent_keys, values in parents:
        if values is None:
            continue
        if out is None:
            out = np.full((len(keys), *values.shape[1:]), np.nan, dtype=np.float32)
        rows, found = locate(parent_keys, keys)
        has = np.zeros(len(keys), dtype=bool)
        has[found] = ~untrained(values[rows[found]])
        fill = untrained(out) & has
        out[fill] = values[rows[fill]]
    return np.full(len(keys), np.nan, dtype=np.float32) if out is None else out


def inherit(child: Genome, parents: list[Genome]) -> Genome:
    """`child` starting from its parents' trained weights where it shares their genes.

    Parents come fitter first: a gene both parents trained takes the fitter one's value.
    """
    conn = _take(child.conn_innov, [(p.conn_innov, p.conn_weight) for p in parents])
    bias = _take(child.node_id, [(p.node_id, p.node_bias) for p in parents])
    return child.with_weights(conn, bias)
