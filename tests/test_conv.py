"""The conv1d / conv2d families: FLOPs counted by hand, the compiled network against
torch's own convolutions, the space's and data's errors, and searches that resume."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import evosparse
from evosparse.activations import activation_cost
from evosparse.conv_geometry import ConvGeometry, conv_cost, mutate_taps
from evosparse.conv_network import ConvNetwork
from evosparse.errors import UserError
from evosparse.families import family_of
from evosparse.genome import HIDDEN, INPUT, OUTPUT, Genome
from evosparse.space import load_space
from evosparse.weights import genome_digest

RELU, TANH = activation_cost("relu"), activation_cost("tanh")
PLAIN_START = {"training": {"initial_epochs": 0, "finish_epochs": 0},
               "kstarts": {"k": 2, "density": 0.5, "hidden": [8, 8], "width": 1.0}}
"""`digits_conv.yaml` as it was before its long-trained ladder start: the searches below
test mechanisms (resume, export, co-evolution) in a few generations, each of which must
breed (a finishing generation does not) in seconds."""


def small_genome(shape: tuple[int, ...] = (1, 8), act3: str = "relu") -> Genome:
    """Input channel 0, outputs 1 and 2, channel 3 at position 0.4 (scale 1 of 2) with
    relu (or `act3`), channel 4 at 0.8 (scale 2) with tanh; a skip from the input to
    channel 4, and one connection (0 -> 2) disabled."""
    ids = np.array([0, 1, 2, 3, 4])
    kind = np.array([INPUT, OUTPUT, OUTPUT, HIDDEN, HIDDEN], dtype=np.int8)
    pos = np.array([0.0, 1.0, 1.0, 0.4, 0.8])
    act = np.array(["identity", "identity", "identity", act3, "tanh"])
    src = np.array([0, 3, 0, 4, 3, 0, 0])
    dst = np.array([3, 4, 4, 1, 2, 1, 2])
    enabled = np.array([True, True, True, True, True, True, False])
    return Genome.build(0, (ids, kind, pos, act), (np.arange(7), src, dst, enabled))


def test_scales_follow_positions_and_sizes_round_up() -> None:
    geo = ConvGeometry((1, 7), kernel=3, scales=2)
    # rows in canonical order: input 0, channels 3 and 4, outputs 1 and 2
    assert geo.scale_of(small_genome()).tolist() == [0, 1, 2, -1, -1]
    assert [geo.size(s) for s in range(3)] == [(7,), (4,), (2,)]
    assert ConvGeometry((3, 8, 5), 3, 1).size(1) == (4, 3)


def test_training_shifts_move_samples_along_each_axis_repeating_edges() -> None:
    """`training.shift`'s translations, by hand: a 1 x 4 signal and a 2-channel 2 x 2
    image; offset 0 is the middle row, and every channel moves alike."""
    signal = ConvGeometry((1, 4), kernel=3, scales=1).shift_maps(1)
    x = np.array([10, 20, 30, 40])
    assert x[signal].tolist() == [[20, 30, 40, 40], [10, 20, 30, 40], [10, 10, 20, 30]]
    image = ConvGeometry((2, 2, 2), kernel=3, scales=1).shift_maps(1)
    x = np.arange(8)  # channel 0: [[0, 1], [2, 3]], channel 1: the same + 4
    assert image.shape == (9, 8)
    assert x[image[4]].tolist() == x.tolist()
    down_right = x[image[8]].reshape(2, 2, 2)  # offsets (+1, +1): row and column 0 repeat
    assert down_right.tolist() == [[[0, 0], [0, 0]], [[4, 4], [4, 4]]]
    up = x[image[1]].reshape(2, 2, 2)  # offsets (-1, 0): the lower row moves up
    assert up.tolist() == [[[2, 3], [2, 3]], [[6, 7], [6, 7]]]


def test_conv1d_flops_counted_by_hand() -> None:
    geo = ConvGeometry((1, 8), kernel=3, scales=2)
    cost = conv_cost(small_genome(), bias=True, geometry=geo)
    # channel 3: scale 1, 4 positions, one kernel of 3 taps: 2*3*4 + bias 4 + relu 4
    # channel 4: scale 2, 2 positions, kernels from 3 and from the input: 2*(2*3*2) + 2 + tanh 2
    # outputs: averages of channels 4 (2), 3 (4) and the input (8), 3 weights, 2 biases
    want = (24 + 4 + 4 * RELU) + (24 + 2 + 2 * TANH) + (2 + 4 + 8) + 2 * 3 + 2
    assert cost.flops == want
    assert cost.params == 3 * 3 + 3 + 4  # three kernels, three head weights, four biases
    assert cost.connections == 6
    no_bias = conv_cost(small_genome(), bias=False, geometry=geo)
    assert no_bias.flops == want - (4 + 2 + 2)


def test_bins_head_reads_where_the_signal_is_counted_by_hand() -> None:
    from evosparse.inheritance import written_back

    geo = ConvGeometry((1, 8), kernel=3, scales=2, head="bins")
    g = small_genome()
    # the outputs read 3 bins of the input (8 positions: 2, 3, 3), of channel 3 (4: 1, 1, 2)
    # and of channel 4 (2 positions: the first twice, then the second), a weight each
    want = (24 + 4 + 4 * RELU) + (24 + 2 + 2 * TANH) + (8 + 4 + 3) + 2 * 3 * 3 + 2
    cost = conv_cost(g, bias=True, geometry=geo)
    assert cost.flops == want
    assert cost.params == 3 * 3 + 3 * 3 + 4
    net = ConvNetwork(g, True, torch.Generator().manual_seed(0), geo)
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    blocks = list(net.levels)
    w3, w4a, w4b, head = (b.weight * b.mask for b in blocks)
    assert tuple(head.shape) == (2, 9)  # 3 channels x 3 bins
    h3 = torch.relu(F.conv1d(x[:, None], w3, blocks[0].bias, stride=2, padding=1))
    pre4 = F.conv1d(x[:, None], w4a, blocks[1].bias, stride=4, padding=1)
    h4 = torch.tanh(pre4 + F.conv1d(h3, w4b, None, stride=2, padding=1))[:, 0]
    h3 = h3[:, 0]
    pooled = torch.stack([x[:, :2].mean(1), x[:, 2:5].mean(1), x[:, 5:].mean(1),
                          h3[:, 0], h3[:, 1], h3[:, 2:].mean(1), h4[:, 0], h4[:, 0], h4[:, 1]],
                         dim=1)
    torch.testing.assert_close(net(x), pooled @ head.T + blocks[3].bias)
    assert head.ne(0).tolist() == [[True] * 3 + [False] * 3 + [True] * 3,
                                   [False] * 3 + [True] * 3 + [False] * 3]
    carried = written_back(g, net.trained_values())  # a link's bins in its first columns
    again = ConvNetwork(Genome.from_dict(carried.to_dict()), True,
                        torch.Generator().manual_seed(9), geo)
    torch.testing.assert_close(again(x), net(x))


def test_kernel_taps_count_and_compute_only_where_kept() -> None:
    geo = ConvGeometry((1, 8), kernel=3, scales=2)
    g = small_genome()
    taps = np.full(7, -1)
    taps[0] = 0b101  # 0 -> 3 keeps its outer taps
    taps[2] = 0b010  # 0 -> 4 keeps its middle tap
    sparse = g.with_taps(taps)
    full, cut = conv_cost(g, True, geo), conv_cost(sparse, True, geo)
    assert full.flops - cut.flops == 2 * 1 * 4 + 2 * 2 * 2  # a tap at 4, two at 2 positions
    assert full.params - cut.params == 3
    net = ConvNetwork(sparse, True, torch.Generator().manual_seed(0), geo)
    w3, w4a = (b.weight * b.mask for b in list(net.levels)[:2])
    assert w3[0, 0].ne(0).tolist() == [True, False, True]
    assert w4a[0, 0].ne(0).tolist() == [False, True, False]
    back = Genome.from_dict(sparse.to_dict())
    assert back.conn_taps.tolist() == sparse.conn_taps.tolist()
    assert genome_digest(back) == genome_digest(sparse) != genome_digest(g)


def test_a_start_of_smaller_kernels_per_layer_keeps_their_central_taps() -> None:
    """`kstarts.kernel: [5, 3, 3]` on MNIST-1D's kernels of 5: the first population's kernels
    into the second and third layers keep their 3 central taps, so a member costs its
    5-5-5 twin less 2 taps per kernel at each output position, and compiles that way."""
    from evosparse.data import load_task
    from evosparse.evolution import Search
    from tests.recording import Recording

    def first_population(kernel: list[int]) -> list[Genome]:
        space = load_space("search_spaces/mnist1d_conv.yaml").with_overrides(
            population=2, generations=1, training={"initial_epochs": 0, "epochs": 1},
            sparse_training={"method": "none"},
            kstarts={"width": [1.0, 0.375], "kernel": kernel})
        seen = Recording()
        Search(space=space, task=load_task(space.dataset), evaluator=seen).step()
        return [g for g, _ in seen.calls[0]]

    family = family_of(load_space("search_spaces/mnist1d_conv.yaml").network, "mnist1d", 40)
    for full, cut in zip(first_population([5, 5, 5]), first_population([5, 3, 3]), strict=True):
        assert np.array_equal(full.conn_innov, cut.conn_innov), "the same genes"
        channels = 16 if full.genome_id == 0 else 6
        # layer 2: channels^2 kernels at 10 positions; layer 3: at 5 positions
        saved = 2 * 2 * channels**2 * (10 + 5)
        assert family.cost(full, True).flops - family.cost(cut, True).flops == saved
        net = ConvNetwork(cut, True, torch.Generator().manual_seed(0), family.geometry)
        first, second, third = (b.weight * b.mask for b in list(net.levels)[:3])
        assert first.ne(0).all() and first.shape[-1] == 5
        for deeper in (second, third):
            assert deeper[..., [0, 4]].eq(0).all() and deeper[..., 1:4].ne(0).all()


def test_children_keep_their_parents_taps_and_kernels_keep_a_tap() -> None:
    from evosparse.families import ConvFamily
    from evosparse.space import MutationSpec

    geo = ConvGeometry((1, 8), kernel=3, scales=2)
    parent = small_genome().with_taps(np.array([0b001, 0b110, -1, -1, -1, -1, -1]))
    rng = np.random.default_rng(0)
    rebuilt = Genome.build(5, parent.nodes, parent.conns)  # what a structural operator returns
    assert rebuilt.conn_taps is None
    child = ConvFamily(geo).vary(rebuilt, [parent], rng, MutationSpec(taps=0.0))
    assert child.conn_taps.tolist() == parent.conn_taps.tolist()
    for _ in range(200):  # flipping taps at random never empties a kernel
        child = mutate_taps(child, geo, rng, 3)
        masks = child.conn_taps & 0b111
        assert (masks[[0, 1, 2]] != 0).all()  # the kernels: connections into channels 3, 4
    assert (child.conn_taps[[0, 1, 2]] & 0b111 != 0b111).any()


def test_pruning_by_mutation_switches_off_a_conv_childs_weakest_taps() -> None:
    """`mutation.prune` on a conv search: a child loses single taps of its inherited
    kernels (not only whole kernels), never gains one, and trains and is counted that way."""
    from evosparse.conv_geometry import tap_counts
    from evosparse.data import load_task
    from evosparse.evolution import Search
    from tests.recording import Recording

    space = load_space("search_spaces/digits_conv.yaml").with_overrides(
        population=6, generations=2, seed=5, **PLAIN_START,
        mutation={"prune": 1.0, "prune_max": 0.5, "crossover": 0.0, "taps": 0.0,
                  "add_connection": 0.0, "add_node": 0.0, "remove_connection": 0.0})
    seen = Recording()
    search = Search(space=space, task=load_task(space.dataset), evaluator=seen)
    search.step()
    parents = {m.genome.genome_id: m.genome for m in search.state.population}
    search.step()
    family = family_of(space.network, "digits", 64)
    thinned = 0
    for child, result in seen.calls[-1]:  # the children (before: the first population)
        parent = parents[child.parents[0]]
        assert np.array_equal(child.conn_innov, parent.conn_innov)
        kept, before = (tap_counts(g, family.geometry) * g.conn_enabled for g in (child, parent))
        assert (kept <= before).all(), "pruning never grows a tap"
        thinned += int(((kept < before) & child.conn_enabled).sum())
        assert result.flops == family.cost(child, True).flops < family.cost(parent, True).flops
    assert thinned, "some kernels keep fewer taps and stay"


def test_dilated_kernels_see_further_at_the_same_cost() -> None:
    """A kernel's dilation (a gene per connection, `network.dilations`) spaces its taps:
    the network is torch's dilated convolution with "same" padding, FLOPs and parameters
    do not change, the genome keeps it through JSON and its children (new kernels at 1),
    and mutation gives kernels other dilations from the space's choices only."""
    from evosparse.conv_geometry import dilations, mutate_dilation
    from evosparse.families import ConvFamily
    from evosparse.space import MutationSpec

    geo = ConvGeometry((1, 8), kernel=3, scales=2)
    g = small_genome()
    wide = g.with_dilation(np.array([2, 1, 3, 1, 1, 1, 1]))  # 0 -> 3 at 2, 0 -> 4 at 3
    assert conv_cost(wide, True, geo) == conv_cost(g, True, geo)
    net = ConvNetwork(wide, True, torch.Generator().manual_seed(0), geo)
    assert [b.dilation for b in net.levels] == [2, 3, 1, 1]
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    w3, w4a, w4b, head = (b.weight * b.mask for b in net.levels)
    h3 = torch.relu(F.conv1d(x[:, None], w3, net.levels[0].bias, stride=2, padding=2,
                             dilation=2))
    h4 = torch.tanh(F.conv1d(x[:, None], w4a, net.levels[1].bias, stride=4, padding=3,
                             dilation=3) + F.conv1d(h3, w4b, None, stride=2, padding=1))
    pooled = torch.cat([x.mean(1, keepdim=True), h3.mean(2), h4.mean(2)], dim=1)
    torch.testing.assert_close(net(x), pooled @ head.T + net.levels[3].bias)
    back = Genome.from_dict(wide.to_dict())
    assert dilations(back).tolist() == [2, 1, 3, 1, 1, 1, 1]
    assert genome_digest(back) == genome_digest(wide) != genome_digest(g)
    rebuilt = Genome.build(5, wide.nodes, wide.conns)  # what a structural operator returns
    child = ConvFamily(geo).vary(rebuilt, [wide], np.random.default_rng(0), MutationSpec())
    assert dilations(child).tolist() == [2, 1, 3, 1, 1, 1, 1]
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        child = mutate_dilation(child, (1, 2, 4), rng, 2)
        seen |= set(dilations(child)[[0, 1, 2]].tolist())
        assert dilations(child)[3:].tolist() == [1, 1, 1, 1]  # outputs' links: no kernels
    assert {1, 2, 4} <= seen <= {1, 2, 3, 4}  # 3 only until kernel 0 -> 4 is mutated
    family = ConvFamily(geo, dilations=(1, 2))
    assert dilations(family.vary(rebuilt, [g], np.random.default_rng(0),
                                 MutationSpec(dilation=1.0, dilation_max=3)))[:3].max() == 2


def test_conv2d_flops_counted_by_hand() -> None:
    geo = ConvGeometry((2, 8, 8), kernel=3, scales=2)
    ids = np.array([0, 1, 2, 3])
    kind = np.array([INPUT, INPUT, OUTPUT, HIDDEN], dtype=np.int8)
    g = Genome.build(0, (ids, kind, np.array([0.0, 0.0, 1.0, 0.5]),
                         np.array(["identity", "identity", "identity", "relu"])),
                     (np.arange(3), np.array([0, 1, 3]), np.array([3, 3, 2]), np.ones(3, bool)))
    # channel 3 at scale 1: 4x4 positions, two 3x3 kernels: 2*2*9*16, bias 16, relu 16
    want = 2 * 2 * 9 * 16 + 16 + 16 * RELU + 16 + 2 + 1
    assert conv_cost(g, bias=True, geometry=geo).flops == want


def test_conv1d_network_is_torch_convolutions_with_strides_and_skips() -> None:
    geo = ConvGeometry((1, 8), kernel=3, scales=2)
    g = small_genome()
    net = ConvNetwork(g, True, torch.Generator().manual_seed(0), geo)
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    blocks = list(net.levels)
    # level 1: channel 3 from the input, stride 2; level 2: channel 4 from channel 3
    # (stride 2) and from the input (stride 4); then the head
    w3, w4a, w4b, head = (b.weight * b.mask for b in blocks)
    assert [tuple(w.shape) for w in (w3, w4a, w4b, head)] == [(1, 1, 3), (1, 1, 3), (1, 1, 3),
                                                              (2, 3)]
    h3 = torch.relu(F.conv1d(x[:, None], w3, blocks[0].bias, stride=2, padding=1))
    pre4 = F.conv1d(x[:, None], w4a, blocks[1].bias, stride=4, padding=1)
    h4 = torch.tanh(pre4 + F.conv1d(h3, w4b, None, stride=2, padding=1))
    pooled = torch.cat([x.mean(1, keepdim=True), h3.mean(2), h4.mean(2)], dim=1)
    want = pooled @ head.T + blocks[3].bias
    torch.testing.assert_close(net(x), want)
    # the disabled connection 0 -> 2 has no weight; 2 reads channel 3 only, 1 reads 0 and 4
    assert head.ne(0).tolist() == [[True, False, True], [False, True, False]]


def test_a_two_input_channel_has_second_kernels_counted_by_hand() -> None:
    """An AIL channel (Lee et al.'s two-input units, as in MLPs): a second kernel per
    connection and a second bias give its second pre-activation; both count in FLOPs and
    parameters, in the genome's count and in the one from the weights."""
    from evosparse.activations import torch_activation
    from evosparse.conv_export import conv_flops_from_weights

    geo = ConvGeometry((1, 8), kernel=3, scales=2)
    g, base = small_genome(act3="and_ail"), small_genome()
    cost = conv_cost(g, True, geo)
    # channel 3 (scale 1, 4 positions): a second 3-tap kernel and a second bias
    extra = 2 * 3 * 4 + 4 + 4 * (activation_cost("and_ail") - RELU)
    assert cost.flops == conv_cost(base, True, geo).flops + extra
    assert cost.params == conv_cost(base, True, geo).params + 3 + 1
    net = ConvNetwork(g, True, torch.Generator().manual_seed(0), geo)
    assert conv_flops_from_weights(net)["flops"] == cost.flops
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    b3, b4a, b4b, head = net.levels
    assert b4a.weight2 is None and b3.weight2 is not None and b3.bias2 is not None
    h3 = torch_activation("and_ail")(
        F.conv1d(x[:, None], b3.weight * b3.mask, b3.bias, stride=2, padding=1),
        F.conv1d(x[:, None], b3.second_weight(), b3.bias2, stride=2, padding=1))
    h4 = torch.tanh(F.conv1d(x[:, None], b4a.weight * b4a.mask, b4a.bias, stride=4, padding=1)
                    + F.conv1d(h3, b4b.weight * b4b.mask, None, stride=2, padding=1))
    pooled = torch.cat([x.mean(1, keepdim=True), h3.mean(2), h4.mean(2)], dim=1)
    torch.testing.assert_close(net(x), pooled @ (head.weight * head.mask).T + head.bias)


def test_a_channel_without_inputs_still_computes_its_bias() -> None:
    geo = ConvGeometry((1, 8), kernel=3, scales=2)
    g = small_genome()
    lonely = g.with_disabled((0,))  # channel 3 loses its only input, keeps its outputs
    net = ConvNetwork(lonely, True, torch.Generator().manual_seed(0), geo)
    x = torch.randn(3, 8)
    assert torch.isfinite(net(x)).all()
    assert conv_cost(lonely, True, geo).flops == conv_cost(g, True, geo).flops - 2 * 3 * 4


def test_trained_conv_weights_are_written_back_and_inherited_by_identity() -> None:
    from evosparse.inheritance import inherit, written_back

    geo = ConvGeometry((1, 8), kernel=3, scales=2)
    g = small_genome().with_taps(np.array([0b101, -1, -1, -1, -1, -1, -1]))
    net = ConvNetwork(g, True, torch.Generator().manual_seed(0), geo)
    with torch.no_grad():
        for blk in net.levels:  # "trained": every value moved
            blk.weight.add_(0.5 * blk.mask)
            if blk.bias is not None:  # a group's bias sits on its first block
                blk.bias.add_(0.25)
    carried = written_back(g, net.trained_values())
    assert carried.conn_weight.shape == (7, 3)
    assert np.isnan(carried.conn_weight[0, 1])  # the tap that is off
    assert np.isnan(carried.conn_weight[6]).all()  # the disabled connection
    back = Genome.from_dict(carried.to_dict())
    np.testing.assert_array_equal(back.conn_weight, carried.conn_weight)
    again = ConvNetwork(back, True, torch.Generator().manual_seed(9), geo)
    x = torch.randn(4, 8)
    torch.testing.assert_close(again(x), net(x))  # other seed, same network
    # a child that switches the tap back on starts it afresh, keeps the rest
    child = inherit(g.derive(5, (0,), 1).with_taps(np.full(7, -1)), [carried])
    grown = ConvNetwork(child, True, torch.Generator().manual_seed(1), geo)
    w, old = grown.levels[0].weight[0, 0], net.levels[0].weight[0, 0]
    assert w[0] == old[0] and w[2] == old[2] and w[1] != 0 and w[1] != old[1]


@pytest.mark.parametrize("hidden", [None, ("and_ail", "relu", "or_ail_norm")])
def test_compiled_weights_are_the_counted_parameters(hidden: tuple[str, ...] | None) -> None:
    geo = ConvGeometry((1, 8, 8), kernel=3, scales=2)
    rng = np.random.default_rng(0)
    space = load_space("search_spaces/digits_conv.yaml")
    if hidden:  # two-input units: second kernels and biases count too
        space = space.with_overrides(activations={"hidden": list(hidden)})
    from evosparse.genome import InnovationRegistry
    from evosparse.operators import minimal_genome, mutate

    reg = InnovationRegistry(1, 10)
    g = minimal_genome(0, reg, 1.0, rng)
    for _ in range(12):
        g = mutate(g, rng, reg, space.network, space.activations, space.mutation)
    net = ConvNetwork(g, True, torch.Generator().manual_seed(0), geo)
    nonzero = sum(int((b.weight * b.mask).ne(0).sum()) + (0 if b.bias is None else
                                                         b.bias.numel()) for b in net.levels)
    nonzero += sum(int(b.second_weight().ne(0).sum()) + (0 if b.bias2 is None else
                                                        int(b.two.sum()))
                   for b in net.levels if b.weight2 is not None)
    assert bool(hidden) == any(b.weight2 is not None for b in net.levels)
    assert g.n_hidden > 3
    assert nonzero == conv_cost(g, True, geo).params
    assert net(torch.randn(4, 64)).shape == (4, 10)


def test_bad_conv_spaces_and_shapes_are_named(tmp_path: Path) -> None:
    base = load_space("search_spaces/digits_conv.yaml")
    with pytest.raises(UserError, match="network.head is for conv1d and conv2d"):
        load_space("search_spaces/digits.yaml").with_overrides(network={"head": "bins"})
    with pytest.raises(UserError, match="network.kernel must be odd"):
        base.with_overrides(network={"kernel": 4})
    with pytest.raises(UserError, match="network.dilations is for conv1d and conv2d"):
        load_space("search_spaces/digits.yaml").with_overrides(network={"dilations": [1, 2]})
    with pytest.raises(UserError, match=r"network.dilations must be positive integers "
                                        r"including 1.*\[2, 4\]"):
        base.with_overrides(network={"dilations": [2, 4]})
    for method in ("rigl", "ctre"):  # taps are pruned and regrown
        base.with_overrides(sparse_training={"method": method})
    with pytest.raises(UserError, match=r"input_shape must be 3 positive sizes"):
        base.with_overrides(network={"input_shape": [1, 64]})
    with pytest.raises(UserError, match=r"input_shape \[1, 4, 4\] holds 16 values.*64"):
        family_of(base.with_overrides(network={"input_shape": [1, 4, 4]}).network, "digits", 64)
    with pytest.raises(UserError, match=r"training.shift \(2\).*needs network.family conv1d"):
        load_space("search_spaces/digits.yaml").with_overrides(training={"shift": 2})
    for kernel in ([3], [3, 2], [3, 5]):  # one per layer, odd, up to network.kernel
        with pytest.raises(UserError, match=rf"kstarts.kernel \[{kernel[0]}.*network.kernel \(3\)"):
            base.with_overrides(kstarts={"kernel": kernel})
    with pytest.raises(UserError, match=r"kstarts.kernel \[1\] needs a conv family"):
        load_space("search_spaces/digits.yaml").with_overrides(kstarts={"hidden": [8],
                                                                        "kernel": [1]})
    with pytest.raises(UserError, match="network.input_shape is needed"):
        family_of(base.network.model_copy(update={"input_shape": None}), "file", 64)
    # through the CLI: one message, exit 2, no run directory
    space = tmp_path / "s.yaml"
    space.write_text(Path("search_spaces/digits_conv.yaml").read_text().replace(
        "input_shape: [1, 8, 8]", "input_shape: [1, 8, 4]"))
    out = subprocess.run([sys.executable, "-m", "evosparse.cli", "run", str(space),
                          "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert "network.input_shape [1, 8, 4] holds 32 values" in out.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(("inheritance", "pruning", "dilations"), [
    ("baldwinian", "none", [1]), ("lamarckian", "none", [1]), ("lamarckian", "magnitude", [1]),
    ("lamarckian", "rigl", [1]), ("lamarckian", "ctre", [1, 2])])
def test_conv_search_records_the_family_cost_and_resumes_exactly(
        tmp_path: Path, inheritance: str, pruning: str, dilations: list[int]) -> None:
    overrides = {**PLAIN_START, "population": 8, "generations": 2, "seed": 3,
                 "training": {**PLAIN_START["training"], "inheritance": inheritance},
                 "sparse_training": {"method": pruning, "density": 0.5},
                 "network": {"dilations": dilations},
                 "mutation": {"dilation": 0.5,
                              "prune": 0.3 if inheritance == "lamarckian" else 0.0}}
    whole = evosparse.search("search_spaces/digits_conv.yaml", runs_dir=tmp_path, name="whole",
                             progress=False, **overrides)
    part = evosparse.search("search_spaces/digits_conv.yaml", runs_dir=tmp_path, name="part",
                            progress=False, **{**overrides, "generations": 1})
    resumed = evosparse.resume(part.path, generations=2, progress=False)
    history = [(r["genome_id"], r["val_accuracy"], r["flops"], r["taps"])
               for r in whole.history()]
    assert history == [(r["genome_id"], r["val_accuracy"], r["flops"], r["taps"])
                       for r in resumed.history()]
    assert any(r["taps"] for r in whole.history()) == (pruning != "none")
    family = family_of(whole.space.network, "digits", 64)
    assert any(m.genome.n_hidden for m in whole.front)
    for m in whole.front:
        assert m.flops == family.cost(m.genome, True).flops
    assert max(m.val_accuracy for m in whole.front) > 0.2  # ten classes: chance is 0.1
    from evosparse.conv_geometry import dilations as gaps

    wide = [g for g in (m.genome for m in resumed.population) if gaps(g).max() > 1]
    assert bool(wide) == (dilations != [1]), "mutation dilates kernels where the space lets it"


@pytest.mark.parametrize(("head", "ail", "dilations", "family"), [
    ("average", False, [1], "conv2d"), ("bins", False, [1, 2], "conv2d"),
    ("bins", True, [1], "conv2d"), ("bins", False, [1, 2], "conv1d")],
    ids=["average", "bins-dilated", "bins-ail", "conv1d"])
def test_conv_exports_run_in_onnxruntime_and_load_back(tmp_path: Path, head: str, ail: bool,
                                                       dilations: list[int], family: str
                                                       ) -> None:
    """Also with dilated kernels (Conv's dilations), two-input units, whose second
    pre-activation is a second Conv, and 1-D signals (the digits as 64-sample signals)."""
    import json

    import onnxruntime as ort

    from evosparse.data import load_raw_test

    acts = {"hidden": ["and_ail", "relu", "xnor_ail"], "initial": "and_ail"} if ail else {}
    run = evosparse.search("search_spaces/digits_conv.yaml", runs_dir=tmp_path, name="c",
                           progress=False, population=8, generations=3, seed=1, **PLAIN_START,
                           network={"head": head, "dilations": dilations, "family": family,
                                    "input_shape": [1, 64] if family == "conv1d" else None},
                           mutation={"dilation": 0.7}, activations=acts)
    folders = run.export()
    assert len(folders) == len(run.front) > 1
    x, y = load_raw_test(run.space.dataset)
    for folder in folders:
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["flops"] == metrics["flops_in_search"]  # tensors and genome agree
        assert metrics["onnx"]["max_abs_diff_vs_torch"] < 1e-4
        session = ort.InferenceSession(str(folder / "model.onnx"),
                                       providers=["CPUExecutionProvider"])
        onnx_pred = session.run(None, {"x": x.astype(np.float32)})[0].argmax(axis=1)
        assert (onnx_pred == y).mean() == pytest.approx(metrics["test_accuracy"])
        model = evosparse.load(folder)
        assert np.array_equal(model.predict_index(x), onnx_pred)
        assert np.array_equal(pickle.loads(pickle.dumps(model)).predict_index(x), onnx_pred)
        doc = json.loads((folder / "genome.json").read_text())
        assert doc["family"] == {"name": family, "kernel": 3, "scales": 2, "head": head,
                                 "input_shape": [1, 64] if family == "conv1d" else [1, 8, 8]}
    import onnx

    ops = {n.op_type for f in folders for n in onnx.load(f / "model.onnx").graph.node}
    second = [n for f in folders for n in onnx.load(f / "model.onnx").graph.node
              if n.op_type == "Conv" and n.input[1].endswith("_w2")]
    assert bool(second) == ail, "two-input units' second kernels are Conv operators"
    dilated = [n for f in folders for n in onnx.load(f / "model.onnx").graph.node
               if n.op_type == "Conv" and max(next(a.ints for a in n.attribute
                                                   if a.name == "dilations")) > 1]
    assert bool(dilated) == (dilations != [1])
    assert {"Conv", "MatMul", "GlobalAveragePool" if head == "average" else "Reshape"} <= ops


def test_evolved_and_co_evolved_functions_and_two_input_units_reach_conv_searches(
        tmp_path: Path) -> None:
    """The activation machinery applies to channels unchanged: evolved expressions,
    three-population co-evolution and AIL units in one conv search; costs are the
    family's and every exported front member's ONNX file agrees with torch."""
    import json

    from evosparse.activations import arity
    from evosparse.graph import analyse

    run = evosparse.search(
        "search_spaces/digits_conv.yaml", runs_dir=tmp_path, name="f", progress=False,
        population=8, generations=3, seed=2, **PLAIN_START,
        activations={"hidden": ["relu", "and_ail", "tanh"], "expressions": 0.5},
        mutation={"change_activation": 0.8}, coevolution={"populations": 3, "size": 4})
    family = family_of(run.space.network, "digits", 64)
    used = set()
    for m in run.front:
        assert m.flops == family.cost(m.genome, True).flops
        g = m.genome
        used |= set(g.node_act[analyse(g).node_active & (g.node_kind == HIDDEN)].tolist())
    assert any(arity(a) == 2 for a in used), used
    assert any("(" in a for a in used), "some channel runs an evolved expression"
    for folder in run.export():
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["flops"] == metrics["flops_in_search"]
        assert metrics["onnx"]["max_abs_diff_vs_torch"] < 1e-4


def test_signals_and_images_given_with_their_shape(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images[:400], digits.target[:400]  # (400, 8, 8)
    space = load_space("search_spaces/digits_conv.yaml").with_overrides(
        **PLAIN_START).model_dump(mode="json")
    space["network"]["input_shape"] = None  # read from the data
    run = evosparse.search(space, data=(images, labels), runs_dir=tmp_path, name="img",
                           progress=False, population=4, generations=1)
    family = family_of(run.space.network, "file", 64, run.task.sample_shape)
    assert run.task.sample_shape == (8, 8) and family.geometry.shape == (1, 8, 8)
    resumed = evosparse.resume(run.path, generations=2, progress=False)
    assert resumed.generation == 2
    model = resumed.model(resumed.front[0])  # takes the images as the data holds them
    assert model.predict(images[:5]).shape == (5,)
    # signals with channels from a file: (samples, 2, 16) -> 2 input channels
    x = np.random.default_rng(0).normal(size=(300, 2, 16)).astype(np.float32)
    y = (x[:, 0, :8].sum(axis=1) > 0).astype(int)
    np.savez(tmp_path / "signals.npz", x=x, y=y)
    signal_space = {**space, "network": {**space["network"], "family": "conv1d", "kernel": 3}}
    sig = evosparse.search(signal_space, data=tmp_path / "signals.npz", runs_dir=tmp_path,
                           name="sig", progress=False, population=4, generations=1)
    assert family_of(sig.space.network, "file", 32, sig.task.sample_shape).geometry.shape == (
        2, 16)
    # a flat table has no image shape: one message naming the key
    with pytest.raises(UserError, match="network.input_shape is needed"):
        evosparse.search(space, data=(images.reshape(400, 64), labels), runs_dir=tmp_path,
                         name="flat", progress=False, population=4, generations=1)
    assert not (tmp_path / "flat").exists()
