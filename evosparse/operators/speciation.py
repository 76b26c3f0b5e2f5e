"""NEAT speciation (Stanley & Miikkulainen, 2002), and how it meets NSGA-II.

Genomes are grouped by a compatibility distance

    delta = excess * E / N + disjoint * D / N + weight * W + activation * A

with E and D the excess and disjoint genes (by innovation id), N the larger
genome's gene count, W the mean |weight difference| of matching genes (their
Lamarckian weights; without weights, the share of matching genes enabled in only
one of the two) and A the share of shared hidden nodes whose activations differ.
As in neat-python, each species keeps a representative: every generation its new
representative is the closest genome to the old one, then each other genome joins
the closest species within the threshold or founds a new one. The threshold moves
each generation toward `target_species`.

With NSGA-II (`evolution.py`): the Pareto front still drives selection; species only
protect new structure and steer mating. Survivors are chosen by NSGA-II from the
pool of parents and children after (1) the best `elitism` members of every live
species are kept first, so a new topology that is not yet competitive survives
until it is trained up, and (2) the members of a stagnant species (no better
validation accuracy for `max_stagnation` generations) leave the pool unless they
are on its first front. Crossover pairs a parent with a member of its own species.
Pure functions, no randomness.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from evosparse.genome import HIDDEN, Genome
from evosparse.space import SpeciationSpec


def compatibility(a: Genome, b: Genome, spec: SpeciationSpec) -> float:
    """NEAT's compatibility distance between two genomes (see the module docstring)."""
    n = max(len(a.conn_innov), len(b.conn_innov), 1)
    shared, ia, ib = np.intersect1d(a.conn_innov, b.conn_innov, return_indices=True)
    lone = np.setxor1d(a.conn_innov, b.conn_innov)
    edge = min(a.conn_innov.max(initial=-1), b.conn_innov.max(initial=-1))
    excess = int(np.count_nonzero(lone > edge))
    disjoint = len(lone) - excess
    if len(shared) == 0:
        w = 0.0
    elif a.conn_weight is not None and b.conn_weight is not None:
        diff = np.abs(a.conn_weight[ia] - b.conn_weight[ib])
        w = float(np.nanmean(diff)) if np.isfinite(diff).any() else 0.0
    else:
        w = float(np.mean(a.conn_enabled[ia] != b.conn_enabled[ib]))
    nodes, na, nb = np.intersect1d(a.node_id[a.node_kind == HIDDEN],
                                   b.node_id[b.node_kind == HIDDEN], return_indices=True)
    act = 0.0
    if len(nodes):
        ha, hb = a.node_act[a.node_kind == HIDDEN], b.node_act[b.node_kind == HIDDEN]
        act = float(np.mean(ha[na] != hb[nb]))
    return (spec.excess * excess / n + spec.disjoint * disjoint / n + spec.weight * w
            + spec.activation * act)


@dataclass(frozen=True)
class Species:
    """One species: its representative and its record for stagnation."""

    species_id: int
    representative: Genome
    created: int  # generation
    best: float  # best validation accuracy any member reached
    improved: int  # generation `best` last rose

    def to_dict(self) -> dict[str, Any]:
        return {"species_id": self.species_id, "representative": self.representative.to_dict(),
                "created": self.created, "best": self.best, "improved": self.improved}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Species:
        return Species(d["species_id"], Genome.from_dict(d["representative"]), d["created"],
                       d["best"], d["improved"])


@dataclass(frozen=True)
class Speciation:
    """The species of a search, its threshold and next species id: checkpoint content."""

    species: tuple[Species, ...] = ()
    threshold: float = 0.0
    next_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "next_id": self.next_id,
                "species": [s.to_dict() for s in self.species]}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Speciation:
        return Speciation(tuple(Species.from_dict(s) for s in d["species"]), d["threshold"],
                          d["next_id"])


def speciate(genomes: list[Genome], accuracy: list[float], state: Speciation,
             spec: SpeciationSpec, generation: int) -> tuple[list[int], Speciation]:
    """Assign each genome a species id; return the assignment and the new state.

    `accuracy` (validation, per genome; 0 for a failed one) updates each species'
    stagnation record. Species left without members are dropped.
    """
    threshold = state.threshold or spec.threshold
    assigned = [-1] * len(genomes)
    reps: dict[int, Genome] = {}
    for sp in state.species:  # the closest unassigned genome becomes the new representative
        free = [i for i, s in enumerate(assigned) if s < 0]
        if not free:
            break
        dist = [compatibility(sp.representative, genomes[i], spec) for i in free]
        best = int(np.argmin(dist))
        if dist[best] < threshold:
            assigned[free[best]] = sp.species_id
            reps[sp.species_id] = genomes[free[best]]
    old = {sp.species_id: sp for sp in state.species if sp.species_id in reps}
    next_id = state.next_id
    for i, g in enumerate(genomes):
        if assigned[i] >= 0:
            continue
        dist = {sid: compatibility(rep, g, spec) for sid, rep in reps.items()}
        close = min(dist, key=lambda sid: (dist[sid], sid)) if dist else None
        if close is not None and dist[close] < threshold:
            assigned[i] = close
        else:
            assigned[i], reps[next_id] = next_id, g
            old[next_id] = Species(next_id, g, generation, 0.0, generation)
            next_id += 1
    species = []
    for sid in sorted(reps):
        best = max(acc for acc, s in zip(accuracy, assigned, strict=True) if s == sid)
        sp = old[sid]
        species.append(replace(sp, representative=reps[sid], best=max(best, sp.best),
                               improved=generation if best > sp.best else sp.improved))
    if len(species) < spec.target_species:
        threshold = max(threshold - spec.threshold_step, spec.threshold_step)
    elif len(species) > spec.target_species:
        threshold += spec.threshold_step
    return assigned, Speciation(tuple(species), threshold, next_id)


def stagnant(state: Speciation, spec: SpeciationSpec, generation: int) -> set[int]:
    """Ids of the species whose best accuracy has not risen for `max_stagnation` generations."""
    return {sp.species_id for sp in state.species
            if generation - sp.improved >= spec.max_stagnation}


def protected_survivors(order: list[int], species: list[int], retired: set[int],
                        elitism: int) -> list[int]:
    """The pool entries each live species keeps first: its best `elitism` members, taken
    in `order` (the pool ranked best first by NSGA-II)."""
    kept: dict[int, int] = {}
    out = []
    for i in order:
        sid = species[i]
        if sid not in retired and kept.get(sid, 0) < elitism:
            kept[sid] = kept.get(sid, 0) + 1
            out.append(i)
    return out
