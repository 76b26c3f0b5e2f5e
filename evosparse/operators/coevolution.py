"""Cooperative co-evolution of activation functions with the networks (Lapid & Sipper, 2022).

Populations of activation functions (library names or evolved expressions,
`expressions.py`) evolve beside the network population: three of them, for the
input-side, middle and output-side hidden nodes (a node's side is the third of
[0, 1] its position falls in), or one shared by all. A network takes its hidden
nodes' functions from the populations at the space's granularity:

- `node`: every node has its own function from its side's population;
- `level`: every depth level shares one function;
- `population`: every side of a network shares one function.

A child keeps its parent's functions; each unit (node, level or side) draws a new
partner from its population with probability `reassign`, and a unit the parents
did not have always draws one (a binary tournament on the functions' fitness).
After a generation is evaluated, each function is credited from the networks that
used it on its side (`credit`: the best or the mean of their validation
accuracies); then each population keeps its better half and refills itself with
mutated copies of tournament winners, which start from their parent's fitness.
Pure functions: every random choice takes the Generator passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from evosparse.expressions import mutate_expression, random_expression
from evosparse.genome import HIDDEN, Genome
from evosparse.graph import analyse
from evosparse.space import ActivationSpec, CoevolutionSpec

SIDES = ("input", "middle", "output")


def sides(genome: Genome) -> np.ndarray:
    """Per node, 0 / 1 / 2 for the input-side, middle or output-side third of [0, 1]."""
    third = np.floor(genome.node_pos * 3 + 1e-9).astype(int)
    return np.clip(third, 0, 2)


@dataclass(frozen=True)
class FunctionPopulation:
    """One population of activation functions and their credited fitness."""

    name: str
    members: tuple[str, ...]
    fitness: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "members": list(self.members), "fitness": list(self.fitness)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> FunctionPopulation:
        return FunctionPopulation(d["name"], tuple(d["members"]), tuple(d["fitness"]))

    def pick(self, rng: np.random.Generator) -> str:
        """A binary tournament on fitness (ties: the earlier member)."""
        a, b = rng.integers(len(self.members), size=2)
        return self.members[min(a, b) if self.fitness[a] == self.fitness[b]
                            else (a if self.fitness[a] > self.fitness[b] else b)]


def initial(spec: CoevolutionSpec, acts: ActivationSpec, rng: np.random.Generator
            ) -> tuple[FunctionPopulation, ...]:
    """The starting populations: the space's library functions, then random expressions."""
    names = SIDES if spec.populations == 3 else ("shared",)
    out = []
    for name in names:
        members = list(dict.fromkeys(acts.hidden))[: spec.size]
        while len(members) < spec.size:
            text = random_expression(rng, acts.primitives, acts.expression_depth)
            if text not in members:
                members.append(text)
        out.append(FunctionPopulation(name, tuple(members), (0.0,) * spec.size))
    return tuple(out)


def _population_of(side: np.ndarray, pops: tuple[FunctionPopulation, ...]) -> np.ndarray:
    return side if len(pops) == 3 else np.zeros_like(side)


def assign(child: Genome, parents: list[Genome], pops: tuple[FunctionPopulation, ...],
           spec: CoevolutionSpec, rng: np.random.Generator) -> Genome:
    """`child` with its hidden nodes' functions drawn from the populations (module doc)."""
    hidden = np.flatnonzero(child.node_kind == HIDDEN)
    if hidden.size == 0:
        return child
    pop = _population_of(sides(child), pops)
    known = np.isin(child.node_id, np.concatenate([p.node_id for p in parents])
                    if parents else np.zeros(0, np.int64))
    if spec.granularity == "node":
        units = {int(r): [int(r)] for r in hidden}
    else:
        key = analyse(child).depth if spec.granularity == "level" else pop
        units = {}
        for r in hidden:
            units.setdefault(int(key[r]) * 3 + int(pop[r]), []).append(int(r))
    act = child.node_act.copy()
    for rows in units.values():
        kept = [r for r in rows if known[r]]
        if kept and rng.random() >= spec.reassign:
            values, counts = np.unique(act[kept], return_counts=True)
            act[rows] = values[np.argmax(counts)]  # the parent's function for the unit
        else:
            act[rows] = pops[int(pop[rows[0]])].pick(rng)
    return Genome.build(child.genome_id, (child.node_id, child.node_kind, child.node_pos, act),
                        child.conns, child.parents, child.generation,
                        None if child.conn_weight is None or child.node_bias is None
                        else (child.conn_weight, child.node_bias))


def credit(pops: tuple[FunctionPopulation, ...], genomes: list[Genome], accuracy: list[float],
           spec: CoevolutionSpec) -> tuple[FunctionPopulation, ...]:
    """Each function's fitness from the networks that used it on its side this generation
    (a function no network used keeps its fitness)."""
    used: list[dict[str, list[float]]] = [{} for _ in pops]
    for g, acc in zip(genomes, accuracy, strict=True):
        live = analyse(g).node_active & (g.node_kind == HIDDEN)
        pop = _population_of(sides(g), pops)
        for p, a in {(int(p), str(a)) for p, a in zip(pop[live], g.node_act[live],
                                                       strict=True)}:
            used[p].setdefault(a, []).append(acc)
    rule: Callable[[list[float]], float] = max if spec.credit == "best" else np.mean  # type: ignore[assignment]
    return tuple(FunctionPopulation(p.name, p.members, tuple(
        float(rule(used[i][m])) if m in used[i] else f for m, f in zip(p.members, p.fitness,
                                                                     strict=True)))
        for i, p in enumerate(pops))


def evolve(pops: tuple[FunctionPopulation, ...], spec: CoevolutionSpec, acts: ActivationSpec,
           rng: np.random.Generator) -> tuple[FunctionPopulation, ...]:
    """Each population keeps its better half (by fitness, stable) and refills with mutated
    copies of tournament winners, new to the population."""
    out = []
    for p in pops:
        order = sorted(range(len(p.members)), key=lambda i: -p.fitness[i])
        keep = order[: max(1, len(order) - len(order) // 2)]
        members = [p.members[i] for i in keep]
        fitness = [p.fitness[i] for i in keep]
        survivors = FunctionPopulation(p.name, tuple(members), tuple(fitness))
        for _ in range(100 * len(p.members)):  # bounded: a tiny grammar may run out of news
            if len(members) == len(p.members):
                break
            parent = survivors.pick(rng)
            text = mutate_expression(parent, rng, acts.primitives, acts.expression_depth)
            if text not in members:
                members.append(text)
                fitness.append(survivors.fitness[survivors.members.index(parent)])
        out.append(FunctionPopulation(p.name, tuple(members), tuple(fitness)))
    return tuple(out)
