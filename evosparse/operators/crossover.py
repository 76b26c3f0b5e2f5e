"""NEAT crossover: genes aligned by innovation id (Stanley & Miikkulainen, 2002)."""

from __future__ import annotations

import numpy as np

from evosparse.genome import Genome

DISABLE_IF_EITHER = 0.75
"""NEAT's chance that a gene disabled in either parent stays disabled in the child."""


def crossover(
    fitter: Genome, other: Genome, child_id: int, generation: int, rng: np.random.Generator
) -> Genome:
    """Child of two parents; `fitter` ranks higher (lower front, larger crowding distance).

    Matching genes take their enabled flag and their nodes' activations from a random
    parent; disjoint and excess genes come from the fitter parent, so the child's
    structure is the fitter parent's and no dangling node can appear.
    """
    match = np.isin(fitter.conn_innov, other.conn_innov)
    o_rows = np.searchsorted(other.conn_innov, fitter.conn_innov[match])
    en = fitter.conn_enabled.copy()
    f_en, o_en = fitter.conn_enabled[match], other.conn_enabled[o_rows]
    pick_other = rng.random(len(o_rows)) < 0.5
    chosen = np.where(pick_other, o_en, f_en)
    either_off = ~(f_en & o_en)
    chosen = np.where(either_off, rng.random(len(o_rows)) >= DISABLE_IF_EITHER, chosen)
    en[match] = chosen

    act = fitter.node_act.copy()
    shared = np.isin(fitter.node_id, other.node_id)
    o_nodes = other.index_of(fitter.node_id[shared])
    take = rng.random(len(o_nodes)) < 0.5
    act[shared] = np.where(take, other.node_act[o_nodes], fitter.node_act[shared])
    return Genome.build(
        child_id,
        (fitter.node_id, fitter.node_kind, fitter.node_pos, act),
        (fitter.conn_innov, fitter.conn_src, fitter.conn_dst, en),
        parents=(fitter.genome_id, other.genome_id),
        generation=generation,
    )
