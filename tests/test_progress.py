"""The progress line's time estimate: the first and the finishing generations and the
refit count as what they train; the refit's bar says it is the refit."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from rich.console import Console

from evosparse import progress
from evosparse.evolution import GenerationRecord, SearchState
from evosparse.genome import InnovationRegistry
from evosparse.progress import ProgressDisplay
from evosparse.space import load_space


def _left_after_one_generation(finish_epochs: int, front: int,
                               monkeypatch: pytest.MonkeyPatch, generation: int = 1,
                               initial_epochs: int = 0,
                               finish_prune: tuple[float, ...] = (),
                               refit_epochs: int = 0) -> float:
    """The seconds-left estimate printed after `generation` (of 11) took 10 s."""
    space = load_space("search_spaces/mnist1d_conv.yaml")
    space = space.model_copy(update={"generations": 11, "population": 20, "training": (
        space.training.model_copy(update={"epochs": 5, "finish_epochs": finish_epochs,
                                          "initial_epochs": initial_epochs,
                                          "finish_prune": finish_prune,
                                          "refit_epochs": refit_epochs}))})
    clock = iter([100.0, 110.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    display = ProgressDisplay(Console(file=out, width=200), space)
    display.generation_start(generation, 20)
    record = GenerationRecord(generation=generation, evaluations=20, hypervolume=0.5,
                              front=[None] * front, best_val_accuracy=0.9, failed=0)
    state = SearchState(generation=1, population=[], registry=InnovationRegistry(1, 10),
                        rng=np.random.default_rng(0), next_genome_id=0, evaluations=20)
    display.generation_end(record, state)
    display.close()
    return float(re.search(r"~(\d+)s left", out.getvalue()).group(1))


def test_the_estimate_weighs_the_first_and_finishing_generations_and_refit_by_their_work(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 10 generations to come at 10 s each; without finishing, 100 s
    assert _left_after_one_generation(0, 8, monkeypatch) == 100
    # the last of them trains 8 members 30 epochs: 8 x 30 / (20 x 5) = 2.4 generations
    assert _left_after_one_generation(30, 8, monkeypatch) == 9 * 10 + 24
    assert _left_after_one_generation(30, 16, monkeypatch) == 9 * 10 + 48
    # each finish_prune share adds a pruned copy of every member: twice the finishing
    assert _left_after_one_generation(30, 8, monkeypatch, finish_prune=(0.7,)) == 9 * 10 + 48
    # the first population trained 50 epochs: 10 s is 10 plain generations' time
    assert _left_after_one_generation(0, 8, monkeypatch, 0, 50) == 11 * 1
    assert _left_after_one_generation(30, 8, monkeypatch, 0, 50) == round(10 * 1 + 2.4)
    # a refit of the last front, 30 epochs, after 10 plain generations or the finishing one
    assert _left_after_one_generation(0, 8, monkeypatch, refit_epochs=30) == 10 * 10 + 24
    assert _left_after_one_generation(30, 8, monkeypatch, refit_epochs=30) == 9 * 10 + 48


def test_the_refit_bar_is_labelled_as_the_refit() -> None:
    space = load_space("search_spaces/mnist1d_conv.yaml").model_copy(update={"generations": 3})
    display = ProgressDisplay(Console(file=io.StringIO(), width=200), space)
    labels = []
    for generation in (2, 3, 3):  # generation 3 (resumed at 2), then its front's refit
        display.generation_start(generation, 10)
        labels.append(display.progress.tasks[-1].description)
    display.close()
    assert labels == ["generation 2/3", "generation 3/3", "refit of the front 3/3"]
