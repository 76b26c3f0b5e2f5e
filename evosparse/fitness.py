"""Fitness: train each candidate within the budget and score it.

`evaluate_batch` is a plain picklable function of (genomes, config) with no
global state, so any evaluator (in-process or a Ray worker) can run it. Each
genome is trained with a torch Generator seeded from (run seed, genome id) and
a fixed thread count, so its result does not depend on the evaluation order,
the batch it sits in, or the worker that runs it.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from evosparse.data import Task
from evosparse.flops import count_cost
from evosparse.genome import Genome
from evosparse.network import SparseNetwork
from evosparse.space import TrainingSpec

Status = Literal["ok", "nan", "failed"]


@dataclass(frozen=True)
class EvalResult:
    """What one evaluation measured; `val_accuracy` and `flops` are the objectives."""

    genome_id: int
    generation: int
    status: Status
    val_accuracy: float
    test_accuracy: float
    flops: int
    params: int
    connections: int
    wall_time: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> EvalResult:
        return EvalResult(**d)


@dataclass(frozen=True)
class FitnessConfig:
    """Everything an evaluation needs besides the genome; picklable."""

    task: Task
    training: TrainingSpec
    bias: bool
    run_seed: int
    threads: int = 1
    device: str = "cpu"


class Diverged(Exception):
    """Training produced a non-finite loss or output."""


def evaluation_seed(run_seed: int, genome_id: int) -> int:
    """The seed of one evaluation, derived from the run seed and the genome id only."""
    return int(np.random.SeedSequence([run_seed, genome_id]).generate_state(1)[0])


def _optimizer(params: list[torch.nn.Parameter], spec: TrainingSpec) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                               weight_decay=spec.weight_decay)
    cls = torch.optim.AdamW if spec.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=spec.lr, weight_decay=spec.weight_decay)


def _accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        logits = net(x)
    if not torch.isfinite(logits).all():
        raise Diverged("network output is not finite on evaluation data")
    return float((logits.argmax(dim=1) == y).float().mean())


def _train_and_score(
    genome: Genome, cfg: FitnessConfig, device: torch.device
) -> tuple[float, float]:
    gen = torch.Generator().manual_seed(evaluation_seed(cfg.run_seed, genome.genome_id))
    net = SparseNetwork(genome, cfg.bias, gen).to(device)
    opt = _optimizer(list(net.parameters()), cfg.training)
    t = cfg.task
    x = torch.from_numpy(t.x_train).to(device)
    y = torch.from_numpy(t.y_train).to(device)
    bs = cfg.training.batch_size
    for epoch in range(cfg.training.epochs):
        perm = torch.randperm(len(x), generator=gen).to(device)
        for step, i in enumerate(range(0, len(x), bs)):
            idx = perm[i : i + bs]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            if not torch.isfinite(loss):
                raise Diverged(f"loss became {loss.item()} at epoch {epoch}, step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()

    def split(a: np.ndarray, b: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(a).to(device), torch.from_numpy(b).to(device)

    return _accuracy(net, *split(t.x_val, t.y_val)), _accuracy(net, *split(t.x_test, t.y_test))


def evaluate_genome(genome: Genome, cfg: FitnessConfig) -> EvalResult:
    """Train and score one genome; a diverged or raising training is recorded, not raised."""
    start = time.perf_counter()
    cost = count_cost(genome, cfg.bias)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available()
                          else "cpu" if cfg.device == "auto" else cfg.device)
    status: Status = "ok"
    error = None
    val = test = 0.0
    try:
        val, test = _train_and_score(genome, cfg, device)
    except Diverged as exc:
        status, error = "nan", str(exc)
    except Exception:  # noqa: BLE001 - a broken candidate must not stop the search
        status, error = "failed", traceback.format_exc()
    return EvalResult(
        genome_id=genome.genome_id,
        generation=genome.generation,
        status=status,
        val_accuracy=val,
        test_accuracy=test,
        flops=cost.flops,
        params=cost.params,
        connections=cost.connections,
        wall_time=time.perf_counter() - start,
        error=error,
    )


def evaluate_batch(genomes: list[Genome], cfg: FitnessConfig) -> list[EvalResult]:
    """Evaluate genomes in order under the configured thread count (restored afterwards)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return [evaluate_genome(g, cfg) for g in genomes]
    finally:
        torch.set_num_threads(previous)
