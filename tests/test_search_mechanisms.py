"""Issue 18's mechanisms: learning-rate schedules inside each candidate's budget (batched
training still follows one-by-one training and a killed run still resumes exactly), and the
dense-to-sparse path: magnitude pruning as a mutation and a first population spread over
densities."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from evosparse.errors import UserError
from evosparse.evolution import front_of
from evosparse.families import MLP
from evosparse.fitness import FitnessConfig, evaluate_batch
from evosparse.genome import HIDDEN, INPUT, OUTPUT, Genome
from evosparse.operators.prune import prune_smallest, prune_to_cost
from evosparse.schedules import lr_factor
from evosparse.space import TrainingSpec, load_space
from tests.recording import watched_search
from tests.test_batched import heterogeneous
from tests.test_fitness import DIGITS
from tests.test_resume import SPACE, _kill_and_resume, _reference


def test_schedules_start_end_and_peak_where_documented() -> None:
    total = 101
    assert [lr_factor("constant", s, total) for s in (0, 50, 100)] == [1.0, 1.0, 1.0]
    cosine = [lr_factor("cosine", s, total) for s in range(total)]
    assert cosine[0] == 1.0 and cosine[-1] == pytest.approx(0.0, abs=1e-12)
    assert cosine[50] == pytest.approx(0.5) and all(np.diff(cosine) <= 0)
    cycle = [lr_factor("onecycle", s, total) for s in range(total)]
    assert cycle[0] == pytest.approx(1 / 25) and cycle[30] == pytest.approx(1.0)
    assert cycle[-1] == pytest.approx(1e-4) and int(np.argmax(cycle)) == 30


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_a_schedule_trains_batched_as_one_by_one(schedule: str) -> None:
    genomes = heterogeneous(6)
    cfg = FitnessConfig(task=DIGITS, training=TrainingSpec(epochs=2, lr_schedule=schedule),
                        bias=True, run_seed=3)
    alone = evaluate_batch(genomes, replace(cfg, batched=False))
    together = evaluate_batch(genomes, cfg)
    constant = evaluate_batch(genomes, replace(cfg, training=TrainingSpec(epochs=2)))
    for a, b in zip(alone, together, strict=True):
        assert a.ok and b.ok
        assert abs(a.val_accuracy - b.val_accuracy) <= 0.01
        assert abs(a.test_accuracy - b.test_accuracy) <= 0.01
    assert [r.val_loss for r in together] != [r.val_loss for r in constant], "it changes rates"


def test_a_scheduled_pruning_run_resumes_identical(write_space, tmp_path: Path) -> None:
    """Killed in generation 2: the resumed run anneals each candidate's rate and prunes each
    child the same, from a first population spread over densities."""
    space = write_space({**SPACE, "training": {"lr_schedule": "onecycle",
                                               "inheritance": "lamarckian"},
                         "mutation": {"prune": 0.5},
                         "kstarts": {"k": 1, "hidden": [6], "density": [1.0, 0.3]}})
    _kill_and_resume(_reference(space, tmp_path / "ref"), tmp_path, (15,))


def _trained(genome_id: int = 0) -> Genome:
    """A 3-input, 2-output genome with hand-set trained weights (one connection untrained)."""
    g = Genome.build(genome_id, (np.arange(5), np.array([INPUT] * 3 + [OUTPUT] * 2),
                                 np.array([0.0] * 3 + [1.0] * 2), np.array(["identity"] * 5)),
                     (np.arange(6), np.array([0, 1, 2, 0, 1, 2]), np.array([3, 3, 3, 4, 4, 4]),
                      np.array([True, True, True, True, True, False])))
    return g.with_weights(np.array([0.5, -0.1, 0.3, np.nan, -0.9, 0.01]), np.zeros(5))


def test_prune_disables_the_smallest_trained_weights_and_never_an_untrained_one() -> None:
    g = _trained()
    assert prune_smallest(g, 0.5).conn_enabled.tolist() == [True, False, False, True, True,
                                                            False], "|-0.1|, |0.3| of 4 trained"
    assert prune_smallest(g, 0.3).conn_enabled.tolist() == [True, False, True, True, True,
                                                             False], "floor(0.3 x 4) = 1"
    assert prune_smallest(g, 0.2) is g, "less than one connection: nothing pruned"
    kept = prune_smallest(g, 0.99)
    assert kept.conn_enabled.tolist() == [False, False, False, True, True, False]
    assert np.array_equal(kept.conn_weight, g.conn_weight, equal_nan=True), "weights stay"
    taps = g.with_weights(np.array([[0.5, 0.5], [1.0, -1.0], [0.1, 0.2], [np.nan, np.nan],
                                    [0.0, 0.4], [1, 1]]), np.zeros(5))
    assert prune_smallest(taps, 0.5).conn_enabled.tolist() == [True, True, False, True, False,
                                                               False], "a kernel: mean |tap|"
    fresh = g.with_weights(np.full((6, 2), np.nan), np.zeros(5))  # a conv child of new kernels
    assert prune_smallest(fresh, 0.5) is fresh, "no trained kernel: nothing to prune"


def test_prune_of_a_conv_genome_ranks_kernel_taps_and_head_links_together() -> None:
    """Han et al. on a CNN: single taps go (a kernel emptied of them is disabled, its tap
    mask kept for a later re-enabling); head links compete by their mean |w|; taps that
    are off or untrained are not counted."""
    nodes = (np.arange(4), np.array([INPUT, HIDDEN, HIDDEN, OUTPUT]), np.array([0, .5, .5, 1]),
             np.array(["identity", "relu", "relu", "identity"]))
    g = Genome.build(0, nodes, (np.arange(4), np.array([0, 0, 1, 2]), np.array([1, 2, 3, 3]),
                                np.ones(4, dtype=bool)))
    n = np.nan  # kernels 0->1 and 0->2 keep taps 0 and 1; 1->3 and 2->3 are head links
    g = g.with_weights(np.array([[.5, -.1, .3], [.05, -.02, n], [.2, n, n], [.01, n, n]]),
                       np.zeros(4)).with_taps(np.array([0b011, 0b011, -1, -1]))
    half = prune_smallest(g, 0.5)  # 6 weights: |.01| (a link), |-.02|, |.05| go
    assert half.conn_enabled.tolist() == [True, False, True, False]
    assert half.conn_taps.tolist() == [0b011, 0b011, -1, -1]
    more = prune_smallest(g, 0.7)  # and |-.1|: tap 1 of the first kernel
    assert more.conn_enabled.tolist() == [True, False, True, False]
    assert more.conn_taps.tolist() == [0b001, 0b011, -1, -1]
    assert prune_smallest(g, 0.1) is g, "less than one weight: nothing pruned"
    assert np.array_equal(more.conn_weight, g.conn_weight, equal_nan=True), "weights stay"


def test_prune_and_a_spread_of_densities_are_checked_where_written(write_space) -> None:
    with pytest.raises(UserError, match=r"mutation.prune .* lamarckian"):
        load_space(write_space({"mutation": {"prune": 0.5}}))
    with pytest.raises(UserError, match=r"training.finish_prune .* lamarckian"):
        load_space(write_space({"training": {"finish_epochs": 2, "finish_prune": [0.5]}}))
    with pytest.raises(UserError, match=r"training.finish_prune .*training.finish_epochs"):
        load_space(write_space({"training": {"inheritance": "lamarckian",
                                             "finish_prune": [0.5]}}))
    with pytest.raises(UserError, match=r"training.finish_prune.*1.5"):
        load_space(write_space({"training": {"inheritance": "lamarckian", "finish_epochs": 2,
                                             "finish_prune": [0.5, 1.5]}}))
    with pytest.raises(UserError, match=r"kstarts.*density"):
        load_space(write_space({"kstarts": {"hidden": [4], "density": [0.5, 0.0]}}))
    space = load_space(write_space({"kstarts": {"hidden": [4], "density": [1.0, 0.2, 0.1]}}))
    assert space.kstarts is not None
    assert [space.kstarts.member_density(i, 6) for i in range(6)] == [1.0, 1.0, 0.2, 0.2,
                                                                       0.1, 0.1]


def test_a_pruning_search_shrinks_lineages_by_trained_magnitude(tmp_path: Path) -> None:
    """Every child of a Lamarckian search with `mutation.prune: 1` and no other variation is
    its parent less a share of the parent's smallest trained weights; the first population
    spreads over the densities given."""
    still = {k: 0.0 for k in ("crossover", "add_connection", "add_node", "remove_connection",
                              "change_activation")}
    space, seen, gens = watched_search(tmp_path, {
        "training": {"inheritance": "lamarckian"},
        "mutation": {**still, "prune": 1.0, "prune_max": 0.9},
        "kstarts": {"k": 1, "hidden": [8], "density": [1.0, 0.5]}})
    first = [g for g, _ in seen.calls[0]]
    assert [g.conn_enabled.mean() for g in first[:3]] == [1.0] * 3
    assert all(0.3 < g.conn_enabled.mean() < 0.7 for g in first[3:])
    pruned = 0
    for generation, call in enumerate(seen.calls[1:]):
        parents = {m.genome.genome_id: m.genome for m in gens.states[generation]["population"]}
        for child, _ in call:
            parent = parents[child.parents[0]]
            assert np.array_equal(child.conn_innov, parent.conn_innov)
            lost = parent.conn_enabled & ~child.conn_enabled
            assert not (child.conn_enabled & ~parent.conn_enabled).any()
            if lost.any():
                pruned += 1
                w = np.abs(parent.conn_weight)
                assert w[lost].max() <= w[child.conn_enabled].min()
    assert pruned >= len(seen.calls[1:]) * space.population // 2


@pytest.mark.parametrize("inheritance", ["lamarckian", "baldwinian"])
def test_the_finishing_generation_trains_the_front_again_with_its_weights_and_masks(
        tmp_path: Path, inheritance: str) -> None:
    """With `training.finish_epochs`, the last generation breeds no children: it trains a
    copy of each member of the front before it for that many epochs (from the member's
    trained weights when Lamarckian, else afresh), without sparse training; the copies
    join selection as children do."""
    space, seen, gens = watched_search(tmp_path, {
        "training": {"inheritance": inheritance, "finish_epochs": 3},
        "sparse_training": {"method": "set", "zeta": 0.3}})
    *_, before, after = gens.states
    front = front_of(before["population"])
    copies = seen.calls[-1]
    assert [g.parents for g, _ in copies] == [(m.genome.genome_id,) for m in front]
    for (copy, result), member in zip(copies, front, strict=True):
        parent = member.genome
        assert copy.genome_id not in {m.genome.genome_id for m in before["population"]}
        assert np.array_equal(copy.conn_innov, parent.conn_innov)
        assert np.array_equal(copy.conn_enabled, parent.conn_enabled), "masks stay"
        if inheritance == "lamarckian":
            assert np.array_equal(copy.conn_weight, parent.conn_weight, equal_nan=True)
        else:
            assert copy.conn_weight is None and parent.conn_weight is None
        assert result.flops == member.result.flops
    finishing, breeding = seen.contexts[-1], seen.contexts[-2]
    assert (finishing.training.epochs, finishing.sparse.method) == (3, "none")
    assert (breeding.training.epochs, breeding.sparse.method) == (1, "set")
    assert len(after["population"]) == space.population
    assert {m.genome.genome_id for m in after["population"]} <= (
        {m.genome.genome_id for m in before["population"]} | {g.genome_id for g, _ in copies})


@pytest.mark.parametrize("inheritance", ["lamarckian", "baldwinian"])
def test_refit_trains_the_last_front_on_training_and_validation_keeping_its_scores(
        tmp_path: Path, inheritance: str) -> None:
    """With `training.refit_epochs`, after the last generation's selection each front member
    is replaced by a copy trained that many epochs on the training and validation samples
    together (from the member's weights when Lamarckian, else afresh), masks kept: the copy
    keeps the validation accuracy and loss that selected the member (scikit-learn's refit),
    and its test accuracy is its own."""
    space, seen, gens = watched_search(tmp_path, {
        "training": {"inheritance": inheritance, "refit_epochs": 2}})
    refit, bred = seen.contexts[-1], seen.contexts[-2]
    task = bred.task
    assert (refit.training.epochs, refit.sparse.method) == (2, "none")
    assert np.array_equal(refit.task.x_train, np.concatenate([task.x_train, task.x_val]))
    assert np.array_equal(refit.task.y_train, np.concatenate([task.y_train, task.y_val]))
    assert np.array_equal(refit.task.x_test, task.x_test)
    earlier = {g.genome_id: (g, r) for call in seen.calls[:-1] for g, r in call}
    copies = {g.genome_id: (g, r) for g, r in seen.calls[-1]}
    final = gens.states[-1]["population"]
    assert len(final) == space.population
    assert {m.genome.genome_id for m in front_of(final)} == set(copies)
    for m in front_of(final):
        sent, trained = copies[m.genome.genome_id]
        parent, selected = earlier[m.genome.parents[0]]
        assert selected.generation <= space.generations == m.genome.generation
        assert (m.result.val_accuracy, m.result.val_loss) == (selected.val_accuracy,
                                                              selected.val_loss)
        assert m.result.test_accuracy == trained.test_accuracy and m.result.refit
        assert m.result.flops == selected.flops
        assert np.array_equal(m.genome.conn_enabled, parent.conn_enabled), "masks stay"
        assert (sent.conn_weight is not None) == (inheritance == "lamarckian")
    assert not any(m.result.refit for m in final if m.genome.genome_id not in copies)


def test_the_finishing_generation_also_trains_each_member_pruned_to_a_share_of_its_flops(
        tmp_path: Path) -> None:
    """With `training.finish_prune: [0.5]`, after the front's copies the finishing
    generation trains each member pruned by magnitude (its smallest trained |w| first) to at
    most half its FLOPs, from its trained weights, masks kept; a member that pruning cannot
    bring there has no such copy."""
    space, seen, gens = watched_search(tmp_path, {
        "training": {"inheritance": "lamarckian", "finish_epochs": 3, "finish_prune": [0.5]}})
    front = front_of(gens.states[-2]["population"])
    trained = seen.calls[-1]
    assert [g.parents for g, _ in trained[:len(front)]] == [(m.genome.genome_id,) for m in front]
    pruned = {g.parents[0]: (g, r) for g, r in trained[len(front):]}
    assert len(pruned) == len(trained) - len(front) > 0
    bias = space.network.bias
    for m in front:
        parent = m.genome
        if parent.genome_id not in pruned:
            least = prune_smallest(parent, 0.999999)
            assert MLP.cost(least, bias).flops > 0.5 * m.result.flops, "it could get there"
            continue
        copy, result = pruned[parent.genome_id]
        assert result.flops <= 0.5 * m.result.flops
        lost = parent.conn_enabled & ~copy.conn_enabled
        assert not (copy.conn_enabled & ~parent.conn_enabled).any() and lost.any()
        w = np.abs(parent.conn_weight)
        assert w[lost].max() <= np.nanmin(w[copy.conn_enabled])
        assert np.array_equal(copy.conn_weight, parent.conn_weight, equal_nan=True)


def test_prune_to_cost_prunes_the_least_that_meets_the_budget() -> None:
    g = _trained()
    enabled = lambda x: int(x.conn_enabled.sum())  # noqa: E731 - a cost for the test
    assert prune_to_cost(g, 5, enabled) is g, "already within: unchanged"
    three = prune_to_cost(g, 3, enabled)
    assert three is not None and three.conn_enabled.tolist() == [True, False, False, True, True,
                                                                 False], "|-0.1|, |0.3| go"
    two = prune_to_cost(g, 2, enabled)
    assert two is not None and two.conn_enabled.tolist() == [False, False, False, True, True,
                                                             False], "untrained: never pruned"
    assert prune_to_cost(g, 0, enabled) is None, "one weight always stays"


def test_the_first_population_trains_initial_epochs(tmp_path: Path) -> None:
    """With `training.initial_epochs`, generation 0 trains that many epochs (one schedule,
    sparse training as configured) and every later generation `epochs`."""
    space, seen, _ = watched_search(tmp_path, {
        "training": {"initial_epochs": 3}, "sparse_training": {"method": "set", "zeta": 0.3}})
    assert [c.training.epochs for c in seen.contexts] == [3] + [1] * space.generations
    assert {c.sparse.method for c in seen.contexts} == {"set"}
    assert [c.training.lr_schedule for c in seen.contexts] == [
        space.training.lr_schedule] * (space.generations + 1)
