"""Compiled networks and fitness: masks hold, results seeded per genome, divergence caught."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from evosparse.data import Task, load_task
from evosparse.fitness import FitnessConfig, evaluate_batch, evaluate_genome
from evosparse.genome import InnovationRegistry
from evosparse.network import SparseNetwork
from evosparse.operators import add_connections, add_nodes, dense_mlp_genome, minimal_genome
from evosparse.space import ActivationSpec, DatasetSpec, NetworkSpec, TrainingSpec
from tests.test_flops import hand_genome

DIGITS = load_task(DatasetSpec(name="digits"))
TRAIN = TrainingSpec(epochs=1, batch_size=128)


def grown_genomes(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    reg = InnovationRegistry(64, 10)
    net = NetworkSpec(max_hidden=16)
    acts = ActivationSpec(hidden=("relu", "tanh", "sigmoid"))
    out = []
    for i in range(n):
        g = minimal_genome(i, reg, 0.2, rng)
        g = add_nodes(add_connections(g, rng, reg, net, 20), rng, reg, net, acts, 3)
        out.append(add_connections(g, rng, reg, net, 20))
    return out


def test_network_matches_a_hand_computed_forward_pass() -> None:
    g = hand_genome()
    net = SparseNetwork(g, bias=True, generator=torch.Generator().manual_seed(0))
    x = torch.tensor([[0.3, -0.7]])
    # Levels: [5] (from 1), [3] (from 0, 1, 5), [2] (from 0, 3)
    l1, l2, l3 = net.levels
    h5 = torch.sigmoid(x[:, 1:2] * l1.weight[0, 1] + l1.bias)
    cols = torch.cat([x, h5], dim=1)
    h3 = torch.tanh(cols @ (l2.weight * l2.mask).T + l2.bias)
    out = torch.cat([cols, h3], dim=1) @ (l3.weight * l3.mask).T + l3.bias
    torch.testing.assert_close(net(x), out)
    with torch.no_grad():  # scoring's and export's node-major pass
        torch.testing.assert_close(net(x), out)
    assert l3.mask.tolist() == [[1.0, 0.0, 0.0, 1.0]]


def test_inference_pass_computes_what_the_training_pass_computes() -> None:
    """Without autograd (scoring, export) a network runs node-major, functions in place;
    the logits are those of the training pass, with and without biases, for mixed levels
    and functions that have no in-place form (gelu, an expression)."""
    acts = ActivationSpec(hidden=("relu", "tanh", "sigmoid", "gelu", "identity",
                                  "x * sigmoid(x)"))
    rng = np.random.default_rng(5)
    reg = InnovationRegistry(64, 10)
    x = torch.from_numpy(DIGITS.x_val)
    for i in range(6):
        g = minimal_genome(i, reg, 0.3, rng)
        g = add_nodes(g, rng, reg, NetworkSpec(max_hidden=40), acts, 12, fan_in=8, fan_out=3)
        net = SparseNetwork(g, bias=i % 2 == 0, generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            inferred = net(x)
        trained = net(x)
        assert trained.requires_grad and not inferred.requires_grad
        torch.testing.assert_close(inferred, trained.detach(), rtol=1e-5, atol=1e-6)


def test_absent_connections_stay_zero_and_get_no_gradient() -> None:
    g = grown_genomes(1)[0]
    net = SparseNetwork(g, bias=True, generator=torch.Generator().manual_seed(0))
    x = torch.from_numpy(DIGITS.x_train[:32])
    y = torch.from_numpy(DIGITS.y_train[:32])
    torch.nn.functional.cross_entropy(net(x), y).backward()
    for level in net.levels:
        off = level.mask == 0
        assert torch.all(level.weight[off] == 0)
        assert torch.all(level.weight.grad[off] == 0)


ACROSS_MODES = 0.01
"""The one rule for results (DESIGN: a function of genome, budget and seed only): within a
mode (batched, or one by one) a genome's result is exact whatever its batch holds and in
whatever order; batched and one-by-one training sum in another order, so their accuracies
agree within this (one validation sample in a hundred), their FLOPs and params exactly."""


def test_result_depends_only_on_genome_and_seed() -> None:
    """Mutant that fails this: the training seed taken from the genome's place in its batch
    (`evaluation_seed(cfg.run_seed, position)`) instead of its id."""
    gs = grown_genomes(4)
    cfg = FitnessConfig(task=DIGITS, training=TRAIN, bias=True, run_seed=5)
    alone = replace(cfg, batched=False)
    for mode in (cfg, alone):
        forward = evaluate_batch(gs, mode)
        backward = evaluate_batch(gs[::-1], mode)[::-1]
        pairs = evaluate_batch(gs[2:], mode) + evaluate_batch(gs[:2], mode)
        pairs = pairs[2:] + pairs[:2]
        for a, b, c in zip(forward, backward, pairs, strict=True):
            assert a.status == "ok"
            exact = (a.val_accuracy, a.test_accuracy, a.flops, a.params)
            assert exact == (b.val_accuracy, b.test_accuracy, b.flops, b.params)
            assert exact == (c.val_accuracy, c.test_accuracy, c.flops, c.params)
    batched, single = evaluate_batch(gs, cfg), evaluate_batch(gs, alone)
    for a, c in zip(batched, single, strict=True):
        assert abs(a.val_accuracy - c.val_accuracy) <= ACROSS_MODES
        assert abs(a.test_accuracy - c.test_accuracy) <= ACROSS_MODES
        assert (a.flops, a.params) == (c.flops, c.params)
    other_seed = evaluate_batch(gs, replace(cfg, run_seed=6))
    assert [r.val_accuracy for r in other_seed] != [r.val_accuracy for r in batched]


def test_dense_mlp_learns_digits() -> None:
    g = dense_mlp_genome(0, InnovationRegistry(64, 10), [32], "relu")
    r = evaluate_genome(g, FitnessConfig(task=DIGITS, training=TrainingSpec(epochs=3), bias=True,
                                         run_seed=0))
    assert r.ok and r.val_accuracy > 0.9 and r.test_accuracy > 0.9
    assert r.flops == 2 * (64 * 32 + 32 * 10) + 42 + 32  # weights, biases, 32 relus


def test_diverging_training_is_recorded_not_raised() -> None:
    rng = np.random.default_rng(0)
    x = np.full((64, 4), 3e38, dtype=np.float32)  # sums overflow float32 to inf
    y = rng.integers(0, 2, size=64)
    task = Task("huge", x, y, x, y, x, y, n_classes=2)
    g = minimal_genome(0, InnovationRegistry(4, 2), 1.0, rng)
    r = evaluate_genome(g, FitnessConfig(task=task, training=TrainingSpec(lr=10.0), bias=True,
                                         run_seed=0))
    assert r.status == "nan" and not r.ok
    assert "epoch 0" in r.error or "not finite" in r.error
