"""Topology analysis shared by FLOPs counting, the torch compiler and the operators.

`analyse` finds the part of a genome that computes something (nodes with a path
to an output, the enabled connections into them) and groups those nodes into
depth levels: a hidden node's level is one more than the deepest node feeding it;
the outputs share the last level. Each
level becomes one masked dense block in `network.py`. Pure numpy, no torch.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from evosparse.genome import INPUT, OUTPUT, Genome


@dataclass(frozen=True)
class Topology:
    """The live subgraph of a genome, as row indices into its arrays."""

    node_active: np.ndarray  # bool (N,): inputs, and nodes with a path to an output
    conn_active: np.ndarray  # bool (C,): enabled connections into active nodes
    src_row: np.ndarray  # int (C,): row of each connection's source node
    dst_row: np.ndarray  # int (C,): row of each connection's destination node
    depth: np.ndarray  # int (N,): 0 for inputs, >= 1 for active nodes, -1 for inactive

    @property
    def n_levels(self) -> int:
        """Number of computed levels (hidden levels plus the outputs' own)."""
        return int(self.depth.max())

    @property
    def hidden_levels(self) -> int:
        """The longest chain of hidden nodes from an input to an output."""
        return max(self.n_levels - 1, 0)


_KNOWN: weakref.WeakKeyDictionary[Genome, Topology] = weakref.WeakKeyDictionary()


def analyse(genome: Genome) -> Topology:
    """Active nodes and connections, and each node's depth level.

    Genomes are immutable, so the answer is kept while the genome lives: one
    evaluation asks three times (batch planning, compiling, FLOPs counting). Its
    arrays are read-only.
    """
    known = _KNOWN.get(genome)
    if known is None:
        known = _KNOWN[genome] = _analyse(genome)
    return known


def _analyse(genome: Genome) -> Topology:
    src_row = genome.index_of(genome.conn_src)
    dst_row = genome.index_of(genome.conn_dst)
    en = genome.conn_enabled
    n = len(genome.node_id)
    reach = genome.node_kind == OUTPUT
    # Backward reachability to an output; positions make it a DAG, so <= n sweeps.
    while True:
        grown = reach.copy()
        grown[src_row[en & reach[dst_row]]] = True
        if np.array_equal(grown, reach):
            break
        reach = grown
    is_input = genome.node_kind == INPUT
    node_active = reach | is_input
    conn_active = en & reach[dst_row]
    depth = np.where(node_active, np.where(is_input, 0, 1), -1)
    s, d = src_row[conn_active], dst_row[conn_active]
    for _ in range(n):
        new = depth.copy()
        np.maximum.at(new, d, depth[s] + 1)
        if np.array_equal(new, depth):
            break
        depth = new
    # Every output on the last level: it then holds exactly the outputs, in id order, so a
    # compiled network's last level is its logits (no gather). Hidden depths are unchanged.
    depth[genome.node_kind == OUTPUT] = depth.max()
    for a in (node_active, conn_active, src_row, dst_row, depth):
        a.flags.writeable = False
    return Topology(node_active, conn_active, src_row, dst_row, depth)
