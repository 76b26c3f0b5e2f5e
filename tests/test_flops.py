"""FLOPs and parameters against counts made by hand."""

from __future__ import annotations

import numpy as np

from evosparse.flops import count_cost
from evosparse.genome import HIDDEN, INPUT, OUTPUT, Genome


def hand_genome() -> Genome:
    # inputs 0,1; output 2; hidden 3 (tanh), hidden 4 (relu, dead end), hidden 5 (sigmoid)
    ids = np.array([0, 1, 2, 3, 4, 5])
    kind = np.array([INPUT, INPUT, OUTPUT, HIDDEN, HIDDEN, HIDDEN])
    pos = np.array([0, 0, 1, 0.5, 0.5, 0.25])
    act = np.array(["identity", "identity", "identity", "tanh", "relu", "sigmoid"])
    #          0->3  1->3  3->2  0->2  0->4  1->5 5->3  1->2 (disabled)
    src = np.array([0, 1, 3, 0, 0, 1, 5, 1])
    dst = np.array([3, 3, 2, 2, 4, 5, 3, 2])
    en = np.array([1, 1, 1, 1, 1, 1, 1, 0], dtype=bool)
    return Genome.build(0, (ids, kind, pos, act), (np.arange(8), src, dst, en))


def test_flops_by_hand() -> None:
    cost = count_cost(hand_genome(), bias=True)
    # Active: output 2, hidden 3 and 5 (node 4 reaches no output; 1->2 is disabled).
    # Connections 0->3, 1->3, 3->2, 0->2, 1->5, 5->3: 6 -> 12 FLOPs.
    # Biases of nodes 2, 3, 5: 3. Activations: tanh 4 + sigmoid 6 + identity 0 = 10.
    assert cost.connections == 6
    assert cost.flops == 12 + 3 + 10
    assert cost.params == 6 + 3


def test_flops_without_bias() -> None:
    cost = count_cost(hand_genome(), bias=False)
    assert cost.flops == 12 + 10 and cost.params == 6


def test_a_two_input_unit_counts_its_weights_and_bias_twice_by_hand() -> None:
    g = hand_genome()
    act = g.node_act.copy()
    act[g.node_id == 3] = "and_ail"  # hidden 3: in-links 0->3, 1->3, 5->3 (all active)
    cost = count_cost(Genome.build(0, (g.node_id, g.node_kind, g.node_pos, act), g.conns),
                      bias=True)
    # weights 6 + 3 more for node 3's second pre-activation; biases 3 + 1 more;
    # activations: and_ail 6 + sigmoid 6
    assert cost.connections == 6
    assert cost.params == 9 + 4
    assert cost.flops == 2 * 9 + 4 + 6 + 6
    assert count_cost(Genome.build(0, (g.node_id, g.node_kind, g.node_pos, act), g.conns),
                      bias=False).params == 9
