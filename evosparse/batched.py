"""Population-batched training: many genomes of equal depth as one padded program.

`BatchedNetworks` pads the compiled levels (`network.SparseNetwork`) of a batch of genomes
to common block shapes and trains them as one program of `torch.baddbmm` blocks, one per
pair of connected levels. Each genome keeps its own weights, minibatch order, loss and
optimiser state, so it follows the trajectory it follows when trained alone. A padded
group's forward and backward are plain functions (`_program_forward`,
`_program_backward`), wrapped as one autograd node where autograd is needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evosparse.activations import arity, torch_activation
from evosparse.genome import Genome
from evosparse.library import ACTIVATIONS, InPlace, in_place
from evosparse.network import Layout, Signal, SparseNetwork, allowed, masked_sums
from evosparse.sorted_activations import (
    Run,
    SortedActivation,
    activation_backward,
    activation_forward,
    gathered_backward,
    gathered_forward,
)

Pass = tuple[list[torch.Tensor], list[Any]]
"""What a group program's forward keeps for its backward: every level's output (the
input first) and each level's saved activation state."""


def _program_forward(group: _PaddedGroup, x: torch.Tensor, biases: list[torch.Tensor],
                     weights: list[torch.Tensor]) -> Pass:
    """A padded group's forward pass without autograd (`_GroupProgram`); the logits are the
    last output."""
    hs, saved = [x], []
    n = 0
    for k, b in enumerate(biases):
        pre = b.unsqueeze(2).expand(-1, -1, x.shape[2])
        fresh = False  # whether `pre` is this level's own tensor yet
        while n < len(weights) and group._blocks[n][0] == k:
            j = group._blocks[n][1]
            pre = pre.baddbmm_(weights[n], hs[j]) if fresh else \
                torch.baddbmm(pre, weights[n], hs[j])
            fresh, n = True, n + 1
        if not fresh:  # a level without blocks: its biases only
            pre = pre.contiguous()
        gathered = group._gathered[k]
        if gathered is not None:
            saved.append(gathered_forward(pre, getattr(group, f"gather{k}"), gathered))
        else:
            order, inverse, runs = group._plan(k)
            if runs:
                pre, keep = activation_forward(pre, None, order, inverse, runs)
                saved.append(keep)
            else:
                saved.append(None)
        hs.append(pre)
    return hs, saved


def _program_backward(group: _PaddedGroup, done: Pass, weights: list[torch.Tensor],
                      grad: torch.Tensor, need_bias: list[bool]
                      ) -> tuple[list[torch.Tensor | None], list[torch.Tensor | None]]:
    """The gradients of the biases (None where `need_bias` is False) and of the weights of
    a group program's forward pass `done`, from the gradient of its logits."""
    hs, saved = done
    masks = group.masks()
    n_levels = len(saved)
    grad_h: list[torch.Tensor | None] = [None] * len(hs)
    grad_h[-1] = grad
    grad_b: list[torch.Tensor | None] = [None] * n_levels
    grad_w: list[torch.Tensor | None] = [None] * len(weights)
    for k in reversed(range(n_levels)):
        g = grad_h[k + 1]
        assert g is not None
        gathered = group._gathered[k]
        if gathered is not None:  # a hidden level: `g` is this backward's own tensor
            gathered_backward(g, saved[k], getattr(group, f"gather{k}"), gathered)
        else:
            order, inverse, runs = group._plan(k)
            if runs:
                g, _ = activation_backward(g, saved[k], order, inverse, runs, False,
                                            owned=k + 1 < n_levels)
        if need_bias[k]:
            grad_b[k] = g.sum(2)
        for n, (level, j) in enumerate(group._blocks):
            if level != k:
                continue
            grad_w[n] = torch.bmm(g, hs[j].transpose(1, 2)).mul_(masks[n])
            if j > 0:  # the inputs need no gradient
                w_t = weights[n].transpose(1, 2)
                grad_h[j] = torch.bmm(w_t, g) if grad_h[j] is None else \
                    grad_h[j].baddbmm_(w_t, g)
    return grad_b, grad_w


class _GroupProgram(torch.autograd.Function):
    """A padded group's whole forward pass as one autograd node, with its own backward.

    Autograd would record about ten nodes per level (bias expansion, W * M, each block's
    product, the activation) and allocate a tensor for each; here the masked weights are
    used as they are (their masked entries are zero: initialised so, their gradient is
    masked, and pruning zeroes what it masks), a level's blocks accumulate into one
    pre-activation in place, the activation runs in place, and the backward accumulates
    each level's gradient in place and masks each weight gradient in place. Levels with
    two-input units and passes whose signals are captured run through autograd instead
    (`_PaddedGroup.forward`); a plain training step runs the same two functions without
    autograd (`_PaddedGroup.train_losses`)."""

    @staticmethod
    def forward(ctx: Any, group: _PaddedGroup, x: torch.Tensor, *params: torch.Tensor
                ) -> torch.Tensor:
        n_levels = len(group.biases)
        weights = list(params[n_levels:])
        ctx.group, ctx.done = group, _program_forward(group, x, list(params[:n_levels]),
                                                      weights)
        ctx.save_for_backward(*weights)
        return ctx.done[0][-1]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        n_levels = len(ctx.group.biases)
        grad_b, grad_w = _program_backward(ctx.group, ctx.done, list(ctx.saved_tensors), grad,
                                           list(ctx.needs_input_grad[2 : 2 + n_levels]))
        ctx.done = None
        return (None, None, *grad_b, *grad_w)


def _pads_safely(name: str) -> bool:
    """Whether padding rows (pre-activation 0, weights out masked) may run `name`: a
    one-input library function is finite at 0, so no NaN reaches the next level's
    matmul; other rows of padding run the identity."""
    return name in ACTIVATIONS and arity(name) == 1


def _block_layout(nets: list[SparseNetwork], k: int, j: int, sizes: list[int]) -> Layout:
    """The `Layout` of block (level k, source level j) of a padded group."""
    shape = (len(nets), sizes[k + 1]), (len(nets), sizes[j])
    row_ids, col_ids = np.full(shape[0], -1), np.full(shape[1], -1)
    row_pos, col_pos = np.full(shape[0], np.nan), np.full(shape[1], np.nan)
    for i, net in enumerate(nets):
        rows, cols = net.level_ids[k + 1], net.level_ids[j]
        row_ids[i, : len(rows)], col_ids[i, : len(cols)] = rows, cols
        row_pos[i, : len(rows)], col_pos[i, : len(cols)] = net.level_pos[k + 1], net.level_pos[j]
    return allowed(row_pos, col_pos), torch.from_numpy(row_ids), torch.from_numpy(col_ids)


class _PaddedGroup(nn.Module):
    """Genomes of one depth as one padded program of `torch.baddbmm` blocks.

    Each genome's `SparseNetwork` (built with its own generator, so its initial
    weights are those it gets when trained alone) is cut into blocks: level k's
    weights from source level j (0: the inputs) go, zero-padded, into a block
    [genomes, widest level k, widest level j]. Level k sums its blocks' products,
    so no activation vector is concatenated level by level, and a block that no
    genome of the group uses (an MLP has no skip connections) is left out, unless
    the group is `growable` (in-training regrowth may add connections there). Padded
    and absent entries are zero in the mask, so they stay zero and get no gradient.
    Activations run node-major: the rows (genome, node) of a level are gathered by
    activation function, each function runs once on its rows, and the rows are put
    back, so no Python loop runs over nodes or genomes.
    """

    def __init__(self, nets: list[SparseNetwork], growable: bool = False) -> None:
        super().__init__()
        n_b, n_levels = len(nets), len(nets[0].levels)
        # spans[i][j]: genome i's own columns [start, stop) that hold source level j
        spans = [np.cumsum([0, n.n_inputs] + [lv.weight.shape[0] for lv in n.levels])
                 for n in nets]
        sizes = [nets[0].n_inputs] + [max(n.levels[k].weight.shape[0] for n in nets)
                                      for k in range(n_levels)]
        names = sorted({a for n in nets for lv in n.levels for a in lv.act_names})
        self._names = names
        self._fns = [torch_activation(a) for a in names]
        self._in_place = [in_place().get(a) for a in names]
        self._arity = [arity(a) for a in names]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        # two-input units (levels where a member has one): second weights per block, keyed
        # by block index, and second biases and the `two` row mask per level, keyed by level
        self.weights2 = nn.ParameterDict()
        self.biases2 = nn.ParameterDict()
        self._blocks: list[tuple[int, int]] = []  # (level k, source level j) of each weight
        self._groups: list[list[tuple[int, int]]] = []  # per level: (function index, rows)
        self._runs: list[list[Run]] = []  # per level: the same, as `SortedActivation` takes it
        # per level: the in-place functions run on gathered rows by `_GroupProgram` (None: it
        # follows `_plan`), their rows in buffer `gather{k}`
        self._gathered: list[list[tuple[int, InPlace]] | None] = []
        self._layouts: list[Layout] = []  # per weight block, when `growable`
        for k in range(n_levels):
            second = any(net.levels[k].weight2 is not None for net in nets)
            for j in range(k + 1):
                w = torch.zeros(n_b, sizes[k + 1], sizes[j])
                m, w2 = torch.zeros_like(w), torch.zeros_like(w)
                for i, net in enumerate(nets):
                    lv, (start, stop) = net.levels[k], spans[i][j : j + 2]
                    m[i, : lv.weight.shape[0], : stop - start] = lv.mask[:, start:stop]
                    w[i, : lv.weight.shape[0], : stop - start] = lv.weight.detach()[:, start:stop]
                    if lv.weight2 is not None:
                        w2[i, : lv.weight.shape[0], : stop - start] = \
                            lv.weight2.detach()[:, start:stop]
                w.mul_(m)  # masked entries are exactly zero: `_GroupProgram` relies on it
                layout = _block_layout(nets, k, j, sizes) if growable else None
                if m.any() or (layout is not None and bool(layout[0].any())):
                    if second:
                        self.weights2[str(len(self.weights))] = nn.Parameter(w2)
                    self.register_buffer(f"mask{len(self.weights)}", m)
                    self.weights.append(nn.Parameter(w))
                    self._blocks.append((k, j))
                    if layout is not None:
                        self._layouts.append(layout)
            if second:
                two = torch.zeros(n_b, sizes[k + 1], 1)
                b2 = torch.zeros(n_b, sizes[k + 1])
                for i, net in enumerate(nets):
                    lv = net.levels[k]
                    if lv.weight2 is not None:
                        two[i, : len(lv.two)] = lv.two
                        if lv.bias2 is not None:
                            b2[i, : len(lv.bias2)] = lv.bias2.detach()
                self.register_buffer(f"two{k}", two)
                self.biases2[str(k)] = nn.Parameter(
                    b2, requires_grad=nets[0].levels[k].bias is not None)
            b = torch.zeros(n_b, sizes[k + 1])
            codes = torch.full((n_b, sizes[k + 1]), -1, dtype=torch.long)
            for i, net in enumerate(nets):
                lv = net.levels[k]
                if lv.bias is not None:
                    b[i, : len(lv.bias)] = lv.bias.detach()
                own = [names.index(a) for a in lv.act_names]
                codes[i, : len(own)] = torch.as_tensor(own)
                if own and _pads_safely(names[own[-1]]):  # padding extends the last run:
                    codes[i, len(own):] = own[-1]  # a one-function level stays one group
            self.biases.append(nn.Parameter(b, requires_grad=nets[0].levels[k].bias is not None))
            flat = codes.flatten()
            order = torch.argsort(flat, stable=True)
            self.register_buffer(f"order{k}", order)
            self.register_buffer(f"inverse{k}", torch.argsort(order))
            used, counts = torch.unique_consecutive(flat[order], return_counts=True)
            self._groups.append(list(zip(used.tolist(), counts.tolist(), strict=True)))
            self._runs.append([(n, torch_activation("identity"), 1, in_place()["identity"])
                               if code < 0 else
                               (n, self._fns[code], self._arity[code], self._in_place[code])
                               for code, n in self._groups[-1]])
            self._gathered.append(self._gathered_rows(k, flat, order, second, n_levels))
        self._spans = spans
        self._capture = False
        self._captured: list[Signal] = []

    def _gathered_rows(self, k: int, codes: torch.Tensor, order: torch.Tensor, second: bool,
                       n_levels: int) -> list[tuple[int, InPlace]] | None:
        """For a mixed hidden level whose functions all run in place from their output: the
        runs (rows, function) over its non-identity rows, gathered by function (their flat
        row indices, sorted by function, go to buffer `gather{k}`); identity rows, often a
        quarter of a mixed level, stay where they are. None for any other level."""
        groups = self._groups[k]
        work = [(c, n) for c, n in groups if c >= 0 and self._names[c] != "identity"]
        if (len(groups) == 1 or second or k == n_levels - 1 or not work
                or any(self._in_place[c] is None for c, _ in work)):
            return None
        keep = torch.isin(codes, torch.tensor([c for c, _ in work]))
        self.register_buffer(f"gather{k}", order[keep[order]])
        return [(n, self._in_place[c]) for c, n in work]  # type: ignore[misc]

    def growth_layout(self) -> list[Layout]:
        """Per weight block, where it may grow (built only for a growable group)."""
        return [tuple(t.to(self.biases[0].device) for t in lay)  # type: ignore[misc]
                for lay in self._layouts]

    def weight_blocks(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """(weight, mask) of each padded block: what in-training pruning changes."""
        return list(zip(self.weights, self.masks(), strict=True))

    def capture(self, on: bool) -> None:
        """Record each block's `Signal` in the next forward passes (or stop)."""
        self._capture, self._captured = on, []

    def signals(self) -> list[Signal]:
        """Per weight block, the `Signal` of the last captured forward pass."""
        return self._captured

    def masks(self) -> list[torch.Tensor]:
        """The 0/1 mask of each weight block, in the order of `weights`."""
        return [getattr(self, f"mask{n}") for n in range(len(self.weights))]

    def connection_sums(self, grads: dict[nn.Parameter, torch.Tensor]) -> torch.Tensor:
        """[members, 4]: `SparseNetwork.connection_sums` of each member."""
        out = torch.zeros(self.biases[0].shape[0], 4)
        for w, m in zip(self.weights, self.masks(), strict=True):
            out += masked_sums(w, m, grads.get(w))
        return out

    def copy_into(self, i: int, net: SparseNetwork) -> None:
        """Write member i's current weights (and masks: pruning may have changed them) into
        its own network `net`."""
        with torch.no_grad():
            for n, (w, m, (k, j)) in enumerate(zip(self.weights, self.masks(), self._blocks,
                                                   strict=True)):
                lv, (start, stop) = net.levels[k], self._spans[i][j : j + 2]
                rows, cols = lv.weight.shape[0], stop - start
                lv.weight[:, start:stop] = w[i, :rows, :cols]
                lv.mask[:, start:stop] = m[i, :rows, :cols]
                if lv.weight2 is not None:
                    lv.weight2[:, start:stop] = self.weights2[str(n)][i, :rows, :cols]
            for k, (lv, b) in enumerate(zip(net.levels, self.biases, strict=True)):
                if lv.bias is not None:
                    lv.bias.copy_(b[i, : len(lv.bias)])
                if lv.bias2 is not None:
                    lv.bias2.copy_(self.biases2[str(k)][i, : len(lv.bias2)])

    def _activate(self, k: int, pre: torch.Tensor, pre2: torch.Tensor | None) -> torch.Tensor:
        """Apply each node's activation to pre [genomes, nodes, samples] of level k (and, for
        two-input units, to the second pre-activation pre2 of the same shape), through
        autograd: one function, or one `SortedActivation` node."""
        order, _, runs = self._plan(k)
        if order is None and pre2 is None:
            return runs[0][1](pre) if runs else pre
        return SortedActivation.apply(pre, pre2, getattr(self, f"order{k}"),
                                       getattr(self, f"inverse{k}"), self._runs[k])

    def _plan(self, k: int) -> tuple[torch.Tensor | None, torch.Tensor | None, list[Run]]:
        """Level k's activation as `activation_forward` takes it: (order, inverse, runs);
        no order for a one-function level, no runs for an identity level."""
        groups = self._groups[k]
        if len(groups) == 1:
            code = groups[0][0]
            if code < 0 or self._names[code] == "identity":
                return None, None, []
            return None, None, self._runs[k]
        return getattr(self, f"order{k}"), getattr(self, f"inverse{k}"), self._runs[k]

    def _inputs(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Member i's samples x[rows[i]] [members, samples, features] and labels y[rows[i]]."""
        flat = rows.flatten()
        return (x.index_select(0, flat).view(*rows.shape, x.shape[1]),
                y.index_select(0, flat).view(rows.shape))

    def sample_losses(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
                      smoothing: float = 0.0) -> torch.Tensor:
        """Cross-entropy [members, samples] of member i on the samples x[rows[i]], y[rows[i]]
        with `smoothing` label smoothing (class-major logits: the loss reads them as they
        come out)."""
        xs, ys = self._inputs(x, y, rows)
        return F.cross_entropy(self(xs), ys, reduction="none", label_smoothing=smoothing)

    def direct(self) -> bool:
        """Whether a training step can skip autograd (`train_losses`): the pass runs as one
        group program (no two-input units, no signals captured)."""
        return not (self._capture or len(self.weights2))

    def train_losses(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
                     scale: float, smoothing: float = 0.0) -> torch.Tensor:
        """A training step's forward and backward without autograd (`direct` groups): each
        member's cross-entropy summed over its samples x[rows[i]], y[rows[i]] [members];
        the gradient of their sum times `scale` is added to the parameters' `.grad`.

        What `sample_losses(...).sum() * scale` and `backward()` give, without building or
        walking a graph (about 0.1 ms a group a step): the logits' gradient is
        softmax - target (the one-hot label, smoothed: (1 - e) one-hot + e / classes), and
        the group program's backward runs as autograd runs it."""
        xs, ys = self._inputs(x, y, rows)
        biases, weights = list(self.biases), list(self.weights)
        with torch.no_grad():
            done = _program_forward(self, xs.transpose(1, 2), biases, weights)
            log_p = torch.log_softmax(done[0][-1], 1)
            labels = ys.unsqueeze(1)
            losses = log_p.gather(1, labels).sum((1, 2)).mul_(smoothing - 1.0)
            if smoothing:
                classes = log_p.shape[1]
                losses.sub_(log_p.sum((1, 2)), alpha=smoothing / classes)
                grad = log_p.exp_().sub_(smoothing / classes)
            else:
                grad = log_p.exp_()
            grad.scatter_add_(1, labels, grad.new_full(labels.shape, smoothing - 1.0))
            grad_b, grad_w = _program_backward(self, done, weights, grad.mul_(scale),
                                               [b.requires_grad for b in biases])
            for p, g in zip([*biases, *weights], [*grad_b, *grad_w], strict=True):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad.add_(g)
        return losses

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [members, outputs, samples] of x [members, samples, features]: one
        `_GroupProgram` node, or, with two-input units or while signals are captured,
        autograd's nodes level by level."""
        if self.direct():
            return _GroupProgram.apply(self, x.transpose(1, 2), *self.biases, *self.weights)
        hs = [x.transpose(1, 2)]  # node-major: [genomes, nodes, samples] per level
        blocks = iter(enumerate(self._blocks))
        pending = next(blocks, None)
        effs: list[tuple[torch.Tensor, int, int]] = []
        for k, b in enumerate(self.biases):
            pre = b.unsqueeze(2).expand(-1, -1, x.shape[1])
            second = self.biases2.get(str(k))
            pre2 = None if second is None else second.unsqueeze(2).expand(-1, -1, x.shape[1])
            while pending is not None and pending[1][0] == k:
                n, (_, j) = pending
                mask = getattr(self, f"mask{n}")
                eff = self.weights[n] * mask
                pre = torch.baddbmm(pre, eff, hs[j])
                if pre2 is not None:
                    eff2 = self.weights2[str(n)] * (mask * getattr(self, f"two{k}"))
                    pre2 = torch.baddbmm(pre2, eff2, hs[j])
                effs.append((eff, k, j))
                pending = next(blocks, None)
            hs.append(self._activate(k, pre, pre2))
        if self._capture:
            for eff, _, _ in effs:
                eff.retain_grad()
            self._captured = [(eff, hs[j], hs[k + 1]) for eff, k, j in effs]
        return hs[-1]  # the last level holds exactly the outputs, in order


class Programs(nn.Module):
    """Genomes split among a few batched programs (`groups`) that run side by side, and
    the bookkeeping between genome order and group order, shared by every family's
    batched form. Group k holds the genomes at positions `members[k]`; a group is a
    module with `weights`, `sample_losses(x, y, rows)`, `connection_sums(grads)` and
    `direct()` (and `train_losses` where `direct`). A training step takes the groups'
    losses per group, unordered: `train_losses` (no autograd) where every group is
    `direct`, else `sample_losses` and autograd; `losses` puts them in genome order."""

    def __init__(self, groups: list[nn.Module], members: list[np.ndarray]) -> None:
        super().__init__()
        self.groups = nn.ModuleList(groups)
        self._where = [(0, 0)] * sum(len(m) for m in members)  # genome -> (group, position)
        for gi, m in enumerate(members):
            self.register_buffer(f"members{gi}", torch.from_numpy(m))
            for pos, i in enumerate(m.tolist()):
                self._where[i] = (gi, pos)
        order = np.concatenate(members)
        self.register_buffer("_inverse", torch.from_numpy(np.argsort(order)))
        self.members = [m.tolist() for m in members]
        """Per group, the positions in `genomes` of its members, in order."""
        self._in_order = bool((order == np.arange(len(order))).all())
        """Whether the groups hold the genomes in genome order (nothing to reorder)."""

    def connection_sums(self, grads: dict[nn.Parameter, torch.Tensor]) -> torch.Tensor:
        """[genomes, 4]: each genome's `connection_sums` (`network.masked_sums`), in order."""
        sums = torch.cat([g.connection_sums(grads) for g in self.groups])
        return sums.index_select(0, self._inverse.cpu())

    def group_rows(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """Per group, the rows [members, ...] of its members in `rows` [genomes, ...]."""
        if len(self.groups) == 1 and self._in_order:
            return [rows]
        return [rows.index_select(0, getattr(self, f"members{k}"))
                for k in range(len(self.groups))]

    def sample_losses(self, x: torch.Tensor, y: torch.Tensor, rows: list[torch.Tensor],
                      smoothing: float = 0.0) -> list[torch.Tensor]:
        """Per group, the cross-entropy [members, samples] of member i on x[rows[i]],
        y[rows[i]] with `smoothing` label smoothing (`rows`: per group, as `group_rows`
        gives them). A training step needs only their sum, so nothing is put in genome
        order."""
        return [g.sample_losses(x, y, r, smoothing)
                for g, r in zip(self.groups, rows, strict=True)]

    def direct(self) -> bool:
        """Whether every group can take a training step without autograd."""
        return all(g.direct() for g in self.groups)

    def train_losses(self, x: torch.Tensor, y: torch.Tensor, rows: list[torch.Tensor],
                     scale: float, smoothing: float = 0.0) -> list[torch.Tensor]:
        """Per group, its `train_losses`: each member's summed loss; the gradient of their
        sum times `scale` is added to `.grad` (`direct` groups only)."""
        return [g.train_losses(x, y, r, scale, smoothing)
                for g, r in zip(self.groups, rows, strict=True)]

    def in_order(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Per-group values [members, ...] as one tensor [genomes, ...] in genome order."""
        if len(parts) == 1 and self._in_order:
            return parts[0]
        return torch.cat(parts).index_select(0, self._inverse)

    def losses(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
               smoothing: float = 0.0) -> torch.Tensor:
        """Mean cross-entropy [genomes] of each genome on its samples x[rows[i]], y[rows[i]]."""
        parts = self.sample_losses(x, y, self.group_rows(rows), smoothing)
        return self.in_order([p.mean(dim=1) for p in parts])


class BatchedNetworks(Programs):
    """Many genomes as a few padded, batched programs: one per network depth.

    Padding every genome to the widest level of the deepest one wastes most of the
    work on a mixed population (a one-level network padded to three levels), so
    genomes of equal depth share one `_PaddedGroup` and the groups run side by side.
    `losses(x, y, rows)` runs genome i on the samples x[rows[i]] (each genome sees its
    own minibatch) and returns its mean cross-entropy, in the order of `genomes`.
    """

    def __init__(self, genomes: list[Genome], bias: bool, generators: list[torch.Generator],
                 growable: bool = False):
        nets = [SparseNetwork(g, bias, gen) for g, gen in zip(genomes, generators, strict=True)]
        depth = np.array([len(n.levels) for n in nets])
        members = [np.flatnonzero(depth == d) for d in np.unique(depth)]
        super().__init__([_PaddedGroup([nets[i] for i in m], growable) for m in members],
                         members)
        self._nets = nets

    def padded_weights(self) -> int:
        """Weights the batched program multiplies per sample (padding included)."""
        return sum(w.numel() for g in self.groups for w in g.weights)

    def unbatch(self, i: int) -> SparseNetwork:
        """Genome i's network (on the CPU) holding its current trained weights."""
        group, pos = self._where[i]
        self.groups[group].copy_into(pos, self._nets[i])
        return self._nets[i]
