"""In-process evaluation: the default on one machine."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from evosparse.evaluators.base import BaseEvaluator, BatchFailure, call_recording_errors

B = TypeVar("B")
C = TypeVar("C")
R = TypeVar("R")


class LocalEvaluator(BaseEvaluator):
    """Evaluates batches one after another in this process (no time limit: a Python
    call cannot be stopped from inside its own process)."""

    def map(
        self, fn: Callable[[B, C], R], batches: Sequence[B], context: C
    ) -> Iterator[R | BatchFailure]:
        for batch in batches:
            yield call_recording_errors(fn, batch, context)
