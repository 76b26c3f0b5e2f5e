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

