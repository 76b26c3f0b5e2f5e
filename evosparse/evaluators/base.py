"""The evaluator contract: apply one function to each batch, yield results in order.

An evaluator knows nothing of genomes. It calls `fn(batch, context)` for every
batch, where `context` is the same object for all batches of a run (the fitness
configuration with the dataset), so a distributed evaluator can ship it once.
A batch whose function raised or ran past the time limit yields a
`BatchFailure` instead of a result; a batch that could not be run at all (its
workers kept dying) raises `BatchLost`.
"""

from __future__ import annotations

import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

B = TypeVar("B")
C = TypeVar("C")
R = TypeVar("R")


@dataclass(frozen=True)
class BatchFailure:
    """The batch's function raised (`reason` holds the traceback) or timed out."""

    reason: str


class BatchLost(Exception):  # noqa: N818 - a condition, named for what happened
    """Batches that could not be evaluated even after retries (workers or nodes kept dying)."""

    def __init__(self, indices: list[int], reason: str) -> None:
        super().__init__(f"batches {indices}: {reason}")
        self.indices = indices
        self.reason = reason


class BaseEvaluator(ABC):
    """Runs `fn(batch, context)` for every batch and yields the outcomes in the batches' order.

    Outcomes are yielded as soon as each is ready (in order), so the caller can
    record and display progress while later batches still run.
    """

    @abstractmethod
    def map(
        self, fn: Callable[[B, C], R], batches: Sequence[B], context: C
    ) -> Iterator[R | BatchFailure]:
        """Yield `fn(b, context)` (or a `BatchFailure`) for each `b` in `batches`, in order."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release workers; the default evaluator holds none."""

    def __enter__(self) -> BaseEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def call_recording_errors(fn: Callable[[B, C], R], batch: B, context: C) -> R | BatchFailure:
    """`fn(batch, context)`, or a `BatchFailure` holding the traceback of what it raised."""
    try:
        return fn(batch, context)
    except Exception:  # noqa: BLE001 - recorded on the batch's genomes, the run goes on
        return BatchFailure(traceback.format_exc())
