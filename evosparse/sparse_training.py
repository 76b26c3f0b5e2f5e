"""In-training pruning inside the fitness budget; the removed connections go back into the genome.

- `magnitude` (Zhu & Gupta, 2017, "To prune, or not to prune"): every `interval`
  steps between `start_epoch` and `end_epoch`, the weakest connections (|w|) are
  removed until the network keeps the cubic schedule's share of its starting
  connections, reaching `density` at the end.
- `snip` (Lee et al., 2019, "SNIP: single-shot network pruning"): at the first
  step, keep the `density` share of connections with the largest |w x dL/dw|.
- `dissipating`: after `watch_epochs`, remove the connections whose weight never
  moved more than `threshold` x |w0| from its initial value w0 (their gradients
  dissipated: the network does not use them).

- `set` (Mocanu et al., 2018, "Scalable training of artificial neural networks with
  adaptive sparse connectivity"), `rigl` (Evci et al., 2020, "Rigging the lottery")
  and `ctre` (Atashgahi et al., 2023, "A brain-inspired algorithm for training highly
  sparse neural networks"): every `interval` steps between `start_epoch` and
  `end_epoch`, remove the share zeta_t of each network's connections with the
  smallest |w| and grow as many new ones, chosen at random (SET), by the largest
  |dL/dw| of the dense weight (RigL) or by the largest |cosine similarity| between
  the source's and the destination's activations on the minibatch (CTRE: no dense
  gradient). zeta_t decays from `zeta` (cosine, RigL's schedule; linear; or
  constant, SET's). The density stays the same. A new connection starts at w = 0
  with fresh optimiser state (as RigL does); it may join any two compiled nodes
  whose positions rise along it, so the network stays a DAG of the same depth.

Every choice is made per genome over all its connections, on tensors with a
leading genome axis, so a genome trained alone or in a padded batch loses and
grows the same connections (up to float rounding; SET's random choice and every
tie are decided by a hash of (genome seed, step, source id, destination id), not
by where a connection sits in memory). `fitness.py` then disables the genes of
removed connections and the driver adds genes, with registry ids, for grown ones.

In conv families an entry is one kernel tap (`conv_network.py`): the same methods
remove taps, regrowth grows taps back only inside the kernels the genome compiled (a
tap's tie-breaking id is source id x taps + tap), and a kernel's kept taps go back into
the genome. CTRE's similarity for a tap is that of the channel's map with the source map
as the tap reads it (shifted, strided: `conv_network.tap_signal`).
"""

from __future__ import annotations

import math
from typing import Protocol, cast

import numpy as np
import torch

from evosparse.network import Layout, Signal
from evosparse.space import REGROWTH, SparseTrainingSpec

Block = tuple[torch.nn.Parameter, torch.Tensor]
"""A weight and its 0/1 mask, with a leading genome axis in a padded group (none for one
genome): [genomes, rows, cols] in an MLP, [genomes, channels, sources, taps...] in a
conv network. Each entry (a connection, or one kernel tap) is pruned on its own."""


class Source(Protocol):
    """The network (or padded group) whose blocks a `Pruner` removes entries from."""

    def weight_blocks(self) -> list[Block]: ...


class Growable(Source, Protocol):
    """A `Source` that regrowth methods can grow connections in, as `network.py` has it."""

    def capture(self, on: bool) -> None: ...
    def signals(self) -> list[Signal]: ...
    def growth_layout(self) -> list[Layout]: ...


def _hash_scores(seeds: np.ndarray, step: int, rows: torch.Tensor, cols: torch.Tensor
                 ) -> torch.Tensor:
    """A uniform [0, 1) number per (genome seed, step, destination id, source id), from
    SplitMix64: random, reproducible, and independent of any memory layout."""
    r = rows.cpu().numpy().astype(np.uint64)[:, :, None]
    c = cols.cpu().numpy().astype(np.uint64)[:, None, :]
    with np.errstate(over="ignore"):
        x = (seeds.astype(np.uint64)[:, None, None] * np.uint64(0x9E3779B97F4A7C15)
             ^ np.uint64(step) * np.uint64(0xC2B2AE3D27D4EB4F)
             ^ r * np.uint64(0x165667B19E3779F9) ^ c * np.uint64(0xD6E8FEB86659FD93))
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return torch.from_numpy((x >> np.uint64(11)).astype(np.float64) * 2.0**-53)


def _flat(blocks: list[torch.Tensor]) -> torch.Tensor:
    """Per genome, all blocks' entries in one row: [genomes, entries]."""
    return torch.cat([b.flatten(1) for b in blocks], dim=1)


def _ranks(order: torch.Tensor) -> torch.Tensor:
    """The rank of each entry, per row, from a row-wise argsort `order`."""
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order)
                  .contiguous())
    return rank


def _cosine(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """|cosine similarity| [genomes, rows, cols] of destination rows and source columns'
    activations ([genomes, nodes, samples] each)."""
    a = torch.nn.functional.normalize(dst.detach(), dim=2)
    b = torch.nn.functional.normalize(src.detach(), dim=2)
    return torch.bmm(a, b.transpose(1, 2)).abs()


def _quantised(score: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    """Scores [genomes, entries] rounded to 1e-4 of each genome's best free score.

    Scores that are equal in exact arithmetic (a constant input column has the same
    cosine with every destination) differ in their last bits between a genome trained
    alone and in a padded batch; rounded, they tie, and the hash decides.
    """
    top = torch.where(free, score, 0.0).amax(dim=1, keepdim=True)
    return torch.round(score / top.clamp(min=1e-30) * 1e4)


class Pruner:
    """Applies one pruning or prune-and-regrow method to a group of genomes' weight
    blocks during training; `seeds` (one per genome) decide random choices and ties."""

    def __init__(self, spec: SparseTrainingSpec, source: Source, steps_per_epoch: int,
                 seeds: list[int]) -> None:
        self.spec, self.source, self.steps_per_epoch = spec, source, steps_per_epoch
        self.blocks, self.seeds = source.weight_blocks(), np.array(seeds, dtype=np.uint64)
        self.start = self._active().clone()  # connections per genome before training
        if spec.method == "dissipating":
            self.initial = [self._rows(w).detach().clone() for w, _ in self.blocks]
            self.moved = [torch.zeros_like(w) for w in self.initial]
        if spec.method in REGROWTH:
            self.layout = cast(Growable, source).growth_layout()
            self._grow_scores: list[torch.Tensor] = []

    def _rows(self, t: torch.Tensor) -> torch.Tensor:
        """`t` (a block's weight, mask, gradient, optimiser state or scores) as [genomes,
        entries]: a view, so writes reach the block."""
        return t.view(len(self.seeds), -1)

    def _window(self) -> tuple[int, int]:
        s, n = self.spec, self.steps_per_epoch
        return round(s.start_epoch * n), round(s.end_epoch * n)

    def _update_at(self, done: int) -> bool:
        """True when a regrowth method changes the topology after `done` optimiser steps."""
        first, last = self._window()
        return (self.spec.method in REGROWTH and first < done <= last
                and (done - first) % self.spec.interval == 0)

    def before_forward(self, step: int) -> None:
        """Before the forward pass of step `step`: RigL and CTRE look at the coming
        step's gradient or activations when the topology changes after it."""
        if self.spec.method in ("rigl", "ctre"):
            cast(Growable, self.source).capture(self._update_at(step + 1))

    def _active(self) -> torch.Tensor:
        return sum(self._rows(m).sum(1) for _, m in self.blocks)  # type: ignore[return-value]

    def after_backward(self, step: int) -> None:
        """Before the optimiser step `step` (0-based, over the whole training)."""
        if self.spec.method == "snip" and step == 0:
            scores = [(self._rows(w) * self._rows(w.grad if w.grad is not None
                                                  else torch.zeros_like(w))).abs()
                      for w, _ in self.blocks]
            self._keep_best(scores, torch.ceil(self.start * self.spec.density))
        elif self.spec.method in ("rigl", "ctre") and self._update_at(step + 1):
            growable = cast(Growable, self.source)
            self._grow_scores = [self._rows(
                (eff.grad.abs() if eff.grad is not None else torch.zeros_like(eff))
                if self.spec.method == "rigl" else _cosine(src, dst))
                for eff, src, dst in growable.signals()]
            growable.capture(False)

    def after_step(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        """After the optimiser step `step`. Weights whose mask is 0 are set back to 0:
        their optimiser state (from before they were pruned) may have moved them, and a
        padded group's forward (`batched._GroupProgram`) uses the weights unmasked."""
        with torch.no_grad():
            for w, m in self.blocks:
                w.mul_(m)
        s, done = self.spec, step + 1
        if self._update_at(done):
            self._prune_and_grow(done, optimizer)
        elif s.method == "magnitude":
            first, last = self._window()
            if first <= done <= last and ((done - first) % s.interval == 0 or done == last):
                progress = (done - first) / max(last - first, 1)
                share = s.density + (1 - s.density) * (1 - progress) ** 3
                self._keep_best([self._rows(w).abs() for w, _ in self.blocks],
                                torch.ceil(self.start * share))
        elif s.method == "dissipating":
            with torch.no_grad():
                for moved, w, w0 in zip(self.moved, (b[0] for b in self.blocks), self.initial,
                                        strict=True):
                    torch.maximum(moved, (self._rows(w) - w0).abs(), out=moved)
            if done == round(s.watch_epochs * self.steps_per_epoch):
                scores = [(mv > s.threshold * w0.abs()).float()
                          for mv, w0 in zip(self.moved, self.initial, strict=True)]
                self._keep_best(scores, None)

    def _prune_and_grow(self, done: int, optimizer: torch.optim.Optimizer) -> None:
        """Remove the share zeta_t of each genome's connections (smallest |w|) and grow as
        many among the allowed free places, best score first (ties: by hash)."""
        s = self.spec
        first, last = self._window()
        progress = (done - first) / max(last - first, 1)
        zeta = s.zeta * {"cosine": 0.5 * (1 + math.cos(math.pi * progress)),
                         "linear": 1 - progress, "constant": 1.0}[s.zeta_decay]
        with torch.no_grad():
            masks = [self._rows(m) for _, m in self.blocks]
            free = [self._rows(allowed) & (m == 0)
                    for (allowed, _, _), m in zip(self.layout, masks, strict=True)]
            ties = [self._rows(_hash_scores(self.seeds, done, rows, cols).to(m.device))
                    for (_, rows, cols), m in zip(self.layout, masks, strict=True)]
            scores = ties if s.method == "set" else self._grow_scores
            active = self._active()
            removed = torch.round(active * zeta)
            self._keep_best([self._rows(w).abs() for w, _ in self.blocks], active - removed)
            score = _flat(scores).to(torch.float64)
            if s.method != "set":  # gradient or similarity scores: near ties are ties
                score = _quantised(score, _flat(free))
            score = torch.where(_flat(free), score, -math.inf)
            order = _flat(ties).argsort(dim=1, descending=True, stable=True)
            order = order.gather(1, score.gather(1, order).argsort(dim=1, descending=True,
                                                                   stable=True))
            chosen = _ranks(order) < torch.minimum(removed, _flat(free).sum(1))[:, None]
            for (w, _), g in zip(self.blocks, self._set(chosen, masks, 1.0), strict=True):
                for state in optimizer.state.get(w, {}).values():
                    if isinstance(state, torch.Tensor) and state.shape == w.shape:
                        self._rows(state)[g] = 0.0

    def _set(self, chosen: torch.Tensor, masks: list[torch.Tensor], value: float
             ) -> list[torch.Tensor]:
        """Set the mask of the `chosen` entries ([genomes, all blocks' entries]) to `value`
        and their weights to 0; return the choice cut back into blocks."""
        out, at = [], 0
        for (w, _), m in zip(self.blocks, masks, strict=True):
            sel = chosen[:, at : at + m.shape[1]]
            at += m.shape[1]
            m[sel] = value
            self._rows(w)[sel] = 0.0
            out.append(sel)
        return out

    def _keep_best(self, scores: list[torch.Tensor], keep: torch.Tensor | None) -> None:
        """Per genome, remove active connections from the lowest score up until `keep` are
        left; with `keep` None, remove those scoring 0."""
        with torch.no_grad():
            masks = [self._rows(m) for _, m in self.blocks]
            flat = _flat([torch.where(m > 0, sc, math.inf)
                          for m, sc in zip(masks, scores, strict=True)])
            if keep is None:
                drop = flat == 0
            else:
                remove = (self._active() - keep).clamp(min=0)
                drop = _ranks(flat.argsort(dim=1, stable=True)) < remove[:, None]
            self._set(drop, masks, 0.0)
