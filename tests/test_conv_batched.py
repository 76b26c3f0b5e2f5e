"""Batched conv training: one grouped program follows each genome's own training."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evosparse.conv_batched import BatchedConvNetworks, _unfolded
from evosparse.conv_geometry import (
    ConvGeometry,
    conv_cost,
    mutate_dilation,
    mutate_taps,
    tap_counts,
    tap_masks,
)
from evosparse.conv_network import ConvNetwork
from evosparse.families import ConvFamily
from evosparse.fitness import (
    FitnessConfig,
    estimate_batch_bytes,
    evaluate_batch,
    evaluation_seed,
    trained_genome,
)
from evosparse.genome import HIDDEN, Genome, InnovationRegistry
from evosparse.graph import analyse
from evosparse.operators import minimal_genome, mutate
from evosparse.space import (
    REGROWTH,
    ActivationSpec,
    MutationSpec,
    NetworkSpec,
    SparseTrainingSpec,
    TrainingSpec,
)
from evosparse.weights import TEST_PREDICTIONS, network_from_model
from tests.test_fitness import ACROSS_MODES, DIGITS

GEOMETRY = ConvGeometry((1, 8, 8), kernel=3, scales=2)


SIGNALS = ConvGeometry((2, 32), kernel=5, scales=2)
"""Digits' 64 features as a 2-channel signal of length 32: the conv1d form."""


HIDDEN_ACTS = ("relu", "tanh", "sigmoid", "identity")
AIL_ACTS = ("relu", "and_ail", "xnor_ail_norm", "tanh")
"""With two-input units: channels with a second kernel per connection."""


def population(n: int, seed: int = 0, geometry: ConvGeometry = GEOMETRY,
               hidden: tuple[str, ...] = HIDDEN_ACTS, dilations: tuple[int, ...] = (1,),
               levels: int = 2) -> list[Genome]:
    """Conv genomes of different depths, widths, activations and kernel taps (and, with
    more than one `dilations`, kernels of several dilations), some with a channel whose
    inputs are all disabled. With `levels` above the geometry's scales, the first layer
    keeps the input's size (its channels join the input's maps)."""
    rng = np.random.default_rng(seed)
    reg = InnovationRegistry(geometry.shape[0], 10)
    net = NetworkSpec(topology="layered", max_levels=levels, max_hidden=12,
                      family=f"conv{geometry.dims}d")
    acts = ActivationSpec(hidden=hidden)
    rates = MutationSpec(add_node=0.8, add_node_max=3, add_node_fan_in=2, add_node_fan_out=4,
                         add_connection=0.6, remove_connection=0.3, change_activation=0.5)
    out = []
    for i in range(n):
        g = minimal_genome(i, reg, 1.0, rng)
        for _ in range(int(rng.integers(0, 6))):
            g = mutate(g, rng, reg, net, acts, rates)
        g = mutate_taps(g, geometry, rng, 4)
        out.append(mutate_dilation(g, dilations, rng, 3) if len(dilations) > 1 else g)
    return out


@pytest.mark.parametrize(("head", "geometry", "hidden", "dilations", "levels"), [
    ("average", GEOMETRY, HIDDEN_ACTS, (1,), 2), ("bins", GEOMETRY, HIDDEN_ACTS, (1,), 2),
    ("bins", SIGNALS, HIDDEN_ACTS, (1,), 2), ("bins", GEOMETRY, AIL_ACTS, (1,), 2),
    ("average", SIGNALS, AIL_ACTS, (1,), 2), ("bins", SIGNALS, HIDDEN_ACTS, (1, 2, 3), 2),
    ("bins", GEOMETRY, AIL_ACTS, (1, 2), 2), ("bins", SIGNALS, HIDDEN_ACTS, (1,), 3),
    ("bins", GEOMETRY, HIDDEN_ACTS, (1,), 3)],
    ids=["2d", "2d-bins", "1d", "2d-ail", "1d-ail", "1d-dilated", "2d-ail-dilated",
         "1d-full-size-layer", "2d-full-size-layer"])
def test_a_batch_of_conv_genomes_follows_one_by_one_loss_curves(
        head: str, geometry: ConvGeometry, hidden: tuple[str, ...], dilations: tuple[int, ...],
        levels: int) -> None:
    """Also with two-input units (their second kernels train the same in the program),
    with kernels of several dilations (a block per source scale and dilation), and with a
    first layer at the input's size (blocks reading the input's scale read its channels
    too)."""
    genomes = population(8, geometry=geometry, hidden=hidden, dilations=dilations,
                         levels=levels)
    geo = replace(geometry, head=head)
    assert len({len(ConvNetwork(g, True, torch.Generator(), geo).level_ends)
                for g in genomes}) > 1, "genomes of several depths share the program"
    assert any((geo.scale_of(g)[g.node_kind == HIDDEN] == 0).any()
               for g in genomes) == (levels > geo.scales), "channels at the input's size"
    seeds = [evaluation_seed(1, g.genome_id) for g in genomes]
    singles = [ConvNetwork(g, True, torch.Generator().manual_seed(s), geo)
               for g, s in zip(genomes, seeds, strict=True)]
    batched = BatchedConvNetworks([ConvNetwork(g, True, torch.Generator().manual_seed(s), geo)
                                   for g, s in zip(genomes, seeds, strict=True)], geo)
    opts = [torch.optim.Adam(n.parameters(), lr=0.01) for n in singles]
    bopt = torch.optim.Adam(batched.parameters(), lr=0.01)
    x, y = torch.from_numpy(DIGITS.x_train), torch.from_numpy(DIGITS.y_train)
    rng = torch.Generator().manual_seed(0)
    for _ in range(30):
        idx = torch.stack([torch.randperm(len(x), generator=rng)[:32] for _ in genomes])
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
        np.testing.assert_allclose(losses.detach().numpy(), single_losses, rtol=1e-4)
    for j, w in enumerate(batched.weights):
        assert torch.all(w[batched._mask(j) == 0] == 0), "absent and padded weights stay zero"
    assert bool(batched.weights2) == (hidden == AIL_ACTS), "second kernels where units use them"
    gaps = {blk.dilation for net in singles for blk in net.levels}
    assert gaps == set(dilations), "the genomes' kernels have every dilation"
    for i, net in enumerate(singles):  # unbatch gives each genome its own trained weights
        torch.testing.assert_close(batched.unbatch(i)(x[:50]), net(x[:50]), rtol=1e-4,
                                   atol=1e-5)


@pytest.mark.parametrize(("size", "stride", "dilation"), [
    ((40,), 2, 1), ((40,), 4, 1), ((9,), 1, 1), ((8, 8), 2, 1), ((7, 5), 1, 1), ((40,), 2, 3),
    ((9,), 1, 2), ((8, 8), 2, 2)])
def test_unfolded_convolution_is_the_grouped_convolution(size: tuple[int, ...], stride: int,
                                                         dilation: int) -> None:
    """Raw-input blocks run as a batched matrix product of unfolded patches: the same
    values and gradients as `groups=genomes` (odd sizes, strides, dilations, 1 and 2
    dims), in the program's layout of maps: [genomes, channels, samples, *size]."""
    gen = torch.Generator().manual_seed(0)
    dims, genomes, c_in, c_out, k = len(size), 5, 2, 3, 3 if len(size) == 2 else 5
    x = torch.randn(7, genomes, c_in, *size, generator=gen)
    w = torch.randn(genomes, c_out, c_in, *(k,) * dims, generator=gen, requires_grad=True)
    conv = F.conv1d if dims == 1 else F.conv2d
    want = conv(x.flatten(1, 2), w.flatten(0, 1), None, stride=stride,
                padding=dilation * (k // 2), dilation=dilation, groups=genomes)
    got = _unfolded(x.movedim(0, 2), w, stride, dilation).movedim(2, 0).flatten(1, 2)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    probe = torch.randn(want.shape, generator=gen)
    (g_want,) = torch.autograd.grad((want * probe).sum(), w)
    (g_got,) = torch.autograd.grad((got * probe).sum(), w)
    torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("schedule", "smoothing", "shift"),
                         [("constant", 0.0, 0), ("cosine", 0.1, 0), ("cosine", 0.0, 1)])
def test_batched_and_one_by_one_conv_evaluations_agree(schedule: str, smoothing: float,
                                                       shift: int) -> None:
    """Also with translated training samples (`training.shift`): each genome draws the
    same moves alone or batched."""
    genomes = population(6, seed=1)
    training = TrainingSpec(epochs=2, lr_schedule=schedule, label_smoothing=smoothing,
                            shift=shift)
    cfg = FitnessConfig(task=DIGITS, training=training, bias=True, run_seed=3,
                        family=ConvFamily(GEOMETRY))
    alone = evaluate_batch(genomes, replace(cfg, batched=False))
    together = evaluate_batch(genomes, cfg)
    for a, b in zip(alone, together, strict=True):
        assert a.ok and b.ok, (a.error, b.error)
        assert abs(a.val_accuracy - b.val_accuracy) <= ACROSS_MODES
        assert abs(a.test_accuracy - b.test_accuracy) <= ACROSS_MODES
        assert abs(a.val_loss - b.val_loss) < 1e-3, (a.val_loss, b.val_loss)
        assert (a.flops, a.params) == (b.flops, b.params)
    assert max(r.val_accuracy for r in together) > 0.15  # they learn: chance is 0.1
    if shift:  # the moves change what is learnt (one epoch: the same minibatches both ways)
        one = training.model_copy(update={"epochs": 1})
        moved = evaluate_batch(genomes, replace(cfg, training=one))
        still = evaluate_batch(genomes, replace(cfg, training=one.model_copy(
            update={"shift": 0})))
        assert any(abs(a.val_loss - b.val_loss) > 1e-2 for a, b in zip(still, moved,
                                                                       strict=True))


def _kernel_taps(genome: Genome) -> int:
    """Kernel taps of the live network (connections into hidden channels)."""
    topo = analyse(genome)
    into_hidden = topo.conn_active & (genome.node_kind[topo.dst_row] == HIDDEN)
    return int(tap_counts(genome, GEOMETRY)[into_hidden].sum())


@pytest.mark.parametrize("method", [
    SparseTrainingSpec(method="magnitude", density=0.5, end_epoch=1, interval=3),
    SparseTrainingSpec(method="snip", density=0.4),
    SparseTrainingSpec(method="dissipating", watch_epochs=1, threshold=0.5),
    SparseTrainingSpec(method="set", zeta=0.3, end_epoch=2, interval=4),
    SparseTrainingSpec(method="rigl", zeta=0.3, end_epoch=2, interval=4),
    SparseTrainingSpec(method="ctre", zeta=0.3, end_epoch=2, interval=4),
], ids=lambda s: s.method)
def test_training_prunes_the_same_kernel_taps_alone_or_batched(method: SparseTrainingSpec
                                                               ) -> None:
    """Pruning in training removes single taps (SET, RigL and CTRE grow as many back, within the
    compiled kernels); the genome, its FLOPs and its weight file follow. Mutant that fails
    this: `unbatch` not copying the masks back."""
    genomes = population(6, seed=1)
    cfg = FitnessConfig(task=DIGITS, training=TrainingSpec(epochs=2), bias=True, run_seed=3,
                        family=ConvFamily(GEOMETRY), sparse=method)
    alone = evaluate_batch(genomes, replace(cfg, batched=False))
    together = evaluate_batch(genomes, cfg)
    thinned = grown = 0
    for g, a, b in zip(genomes, alone, together, strict=True):
        assert a.ok and b.ok, (a.error, b.error)
        assert (a.disabled, a.taps) == (b.disabled, b.taps), "the same taps go"
        assert abs(a.val_accuracy - b.val_accuracy) <= ACROSS_MODES
        after = trained_genome(g, a.disabled, (), a.taps)
        cost = conv_cost(after, True, GEOMETRY)
        assert (a.flops, a.params, a.connections) == (cost.flops, cost.params,
                                                      cost.connections)
        kept, start = _kernel_taps(after), _kernel_taps(g)
        assert kept <= start
        if method.method in ("magnitude", "snip"):
            assert kept <= np.ceil(method.density * start)
        bits = dict(zip(g.conn_innov.tolist(), tap_masks(g, GEOMETRY).tolist(), strict=True))
        grown += sum(bin(b & ~bits[i]).count("1") for i, b in a.taps)
        net, tensors = network_from_model(after, a.model, "test", ConvFamily(GEOMETRY))
        predicted = net(torch.from_numpy(DIGITS.x_test)).argmax(dim=1)
        assert torch.equal(predicted, tensors[TEST_PREDICTIONS])
        thinned += len(a.taps)
    assert thinned, "some kernels keep some of their taps"
    assert (grown > 0) == (method.method in REGROWTH), "only regrowth grows taps"


@pytest.mark.parametrize("geometry", [GEOMETRY, SIGNALS], ids=["2d", "1d"])
def test_ctre_compares_a_channel_with_the_source_as_each_tap_reads_it(geometry: ConvGeometry
                                                                      ) -> None:
    """A kernel block's signal (what CTRE scores taps by) pairs each channel's map with the
    source map shifted and strided as each tap reads it (zero outside), laid out as the
    kernel's entries; the padded program gives each genome the same signals. Mutants that
    fail: taps in another order, the padding, the stride or the dilation left out."""
    genomes = population(5, seed=2, geometry=geometry, dilations=(1, 2))
    seeds = [evaluation_seed(1, g.genome_id) for g in genomes]
    singles = [ConvNetwork(g, True, torch.Generator().manual_seed(s), geometry)
               for g, s in zip(genomes, seeds, strict=True)]
    batched = BatchedConvNetworks([ConvNetwork(g, True, torch.Generator().manual_seed(s),
                                               geometry)
                                   for g, s in zip(genomes, seeds, strict=True)], geometry)
    x = torch.from_numpy(DIGITS.x_train[:16])
    k, t = geometry.kernel, geometry.taps
    for net in [*singles, batched]:
        net.capture(True)
    alone = []
    for net in singles:
        net(x)
        alone.append(net.signals())
    batched.sample_losses(x, torch.zeros(len(x), dtype=torch.int64),
                          torch.arange(len(x)).expand(len(genomes), -1))
    together = batched.signals()
    checked = dilated = 0
    for net, signals in zip(singles, alone, strict=True):
        for (b, a), (_, patches, maps) in ((p, signals[p[0]]) for r, pairs, _ in net.plan
                                           for p in pairs):
            if a or not patches.shape[1]:
                continue  # by hand: the blocks reading the raw input
            r = next(r for r, pairs, _ in net.plan if (b, a) in pairs)
            stride, gap = 1 << r, net.levels[b].dilation
            dilated += gap > 1
            pad = gap * (k // 2)
            src = F.pad(x.view(len(x), *geometry.shape), (pad, pad) * geometry.dims)
            out = geometry.size(r)
            for tap in range(t):
                at = [gap * int(i) for i in np.unravel_index(tap, (k,) * geometry.dims)]
                window = tuple(slice(o, o + stride * (m - 1) + 1, stride)
                               for o, m in zip(at, out, strict=True))
                want = src[(slice(None), slice(None), *window)]  # [samples, channels, *out]
                got = patches[0, tap::t].view(-1, len(x), *out).transpose(0, 1)
                torch.testing.assert_close(got, want)
            assert maps.shape[1:] == (net.levels[b].weight.shape[0], len(x) * int(np.prod(out)))
            checked += 1
    assert checked and dilated
    for i, b, j, _, rows, at in batched._copies:
        _, patches, maps = together[j]
        _, want_patches, want_maps = alone[i][b]
        cols = (at[:, None] * t + torch.arange(t)).flatten()
        torch.testing.assert_close(patches[i][cols], want_patches[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(maps[i][rows], want_maps[0], rtol=1e-4, atol=1e-5)


def test_the_memory_estimate_holds_a_conv_batch_s_kernels_and_maps() -> None:
    """The estimate that splits batches under `memory_cap_mb` counts each channel's maps
    and each kernel's taps: at least the batch's parameters with their gradients and two
    Adam states, plus every channel's maps (input, pre- and post-activation) over the
    largest scoring pass. Mutant that fails this: the MLP formula (one value a node, one
    weight a connection)."""
    genomes = population(6)
    cfg = FitnessConfig(task=DIGITS, training=TrainingSpec(epochs=1), bias=True, run_seed=0,
                        family=ConvFamily(GEOMETRY))
    net = BatchedConvNetworks([ConvNetwork(g, True, torch.Generator(), GEOMETRY)
                               for g in genomes], GEOMETRY)
    params = 4 * sum(p.numel() for p in net.parameters())
    maps = sum(GEOMETRY.positions(int(s)) for g in genomes for s in GEOMETRY.scale_of(g)
               if s >= 0)
    rows = max(len(DIGITS.x_val), len(DIGITS.x_test))
    assert estimate_batch_bytes(genomes, cfg) >= 4 * params + 3 * 4 * maps * rows


def test_unlike_conv_genomes_train_as_several_programs_in_genome_order() -> None:
    """Genomes of two depths, and of one depth but very different widths, become several
    programs (`ConvPrograms`); losses come back in genome order, each as its own network
    computes it. Mutant that fails: one program for all, or losses in program order."""
    from evosparse.conv_batched import ConvPrograms
    from evosparse.operators import dense_mlp_genome

    reg = InnovationRegistry(1, 10)
    widths = [[2, 2], [12, 12], [2, 2], [12, 12], [2, 2], [12, 12], [3], [2, 2]]
    genomes = [dense_mlp_genome(i, reg, w, "relu", 2) for i, w in enumerate(widths)]
    seeds = [evaluation_seed(2, g.genome_id) for g in genomes]
    programs = ConvPrograms(genomes, True, [torch.Generator().manual_seed(s) for s in seeds],
                            GEOMETRY)
    by_width = {tuple(sorted(widths[i][0] for i in m)) for m in programs.members}
    assert (2, 2, 2, 2) in by_width and (12, 12, 12) in by_width, programs.members
    singles = [ConvNetwork(g, True, torch.Generator().manual_seed(s), GEOMETRY)
               for g, s in zip(genomes, seeds, strict=True)]
    x, y = torch.from_numpy(DIGITS.x_train), torch.from_numpy(DIGITS.y_train)
    rows = torch.stack([torch.arange(16) + 16 * i for i in range(len(genomes))])
    want = [F.cross_entropy(net(x[r]), y[r]).item() for net, r in zip(singles, rows,
                                                                        strict=True)]
    np.testing.assert_allclose(programs.losses(x, y, rows).detach().numpy(), want, rtol=1e-5)


def test_a_program_that_holds_its_genomes_out_of_order_trains_each_on_its_own_rows() -> None:
    """One program whose members are in work order, not genome order (the largest genome
    first): batched evaluation still agrees with one by one. Mutant that fails: a single
    program given the genomes' minibatch rows in genome order."""
    from evosparse.conv_batched import ConvPrograms
    from evosparse.operators import dense_mlp_genome

    reg = InnovationRegistry(1, 10)
    genomes = [dense_mlp_genome(i, reg, [w, w], "relu", 2) for i, w in enumerate([7, 6, 5])]
    programs = ConvPrograms(genomes, True, [torch.Generator() for _ in genomes], GEOMETRY)
    assert programs.members == [[2, 1, 0]]
    cfg = FitnessConfig(task=DIGITS, training=TrainingSpec(epochs=2), bias=True, run_seed=4,
                        family=ConvFamily(GEOMETRY))
    alone = evaluate_batch(genomes, replace(cfg, batched=False))
    together = evaluate_batch(genomes, cfg)
    for a, b in zip(alone, together, strict=True):
        assert abs(a.val_loss - b.val_loss) < 1e-3, (a.val_loss, b.val_loss)
