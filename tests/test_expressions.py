"""Evolved activation expressions: text, cost, torch form, random growth and NaN safety."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from evosparse.activations import (
    ACTIVATIONS,
    activation_cost,
    checked_activation,
    torch_activation,
)
from evosparse.data import load_task
from evosparse.errors import UserError
from evosparse.evaluators import LocalEvaluator
from evosparse.evolution import GenerationRecord, Reporter, Search, SearchState
from evosparse.expressions import (
    canonical,
    depth,
    is_finite,
    mutate_expression,
    random_expression,
    tree_of,
)
from evosparse.fitness import EvalResult, FitnessConfig, evaluate_batch
from evosparse.genome import HIDDEN, Genome
from evosparse.space import TrainingSpec, load_space
from tests.conftest import TINY, deep_update
from tests.test_batched import heterogeneous
from tests.test_fitness import DIGITS

PRIMITIVES = ("relu", "tanh", "sigmoid", "sin", "abs", "square", "gaussian", "neg")


def test_text_is_canonical_readable_and_round_trips() -> None:
    assert canonical("relu(x)*tanh(x)") == "relu(x) * tanh(x)"
    assert canonical("(x + 1) * x") == "(x + 1.0) * x"
    assert canonical("x - (x - 1)") == "x - (x - 1.0)"
    assert canonical("(x - x) - 1") == "x - x - 1.0"
    assert canonical("max(x, -2) / (1 + abs(x))") == "max(x, -2.0) / (1.0 + abs(x))"
    assert canonical("x * -2") == "x * (-2.0)"
    for text in ("relu(x) * tanh(x)", "x - (x - 1.0)", "max(x, -2.0) / (1.0 + abs(x))",
                 "x * (-2.0)", "neg(sin(x)) + gaussian(x * 2.0)"):
        assert canonical(text) == text, "canonical text parses back to itself"


@pytest.mark.parametrize("bad", ["__import__('os')", "y + 1", "relu(x, x)", "x ** 2",
                                 "lambda x: x", "relu(x", "x.real", "max(x)"])
def test_anything_but_the_grammar_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        checked_activation(bad)


def test_one_function_has_one_name() -> None:
    assert checked_activation("relu( x )") == "relu" and checked_activation("x") == "identity"
    assert canonical("tanh(x)") == "tanh" and canonical("tanh(x) * 2.0") == "tanh(x) * 2.0"


def test_an_expression_must_use_x_and_fit_a_genome() -> None:
    with pytest.raises(ValueError, match="does not use x"):
        checked_activation("max(1.0, sin(2.0))")
    with pytest.raises(ValueError, match="longer than 64"):
        checked_activation(" + ".join(["tanh(x)"] * 10))


def test_cost_and_torch_form_match_a_hand_computation() -> None:
    assert activation_cost("relu(x) * tanh(x)") == 1 + 1 + 4
    assert activation_cost("max(x, sin(x)) + 0.5") == 1 + 1 + 4
    assert activation_cost("relu") == 1
    x = torch.linspace(-3, 3, 61)
    got = torch_activation("relu(x) * tanh(x) - min(x, 0.5) / 2.0")(x)
    want = torch.relu(x) * torch.tanh(x) - torch.minimum(x, torch.tensor(0.5)) / 2.0
    torch.testing.assert_close(got, want)


def test_random_expressions_are_reproducible_bounded_and_finite() -> None:
    draws = [[random_expression(np.random.default_rng(s), PRIMITIVES, 3) for s in range(20)]
             for _ in range(2)]
    assert draws[0] == draws[1], "the same seed gives the same expressions"
    assert len(set(draws[0])) > 10
    for text in draws[0]:
        assert depth(tree_of(text)) <= 3 and len(text) <= 64
        assert canonical(text) == text
        assert text in ACTIVATIONS or is_finite(text)
    rng = np.random.default_rng(5)
    child = mutate_expression("relu(x) * tanh(x)", rng, PRIMITIVES, 3)
    assert child != "relu(x) * tanh(x)" and depth(tree_of(child)) <= 3
    assert mutate_expression("tanh", rng, PRIMITIVES, 3) != "tanh"


def test_non_finite_expressions_are_caught_never_crash() -> None:
    assert not is_finite("x / (x - x)")
    assert not is_finite("square(square(square(square(square(x * 2.0)))))")  # overflows float32
    g = heterogeneous(3)[2]
    hidden = np.flatnonzero(g.node_kind == HIDDEN)
    act = g.node_act.copy()
    act[hidden] = "x / (x - x)"  # NaN for every input
    bad = Genome.build(g.genome_id, (g.node_id, g.node_kind, g.node_pos, act), g.conns)
    cfg = FitnessConfig(task=DIGITS, training=TrainingSpec(epochs=1), bias=True, run_seed=0)
    for batched in (True, False):
        good, failed = evaluate_batch([heterogeneous(1)[0], bad],
                                      FitnessConfig(**{**cfg.__dict__, "batched": batched}))
        assert good.ok
        assert failed.status == "nan", failed.error
        assert "not finite" in failed.error or "loss" in failed.error


class _Recorder(Reporter):
    """Every evaluation's status and every generation's front, as the search reports them."""

    def __init__(self) -> None:
        self.status: dict[int, str] = {}
        self.fronts: list[list[int]] = []

    def evaluated(self, results: list[EvalResult]) -> None:
        self.status.update((r.genome_id, r.status) for r in results)

    def generation_end(self, record: GenerationRecord, state: SearchState) -> None:
        self.fronts.append([m.genome.genome_id for m in record.front])


class _Watching(LocalEvaluator):
    """In-process evaluation that notes the parents of every genome it evaluates."""

    def __init__(self) -> None:
        self.parents: set[int] = set()

    def map(self, fn: Any, batches: Sequence[Any], context: Any) -> Iterator[Any]:
        self.parents.update(p for batch in batches for g in batch for p in g.parents)
        return super().map(fn, batches, context)


def test_a_search_with_a_nan_expression_runs_and_never_selects_it(tmp_path) -> None:
    """Genomes computing NaN are evaluated `nan` and are never a parent of a later
    genome nor on any generation's front. Mutant that fails this: `Member.objectives`
    gives failed members objectives too (their few FLOPs then put them on the front)."""
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(deep_update(TINY, {
        "generations": 3, "network": {"max_hidden": 8},
        "mutation": {"add_node": 0.9},
        "activations": {"hidden": ["relu", "x / (x - x)"], "initial": "relu"}})))
    space = load_space(path)
    recorder, evaluator = _Recorder(), _Watching()
    Search(space=space, task=load_task(space.dataset), evaluator=evaluator,
           reporters=[recorder]).run()
    nan = {i for i, status in recorder.status.items() if status == "nan"}
    assert nan, "some genomes computed NaN"
    assert set(recorder.status.values()) == {"ok", "nan"}
    assert len(recorder.fronts) == 4 and not nan & {i for f in recorder.fronts for i in f}
    assert evaluator.parents and not nan & evaluator.parents


def test_evolved_expressions_in_a_search_are_stored_as_text(tmp_path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(deep_update(TINY, {
        "generations": 3, "mutation": {"add_node": 0.9, "change_activation": 0.9},
        "activations": {"expressions": 1.0, "expression_depth": 2}})))
    space = load_space(path)
    search = Search(space=space, task=load_task(space.dataset), evaluator=LocalEvaluator())
    state = search.run()
    evolved = {str(a) for m in state.population for a in m.genome.node_act if "(" in str(a)}
    assert evolved, "change-activation mutations evolved expressions"
    for text in evolved:
        assert canonical(text) == text and depth(tree_of(text)) <= 2


def test_a_bad_expression_in_a_space_names_the_key(tmp_path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(deep_update(TINY, {
        "activations": {"hidden": ["relu", "exp(x)"]}})))
    with pytest.raises(UserError, match="activations.hidden"):
        load_space(path)


def test_canonical_text_parses_back_to_the_same_tree() -> None:
    rng = np.random.default_rng(9)
    for _ in range(200):
        text = random_expression(rng, PRIMITIVES, 4)
        assert tree_of(canonical(text)) == tree_of(text)


def test_a_two_input_unit_evolves_into_a_fresh_expression() -> None:
    text = mutate_expression("and_ail", np.random.default_rng(0), PRIMITIVES, 3)
    assert text != "and_ail" and depth(tree_of(text)) <= 3


def test_names_are_simplified_once_and_for_all() -> None:
    assert canonical("max(x, x)") == "identity"
    assert canonical("2.0 * x * (1.0 * 1.0)") == "2.0 * x"
    assert canonical("neg(min(x, x) + 1.0)") == "neg(x + 1.0)"
    assert canonical("sin(0.5) * x") == "0.4794 * x"
    assert canonical("x / (x - x)") == "x / (x - x)", "no rewrite hides a division by zero"
    rng = np.random.default_rng(3)
    for _ in range(100):
        text = random_expression(rng, PRIMITIVES, 4)
        assert canonical(text) == text
