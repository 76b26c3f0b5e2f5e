"""Evaluators map a picklable function over batches; they know nothing of genomes."""

from evosparse.evaluators.base import BaseEvaluator
from evosparse.evaluators.local import LocalEvaluator

__all__ = ["BaseEvaluator", "LocalEvaluator"]
