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

Every choice is made per genome over all its connections, on tensors with a
leading genome axis, so a genome trained alone or in a padded batch loses the
same connections (up to float rounding). Removed connections are masked out
for the rest of the training; `fitness.py` disables their genes afterwards.
"""

from __future__ import annotations

import math

import torch

from evosparse.space import SparseTrainingSpec

Block = tuple[torch.nn.Parameter, torch.Tensor]
"""A weight and its 0/1 mask, [genomes, rows, cols] (or [rows, cols] for one genome)."""


def _3d(t: torch.Tensor) -> torch.Tensor:
    return t if t.dim() == 3 else t.unsqueeze(0)


class Pruner:
    """Applies one pruning method to a group of genomes' weight blocks during training."""

    def __init__(self, spec: SparseTrainingSpec, blocks: list[Block], steps_per_epoch: int
                 ) -> None:
        self.spec, self.blocks, self.steps_per_epoch = spec, blocks, steps_per_epoch
        self.start = self._active().clone()  # connections per genome before training
        if spec.method == "dissipating":
            self.initial = [_3d(w).detach().clone() for w, _ in blocks]
            self.moved = [torch.zeros_like(w) for w in self.initial]

    def _active(self) -> torch.Tensor:
        return sum(_3d(m).sum((1, 2)) for _, m in self.blocks)  # type: ignore[return-value]

    def after_backward(self, step: int) -> None:
        """Before the optimiser step `step` (0-based, over the whole training)."""
        if self.spec.method == "snip" and step == 0:
            scores = [(_3d(w) * _3d(w.grad if w.grad is not None else torch.zeros_like(w))).abs()
                      for w, _ in self.blocks]
            self._keep_best(scores, torch.ceil(self.start * self.spec.density))

    def after_step(self, step: int) -> None:
        """After the optimiser step `step`."""
        s, done = self.spec, step + 1
        if s.method == "magnitude":
            first, last = (round(e * self.steps_per_epoch) for e in (s.start_epoch, s.end_epoch))
            if first <= done <= last and ((done - first) % s.interval == 0 or done == last):
                progress = (done - first) / max(last - first, 1)
                share = s.density + (1 - s.density) * (1 - progress) ** 3
                self._keep_best([_3d(w).abs() for w, _ in self.blocks],
                                torch.ceil(self.start * share))
        elif s.method == "dissipating":
            with torch.no_grad():
                for moved, w, w0 in zip(self.moved, (b[0] for b in self.blocks), self.initial,
                                        strict=True):
                    torch.maximum(moved, (_3d(w) - w0).abs(), out=moved)
            if done == round(s.watch_epochs * self.steps_per_epoch):
                scores = [(mv > s.threshold * w0.abs()).float()
                          for mv, w0 in zip(self.moved, self.initial, strict=True)]
                self._keep_best(scores, None)

    def _keep_best(self, scores: list[torch.Tensor], keep: torch.Tensor | None) -> None:
        """Per genome, remove active connections from the lowest score up until `keep` are
        left; with `keep` None, remove those scoring 0."""
        with torch.no_grad():
            masks = [_3d(m) for _, m in self.blocks]
            flat = torch.cat([torch.where(m > 0, sc, math.inf).flatten(1)
                              for m, sc in zip(masks, scores, strict=True)], dim=1)
            if keep is None:
                drop = flat == 0
            else:
                remove = (self._active() - keep).clamp(min=0)
                order = flat.argsort(dim=1, stable=True)
                rank = torch.empty_like(order)
                rank.scatter_(1, order, torch.arange(flat.shape[1]).expand_as(order).contiguous())
                drop = rank < remove[:, None]
            at = 0
            for (w, _), m in zip(self.blocks, masks, strict=True):
                d = drop[:, at : at + m[0].numel()].view_as(m)
                at += m[0].numel()
                m[d] = 0.0
                _3d(w)[d] = 0.0
