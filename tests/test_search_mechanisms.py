"""Issue 18's mechanism: learning-rate schedules inside each candidate's budget; batched
training still follows one-by-one training and a killed run still resumes exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from evosparse.fitness import FitnessConfig, evaluate_batch
from evosparse.schedules import lr_factor
from evosparse.space import TrainingSpec
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


def test_a_scheduled_run_resumes_identical(write_space, tmp_path: Path) -> None:
    """Killed in generation 2: the resumed run anneals each candidate's rate the same."""
    space = write_space({**SPACE, "training": {"lr_schedule": "onecycle",
                                               "inheritance": "lamarckian"}})
    _kill_and_resume(_reference(space, tmp_path / "ref"), tmp_path, (15,))
