"""Lamarckian inheritance: trained weights go into the genome and on to the children."""

from __future__ import annotations

import numpy as np
import torch

from evosparse.fitness import FitnessConfig, evaluate_genome
from evosparse.genome import Genome, InnovationRegistry
from evosparse.inheritance import inherit, written_back
from evosparse.network import SparseNetwork
from evosparse.operators import add_connections, add_nodes, crossover, minimal_genome
from evosparse.space import ActivationSpec, NetworkSpec
from evosparse.weights import network_from_model
from tests.recording import watched_search
from tests.test_fitness import DIGITS, TRAIN

NET = NetworkSpec(max_hidden=16)
ACTS = ActivationSpec(hidden=("relu", "tanh"))


def _trained(g: Genome) -> tuple[Genome, SparseNetwork]:
    result = evaluate_genome(g, FitnessConfig(task=DIGITS, training=TRAIN, bias=True, run_seed=0))
    assert result.ok and result.model is not None
    net, _ = network_from_model(g, result.model, "test")
    assert result.values is not None
    return written_back(g, result.values), net


def _parent(seed: int, reg: InnovationRegistry) -> Genome:
    rng = np.random.default_rng(seed)
    g = minimal_genome(seed, reg, 0.3, rng)
    return add_nodes(add_connections(g, rng, reg, NET, 20), rng, reg, NET, ACTS, 3)


def _compiled(net: SparseNetwork, g: Genome) -> tuple[np.ndarray, np.ndarray]:
    return net.weights_for(g)


def test_written_back_genome_compiles_to_the_trained_network() -> None:
    g, trained = _trained(_parent(1, InnovationRegistry(64, 10)))
    rebuilt = SparseNetwork(g, True, torch.Generator().manual_seed(123))  # any seed
    x = torch.from_numpy(DIGITS.x_test)
    assert torch.equal(rebuilt(x), trained(x))
    assert Genome.from_dict(g.to_dict()).same_as(g), "weights survive JSON exactly"
    assert np.array_equal(Genome.from_dict(g.to_dict()).conn_weight, g.conn_weight,
                          equal_nan=True)


def test_child_starts_from_parent_weights_on_shared_genes_only() -> None:
    reg = InnovationRegistry(64, 10)
    parent, _ = _trained(_parent(2, reg))
    rng = np.random.default_rng(5)
    child = parent.derive(99, (parent.genome_id,), 1)
    assert child.conn_weight is None, "a derived child carries nothing until it inherits"
    child = add_nodes(add_connections(child, rng, reg, NET, 10), rng, reg, NET, ACTS, 2)
    child = inherit(child, [parent])
    weights, biases = _compiled(SparseNetwork(child, True, torch.Generator().manual_seed(7)),
                                child)
    shared = np.isin(child.conn_innov, parent.conn_innov)
    rows = np.searchsorted(parent.conn_innov, child.conn_innov[shared])
    compiled = np.isfinite(weights[shared]) & np.isfinite(parent.conn_weight[rows])
    assert compiled.sum() > 10
    np.testing.assert_array_equal(weights[shared][compiled], parent.conn_weight[rows][compiled])
    new = ~shared & np.isfinite(weights)
    assert new.any() and np.isnan(child.conn_weight[~shared]).all(), "new genes start fresh"
    outputs = child.node_kind == 2
    o_rows = parent.index_of(child.node_id[outputs])
    np.testing.assert_array_equal(biases[outputs], parent.node_bias[o_rows])


def test_crossover_child_takes_the_fitter_parents_weight_where_both_have_one() -> None:
    reg = InnovationRegistry(64, 10)
    a, _ = _trained(_parent(3, reg))
    b, _ = _trained(_parent(4, reg))
    child = inherit(crossover(a, b, 50, 1, np.random.default_rng(0)), [a, b])
    both = np.isin(a.conn_innov, b.conn_innov) & np.isfinite(a.conn_weight)
    assert both.any()
    at = np.searchsorted(child.conn_innov, a.conn_innov[both])
    np.testing.assert_array_equal(child.conn_weight[at], a.conn_weight[both])


def test_a_parent_sharing_no_gene_gives_nothing_and_the_other_parent_fills_in() -> None:
    reg = InnovationRegistry(64, 10)
    a, _ = _trained(_parent(3, reg))
    stranger = a.with_weights(np.full(len(a.conn_innov), 0.5, np.float32), a.node_bias)
    stranger = Genome.build(77, stranger.nodes, (a.conn_innov + 10_000, *a.conns[1:]),
                            weights=(stranger.conn_weight, stranger.node_bias))
    child = inherit(a.derive(60, (77, a.genome_id), 1), [stranger, a])
    np.testing.assert_array_equal(child.conn_weight, a.conn_weight)
    empty = Genome.build(61, a.nodes, tuple(c[:0] for c in a.conns))
    assert inherit(empty, [stranger, a]).conn_weight.shape == (0,)


def test_a_lamarckian_search_writes_trained_weights_back_and_children_start_from_them(
        tmp_path) -> None:
    """With `inheritance: lamarckian`, every kept member carries the weights its training
    ended with, and every child starts from its parent's on the genes they share.
    Mutant that fails this: the write-back in `Search.step` turned off."""
    _, evaluator, generations = watched_search(tmp_path, {
        "generations": 2, "mutation": {"crossover": 0.0},
        "training": {"inheritance": "lamarckian"}})
    trained = {g.genome_id: written_back(g, r.values) for call in evaluator.calls
               for g, r in call if r.ok and r.values is not None}
    for state in generations.states:
        for m in state["population"]:
            want = trained[m.genome.genome_id]
            np.testing.assert_array_equal(m.genome.conn_weight, want.conn_weight)
            np.testing.assert_array_equal(m.genome.node_bias, want.node_bias)
    shared = 0
    for call in evaluator.calls[1:]:
        for child, _ in call:
            parent = trained[child.parents[0]]
            both, rows, prow = np.intersect1d(child.conn_innov, parent.conn_innov,
                                              return_indices=True)
            np.testing.assert_array_equal(child.conn_weight[rows], parent.conn_weight[prow])
            shared += int(np.isfinite(parent.conn_weight[prow]).sum())
    assert shared > 0, "children inherited trained weights"
