"""Learning-rate schedules inside one candidate's training budget.

A schedule is a multiplier of `training.lr` at each optimiser step, a function of the
step and of the budget's total steps only, so batched and one-by-one training (and a
resumed run) follow the same rates. `cosine` anneals to zero at the budget's end
(Loshchilov & Hutter, 2017); `onecycle` warms up linearly over the first 30% of the steps
from lr / 25, then anneals by a cosine to lr / 10^4 (Smith & Topin, 2019, as torch's
OneCycleLR).
"""

from __future__ import annotations

import math

import torch

ONECYCLE_WARMUP = 0.3
"""Share of the steps the one-cycle schedule spends warming up."""


def lr_factor(schedule: str, step: int, total: int) -> float:
    """The multiplier of the base learning rate at optimiser step `step` (0-based) of `total`."""
    if schedule == "constant" or total <= 1:
        return 1.0
    t = step / (total - 1)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule == "onecycle":
        if t < ONECYCLE_WARMUP:
            return 1 / 25 + (1 - 1 / 25) * t / ONECYCLE_WARMUP
        u = (t - ONECYCLE_WARMUP) / (1 - ONECYCLE_WARMUP)
        return 1e-4 + (1 - 1e-4) * 0.5 * (1.0 + math.cos(math.pi * u))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


def set_lr(opt: torch.optim.Optimizer, base: float, schedule: str, step: int, total: int
           ) -> None:
    """Set every parameter group's learning rate for optimiser step `step`."""
    if schedule == "constant":
        return
    lr = base * lr_factor(schedule, step, total)
    for group in opt.param_groups:
        group["lr"] = lr
