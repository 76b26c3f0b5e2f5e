"""Non-zero FLOPs and parameter counts of a genome.

FLOPs per sample = 2 x active connections (a multiply and an add each;
                   a two-input unit's connections count twice)
                 + one add per bias of an active node (two for a two-input unit)
                 + each active node's activation cost (`activations.py`).
Only the live subgraph counts (`graph.analyse`): a node with no path to an
output is never computed by the compiled or exported network. This is the one
number that `status`, `front.json` and exports report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evosparse.activations import activation_cost, arity
from evosparse.genome import INPUT, Genome
from evosparse.graph import Topology, analyse


@dataclass(frozen=True)
class Cost:
    """What a network costs to run on one sample."""

    flops: int
    params: int
    connections: int


def count_cost(genome: Genome, bias: bool, topo: Topology | None = None) -> Cost:
    """Non-zero FLOPs, parameters and active connections of `genome`.

    A two-input unit (`activations.arity` 2) has two weights per incoming connection and
    two biases: its second pre-activation costs as much again.
    """
    topo = topo or analyse(genome)
    computed = topo.node_active & (genome.node_kind != INPUT)
    names, of_node = np.unique(genome.node_act, return_inverse=True)  # look each name up once
    two = np.array([arity(str(a)) == 2 for a in names], dtype=bool)[of_node]
    n_conn = int(np.count_nonzero(topo.conn_active))
    weights = n_conn + int(np.count_nonzero(topo.conn_active & two[topo.dst_row]))
    n_bias = int(np.count_nonzero(computed) + np.count_nonzero(computed & two)) if bias else 0
    costs = np.array([activation_cost(str(a)) for a in names], dtype=np.int64)
    act = int(costs[of_node[computed]].sum())
    return Cost(flops=2 * weights + n_bias + act, params=weights + n_bias, connections=n_conn)
