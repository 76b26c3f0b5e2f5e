"""Population-batched training: each genome follows the trajectory it follows alone."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evosparse.batched import BatchedNetworks
from evosparse.data import Task
from evosparse.fitness import (
    FitnessConfig,
    estimate_batch_bytes,
    evaluate_batch,
    evaluation_seed,
    make_optimizer,
    plan_batches,
)
from evosparse.genome import HIDDEN, Genome, InnovationRegistry
from evosparse.network import SparseNetwork
from evosparse.operators import add_connections, add_nodes, dense_mlp_genome, minimal_genome
from evosparse.space import ActivationSpec, NetworkSpec, TrainingSpec
from evosparse.step_graph import Rewind
from tests.test_fitness import ACROSS_MODES, DIGITS


def heterogeneous(n: int, hidden: tuple[str, ...] = ("relu", "tanh", "sigmoid", "gelu",
                                                    "identity")) -> list:
    """Genomes of different sizes, depths and activation mixes."""
    rng = np.random.default_rng(11)
    reg = InnovationRegistry(64, 10)
    acts = ActivationSpec(hidden=hidden)
    out = []
    for i in range(n):
        net = NetworkSpec(max_hidden=40, max_levels=1 + i % 3)
        g = minimal_genome(i, reg, 0.05 + 0.06 * i, rng)
        for _ in range(i):
            g = add_nodes(g, rng, reg, net, acts, 2, fan_in=6, fan_out=2)
            g = add_connections(g, rng, reg, net, 8)
        out.append(g)
    return out


AIL = ("and_ail", "or_ail", "xnor_ail", "and_ail_norm", "or_ail_norm", "xnor_ail_norm")


def with_functions(genomes: list, names: tuple[str, ...], step: int, parity: int) -> list:
    """The genomes with `names` (cycled) on every `step`-th hidden node of the genomes
    whose id has the given parity (so a batch mixes levels with and without them)."""
    out = []
    for g in genomes:
        act = g.node_act.copy()
        hidden = np.flatnonzero(g.node_kind == HIDDEN)[::step]
        if g.genome_id % 2 == parity and hidden.size:
            act[hidden] = np.resize(np.array(names, dtype=act.dtype), hidden.size)
        out.append(Genome.build(g.genome_id, (g.node_id, g.node_kind, g.node_pos, act),
                                g.conns))
    return out


def with_ail(genomes: list) -> list:
    """Two-input AIL units on every other hidden node of every other genome."""
    return with_functions(genomes, AIL, 2, 0)


EXPRESSIONS = ("relu(x) * tanh(x)", "max(x, sin(x)) + 0.5")
"""Evolved expressions: their gradients are taken by running them again under autograd."""


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device on this machine"))]
"""The same programs run on a CUDA GPU where one is present."""


IN_PLACE = ("relu", "tanh", "sigmoid", "identity")
"""Functions a batched program runs in place, on rows aligned across genomes where it can."""


MIXES = {"one-input": heterogeneous,
         "in-place": lambda n: heterogeneous(n, IN_PLACE),
         "with-ail": lambda n: with_ail(heterogeneous(n)),
         "with-expressions": lambda n: with_functions(heterogeneous(n), EXPRESSIONS, 3, 1)}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mix", sorted(MIXES))
def test_batch_of_8_follows_one_by_one_loss_curves_for_50_steps(mix: str, device: str) -> None:
    genomes = MIXES[mix](8)
    if mix == "with-ail":
        assert sum(any(a in AIL for a in g.node_act) for g in genomes) >= 3
    if mix == "with-expressions":
        assert sum(any(a in EXPRESSIONS for a in g.node_act) for g in genomes) >= 3
    assert len({len(SparseNetwork(g, True, torch.Generator()).levels) for g in genomes}) > 1
    seeds = [evaluation_seed(1, g.genome_id) for g in genomes]
    singles = [SparseNetwork(g, True, torch.Generator().manual_seed(s)).to(device)
               for g, s in zip(genomes, seeds, strict=True)]
    batched = BatchedNetworks(genomes, True, [torch.Generator().manual_seed(s)
                                              for s in seeds]).to(device)
    opts = [torch.optim.Adam(n.parameters(), lr=0.01) for n in singles]
    bopt = torch.optim.Adam(batched.parameters(), lr=0.01)
    x = torch.from_numpy(DIGITS.x_train).to(device)
    y = torch.from_numpy(DIGITS.y_train).to(device)
    rng = torch.Generator().manual_seed(0)
    for _ in range(50):
        idx = torch.stack([torch.randperm(len(x), generator=rng)[:32]
                           for _ in genomes]).to(device)
        single_losses = []
        for net, opt, rows in zip(singles, opts, idx, strict=True):
            loss = F.cross_entropy(net(x[rows]), y[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
            single_losses.append(loss.item())
        losses = batched.losses(x, y, idx)
        bopt.zero_grad()
        losses.sum().backward()
        bopt.step()
        np.testing.assert_allclose(losses.detach().cpu().numpy(), single_losses, rtol=1e-4)
    assert len(batched.groups) > 1, "genomes of different depths train in separate groups"
    for group in batched.groups:
        for k, w in enumerate(group.weights):
            mask = getattr(group, f"mask{k}")
            assert torch.all(w[mask == 0] == 0), "absent and padded weights stay exactly zero"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mix", sorted(MIXES))
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_a_groups_own_backward_matches_autograd(mix: str, device: str, smoothing: float
                                                ) -> None:
    """`_GroupProgram`'s hand-written backward (in place, masks applied to the gradients)
    gives the gradients autograd gives on the same padded group, also when a training
    step runs it without autograd (`train_losses`), with and without label smoothing."""
    genomes = MIXES[mix](8)
    gens = [torch.Generator().manual_seed(i) for i in range(8)]
    batched = BatchedNetworks(genomes, True, gens).to(device)
    rows = torch.stack([torch.randperm(len(DIGITS.x_train), generator=torch.Generator()
                                       .manual_seed(i))[:32] for i in range(8)]).to(device)
    x = torch.from_numpy(DIGITS.x_train).to(device)
    y = torch.from_numpy(DIGITS.y_train).to(device)
    grads = []
    for captured in (False, True):  # a captured pass runs through autograd
        for group in batched.groups:
            group.capture(captured)
        batched.zero_grad(set_to_none=True)
        losses = batched.losses(x, y, rows, smoothing)
        losses.sum().backward()
        grads.append((losses.detach(), [p.grad.clone() for p in batched.parameters()
                                        if p.grad is not None]))
    for group in batched.groups:
        group.capture(False)
    if batched.direct():  # not with two-input units, which run through autograd
        batched.zero_grad(set_to_none=True)
        sums = batched.train_losses(x, y, batched.group_rows(rows), 1 / rows.shape[1],
                                    smoothing)
        grads.append((batched.in_order(sums) / rows.shape[1], [
            p.grad.clone() for p in batched.parameters() if p.grad is not None]))
    theirs, g_theirs = grads[1]
    for ours, g_ours in grads[::2]:
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
        assert len(g_ours) == len(g_theirs) > 0
        for a, b in zip(g_ours, g_theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    for group in batched.groups:
        for w, m in zip(group.weights, group.masks(), strict=True):
            assert not bool((w.grad * (1 - m)).any()), "no gradient where the mask is 0"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mix", sorted(MIXES))
def test_batched_and_one_by_one_evaluations_agree(mix: str, device: str) -> None:
    genomes = MIXES[mix](8)
    cfg = FitnessConfig(task=DIGITS, training=TrainingSpec(epochs=2), bias=True, run_seed=3,
                        device=device)
    alone = evaluate_batch(genomes, replace(cfg, batched=False))
    together = evaluate_batch(genomes, cfg)
    for a, b in zip(alone, together, strict=True):
        assert a.ok and b.ok
        assert abs(a.val_accuracy - b.val_accuracy) <= ACROSS_MODES
        assert abs(a.test_accuracy - b.test_accuracy) <= ACROSS_MODES
        assert (a.flops, a.params) == (b.flops, b.params)
        assert b.memory_mb == together[0].memory_mb > 0, "the batch's peak, shared out"


def test_label_smoothing_trains_the_same_batched_and_one_by_one() -> None:
    """`training.label_smoothing` reaches both training paths: batched (the hand-written
    backward included) and one-by-one evaluations agree with it on, and they differ from
    the evaluations without it (mutant that fails: a path that ignores the key)."""
    genomes = MIXES["one-input"](6)
    cfg = FitnessConfig(task=DIGITS, training=TrainingSpec(epochs=2, label_smoothing=0.2),
                        bias=True, run_seed=3)
    alone = evaluate_batch(genomes, replace(cfg, batched=False))
    together = evaluate_batch(genomes, cfg)
    plain = evaluate_batch(genomes, replace(cfg, training=TrainingSpec(epochs=2)))
    for a, b, c in zip(alone, together, plain, strict=True):
        assert a.ok and b.ok and c.ok
        assert abs(a.val_accuracy - b.val_accuracy) <= ACROSS_MODES
        assert abs(a.val_loss - b.val_loss) < 1e-3
        assert abs(a.val_loss - c.val_loss) > 1e-3, "smoothing changes what is learned"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_captured_cuda_steps_train_as_one_by_one_with_each_optimizer(optimizer: str) -> None:
    """On a GPU the batched steps replay a CUDA graph (a failed capture warns, and warnings
    fail the tests): the results still agree with one-by-one training."""
    genomes = heterogeneous(8)
    cfg = FitnessConfig(task=DIGITS, training=TrainingSpec(epochs=2, optimizer=optimizer),
                        bias=True, run_seed=3, device="cuda")
    alone = evaluate_batch(genomes, replace(cfg, batched=False))
    together = evaluate_batch(genomes, cfg)
    for a, b in zip(alone, together, strict=True):
        assert a.ok and b.ok
        assert abs(a.val_accuracy - b.val_accuracy) <= ACROSS_MODES


@pytest.mark.parametrize("device", DEVICES)
def test_a_diverging_genome_does_not_spoil_its_batch(device: str) -> None:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(64, 4)) * 1e12).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    task = Task("t", x, y, x, y, x, y, n_classes=2)
    reg = InnovationRegistry(4, 2)
    linear = [minimal_genome(i, reg, 1.0, rng) for i in range(2)]
    squares = dense_mlp_genome(2, reg, [2, 2], "square")  # (1e12)^4 overflows float32
    cfg = FitnessConfig(task=task, training=TrainingSpec(epochs=2, batch_size=16), bias=True,
                        run_seed=0, device=device)
    together = evaluate_batch([linear[0], squares, linear[1]], cfg)
    alone = evaluate_batch(linear, replace(cfg, batched=False))
    assert [r.status for r in together] == ["ok", "nan", "ok"]
    assert "epoch 0, step 0" in together[1].error
    assert [r.val_accuracy for r in (together[0], together[2])] == [r.val_accuracy for r in alone]


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_rewinding_warm_up_steps_leaves_the_trajectory_of_a_fresh_start(optimizer: str) -> None:
    """A CUDA graph's warm-up steps train; `Rewind` puts parameters and optimiser state
    back so that what follows is exactly the fresh run (checked on the CPU, bit for bit)."""
    genomes = heterogeneous(4)
    spec = TrainingSpec(optimizer=optimizer, momentum=0.9, weight_decay=1e-3)
    x, y = torch.from_numpy(DIGITS.x_train), torch.from_numpy(DIGITS.y_train)
    rows = torch.randint(0, len(x), (4, 32), generator=torch.Generator().manual_seed(0))
    runs = []
    for warm_up in (0, 3):
        net = BatchedNetworks(genomes, True, [torch.Generator().manual_seed(i) for i in range(4)])
        params = [p for p in net.parameters() if p.requires_grad]
        opt = make_optimizer(params, spec)
        counter = torch.zeros(1)
        rewind = Rewind(params, opt, lambda c=counter: [c])
        for n in range(warm_up + 5):
            if n == warm_up and warm_up:
                rewind()
                assert counter.item() == 0
            opt.zero_grad(set_to_none=True)
            shift = n - warm_up if n >= warm_up else n + 7  # warm-up steps see other rows
            net.losses(x, y, rows.roll(shift, dims=1)).sum().backward()
            opt.step()
            counter += 1
        runs.append([p.detach().clone() for p in params])
    for fresh, rewound in zip(*runs, strict=True):
        assert torch.equal(fresh, rewound)


def test_batches_are_split_in_order_under_the_size_and_memory_caps() -> None:
    genomes = heterogeneous(8)
    cfg = FitnessConfig(task=DIGITS, training=TrainingSpec(), bias=True, run_seed=0)
    whole = estimate_batch_bytes(genomes, cfg)
    assert plan_batches(genomes, cfg, 16, 4096) == [genomes]
    for size, cap_mb in [(3, 4096.0), (16, whole / 3 / 2**20), (2, whole / 3 / 2**20)]:
        batches = plan_batches(genomes, cfg, size, cap_mb)
        assert [g for b in batches for g in b] == genomes, "order and membership kept"
        assert all(len(b) <= size for b in batches)
        assert all(len(b) == 1 or estimate_batch_bytes(b, cfg) <= cap_mb * 2**20 for b in batches)
    tiny = plan_batches(genomes, cfg, 16, 1e-6)
    assert [len(b) for b in tiny] == [1] * 8, "a genome over the cap still gets evaluated"


def test_padding_rows_join_their_genomes_last_function_unless_it_could_be_nan() -> None:
    reg = InnovationRegistry(4, 2)
    wide, narrow = dense_mlp_genome(0, reg, [6], "relu"), dense_mlp_genome(1, reg, [3], "relu")
    nets = [SparseNetwork(g, True, torch.Generator().manual_seed(0)) for g in (wide, narrow)]
    group = BatchedNetworks([wide, narrow], True,
                            [torch.Generator().manual_seed(0) for _ in range(2)]).groups[0]
    assert len(group._groups[0]) == 1, "one function on the level: no gather"
    x = torch.randn(2, 5, 4)
    torch.testing.assert_close(group(x)[1], nets[1](x[1]).T)
    act = narrow.node_act.copy()
    act[narrow.node_kind == HIDDEN] = "1.0 / x"  # infinite at 0: its padding runs the identity
    odd = Genome.build(1, (narrow.node_id, narrow.node_kind, narrow.node_pos, act), narrow.conns)
    group = BatchedNetworks([wide, odd], True, [torch.Generator() for _ in range(2)]).groups[0]
    assert torch.isfinite(group(x)).all(), "padding (pre-activation 0) never yields inf x 0"


def test_tanh_matches_torch_values_and_gradients() -> None:
    from evosparse.activations import torch_activation

    for n in (101, 20001):  # below and above FAST_TANH_FROM elements
        x = torch.cat([torch.linspace(-50, 50, n), torch.tensor([0.0, 1e-8, -1e-6])])
        ours, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
        torch_activation("tanh")(ours).sum().backward()
        torch.tanh(ref).sum().backward()
        torch.testing.assert_close(torch_activation("tanh")(x), torch.tanh(x), atol=3e-7,
                                   rtol=0)
        torch.testing.assert_close(ours.grad, ref.grad, atol=1e-6, rtol=0)
