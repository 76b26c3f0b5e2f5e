"""In-process evaluation: the default on one machine."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from evosparse.evaluators.base import BaseEvaluator

B = TypeVar("B")
R = TypeVar("R")


class LocalEvaluator(BaseEvaluator):
    """Evaluates batches one after another in this process."""

    def map(self, fn: Callable[[B], R], batches: Sequence[B]) -> Iterator[R]:
        for batch in batches:
            yield fn(batch)
