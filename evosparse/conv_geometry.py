"""What a convolutional genome's nodes and connections mean, and what it costs: pure numpy.

In the `conv1d` and `conv2d` families (`families.py`) a node is a channel and a
connection between two channels is a full kernel of `kernel` taps (`kernel` x `kernel`
in 2-D). A connection into an output reads the channel's pooled map: with the `average`
head one weight on its global average; with the `bins` head `taps` weights, one per bin
of its map averaged over `kernel` equal bins per spatial dimension (where the signal
is, not only how much of it: a map as short as the kernel is read whole).
Every channel has a scale r: its maps are the input's downsampled r times by 2
(length ceil(L / 2^r), per spatial dimension). Inputs have scale 0, outputs none; a
hidden channel's scale follows from its position (`scale_of`), so scales never fall
along a connection (positions rise) and a connection from scale a to scale r is a
convolution with stride 2^(r - a) and "same" padding: the DAG carries skip connections
across scales for free, and a layered space (`network.topology: layered`,
`max_levels = scales`) is a plain CNN whose layer k halves the resolution k times.
A kernel may keep only some of its taps (`tap_masks`) and may be dilated (`dilations`:
its taps spaced apart, "same" padding widened to match); neither changes where its
output lives, and dilation changes no cost.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import reduce
from typing import Literal

import numpy as np

from evosparse.activations import activation_cost, arity
from evosparse.flops import Cost
from evosparse.genome import HIDDEN, INPUT, OUTPUT, Genome, locate
from evosparse.graph import Topology, analyse


@dataclass(frozen=True)
class ConvGeometry:
    """The input's shape (channels, *spatial), the kernel width, the number of scales and
    how the outputs read a channel (`head`: average | bins)."""

    shape: tuple[int, ...]
    kernel: int
    scales: int
    head: Literal["average", "bins"] = "average"

    @property
    def dims(self) -> int:
        """Spatial dimensions: 1 or 2."""
        return len(self.shape) - 1

    @property
    def taps(self) -> int:
        """Weights of one channel-to-channel kernel."""
        return int(self.kernel**self.dims)

    def size(self, scale: int) -> tuple[int, ...]:
        """The spatial size of a map at `scale`: each side ceil(side / 2^scale)."""
        return tuple(-(-side // (1 << scale)) for side in self.shape[1:])

    def positions(self, scale: int) -> int:
        """Output positions of a map at `scale` (length, or height x width)."""
        return int(np.prod(self.size(scale)))

    @property
    def bins(self) -> int:
        """Numbers the head reads from each channel (weights of a connection into an
        output): 1 with the `average` head, `taps` with `bins`."""
        return self.taps if self.head == "bins" else 1

    def pooling(self, scale: int) -> np.ndarray:
        """float32 [positions(scale), bins]: the matrix that turns a flattened map at
        `scale` into the numbers the head reads (each column the average of its bin)."""
        per_side = self.kernel if self.head == "bins" else 1
        return reduce(np.kron, [_bin_average(side, per_side) for side in self.size(scale)])

    def shift_maps(self, shift: int) -> np.ndarray:
        """int64 [offsets, features]: for every offset of at most `shift` positions along
        each spatial axis, the flat index each feature of a flat sample takes its value
        from when the sample moves by that offset (edge values repeat). Row
        `offsets // 2` is the offset 0 (`training.shift`)."""
        index = np.arange(int(np.prod(self.shape))).reshape(self.shape)
        moves = range(-shift, shift + 1)
        rows = []
        for offset in itertools.product(moves, repeat=self.dims):
            taken = [np.clip(np.arange(side) - d, 0, side - 1)
                     for side, d in zip(self.shape[1:], offset, strict=True)]
            rows.append(index[np.ix_(range(self.shape[0]), *taken)].ravel())
        return np.stack(rows)

    def scale_of(self, genome: Genome) -> np.ndarray:
        """int (N,): each node's scale; inputs 0, hidden channels by position (the
        interval (0, 1) cut into `scales` + 1 equal parts), outputs -1 (no map)."""
        # a layered space's grid k / (scales + 1) lands on scale k (the epsilon absorbs
        # rounding: 1/3 * 3 may fall just below 1)
        scale = np.minimum(np.floor(genome.node_pos * (self.scales + 1) + 1e-9), self.scales)
        scale = np.where(genome.node_kind == INPUT, 0, scale).astype(np.int64)
        return np.where(genome.node_kind == OUTPUT, -1, scale)


def _bin_average(side: int, bins: int) -> np.ndarray:
    """float32 [side, bins]: bin i averages positions [i side / bins, (i + 1) side / bins)
    (rounded down, at least one position: a side shorter than `bins` repeats positions)."""
    out = np.zeros((side, bins), dtype=np.float32)
    for i in range(bins):
        lo = i * side // bins
        hi = max(lo + 1, (i + 1) * side // bins)
        out[lo:hi, i] = 1.0 / (hi - lo)
    return out


def conv_cost(genome: Genome, bias: bool, geometry: ConvGeometry,
              topo: Topology | None = None) -> Cost:
    """Non-zero FLOPs per sample, parameters and active connections of a conv genome.

    A hidden channel at scale r computes P_r = positions(r) outputs: each incoming kernel
    costs 2 x its taps x P_r (multiply and add per kept tap and position), its bias P_r
    adds and its activation `activation_cost` x P_r. An output costs 2 per weight of each
    incoming connection (`bins` of them) plus its bias, and each channel that feeds an
    output is pooled once: an add per non-zero of its `pooling` matrix (P_r with the
    average head, the last a scaling). A two-input channel (`activations.arity` 2) has
    a second kernel per connection and a second bias: they cost as much again. Only the
    live subgraph counts (`graph.analyse`).
    """
    topo = topo or analyse(genome)
    scale = geometry.scale_of(genome)
    positions = np.array([geometry.positions(s) for s in range(geometry.scales + 1)],
                         dtype=np.int64)
    hidden = topo.node_active & (genome.node_kind == HIDDEN)
    at = np.where(scale >= 0, positions[scale.clip(min=0)], 0)
    conn = topo.conn_active
    into_hidden = conn & (genome.node_kind[topo.dst_row] == HIDDEN)
    into_output = conn & (genome.node_kind[topo.dst_row] == OUTPUT)
    names, of_node = np.unique(genome.node_act, return_inverse=True)
    two = np.array([arity(str(a)) == 2 for a in names], dtype=bool)[of_node]
    copies = 1 + two[topo.dst_row[into_hidden]]  # kernels into two-input channels: twice
    taps = tap_counts(genome, geometry)[into_hidden] * copies
    flops = 2 * int((taps * at[topo.dst_row[into_hidden]]).sum())
    costs = np.array([activation_cost(str(a)) for a in genome.node_act[hidden]], dtype=np.int64)
    flops += int((costs * at[hidden]).sum())
    pooled = np.unique(topo.src_row[into_output])
    reads = np.array([np.count_nonzero(geometry.pooling(s)) for s in range(geometry.scales + 1)],
                     dtype=np.int64)
    head = geometry.bins * int(np.count_nonzero(into_output))
    flops += int(reads[scale[pooled]].sum()) + 2 * head
    n_out = int(np.count_nonzero(genome.node_kind == OUTPUT))
    n_bias = int(np.count_nonzero(hidden) + np.count_nonzero(hidden & two)) + n_out if bias else 0
    if bias:
        flops += int(at[hidden].sum() + at[hidden & two].sum()) + n_out
    params = int(taps.sum()) + head + n_bias
    return Cost(flops=flops, params=params, connections=int(np.count_nonzero(conn)))


def full_taps(geometry: ConvGeometry) -> int:
    """The tap mask of a whole kernel: one bit per tap."""
    return (1 << geometry.taps) - 1


def tap_masks(genome: Genome, geometry: ConvGeometry) -> np.ndarray:
    """int64 (C,): each connection's tap mask within the kernel (-1 or None: all taps)."""
    full = full_taps(geometry)
    if genome.conn_taps is None:
        return np.full(len(genome.conn_innov), full, dtype=np.int64)
    return genome.conn_taps & full


def tap_bits(masks: np.ndarray, taps: int) -> np.ndarray:
    """bool (C, taps): the tap bits of each connection's int64 mask (-1: all on)."""
    return ((masks[:, None] >> np.arange(taps)) & 1).astype(bool)


def tap_counts(genome: Genome, geometry: ConvGeometry) -> np.ndarray:
    """int (C,): how many taps each connection's kernel keeps."""
    masks = tap_masks(genome, geometry)
    return np.array([bin(int(m)).count("1") for m in masks], dtype=np.int64)


def centre_taps(geometry: ConvGeometry, size: int) -> int:
    """The tap mask of a kernel's central `size` taps per spatial dimension (odd `size` up to
    `kernel`): a smaller kernel inside the genome's, as a hand-made CNN's 3-tap layers."""
    k, lo = geometry.kernel, (geometry.kernel - size) // 2
    inner = np.zeros((k,) * geometry.dims, dtype=bool)
    inner[(slice(lo, lo + size),) * geometry.dims] = True
    return int(sum(1 << int(t) for t in np.flatnonzero(inner.ravel())))


def with_layer_kernels(genome: Genome, geometry: ConvGeometry, sizes: tuple[int, ...]) -> Genome:
    """`genome` whose kernels into its k-th layer of hidden channels (layers by position)
    keep only their central `sizes[k]` taps (`kstarts.kernel`); other connections as they
    are. The other taps stay in the genome, switched off, for mutation and RigL to grow."""
    _, kind, pos, _ = genome.nodes
    layers = np.unique(pos[kind == HIDDEN])
    if len(sizes) < len(layers):
        raise ValueError(f"{len(layers)} hidden layers but kernel sizes for {len(sizes)}")
    dst = genome.index_of(genome.conn_dst)
    into = kind[dst] == HIDDEN
    taps = tap_masks(genome, geometry)
    layer = np.searchsorted(layers, pos[dst[into]])
    taps[into] &= np.array([centre_taps(geometry, sizes[k]) for k in layer], dtype=np.int64)
    return genome.with_taps(taps)


def dilations(genome: Genome) -> np.ndarray:
    """int64 (C,): each connection's kernel dilation (1 where the genome sets none)."""
    if genome.conn_dilation is None:
        return np.ones(len(genome.conn_innov), dtype=np.int64)
    return genome.conn_dilation


def with_parent_taps(child: Genome, parents: list[Genome]) -> Genome:
    """`child` with each connection's taps and dilation as its first parent holding that
    gene has them (structural operators keep innovation ids but rebuild the genome
    without them); new genes keep every tap, at dilation 1."""
    taps = np.full(len(child.conn_innov), -1, dtype=np.int64)
    gaps = np.ones(len(child.conn_innov), dtype=np.int64)
    for parent in reversed(parents):  # the first parent's kernels win
        at, found = locate(parent.conn_innov, child.conn_innov)
        if parent.conn_taps is not None:
            taps[found] = parent.conn_taps[at[found]]
        if parent.conn_dilation is not None:
            gaps[found] = parent.conn_dilation[at[found]]
    return (child.with_taps(None if (taps == -1).all() else taps)
            .with_dilation(None if (gaps == 1).all() else gaps))


def mutate_dilation(genome: Genome, choices: tuple[int, ...], rng: np.random.Generator,
                    count: int) -> Genome:
    """Give each of up to `count` random enabled kernels (connections into hidden
    channels) another dilation from `choices`: a kernel of the same taps that sees
    further. Returns `genome` itself when it has no kernel or there is no other choice."""
    dst_kind = genome.node_kind[genome.index_of(genome.conn_dst)]
    kernels = np.flatnonzero(genome.conn_enabled & (dst_kind == HIDDEN))
    if kernels.size == 0 or len(choices) < 2:
        return genome
    gaps = dilations(genome).copy()
    for row in rng.choice(kernels, size=min(count, kernels.size), replace=False):
        others = [c for c in choices if c != gaps[row]]
        gaps[row] = others[int(rng.integers(len(others)))]
    return genome.with_dilation(gaps)


def mutate_taps(genome: Genome, geometry: ConvGeometry, rng: np.random.Generator,
                count: int) -> Genome:
    """Flip one random tap of each of up to `count` random enabled kernels (connections
    into hidden channels); a kernel never loses its last tap. Returns `genome` itself when
    it has no kernel."""
    dst_kind = genome.node_kind[genome.index_of(genome.conn_dst)]
    kernels = np.flatnonzero(genome.conn_enabled & (dst_kind == HIDDEN))
    if kernels.size == 0 or geometry.taps < 2:
        return genome
    taps = tap_masks(genome, geometry)
    for row in rng.choice(kernels, size=min(count, kernels.size), replace=False):
        flipped = int(taps[row]) ^ (1 << int(rng.integers(geometry.taps)))
        if flipped:
            taps[row] = flipped
    return genome.with_taps(taps)
