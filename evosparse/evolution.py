"""The generation loop: NSGA-II (mu + lambda) over genomes, with events and no file I/O.

Generation 0 evaluates `population` minimal genomes. Every later generation
breeds as many children (binary tournaments on rank and crowding, NEAT
crossover, mutation), evaluates them, and keeps the best `population` of
parents and children by NSGA-II (with a `speciation:` section, species protect
their elites and pick crossover partners: `operators/speciation.py`). Genes that
training removed or grew are settled into each genome here, in evaluation order,
so grown connections get registry ids wherever they were trained. The
evaluation is the loop's one seam (an evaluator maps `fitness.evaluate_batch`
over batches); run directories, progress displays and loggers are `Reporter`s
that receive events, as in neat-python.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
from evosparse.operators import (
    coevolution,
    crossover,
    dense_mlp_genome,
    kstarts,
    minimal_genome,
    mutate,
)
from evosparse.operators.coevolution import FunctionPopulation
from evosparse.operators.prune import prune_smallest, prune_to_cost
from evosparse.operators.speciation import (
    Speciation,
    protected_survivors,
    speciate,
    stagnant,
)
from evosparse.pareto import (
    Objectives,
    first_front,
    hypervolume,
    nsga2_select,
    rank_and_crowding,
    tournament,
)
from evosparse.space import KStartsSpec, SearchSpace, SparseTrainingSpec
from evosparse.weights import restamped


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

    def to_dict(self) -> dict[str, Any]:
        """The member as a checkpoint holds it."""
        return {"genome": self.genome.to_dict(), "result": self.result.to_dict()}


@dataclass
class SearchState:
    """Everything needed to continue a search exactly: the checkpoint's content."""

    generation: int  # last completed generation, -1 before the first
    population: list[Member]
    registry: InnovationRegistry
    rng: np.random.Generator
    next_genome_id: int
    evaluations: int
    speciation: Speciation | None = None
    species: list[int] = field(default_factory=list)
    """With speciation: the species id of each population member, in order."""
    functions: tuple[FunctionPopulation, ...] = ()
    """With co-evolution: the populations of activation functions."""

    def to_dict(self, members: bool = True) -> dict[str, Any]:
        """The checkpoint's state; `members=False` leaves the population out (the checkpoint
        encoder encodes members apart, once each)."""
        return {
            **({} if self.speciation is None else {"speciation": self.speciation.to_dict(),
                                                   "species": self.species}),
            **({"functions": [p.to_dict() for p in self.functions]} if self.functions else {}),
            "generation": self.generation,
            "evaluations": self.evaluations,
            "next_genome_id": self.next_genome_id,
            "rng": self.rng.bit_generator.state,
            "registry": self.registry.to_dict(),
            **({"population": [m.to_dict() for m in self.population]} if members else {}),
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
            speciation=Speciation.from_dict(d["speciation"]) if "speciation" in d else None,
            species=list(d.get("species", [])),
            functions=tuple(FunctionPopulation.from_dict(p) for p in d.get("functions", [])),
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

    def flush(self) -> None:
        """The search stopped (done, asked to stop, or failed): finish pending work."""


def common_failure(results: list[EvalResult]) -> str | None:
    """The one reason every result failed for (its error's last line, where a traceback
    names the exception), or None when any result is ok or diverged, or two reasons differ:
    a generation that fails as a whole stops the search instead of spending its budget."""
    if not results or any(r.status != "failed" for r in results):
        return None
    reasons = {((r.error or "").strip().splitlines() or ["no error text"])[-1] for r in results}
    return reasons.pop() if len(reasons) == 1 else None


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
        self.config = FitnessConfig.of_search(space, task)
        self.state = state or SearchState(
            generation=-1,
            population=[],
            registry=InnovationRegistry(self.config.family.n_inputs(task.n_features),
                                         task.n_classes),
            rng=np.random.default_rng(space.seed),
            next_genome_id=0,
            evaluations=0,
        )
        if space.speciation is not None and self.state.speciation is None:
            self.state.speciation = Speciation()
        if space.coevolution is not None and not self.state.functions:
            self.state.functions = coevolution.initial(space.coevolution, space.activations,
                                                       self.state.rng)
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
        if ks.kernel:
            topology = self.config.family.layer_kernels(topology, ks.kernel)
        size = self.space.population
        return self._choose(ks, [[kstarts.masked(topology, self._new_id(),
                                                 ks.member_density(i, size), s.rng,
                                                 ks.member_width(i, size))
                                  for _ in range(ks.k)] for i in range(size)], 0)

    def _choose(self, ks: KStartsSpec, candidates: list[list[Genome]], generation: int
                ) -> list[Genome]:
        """The best of each list of candidates after `ks.epochs` of training (all in batches;
        not part of the history or of the evaluation count)."""
        short = replace(self._for(ks.epochs), track_gradients=True)
        choices = [c for c in candidates if len(c) > 1]
        if not choices:
            return [c[0] for c in candidates]
        _, done = self._evaluate([g for c in choices for g in c], generation, short,
                                 report=False)
        results = iter(done)
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
            b = (tournament(rank, crowd, s.rng) if sp.speciation is None
                 else self._mate(a, rank, crowd))
            if a != b and s.rng.random() < sp.mutation.crossover:
                child = crossover(pop[a].genome, pop[b].genome, self._new_id(), generation, s.rng)
                parents = [pop[a].genome, pop[b].genome]
            else:
                child = pop[a].genome.derive(self._new_id(), (pop[a].genome.genome_id,), generation)
                parents = [pop[a].genome]
            child = mutate(child, s.rng, s.registry, sp.network, sp.activations, sp.mutation)
            if sp.coevolution is not None:
                child = coevolution.assign(child, parents, s.functions, sp.coevolution, s.rng)
            child = self.config.family.vary(child, parents, s.rng, sp.mutation)
            if self.lamarckian:
                child = inherit(child, parents)
                if sp.mutation.prune > 0 and s.rng.random() < sp.mutation.prune:
                    child = prune_smallest(child, s.rng.uniform(0.0, sp.mutation.prune_max))
            children.append(child)
            lineage.append(parents)
        ks = sp.kstarts
        if ks is None or not ks.children:
            return children
        # K-starts for children: K masks over each child's new connections (if it has any)
        return self._choose(ks, [
            [kstarts.masked_new(c, p, self._new_id(), ks.densities[0], s.rng)
             for _ in range(ks.k)]
            if kstarts.new_genes(c, p).any() else [c]
            for c, p in zip(children, lineage, strict=True)], generation)

    def _finishing(self, generation: int) -> bool:
        """Whether `generation` is the finishing one: the last, with `training.finish_epochs`."""
        return (generation > 0 and generation == self.space.generations
                and self.space.training.finish_epochs > 0)

    def _finished(self, generation: int) -> list[Genome]:
        """What the finishing generation trains: a copy of each front member under a new
        id, its child, with its trained weights where inheritance is Lamarckian; then for
        each `training.finish_prune` share, each member pruned by magnitude to that share
        of its FLOPs (members that pruning cannot bring there have no such copy)."""
        front = front_of(self.state.population)
        copies = [m.genome.derive(self._new_id(), (m.genome.genome_id,), generation)
                  for m in front]
        if not self.lamarckian:
            return copies
        copies = [inherit(c, [m.genome]) for c, m in zip(copies, front, strict=True)]
        family, bias = self.config.family, self.space.network.bias
        for share in self.space.training.finish_prune:
            for m in front:
                pruned = prune_to_cost(m.genome, share * m.result.flops,
                                       lambda g: family.cost(g, bias).flops)
                if pruned is not None:
                    child = pruned.derive(self._new_id(), (m.genome.genome_id,), generation)
                    copies.append(inherit(child, [pruned]))
        return copies

    def _bred(self, generation: int, finish: bool) -> tuple[list[Genome], FitnessConfig | None]:
        """What `generation` trains and how (None: as the space says): the first population
        for `initial_epochs` (if set), the finishing generation's copies of the front for
        `finish_epochs` with masks kept (no sparse training), else children."""
        training = self.space.training
        if generation == 0:
            return self._initial(), (self._for(training.initial_epochs)
                                     if training.initial_epochs else None)
        if finish:
            return (self._finished(generation),
                    replace(self._for(training.finish_epochs), sparse=SparseTrainingSpec()))
        return self._children(generation), None

    def _refit(self, population: list[Member], generation: int) -> list[Member]:
        """`population` with each front member replaced by its refit (`training.refit_epochs`):
        a copy under a new id, trained on the training and validation splits together with
        masks kept, scored with the member's validation accuracy and loss (which selected
        it; the refit network has seen those samples). A member whose refit fails stays."""
        members = front_of(population)
        copies = [m.genome.derive(self._new_id(), (m.genome.genome_id,), generation)
                  for m in members]
        if self.lamarckian:
            copies = [inherit(c, [m.genome]) for c, m in zip(copies, members, strict=True)]
        config = replace(self._for(self.space.training.refit_epochs),
                         task=self.config.task.with_val_in_train(), sparse=SparseTrainingSpec())
        for r in self.reporters:
            r.generation_start(generation, len(copies))
        genomes, results = self._evaluate(copies, generation, config, report=False)
        member_of = {m.genome.genome_id: m for m in members}
        refit: dict[int, Member] = {}
        scored = []
        for genome, result in zip(genomes, results, strict=True):
            member = member_of[genome.parents[0]]
            if result.ok:
                result = replace(result, val_accuracy=member.result.val_accuracy,
                                 val_loss=member.result.val_loss, refit=True)
                if self.lamarckian and result.values is not None:
                    genome = written_back(genome, result.values)
                refit[member.genome.genome_id] = Member(genome, result)
            scored.append(result)
        for r in self.reporters:
            r.evaluated(scored)
        self.state.evaluations += len(scored)
        return [refit.get(m.genome.genome_id, m) for m in population]

    def _for(self, epochs: int) -> FitnessConfig:
        """The space's training config for `epochs` epochs, one schedule over them."""
        return replace(self.config,
                       training=self.space.training.model_copy(update={"epochs": epochs}))

    def _mate(self, a: int, rank: np.ndarray, crowd: np.ndarray) -> int:
        """A crossover partner for member `a` from its own species (binary tournament);
        `a` itself when it is alone in its species."""
        s = self.state
        mates = np.flatnonzero(np.array(s.species) == s.species[a])
        if len(mates) < 2:
            return a
        return int(mates[tournament(rank[mates], crowd[mates], s.rng)])

    def _survivors(self, pool: list[Member], generation: int) -> list[int]:
        """Indices of the pool's members that form the next population (NSGA-II; with
        speciation, after each live species' elites and without stagnant species)."""
        objs = [m.objectives for m in pool]
        size, spec, s = self.space.population, self.space.speciation, self.state
        if spec is None or s.speciation is None:
            return nsga2_select(objs, size)
        species, s.speciation = speciate(
            [m.genome for m in pool], [m.result.val_accuracy if m.result.ok else 0.0
                                       for m in pool], s.speciation, spec, generation)
        retired = stagnant(s.speciation, spec, generation)
        rank, crowd = rank_and_crowding(objs)  # rank 0: the pool's first front
        eligible = [i for i in range(len(pool)) if species[i] not in retired or rank[i] == 0]
        if len(eligible) < size:
            eligible = list(range(len(pool)))
        order = sorted(eligible, key=lambda i: (rank[i], -crowd[i], i))
        elites = protected_survivors(order, species, retired, spec.elitism)[:size]
        kept = set(elites)
        rest = [i for i in eligible if i not in kept]
        keep = elites + [rest[i] for i in nsga2_select([objs[i] for i in rest],
                                                       size - len(elites))]
        s.species = [species[i] for i in keep]
        return keep

    def _settled(self, genome: Genome, result: EvalResult) -> tuple[Genome, EvalResult]:
        """The genome as its training left it (pruned genes disabled, pruned kernel taps
        off, grown connections added with registry ids, in evaluation order), and its
        result with the weight file bound to that genome."""
        genome = genome.with_disabled(result.disabled).with_kept_taps(result.taps)
        if not result.added:
            return genome, result
        reg = self.state.registry
        genome = genome.with_added(list(result.added),
                                   [reg.connection(a, b) for a, b in result.added])
        return genome, replace(result, model=result.model and restamped(result.model, genome))

    def _evaluate(
        self, genomes: list[Genome], generation: int, config: FitnessConfig | None = None,
        report: bool = True,
    ) -> tuple[list[Genome], list[EvalResult]]:
        """Each genome as training left it (`_settled`) and its result, in order; a failed
        batch's genomes are recorded as failed."""
        ev, cfg = self.space.evaluation, config or self.config
        batches = plan_batches(genomes, cfg, ev.batch_size, ev.memory_cap_mb)
        settled: list[Genome] = []
        results: list[EvalResult] = []
        outcomes = self.evaluator.map(evaluate_batch, batches, cfg)
        try:
            for batch, outcome in zip(batches, outcomes, strict=True):
                batch_results = (failed_results(batch, cfg, outcome.reason)
                                 if isinstance(outcome, BatchFailure) else outcome)
                pairs = [self._settled(g, r) for g, r in zip(batch, batch_results, strict=True)]
                settled.extend(g for g, _ in pairs)
                batch_results = [r for _, r in pairs]
                results.extend(batch_results)
                for r in self.reporters if report else []:
                    r.evaluated(batch_results)
        except BatchLost as exc:
            ids = [g.genome_id for i in exc.indices for g in batches[i]]
            raise EvaluationError(
                f"generation {generation}: genomes {ids} could not be evaluated ({exc.reason})"
            ) from None
        return settled, results

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
        finish = self._finishing(generation)
        genomes, config = self._bred(generation, finish)
        for r in self.reporters:
            r.generation_start(generation, len(genomes))
        genomes, results = self._evaluate(genomes, generation, config)
        reason = common_failure(results)
        if reason is not None:
            raise EvaluationError(f"generation {generation}: every evaluation failed with "
                                  f"{reason}")
        if self.lamarckian:
            genomes = [written_back(g, r.values) if r.ok and r.values is not None else g
                       for g, r in zip(genomes, results, strict=True)]
        pool = s.population + [Member(g, r) for g, r in zip(genomes, results, strict=True)]
        keep = self._survivors(pool, generation)
        if self.space.coevolution is not None and not finish:
            co = self.space.coevolution
            s.functions = coevolution.evolve(coevolution.credit(
                s.functions, genomes, [r.val_accuracy if r.ok else 0.0 for r in results], co),
                co, self.space.activations, s.rng)
        s.population = [pool[i] for i in keep]
        if generation == self.space.generations and self.space.training.refit_epochs:
            s.population = self._refit(s.population, generation)
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
        """Run generations until done, or until `stop_requested` is set between two; the
        reporters have finished their work (the run directory is written) when it returns."""
        try:
            while not self.done() and not self.stop_requested:
                self.step()
        finally:
            for r in self.reporters:
                r.flush()
        return self.state
