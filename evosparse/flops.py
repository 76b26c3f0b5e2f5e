"""Non-zero FLOPs and parameter counts of a genome.

FLOPs per sample = 2 x active connections (a multiply and an add each)
                 + one add per bias of an active node
                 + each active node's activation cost (`activations.py`).
Only the live subgraph counts (`graph.analyse`): a node with no path to an
output is never computed by the compiled or exported network. This is the one
number that `status`, `front.json` and exports report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evosparse.activations import activation_cost
from evosparse.genome import INPUT, Genome
from evosparse.graph import Topology, analyse


@dataclass(frozen=True)
class Cost:
    """What a network costs to run on one sample."""

    flops: int
    params: int
    connections: int


def count_cost(genome: Genome, bias: bool, topo: Topology | None = None) -> Cost:
    """Non-zero FLOPs, parameters and active connections of `genome`."""
    topo = topo or analyse(genome)
    computed = topo.node_active & (genome.node_kind != INPUT)
    n_conn = int(np.count_nonzero(topo.conn_active))
    n_bias = int(np.count_nonzero(computed)) if bias else 0
    act = sum(activation_cost(a) for a in genome.node_act[computed])
    return Cost(flops=2 * n_conn + n_bias + act, params=n_conn + n_bias, connections=n_conn)
