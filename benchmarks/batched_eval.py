"""One-by-one versus population-batched training of the same heterogeneous genomes.

    python benchmarks/batched_eval.py            # 64 MNIST-1D genomes, the space's budget
    python benchmarks/batched_eval.py --quick    # 16 genomes, 1 epoch: under a minute
    python benchmarks/batched_eval.py --space search_spaces/mnist1d_conv.yaml  # conv genomes
    python benchmarks/batched_eval.py --run runs/mnist1d_conv  # a search's last population

Genomes: about 100 hidden nodes each (one layer of 100, or two of 50), densities
5-50%, each hidden node's activation drawn uniformly from the space's hidden set
(a worst case for the batched program, which groups a level's rows by function).
With `--run`, the genomes are a run directory's last checkpointed population (with their
inherited weights) and the space is the run's: what a search really trains.
For a conv space: layered CNNs of 4-16 channels per layer on every one of the space's
levels, each channel pair kept with probability 0.3-1, activations drawn the same way,
and taps of up to a third of the kernels switched off (`conv_batched.py` pads them all to
one grouped program; its dense-equivalent rate is not reported).
Each genome trains as the search would train it (`FitnessConfig.of_search`: the space's
training, sparse training and bias), only the device and thread count varied.
On the CPU, for each thread count (`--threads`, default 1 and 2: this CPU's cores),
prints evaluations per second both ways, the speed-up at that count, and the batched
trainer's dense-equivalent GFLOP/s (padded blocks, forward and backward counted as
3 x forward) as a fraction of a plain torch.matmul's GFLOP/s measured at that count
in the same run. On a CUDA GPU (`--device cuda`, or `auto` where one is present) the
same, once, with the matmul measured on the GPU (float32, as the trainer runs). Each
cell is the fastest of `--repeats` runs, the two ways alternating, because machines
are noisy. The last line is `speedup=<fastest one by one / fastest batched>`, each at
its best thread count.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from evosparse.batched import BatchedNetworks
from evosparse.conv_geometry import mutate_taps
from evosparse.data import load_task
from evosparse.errors import UserError
from evosparse.evolution import Member, SearchState
from evosparse.families import ConvFamily
from evosparse.fitness import (
    BatchFallback,
    FitnessConfig,
    evaluate_batch,
    evaluation_seed,
    resolve_device,
    warm_up,
)
from evosparse.genome import Genome, InnovationRegistry
from evosparse.operators import dense_mlp_genome
from evosparse.rundir import RunDir
from evosparse.space import load_space


def population(
    n: int, n_in: int, n_out: int, acts: list[str], rng: np.random.Generator
) -> list[Genome]:
    """`n` genomes with ~100 hidden nodes, random densities in [0.05, 0.5], each hidden node's
    activation drawn uniformly from `acts`."""
    reg = InnovationRegistry(n_in, n_out)
    out = []
    for i in range(n):
        g = dense_mlp_genome(i, reg, [100] if i % 2 else [50, 50], "relu")
        keep = rng.random(len(g.conn_innov)) < rng.uniform(0.05, 0.5)
        act = g.node_act.copy()
        hidden = g.node_kind == 1
        act[hidden] = rng.choice(acts, size=int(hidden.sum()))
        out.append(Genome.build(i, (g.node_id, g.node_kind, g.node_pos, act),
                                (g.conn_innov, g.conn_src, g.conn_dst, keep)))
    return out


def conv_population(n: int, family: ConvFamily, levels: int, n_out: int, acts: list[str],
                    rng: np.random.Generator) -> list[Genome]:
    """`n` layered conv genomes (see the module docstring)."""
    reg = InnovationRegistry(family.geometry.shape[0], n_out)
    out = []
    for i in range(n):
        g = dense_mlp_genome(i, reg, [int(w) for w in rng.integers(4, 17, size=levels)], "relu",
                             levels)
        keep = rng.random(len(g.conn_innov)) < rng.uniform(0.3, 1.0)
        act = g.node_act.copy()
        hidden = g.node_kind == 1
        act[hidden] = rng.choice(acts, size=int(hidden.sum()))
        g = Genome.build(i, (g.node_id, g.node_kind, g.node_pos, act),
                         (g.conn_innov, g.conn_src, g.conn_dst, keep))
        out.append(mutate_taps(g, family.geometry, rng, len(g.conn_innov) // 3))
    return out


def last_population(run: RunDir) -> list[Member]:
    """The population of `run`'s newest checkpoint (`UserError` when it has none)."""
    checkpoint = run.latest_checkpoint()
    if checkpoint is None:
        raise UserError(f"{run.path}: no checkpoint to take a population from")
    return SearchState.from_dict(checkpoint["state"]).population


def matmul_gflops(device: torch.device, repeats: int = 20) -> tuple[int, float]:
    """(k, GFLOP/s) of a float32 k x k x k torch.matmul on `device` (k = 1024 on the CPU,
    8192 on a GPU, which a small product cannot fill)."""
    k = 1024 if device.type == "cpu" else 8192
    a, b = torch.randn(k, k, device=device), torch.randn(k, k, device=device)
    torch.matmul(a, b)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    _sync(device)
    return k, 2 * k**3 * repeats / (time.perf_counter() - start) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dense_equivalent_flops(genomes: list[Genome], cfg: FitnessConfig) -> float:
    """FLOPs the batched program does on its padded blocks for the whole training budget."""
    gens = [torch.Generator().manual_seed(evaluation_seed(0, g.genome_id)) for g in genomes]
    net = BatchedNetworks(genomes, cfg.bias, gens)
    per_sample = net.padded_weights()  # multiply-adds per sample, all genomes
    samples = cfg.training.epochs * len(cfg.task.x_train)
    return 3 * 2 * per_sample * samples


def timed(genomes: list[Genome], cfg: FitnessConfig) -> tuple[float, list]:
    start = time.perf_counter()
    results = evaluate_batch(genomes, cfg)
    return time.perf_counter() - start, results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--space", type=Path, default=Path("search_spaces/mnist1d.yaml"))
    p.add_argument("--run", type=Path, help="time this run directory's last population "
                   "(and its space) instead of random genomes")
    p.add_argument("--genomes", type=int, default=64)
    p.add_argument("--quick", action="store_true", help="16 genomes, 1 epoch")
    p.add_argument("--threads", default="1,2",
                   help="torch thread counts to measure both ways at, comma-separated "
                        "(on a GPU: the first only)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where both ways train (auto: a CUDA GPU if present)")
    p.add_argument("--repeats", type=int, default=3,
                   help="runs of each way per thread count, alternating; the fastest counts")
    args = p.parse_args()
    device = resolve_device(args.device)
    warnings.simplefilter("error", BatchFallback)  # a batch run one by one would mislead
    run = RunDir(args.run) if args.run else None
    space = run.load_space() if run else load_space(args.space)
    training = space.training.model_copy(update={"epochs": 1}) if args.quick else space.training
    n = 16 if args.quick else args.genomes
    task = load_task(space.dataset)
    search = FitnessConfig.of_search(space, task)  # what the search trains, timed
    family = search.family
    acts, rng = list(space.activations.hidden), np.random.default_rng(0)
    if run:
        genomes = [m.genome for m in last_population(run)]
        n = len(genomes)
    elif isinstance(family, ConvFamily):
        genomes = conv_population(n, family, space.network.max_levels, task.n_classes, acts, rng)
    else:
        genomes = population(n, task.n_features, task.n_classes, acts, rng)
    print(f"{n} genomes, {training.epochs} epoch(s) on {len(task.x_train)} samples; "
          f"best of {args.repeats} alternating runs per cell, on {_describe(device)}")
    print("threads | float32 matmul  | one by one       | batched          | speed-up | "
          "batched dense-equivalent")
    warm_up(device.type)  # first-call costs, paid before any timing
    best_alone = best_batch = math.inf
    counts = [int(t) for t in args.threads.split(",")]
    for threads in counts if device.type == "cpu" else counts[:1]:
        cfg = replace(search, training=training, threads=threads, device=device.type,
                      batched=True)
        torch.set_num_threads(threads)
        k, peak = matmul_gflops(device)
        t_alone = t_batch = math.inf
        for _ in range(args.repeats):
            seconds, alone = timed(genomes, replace(cfg, batched=False))
            t_alone = min(t_alone, seconds)
            seconds, together = timed(genomes, cfg)
            t_batch = min(t_batch, seconds)
        gap = max(abs(a.val_accuracy - b.val_accuracy) for a, b in zip(alone, together,
                                                                       strict=True))
        rate = "n/a"
        if not isinstance(family, ConvFamily):
            achieved = dense_equivalent_flops(genomes, cfg) / t_batch / 1e9
            rate = f"{achieved:.1f} GFLOP/s = {achieved / peak:.1%} of matmul"
        print(f"{threads:7d} | {k}^3 {peak:7.0f} GFLOP/s | {t_alone:5.2f}s {n / t_alone:6.1f}/s | "
              f"{t_batch:5.2f}s {n / t_batch:6.1f}/s | {t_alone / t_batch:7.1f}x | "
              f"{rate} (val accuracy within {100 * gap:.2f} points of one by one)")
        best_alone, best_batch = min(best_alone, t_alone), min(best_batch, t_batch)
    print(f"fastest one by one {best_alone:.2f}s, fastest batched {best_batch:.2f}s "
          "(each at its best thread count)")
    print(f"speedup={best_alone / best_batch:.1f}")


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return f"the CPU (torch {torch.__version__})"


if __name__ == "__main__":
    main()
