"""Compile a genome into a torch module: one masked dense block per depth level.

Active nodes are grouped by depth (`graph.analyse`). The activations of all
earlier levels form one vector; level l computes `act((h @ (W_l * M_l).T) + b_l)`
where the fixed 0/1 mask M_l holds the genome's connections. Masked entries stay
exactly zero and get zero gradient. Nodes of a level are grouped by activation
function, so no Python loop runs over nodes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from evosparse.activations import arity, torch_activation
from evosparse.genome import INPUT, OUTPUT, Genome, locate, pair_keys
from evosparse.graph import analyse
from evosparse.library import in_place

Signal = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""What a training step shows about one weight block (`capture`): the masked weight
[genomes, rows, cols] or, for one network, [rows, cols] (its `.grad` is the dense
gradient after backward), the source
activations [genomes, cols, samples] and the destination activations [genomes, rows,
samples]; in-training regrowth (`sparse_training.py`) scores candidates with them."""

Layout = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""Where a weight block may grow: allowed [genomes, rows, cols] (bool: both nodes compiled,
source before destination), and the node ids of its rows [genomes, rows] and columns
[genomes, cols] (-1 for padding)."""


def allowed(row_pos: np.ndarray, col_pos: np.ndarray) -> torch.Tensor:
    """[genomes, rows, cols]: True where a connection col -> row keeps the DAG (positions
    rise along every connection; padding has NaN positions and is never allowed)."""
    return torch.from_numpy(row_pos[:, :, None] > col_pos[:, None, :])


class _Level(nn.Module):
    """One depth level: a masked dense block, its nodes ordered by activation function
    (`acts` sorted), so each function runs once on a contiguous slice of the level."""

    def __init__(
        self, mask: np.ndarray, acts: np.ndarray, bias: bool, generator: torch.Generator
    ) -> None:
        super().__init__()
        m = torch.from_numpy(mask.astype(np.float32))
        fan_in = m.sum(dim=1, keepdim=True).clamp(min=1.0)
        bound = 1.0 / torch.sqrt(fan_in)  # PyTorch's Linear init, with the sparse fan-in
        w = (torch.rand(m.shape, generator=generator) * 2.0 - 1.0) * bound * m
        self.weight = nn.Parameter(w)
        self.register_buffer("mask", m)
        if bias:
            b = (torch.rand(m.shape[0], generator=generator) * 2.0 - 1.0) * bound.squeeze(1)
            self.bias: nn.Parameter | None = nn.Parameter(b)
        else:
            self.bias = None
        self.act_names = acts.tolist()
        names, counts = np.unique(acts, return_counts=True)
        if not np.array_equal(np.repeat(names, counts), acts):
            raise ValueError(f"a level's nodes must be sorted by activation, got {self.act_names}")
        self._names = [str(n) for n in names]
        self._fns = [torch_activation(n) for n in self._names]
        self._arity = [arity(n) for n in self._names]
        self._widths = counts.tolist()
        two = np.repeat(np.array(self._arity) == 2, counts)
        # Two-input units: a second weight per connection and a second bias give the second
        # pre-activation; rows of one-input nodes are masked out by `two` (weight2 is drawn
        # last, so a network without two-input units draws exactly what it did before)
        self.weight2: nn.Parameter | None = None
        self.bias2: nn.Parameter | None = None
        if two.any():
            self.register_buffer("two", torch.from_numpy(two.astype(np.float32))[:, None])
            self.weight2 = nn.Parameter((torch.rand(m.shape, generator=generator) * 2.0 - 1.0)
                                        * bound * m * self.two)
            if bias:
                self.bias2 = nn.Parameter((torch.rand(m.shape[0], generator=generator) * 2.0
                                           - 1.0) * bound.squeeze(1) * self.two.squeeze(1))
        self.capture = False
        self.captured: Signal | None = None

    def second_weight(self) -> torch.Tensor:
        """The masked weights of the second pre-activation (zero rows for one-input nodes)."""
        assert self.weight2 is not None
        return self.weight2 * (self.mask * self.two)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        eff = self.weight * self.mask
        pre = h @ eff.T
        if self.bias is not None:
            pre = pre + self.bias
        pre2 = None
        if self.weight2 is not None:
            pre2 = h @ self.second_weight().T
            if self.bias2 is not None:
                pre2 = pre2 + self.bias2
        if len(self._fns) == 1 and pre2 is None:
            out = self._fns[0](pre)
        else:
            parts = pre.split(self._widths, dim=1)
            seconds = parts if pre2 is None else pre2.split(self._widths, dim=1)
            out = torch.cat([fn(p) if n == 1 else fn(p, q) for fn, n, p, q in zip(
                self._fns, self._arity, parts, seconds, strict=True)], dim=1)
        if self.capture:
            eff.retain_grad()
            self.captured = (eff, h.T[None], out.T[None])
        return out

    def infer(self, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """`forward` without autograd, node-major: the level's activations [nodes, samples]
        from the earlier levels' h [columns, samples], written into `out`; each function
        runs in place on its contiguous rows (a column slice, as `forward` has it, runs
        elementwise kernels several times slower). One-input levels only."""
        eff = self.weight * self.mask
        pre = torch.mm(eff, h, out=out) if self.bias is None else \
            torch.addmm(self.bias[:, None], eff, h, out=out)
        fast = in_place()
        for name, fn, part in zip(self._names, self._fns, pre.split(self._widths), strict=True):
            if name in fast:
                fast[name][0](part)
            else:
                part.copy_(fn(part))
        return pre


def masked_sums(w: torch.Tensor, mask: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
    """Per genome (leading dim) of masked weights: [count, sum |w|, sum grad, sum |w| grad]."""
    with torch.no_grad():
        w, mask = w.detach().cpu(), mask.cpu()
        g = torch.zeros_like(w) if grad is None else grad.reshape(w.shape).cpu()
        a = w.abs() * mask
        return torch.stack([mask.sum((1, 2)), a.sum((1, 2)), (g * mask).sum((1, 2)),
                            (a * g).sum((1, 2))], dim=1)


def _lookup(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """values[keys == w] for each w of `wanted` (float32; rows of a 2-D `values`), NaN
    where a key is absent."""
    out = np.full((len(wanted), *values.shape[1:]), np.nan, dtype=np.float32)
    at, found = locate(keys, wanted)
    out[found] = values[at[found]]
    return out


Values = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""A trained network's values by identity, independent of any compiled layout: connection
keys (`genome.pair_keys`), their weights, node ids, their biases (empty without biases)."""


def values_for(genome: Genome, values: Values) -> tuple[np.ndarray, np.ndarray]:
    """The weight of each of `genome`'s connections and the bias of each of its nodes in
    `values`, matched by node ids (NaN where there is none): what Lamarckian evolution
    writes back, also into a genome whose connections changed during training."""
    keys, weights, node_ids, biases = values
    return (_lookup(keys, weights, pair_keys(genome.conn_src, genome.conn_dst)),
            _lookup(node_ids, biases, genome.node_id))


class SparseNetwork(nn.Module):
    """The torch form of one genome; outputs are logits in output-id order."""

    def __init__(self, genome: Genome, bias: bool, generator: torch.Generator) -> None:
        super().__init__()
        topo = analyse(genome)
        n_in = int(np.count_nonzero(genome.node_kind == INPUT))
        rows_by_level = [np.flatnonzero(genome.node_kind == INPUT)]
        for level in range(1, topo.n_levels):  # hidden levels, nodes sorted by activation
            rows = np.flatnonzero(topo.depth == level)
            rows_by_level.append(rows[np.argsort(genome.node_act[rows], kind="stable")])
        rows_by_level.append(np.flatnonzero(topo.depth == topo.n_levels))  # outputs, in order
        col = np.full(len(genome.node_id), -1)
        col[np.concatenate(rows_by_level)] = np.arange(sum(len(r) for r in rows_by_level))
        src_col = col[topo.src_row[topo.conn_active]]
        dst_col = col[topo.dst_row[topo.conn_active]]
        levels = []
        starts = np.cumsum([len(r) for r in rows_by_level])[:-1]  # first column of each level
        self._gene_masks: list[np.ndarray] = []  # the genome's own connections, per level
        for rows, start in zip(rows_by_level[1:], starts, strict=True):
            mask = np.zeros((len(rows), start), dtype=bool)
            here = (dst_col >= start) & (dst_col < start + len(rows))
            mask[dst_col[here] - start, src_col[here]] = True
            self._gene_masks.append(mask)
            levels.append(_Level(mask, genome.node_act[rows], bias, generator))
        self.levels = nn.ModuleList(levels)
        self.level_ids = [genome.node_id[r] for r in rows_by_level]
        """Node ids of each level's nodes in compiled order (level 0: the inputs)."""
        self.level_pos = [genome.node_pos[r] for r in rows_by_level]
        out_rows = np.flatnonzero(genome.node_kind == OUTPUT)
        self.register_buffer("_outputs", torch.from_numpy(col[out_rows]))
        self.n_inputs = n_in
        # Where each genome connection and node lives: (level, row, column), -1 if not compiled
        node_level = np.searchsorted(starts, col, side="right") - 1
        self._node_at = (np.where(col >= n_in, node_level, -1), col - starts[node_level])
        conn_rows = np.flatnonzero(topo.conn_active)
        self._conn_at = (conn_rows, self._node_at[0][topo.dst_row[conn_rows]],
                         self._node_at[1][topo.dst_row[conn_rows]], src_col)
        if genome.conn_weight is not None and genome.node_bias is not None:
            self._load_inherited(genome.conn_weight, genome.node_bias)

    def _sites(self) -> Iterator[tuple[_Level, np.ndarray, tuple[np.ndarray, np.ndarray],
                                       np.ndarray, np.ndarray]]:
        """Per level: the level, the genome rows of its connections and their (row, column)
        in its weight, and the genome rows of its nodes and their row in it."""
        conns, level, row, column = self._conn_at
        node_level, node_row = self._node_at
        for k, lv in enumerate(self.levels):
            c, n = level == k, np.flatnonzero(node_level == k)
            yield lv, conns[c], (row[c], column[c]), n, node_row[n]

    def _load_inherited(self, conn_weight: np.ndarray, node_bias: np.ndarray) -> None:
        """Start from inherited values where the genome has them (Lamarckian evolution)."""
        with torch.no_grad():
            for lv, conns, (row, column), nodes, node_row in self._sites():
                c = np.isfinite(conn_weight[conns])
                lv.weight[row[c], column[c]] = torch.from_numpy(conn_weight[conns[c]])
                n = np.isfinite(node_bias[nodes])
                if lv.bias is not None:
                    lv.bias[node_row[n]] = torch.from_numpy(node_bias[nodes[n]])

    def growth_layout(self) -> list[Layout]:
        """Per level: where it may grow connections, and its rows' and columns' node ids."""
        out = []
        for k in range(len(self.levels)):
            cols = np.concatenate(self.level_ids[: k + 1])
            out.append((allowed(self.level_pos[k + 1][None], np.concatenate(
                self.level_pos[: k + 1])[None]).to(self.levels[k].mask.device),
                torch.from_numpy(self.level_ids[k + 1][None]), torch.from_numpy(cols[None])))
        return out

    def weight_blocks(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """(weight, mask) of each level: what in-training pruning changes."""
        return [(lv.weight, lv.mask) for lv in self.levels]

    def capture(self, on: bool) -> None:
        """Record each level's `Signal` in the next forward passes (or stop)."""
        for lv in self.levels:
            lv.capture, lv.captured = on, None

    def signals(self) -> list[Signal]:
        """Per level, the `Signal` of the last captured forward pass."""
        return [lv.captured for lv in self.levels]  # type: ignore[misc]

    def added_connections(self) -> tuple[np.ndarray, np.ndarray]:
        """(source ids, destination ids) of connections in the mask that the genome does not
        have (grown during training), level by level, row-major."""
        src, dst = [], []
        for k, lv in enumerate(self.levels):
            r, c = np.nonzero((lv.mask.cpu().numpy() > 0) & ~self._gene_masks[k])
            src.append(np.concatenate(self.level_ids[: k + 1])[c])
            dst.append(self.level_ids[k + 1][r])
        return np.concatenate(src), np.concatenate(dst)

    def trained_values(self) -> Values:
        """The network's current weights and biases, keyed by identity (`Values`)."""
        keys, values, node_ids, biases = [], [], [], []
        with torch.no_grad():
            for k, lv in enumerate(self.levels):
                r, c = np.nonzero(lv.mask.cpu().numpy() > 0)
                cols = np.concatenate(self.level_ids[: k + 1])
                keys.append(pair_keys(cols[c], self.level_ids[k + 1][r]))
                values.append(lv.weight.detach().cpu().numpy()[r, c])
                if lv.bias is not None:
                    node_ids.append(self.level_ids[k + 1])
                    biases.append(lv.bias.detach().cpu().numpy())
        return (np.concatenate(keys), np.concatenate(values),
                np.concatenate(node_ids) if node_ids else np.zeros(0, dtype=np.int64),
                np.concatenate(biases) if biases else np.zeros(0, dtype=np.float32))

    def weights_for(self, genome: Genome) -> tuple[np.ndarray, np.ndarray]:
        """`values_for(genome, self.trained_values())`."""
        return values_for(genome, self.trained_values())

    def removed_connections(self) -> np.ndarray:
        """Rows of the genome's compiled connections whose mask is now 0 (pruned in training)."""
        gone = [conns[(lv.mask[at] == 0).cpu().numpy()] for lv, conns, at, _, _ in self._sites()]
        return np.sort(np.concatenate(gone))  # a network has at least its output level

    def changed_taps(self) -> tuple[np.ndarray, np.ndarray]:
        """None: an MLP connection is one weight, kept or removed whole."""
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)

    def connection_sums(self, grads: dict[nn.Parameter, torch.Tensor]) -> torch.Tensor:
        """[1, 4]: number of connections, sum |w|, sum of `grads` and sum |w| x `grads`
        over them (`grads`: summed |gradient| per weight tensor; absent: zero)."""
        out = torch.zeros(1, 4)
        for lv in self.levels:
            out += masked_sums(lv.weight[None], lv.mask[None], grads.get(lv.weight))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() and all(lv.weight2 is None for lv in self.levels):
            return self._infer(x)
        h = x
        for level in self.levels[:-1]:
            h = torch.cat([h, level(h)], dim=1)
        return self.levels[-1](h)  # the last level holds exactly the outputs, in order

    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        """`forward` without autograd (scoring, export): node-major, every level writes its
        activations into its own rows of one buffer [columns, samples], whose leading rows
        are the next level's input, so nothing is concatenated."""
        widths = [lv.weight.shape[0] for lv in self.levels]
        h = x.new_empty(x.shape[1] + sum(widths), x.shape[0])
        h[: x.shape[1]] = x.T
        start = x.shape[1]
        for level, width in zip(self.levels, widths, strict=True):
            level.infer(h[:start], h[start : start + width])
            start += width
        return h[start - widths[-1] :].T.contiguous()  # the outputs, in order
