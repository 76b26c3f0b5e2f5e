"""The evaluator contract: apply one function to each batch, yield results in order."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

B = TypeVar("B")
R = TypeVar("R")


class BaseEvaluator(ABC):
    """Runs `fn(batch)` for every batch and yields the results in the batches' order.

    Results are yielded as soon as each is ready (in order), so the caller can
    record and display progress while later batches still run.
    """

    @abstractmethod
    def map(self, fn: Callable[[B], R], batches: Sequence[B]) -> Iterator[R]:
        """Yield `fn(b)` for each `b` in `batches`, in order."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release workers; the default evaluator holds none."""

    def __enter__(self) -> BaseEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
