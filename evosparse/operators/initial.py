"""Minimal starting networks: inputs wired sparsely and directly to outputs (no hidden node)."""

from __future__ import annotations

import numpy as np

from evosparse.activations import OUTPUT_ACTIVATION
from evosparse.genome import INPUT, OUTPUT, Genome, InnovationRegistry


def minimal_genome(
    genome_id: int, registry: InnovationRegistry, density: float, rng: np.random.Generator
) -> Genome:
    """A genome whose input->output connections are each present with probability `density`.

    Every output gets at least one input, so every starting network can learn something.
    """
    n_in, n_out = registry.n_inputs, registry.n_outputs
    wired = rng.random((n_in, n_out)) < density
    for o in np.flatnonzero(~wired.any(axis=0)):
        wired[rng.integers(n_in), o] = True
    src_idx, dst_idx = np.nonzero(wired)
    src = registry.input_ids[src_idx]
    dst = registry.output_ids[dst_idx]
    innov = np.array([registry.connection(s, d) for s, d in zip(src, dst, strict=True)])
    ids = np.concatenate([registry.input_ids, registry.output_ids])
    kind = np.repeat(np.array([INPUT, OUTPUT], dtype=np.int8), [n_in, n_out])
    pos = np.repeat([0.0, 1.0], [n_in, n_out])
    act = np.full(n_in + n_out, OUTPUT_ACTIVATION)
    return Genome.build(
        genome_id, (ids, kind, pos, act), (innov, src, dst, np.ones(len(innov), dtype=bool))
    )
