"""Test doubles that watch a search from its two seams: the evaluator and the reporters."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import yaml

from evosparse.data import load_task
from evosparse.evaluators import LocalEvaluator
from evosparse.evaluators.base import BatchFailure
from evosparse.evolution import GenerationRecord, Reporter, Search, SearchState
from evosparse.fitness import EvalResult
from evosparse.genome import Genome
from evosparse.space import SearchSpace, load_space
from tests.conftest import TINY, deep_update


class Recording(LocalEvaluator):
    """In-process evaluation that keeps, per `map` call, each genome and its result."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[Genome, EvalResult]]] = []
        self.contexts: list[Any] = []
        """Each call's context (the `FitnessConfig` its batches trained under)."""

    def map(self, fn: Callable[[Any, Any], Any], batches: Sequence[Any], context: Any
            ) -> Iterator[Any]:
        call: list[tuple[Genome, EvalResult]] = []
        self.calls.append(call)
        self.contexts.append(context)
        for batch, out in zip(batches, super().map(fn, batches, context), strict=True):
            if not isinstance(out, BatchFailure):
                call.extend(zip(batch, out, strict=True))
            yield out


class Generations(Reporter):
    """What each finished generation left: its population's genomes and results, species
    and activation-function populations (copied: the state object lives on)."""

    def __init__(self) -> None:
        self.states: list[dict[str, Any]] = []
        self.checkpoint: dict[str, Any] = {}
        """The newest state as a checkpoint holds it."""

    def generation_end(self, record: GenerationRecord, state: SearchState) -> None:
        self.states.append({"population": list(state.population),
                            "species": list(state.species), "functions": state.functions})
        self.checkpoint = state.to_dict()


def watched_search(tmp_path: Any, extra: dict[str, Any]
                   ) -> tuple[SearchSpace, Recording, Generations]:
    """Run the tiny space updated with `extra` in-process; return it and what was seen."""
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(deep_update(TINY, extra)))
    space = load_space(path)
    evaluator, generations = Recording(), Generations()
    Search(space=space, task=load_task(space.dataset), evaluator=evaluator,
           reporters=[generations]).run()
    return space, evaluator, generations
