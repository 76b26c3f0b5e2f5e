"""Does a search beat what a practitioner runs instead, in the same wall time? (issue 18)

    python benchmarks/baselines.py                      # digits and MNIST-1D, 3 seeds each
    python benchmarks/baselines.py --quick              # CI: digits, 1 seed, 3 generations
    python benchmarks/baselines.py --spaces search_spaces/mnist1d.yaml --seeds 1

For each space and seed, in one process and one after another: the evosparse search
(the space as shipped, seed overridden, `--set` keys changed; without its refit,
`training.refit_epochs`, unless `--set training.refit_epochs=N` puts it back) runs and its time T is
recorded (wall time, or this process's CPU time with `--clock cpu`; the run directory is
written, as a user's run writes it). Then each baseline gets exactly T seconds on the
same clock and the same train / val / test split (`evosparse.data.load_task`), training
under the same thread count (`evaluation.threads`):

- prune: dense MLPs over a grid of depths and widths, trained `--dense-epochs`, then
  pruned by global weight magnitude down a ladder of densities with `--finetune-epochs`
  of fine-tuning after each step (Han et al., 2015); every trained or fine-tuned network
  is a point; the grid restarts with fresh seeds while time is left.
- nsga2 / random: Optuna's NSGA-II and random samplers over a parametric sparse MLP
  (depth 1-3, a width per layer, one random mask density, activation among the space's
  `activations.hidden`, learning rate), `--trial-epochs` a trial, minimising (val error,
  FLOPs).
- cnn (1-channel conv1d spaces, by `--methods cnn`): the MNIST-1D paper's CNN shape
  (`tiny_cnn.py`) at a ladder of widths (`--cnn-channels`), `--cnn-epochs` each, with the
  space's `training.shift`; its FLOPs as evosparse counts a conv network.
- cnn-prune (1-channel conv1d spaces): that CNN at `--cnn-prune-channels` widths, trained
  `--cnn-epochs`, then pruned by global weight magnitude (kernel taps and head weights
  together) down `--cnn-densities`, each step fine-tuned `--cnn-finetune-epochs` (Han et al.
  2015, on a CNN); every network is a point at its non-zero FLOPs.

When the search refits (`--set training.refit_epochs=N`), so does every baseline
(`--baseline-refit-epochs` to choose another N): each member of its validation front,
copied when it was trained, trains N epochs more on the training and validation splits
together with its masks kept (its own optimiser: Adam at its lr for the MLPs, one-cycle
AdamW for the CNNs) and keeps the validation accuracy that chose it, as the search's
refit does. The baselines' refits run after their T seconds, off the clock (a head start
for the baselines, so a lead of the search's is not the refit's doing).

A network's FLOPs are counted exactly as evosparse counts the same sparse MLP
(`mlp_flops`, checked against `evosparse.flops.count_cost` at start-up): 2 per non-zero
weight into a node on a path to an output, a bias per such computed node, the
activation's cost per such hidden node. Each method's front is chosen on validation
(`pareto.first_front`); val-HV is its hypervolume of (val error, FLOPs) and test-HV the
hypervolume of the same members' (test error, FLOPs), both against the space's reference
point (`pareto.hypervolume`). A baseline stops at the first epoch boundary after T; only
networks whose training finished count. Torch's first-call costs are paid before any
method starts. The last lines are `test_hv_ratio=... best_test_gap_points=...` (the
same minimum of test-HV ratios; the largest lead of a baseline's best test accuracy) and
`hv_ratio=<min over spaces and seeds of evosparse's val-HV / the best baseline's>`.
"""

from __future__ import annotations

import argparse
import copy
import math
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import optuna
import tiny_cnn  # benchmarks/: the script's own folder is on sys.path
import torch
import torch.nn.functional as F
import yaml
from rich.console import Console
from rich.table import Table

from evosparse.activations import activation_cost, torch_activation
from evosparse.data import Task, load_task
from evosparse.evaluators import LocalEvaluator
from evosparse.families import ConvFamily, family_of
from evosparse.fitness import warm_up
from evosparse.flops import count_cost
from evosparse.genome import InnovationRegistry
from evosparse.operators import dense_mlp_genome
from evosparse.pareto import first_front, hypervolume
from evosparse.rundir import RunDir
from evosparse.runner import start_run
from evosparse.space import SearchSpace, load_space

Masks = list[np.ndarray]
"""One bool array [fan_out, fan_in] per layer of an MLP: True where a weight is kept."""


@dataclass(frozen=True)
class Point:
    """One trained network: its accuracies and non-zero FLOPs per sample."""

    val: float
    test: float
    flops: int


@dataclass(frozen=True)
class Summary:
    """A method's val-chosen front, scored."""

    val_hv: float
    test_hv: float
    best_test: float
    best_test_flops: int  # FLOPs of the member with the best test accuracy
    best_test_budget: float  # best test accuracy at or below the FLOPs budget (0: none)
    points: int
    seconds: float  # on the benchmark's clock
    wall: float
    refit_seconds: float = 0.0  # the front's refit, after `seconds` (baselines only)


Refit = Callable[[torch.nn.Module], float]
"""Trains a network on the training and validation splits together, masks kept; returns its
test accuracy afterwards."""


def _dominates(a: Point, b: Point) -> bool:
    """`a` is at least as accurate on validation and as cheap as `b`, and better in one."""
    return a.val >= b.val and a.flops <= b.flops and (a.val > b.val or a.flops < b.flops)


class Kept:
    """A method's points and, when the baselines refit (`refit`), a copy of each network on
    its running validation front with the refit for it, so that its final front can refit."""

    def __init__(self, refit: bool) -> None:
        self.refit = refit
        self.points: list[Point] = []
        self.nets: dict[int, tuple[torch.nn.Module, Refit]] = {}

    def add(self, point: Point, net: torch.nn.Module, refit: Refit) -> None:
        """Record `point`, the scores of `net` as trained now."""
        self.points.append(point)
        if not self.refit or any(_dominates(self.points[i], point) for i in self.nets):
            return
        self.nets = {i: kept for i, kept in self.nets.items()
                     if not _dominates(point, self.points[i])}
        self.nets[len(self.points) - 1] = (copy.deepcopy(net), refit)

    def refitted(self) -> list[Point]:
        """The points, each front member's with its test accuracy after its refit."""
        if not self.refit:
            return self.points
        front = set(first_front([(1 - p.val, float(p.flops)) for p in self.points]))
        return [replace(p, test=self.nets[i][1](self.nets[i][0])) if i in front else p
                for i, p in enumerate(self.points)]


def mlp_flops(masks: Masks, activation: str, bias: bool = True) -> int:
    """Non-zero FLOPs of a masked MLP, as `evosparse.flops.count_cost` counts its genome.

    Only nodes with a path to an output are computed (outputs always are); a weight counts
    (2 FLOPs) when it is kept and feeds a computed node; each computed node adds its bias,
    each computed hidden node its activation's cost (outputs are identity logits).
    """
    active = np.ones(masks[-1].shape[0], dtype=bool)
    weights = nodes = hidden = 0
    for k, mask in enumerate(reversed(masks)):
        live = mask & active[:, None]
        weights += int(live.sum())
        nodes += int(active.sum())
        hidden += int(active.sum()) if k else 0
        active = live.any(axis=0)
    return 2 * weights + (nodes if bias else 0) + hidden * activation_cost(activation)


def check_flops(rng: np.random.Generator) -> None:
    """`mlp_flops` equals evosparse's count on a random sparse two-layer MLP genome."""
    sizes, act = [6, 5, 4, 3], "tanh"
    masks = [rng.random((b, a)) < 0.4 for a, b in zip(sizes, sizes[1:], strict=False)]
    reg = InnovationRegistry(sizes[0], sizes[-1])
    g = dense_mlp_genome(0, reg, sizes[1:-1], act)
    hidden = np.sort(g.node_id[g.node_kind == 1])
    ids = [reg.input_ids, hidden[:5], hidden[5:], reg.output_ids]
    where = {int(n): (k, i) for k, layer in enumerate(ids) for i, n in enumerate(layer)}
    off = [int(innov) for innov, s, d in zip(g.conn_innov, g.conn_src, g.conn_dst, strict=True)
           if not masks[where[int(s)][0]][where[int(d)][1], where[int(s)][1]]]
    expected = count_cost(g.with_disabled(tuple(off)), bias=True).flops
    assert mlp_flops(masks, act) == expected, (mlp_flops(masks, act), expected)


class MaskedMLP(torch.nn.Module):
    """An MLP whose weights are multiplied by fixed masks (the usual way to train one sparse)."""

    def __init__(self, sizes: list[int], activation: str, masks: Masks, gen: torch.Generator):
        super().__init__()
        self.act = torch_activation(activation)
        self.activation = activation
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for a, b in zip(sizes, sizes[1:], strict=False):
            bound = 1.0 / math.sqrt(a)  # torch.nn.Linear's default initialisation, seeded
            self.weights.append(torch.nn.Parameter((torch.rand(b, a, generator=gen) * 2 - 1)
                                                   * bound))
            self.biases.append(torch.nn.Parameter((torch.rand(b, generator=gen) * 2 - 1) * bound))
        self.set_masks(masks)

    def set_masks(self, masks: Masks) -> None:
        self.masks = [torch.from_numpy(m.astype(np.float32)) for m in masks]

    def numpy_masks(self) -> Masks:
        return [m.numpy() > 0 for m in self.masks]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        for k, (w, b, m) in enumerate(zip(self.weights, self.biases, self.masks, strict=True)):
            x = F.linear(x, w * m, b)
            x = x if k == last else self.act(x)
        return x


class Deadline(Exception):
    """The method's wall time is spent."""


def raising(expired: Callable[[], bool]) -> Callable[[], None]:
    """A `before_epoch` for `tiny_cnn`: raises `Deadline` once `expired()`."""
    def stop() -> None:
        if expired():
            raise Deadline
    return stop


def train(net: MaskedMLP, task: Task, epochs: int, lr: float, batch_size: int,
          gen: torch.Generator, expired: Callable[[], bool], smoothing: float = 0.0) -> None:
    """Adam on the training split (cross-entropy with `smoothing` label smoothing); raises
    `Deadline` at the first epoch boundary where `expired()`."""
    opt = torch.optim.Adam(list(net.parameters()), lr=lr)
    x, y = torch.from_numpy(task.x_train), torch.from_numpy(task.y_train)
    for _ in range(epochs):
        if expired():
            raise Deadline
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x[idx]), y[idx], label_smoothing=smoothing).backward()
            opt.step()


def score(net: MaskedMLP, task: Task) -> Point:
    """Val and test accuracy and non-zero FLOPs of a trained network."""
    with torch.no_grad():
        val = net(torch.from_numpy(task.x_val)).argmax(1).numpy()
        test = net(torch.from_numpy(task.x_test)).argmax(1).numpy()
    return Point(float((val == task.y_val).mean()), float((test == task.y_test).mean()),
                 mlp_flops(net.numpy_masks(), net.activation))


def mlp_refit(task: Task, epochs: int, lr: float, args: argparse.Namespace, seed: int
              ) -> Refit:
    """The refit of a baseline's MLP: `epochs` of `train` at `lr` on train + val."""
    def refit(net: torch.nn.Module) -> float:
        assert isinstance(net, MaskedMLP)
        train(net, task.with_val_in_train(), epochs, lr, args.batch_size,
              torch.Generator().manual_seed(seed), lambda: False, args.label_smoothing)
        return score(net, task).test
    return refit


def magnitude_masks(net: MaskedMLP, density: float) -> Masks:
    """Global magnitude pruning: keep the `density` share of all weights with the largest
    |w| (among those still kept)."""
    mags = [(w.detach().abs() * m).numpy() for w, m in zip(net.weights, net.masks, strict=True)]
    total = sum(m.size for m in mags)
    keep = max(1, int(round(density * total)))
    threshold = np.sort(np.concatenate([m.ravel() for m in mags]))[total - keep]
    return [(m >= threshold) & (m > 0) for m in mags]


def prune_baseline(task: Task, seed: int, expired: Callable[[], bool], args: argparse.Namespace,
                   activation: str, kept: Kept) -> None:
    """Dense grid, trained, then pruned down the density ladder with fine-tuning (Han et al.)."""
    refit = mlp_refit(task, args.refit_epochs, args.lr, args, seed)
    grid = [(w, d) for w in args.widths for d in args.depths]
    try:
        for restart in range(10**6):
            for j, (width, depth) in enumerate(grid):
                gen = torch.Generator().manual_seed(seed * 100_003 + restart * 1_009 + j)
                sizes = [task.n_features, *[width] * depth, task.n_classes]
                full = [np.ones((b, a), dtype=bool) for a, b in zip(sizes, sizes[1:],
                                                                    strict=False)]
                net = MaskedMLP(sizes, activation, full, gen)
                train(net, task, args.dense_epochs, args.lr, args.batch_size, gen, expired,
                      args.label_smoothing)
                kept.add(score(net, task), net, refit)
                for density in args.densities:
                    net.set_masks(magnitude_masks(net, density))
                    train(net, task, args.finetune_epochs, args.lr, args.batch_size, gen,
                          expired, args.label_smoothing)
                    kept.add(score(net, task), net, refit)
    except Deadline:
        pass


def optuna_baseline(task: Task, seed: int, expired: Callable[[], bool], args: argparse.Namespace,
                    activations: tuple[str, ...], sampler: optuna.samplers.BaseSampler,
                    kept: Kept) -> None:
    """Optuna over a parametric sparse MLP (one random mask density for all layers)."""

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        depth = trial.suggest_int("depth", 1, 3)
        widths = [trial.suggest_int(f"width_{k}", 8, 256, log=True) for k in range(3)]
        density = trial.suggest_float("density", 0.02, 1.0, log=True)
        act = trial.suggest_categorical("activation", list(activations))
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        sizes = [task.n_features, *widths[:depth], task.n_classes]
        rng = np.random.default_rng([seed, trial.number])
        masks = [rng.random((b, a)) < density for a, b in zip(sizes, sizes[1:], strict=False)]
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        net = MaskedMLP(sizes, act, masks, gen)
        try:
            train(net, task, args.trial_epochs, lr, args.batch_size, gen, expired,
                  args.label_smoothing)
        except Deadline:
            trial.study.stop()
            raise optuna.TrialPruned from None
        p = score(net, task)
        kept.add(p, net, mlp_refit(task, args.refit_epochs, lr, args, seed))
        return 1.0 - p.val, float(p.flops)

    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(objective, n_trials=10**6)


def _signals(task: Task, space: SearchSpace, method: str
             ) -> tuple[tuple[int, ...], torch.Tensor, torch.Tensor]:
    """A 1-channel conv1d space's sample shape and training signals and labels; exits
    naming `method` on any other space."""
    family = family_of(space.network, space.dataset.name, task.n_features)
    shape = family.geometry.shape if isinstance(family, ConvFamily) else None
    if shape is None or len(shape) != 2 or shape[0] != 1:
        raise SystemExit(f"--methods {method}: {space.name} is not a 1-channel conv1d space "
                         f"(network.family {space.network.family}, input shape {shape})")
    x = torch.from_numpy(task.x_train).view(len(task.x_train), *shape)
    return shape, x, torch.from_numpy(task.y_train).long()


def _cnn_point(net: torch.nn.Module, task: Task, shape: tuple[int, ...], flops: int) -> Point:
    """A trained CNN's val and test accuracy at `flops`."""
    with torch.no_grad():
        val, test = (net(torch.from_numpy(a).view(len(a), *shape)).argmax(1).numpy()
                     for a in (task.x_val, task.x_test))
    return Point(float((val == task.y_val).mean()), float((test == task.y_test).mean()), flops)


def cnn_refit(task: Task, space: SearchSpace, args: argparse.Namespace, seed: int) -> Refit:
    """The refit of a baseline's CNN: `tiny_cnn.fit` for `args.refit_epochs` on train + val,
    its zero weights (pruned) kept at zero."""
    shape, x, y = _signals(task.with_val_in_train(), space, "cnn")

    def refit(net: torch.nn.Module) -> float:
        masks = [(w.detach() != 0).float() for w in tiny_cnn.weights(net)]
        tiny_cnn.fit(net, masks, space.training.shift, args.refit_epochs,
                     torch.Generator().manual_seed(seed), x, y)
        return _cnn_point(net, task, shape, 0).test
    return refit


def cnn_baseline(task: Task, space: SearchSpace, seed: int, expired: Callable[[], bool],
                 args: argparse.Namespace, kept: Kept) -> None:
    """The MNIST-1D paper's CNN shape (`tiny_cnn.py`: three stride-2 Conv1d layers, a
    linear head on the flattened maps) at each of `--cnn-channels` widths, trained
    `--cnn-epochs` epochs of one-cycle AdamW with the space's `training.shift`; the ladder
    restarts with fresh seeds while time is left. For 1-channel conv1d spaces only."""
    shape, x, y = _signals(task, space, "cnn")
    stop = raising(expired)
    refit = cnn_refit(task, space, args, seed)
    try:
        for restart in range(10**6):
            for j, channels in enumerate(args.cnn_channels):
                net = tiny_cnn.train(channels, space.training.shift, args.cnn_epochs,
                                     seed * 100_003 + restart * 1_009 + j, x, y,
                                     task.n_classes, stop)
                kept.add(_cnn_point(net, task, shape, tiny_cnn.flops(
                    channels, shape[1], task.n_classes)), net, refit)
    except Deadline:
        pass


def cnn_prune_baseline(task: Task, space: SearchSpace, seed: int, expired: Callable[[], bool],
                       args: argparse.Namespace, kept: Kept) -> None:
    """Each of `--cnn-prune-channels` widths of the `cnn` baseline's CNN trained
    `--cnn-epochs`, then pruned by global magnitude (kernel taps and head weights together)
    down `--cnn-densities`, each step fine-tuned `--cnn-finetune-epochs` (Han et al. 2015);
    every trained or fine-tuned network is a point, its FLOPs the non-zero count
    (`tiny_cnn.sparse_flops`). Restarts with fresh seeds while time is left."""
    shape, x, y = _signals(task, space, "cnn-prune")
    stop = raising(expired)
    refit = cnn_refit(task, space, args, seed)

    def add(net: torch.nn.Module) -> None:
        kept.add(_cnn_point(net, task, shape, tiny_cnn.sparse_flops(net, shape[1],
                                                                    task.n_classes)), net, refit)

    try:
        for restart in range(10**6):
            for j, channels in enumerate(args.cnn_prune_channels):
                run_seed = seed * 100_003 + restart * 1_009 + j
                net = tiny_cnn.train(channels, space.training.shift, args.cnn_epochs, run_seed,
                                     x, y, task.n_classes, stop)
                add(net)
                gen = torch.Generator().manual_seed(run_seed)
                for density in args.cnn_densities:
                    tiny_cnn.fit(net, tiny_cnn.magnitude_masks(net, density),
                                 space.training.shift, args.cnn_finetune_epochs, gen, x, y, stop)
                    add(net)
    except Deadline:
        pass


def evosparse_points(space: SearchSpace, folder: Path) -> list[Point]:
    """Run the search; its final population's members as points."""
    run_dir = RunDir(folder / f"{space.name}-{space.seed}")
    state = start_run(run_dir, space, LocalEvaluator(), []).run()
    run_dir.unlock()
    return [Point(m.result.val_accuracy, m.result.test_accuracy, m.result.flops)
            for m in state.population if m.result.ok]


def summarise(points: list[Point], space: SearchSpace, budget: float, seconds: float,
              wall: float) -> Summary:
    """Front on val; val-HV, test-HV of that front, best test accuracy (overall, in budget)."""
    ref = space.objectives.reference
    front = [points[i] for i in first_front([(1 - p.val, float(p.flops)) for p in points])]
    best = max(front, key=lambda p: (p.test, -p.flops), default=Point(0.0, 0.0, 0))
    return Summary(
        val_hv=hypervolume([(1 - p.val, float(p.flops)) for p in front], ref),
        test_hv=hypervolume([(1 - p.test, float(p.flops)) for p in front], ref),
        best_test=best.test,
        best_test_flops=best.flops,
        best_test_budget=max((p.test for p in front if p.flops <= budget), default=0.0),
        points=len(points),
        seconds=seconds,
        wall=wall,
    )


T = TypeVar("T")

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
"""wall: elapsed time (the issue's measure); cpu: this process's CPU time, all threads (a
fairer share of a machine that other jobs load)."""


def timed(run: Callable[[], T], clock: Callable[[], float]) -> tuple[T, float, float]:
    """`run()`'s value, its seconds on `clock` and its wall seconds."""
    start, wall = clock(), time.perf_counter()
    value = run()
    return value, clock() - start, time.perf_counter() - wall


Baseline = Callable[[Callable[[], bool], Kept], None]
"""A baseline given its `expired` test, recording what it trains in a `Kept`."""


def methods(task: Task, space: SearchSpace, seed: int, args: argparse.Namespace
            ) -> Iterator[tuple[str, Baseline]]:
    """The baselines by name."""
    acts = space.activations.hidden
    yield "prune", lambda d, k: prune_baseline(task, seed, d, args, args.prune_activation, k)
    yield "nsga2", lambda d, k: optuna_baseline(task, seed, d, args, acts,
                                                optuna.samplers.NSGAIISampler(seed=seed), k)
    yield "random", lambda d, k: optuna_baseline(task, seed, d, args, acts,
                                                 optuna.samplers.RandomSampler(seed=seed), k)
    yield "cnn", lambda d, k: cnn_baseline(task, space, seed, d, args, k)
    yield "cnn-prune", lambda d, k: cnn_prune_baseline(task, space, seed, d, args, k)


def overrides(pairs: list[str]) -> dict[str, Any]:
    """`with_overrides` arguments from KEY=VALUE strings (a dotted key names a section's key)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        section, _, name = key.rpartition(".")
        parsed = yaml.safe_load(value)
        if section:
            out.setdefault(section, {})[name] = parsed
        else:
            out[name] = parsed
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--spaces", nargs="+", type=Path,
                   default=[Path("search_spaces/digits.yaml"), Path("search_spaces/mnist1d.yaml")])
    p.add_argument("--datasets", nargs="+", help="only these spaces' dataset names "
                   "(e.g. digits mnist1d)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--generations", type=int, help="override the spaces' generations")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a space key for the search (dotted, YAML value), e.g. "
                        "--set training.lr_schedule=cosine; repeatable")
    p.add_argument("--seconds", type=float,
                   help="skip the search; give each baseline this many seconds (on --clock)")
    p.add_argument("--methods", nargs="+", default=["prune", "nsga2", "random"],
                   help="baselines to run (prune nsga2 random cnn cnn-prune; none: the search "
                        "alone; cnn, cnn-prune: 1-channel conv1d spaces only)")
    p.add_argument("--quick", action="store_true",
                   help="CI: digits only, 1 seed, 3 generations")
    p.add_argument("--budget", type=float, default=0.1875,
                   help="FLOPs budget for 'best test in budget', as a share of the space's "
                        "reference_flops (0.1875: 7,500 of MNIST-1D's 40,000)")
    p.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2])
    p.add_argument("--densities", type=float, nargs="+",
                   default=[0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01])
    p.add_argument("--dense-epochs", type=int, default=40)
    p.add_argument("--finetune-epochs", type=int, default=5)
    p.add_argument("--trial-epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.01,
                   help="the pruning baseline's Adam lr (on MNIST-1D seed 1, 187 CPU s: val-HV "
                        "0.579 at 1e-3, 0.598 at 3e-3, 0.613 at 1e-2)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--label-smoothing", type=float, default=0.0,
                   help="the baselines' label smoothing (0: plain cross-entropy, the issue's "
                        "baselines; the search's own is the space's training.label_smoothing)")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="what 'the same time' means: wall (elapsed) or cpu (this process's "
                        "CPU time; fairer on a machine other jobs load)")
    p.add_argument("--prune-activation", default="relu")
    p.add_argument("--cnn-channels", type=int, nargs="+", default=[3, 4, 5, 6, 8, 10, 12, 16],
                   help="the cnn baseline's widths (channels of each of its three layers)")
    p.add_argument("--cnn-epochs", type=int, default=150)
    p.add_argument("--cnn-prune-channels", type=int, nargs="+", default=[12, 16, 25],
                   help="the cnn-prune baseline's dense widths, each pruned down --cnn-densities")
    p.add_argument("--cnn-densities", type=float, nargs="+",
                   default=[0.5, 0.35, 0.25, 0.18, 0.13, 0.09, 0.065])
    p.add_argument("--cnn-finetune-epochs", type=int, default=20)
    p.add_argument("--baseline-refit-epochs", type=int,
                   help="epochs of each baseline front member's refit on train + val, after "
                        "its time and off the clock (default: the search's "
                        "training.refit_epochs, 0 unless --set; 0: none)")
    args = p.parse_args()
    if args.quick:
        args.spaces, args.seeds, args.generations = [Path("search_spaces/digits.yaml")], 1, 3
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = Console(width=140)
    check_flops(np.random.default_rng(0))
    tiny_cnn.check_sparse_flops()
    warm_up()  # torch's first-call costs, paid by no method
    clock = CLOCKS[args.clock]
    table = Table("space", "seed", "method", "val-HV", "test-HV", "best test (FLOPs)",
                  "best test in budget", "points", f"{args.clock} s", "wall s")
    ratios: list[tuple[float, float, float]] = []  # val-HV ratio, test-HV ratio, test gap
    # a terminated benchmark (kill, a scheduler's time limit) still removes its run folders
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.spaces:
            base = load_space(path)
            if args.datasets and base.dataset.name not in args.datasets:
                continue
            budget = args.budget * base.objectives.reference_flops
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                sets = overrides(args.set)  # --set key wins; no refit unless --set
                sets["training"] = {"refit_epochs": 0, **sets.get("training", {})}
                space = base.with_overrides(**{"seed": seed, "generations": args.generations,
                                               **sets})
                task = load_task(space.dataset)  # --set dataset.* changes every method's split
                args.refit_epochs = (space.training.refit_epochs
                                     if args.baseline_refit_epochs is None
                                     else args.baseline_refit_epochs)
                results = run_all(space, task, seed, budget, clock, Path(tmp), args)
                for name, s in results.items():
                    row = (f"{s.val_hv:.4f}", f"{s.test_hv:.4f}",
                           f"{100 * s.best_test:.1f}% ({s.best_test_flops:,})",
                           f"{100 * s.best_test_budget:.1f}%", str(s.points),
                           f"{s.seconds:.1f}", f"{s.wall:.1f}")
                    table.add_row(path.stem, str(seed), name, *row)
                    console.print(f"{path.stem} seed={seed} {name}: val_hv={row[0]} "
                                  f"test_hv={row[1]} best_test={row[2]} "
                                  f"best_test_at_{budget:.0f}_flops={row[3]} points={row[4]} "
                                  f"{args.clock}_seconds={row[5]}"
                                  + (f" wall_seconds={row[6]}" if args.clock != "wall" else "")
                                  + (f" refit_{args.clock}_seconds={s.refit_seconds:.1f}"
                                     if name != "evosparse" and args.refit_epochs else ""))
                ours = results.pop("evosparse", None)
                if ours is not None and results:
                    ratios.append((
                        ours.val_hv / max(max(s.val_hv for s in results.values()), 1e-12),
                        ours.test_hv / max(max(s.test_hv for s in results.values()), 1e-12),
                        100 * (max(s.best_test for s in results.values()) - ours.best_test)))
    console.print(table)
    if ratios:
        console.print(f"test_hv_ratio={min(r[1] for r in ratios):.4f} "
                      f"best_test_gap_points={max(r[2] for r in ratios):.1f} "
                      "(the best baseline's best test accuracy minus evosparse's, worst case)")
        console.print(f"hv_ratio={min(r[0] for r in ratios):.4f}")


def run_all(space: SearchSpace, task: Task, seed: int, budget: float,
            clock: Callable[[], float], folder: Path, args: argparse.Namespace
            ) -> dict[str, Summary]:
    """The search, then each chosen baseline with the search's time on `clock`, one after
    another under the space's thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(space.evaluation.threads)
    try:
        results: dict[str, Summary] = {}
        seconds = args.seconds
        if seconds is None:
            points, seconds, wall = timed(lambda: evosparse_points(space, folder), clock)
            results["evosparse"] = summarise(points, space, budget, seconds, wall)
        for name, run in methods(task, space, seed, args):
            if name in args.methods:
                end, kept = clock() + seconds, Kept(args.refit_epochs > 0)
                _, took, wall = timed(lambda r=run, e=end, k=kept: r(lambda: clock() > e, k),
                                      clock)
                pts, refit_took, _ = timed(kept.refitted, clock)
                results[name] = replace(summarise(pts, space, budget, took, wall),
                                        refit_seconds=refit_took)
        return results
    finally:
        torch.set_num_threads(previous)


if __name__ == "__main__":
    main()
