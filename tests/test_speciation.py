"""NEAT speciation: the compatibility distance, species assignment, threshold, stagnation."""

from __future__ import annotations

from dataclasses import replace

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
    assert compatibility(g, g, SPEC) == 0.0, "same activations: no activation term"


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


def test_distance_of_small_and_empty_genomes_and_of_weights_left_nan() -> None:
    empty, one, other = _genome(0, []), _genome(1, [0]), _genome(2, [1])
    assert compatibility(empty, empty, SPEC) == 0.0
    assert compatibility(empty, _genome(3, [0, 1]), SPEC) == 1.0 * 2 / 2, "all excess"
    assert compatibility(_genome(3, [0, 1]), empty, SPEC) == 1.0 * 2 / 2
    # ids 0 and 1, no shared gene: 1 is excess (beyond 0), 0 is disjoint; N = 1
    assert compatibility(one, other, SPEC) == 1.0 + 2.0
    assert compatibility(one, _genome(4, [0], [False]), SPEC) == 0.5, "the one shared gene"
    a = _genome(5, [0, 1])
    weighted = a.with_weights(np.array([1.0, 2.0]), np.full(3, np.nan))
    assert compatibility(weighted, a, SPEC) == 0.0, "weights on one side only: masks compared"
    fresh = a.with_weights(np.full(2, np.nan), np.full(3, np.nan))  # added genes: NaN
    assert compatibility(weighted, fresh, SPEC) == 0.0


EXACT = SpeciationSpec(excess=1.0, disjoint=1.0, weight=0.0, activation=0.0, threshold=0.5,
                       target_species=2, threshold_step=0.125)


def test_a_genome_exactly_at_the_threshold_is_not_in_the_species() -> None:
    a, b = _genome(0, [0, 1]), _genome(1, [0, 1, 2, 3])  # 2 excess of 4: distance 0.5
    assert compatibility(a, b, EXACT) == EXACT.threshold
    species, state = speciate([a, b], [0.5, 0.5], Speciation(), EXACT, 0)
    assert species == [0, 1] and state.threshold == 0.5, "two species, as wanted: it stays"
    # next generation: species 0's representative is no closer than the threshold to b
    species, state = speciate([_genome(2, [0, 1, 2, 3])], [0.5], state, EXACT, 1)
    assert species == [1] and [s.species_id for s in state.species] == [1]


def test_new_species_get_new_ids_and_their_record_starts_now() -> None:
    genomes = [_genome(0, [0]), _genome(1, list(range(8))), _genome(2, list(range(30)))]
    species, state = speciate(genomes, [0.0, 0.2, 0.0], Speciation(next_id=4), EXACT, 6)
    assert species == [4, 5, 6] and state.next_id == 7
    assert [(s.created, s.improved, s.best) for s in state.species] == [
        (6, 6, 0.0), (6, 6, 0.2), (6, 6, 0.0)]
    assert state.threshold == 0.625


def test_representatives_move_to_their_closest_genome_never_taken_twice() -> None:
    old = [_genome(0, [0, 1]), _genome(1, [0, 1, 2])]
    spec = SpeciationSpec(excess=1.0, disjoint=1.0, weight=0.0, activation=0.0, threshold=5.0,
                          target_species=2)
    _, state = speciate(old, [0.5, 0.5], Speciation(threshold=5.0), spec, 0)
    assert len(state.species) == 1, "within the threshold: one species"
    state = Speciation((state.species[0], replace(state.species[0], species_id=1,
                                                  representative=old[1])), 5.0, 2)
    new = [_genome(10, [0, 1]), _genome(11, list(range(8)))]
    species, state = speciate(new, [0.5, 0.5], state, spec, 1)
    # species 0 takes genome 10 (distance 0); species 1 the closest genome still free: 11
    assert species == [0, 1]
    assert [s.representative.genome_id for s in state.species] == [10, 11]
    # more species than genomes: the ones left without a member are dropped
    species, state = speciate([_genome(12, [0, 1])], [0.5], state, spec, 2)
    assert species == [0] and [s.species_id for s in state.species] == [0]


def test_elitism_keeps_at_most_that_many_of_each_species() -> None:
    assert protected_survivors([4, 3, 2, 1, 0], [0, 0, 1, 0, 0], set(), 2) == [4, 3, 2]
