"""Compile a genome into a torch module: one masked dense block per depth level.

Active nodes are grouped by depth (`graph.analyse`). The activations of all
earlier levels form one vector; level l computes `act((h @ (W_l * M_l).T) + b_l)`
where the fixed 0/1 mask M_l holds the genome's connections. Masked entries stay
exactly zero and get zero gradient. Nodes of a level are grouped by activation
function, so no Python loop runs over nodes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from evosparse.activations import torch_activation
from evosparse.genome import INPUT, OUTPUT, Genome
from evosparse.graph import analyse


class _Level(nn.Module):
    """One depth level: a masked dense block and grouped activations."""

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
        names = sorted(set(acts.tolist()))
        self.act_names = acts.tolist()
        self._fns = [torch_activation(n) for n in names]
        groups = [np.flatnonzero(acts == n) for n in names]
        order = np.concatenate(groups)
        self._groups = [torch.from_numpy(g) for g in groups]
        self.register_buffer("_inverse", torch.from_numpy(np.argsort(order)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        pre = h @ (self.weight * self.mask).T
        if self.bias is not None:
            pre = pre + self.bias
        if len(self._fns) == 1:
            return self._fns[0](pre)
        parts = [fn(pre[:, idx]) for fn, idx in zip(self._fns, self._groups, strict=True)]
        return torch.cat(parts, dim=1)[:, self._inverse]


class SparseNetwork(nn.Module):
    """The torch form of one genome; outputs are logits in output-id order."""

    def __init__(self, genome: Genome, bias: bool, generator: torch.Generator) -> None:
        super().__init__()
        topo = analyse(genome)
        n_in = int(np.count_nonzero(genome.node_kind == INPUT))
        rows_by_level = [np.flatnonzero(genome.node_kind == INPUT)]
        for level in range(1, topo.n_levels + 1):
            rows_by_level.append(np.flatnonzero(topo.depth == level))
        col = np.full(len(genome.node_id), -1)
        col[np.concatenate(rows_by_level)] = np.arange(sum(len(r) for r in rows_by_level))
        src_col = col[topo.src_row[topo.conn_active]]
        dst_col = col[topo.dst_row[topo.conn_active]]
        levels = []
        start = n_in
        for rows in rows_by_level[1:]:
            mask = np.zeros((len(rows), start), dtype=bool)
            here = (dst_col >= start) & (dst_col < start + len(rows))
            mask[dst_col[here] - start, src_col[here]] = True
            levels.append(_Level(mask, genome.node_act[rows], bias, generator))
            start += len(rows)
        self.levels = nn.ModuleList(levels)
        out_rows = np.flatnonzero(genome.node_kind == OUTPUT)
        self.register_buffer("_outputs", torch.from_numpy(col[out_rows]))
        self.n_inputs = n_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for level in self.levels:
            h = torch.cat([h, level(h)], dim=1)
        return h[:, self._outputs]



class BatchedNetworks(nn.Module):
    """Many genomes as one padded, batched program (`torch.baddbmm` per depth level).

    Each genome is first built as a `SparseNetwork` with its own generator, so its
    initial weights are exactly those it gets when trained alone; they are then
    scattered into zero-padded blocks [genomes, nodes of level l, nodes before l].
    Padded and absent entries are zero in the mask, so they stay zero and get no
    gradient. Activations run node-major: the rows (genome, node) of a level are
    gathered by activation function, each function runs once on its rows, and the
    rows are put back, so no Python loop runs over nodes or genomes. Input x is
    [genomes, samples, features] (each genome may see its own minibatch); output
    is [genomes, samples, outputs].
    """

    def __init__(self, genomes: list[Genome], bias: bool, generators: list[torch.Generator]):
        super().__init__()
        nets = [SparseNetwork(g, bias, gen) for g, gen in zip(genomes, generators, strict=True)]
        n_b, n_in = len(nets), nets[0].n_inputs
        depth = max(len(n.levels) for n in nets)
        widths = [max((n.levels[k].weight.shape[0] for n in nets if k < len(n.levels)),
                      default=0) for k in range(depth)]
        starts = np.concatenate([[n_in], n_in + np.cumsum(widths)])  # first column of each level
        names = sorted({a for g in genomes for a in g.node_act.tolist()})
        self._fns = [torch_activation(a) for a in names]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        masks, act_codes = [], []
        # col_map[b][c] = padded column of genome b's own column c
        col_maps = [list(range(n_in)) for _ in nets]
        for k, width in enumerate(widths):
            w = torch.zeros(n_b, width, int(starts[k]))
            m = torch.zeros_like(w)
            b = torch.zeros(n_b, width)
            codes = torch.full((n_b, width), -1, dtype=torch.long)
            for i, net in enumerate(nets):
                if k >= len(net.levels):
                    continue
                lv = net.levels[k]
                rows = lv.weight.shape[0]
                cols = torch.as_tensor(col_maps[i])
                w[i, :rows, cols] = lv.weight.detach()
                m[i, :rows, cols] = lv.mask
                if lv.bias is not None:
                    b[i, :rows] = lv.bias.detach()
                codes[i, :rows] = torch.as_tensor([names.index(a) for a in lv.act_names])
                col_maps[i] += list(range(int(starts[k]), int(starts[k]) + rows))
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b, requires_grad=bias))
            masks.append(m)
            act_codes.append(codes)
        self._nets = nets  # a plain list: not parameters of the batch, refilled by `unbatch`
        self._col_maps = col_maps
        self._groups: list[list[tuple[int, int]]] = []  # per level: (function index, rows)
        for k, (m, c) in enumerate(zip(masks, act_codes, strict=True)):
            self.register_buffer(f"mask{k}", m)
            flat = c.flatten()
            order = torch.argsort(flat, stable=True)
            self.register_buffer(f"order{k}", order)
            self.register_buffer(f"inverse{k}", torch.argsort(order))
            codes, counts = torch.unique_consecutive(flat[order], return_counts=True)
            self._groups.append(list(zip(codes.tolist(), counts.tolist(), strict=True)))
        self.register_buffer("_outputs", torch.as_tensor(
            np.stack([np.asarray(cm)[n._outputs.numpy()] for cm, n in zip(col_maps, nets,
                                                                          strict=True)])))

    def unbatch(self, i: int) -> SparseNetwork:
        """Genome i's network (on the CPU) holding its current trained weights."""
        net = self._nets[i]
        cols = torch.as_tensor(self._col_maps[i])
        with torch.no_grad():
            for k, lv in enumerate(net.levels):
                rows = lv.weight.shape[0]
                lv.weight.copy_(self.weights[k][i, :rows, :][:, cols[: lv.weight.shape[1]]])
                if lv.bias is not None:
                    lv.bias.copy_(self.biases[k][i, :rows])
        return net

    def _activate(self, k: int, pre: torch.Tensor) -> torch.Tensor:
        """Apply each node's activation to pre [genomes, nodes, samples] of level k."""
        groups = self._groups[k]
        if len(groups) == 1:
            code = groups[0][0]
            return pre if code < 0 else self._fns[code](pre)
        flat = pre.reshape(-1, pre.shape[2]).index_select(0, getattr(self, f"order{k}"))
        parts = flat.split([n for _, n in groups])
        done = [p if code < 0 else self._fns[code](p) for (code, _), p in zip(groups, parts,
                                                                              strict=True)]
        return torch.cat(done).index_select(0, getattr(self, f"inverse{k}")).view_as(pre)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)  # node-major: [genomes, nodes, samples]
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            pre = torch.baddbmm(b.unsqueeze(2), w * getattr(self, f"mask{k}"), h)
            h = torch.cat([h, self._activate(k, pre)], dim=1)
        idx = self._outputs.unsqueeze(2).expand(-1, -1, h.shape[2])
        return torch.gather(h, 1, idx).transpose(1, 2)
