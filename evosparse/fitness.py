"""Fitness: train each candidate within the budget and score it.

`evaluate_batch` is a plain picklable function of (genomes, config) with no
global state, so any evaluator (in-process or a Ray worker) can run it. Each
genome is trained with a torch Generator seeded from (run seed, genome id) and
a fixed thread count, so its result does not depend on the evaluation order,
the batch it sits in, or the worker that runs it.
"""

from __future__ import annotations

import itertools
import math
import time
import traceback
import warnings
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from evosparse.conv_network import ConvNetwork
from evosparse.data import Task
from evosparse.families import MLP, Family, family_of
from evosparse.genome import Genome, InnovationRegistry
from evosparse.graph import analyse
from evosparse.network import SparseNetwork, Values
from evosparse.schedules import set_lr
from evosparse.shifts import draw_moves, moved, moved_table, shift_maps
from evosparse.space import REGROWTH, SearchSpace, SparseTrainingSpec, TrainingSpec
from evosparse.sparse_training import Pruner, Source
from evosparse.step_graph import Rewind, capture
from evosparse.weights import TEST_PREDICTIONS, genome_digest, model_bytes

Status = Literal["ok", "nan", "failed"]
Stats = tuple[float, float, float, float]
"""Per genome: val loss, weight magnitude, gradient magnitude, saliency (see `EvalResult`)."""


@dataclass(frozen=True)
class Trained:
    """What training and scoring one genome produced."""

    accuracy: tuple[float, float]  # val, test
    model: bytes  # the trained weights (`weights.model_bytes`)
    stats: Stats
    values: Values  # the trained weights by identity, for Lamarckian write-back
    disabled: tuple[int, ...] = ()  # innovations of connections pruned during training
    added: tuple[tuple[int, int], ...] = ()  # (source, destination) ids grown during training
    taps: tuple[tuple[int, int], ...] = ()  # (innovation, kept tap bits) of thinned kernels


Outcome = Trained | tuple[Status, str]
"""A trained genome, or (status, reason) of a failure."""


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
    memory_mb: float = 0.0  # peak training memory per genome: measured on CUDA, else estimated
    val_loss: float = 0.0  # mean cross-entropy on the validation split
    weight_magnitude: float = 0.0  # mean |w| over the trained network's connections
    grad_magnitude: float = 0.0  # mean over connections of |dL/dw| summed over all steps
    saliency: float = 0.0  # mean over connections of |w| x that summed |dL/dw|
    """The last two are measured only when `FitnessConfig.track_gradients` (K-starts)."""
    disabled: tuple[int, ...] = ()
    """Innovations of the connections `sparse_training` removed; FLOPs count without them."""
    added: tuple[tuple[int, int], ...] = ()
    """(source id, destination id) of connections `sparse_training` grew; FLOPs count them."""
    taps: tuple[tuple[int, int], ...] = ()
    """(innovation, kept tap bits) of conv kernels `sparse_training` removed some taps of
    (a kernel that lost every tap is in `disabled`); FLOPs count without them."""
    refit: bool = False
    """Trained on the training and validation samples after the search
    (`training.refit_epochs`): `val_accuracy` and `val_loss` are the member's it replaced."""
    model: bytes | None = field(default=None, repr=False, compare=False)
    """Trained weights (`weights.model_bytes`): kept in the run directory, not the history."""
    values: Values | None = field(default=None, repr=False, compare=False)
    """The same weights keyed by identity (`network.Values`): what Lamarckian evolution
    writes back into the genome without parsing the weight file; not kept."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("model", "values")}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> EvalResult:
        return EvalResult(**{**d, "disabled": tuple(d.get("disabled", ())),
                             "added": tuple(tuple(p) for p in d.get("added", ())),
                             "taps": tuple(tuple(p) for p in d.get("taps", ()))})


@dataclass(frozen=True)
class FitnessConfig:
    """Everything an evaluation needs besides the genome; picklable."""

    task: Task
    training: TrainingSpec
    bias: bool
    run_seed: int
    threads: int = 1
    device: str = "cpu"
    batched: bool = True
    track_gradients: bool = False
    """Sum |dL/dw| per connection over training (for `grad_magnitude`, `saliency`)."""
    sparse: SparseTrainingSpec = SparseTrainingSpec()
    family: Family = MLP
    """What the genomes mean: how they compile and what they cost (`families.py`)."""

    @staticmethod
    def of_search(space: SearchSpace, task: Task) -> FitnessConfig:
        """What a search of `space` on `task` evaluates with, so that a benchmark that starts
        from it (and replaces what it varies) trains what the search trains."""
        return FitnessConfig(
            task=task, training=space.training, sparse=space.sparse_training,
            bias=space.network.bias, run_seed=space.seed, threads=space.evaluation.threads,
            device=space.evaluation.device, batched=space.evaluation.batched,
            family=family_of(space.network, space.dataset.name, task.n_features,
                             task.sample_shape))


class Diverged(Exception):
    """Training produced a non-finite loss or output."""


class BatchFallback(RuntimeWarning):
    """A batched program raised, so its genomes were evaluated one by one instead."""


def evaluation_seed(run_seed: int, genome_id: int) -> int:
    """The seed of one evaluation, derived from the run seed and the genome id only."""
    return int(np.random.SeedSequence([run_seed, genome_id]).generate_state(1)[0])


def make_optimizer(params: list[torch.nn.Parameter], spec: TrainingSpec,
                   capturable: bool = False) -> torch.optim.Optimizer:
    """The space's optimiser; fused kernels (one pass per step), alone and batched alike.
    `capturable`: its step may be captured in a CUDA graph (Adam keeps its step count on
    the device)."""
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                               weight_decay=spec.weight_decay, fused=True)
    cls = torch.optim.AdamW if spec.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=spec.lr, weight_decay=spec.weight_decay, fused=True,
               capturable=capturable)


M = TypeVar("M", bound=torch.nn.Module)


def _on(module: M, device: torch.device) -> M:
    """`module` on `device`; one already there is returned as it is (`Module.to` walks
    every submodule, about 0.1 ms a network, even when nothing moves)."""
    first = next(itertools.chain(module.parameters(), module.buffers()))
    return module if first.device == device else module.to(device)


def _logits(net: torch.nn.Module, x: np.ndarray) -> torch.Tensor:
    """Logits for a whole split in one pass; non-finite outputs raise `Diverged`."""
    with torch.no_grad():
        logits = net(torch.from_numpy(x))
    if not torch.isfinite(logits).all():
        raise Diverged("network output is not finite on evaluation data")
    return logits


def _connection_stats(sums: torch.Tensor) -> tuple[float, float, float]:
    """Weight magnitude, gradient magnitude and saliency from `connection_sums` (one row)."""
    n = max(float(sums[0]), 1.0)
    return float(sums[1]) / n, float(sums[2]) / n, float(sums[3]) / n


def trained_genome(genome: Genome, disabled: tuple[int, ...],
                   added: tuple[tuple[int, int], ...],
                   taps: tuple[tuple[int, int], ...] = ()) -> Genome:
    """The genome as training left it: pruned genes disabled, pruned kernel taps off,
    grown connections added under provisional (negative) innovation ids; the driver gives
    them registry ids."""
    return genome.with_disabled(disabled).with_kept_taps(taps).with_added(
        list(added), [-1 - i for i in range(len(added))])


def _score(genome: Genome, net: SparseNetwork | ConvNetwork, cfg: FitnessConfig,
           sums: torch.Tensor) -> Trained:
    """Score a trained network on val and test and pack it for the run directory.

    Batched and one-by-one training, on any device, both end here, with the genome's
    own `SparseNetwork` on the CPU: the exported model, run through the same code on
    the same device, predicts exactly what was recorded (a GPU's rounding could flip a
    near tie). `sums` are the genome's `connection_sums` row.
    """
    t = cfg.task
    net = _on(net, torch.device("cpu")).eval()
    gone = net.removed_connections()
    src, dst = net.added_connections()
    thinned, bits = net.changed_taps()
    disabled = tuple(genome.conn_innov[gone].tolist())
    added = tuple(zip(src.tolist(), dst.tolist(), strict=True))
    taps = tuple(zip(genome.conn_innov[thinned].tolist(), bits.tolist(), strict=True))
    if disabled or added or taps:  # score the network as training left it: what the run keeps
        genome = trained_genome(genome, disabled, added, taps)
        net = cfg.family.compile(genome.with_weights(*net.weights_for(genome)), cfg.bias,
                                 torch.Generator().manual_seed(0)).eval()
    val_logits = _logits(net, t.x_val)
    test = _logits(net, t.x_test).argmax(dim=1)
    val = val_logits.argmax(dim=1)
    val_loss = float(F.cross_entropy(val_logits, torch.from_numpy(t.y_val)))
    accuracy = (float((val.numpy() == t.y_val).mean()), float((test.numpy() == t.y_test).mean()))
    model = model_bytes(net, {TEST_PREDICTIONS: test}, genome_digest(genome))
    return Trained(accuracy, model, (val_loss, *_connection_stats(sums)), net.trained_values(),
                   disabled, added, taps)


def _accumulate(grads: dict[torch.nn.Parameter, torch.Tensor], params: list[torch.nn.Parameter]
                ) -> None:
    """Add each parameter's current |gradient| to its running sum."""
    for p in params:
        if p.grad is not None:
            grads.setdefault(p, torch.zeros_like(p)).add_(p.grad.abs())


def _pruners(cfg: FitnessConfig, groups: list[tuple[Source, list[int]]], steps_per_epoch: int
             ) -> list[Pruner]:
    """One `Pruner` per network or padded group, given with its genomes' ids (none when
    the space asks for no pruning, or for a conv group without kernels)."""
    if cfg.sparse.method == "none":
        return []
    return [Pruner(cfg.sparse, source, steps_per_epoch,
                   [evaluation_seed(cfg.run_seed, i) for i in ids]) for source, ids in groups
            if source.weight_blocks()]


def _step(opt: torch.optim.Optimizer, pruners: list[Pruner], step: int, spec: TrainingSpec,
          total: int) -> None:
    """The optimiser step `step` (0-based, of the whole training's `total`) at the space's
    learning-rate schedule, with pruning around it."""
    set_lr(opt, spec.lr, spec.lr_schedule, step, total)
    for p in pruners:
        p.after_backward(step)
    opt.step()
    for p in pruners:
        p.after_step(step, opt)


def _train_and_score(genome: Genome, cfg: FitnessConfig, device: torch.device) -> Trained:
    gen = torch.Generator().manual_seed(evaluation_seed(cfg.run_seed, genome.genome_id))
    net = _on(cfg.family.compile(genome, cfg.bias, gen), device)
    opt = make_optimizer(list(net.parameters()), cfg.training)
    t = cfg.task
    x = torch.from_numpy(t.x_train).to(device)
    y = torch.from_numpy(t.y_train).to(device)
    bs = cfg.training.batch_size
    grads: dict[torch.nn.Parameter, torch.Tensor] = {}
    weights = [lv.weight for lv in net.levels] if cfg.track_gradients else []
    per_epoch = math.ceil(len(x) / bs)
    pruners = _pruners(cfg, [(net, [genome.genome_id])], per_epoch)
    maps = shift_maps(cfg.training.shift, cfg.family, device)
    for epoch in range(cfg.training.epochs):
        perm = torch.randperm(len(x), generator=gen).to(device)
        moves = None if maps is None else draw_moves(gen, len(x), maps)
        for step, i in enumerate(range(0, len(x), bs)):
            for p in pruners:
                p.before_forward(epoch * per_epoch + step)
            idx = perm[i : i + bs]
            xs = x[idx] if moves is None else moved(x, idx, moves[i : i + bs], maps)
            loss = F.cross_entropy(net(xs), y[idx],
                                   label_smoothing=cfg.training.label_smoothing)
            if not torch.isfinite(loss):
                raise Diverged(f"loss became {loss.item()} at epoch {epoch}, step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            _accumulate(grads, weights)
            _step(opt, pruners, epoch * per_epoch + step, cfg.training,
                  cfg.training.epochs * per_epoch)
    return _score(genome, net, cfg, net.connection_sums(grads)[0])


def _train_batch(
    genomes: list[Genome], cfg: FitnessConfig, device: torch.device
) -> list[Trained | str]:
    """Train genomes together as one batched program; per genome (val, test) or a divergence.

    Each genome keeps its own generator (initial weights, minibatch order, the moves of
    its samples under `training.shift`), its own
    loss and, since Adam and SGD act elementwise, its own optimiser state: it follows
    the trajectory it follows when trained alone, up to float rounding. A genome whose
    loss stops being finite fails with the step where it did; its NaNs stay in its own
    rows of every tensor, so the others train on unaffected. Each step's losses are
    recorded on the device and checked once per epoch, so a step never waits for the
    device: on a GPU, the full-size steps replay one captured CUDA graph
    (`step_graph`) unless pruning (host-side logic), a learning-rate schedule or
    `training.shift` (a new table of moved samples each step) runs inside training.
    """
    gens = [torch.Generator().manual_seed(evaluation_seed(cfg.run_seed, g.genome_id))
            for g in genomes]
    net = _on(cfg.family.batch(genomes, cfg.bias, gens, growable=cfg.sparse.method in REGROWTH),
              device)
    t = cfg.task
    x = torch.from_numpy(t.x_train).to(device)
    y = torch.from_numpy(t.y_train).to(device)
    bs = cfg.training.batch_size
    per_epoch = math.ceil(len(x) / bs)
    pruners = _pruners(cfg, [(g, [genomes[i].genome_id for i in ids])
                             for g, ids in zip(net.groups, net.members, strict=True)], per_epoch)
    maps = shift_maps(cfg.training.shift, cfg.family, device)
    graphed = (device.type == "cuda" and not pruners and len(x) >= bs and maps is None
               and cfg.training.lr_schedule == "constant")  # a graph replays one rate
    params = [p for p in net.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg.training, capturable=graphed)
    grads: dict[torch.nn.Parameter, torch.Tensor] = {}
    weights = [w for g in net.groups for w in g.weights] if cfg.track_gradients else []
    smoothing = cfg.training.label_smoothing
    # per group: each member's summed loss at each step of the epoch, and the step's row
    record = [torch.zeros(per_epoch, len(ids), device=device) for ids in net.members]
    at_row = torch.zeros(1, dtype=torch.long, device=device)

    def step(x: torch.Tensor, y: torch.Tensor, rows: list[torch.Tensor], at: int) -> None:
        for p in pruners:
            p.before_forward(at)
        opt.zero_grad(set_to_none=True)
        samples = rows[0].shape[1]  # the gradient of each genome's mean loss, summed
        if net.direct():  # no autograd graph: the group programs' own backward
            sums = net.train_losses(x, y, rows, 1.0 / samples, smoothing)
        else:
            sums = [part.sum(dim=1) for part in net.sample_losses(x, y, rows, smoothing)]
            (sum(s.sum() for s in sums) / samples).backward()
        for r, s in zip(record, sums, strict=True):
            r.index_copy_(0, at_row, s.detach()[None])
        at_row.add_(1)
        _accumulate(grads, weights)
        _step(opt, pruners, at, cfg.training, cfg.training.epochs * per_epoch)

    fixed = [torch.empty(len(ids), bs, dtype=torch.long, device=device)  # a graph's input
             for ids in net.members] if graphed else []
    replay: torch.cuda.CUDAGraph | None = None
    failed: dict[int, str] = {}
    for epoch in range(cfg.training.epochs):
        perms = net.group_rows(torch.stack([torch.randperm(len(x), generator=g)
                                            for g in gens]).to(device))
        moves = None if maps is None else net.group_rows(
            torch.stack([draw_moves(g, len(x), maps) for g in gens]))
        for n_step, i in enumerate(range(0, len(x), bs)):
            rows = [p[:, i : i + bs] for p in perms]
            if moves is not None:
                step(*moved_table(x, y, rows, [m[:, i : i + bs] for m in moves], maps),
                     epoch * per_epoch + n_step)
                continue
            full = graphed and rows[0].shape[1] == bs  # a full-size step replays the graph
            if full:
                for f, r in zip(fixed, rows, strict=True):
                    f.copy_(r)
                if replay is None:
                    replay = capture(lambda: step(x, y, fixed, 0), Rewind(
                        params, opt, lambda: [*grads.values(), *record, at_row]), device)
                    full = graphed = replay is not None
            if full and replay is not None:
                replay.replay()
            else:
                step(x, y, rows, epoch * per_epoch + n_step)
        for gi, r in enumerate(record):
            for pos, at, value in _non_finite(r):
                failed.setdefault(net.members[gi][pos], f"loss became {value} at epoch "
                                                         f"{epoch}, step {at}")
        at_row.zero_()

    net = _on(net, torch.device("cpu"))  # one copy back; scoring runs on the CPU
    sums = net.connection_sums(grads)
    out: list[Trained | str] = []
    for b in range(len(genomes)):
        if b in failed:
            out.append(failed[b])
            continue
        try:
            out.append(_score(genomes[b], net.unbatch(b), cfg, sums[b]))
        except Diverged as exc:
            out.append(str(exc))
    return out


def _non_finite(record: torch.Tensor) -> list[tuple[int, int, float]]:
    """(member, step, loss) of each member's first non-finite loss in an epoch's record
    [steps, members]; one transfer from the device."""
    bad = (~torch.isfinite(record)).cpu().numpy()
    values = record.cpu().numpy()
    return [(int(m), int(bad[:, m].argmax()), float(values[bad[:, m].argmax(), m]))
            for m in np.flatnonzero(bad.any(axis=0))]


def _level_widths(genome: Genome) -> np.ndarray:
    """Number of computed nodes on each depth level (1, 2, ...) of a genome."""
    depth = analyse(genome).depth
    return np.bincount(depth[depth > 0])[1:]


def _bytes(widths: np.ndarray, n_genomes: int, n_acts: int, cfg: FitnessConfig) -> int:
    """Bytes of a padded batch whose levels are `widths` nodes wide; a node holds
    `family.node_values` values a sample (a conv channel: its map) and a connection
    `family.connection_weights` weights (a kernel's taps)."""
    family = cfg.family
    inputs = family.n_inputs(cfg.task.n_features)
    starts = inputs + np.concatenate([[0], np.cumsum(widths)[:-1]])
    weights = n_genomes * int(np.dot(widths, starts)) * family.connection_weights
    cols = (inputs + int(widths.sum())) * family.node_values
    rows = max(cfg.training.batch_size, len(cfg.task.x_val), len(cfg.task.x_test))
    return 4 * (6 * weights + n_genomes * rows * cols * (3 + n_acts))


def _padded(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise maximum of two width vectors of possibly different lengths."""
    out = np.zeros(max(len(a), len(b)), dtype=np.int64)
    out[: len(a)] = a
    out[: len(b)] = np.maximum(out[: len(b)], b)
    return out


def estimate_batch_bytes(genomes: list[Genome], cfg: FitnessConfig) -> int:
    """An upper estimate of the memory one batched training of `genomes` takes (conv
    genomes: as if every channel kept the input's resolution).

    Padded weight blocks are held six times (weights, gradients, masks, two
    optimiser states, and the masked product of autograd's path, which the group
    program does without); activations are held for the largest
    pass (a minibatch, or the whole val / test split when scoring) a few times over
    (input, pre-activation, output, one temporary per activation function).
    """
    widths = np.zeros(0, dtype=np.int64)
    for g in genomes:
        widths = _padded(widths, _level_widths(g))
    acts = {a for g in genomes for a in g.node_act.tolist()}
    return _bytes(widths, len(genomes), len(acts), cfg)


def plan_batches(genomes: list[Genome], cfg: FitnessConfig, size: int, cap_mb: float) -> list[
    list[Genome]
]:
    """Split genomes, in order, into batches of at most `size` that stay under `cap_mb`.

    Only the genome list and the space decide the split, never the worker count, so
    a genome's batch (and so its result) is the same wherever the batch runs. A
    genome that alone exceeds the cap still gets a batch of its own.
    """
    batches: list[list[Genome]] = []
    widths = np.zeros(0, dtype=np.int64)
    acts: set[str] = set()
    for g in genomes:
        w, a = _level_widths(g), set(g.node_act.tolist())
        grown, grown_acts = _padded(widths, w), acts | a
        if batches and len(batches[-1]) < size and (
            _bytes(grown, len(batches[-1]) + 1, len(grown_acts), cfg) <= cap_mb * 2**20
        ):
            batches[-1].append(g)
            widths, acts = grown, grown_acts
        else:
            batches.append([g])
            widths, acts = w, a
    return batches


def resolve_device(name: str) -> torch.device:
    """The torch device of a space's or the CLI's `device` ("auto": a CUDA GPU if present)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _peak_mb(genomes: list[Genome], cfg: FitnessConfig, device: torch.device) -> float:
    """Peak memory of the training just done, per genome: CUDA's own peak counter when on
    a GPU (reset before each training), `estimate_batch_bytes` on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20 / len(genomes)
    return estimate_batch_bytes(genomes, cfg) / 2**20 / len(genomes)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _result(
    genome: Genome, cfg: FitnessConfig, outcome: Outcome, seconds: float, memory_mb: float
) -> EvalResult:
    trained = outcome if isinstance(outcome, Trained) else None
    status, error = ("ok", None) if trained else outcome
    val, test = trained.accuracy if trained else (0.0, 0.0)
    stats: Stats = trained.stats if trained else (0.0, 0.0, 0.0, 0.0)
    disabled = trained.disabled if trained else ()
    added = trained.added if trained else ()
    taps = trained.taps if trained else ()
    cost = cfg.family.cost(trained_genome(genome, disabled, added, taps), cfg.bias)
    return EvalResult(
        genome_id=genome.genome_id,
        generation=genome.generation,
        status=status,
        val_accuracy=val,
        test_accuracy=test,
        flops=cost.flops,
        params=cost.params,
        connections=cost.connections,
        wall_time=seconds,
        error=error,
        memory_mb=memory_mb,
        val_loss=stats[0],
        weight_magnitude=stats[1],
        grad_magnitude=stats[2],
        saliency=stats[3],
        disabled=disabled,
        added=added,
        taps=taps,
        model=trained.model if trained else None,
        values=trained.values if trained else None,
    )


def failed_results(genomes: list[Genome], cfg: FitnessConfig, reason: str) -> list[EvalResult]:
    """The results of genomes whose batch failed as a whole (it raised or timed out)."""
    return [_result(g, cfg, ("failed", reason), 0.0, 0.0) for g in genomes]


def evaluate_genome(genome: Genome, cfg: FitnessConfig) -> EvalResult:
    """Train and score one genome alone; a diverged or raising training is recorded, not raised."""
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    _reset_peak(device)
    outcome: Outcome
    try:
        outcome = _train_and_score(genome, cfg, device)
    except Diverged as exc:
        outcome = ("nan", str(exc))
    except Exception:  # noqa: BLE001 - a broken candidate must not stop the search
        outcome = ("failed", traceback.format_exc())
    seconds = time.perf_counter() - start
    return _result(genome, cfg, outcome, seconds, _peak_mb([genome], cfg, device))


def evaluate_batch(genomes: list[Genome], cfg: FitnessConfig) -> list[EvalResult]:
    """Evaluate genomes under the configured thread count (restored afterwards).

    With `cfg.batched`, the genomes train together as one program (`_train_batch`)
    and each result's wall time and peak memory are the batch's divided by its size. If the
    batched program itself raises, every genome is evaluated alone instead, so the
    error is recorded on the genome that caused it.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        if cfg.batched and cfg.family.batched and len(genomes) > 1:
            start = time.perf_counter()
            device = resolve_device(cfg.device)
            _reset_peak(device)
            try:
                raw = _train_batch(genomes, cfg, device)
            except Exception as exc:  # noqa: BLE001 - fall back to isolate the failing genome
                warnings.warn(f"batched training of {len(genomes)} genomes raised {exc!r}; "
                              "evaluating them one by one", BatchFallback, stacklevel=2)
                return [evaluate_genome(g, cfg) for g in genomes]
            each = (time.perf_counter() - start) / len(genomes)
            memory = _peak_mb(genomes, cfg, device)
            return [_result(g, cfg, ("nan", o) if isinstance(o, str) else o, each, memory)
                    for g, o in zip(genomes, raw, strict=True)]
        return [evaluate_genome(g, cfg) for g in genomes]
    finally:
        torch.set_num_threads(previous)


def warm_up(device: str = "cpu") -> None:
    """Train two tiny genomes once on random data, batched and alone, on `device`.

    A fresh process pays torch's first-call costs (about 2 s on this CPU; CUDA's context
    and library handles on a GPU) in its first training; a worker pool calls this when it
    starts, so no generation pays them.
    """
    from evosparse.operators import minimal_genome

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    task = Task("warm-up", x, y, x[:8], y[:8], x[:8], y[:8], n_classes=2)
    registry = InnovationRegistry(8, 2)
    genomes = [minimal_genome(i, registry, 0.5, rng) for i in range(2)]
    cfg = FitnessConfig(task=task, training=TrainingSpec(epochs=1), bias=True, run_seed=0,
                        device=device)
    evaluate_batch(genomes, cfg)
    evaluate_batch(genomes, replace(cfg, batched=False))
