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

