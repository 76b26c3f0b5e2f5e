"""Issue 18's mechanisms: learning-rate schedules inside a budget, and a first population
spread over the FLOPs range. Each keeps batched == one by one and exact resume."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from evosparse.fitness import FitnessConfig, evaluate_batch
from evosparse.flops import count_cost
from evosparse.genome import HIDDEN, InnovationRegistry
from evosparse.operators import mutate, spread_genomes
from evosparse.schedules import lr_factor
from evosparse.space import ActivationSpec, MutationSpec, NetworkSpec, TrainingSpec
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


def test_spread_genomes_span_widths_share_ids_and_mutate_in_a_layered_space() -> None:
    reg = InnovationRegistry(40, 10)
    net = NetworkSpec(topology="layered", max_hidden=64, max_levels=2, initial_density=0.3)
    rng = np.random.default_rng(0)
    genomes = spread_genomes(list(range(8)), reg, net, "relu", rng)
    widths = [g.n_hidden for g in genomes]
    assert widths == sorted(widths) and widths[-1] == 64 and widths[0] <= 4
    assert count_cost(genomes[-1], True).flops > 20 * count_cost(genomes[0], True).flops
    small, big = genomes[0], genomes[-1]
    assert np.isin(small.conn_innov, big.conn_innov).all(), "one registered topology"
    levels = {p for g in genomes for p in g.node_pos[g.node_kind == HIDDEN]}
    assert levels == {1 / 3, 2 / 3}, "hidden nodes sit on the layered grid"
    acts = ActivationSpec()
    for g in genomes:
        child = mutate(g, rng, reg, net, acts, MutationSpec(add_node=1.0, add_connection=1.0))
        assert child.n_hidden <= net.max_hidden


def test_a_run_with_both_mechanisms_resumes_identical(write_space, tmp_path: Path) -> None:
    """Killed in generation 2: the spread first population and the cosine rates replay."""
    space = write_space({**SPACE, "network": {"initial_spread": 0.5},
                         "training": {"lr_schedule": "cosine", "inheritance": "lamarckian"}})
    _kill_and_resume(_reference(space, tmp_path / "ref"), tmp_path, (15,))
