"""Compile a conv-family genome (`conv_geometry.py`) into one torch module.

Active channels are grouped by depth level (`graph.analyse`) and, within a level, by
scale and then activation. A level's channels at scale r read every channel computed
before the level: those at scale a through one masked convolution of stride 2^(r - a)
(a `_Block`: weight [channels, sources, taps...] times a fixed 0/1 mask that holds the
genome's connections, so pruned pairs stay exactly zero). The outputs are a masked
linear map of every channel's pooled map (`ConvGeometry.pooling`: its global average,
or its `bins` bin averages, column c x bins + b). Blocks are a flat `levels` list with
`weight`, `mask` and `bias` as the MLP's levels have them, so the weight files
(`weights.model_bytes`) are written the same way.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evosparse.activations import arity, torch_activation
from evosparse.conv_geometry import ConvGeometry, dilations, tap_bits, tap_masks
from evosparse.genome import HIDDEN, INPUT, OUTPUT, Genome, pair_keys
from evosparse.graph import analyse
from evosparse.network import Layout, Signal, Values, masked_sums, values_for

_CONV = {1: F.conv1d, 2: F.conv2d}

Captured = tuple[torch.Tensor, torch.Tensor, int, int, torch.Tensor]
"""What a captured forward pass keeps of one kernel block: its masked kernels (with their
dense gradient after backward), the source maps it read [samples, genomes, columns,
*size], its stride and dilation, and its channels' maps after their activations
[samples, genomes, channels, *size]."""


def tap_signal(captured: Captured, geometry: ConvGeometry) -> Signal:
    """One kernel block's `network.Signal`: its masked kernels; as the source, what each
    tap reads of the source maps ([genomes, columns x taps, samples x output positions],
    a tap's column c x taps + t as the kernels' entries are laid out); as the destination,
    each channel's map [genomes, channels, samples x positions]. CTRE's cosine of the two
    is then, for a tap, how alike a channel's map is to the source map shifted, strided
    and dilated as that tap reads it: the MLP's node-to-node similarity, per tap."""
    w, source, stride, dilation, out = captured
    s, n, c, *size = source.shape
    one = [1] * (2 - len(size))  # a 1-D map unfolds as a 1 x length image
    k, pad = geometry.kernel, dilation * (geometry.kernel // 2)
    patches = F.unfold(source.detach().reshape(s, n * c, *one, *size), (*one, *[k] * len(size)),
                       dilation=(*one, *[dilation] * len(size)),
                       padding=(*[0] * len(one), *[pad] * len(size)),
                       stride=(*one, *[stride] * len(size)))
    patches = patches.view(s, n, -1, patches.shape[-1]).permute(1, 2, 0, 3).flatten(2)
    maps = out.detach().flatten(3).permute(1, 2, 0, 3).flatten(2)
    return w, patches, maps


def pooled(maps: list[torch.Tensor], poolings: list[torch.Tensor], dims: int) -> torch.Tensor:
    """[..., channels x bins]: each scale's maps [..., channels, *spatial] times its
    `ConvGeometry.pooling` matrix, concatenated in scale order (a channel's bins adjacent)."""
    return torch.cat([m.flatten(-dims) @ p for m, p in zip(maps, poolings, strict=True)],
                     dim=-2).flatten(-2)


class _Block(nn.Module):
    """One masked weight: a convolution from one source scale into a group of channels
    (or, for the outputs, a linear map of the pooled channels). Where the group has
    two-input units (`two`, per channel), a second kernel per connection (and, on the
    group's first block, a second bias) gives their second pre-activation, as
    `network._Level` has it; drawn last, so a block without them draws what it did."""

    def __init__(self, mask: np.ndarray, fan_in: np.ndarray, bias: bool,
                 generator: torch.Generator, two: np.ndarray | None = None,
                 dilation: int = 1) -> None:
        super().__init__()
        self.dilation = dilation
        """Of every kernel in the block (the gap between taps; "same" padding grows with it)."""
        m = torch.from_numpy(mask.astype(np.float32))
        bound = 1.0 / torch.sqrt(torch.from_numpy(fan_in.astype(np.float32)).clamp(min=1.0))
        shape = (-1,) + (1,) * (m.dim() - 1)
        self.weight = nn.Parameter((torch.rand(m.shape, generator=generator) * 2 - 1)
                                   * bound.view(shape) * m)
        self.register_buffer("mask", m)
        self.bias: nn.Parameter | None = None
        if bias:
            self.bias = nn.Parameter((torch.rand(m.shape[0], generator=generator) * 2 - 1)
                                     * bound)
        self.weight2: nn.Parameter | None = None
        self.bias2: nn.Parameter | None = None
        if two is not None and two.any():
            self.register_buffer("two", torch.from_numpy(two.astype(np.float32)).view(shape))
            self.weight2 = nn.Parameter((torch.rand(m.shape, generator=generator) * 2 - 1)
                                        * bound.view(shape) * self.second_mask())
            if bias:
                self.bias2 = nn.Parameter((torch.rand(m.shape[0], generator=generator) * 2 - 1)
                                          * bound * self.two.flatten())

    def second_mask(self) -> torch.Tensor:
        """The mask of the second kernels: the connections into two-input channels."""
        return self.mask * self.two

    def second_weight(self) -> torch.Tensor:
        """The masked second kernels (zero for one-input channels)."""
        assert self.weight2 is not None
        return self.weight2 * self.second_mask()


def _sources(into: np.ndarray, src_scale: np.ndarray, gap: np.ndarray, r: int
             ) -> list[tuple[int, int]]:
    """(source scale, dilation) of each block of a group at scale r that `into` (its
    connections) reads, in order; a group without inputs gets an empty block from the
    inputs (for its bias)."""
    out = [(a, int(d)) for a in range(r + 1)
           for d in np.unique(gap[into & (src_scale == a)]).tolist()]
    return out or [(0, 1)]


class ConvNetwork(nn.Module):
    """The torch form of one conv genome; takes flat inputs [N, prod(shape)], returns
    logits in output-id order."""

    def __init__(self, genome: Genome, bias: bool, generator: torch.Generator,
                 geometry: ConvGeometry) -> None:
        super().__init__()
        self.geometry = geometry
        topo = analyse(genome)
        scale = geometry.scale_of(genome)
        kind = genome.node_kind
        # column of each channel in its scale's stack of maps: inputs first, then by level
        column = np.full(len(kind), -1)
        count = np.zeros(geometry.scales + 1, dtype=np.int64)
        inputs = np.flatnonzero(kind == INPUT)
        column[inputs] = np.arange(len(inputs))
        count[0] = len(inputs)
        conn = np.flatnonzero(topo.conn_active)
        src, dst = topo.src_row[conn], topo.dst_row[conn]
        k = geometry.kernel
        bits = tap_masks(genome, geometry)[conn]
        taps = tap_bits(bits, geometry.taps)  # each connection's kept taps
        kernels = taps.reshape((len(conn),) + (k,) * geometry.dims)
        gap = dilations(genome)[conn]
        blocks: list[_Block] = []
        self.plan: list[tuple[int, list[tuple[int, int]], list[tuple[str, int]]]] = []
        """Per group: its scale, its (block index, source scale) pairs (a block per source
        scale and kernel dilation, `_Block.dilation`), its activation runs (name, width);
        in computation order."""
        self.level_ends: list[int] = []
        """Where each level's groups end in `plan`."""
        kernel_at: list[tuple[np.ndarray, int, np.ndarray, np.ndarray]] = []
        bias_at: list[tuple[np.ndarray, int]] = []
        ids_at = [genome.node_id[inputs]] + [genome.node_id[:0]] * geometry.scales
        self._kernel_pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        """Per kernel block: its channels' node ids, its columns' source ids and which
        (channel, source) pairs are compiled kernels (where taps may grow back)."""
        for level in range(1, topo.n_levels):
            rows = np.flatnonzero((topo.depth == level) & (kind == HIDDEN))
            rows = rows[np.lexsort((genome.node_act[rows], scale[rows]))]
            placed = []
            for r in np.unique(scale[rows]).tolist():
                group = rows[scale[rows] == r]
                at = {int(row): i for i, row in enumerate(group)}
                into = np.isin(dst, group)
                fan_in = np.zeros(len(group))
                np.add.at(fan_in, [at[int(d)] for d in dst[into]], taps[into].sum(axis=1))
                pairs = []
                two = np.array([arity(str(n)) == 2 for n in genome.node_act[group]])
                for a, dilation in _sources(into, scale[src], gap, r):
                    here = into & (scale[src] == a) & (gap == dilation)
                    mask = np.zeros((len(group), count[a]) + (k,) * geometry.dims, dtype=bool)
                    mask[[at[int(d)] for d in dst[here]], column[src[here]]] = kernels[here]
                    compiled = np.zeros((len(group), count[a]), dtype=bool)
                    compiled[[at[int(d)] for d in dst[here]], column[src[here]]] = True
                    self._kernel_pairs.append((genome.node_id[group], ids_at[a], compiled))
                    kernel_at.append((conn[here], len(blocks),
                                      np.array([at[int(d)] for d in dst[here]], dtype=np.int64),
                                      column[src[here]]))
                    if not pairs:
                        bias_at.append((group, len(blocks)))
                    pairs.append((len(blocks), a))
                    blocks.append(_Block(mask, fan_in, bias and len(pairs) == 1, generator, two,
                                         dilation))
                names, widths = np.unique(genome.node_act[group], return_counts=True)
                self.plan.append((r, pairs, list(zip(names.tolist(), widths.tolist(),
                                                      strict=True))))
                placed.append((group, r))
            for group, r in placed:  # a level's channels are seen from the next level on
                column[group] = count[r] + np.arange(len(group))
                count[r] += len(group)
                ids_at[r] = np.concatenate([ids_at[r], genome.node_id[group]])
            self.level_ends.append(len(self.plan))
        outputs = np.flatnonzero(kind == OUTPUT)
        offset = np.concatenate([[0], np.cumsum(count)[:-1]])  # pooled channel of each scale
        channel = np.where(column >= 0, offset[scale.clip(min=0)] + column, -1)
        bins = geometry.bins
        to_out = np.isin(dst, outputs)
        head_rows = np.searchsorted(outputs, dst[to_out])
        head_cols = channel[src[to_out]][:, None] * bins + np.arange(bins)  # a row per link
        mask = np.zeros((len(outputs), int(count.sum()) * bins), dtype=bool)
        mask[head_rows[:, None], head_cols] = True
        blocks.append(_Block(mask, mask.sum(axis=1), bias, generator))
        self.levels = nn.ModuleList(blocks)
        self._sites = (kernel_at, (conn[to_out], head_rows, head_cols),
                       [*bias_at, (outputs, len(blocks) - 1)])
        """Where each genome row lives: kernels (connection rows, block, rows, columns),
        the head's (connection rows, rows, [links, bins] columns), biases (node rows,
        block)."""
        for r in range(geometry.scales + 1):
            self.register_buffer(f"pooling{r}", torch.from_numpy(geometry.pooling(r)),
                                 persistent=False)
        self._ids = (genome.conn_src, genome.conn_dst, genome.node_id)
        self._taps = tap_masks(genome, geometry)  # each connection's taps as compiled
        if genome.conn_weight is not None and genome.node_bias is not None:
            self._load_inherited(genome.conn_weight, genome.node_bias)
        self.channels = count.tolist()
        """Channels computed at each scale (inputs included): the pooled columns' layout."""
        self._fns = {name: torch_activation(name) for _, _, runs in self.plan
                     for name, _ in runs}
        self._arity = {name: arity(name) for name in self._fns}
        self._capture = False
        self._captured: dict[int, Captured] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.geometry
        maps = [x.reshape(x.shape[0], *g.shape)] + [x.new_zeros((x.shape[0], 0, *g.size(r)))
                                                    for r in range(1, g.scales + 1)]
        start = 0
        conv = _CONV[g.dims]
        for end in self.level_ends:
            new: list[list[torch.Tensor]] = [[] for _ in maps]
            for r, pairs, runs in self.plan[start:end]:
                pre = pre2 = None
                kernels = []
                for b, a in pairs:
                    blk = self.levels[b]
                    kernels.append(blk.weight * blk.mask)
                    step = {"stride": 1 << (r - a), "dilation": blk.dilation,
                            "padding": blk.dilation * (g.kernel // 2)}
                    term = conv(maps[a], kernels[-1], blk.bias, **step)
                    pre = term if pre is None else pre + term
                    if blk.weight2 is not None:  # two-input units' second pre-activation
                        term = conv(maps[a], blk.second_weight(), blk.bias2, **step)
                        pre2 = term if pre2 is None else pre2 + term
                assert pre is not None
                parts = pre.split([w for _, w in runs], dim=1)
                seconds = parts if pre2 is None else pre2.split([w for _, w in runs], dim=1)
                fns = [(self._fns[n], self._arity[n]) for n, _ in runs]
                new[r].append(torch.cat([fn(p) if inputs == 1 else fn(p, q) for (fn, inputs), p, q
                                         in zip(fns, parts, seconds, strict=True)], dim=1))
                if self._capture:  # RigL reads the kernels' dense gradient, CTRE the maps
                    for (b, a), w in zip(pairs, kernels, strict=True):
                        w.retain_grad()
                        self._captured[b] = (w, maps[a].unsqueeze(1), 1 << (r - a),
                                             self.levels[b].dilation, new[r][-1].unsqueeze(1))
            maps = [torch.cat([m, *extra], dim=1) if extra else m
                    for m, extra in zip(maps, new, strict=True)]
            start = end
        poolings = [getattr(self, f"pooling{r}") for r in range(g.scales + 1)]
        head = self.levels[-1]
        out = pooled(maps, poolings, g.dims) @ (head.weight * head.mask).T
        return out if head.bias is None else out + head.bias

    def connection_sums(self, grads: dict[nn.Parameter, torch.Tensor]) -> torch.Tensor:
        """[1, 4]: number of non-zero weights, sum |w|, sum of `grads` and sum |w| x
        `grads` over them (as `SparseNetwork.connection_sums`, counting kernel taps)."""
        out = torch.zeros(1, 4)
        for blk in self.levels:
            g = grads.get(blk.weight)
            out += masked_sums(blk.weight.reshape(1, blk.weight.shape[0], -1),
                               blk.mask.reshape(1, blk.mask.shape[0], -1),
                               None if g is None else g.reshape(1, g.shape[0], -1))
        return out

    def _load_inherited(self, conn_weight: np.ndarray, node_bias: np.ndarray) -> None:
        """Start from inherited values (Lamarckian evolution): each kernel's kept taps and
        each head weight and bias where the genome has a finite value."""
        kernels, (head_conns, head_rows, head_cols), biases = self._sites
        taps = self.geometry.taps
        if conn_weight.reshape(len(conn_weight), -1).shape[1] != taps:  # none inherited yet
            conn_weight = np.full((len(conn_weight), taps), np.nan, dtype=np.float32)
        with torch.no_grad():
            for conns, b, rows, cols in kernels:
                blk = self.levels[b]
                values = torch.from_numpy(conn_weight[conns].reshape(len(conns),
                                                                     *blk.mask.shape[2:]))
                keep = torch.isfinite(values) & (blk.mask[rows, cols] > 0)
                blk.weight[rows, cols] = torch.where(keep, values, blk.weight[rows, cols])
            head = self.levels[-1]
            w = conn_weight.reshape(len(conn_weight), -1)[head_conns, :head_cols.shape[1]]
            ok = np.isfinite(w)
            rows = np.broadcast_to(head_rows[:, None], w.shape)
            head.weight[rows[ok], head_cols[ok]] = torch.from_numpy(w[ok])
            for nodes, b in biases:
                blk = self.levels[b]
                if blk.bias is not None:
                    v = node_bias[nodes]
                    ok = np.isfinite(v)
                    blk.bias[np.flatnonzero(ok)] = torch.from_numpy(v[ok])

    def trained_values(self) -> Values:
        """The network's weights and biases keyed by identity (`network.Values`): a row of
        taps per connection (NaN where a tap is off; a head link's weights in its first
        `bins` columns)."""
        kernels, (head_conns, head_rows, head_cols), biases = self._sites
        src, dst, node_id = self._ids
        taps = self.geometry.taps
        conns, rows = [head_conns], [np.full((len(head_conns), taps), np.nan, dtype=np.float32)]
        with torch.no_grad():
            rows[0][:, :head_cols.shape[1]] = (self.levels[-1].weight[head_rows[:, None],
                                                                      head_cols].cpu().numpy())
            for c, b, r, col in kernels:
                blk = self.levels[b]
                w = torch.where(blk.mask[r, col] > 0, blk.weight[r, col], torch.nan)
                conns.append(c)
                rows.append(w.reshape(len(c), taps).cpu().numpy())
            nodes, values = [], []
            for n, b in biases:
                if self.levels[b].bias is not None:
                    nodes.append(node_id[n])
                    values.append(self.levels[b].bias.detach().cpu().numpy())
        c = np.concatenate(conns)
        return (pair_keys(src[c], dst[c]), np.concatenate(rows).astype(np.float32),
                np.concatenate(nodes) if nodes else np.zeros(0, dtype=np.int64),
                np.concatenate(values) if values else np.zeros(0, dtype=np.float32))

    def weights_for(self, genome: Genome) -> tuple[np.ndarray, np.ndarray]:
        """`network.values_for(genome, self.trained_values())`."""
        return values_for(genome, self.trained_values())

    def weight_blocks(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """(weight, mask) of each kernel block: what in-training pruning changes, one tap
        at a time (the head's links are kept)."""
        return [(blk.weight, blk.mask) for blk in self.levels[:-1]]

    def growth_layout(self) -> list[Layout]:
        """Per kernel block, where a tap may grow: any tap of a kernel the genome compiled
        (new kernels come from mutation), with its channels' node ids and, per column and
        tap, source id x taps + tap (what `sparse_training` hashes ties by)."""
        t, device = self.geometry.taps, self.levels[0].mask.device
        out = []
        for dst_ids, src_ids, compiled in self._kernel_pairs:
            allowed = np.repeat(compiled[:, :, None], t, axis=2)[None]
            cols = (src_ids[:, None] * t + np.arange(t)).reshape(1, -1)
            out.append((torch.from_numpy(allowed).to(device), torch.from_numpy(dst_ids[None]),
                        torch.from_numpy(cols)))
        return out

    def capture(self, on: bool) -> None:
        """Keep each kernel block's masked weight in the next forward passes (or stop)."""
        self._capture, self._captured = on, {}

    def signals(self) -> list[Signal]:
        """Per kernel block, the `tap_signal` of the last captured forward pass."""
        return [tap_signal(self._captured[b], self.geometry)
                for b in range(len(self.levels) - 1)]

    def _kept_taps(self) -> tuple[np.ndarray, np.ndarray]:
        """(connection rows, tap bits of the mask now) of every compiled kernel."""
        rows, bits = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
        weights = 1 << np.arange(self.geometry.taps, dtype=np.int64)
        for conns, b, r, c in self._sites[0]:
            mask = self.levels[b].mask[r, c].reshape(len(conns), len(weights)).cpu().numpy() > 0
            rows.append(conns)
            bits.append(mask.astype(np.int64) @ weights)
        return np.concatenate(rows), np.concatenate(bits)

    def removed_connections(self) -> np.ndarray:
        """Rows of the genome's compiled kernels with no tap left (pruned in training)."""
        rows, bits = self._kept_taps()
        return np.sort(rows[bits == 0])

    def changed_taps(self) -> tuple[np.ndarray, np.ndarray]:
        """(connection rows, kept tap bits) of kernels whose taps training changed (removed
        some, grew some back) and that keep at least one."""
        rows, bits = self._kept_taps()
        changed = (bits != 0) & (bits != self._taps[rows])
        return rows[changed], bits[changed]

    def added_connections(self) -> tuple[np.ndarray, np.ndarray]:
        """None: conv families grow no connection during training."""
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)

