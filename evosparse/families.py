"""Network families: the one seam between a genome's meaning and everything else.

A family says what a genome's nodes and connections are, how many input nodes a task
gives it, what a genome costs (`Cost`) and how it compiles to a torch module for
training. Search, operators, evaluators, run directory, tuning and resume never ask
which family they hold: they pass `FitnessConfig.family` through. `mlp` (a node is a
neuron) and `conv1d` / `conv2d` (a node is a channel, `conv_geometry.py`) both train
many genomes as one batched program (`batched.py`, `conv_batched.py`).
A new family is a class with these members and a case in `family_of`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from evosparse.conv_geometry import (
    ConvGeometry,
    conv_cost,
    mutate_dilation,
    mutate_taps,
    with_layer_kernels,
    with_parent_taps,
)
from evosparse.errors import UserError
from evosparse.flops import Cost, count_cost
from evosparse.genome import Genome

if TYPE_CHECKING:
    import torch

    from evosparse.space import MutationSpec, NetworkSpec

DEFAULT_SHAPES = {("mnist1d", "conv1d"): (1, 40), ("digits", "conv2d"): (1, 8, 8)}
"""The embedded datasets' sample shapes, for conv families without `network.input_shape`."""


class Family(Protocol):
    name: str
    batched: bool
    """Whether `batch` can train many of its genomes as one program."""

    def n_inputs(self, n_features: int) -> int:
        """Input nodes of a genome for data with `n_features` values a sample."""

    @property
    def node_values(self) -> int:
        """Values one node holds per sample at most (memory estimates: `fitness._bytes`)."""

    @property
    def connection_weights(self) -> int:
        """Weights one connection holds."""

    def cost(self, genome: Genome, bias: bool) -> Cost:
        """Non-zero FLOPs, parameters and connections of one sample's forward pass."""

    def compile(self, genome: Genome, bias: bool, generator: torch.Generator) -> torch.nn.Module:
        """The genome's torch module (flat inputs [N, n_features], logits out), its
        weights drawn from `generator`."""

    def batch(self, genomes: list[Genome], bias: bool, generators: list[torch.Generator],
              growable: bool) -> torch.nn.Module:
        """Many genomes as one trainable program, each from its own generator, with the
        interface of `batched.BatchedNetworks` (`growable`: room for in-training growth)."""

    def shift_maps(self, shift: int) -> np.ndarray:
        """int64 [offsets, n_features]: how a flat sample's features move for each random
        translation `training.shift` may draw (`ConvGeometry.shift_maps`)."""

    def vary(self, child: Genome, parents: list[Genome], rng: np.random.Generator,
             rates: MutationSpec) -> Genome:
        """The family's own variation of a child after the shared operators (`mutate`,
        crossover, co-evolution) made it from `parents`."""

    def layer_kernels(self, genome: Genome, sizes: tuple[int, ...]) -> Genome:
        """`genome` with its k-th hidden layer's connections cut to kernels of `sizes[k]`
        taps a side (`kstarts.kernel`)."""

    def to_dict(self) -> dict[str, Any]:
        """What an export's genome.json records, so `evosparse.load` rebuilds the network
        (`family_from_dict`)."""


@dataclass(frozen=True)
class MLPFamily:
    """Sparse MLPs: a node is a neuron, a connection one weight (`network.py`)."""

    name: str = "mlp"
    batched: bool = True

    def n_inputs(self, n_features: int) -> int:
        return n_features

    @property
    def node_values(self) -> int:
        return 1

    @property
    def connection_weights(self) -> int:
        return 1

    def cost(self, genome: Genome, bias: bool) -> Cost:
        return count_cost(genome, bias)

    def compile(self, genome: Genome, bias: bool, generator: torch.Generator) -> torch.nn.Module:
        from evosparse.network import SparseNetwork

        return SparseNetwork(genome, bias, generator)

    def batch(self, genomes: list[Genome], bias: bool, generators: list[torch.Generator],
              growable: bool) -> torch.nn.Module:
        from evosparse.batched import BatchedNetworks

        return BatchedNetworks(genomes, bias, generators, growable=growable)

    def shift_maps(self, shift: int) -> np.ndarray:
        raise ValueError("an MLP's inputs have no positions to shift (training.shift)")

    def vary(self, child: Genome, parents: list[Genome], rng: np.random.Generator,
             rates: MutationSpec) -> Genome:
        return child

    def layer_kernels(self, genome: Genome, sizes: tuple[int, ...]) -> Genome:
        raise ValueError("an MLP's connections are single weights, not kernels (kstarts.kernel)")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name}


MLP = MLPFamily()
"""The default family, shared (families are immutable)."""


@dataclass(frozen=True)
class ConvFamily:
    """Sparse CNNs: a node is a channel, a connection a kernel (`conv_geometry.py`)."""

    geometry: ConvGeometry
    batched: bool = True
    dilations: tuple[int, ...] = (1,)
    """The dilations mutation may give a kernel (`network.dilations`); a genome's own are
    in the genome, so a family rebuilt from `to_dict` without them still compiles it."""

    @property
    def name(self) -> str:
        return f"conv{self.geometry.dims}d"

    def n_inputs(self, n_features: int) -> int:
        return self.geometry.shape[0]

    @property
    def node_values(self) -> int:
        return self.geometry.positions(0)  # a channel at full resolution: the most it holds

    @property
    def connection_weights(self) -> int:
        return self.geometry.taps

    def cost(self, genome: Genome, bias: bool) -> Cost:
        return conv_cost(genome, bias, self.geometry)

    def compile(self, genome: Genome, bias: bool, generator: torch.Generator) -> torch.nn.Module:
        from evosparse.conv_network import ConvNetwork

        return ConvNetwork(genome, bias, generator, self.geometry)

    def batch(self, genomes: list[Genome], bias: bool, generators: list[torch.Generator],
              growable: bool) -> torch.nn.Module:
        from evosparse.conv_batched import ConvPrograms

        return ConvPrograms(genomes, bias, generators, self.geometry)

    def shift_maps(self, shift: int) -> np.ndarray:
        return self.geometry.shift_maps(shift)

    def vary(self, child: Genome, parents: list[Genome], rng: np.random.Generator,
             rates: MutationSpec) -> Genome:
        """The parents' kernel taps back on the genes they share, then (with probability
        `mutation.taps`) up to `mutation.taps_max` taps flipped and (with probability
        `mutation.dilation`) up to `mutation.dilation_max` kernels given another dilation."""
        child = with_parent_taps(child, parents)
        if rates.taps > 0 and rng.random() < rates.taps:
            child = mutate_taps(child, self.geometry, rng, int(rng.integers(1, rates.taps_max + 1)))
        if rates.dilation > 0 and rng.random() < rates.dilation:
            child = mutate_dilation(child, self.dilations, rng,
                                    int(rng.integers(1, rates.dilation_max + 1)))
        return child

    def layer_kernels(self, genome: Genome, sizes: tuple[int, ...]) -> Genome:
        return with_layer_kernels(genome, self.geometry, sizes)

    def to_dict(self) -> dict[str, Any]:
        g = self.geometry
        return {"name": self.name, "input_shape": list(g.shape), "kernel": g.kernel,
                "scales": g.scales, "head": g.head}


def family_from_dict(d: dict[str, Any]) -> Family:
    """The family a `to_dict` describes (`ValueError` when it names none)."""
    if d["name"] == "mlp":
        return MLP
    if d["name"] not in ("conv1d", "conv2d"):
        raise ValueError(f"unknown network family {d['name']!r}")
    family = ConvFamily(ConvGeometry(tuple(int(s) for s in d["input_shape"]), int(d["kernel"]),
                                     int(d["scales"]), d.get("head", "average")))
    if family.name != d["name"]:
        raise ValueError(f"input_shape {d['input_shape']} does not fit {d['name']}")
    return family


def family_of(network: NetworkSpec, dataset: str, n_features: int,
              sample_shape: tuple[int, ...] = ()) -> Family:
    """The family a space's `network` section names, fitted to the data; `UserError`
    names `network.input_shape` when the data does not have that shape.

    A conv family's input shape is `network.input_shape`, else the embedded dataset's
    (`DEFAULT_SHAPES`), else the data's own `sample_shape` (a 1-channel signal or image
    when it has no channel axis)."""
    if network.family == "mlp":
        return MLP
    dims = 1 if network.family == "conv1d" else 2
    shape = network.input_shape or DEFAULT_SHAPES.get((dataset, network.family))
    if shape is None and len(sample_shape) in (dims, dims + 1):
        shape = sample_shape if len(sample_shape) == dims + 1 else (1, *sample_shape)
    if shape is None:
        raise UserError(f"network.input_shape is needed for a {network.family} network on "
                        f"dataset {dataset!r} (its samples have shape {list(sample_shape)}; "
                        f"set it, or give x as (samples, channels, "
                        f"{'length' if dims == 1 else 'height, width'}))")
    if int(np.prod(shape)) != n_features:
        raise UserError(f"network.input_shape {list(shape)} holds {int(np.prod(shape))} values "
                        f"a sample, but the dataset's samples have {n_features}")
    return ConvFamily(ConvGeometry(tuple(int(s) for s in shape), network.kernel, network.scales,
                                   network.head), dilations=network.dilations)
