"""NEAT speciation: the compatibility distance, species assignment, threshold, stagnation."""

from __future__ import annotations

import numpy as np

from evosparse.genome import HIDDEN, Genome, InnovationRegistry
from evosparse.operators import minimal_genome
from evosparse.operators.mutation import add_nodes
from evosparse.operators.speciation import (
    Speciation,
    compatibility,
    protected_survivors,
    speciate,
    stagnant,
)
from evosparse.space import ActivationSpec, NetworkSpec, SpeciationSpec
from tests.recording import watched_search

SPEC = SpeciationSpec(excess=1.0, disjoint=2.0, weight=0.5, activation=3.0)


def _genome(gid: int, innovations: list[int], enabled: list[bool] | None = None) -> Genome:
    """Two inputs, one output; connection `i` joins input i % 2 to the output."""
    n = len(innovations)
    return Genome.build(
        gid,
        (np.array([0, 1, 2]), np.array([0, 0, 2]), np.array([0.0, 0.0, 1.0]),
         np.array(["identity"] * 3)),
        (np.array(innovations), np.array([i % 2 for i in innovations]), np.full(n, 2),
         np.array(enabled if enabled is not None else [True] * n)),
    )


def test_distance_counts_excess_disjoint_masks_and_weights() -> None:
    a, b = _genome(0, [0, 1, 2, 5]), _genome(1, [0, 2, 3])
    # excess: 5 (beyond b's last id 3); disjoint: 1 and 3; N = 4
    assert compatibility(a, b, SPEC) == 1.0 * 1 / 4 + 2.0 * 2 / 4
    assert compatibility(a, a, SPEC) == 0.0
    c = _genome(2, [0, 1, 2, 5], [True, False, True, True])
    assert compatibility(a, c, SPEC) == 0.5 * 1 / 4, "one matching gene differs in its mask"
    wa = a.with_weights(np.array([1.0, 2.0, 3.0, 4.0]), np.full(3, np.nan))
    wb = a.with_weights(np.array([1.5, 2.0, 2.0, np.nan]), np.full(3, np.nan))
    assert np.isclose(compatibility(wa, wb, SPEC), 0.5 * (0.5 + 0.0 + 1.0) / 3)
    assert compatibility(a, b, SPEC) == compatibility(b, a, SPEC)


def test_distance_counts_activation_differences_of_shared_nodes() -> None:
    rng = np.random.default_rng(0)
    reg = InnovationRegistry(4, 2)
    g = minimal_genome(0, reg, 1.0, rng)
    g = add_nodes(g, rng, reg, NetworkSpec(), ActivationSpec(hidden=("relu",)), 2)
    hidden = np.flatnonzero(g.node_kind == HIDDEN)
    act = g.node_act.copy()
    act[hidden[0]] = "tanh"
    h = Genome.build(1, (g.node_id, g.node_kind, g.node_pos, act), g.conns)
    assert compatibility(g, h, SPEC) == 3.0 * 1 / len(hidden)


def test_species_are_assigned_and_the_threshold_moves_to_the_target() -> None:
    close = [_genome(i, [0, 1]) for i in range(3)]
    far = [_genome(3 + i, [0, 1, 2, 3, 4, 5, 6, 7]) for i in range(2)]
    spec = SpeciationSpec(target_species=1, threshold=0.5, threshold_step=0.125)
    species, state = speciate(close + far, [0.5] * 5, Speciation(), spec, 0)
    assert species[:3] == [0, 0, 0] and species[3:] == [1, 1]  # distance 6 / 8 apart
    assert state.threshold == 0.625, "two species, one wanted: the threshold rises"
    assert [s.representative.genome_id for s in state.species] == [0, 3]
    # next generation: each species' representative is its closest new genome
    species, state = speciate(far + close, [0.6] * 5, state, spec, 1)
    assert species == [1, 1, 0, 0, 0]
    assert {s.species_id: s.representative.genome_id for s in state.species} == {0: 0, 1: 3}
    spec2 = SpeciationSpec(target_species=4, threshold=1.0, threshold_step=0.25)
    _, state2 = speciate(close, [0.5] * 3, Speciation(), spec2, 0)
    assert state2.threshold == 0.75, "one species, four wanted: the threshold falls"


def test_stagnant_species_are_found_and_elites_protected() -> None:
    spec = SpeciationSpec(threshold=0.5, max_stagnation=2)
    genomes = [_genome(0, [0, 1]), _genome(1, [0, 1, 2, 3, 4, 5, 6, 7])]
    _, state = speciate(genomes, [0.5, 0.4], Speciation(), spec, 0)
    _, state = speciate(genomes, [0.7, 0.4], state, spec, 1)  # species 0 improves, 1 does not
    assert stagnant(state, spec, 2) == {1}
    # pool ranked best first: 3, 0, 2, 1; species of each entry
    order, species = [3, 0, 2, 1], [0, 1, 0, 2]
    assert protected_survivors(order, species, retired=set(), elitism=1) == [3, 0, 1]
    assert protected_survivors(order, species, retired={1}, elitism=1) == [3, 0]
    assert protected_survivors(order, species, retired=set(), elitism=2) == [3, 0, 2, 1]


def test_speciation_state_round_trips() -> None:
    genomes = [_genome(0, [0, 1]), _genome(1, [0, 1, 2, 3, 4, 5, 6, 7])]
    _, state = speciate(genomes, [0.5, 0.4], Speciation(), SpeciationSpec(threshold=0.5), 0)
    assert len(state.species) == 2
    again = Speciation.from_dict(state.to_dict())
    assert again.to_dict() == state.to_dict()


def test_a_search_mates_within_species(tmp_path) -> None:
    """Inside a search every crossover child's two parents belong to one species of the
    population that bred it. Mutant that fails this: `Search._mate` drawing the partner
    by a tournament over the whole population (species ignored)."""
    space, evaluator, generations = watched_search(tmp_path, {
        "generations": 3, "population": 8, "mutation": {"crossover": 1.0, "add_node": 0.9},
        "speciation": {"target_species": 3, "threshold": 2.0}})
    crossed = 0  # crossovers bred by a population of several species
    for state, call in zip(generations.states, evaluator.calls[1:], strict=False):
        assert len(state["species"]) == space.population
        species = {m.genome.genome_id: s
                   for m, s in zip(state["population"], state["species"], strict=True)}
        for child, _ in call:
            if len(child.parents) == 2:
                a, b = child.parents
                assert species[a] == species[b]
                crossed += len(set(species.values())) > 1
    assert crossed, "a population of several species bred crossover children"
