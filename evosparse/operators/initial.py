"""Minimal starting networks: inputs wired sparsely and directly to outputs (no hidden node)."""

from __future__ import annotations

import numpy as np

from evosparse.activations import OUTPUT_ACTIVATION
from evosparse.genome import ACT_DTYPE, HIDDEN, INPUT, OUTPUT, Genome, InnovationRegistry


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


def dense_mlp_genome(
    genome_id: int,
    registry: InnovationRegistry,
    widths: list[int] | tuple[int, ...],
    activation: str,
    levels: int | None = None,
) -> Genome:
    """A fully connected MLP (hidden layer `widths`) as a genome: the dense baseline.

    Hidden layer k sits at position k / (levels + 1) (`levels` defaults to the number
    of layers), the k-th layer of a layered space with max_levels = levels, so the
    genome is valid there as in a DAG space.
    """
    layers = [registry.input_ids]
    layers += [np.array([registry.new_node() for _ in range(w)], dtype=np.int64) for w in widths]
    layers.append(registry.output_ids)
    step = 1.0 / ((levels or len(widths)) + 1)
    pos = [np.full(len(ids), k * step) for k, ids in enumerate(layers)]
    pos[-1][:] = 1.0
    kinds = [np.full(len(ids), HIDDEN, dtype=np.int8) for ids in layers]
    kinds[0][:], kinds[-1][:] = INPUT, OUTPUT
    acts = [np.full(len(ids), activation, dtype=ACT_DTYPE) for ids in layers]
    acts[0][:], acts[-1][:] = OUTPUT_ACTIVATION, OUTPUT_ACTIVATION
    src = np.concatenate([np.repeat(a, len(b)) for a, b in zip(layers, layers[1:], strict=False)])
    dst = np.concatenate([np.tile(b, len(a)) for a, b in zip(layers, layers[1:], strict=False)])
    innov = np.array([registry.connection(s, d) for s, d in zip(src, dst, strict=True)])
    return Genome.build(
        genome_id,
        (np.concatenate(layers), np.concatenate(kinds), np.concatenate(pos), np.concatenate(acts)),
        (innov, src, dst, np.ones(len(innov), dtype=bool)),
    )
