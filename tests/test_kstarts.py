"""K-starts: K random masks of a starting topology, trained briefly, the best one kept."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import yaml

from evosparse.data import load_task
from evosparse.errors import UserError
from evosparse.evaluators import LocalEvaluator
from evosparse.evolution import Search
from evosparse.fitness import FitnessConfig, evaluate_batch
from evosparse.genome import HIDDEN, InnovationRegistry
from evosparse.graph import analyse
from evosparse.operators import add_connections, dense_mlp_genome, kstarts
from evosparse.space import NetworkSpec, load_space
from tests.conftest import TINY, deep_update
from tests.recording import watched_search
from tests.test_fitness import DIGITS, TRAIN

KS = {"k": 3, "density": 0.25, "hidden": [6], "epochs": 1, "criterion": "val_loss"}


@dataclass
class _Result:
    ok: bool = True
    val_loss: float = 1.0
    weight_magnitude: float = 0.0
    grad_magnitude: float = 0.0
    saliency: float = 0.0


def test_masks_keep_the_topology_genes_and_their_density() -> None:
    topology = dense_mlp_genome(0, InnovationRegistry(64, 10), [32], "relu", levels=2)
    rng = np.random.default_rng(0)
    masks = [kstarts.masked(topology, i, 0.2, rng) for i in range(4)]
    for m in masks:
        assert np.array_equal(m.conn_innov, topology.conn_innov)
        assert np.array_equal(m.node_id, topology.node_id)
        assert 0.17 < m.conn_enabled.mean() < 0.23
    assert len({m.conn_enabled.tobytes() for m in masks}) == 4, "the K masks differ"
    assert kstarts.masked(topology, 9, 1e-9, rng).n_enabled == 1, "never an empty network"
    assert set(topology.node_pos[topology.node_kind == HIDDEN]) == {1 / 3}, "on layer 1 of 2"


def test_a_narrower_start_keeps_the_first_nodes_of_each_layer_under_the_same_ids() -> None:
    registry = InnovationRegistry(4, 3)
    topology = dense_mlp_genome(0, registry, [8, 4], "relu")
    narrow = kstarts.masked(topology, 1, 1.0, np.random.default_rng(0), width=0.3)
    assert np.array_equal(narrow.conn_innov, topology.conn_innov), "crossover aligns"
    first, second = np.arange(7, 15), np.arange(15, 19)  # the registry's hidden ids
    live = set(narrow.conn_src[narrow.conn_enabled]) | set(narrow.conn_dst[narrow.conn_enabled])
    assert live & set(first) == set(first[:3]), "ceil(0.3 x 8) of the first layer"
    assert live & set(second) == set(second[:2]), "ceil(0.3 x 4) of the second"
    # 4 x 3 + 3 x 2 + 2 x 3 connections among the kept nodes, every one kept at density 1
    assert narrow.n_enabled == 4 * 3 + 3 * 2 + 2 * 3
    sparse = kstarts.masked(topology, 2, 1e-9, np.random.default_rng(0), width=0.3)
    assert sparse.n_enabled == 1 and kstarts.narrowed(topology, 0.3)[sparse.conn_enabled].all()


@pytest.mark.parametrize(("criterion", "best"), [("magnitude", 1), ("gradient", 2),
                                                 ("magnitude_gradient", 0), ("val_loss", 2)])
def test_winner_follows_the_criterion_and_never_a_failed_mask(criterion: str, best: int) -> None:
    results = [_Result(val_loss=0.9, weight_magnitude=0.1, grad_magnitude=0.1, saliency=0.5),
               _Result(val_loss=0.8, weight_magnitude=0.9, grad_magnitude=0.2, saliency=0.1),
               _Result(val_loss=0.5, weight_magnitude=0.2, grad_magnitude=0.9, saliency=0.2),
               _Result(ok=False, val_loss=0.0, weight_magnitude=9, grad_magnitude=9, saliency=9)]
    candidates = [dense_mlp_genome(i, InnovationRegistry(2, 2), [], "relu") for i in range(4)]
    assert kstarts.winner(candidates, results, criterion) is candidates[best]


def test_trained_masks_report_their_criteria() -> None:
    topology = dense_mlp_genome(0, InnovationRegistry(64, 10), [16], "relu")
    rng = np.random.default_rng(1)
    genomes = [kstarts.masked(topology, i, 0.3, rng) for i in range(3)]
    cfg = FitnessConfig(task=DIGITS, training=TRAIN, bias=True, run_seed=0, track_gradients=True)
    for r in evaluate_batch(genomes, cfg):
        assert r.ok and r.val_loss > 0 and r.weight_magnitude > 0
        assert r.grad_magnitude > 0 and r.saliency > 0
    plain = evaluate_batch(genomes, FitnessConfig(task=DIGITS, training=TRAIN, bias=True,
                                                  run_seed=0))
    assert all(r.grad_magnitude == 0 for r in plain), "gradients are summed only when asked"


def test_initial_population_is_the_winners_of_k_masks(tmp_path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(deep_update(TINY, {"kstarts": KS})))
    space = load_space(path)
    search = Search(space=space, task=load_task(space.dataset), evaluator=LocalEvaluator())
    initial = search._initial()
    assert len(initial) == space.population
    ids = [g.genome_id for g in initial]
    assert [i // KS["k"] for i in ids] == list(range(space.population)), "one winner per K"
    assert search.state.next_genome_id == space.population * KS["k"]
    for g in initial:
        assert np.count_nonzero(g.node_kind == HIDDEN) == 6
        assert analyse(g).hidden_levels <= space.network.max_levels
        assert 0.1 < g.conn_enabled.mean() < 0.4


def test_hidden_layers_must_fit_the_network_constraints(tmp_path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(deep_update(TINY, {"kstarts": {**KS, "hidden": [4, 4, 4]}})))
    with pytest.raises(UserError, match="kstarts"):
        load_space(path)


def test_children_masks_touch_only_what_the_mutation_added() -> None:
    reg = InnovationRegistry(64, 10)
    rng = np.random.default_rng(4)
    parent = dense_mlp_genome(0, reg, [8], "relu", levels=2)
    child = add_connections(parent.derive(1, (0,), 1), rng, reg, NetworkSpec(max_hidden=8), 40)
    new = kstarts.new_genes(child, [parent])
    added = set(child.conn_innov.tolist()) - set(parent.conn_innov.tolist())
    assert new.tolist() == [int(i) in added and bool(e)
                            for i, e in zip(child.conn_innov, child.conn_enabled, strict=True)]
    assert new.sum() > 10
    off = child.with_disabled(tuple(child.conn_innov[new][:3].tolist()))  # added, not enabled
    assert kstarts.new_genes(off, [parent]).sum() == new.sum() - 3
    variants = [kstarts.masked_new(child, [parent], 10 + i, 0.5, rng) for i in range(4)]
    assert [v.genome_id for v in variants] == [10, 11, 12, 13]
    for v in variants:
        assert np.array_equal(v.conn_enabled[~new], child.conn_enabled[~new])
        assert 0 < v.conn_enabled[new].sum() < new.sum()
    assert len({v.conn_enabled.tobytes() for v in variants}) == 4


def test_search_with_kstarts_for_children_runs_and_chooses(tmp_path) -> None:
    """Every generation evaluates, of each group of K masks, the one the criterion picks
    from their short trainings, and none of the others. Mutant that fails this: `_choose`
    keeping each group's first mask instead of `kstarts.winner`."""
    ks = {**KS, "children": True}
    _, evaluator, generations = watched_search(tmp_path, {"generations": 2, "kstarts": ks})
    assert len(generations.states) == 3 and len(evaluator.calls) == 6
    chose_children = False
    for short, full in zip(evaluator.calls[::2], evaluator.calls[1::2], strict=True):
        groups = [short[i:i + ks["k"]] for i in range(0, len(short), ks["k"])]
        winners = {kstarts.winner([g for g, _ in c], [r for _, r in c], ks["criterion"])
                   .genome_id for c in groups}
        losers = {g.genome_id for g, _ in short} - winners
        evaluated = {g.genome_id for g, _ in full}
        assert winners <= evaluated and not losers & evaluated
        chose_children |= bool(groups) and full[0][0].generation > 0
    assert chose_children, "children's masks were chosen"
