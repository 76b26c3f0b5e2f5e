"""Genetic operators: pure functions that take a numpy Generator and return new genomes."""

from evosparse.operators.crossover import crossover
from evosparse.operators.initial import dense_mlp_genome, minimal_genome
from evosparse.operators.mutation import (
    add_connections,
    add_nodes,
    change_activation,
    mutate,
    remove_connections,
)

__all__ = [
    "add_connections",
    "add_nodes",
    "change_activation",
    "crossover",
    "dense_mlp_genome",
    "minimal_genome",
    "mutate",
    "remove_connections",
]
