"""Reading a run directory: its front, members, weights, history and classes.

`Run` (what `evosparse.open_run` returns) is the one reader of `runs/<name>/` that the
`status`, `export` and `report` commands and the Python API share. It reads the newest
valid checkpoint's population (genomes and results) without rebuilding the search's state
(innovation registry, species, random generator): only a resumed search needs those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evosparse.errors import UserError
from evosparse.evolution import Member, front_of
from evosparse.fitness import EvalResult
from evosparse.genome import Genome
from evosparse.pareto import hypervolume
from evosparse.rundir import RunDir, member_summary
from evosparse.space import SearchSpace
from evosparse.tables import Label

if TYPE_CHECKING:
    from evosparse.data import Task


@dataclass(frozen=True)
class Candidate:
    """A population member's scores (validation decides, test is only recorded) and genome."""

    genome_id: int
    generation: int
    val_accuracy: float
    test_accuracy: float
    flops: int
    params: int
    connections: int
    hidden_nodes: int
    activations: list[str]
    refit: bool
    """Trained on the training and validation samples after the search
    (`training.refit_epochs`); `val_accuracy` is the score that selected it before."""
    member: Member = field(repr=False, compare=False)
    """The genome and its full evaluation record."""

    @staticmethod
    def of(member: Member) -> Candidate:
        return Candidate(**member_summary(member), member=member)

    @property
    def genome(self) -> Genome:
        return self.member.genome

    def summary(self) -> dict[str, Any]:
        """The JSON description `front.json` and `status --json` use."""
        return member_summary(self.member)


def select(front: list[Member], how: str) -> list[Member]:
    """Front members chosen by `how`: front | best-accuracy | max-flops=X | min-accuracy=Y.

    Accuracies here are validation accuracies (choosing by test accuracy would leak
    the test split into the choice); Y is a fraction in [0, 1].
    """
    key, _, value = how.partition("=")
    if key in ("front", "best-accuracy") and not value:
        if key == "front":
            return list(front)
        return [max(front, key=lambda m: (m.result.val_accuracy, -m.result.flops))]
    if key in ("max-flops", "min-accuracy") and value:
        try:
            limit = float(value)
        except ValueError:
            raise UserError(f"--select {how}: {value!r} is not a number") from None
        if key == "min-accuracy":
            if not 0.0 <= limit <= 1.0:
                raise UserError(f"--select {how}: accuracy must be a fraction in [0, 1]")
            chosen = [m for m in front if m.result.val_accuracy >= limit]
        else:
            chosen = [m for m in front if m.result.flops <= limit]
        if not chosen:
            held = "; ".join(f"genome {m.result.genome_id}: val {m.result.val_accuracy:.4f}, "
                             f"{m.result.flops} FLOPs" for m in front)
            raise UserError(f"--select {how} matches no front member; the front holds: {held}")
        return chosen
    raise UserError(f"--select {how!r}: expected front, best-accuracy, max-flops=X "
                    "or min-accuracy=Y")


def choose(front: list[Candidate], how: str) -> list[Candidate]:
    """`select` over candidates."""
    chosen = {id(m) for m in select([c.member for c in front], how)}
    return [c for c in front if id(c.member) in chosen]


class Run:
    """A run directory as it stands: read once when opened, files untouched."""

    def __init__(self, path: str | Path) -> None:
        self.dir = RunDir(path)
        self.space: SearchSpace = self.dir.load_space()
        body = self.dir.latest_checkpoint()
        if body is None:
            raise UserError(f"{self.dir.path} has no finished generation yet")
        state = body["state"]
        self.generation: int = state["generation"]
        self.evaluations: int = state["evaluations"]
        self.population: list[Candidate] = [
            Candidate.of(Member(Genome.from_dict(m["genome"]), EvalResult.from_dict(m["result"])))
            for m in state["population"]]
        by_member = {id(c.member): c for c in self.population}
        self.front: list[Candidate] = [by_member[id(m)]
                                       for m in front_of([c.member for c in self.population])]
        """The Pareto front of the newest checkpoint's population, best accuracy first."""
        self.hypervolume: float = hypervolume([c.member.objectives for c in self.population],
                                              self.space.objectives.reference)

    @property
    def path(self) -> Path:
        return self.dir.path

    def __repr__(self) -> str:
        best = max((c.val_accuracy for c in self.front), default=float("nan"))
        return (f"Run({str(self.path)!r}: generation {self.generation}/{self.space.generations}, "
                f"{self.evaluations} evaluations, front of {len(self.front)}, "
                f"best val accuracy {best:.4f}, hypervolume {self.hypervolume:.4f})")

    @cached_property
    def classes(self) -> list[Label]:
        """The class labels in logit order, as the run's data holds them."""
        stored = self.dir.read_classes()
        return stored if stored is not None else self.task.labels

    @cached_property
    def task(self) -> Task:
        """The run's data, split and standardised as the search saw it (loaded on first use)."""
        from evosparse.data import load_task

        return load_task(self.space.dataset)

    def history(self) -> list[dict[str, Any]]:
        """Every evaluation the run made, one dict each (history.jsonl)."""
        return self.dir.read_history()

    def generations(self) -> list[dict[str, Any]]:
        """One record per finished generation: hypervolume and front (generations.jsonl)."""
        return [g for g in self.dir.read_generations() if g["generation"] <= self.generation]

    def status(self) -> dict[str, Any]:
        """What `evosparse status --json` prints."""
        return {
            "run": str(self.path),
            "generation": self.generation,
            "generations": self.space.generations,
            "evaluations": self.evaluations,
            "hypervolume": self.hypervolume,
            "classes": self.classes,
            "front": [c.summary() for c in self.front],
        }

    def best(self, select: str = "best-accuracy") -> Candidate:
        """One front member: the most accurate among those `select` chooses (front,
        best-accuracy, max-flops=X), or with min-accuracy=Y the cheapest that reaches Y."""
        chosen = choose(self.front, select)
        if select.startswith("min-accuracy"):
            return min(chosen, key=lambda c: (c.flops, -c.val_accuracy))
        return max(chosen, key=lambda c: (c.val_accuracy, -c.flops))
