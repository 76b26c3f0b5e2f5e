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
    PROBE,
    Tree,
    canonical,
    depth,
    is_finite,
    mutate_expression,
    parse,
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
    assert canonical("x * 0.0") == "x * 0.0" and canonical("x - x * x") == "x - x * x"
    assert canonical("x / (x * x)") == "x / (x * x)" and canonical("x * x / x") == "x * x / x"
    for text in ("relu(x) * tanh(x)", "x - (x - 1.0)", "max(x, -2.0) / (1.0 + abs(x))",
                 "x * (-2.0)", "neg(sin(x)) + gaussian(x * 2.0)"):
        assert canonical(text) == text, "canonical text parses back to itself"


@pytest.mark.parametrize("bad", ["__import__('os')", "y + 1", "relu(x, x)", "x ** 2",
                                 "lambda x: x", "relu(x", "x.real", "max(x)"])
def test_anything_but_the_grammar_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        checked_activation(bad)


@pytest.mark.parametrize("bad", ["-y", "y + x", "x * y", "max(y, x)", "min(x, y)", "sin(y)",
                                 "x + sin(neg(y))"])
def test_a_refusal_quotes_the_whole_text_and_the_part_not_allowed(bad: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse(bad)
    assert str(exc.value).startswith(f"{bad!r}: 'y' is not allowed (use x, numbers, + - * /, "
                                     "max(a, b), min(a, b) and abs, elu, gaussian, gelu, ")
    with pytest.raises(ValueError, match=r"^'relu\(x' is not an expression \(.+\)$"):
        parse("relu(x")


def test_a_minus_sign_negates_a_number_or_applies_neg() -> None:
    assert canonical("-x") == "neg(x)" and canonical("-(x * 2)") == "neg(x * 2.0)"
    assert activation_cost("-x") == 1 and activation_cost("x * -2.0") == 1, \
        "-2.0 is a number, not neg applied to 2.0"
    assert parse("-2") == ("const", -2.0) and parse("-sin(x)") == ("neg", ("sin", ("x",)))


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
    assert activation_cost("neg(sin(x)) + x") == 1 + 1 + 4
    x = torch.linspace(-3, 3, 61)
    got = torch_activation("relu(x) * tanh(x) - min(x, 0.5) / 2.0")(x)
    want = torch.relu(x) * torch.tanh(x) - torch.minimum(x, torch.tensor(0.5)) / 2.0
    torch.testing.assert_close(got, want)


def test_random_expressions_are_reproducible_bounded_and_finite() -> None:
    draws = [[random_expression(np.random.default_rng(s), PRIMITIVES, 3) for s in range(20)]
             for _ in range(2)]
    assert draws[0] == draws[1], "the same seed gives the same expressions"
    assert len(set(draws[0])) > 10
    assert "identity" not in draws[0], "a drawn expression is a new function, never x itself"
    trees = [tree_of(random_expression(np.random.default_rng(s), PRIMITIVES, 3))
             for s in range(100)]
    heads = {t[0] for tree in trees for t in _nodes(tree)}
    assert {"const", "neg", "sin"} <= heads and heads & {"+", "-", "*", "/", "max", "min"}, \
        "draws combine constants, functions and binary operators"
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
    for text, name in [("x + 0.0", "identity"), ("sin(x) - 0.0", "sin"), ("0.0 + tanh(x)", "tanh"),
                       ("abs(x) / 1.0", "abs"), ("1.0 * square(x)", "square"),
                       ("square(x) * 1.0", "square"), ("0.0 - x", "0.0 - x"),
                       ("1.0 / x", "1.0 / x"), ("x - 1.0", "x - 1.0"), ("x * 0.0", "x * 0.0")]:
        assert canonical(text) == name, text
    rng = np.random.default_rng(3)
    for _ in range(100):
        text = random_expression(rng, PRIMITIVES, 4)
        assert canonical(text) == text


def test_depth_counts_the_operators_on_the_longest_path() -> None:
    assert depth(tree_of("identity")) == 0 and depth(parse("2.0")) == 0
    assert depth(tree_of("relu")) == 1 and depth(parse("x + 1.0")) == 1
    assert depth(parse("relu(x) * tanh(sin(x))")) == 3
    assert depth(parse("max(neg(sin(tanh(x))), x) + 0.5")) == 5


def _differs_at(parent: Tree, child: Tree, path: tuple[int, ...] = ()) -> tuple[int, ...] | None:
    """The path of the smallest subtree of `parent` outside which `child` equals it."""
    if parent == child:
        return None
    if parent[0] != child[0] or len(parent) != len(child) or parent[0] in ("x", "const"):
        return path
    diff = [i for i in range(1, len(parent)) if parent[i] != child[i]]
    return _differs_at(parent[diff[0]], child[diff[0]], (*path, diff[0])) if len(diff) == 1 \
        else path


def test_a_mutation_replaces_one_subtree_anywhere_within_the_depth() -> None:
    """Any subtree may be replaced (the root, either operand, a deep argument, a constant),
    the rest of the parent is kept, and a child as deep as the limit is allowed."""
    parent = "sin(tanh(x)) * x + 0.5"  # 4 deep: + ( * ( sin ( tanh ( x ) ) ), 0.5 )
    tree = tree_of(parent)
    where = set()
    for seed in range(120):
        child = mutate_expression(parent, np.random.default_rng(seed), PRIMITIVES, 4)
        assert child not in (parent, "identity") and canonical(child) == child
        assert is_finite(child)
        assert depth(tree_of(child)) <= 4
        where.add(_differs_at(tree, tree_of(child)))
    assert {(), (1,), (2,), (1, 1), (1, 2), (1, 1, 1)} <= where, where


def test_a_parent_deeper_than_the_limit_mutates_into_a_child_within_it() -> None:
    """A hand-written expression deeper than `expression_depth` is mutated into one
    within it (by replacing a subtree high enough, or by a fresh draw when 32 tries fail)."""
    for seed in range(60):
        child = mutate_expression("sin(tanh(x)) * sin(tanh(x))", np.random.default_rng(seed),
                                  PRIMITIVES, 1)
        assert depth(tree_of(child)) <= 1 and canonical(child) == child, child


def test_an_expression_with_finite_values_but_an_overflowing_gradient_is_not_finite() -> None:
    """Training needs the gradient too: sigmoid(x^64) stays in [0, 1] on the probe, but its
    derivative overflows float32 there, so the expression is refused like an overflow."""
    text = "sigmoid(square(square(square(square(square(square(x)))))))"
    x = torch.from_numpy(PROBE)
    assert bool(torch.isfinite(torch_activation(text)(x)).all())
    assert not is_finite(text)
    assert is_finite("sigmoid(square(square(x)))")


def _nodes(tree: Tree) -> list[Tree]:
    return [tree] + ([] if tree[0] in ("x", "const") else
                     [n for t in tree[1:] for n in _nodes(t)])


def test_an_evolved_expression_may_fill_the_64_characters_a_genome_stores() -> None:
    from evosparse.expressions import _usable

    for tail, fits in (("tanh(x) * sin(x)", True), ("tanh(x) * tanh(x)", False)):
        text = "x + " * 12 + tail  # 64 and 65 characters
        assert canonical(text) == text and (len(text) <= 64) == fits
        assert (_usable(tree_of(text)) == text) == fits
