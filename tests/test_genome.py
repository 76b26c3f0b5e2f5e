"""Genomes and operators: invariants under long random sequences of variation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evosparse.activations import OUTPUT_ACTIVATION
from evosparse.expressions import is_finite
from evosparse.genome import HIDDEN, INPUT, OUTPUT, Genome, InnovationRegistry
from evosparse.graph import analyse
from evosparse.operators import (
    add_connections,
    add_nodes,
    change_activation,
    crossover,
    dense_mlp_genome,
    minimal_genome,
    mutate,
    remove_connections,
)
from evosparse.space import ActivationSpec, MutationSpec, NetworkSpec

N_IN, N_OUT = 6, 3
ACTS = ActivationSpec(hidden=("relu", "tanh", "leaky_relu", "identity"))


def check_invariants(g: Genome, net: NetworkSpec) -> None:
    ids = g.node_id
    assert len(set(ids.tolist())) == len(ids), "node ids are unique"
    assert len(set(g.conn_innov.tolist())) == len(g.conn_innov), "innovations are unique"
    assert np.array_equal(ids[g.node_kind == INPUT], np.arange(N_IN)), "inputs kept"
    assert np.array_equal(ids[g.node_kind == OUTPUT], np.arange(N_IN, N_IN + N_OUT)), "outputs kept"
    assert np.isin(g.conn_src, ids).all() and np.isin(g.conn_dst, ids).all(), "no dangling conn"
    src_pos = g.node_pos[g.index_of(g.conn_src)]
    dst_pos = g.node_pos[g.index_of(g.conn_dst)]
    assert (src_pos < dst_pos).all(), "every connection goes forward: the graph is a DAG"
    assert not np.isin(g.conn_dst, ids[g.node_kind == INPUT]).any(), "nothing feeds an input"
    assert not np.isin(g.conn_src, ids[g.node_kind == OUTPUT]).any(), "outputs feed nothing"
    pairs = list(zip(g.conn_src.tolist(), g.conn_dst.tolist(), strict=True))
    assert len(set(pairs)) == len(pairs), "one gene per (src, dst)"
    assert g.n_hidden <= net.max_hidden
    assert analyse(g).hidden_levels <= net.max_levels
    if net.topology == "layered":
        grid = np.arange(1, net.max_levels + 1) / (net.max_levels + 1)
        assert np.isin(g.node_pos[g.node_kind == HIDDEN], grid).all()


def check_registry_consistent(genomes: list[Genome]) -> None:
    """The same innovation id means the same (src, dst) in every genome."""
    seen: dict[int, tuple[int, int]] = {}
    for g in genomes:
        for i, s, d in zip(g.conn_innov.tolist(), g.conn_src.tolist(), g.conn_dst.tolist(),
                           strict=True):
            assert seen.setdefault(i, (s, d)) == (s, d)


@pytest.mark.parametrize("topology", ["dag", "layered"])
def test_random_variation_keeps_invariants(topology: str) -> None:
    net = NetworkSpec(topology=topology, max_hidden=12, max_levels=3, initial_density=0.3)
    rates = MutationSpec(add_connection=0.7, add_node=0.5, add_node_max=2, add_node_fan_in=3,
                         add_node_fan_out=2, remove_connection=0.3, change_activation=0.3)
    rng = np.random.default_rng(0)
    reg = InnovationRegistry(N_IN, N_OUT)
    pop = [minimal_genome(i, reg, net.initial_density, rng) for i in range(8)]
    next_id = 8
    for _ in range(60):
        a, b = rng.choice(len(pop), size=2, replace=False)
        child = crossover(pop[a], pop[b], next_id, 1, rng) if rng.random() < 0.5 else (
            pop[a].derive(next_id, (pop[a].genome_id,), 1))
        child = mutate(child, rng, reg, net, ACTS, rates)
        check_invariants(child, net)
        pop[int(rng.integers(len(pop)))] = child
        next_id += 1
    check_registry_consistent(pop)
    assert max(g.n_hidden for g in pop) > 0, "the population grew hidden nodes"


def test_minimal_genome_wires_every_output() -> None:
    reg = InnovationRegistry(N_IN, N_OUT)
    g = minimal_genome(0, reg, 0.01, np.random.default_rng(1))
    assert g.n_hidden == 0
    assert set(g.conn_dst.tolist()) == set(range(N_IN, N_IN + N_OUT))
    assert g.node_pos.tolist() == [0.0] * N_IN + [1.0] * N_OUT
    assert (g.genome_id, g.parents, g.generation) == (0, (), 0), "generation 0 by default"
    assert g.conn_enabled.all() and set(g.conn_src.tolist()) <= set(range(N_IN))


def test_same_structural_change_gets_same_ids_everywhere() -> None:
    reg = InnovationRegistry(N_IN, N_OUT)
    net = NetworkSpec(initial_density=1.0, max_hidden=10)
    base = minimal_genome(0, reg, 1.0, np.random.default_rng(0))
    a = add_nodes(base, np.random.default_rng(5), reg, net, ACTS, 1)
    b = add_nodes(base.derive(1, (), 0), np.random.default_rng(5), reg, net, ACTS, 1)
    assert np.array_equal(a.node_id, b.node_id) and np.array_equal(a.conn_innov, b.conn_innov)
    # Splitting the same connection again in one genome creates a second, distinct node.
    c = a.conn_innov[~a.conn_enabled][0]
    row = int(np.flatnonzero(a.conn_innov == c)[0])
    en = a.conn_enabled.copy()
    en[row] = True
    again = Genome.build(0, a.nodes, (a.conn_innov, a.conn_src, a.conn_dst, en))
    assert reg.split_node(int(c), set(again.node_id.tolist())) not in again.node_id


def test_operators_return_the_same_object_when_nothing_changes() -> None:
    reg = InnovationRegistry(N_IN, N_OUT)
    g = minimal_genome(0, reg, 1.0, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    assert add_connections(g, rng, reg, NetworkSpec(), 3) is g, "input->output is complete"
    assert add_nodes(g, rng, reg, NetworkSpec(max_hidden=0), ACTS, 1) is g
    assert change_activation(g, rng, ACTS) is g, "no hidden node to change"
    empty = remove_connections(g, rng, 10_000)
    assert remove_connections(empty, rng, 1) is empty
    assert empty.n_enabled == 0


def test_crossover_aligns_by_innovation_and_keeps_fitter_structure() -> None:
    reg = InnovationRegistry(N_IN, N_OUT)
    net = NetworkSpec(max_hidden=10)
    rng = np.random.default_rng(2)
    base = minimal_genome(0, reg, 0.5, rng)
    fit = add_nodes(add_connections(base, rng, reg, net, 4), rng, reg, net, ACTS, 2)
    other = add_connections(base.derive(1, (), 0), rng, reg, net, 4)
    child = crossover(fit, other, 2, 1, rng)
    assert np.array_equal(child.conn_innov, fit.conn_innov)
    assert np.array_equal(child.node_id, fit.node_id)
    assert child.parents == (0, 1)
    only_fit = ~np.isin(fit.conn_innov, other.conn_innov)
    assert np.array_equal(child.conn_enabled[only_fit], fit.conn_enabled[only_fit])


def test_json_round_trip_is_exact() -> None:
    reg = InnovationRegistry(N_IN, N_OUT)
    rng = np.random.default_rng(3)
    g = mutate(minimal_genome(7, reg, 0.5, rng), rng, reg, NetworkSpec(), ACTS,
               MutationSpec(add_node=1.0, change_activation=1.0))
    back = Genome.from_dict(json.loads(json.dumps(g.to_dict())))
    assert back.same_as(g)
    assert back.node_act.tolist() == g.node_act.tolist()
    reg2 = InnovationRegistry.from_dict(json.loads(json.dumps(reg.to_dict())))
    assert reg2.to_dict() == reg.to_dict()
    assert reg2.connection(0, N_IN) == reg.connection(0, N_IN)


def test_long_activation_names_are_not_truncated() -> None:
    reg = InnovationRegistry(N_IN, N_OUT)
    g = dense_mlp_genome(0, reg, [4], "relu")
    for seed in range(10):
        g = change_activation(g, np.random.default_rng(seed), ACTS)
    assert set(g.node_act[g.node_kind == HIDDEN]) <= set(ACTS.hidden)


def test_dense_mlp_genome_is_fully_connected() -> None:
    reg = InnovationRegistry(N_IN, N_OUT)
    g = dense_mlp_genome(0, reg, [5, 4], "relu")
    assert g.n_hidden == 9
    assert g.n_enabled == N_IN * 5 + 5 * 4 + 4 * N_OUT
    assert analyse(g).hidden_levels == 2
    hidden = g.node_kind == HIDDEN
    assert set(g.node_act[hidden].tolist()) == {"relu"}
    assert set(g.node_act[~hidden].tolist()) == {OUTPUT_ACTIVATION}
    assert g.node_pos[g.node_kind == INPUT].tolist() == [0.0] * N_IN
    assert g.node_pos[g.node_kind == OUTPUT].tolist() == [1.0] * N_OUT
    assert sorted(set(g.node_pos[hidden].tolist())) == [1 / 3, 2 / 3]
    three = dense_mlp_genome(1, reg, [2], "tanh", levels=3)  # the first of 3 levels
    assert three.node_pos[three.node_kind == HIDDEN].tolist() == [0.25, 0.25]


def _one_hidden(act: str = "relu") -> tuple[Genome, InnovationRegistry]:
    reg = InnovationRegistry(N_IN, N_OUT)
    g = minimal_genome(0, reg, 0.5, np.random.default_rng(0)).derive(5, (0, 1), 7)
    g = add_nodes(g, np.random.default_rng(1), reg, NetworkSpec(), ActivationSpec(hidden=(act,)), 1)
    return g, reg


def test_changing_an_activation_picks_another_library_function_or_evolves_an_expression() -> None:
    g, _ = _one_hidden()
    hidden = g.node_kind == HIDDEN
    two = ActivationSpec(hidden=("relu", "tanh"))
    for seed in range(5):
        child = change_activation(g, np.random.default_rng(seed), two)
        assert child.node_act[hidden].tolist() == ["tanh"], "the other function of the set"
        assert (child.genome_id, child.parents, child.generation) == (5, (0, 1), 7)
    assert change_activation(g, np.random.default_rng(0), ActivationSpec(hidden=("relu",))) is g
    rarely = ActivationSpec(hidden=("relu", "tanh"), expressions=1e-9)
    always = ActivationSpec(hidden=("relu", "tanh"), expressions=1.0)
    for seed in range(10):
        assert change_activation(g, np.random.default_rng(seed), rarely).node_act[hidden] \
            .tolist() == ["tanh"]
        evolved = str(change_activation(g, np.random.default_rng(seed), always).node_act[hidden][0])
        assert evolved not in ("relu", "tanh") and is_finite(evolved)


def test_mutate_draws_each_operators_count_from_one_to_its_maximum() -> None:
    g, reg = _one_hidden()
    net = NetworkSpec(max_hidden=20)
    only = {"crossover": 0.0, "add_connection": 0.0, "add_node": 0.0, "remove_connection": 0.0,
            "change_activation": 0.0}
    for op, limit, size in (("add_connection", "add_connection_max", lambda x: x.n_enabled),
                            ("remove_connection", "remove_connection_max",
                             lambda x: -x.n_enabled),
                            ("add_node", "add_node_max", lambda x: x.n_hidden)):
        for most in (1, 3):
            rates = MutationSpec(**{**only, op: 1.0, limit: most})
            steps = {size(mutate(g, np.random.default_rng(s), reg, net, ACTS, rates)) - size(g)
                     for s in range(30)}
            assert steps == set(range(1, most + 1)), (op, most, steps)


def test_mutate_applies_every_drawn_operator_and_forces_one_in_proportion_to_the_rates() -> None:
    g, reg = _one_hidden()
    both = MutationSpec(crossover=0.0, add_connection=1.0, add_connection_max=1, add_node=0.0,
                        remove_connection=1.0, remove_connection_max=1, change_activation=0.0)
    for seed in range(10):
        child = mutate(g, np.random.default_rng(seed), reg, NetworkSpec(), ACTS, both)
        assert child.n_enabled == g.n_enabled and len(child.conn_innov) == len(g.conn_innov) + 1
    tiny = MutationSpec(crossover=0.0, add_connection=1e-9, add_node=0.0, remove_connection=1e-6,
                        change_activation=0.0)
    for seed in range(30):
        child = mutate(g, np.random.default_rng(seed), reg, NetworkSpec(), ACTS, tiny)
        assert child.n_enabled < g.n_enabled, "forced: remove, 1000 times likelier than add"


def test_a_new_node_sits_midway_or_on_the_nearest_free_level() -> None:
    reg = InnovationRegistry(1, 1)
    g = minimal_genome(0, reg, 1.0, np.random.default_rng(0))
    acts, rng = ActivationSpec(hidden=("relu",)), np.random.default_rng(0)
    one = add_nodes(g, rng, reg, NetworkSpec(max_levels=1), acts, 1)
    assert one.node_pos[one.node_kind == HIDDEN].tolist() == [0.5], "a DAG: the midpoint"
    assert add_nodes(one, rng, reg, NetworkSpec(max_levels=1), acts, 1) is one, "one level"
    layered = NetworkSpec(topology="layered", max_levels=3)
    first = add_nodes(g, rng, reg, layered, acts, 1)
    assert first.node_pos[first.node_kind == HIDDEN].tolist() == [0.5]
    second = add_nodes(first, rng, reg, layered, acts, 1)
    assert sorted(second.node_pos[second.node_kind == HIDDEN].tolist()) in ([0.25, 0.5],
                                                                            [0.5, 0.75])


def test_a_new_node_grows_its_extra_in_and_out_links() -> None:
    reg = InnovationRegistry(N_IN, N_OUT)
    g = minimal_genome(0, reg, 0.2, np.random.default_rng(0)).derive(4, (1, 2), 3)
    acts = ActivationSpec(hidden=("relu",))

    def degrees(out: Genome) -> tuple[int, int]:
        (new,) = out.node_id[out.node_kind == HIDDEN]
        on = out.conn_enabled
        return (np.count_nonzero(on & (out.conn_dst == new)),
                np.count_nonzero(on & (out.conn_src == new)))

    for net in (NetworkSpec(), NetworkSpec(topology="layered", max_levels=2)):
        for fan_in, fan_out in ((0, 0), (2, 0), (0, 2), (2, 1)):
            out = add_nodes(g, np.random.default_rng(3), reg, net, acts, 1, fan_in, fan_out)
            assert (out.genome_id, out.parents, out.generation) == (4, (1, 2), 3)
            assert degrees(out) == (1 + fan_in, 1 + fan_out), (net.topology, fan_in, fan_out)
            check_invariants(out, net)
        assert degrees(add_nodes(g, np.random.default_rng(3), reg, net, acts, 1)) == (1, 1)
        rates = MutationSpec(crossover=0.0, add_connection=0.0, add_node=1.0, add_node_fan_in=2,
                             add_node_fan_out=1, remove_connection=0.0, change_activation=0.0)
        assert degrees(mutate(g, np.random.default_rng(4), reg, net, acts, rates)) == (3, 2)


def test_removing_connections_disables_exactly_that_many() -> None:
    g, _ = _one_hidden()
    for count in (1, 2):
        out = remove_connections(g, np.random.default_rng(count), count)
        assert out.n_enabled == g.n_enabled - count and len(out.conn_innov) == len(g.conn_innov)
        assert (out.genome_id, out.parents, out.generation) == (5, (0, 1), 7)


def test_crossover_enables_matching_genes_as_neat_says_and_mixes_activations() -> None:
    """Matching genes: enabled in both parents -> enabled; disabled in either -> disabled
    with probability 0.75 (each gene on its own draw); a shared node's activation comes
    from either parent with even odds."""
    reg = InnovationRegistry(N_IN, N_OUT)
    rng = np.random.default_rng(0)
    base = minimal_genome(0, reg, 1.0, rng)
    base = add_nodes(base, rng, reg, NetworkSpec(max_hidden=6), ActivationSpec(hidden=("relu",)),
                     4)
    n = len(base.conn_innov)
    kind = np.arange(n) % 4  # 0: on in both, 1: fitter only, 2: other only, 3: off in both
    fitter = Genome.build(0, base.nodes, (*base.conns[:3], (kind == 0) | (kind == 1)))
    act = base.node_act.copy()
    act[base.node_kind == HIDDEN] = "tanh"
    other = Genome.build(1, (base.node_id, base.node_kind, base.node_pos, act),
                         (*base.conns[:3], (kind == 0) | (kind == 2)))
    children = [crossover(fitter, other, 9, 7, np.random.default_rng(s)) for s in range(200)]
    assert {(c.genome_id, c.parents, c.generation) for c in children} == {(9, (0, 1), 7)}
    on = np.array([c.conn_enabled for c in children])
    assert on[:, kind == 0].all(), "enabled in both parents: enabled"
    off_in_one = on[:, kind != 0]
    assert 0.2 < off_in_one.mean() < 0.3, off_in_one.mean()
    assert any(0 < row.sum() < row.size for row in off_in_one), "one draw per gene"
    hidden = base.node_kind == HIDDEN
    taken = np.array([c.node_act[hidden] == "tanh" for c in children])
    assert 0.4 < taken.mean() < 0.6 and any(0 < row.sum() < row.size for row in taken)


def test_a_derived_child_carries_no_weights_and_added_genes_get_nan_rows() -> None:
    g, reg = _one_hidden()
    n, m = len(g.conn_innov), len(g.node_id)
    rows = np.arange(n * 3, dtype=np.float32).reshape(n, 3)  # a conv genome's kernel rows
    weighted = g.with_weights(rows, np.zeros(m))
    child = weighted.derive(8, (5,), 8)
    assert child.conn_weight is None and child.node_bias is None, "children start afresh"
    (hidden,) = g.node_id[g.node_kind == HIDDEN]
    free = [(int(i), int(hidden)) for i in g.node_id[g.node_kind == INPUT]
            if not ((g.conn_src == i) & (g.conn_dst == hidden)).any()][:2]
    grown = weighted.with_added(free, reg.connections(free))
    assert grown.conn_weight.shape == (n + 2, 3)
    new = np.isin(grown.conn_innov, reg.connections(free))
    assert np.isnan(grown.conn_weight[new]).all()
    assert np.array_equal(np.sort(grown.conn_weight[~new].ravel()), rows.ravel())
    assert g.with_taps(None).conn_taps is None
    assert g.with_taps([1] * n).conn_taps.dtype == np.int64


def test_nodes_are_found_by_id_also_when_ids_are_sparse() -> None:
    """A genome read from another tool may number its nodes far apart (no lookup table)."""
    ids = np.array([0, 1, 5_000_000, 2, 70_000])
    kind = np.array([INPUT, INPUT, HIDDEN, OUTPUT, HIDDEN], dtype=np.int8)
    g = Genome.build(0, (ids, kind, np.array([0.0, 0.0, 0.5, 1.0, 0.25]), np.full(5, "relu")),
                     (np.array([0, 1]), np.array([0, 70_000]), np.array([70_000, 2]),
                      np.array([True, True])))
    wanted = np.array([70_000, 2, 5_000_000, 0, 1, 70_000])
    assert g.node_id[g.index_of(wanted)].tolist() == wanted.tolist()


def test_connections_can_be_added_to_a_genome_without_any() -> None:
    g = Genome.build(0, (np.array([0, 1, 2]), np.array([INPUT, INPUT, OUTPUT], dtype=np.int8),
                         np.array([0.0, 0.0, 1.0]), np.full(3, "identity")),
                     (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                      np.zeros(0, bool)))
    grown = g.with_added([(1, 2), (0, 2)], [7, 3])
    assert grown.conn_innov.tolist() == [3, 7] and grown.conn_src.tolist() == [0, 1]
    assert grown.conn_enabled.all()
