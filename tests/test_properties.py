"""Properties of the pure core, checked on inputs Hypothesis draws.

Variation keeps a DAG with unique innovation ids and FLOPs that a separate count of the
genome gives; genome, registry and checkpoint JSON round-trip exactly; the expression
parser and the space validator answer any text with a value or their one error type.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from evosparse.activations import ACTIVATIONS, activation_cost, arity, checked_activation
from evosparse.checkpoint_json import CheckpointEncoder
from evosparse.checkpoint_json import canonical as canonical_json
from evosparse.errors import UserError
from evosparse.evolution import Member, SearchState
from evosparse.expressions import canonical, parse, to_text
from evosparse.fitness import EvalResult
from evosparse.flops import count_cost
from evosparse.genome import INPUT, OUTPUT, Genome, InnovationRegistry
from evosparse.operators import crossover, minimal_genome, mutate
from evosparse.pareto import first_front, hypervolume, nsga2_select, rank_and_crowding
from evosparse.space import (
    ActivationSpec,
    MutationSpec,
    NetworkSpec,
    SearchSpace,
    validate_space,
)
from tests.conftest import TINY
from tests.test_genome import ACTS, N_IN, N_OUT, check_invariants, check_registry_consistent

settings.register_profile("evosparse", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(  # benchmarks/mutation.py: run once per mutant, a failure
    "mutation", parent=settings.get_profile("evosparse"), max_examples=12,  # is enough
    phases=[Phase.explicit, Phase.reuse, Phase.generate])  # (not shrunk)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "evosparse"))
EXPR_ACTS = ActivationSpec(hidden=("relu", "tanh", "and_ail", "identity"), expressions=0.5)


def reference_flops(g: Genome, bias: bool) -> int:
    """FLOPs counted node by node from the genome's lists (not `graph.analyse`): a node
    computes when it is an output or feeds, through enabled connections, one that does."""
    return reference_cost(g, bias)[0]


def reference_cost(g: Genome, bias: bool) -> tuple[int, int]:
    """(FLOPs, connections into computing nodes), counted as `reference_flops` says."""
    feeds: dict[int, list[int]] = {}
    for s, d, e in zip(g.conn_src.tolist(), g.conn_dst.tolist(), g.conn_enabled.tolist(),
                       strict=True):
        if e:
            feeds.setdefault(d, []).append(s)
    kind = dict(zip(g.node_id.tolist(), g.node_kind.tolist(), strict=True))
    act = dict(zip(g.node_id.tolist(), g.node_act.tolist(), strict=True))
    live, todo = set(), [n for n, k in kind.items() if k == OUTPUT]
    while todo:
        n = todo.pop()
        if n not in live:
            live.add(n)
            todo.extend(feeds.get(n, []))
    flops = connections = 0
    for n in live:
        if kind[n] == INPUT:
            continue
        per = arity(str(act[n]))  # a two-input unit: two weights per input, two biases
        flops += 2 * per * len(feeds.get(n, [])) + (per if bias else 0)
        flops += activation_cost(str(act[n]))
        connections += len(feeds.get(n, []))
    return flops, connections


@st.composite
def evolved(draw: st.DrawFn) -> tuple[list[Genome], InnovationRegistry, NetworkSpec]:
    """A small population after a drawn number of crossovers and mutations."""
    net = NetworkSpec(topology=draw(st.sampled_from(["dag", "layered"])),
                      max_hidden=draw(st.integers(0, 10)), max_levels=draw(st.integers(1, 3)),
                      initial_density=draw(st.floats(0.05, 1.0)))
    rate = st.floats(0, 1, allow_subnormal=False)  # a subnormal rate underflows mutate's p
    rates = MutationSpec(add_connection=draw(rate), add_node=draw(rate),
                         remove_connection=draw(rate), change_activation=draw(rate),
                         add_node_max=2)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    reg = InnovationRegistry(N_IN, N_OUT)
    pop = [minimal_genome(i, reg, net.initial_density, rng) for i in range(4)]
    for step in range(draw(st.integers(0, 12))):
        a, b = rng.choice(len(pop), size=2, replace=False)
        child = (crossover(pop[a], pop[b], 4 + step, 1, rng) if rng.random() < 0.5
                 else pop[a].derive(4 + step, (pop[a].genome_id,), 1))
        child = mutate(child, rng, reg, net, EXPR_ACTS if step % 2 else ACTS, rates)
        pop[int(rng.integers(len(pop)))] = child
    return pop, reg, net


@given(evolved(), st.booleans())
def test_variation_keeps_a_dag_unique_ids_and_flops_of_the_genome(drawn, bias: bool) -> None:
    """Mutant that fails this: `count_cost` counting a two-input unit's bias once."""
    pop, _, net = drawn
    for g in pop:
        check_invariants(g, net)
        assert count_cost(g, bias).flops == reference_flops(g, bias)
    check_registry_consistent(pop)


@given(evolved(), st.data())
def test_genome_and_registry_json_round_trip_exactly(drawn, data: st.DataObject) -> None:
    pop, reg, _ = drawn
    weights = st.floats(width=32, allow_infinity=False)  # NaN: no inherited value
    for g in pop:
        conn = data.draw(st.lists(weights, min_size=len(g.conn_innov), max_size=len(g.conn_innov)))
        bias = data.draw(st.lists(weights, min_size=len(g.node_id), max_size=len(g.node_id)))
        weighted = g.with_weights(np.array(conn), np.array(bias))
        assert weighted.conn_weight.dtype == weighted.node_bias.dtype == np.float32
        for genome in (g, weighted):
            text = json.dumps(genome.to_dict(), allow_nan=False)
            back = Genome.from_dict(json.loads(text))
            assert json.dumps(back.to_dict()) == text and back.same_as(genome)
        back = Genome.from_dict(json.loads(json.dumps(weighted.to_dict())))
        for got, want in ((back.conn_weight, conn), (back.node_bias, bias)):
            np.testing.assert_array_equal(got, np.array(want, dtype=np.float32))
    again = InnovationRegistry.from_dict(json.loads(json.dumps(reg.to_dict())))
    assert again.to_dict() == reg.to_dict()


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(evolved(), st.lists(st.tuples(st.sampled_from(["ok", "nan", "failed"]), finite,
                                     st.integers(0, 10**9)), min_size=4, max_size=4),
       st.integers(0, 2**63 - 1))
def test_checkpoint_json_round_trips_exactly(drawn, outcomes, seed: int) -> None:
    """A state encoded by the incremental encoder is `canonical` of the whole body, and
    reading it back gives the same body."""
    pop, reg, _ = drawn
    members = [Member(g, EvalResult(g.genome_id, 1, status, acc, acc, flops, flops, 3, acc,
                                    error=None if status == "ok" else "why"))
               for g, (status, acc, flops) in zip(pop, outcomes, strict=True)]
    state = SearchState(generation=1, population=members, registry=reg,
                        rng=np.random.default_rng(seed), next_genome_id=99, evaluations=8)
    head, space = {"format": 1}, SearchSpace.model_validate(TINY).model_dump(mode="json")
    text = CheckpointEncoder().encode(head, space, state)
    assert text == canonical_json({**head, "space": space, "state": state.to_dict()})
    back = SearchState.from_dict(json.loads(text)["state"])
    assert canonical_json(back.to_dict()) == canonical_json(state.to_dict())


GRAMMAR = st.sampled_from(["x", "1.5", "-2", "relu(", "tanh(", "max(", "min(", "abs(", ")",
                           ",", " + ", " - ", " * ", " / ", "**", "(", "exp(", "y",
                           "__import__('sys').exit(3)", "x.real", "lambda x: x", "[x]",
                           "open('f')", "sin(", "1e400", "neg(", "  ", "\n", "#", "'s'"])


@settings(max_examples=5 * settings().max_examples)  # cheap examples: more of them
@given(st.one_of(st.text(max_size=40), st.lists(GRAMMAR, max_size=10).map("".join)))
def test_the_expression_parser_answers_any_text_with_an_expression_or_a_value_error(
        text: str) -> None:
    """No text runs code (`__import__('sys').exit(3)` would raise SystemExit) or raises
    anything but the parser's `ValueError` (which a space turns into `UserError`)."""
    try:
        name = checked_activation(text)
    except ValueError:
        return
    assert checked_activation(name) == name, "the answer is canonical"
    assert name in ACTIVATIONS or canonical(to_text(parse(name))) == name


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8)
SECTIONS = list(SearchSpace.model_fields)


@st.composite
def spaces(draw: st.DrawFn) -> Any:
    """The tiny space with drawn keys replaced by drawn values (any JSON, any depth)."""
    data: dict[str, Any] = json.loads(json.dumps(TINY))
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from(SECTIONS))
        value = draw(json_values)
        if isinstance(data.get(section), dict) and draw(st.booleans()):
            data[section] = {**data[section], draw(st.text(max_size=12)): value}
        else:
            data[section] = value
    return draw(st.sampled_from([data, value, [data]]))


@settings(max_examples=3 * settings().max_examples)
@given(spaces())
def test_space_validation_raises_only_user_errors(data: Any) -> None:
    """Mutant that fails this: `validate_space` letting pydantic's ValidationError out."""
    text = yaml.safe_dump(data)
    try:
        validate_space(yaml.safe_load(text), "drawn.yaml")
    except UserError as exc:
        assert str(exc).startswith("drawn.yaml") or "drawn.yaml" in str(exc)


@pytest.mark.parametrize("text", ["", "- 1\n", "name: [", "a: 1\na: 2\n", "\t:"])
def test_space_files_of_any_text_raise_only_user_errors(tmp_path, text: str) -> None:
    from evosparse.space import load_space

    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(UserError):
        load_space(path)


objectives = st.lists(st.none() | st.tuples(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.2]),
                                            st.integers(0, 3000).map(float)), max_size=9)


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[0] and a[1] <= b[1] and a != b


@given(objectives)
def test_first_front_and_ranks_are_those_a_pairwise_comparison_gives(objs) -> None:
    """Mutant that fails this: `first_front` sorting its indices by index, not by
    (error, FLOPs)."""
    valid = [i for i, o in enumerate(objs) if o is not None]
    front = first_front(objs)
    assert sorted(front) == [i for i in valid
                             if not any(_dominates(objs[j], objs[i]) for j in valid)]
    assert [objs[i] for i in front] == sorted(objs[i] for i in front)
    rank, _ = rank_and_crowding(objs)
    assert all(rank[i] == 0 for i in front) and all(np.isinf(rank[i]) for i in range(len(objs))
                                                    if objs[i] is None)
    for i in valid:
        for j in valid:
            if _dominates(objs[i], objs[j]):
                assert rank[i] < rank[j]
    chosen = nsga2_select(objs, 4)
    assert len(chosen) == min(4, len(objs)) and len(set(chosen)) == len(chosen)
    assert set(front[:4]) <= set(chosen) or len(front) > 4


@given(objectives)
def test_hypervolume_is_the_area_a_sweep_over_the_points_gives(objs) -> None:
    ref = (1.0, 2000.0)
    inside = sorted({(o[0] / ref[0], o[1] / ref[1]) for o in objs
                     if o is not None and o[0] < ref[0] and o[1] < ref[1]})
    area, lowest = 0.0, 1.0
    for e, f in inside:  # by error: each point adds the strip below the lowest FLOPs yet
        if f < lowest:
            area, lowest = area + (1.0 - e) * (lowest - f), f
    assert hypervolume(objs, ref) == pytest.approx(area, abs=1e-12)


@given(evolved(), st.data())
def test_disabling_and_adding_genes_is_what_a_dict_of_genes_says(drawn, data) -> None:
    """`with_disabled` and `with_added` (how training's pruning and regrowth are settled
    into a genome) against a dict {(src, dst): [innovation, enabled]}; `index_of` finds
    every node's row. Mutant that fails this: `with_added` leaving a re-enabled gene off."""
    pop, reg, _ = drawn
    g = pop[0]
    genes = {(s, d): [i, e] for i, s, d, e in zip(g.conn_innov.tolist(), g.conn_src.tolist(),
                                                   g.conn_dst.tolist(),
                                                   g.conn_enabled.tolist(), strict=True)}
    assert g.index_of(g.node_id).tolist() == list(range(len(g.node_id)))
    off = data.draw(st.lists(st.sampled_from(g.conn_innov.tolist()), unique=True)
                    if len(g.conn_innov) else st.just([]))
    pruned = g.with_disabled(tuple(off))
    for gene in genes.values():
        gene[1] = gene[1] and gene[0] not in off
    hidden = g.node_id[g.node_kind != OUTPUT].tolist()
    targets = g.node_id[g.node_kind != INPUT].tolist()
    pairs = data.draw(st.lists(st.tuples(st.sampled_from(hidden), st.sampled_from(targets))
                               .filter(lambda p: p[0] != p[1]), unique=True, max_size=6))
    weighted = pruned.with_weights(np.zeros(len(g.conn_innov)), np.zeros(len(g.node_id)))
    ids = [reg.connection(s, d) for s, d in pairs]
    grown = weighted.with_added(pairs, ids)
    for (s, d), i in zip(pairs, ids, strict=True):
        genes[(s, d)] = [genes.get((s, d), [i])[0], True]
    got = {(s, d): [i, e] for i, s, d, e in zip(
        grown.conn_innov.tolist(), grown.conn_src.tolist(), grown.conn_dst.tolist(),
        grown.conn_enabled.tolist(), strict=True)}
    assert got == genes
    assert grown.conn_innov.tolist() == sorted(grown.conn_innov.tolist())
    new = ~np.isin(grown.conn_innov, g.conn_innov)
    assert np.isnan(grown.conn_weight[new]).all() and (grown.conn_weight[~new] == 0).all()
    assert g.with_disabled(()) is g and g.with_added([], []) is g
