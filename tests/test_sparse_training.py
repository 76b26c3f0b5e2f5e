"""Pruning during training: the same connections go, alone or batched, and the genome follows."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml

from evosparse.data import load_task
from evosparse.errors import UserError
from evosparse.evaluators import LocalEvaluator
from evosparse.evolution import Search
from evosparse.fitness import FitnessConfig, evaluate_batch, trained_genome
from evosparse.graph import analyse
from evosparse.space import SparseTrainingSpec, TrainingSpec, load_space
from evosparse.weights import TEST_PREDICTIONS, network_from_model
from tests.conftest import TINY, deep_update
from tests.test_batched import heterogeneous
from tests.test_fitness import DIGITS
from tests.test_properties import reference_cost

METHODS = {
    "magnitude": SparseTrainingSpec(method="magnitude", density=0.5, end_epoch=1, interval=3),
    "snip": SparseTrainingSpec(method="snip", density=0.4),
    "dissipating": SparseTrainingSpec(method="dissipating", watch_epochs=1, threshold=0.5),
}


def _alone_and_batched(spec: SparseTrainingSpec) -> zip:
    """(genome, result alone, result batched) of six heterogeneous genomes trained with
    `spec` for two epochs."""
    genomes = heterogeneous(6)
    cfg = FitnessConfig(task=DIGITS, training=TrainingSpec(epochs=2), bias=True, run_seed=3,
                        sparse=spec)
    alone = evaluate_batch(genomes, replace(cfg, batched=False))
    return zip(genomes, alone, evaluate_batch(genomes, cfg), strict=True)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_pruned_genome_is_what_was_trained_scored_and_counted(method: str) -> None:
    for g, a, b in _alone_and_batched(METHODS[method]):
        assert a.ok and b.ok
        assert a.disabled == b.disabled, "the same connections go, alone or batched"
        assert a.disabled and set(a.disabled) <= set(g.conn_innov[g.conn_enabled].tolist())
        pruned = g.with_disabled(a.disabled)
        assert (a.flops, a.connections) == reference_cost(pruned, True)
        if method != "dissipating":
            start = int(analyse(g).conn_active.sum())
            assert a.connections <= math.ceil(METHODS[method].density * start)
        net, tensors = network_from_model(pruned, a.model, "test")
        predicted = net(torch.from_numpy(DIGITS.x_test)).argmax(dim=1)
        assert torch.equal(predicted, tensors[TEST_PREDICTIONS])
        assert np.isclose(a.test_accuracy, (predicted.numpy() == DIGITS.y_test).mean())


REGROWTH = {
    m: SparseTrainingSpec(method=m, zeta=0.3, end_epoch=2, interval=4) for m in ("set", "rigl",
                                                                                 "ctre")
}


@pytest.mark.parametrize("method", sorted(REGROWTH))
def test_regrowth_keeps_density_and_the_dag_alone_or_batched(method: str) -> None:
    """The reported FLOPs are those of the regrown genome, counted node by node apart from
    `count_cost`. Mutant that fails this: `count_cost` counting connections as every
    enabled one, live or not (`n_conn` from `genome.conn_enabled`)."""
    for g, a, b in _alone_and_batched(REGROWTH[method]):
        assert a.ok and b.ok
        assert (a.disabled, a.added) == (b.disabled, b.added), "same topology, alone or batched"
        assert a.added and len(a.added) == len(a.disabled), "as many grown as removed"
        after = trained_genome(g, a.disabled, a.added)
        assert after.n_enabled == g.n_enabled, "the density is kept"
        pos = dict(zip(g.node_id.tolist(), g.node_pos.tolist(), strict=True))
        enabled = set(zip(g.conn_src[g.conn_enabled].tolist(),
                          g.conn_dst[g.conn_enabled].tolist(), strict=True))
        for src, dst in a.added:
            assert pos[src] < pos[dst], "positions rise along a grown connection: still a DAG"
            assert (src, dst) not in enabled
        assert (a.flops, a.connections) == reference_cost(after, True)
        net, tensors = network_from_model(after, a.model, "test")
        predicted = net(torch.from_numpy(DIGITS.x_test)).argmax(dim=1)
        assert torch.equal(predicted, tensors[TEST_PREDICTIONS])
    cfg = FitnessConfig(task=DIGITS, training=TrainingSpec(epochs=2), bias=True, run_seed=3)
    grown = {m: evaluate_batch(heterogeneous(2), replace(cfg, sparse=REGROWTH[m]))[1].added
             for m in REGROWTH}
    assert len({frozenset(v) for v in grown.values()}) == 3, "each method grows its own choice"


def test_no_pruning_leaves_every_connection() -> None:
    genomes = heterogeneous(3)
    cfg = FitnessConfig(task=DIGITS, training=TrainingSpec(epochs=1), bias=True, run_seed=3)
    assert all(r.disabled == () for r in evaluate_batch(genomes, cfg))


def test_schedule_must_end_within_the_training(tmp_path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(deep_update(TINY, {"sparse_training": {
        "method": "magnitude", "end_epoch": 3}})))
    with pytest.raises(UserError, match="sparse_training"):
        load_space(path)


def test_search_gives_grown_connections_registry_ids(tmp_path) -> None:
    """Grown genes get ids from the innovation registry (the same pair, the same id),
    and a member's weight file belongs to the genome the run keeps."""
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(deep_update(TINY, {"generations": 2, "sparse_training": {
        "method": "rigl", "zeta": 0.3, "end_epoch": 1, "interval": 3}})))
    space = load_space(path)
    search = Search(space=space, task=load_task(space.dataset), evaluator=LocalEvaluator())
    state = search.run()
    reg = state.registry
    grown = 0
    for m in state.population:
        g = m.genome
        assert (g.conn_innov >= 0).all(), "no provisional id is left"
        assert len(set(g.conn_innov.tolist())) == len(g.conn_innov)
        assert set(g.conn_src.tolist()) | set(g.conn_dst.tolist()) <= set(g.node_id.tolist())
        for innov, src, dst in zip(g.conn_innov, g.conn_src, g.conn_dst, strict=True):
            assert reg.connection(src, dst) == innov
        grown += len(m.result.added)
        for src, dst in m.result.added:
            assert g.conn_enabled[(g.conn_src == src) & (g.conn_dst == dst)].all()
        network_from_model(g, m.result.model, "member")  # digest, masks and shapes match
    assert grown > 0
