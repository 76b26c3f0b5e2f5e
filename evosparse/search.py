"""The generation loop: NSGA-II (mu + lambda) over genomes, with events and no file I/O.

Generation 0 evaluates `population` minimal genomes. Every later generation
breeds as many children (binary tournaments on rank and crowding, NEAT
crossover, mutation), evaluates them, and keeps the best `population` of
parents and children by NSGA-II. The evaluation is the loop's one seam (an
evaluator maps `fitness.evaluate_batch` over batches); run directories, progress
displays and loggers are `Reporter`s that receive events, as in neat-python.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from evosparse.data import Task
from evosparse.errors import EvaluationError
from evosparse.evaluators.base import BaseEvaluator, BatchFailure, BatchLost
from evosparse.fitness import (
    EvalResult,
    FitnessConfig,
    evaluate_batch,
    failed_results,
    plan_batches,
)
from evosparse.genome import Genome, InnovationRegistry
from evosparse.inheritance import inherit, written_back
from evosparse.operators import crossover, dense_mlp_genome, kstarts, minimal_genome, mutate
from evosparse.pareto import (
    Objectives,
    first_front,
    hypervolume,
    nsga2_select,
    rank_and_crowding,
    tournament,
)
from evosparse.space import KStartsSpec, SearchSpace


@dataclass(frozen=True)
class Member:
    """A genome and the result of its evaluation."""

    genome: Genome
    result: EvalResult

    @property
    def objectives(self) -> Objectives | None:
        """(validation error, FLOPs) to minimise, or None for a failed evaluation."""
        r = self.result
        return (1.0 - r.val_accuracy, float(r.flops)) if r.ok else None


@dataclass
class SearchState:
    """Everything needed to continue a search exactly: the checkpoint's content."""

    generation: int  # last completed generation, -1 before the first
    population: list[Member]
    registry: InnovationRegistry
    rng: np.random.Generator
    next_genome_id: int
    evaluations: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "evaluations": self.evaluations,
            "next_genome_id": self.next_genome_id,
            "rng": self.rng.bit_generator.state,
            "registry": self.registry.to_dict(),
            "population": [
                {"genome": m.genome.to_dict(), "result": m.result.to_dict()}
                for m in self.population
            ],
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SearchState:
        rng = np.random.default_rng()
        rng.bit_generator.state = d["rng"]
        return SearchState(
            generation=d["generation"],
            population=[
                Member(Genome.from_dict(m["genome"]), EvalResult.from_dict(m["result"]))
                for m in d["population"]
            ],
            registry=InnovationRegistry.from_dict(d["registry"]),
            rng=rng,
            next_genome_id=d["next_genome_id"],
            evaluations=d["evaluations"],
        )


@dataclass(frozen=True)
class GenerationRecord:
    """Summary of a finished generation, sent to reporters."""

    generation: int
    evaluations: int
    hypervolume: float
    front: list[Member]
    best_val_accuracy: float
    failed: int


class Reporter:
    """Receives the search's events; override what you need (neat-python's reporters)."""

    def generation_start(self, generation: int, n_evaluations: int) -> None:
        """A generation begins; `n_evaluations` genomes will be evaluated."""

    def evaluated(self, results: list[EvalResult]) -> None:
        """A batch of evaluations finished (in order)."""

    def generation_end(self, record: GenerationRecord, state: SearchState) -> None:
        """A generation is complete and `state` is what a checkpoint must hold."""


def front_of(population: list[Member]) -> list[Member]:
    """The non-dominated members, sorted by error then FLOPs."""
    return [population[i] for i in first_front([m.objectives for m in population])]


class Search:
    """An evolutionary search of sparse networks; `step()` runs one generation."""

    def __init__(
        self,
        *,
        space: SearchSpace,
        task: Task,
        evaluator: BaseEvaluator,
        reporters: list[Reporter] | None = None,
        state: SearchState | None = None,
    ) -> None:
        self.space = space
        self.evaluator = evaluator
        self.reporters = list(reporters or [])
        self.config = FitnessConfig(
            task=task,
            training=space.training,
            sparse=space.sparse_training,
            bias=space.network.bias,
            run_seed=space.seed,
            threads=space.evaluation.threads,
            device=space.evaluation.device,
            batched=space.evaluation.batched,
        )
        self.state = state or SearchState(
            generation=-1,
            population=[],
            registry=InnovationRegistry(task.n_features, task.n_classes),
            rng=np.random.default_rng(space.seed),
            next_genome_id=0,
            evaluations=0,
        )
        self.stop_requested = False
        self.lamarckian = space.training.inheritance == "lamarckian"

    def _new_id(self) -> int:
        self.state.next_genome_id += 1
        return self.state.next_genome_id - 1

    def _initial(self) -> list[Genome]:
        s, ks = self.state, self.space.kstarts
        if ks is None:
            return [minimal_genome(self._new_id(), s.registry, self.space.network.initial_density,
                                   s.rng) for _ in range(self.space.population)]
        return self._kstarts(ks)

    def _kstarts(self, ks: KStartsSpec) -> list[Genome]:
        """One winner of `ks.k` masks of the starting topology per member (`kstarts.py`).

        The K x population short trainings run as batches like any generation's; they
        are not part of the history or of the evaluation count.
        """
        s = self.state
        topology = dense_mlp_genome(-1, s.registry, ks.hidden, self.space.activations.initial,
                                    self.space.network.max_levels)
        return self._choose(ks, [[kstarts.masked(topology, self._new_id(), ks.density, s.rng)
                                  for _ in range(ks.k)] for _ in range(self.space.population)], 0)

    def _choose(self, ks: KStartsSpec, candidates: list[list[Genome]], generation: int
                ) -> list[Genome]:
        """The best of each list of candidates after `ks.epochs` of training (all in batches;
        not part of the history or of the evaluation count)."""
        short = replace(self.config, track_gradients=True,
                        training=self.space.training.model_copy(update={"epochs": ks.epochs}))
        choices = [c for c in candidates if len(c) > 1]
        results = iter(self._evaluate([g for c in choices for g in c], generation, short,
                                      report=False))
        return [kstarts.winner(c, [next(results) for _ in c], ks.criterion) if len(c) > 1
                else c[0] for c in candidates]

    def _children(self, generation: int) -> list[Genome]:
        s, sp = self.state, self.space
        pop = s.population
        rank, crowd = rank_and_crowding([m.objectives for m in pop])
        children: list[Genome] = []
        lineage: list[list[Genome]] = []
        for _ in range(sp.population):
            a = tournament(rank, crowd, s.rng)
            b = tournament(rank, crowd, s.rng)
            if a != b and s.rng.random() < sp.mutation.crossover:
                child = crossover(pop[a].genome, pop[b].genome, self._new_id(), generation, s.rng)
                parents = [pop[a].genome, pop[b].genome]
            else:
                child = pop[a].genome.derive(self._new_id(), (pop[a].genome.genome_id,), generation)
                parents = [pop[a].genome]
            child = mutate(child, s.rng, s.registry, sp.network, sp.activations, sp.mutation)
            children.append(inherit(child, parents) if self.lamarckian else child)
            lineage.append(parents)
        ks = sp.kstarts
        if ks is None or not ks.children:
            return children
        # K-starts for children: K masks over each child's new connections (if it has any)
        return self._choose(ks, [
            [kstarts.masked_new(c, p, self._new_id(), ks.density, s.rng) for _ in range(ks.k)]
            if kstarts.new_genes(c, p).any() else [c]
            for c, p in zip(children, lineage, strict=True)], generation)

    def _evaluate(
        self, genomes: list[Genome], generation: int, config: FitnessConfig | None = None,
        report: bool = True,
    ) -> list[EvalResult]:
        """One result per genome, in order; a failed batch's genomes are recorded as failed."""
        ev, cfg = self.space.evaluation, config or self.config
        batches = plan_batches(genomes, cfg, ev.batch_size, ev.memory_cap_mb)
        results: list[EvalResult] = []
        outcomes = self.evaluator.map(evaluate_batch, batches, cfg)
        try:
            for batch, outcome in zip(batches, outcomes, strict=True):
                batch_results = (failed_results(batch, cfg, outcome.reason)
                                 if isinstance(outcome, BatchFailure) else outcome)
                results.extend(batch_results)
                for r in self.reporters if report else []:
                    r.evaluated(batch_results)
        except BatchLost as exc:
            ids = [g.genome_id for i in exc.indices for g in batches[i]]
            raise EvaluationError(
                f"generation {generation}: genomes {ids} could not be evaluated ({exc.reason})"
            ) from None
        return results

    def done(self) -> bool:
        """True when the generation budget is spent or the stop accuracy is reached."""
        s = self.state
        if s.generation >= self.space.generations:
            return True
        target = self.space.stop.val_accuracy
        return target is not None and any(
            m.result.ok and m.result.val_accuracy >= target for m in s.population
        )

    def step(self) -> GenerationRecord:
        """Breed, evaluate and select one generation; then notify reporters."""
        s = self.state
        generation = s.generation + 1
        genomes = self._initial() if generation == 0 else self._children(generation)
        for r in self.reporters:
            r.generation_start(generation, len(genomes))
        results = self._evaluate(genomes, generation)
        genomes = [g.with_disabled(r.disabled) for g, r in zip(genomes, results, strict=True)]
        if self.lamarckian:
            genomes = [written_back(g, r.model) if r.ok and r.model else g
                       for g, r in zip(genomes, results, strict=True)]
        pool = s.population + [Member(g, r) for g, r in zip(genomes, results, strict=True)]
        keep = nsga2_select([m.objectives for m in pool], self.space.population)
        s.population = [pool[i] for i in keep]
        s.generation = generation
        s.evaluations += len(results)
        objs = [m.objectives for m in s.population]
        record = GenerationRecord(
            generation=generation,
            evaluations=s.evaluations,
            hypervolume=hypervolume(objs, self.space.objectives.reference),
            front=front_of(s.population),
            best_val_accuracy=max((m.result.val_accuracy for m in s.population), default=0.0),
            failed=sum(not r.ok for r in results),
        )
        for r in self.reporters:
            r.generation_end(record, s)
        return record

    def run(self) -> SearchState:
        """Run generations until done, or until `stop_requested` is set between two."""
        while not self.done() and not self.stop_requested:
            self.step()
        return self.state
