"""Co-evolution of activation functions: sides, assignment granularity, credit, evolution."""

from __future__ import annotations

import json

import numpy as np

from evosparse.evolution import SearchState
from evosparse.genome import HIDDEN, Genome, InnovationRegistry
from evosparse.graph import analyse
from evosparse.operators import minimal_genome
from evosparse.operators.coevolution import (
    FunctionPopulation,
    assign,
    credit,
    evolve,
    initial,
    sides,
)
from evosparse.operators.mutation import add_nodes
from evosparse.space import ActivationSpec, CoevolutionSpec, NetworkSpec
from tests.recording import watched_search

ACTS = ActivationSpec(hidden=("relu", "tanh"), initial="relu")
POPS = (FunctionPopulation("input", ("relu", "tanh"), (0.9, 0.1)),
        FunctionPopulation("middle", ("sin(x)",), (0.5,)),
        FunctionPopulation("output", ("abs(x) * x", "sigmoid"), (0.2, 0.8)))


def _grown(seed: int, levels: int = 3) -> Genome:
    rng = np.random.default_rng(seed)
    reg = InnovationRegistry(6, 3)
    g = minimal_genome(0, reg, 0.5, rng)
    for _ in range(6):
        g = add_nodes(g, rng, reg, NetworkSpec(max_hidden=30, max_levels=levels), ACTS, 3,
                      fan_in=2, fan_out=1)
    return g


def test_sides_are_thirds_of_the_position() -> None:
    g = _grown(0)
    s = sides(g)
    assert (s[g.node_pos < 1 / 3] == 0).all() and (s[g.node_pos >= 2 / 3] == 2).all()
    assert set(s[(g.node_pos >= 1 / 3) & (g.node_pos < 2 / 3)]) <= {1}


def test_initial_populations_start_from_the_library_then_expressions() -> None:
    pops = initial(CoevolutionSpec(size=5), ACTS, np.random.default_rng(0))
    assert [p.name for p in pops] == ["input", "middle", "output"]
    for p in pops:
        assert p.members[:2] == ("relu", "tanh") and len(set(p.members)) == 5
    assert len(initial(CoevolutionSpec(populations=1), ACTS, np.random.default_rng(0))) == 1


def test_a_new_network_draws_from_its_sides_population_at_each_granularity() -> None:
    g = _grown(1)
    hidden = g.node_kind == HIDDEN
    for granularity in ("node", "level", "population"):
        spec = CoevolutionSpec(granularity=granularity)
        out = assign(g, [], POPS, spec, np.random.default_rng(2))
        side = sides(out)
        for r in np.flatnonzero(hidden):
            assert out.node_act[r] in POPS[side[r]].members
        if granularity == "population":
            for k in range(3):
                assert len(set(out.node_act[hidden & (side == k)])) <= 1
        if granularity == "level":
            depth = analyse(out).depth
            for d in set(depth[hidden].tolist()):
                for k in range(3):
                    assert len(set(out.node_act[hidden & (depth == d) & (side == k)])) <= 1


def test_a_child_keeps_its_parents_functions_unless_reassigned() -> None:
    parent = assign(_grown(3), [], POPS, CoevolutionSpec(), np.random.default_rng(4))
    child = parent.derive(1, (0,), 1)
    kept = assign(child, [parent], POPS, CoevolutionSpec(reassign=0.0), np.random.default_rng(5))
    assert np.array_equal(kept.node_act, parent.node_act)
    redrawn = [assign(child, [parent], POPS, CoevolutionSpec(reassign=1.0),
                      np.random.default_rng(s)).node_act for s in range(6)]
    assert any(not np.array_equal(a, parent.node_act) for a in redrawn)


def test_credit_is_the_best_or_mean_of_partners_and_evolution_keeps_the_better_half() -> None:
    a = assign(_grown(6), [], POPS, CoevolutionSpec(granularity="population"),
               np.random.default_rng(0))
    b = assign(_grown(7), [], POPS, CoevolutionSpec(granularity="population"),
               np.random.default_rng(1))
    best = credit(POPS, [a, b], [0.4, 0.6], CoevolutionSpec(credit="best"))
    mean = credit(POPS, [a, b], [0.4, 0.6], CoevolutionSpec(credit="mean"))
    for i, pop in enumerate(POPS):
        for j, m in enumerate(pop.members):
            users = [acc for g, acc in ((a, 0.4), (b, 0.6))
                     if m in g.node_act[analyse(g).node_active & (g.node_kind == HIDDEN)
                                        & (sides(g) == i)]]
            want_best = max(users) if users else pop.fitness[j]
            want_mean = float(np.mean(users)) if users else pop.fitness[j]
            assert np.isclose(best[i].fitness[j], want_best)
            assert np.isclose(mean[i].fitness[j], want_mean)
    pops = (FunctionPopulation("shared", ("relu", "tanh", "sin(x)", "abs(x)"),
                               (0.1, 0.9, 0.5, 0.3)),)
    nxt = evolve(pops, CoevolutionSpec(populations=1), ACTS, np.random.default_rng(0))[0]
    assert nxt.members[:2] == ("tanh", "sin(x)") and len(set(nxt.members)) == 4
    assert set(nxt.fitness[2:]) <= {0.9, 0.5}, "offspring start from their parent's fitness"


def test_search_coevolves_functions_and_checkpoints_them(tmp_path) -> None:
    """After each generation every population keeps the better half of its functions by
    the fitness `credit` gives them from that generation's networks and accuracies.
    Mutant that fails this: the search evolving its populations without crediting them."""
    space, evaluator, generations = watched_search(tmp_path, {
        "generations": 3, "mutation": {"add_node": 0.9, "change_activation": 0.0},
        "coevolution": {"size": 4, "granularity": "level"}})
    co, states = space.coevolution, generations.states
    assert co is not None and len(states) == len(evaluator.calls) == 4
    for before, after, call in zip(states, states[1:], evaluator.calls[1:], strict=False):
        credited = credit(before["functions"], [g for g, _ in call],
                          [r.val_accuracy if r.ok else 0.0 for _, r in call], co)
        for p, q in zip(credited, after["functions"], strict=True):
            order = sorted(range(len(p.members)), key=lambda i: -p.fitness[i])
            kept = order[: len(order) - len(order) // 2]
            assert q.members[:len(kept)] == tuple(p.members[i] for i in kept)
            assert q.fitness[:len(kept)] == tuple(p.fitness[i] for i in kept)
    assert [p.name for p in states[-1]["functions"]] == ["input", "middle", "output"]
    assert any(f > 0 for p in states[-1]["functions"] for f in p.fitness)
    state = SearchState.from_dict(json.loads(json.dumps(generations.checkpoint)))
    assert state.functions == states[-1]["functions"], "the checkpoint holds the populations"



def test_function_populations_round_trip_through_checkpoint_json() -> None:
    """A resumed co-evolving search continues from the same populations and fitness."""
    for pop in POPS:
        data = json.loads(json.dumps(pop.to_dict()))
        assert data == {"name": pop.name, "members": list(pop.members),
                        "fitness": list(pop.fitness)}
        assert FunctionPopulation.from_dict(data) == pop


def test_a_tournament_picks_the_fitter_of_two_and_the_earlier_of_equals() -> None:
    rng = np.random.default_rng(0)
    pop = FunctionPopulation("p", ("a", "b", "c"), (0.1, 0.9, 0.5))
    counts = {m: 0 for m in pop.members}
    for _ in range(900):
        counts[pop.pick(rng)] += 1
    # two uniform draws: b wins whenever drawn (5/9), c unless b is drawn (3/9), a only twice
    assert counts["b"] > 420 and 220 < counts["c"] < 380 and counts["a"] < 160, counts
    tie = FunctionPopulation("p", ("a", "b"), (0.5, 0.5))
    firsts = sum(tie.pick(rng) == "a" for _ in range(400))
    assert firsts > 250, "equals: the earlier member (3 of 4 draws)"


def test_sides_split_positions_at_exact_thirds() -> None:
    g = _grown(0)
    pos = np.linspace(0.0, 1.0, len(g.node_pos))
    pos[:5] = [0.0, 1 / 3 - 1e-6, 1 / 3, 2 / 3, 1.0]
    s = sides(Genome.build(0, (g.node_id, g.node_kind, pos, g.node_act), g.conns))
    assert s[:5].tolist() == [0, 0, 1, 2, 2]


def test_one_shared_population_starts_at_zero_fitness_and_serves_every_side() -> None:
    (shared,) = initial(CoevolutionSpec(populations=1, size=4), ACTS, np.random.default_rng(0))
    assert shared.name == "shared" and shared.fitness == (0.0,) * 4
    (three,) = {p.fitness for p in initial(CoevolutionSpec(size=3), ACTS,
                                           np.random.default_rng(0))}
    assert three == (0.0,) * 3
    pop = (FunctionPopulation("shared", ("sin(x)", "abs(x) * x"), (0.0, 0.0)),)
    g = _grown(1)
    out = assign(g, [], pop, CoevolutionSpec(populations=1), np.random.default_rng(0))
    hidden = out.node_kind == HIDDEN
    assert set(sides(out)[hidden].tolist()) == {0, 1, 2}
    assert set(out.node_act[hidden].tolist()) <= set(pop[0].members)


def test_granularity_decides_which_nodes_share_a_function() -> None:
    """node: nodes of one side differ; level: one function per level and side, levels of a
    side differ; population: one function per side."""
    seen = {"node": 0, "level": 0, "population": 0}
    for seed in range(8):
        g = _grown(1 + seed)
        hidden, side, depth = g.node_kind == HIDDEN, sides(g), analyse(g).depth
        for granularity in seen:
            out = assign(g, [], POPS, CoevolutionSpec(granularity=granularity),
                         np.random.default_rng(seed))
            for k in (0, 2):  # the sides with two members
                on_side = hidden & (side == k)
                if granularity == "node":
                    seen["node"] += len(set(out.node_act[on_side])) > 1
                for d in set(depth[on_side].tolist()):
                    assert granularity == "node" or \
                        len(set(out.node_act[on_side & (depth == d)])) == 1
                if granularity != "node":
                    seen[granularity] += len(set(out.node_act[on_side])) > 1
    assert seen["node"] > 0 and seen["level"] > 0 and seen["population"] == 0, seen


def test_a_child_keeps_the_most_common_of_its_parents_functions_in_a_unit_and_its_weights(
        ) -> None:
    spec = CoevolutionSpec(granularity="population", reassign=0.0)
    checked = 0
    for seed in range(6):
        parent = assign(_grown(seed), [], POPS, CoevolutionSpec(granularity="node"),
                        np.random.default_rng(seed))
        hidden, side = parent.node_kind == HIDDEN, sides(parent)
        child = parent.derive(1, (0,), 1).with_weights(
            np.linspace(-1, 1, len(parent.conn_innov)), np.zeros(len(parent.node_id)))
        out = assign(child, [parent], POPS, spec, np.random.default_rng(seed))
        for k in range(3):
            acts = parent.node_act[hidden & (side == k)].tolist()
            if len(set(acts)) > 1:
                (kept,) = set(out.node_act[hidden & (side == k)].tolist())
                assert acts.count(kept) == max(acts.count(a) for a in acts)
                checked += sorted(set(acts))[0] != kept
        assert np.array_equal(out.conn_weight, child.conn_weight)
        assert np.array_equal(out.node_bias, child.node_bias)
    assert checked, "a side whose most common function is not the first by name"


def test_credit_and_evolution_keep_names_members_and_the_better_half() -> None:
    pops = (FunctionPopulation("input", ("relu", "tanh"), (0.9, 0.1)),
            FunctionPopulation("middle", ("sin(x)", "abs", "neg(x)", "square"),
                               (0.2, 0.8, 0.5, 0.1)))
    credited = credit(pops, [], [], CoevolutionSpec(credit="best"))
    assert credited == pops, "no network used them: names, members and fitness stay"
    out = evolve(pops, CoevolutionSpec(), ActivationSpec(), np.random.default_rng(0))
    assert [p.name for p in out] == ["input", "middle"]
    assert out[0].members[0] == "relu" and "tanh" not in out[0].members
    assert len(out[0].members) == 2 and out[0].fitness == (0.9, 0.9)
    assert out[1].members[:2] == ("abs", "neg(x)") and len(set(out[1].members)) == 4


def test_a_network_with_one_hidden_node_gets_a_function_from_its_population() -> None:
    rng = np.random.default_rng(0)
    reg = InnovationRegistry(6, 3)
    g = add_nodes(minimal_genome(0, reg, 0.5, rng), rng, reg, NetworkSpec(), ACTS, 1)
    assert g.n_hidden == 1
    pops = tuple(FunctionPopulation(n, ("sin(x)",), (0.0,)) for n in ("input", "middle",
                                                                      "output"))
    out = assign(g, [], pops, CoevolutionSpec(), rng)
    assert out.node_act[out.node_kind == HIDDEN].tolist() == ["sin(x)"]
