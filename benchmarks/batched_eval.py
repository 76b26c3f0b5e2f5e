"""One-by-one versus population-batched training of the same heterogeneous genomes.

    python benchmarks/batched_eval.py            # 64 MNIST-1D genomes, the space's budget
    python benchmarks/batched_eval.py --quick    # 16 genomes, 1 epoch: under a minute

Genomes: about 100 hidden nodes each (one layer of 100, or two of 50), densities
5-50%, each hidden node's activation drawn from the space's hidden set. Prints
evaluations per second both ways, the speed-up, and the batched trainer's
dense-equivalent GFLOP/s (padded blocks, forward and backward counted as 3 x
forward) as a fraction of a plain torch.matmul's GFLOP/s measured here in the same
run. The last line is `speedup=<number>`.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from evosparse.data import load_task
from evosparse.fitness import FitnessConfig, evaluate_batch, evaluation_seed, warm_up
from evosparse.genome import Genome, InnovationRegistry
from evosparse.network import BatchedNetworks
from evosparse.operators import dense_mlp_genome
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


def matmul_gflops(k: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(k, k), torch.randn(k, k)
    torch.matmul(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    return 2 * k**3 * repeats / (time.perf_counter() - start) / 1e9


def dense_equivalent_flops(genomes: list[Genome], cfg: FitnessConfig) -> float:
    """FLOPs the batched program does on its padded blocks for the whole training budget."""
    gens = [torch.Generator().manual_seed(evaluation_seed(0, g.genome_id)) for g in genomes]
    net = BatchedNetworks(genomes, cfg.bias, gens)
    per_sample = net.padded_weights()  # multiply-adds per sample, all genomes
    samples = cfg.training.epochs * len(cfg.task.x_train)
    return 3 * 2 * per_sample * samples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--space", type=Path, default=Path("search_spaces/mnist1d.yaml"))
    p.add_argument("--genomes", type=int, default=64)
    p.add_argument("--quick", action="store_true", help="16 genomes, 1 epoch")
    p.add_argument("--threads", type=int, help="torch threads for both ways (default: the space's)")
    args = p.parse_args()
    space = load_space(args.space)
    training = space.training.model_copy(update={"epochs": 1}) if args.quick else space.training
    n = 16 if args.quick else args.genomes
    task = load_task(space.dataset)
    genomes = population(n, task.n_features, task.n_classes, list(space.activations.hidden),
                         np.random.default_rng(0))
    threads = args.threads or space.evaluation.threads
    cfg = FitnessConfig(task=task, training=training, bias=space.network.bias, run_seed=0,
                        threads=threads)
    torch.set_num_threads(threads)
    peak = matmul_gflops()
    print(f"{n} genomes, {training.epochs} epoch(s) on {len(task.x_train)} samples, "
          f"{threads} thread(s); torch.matmul 1024^3: {peak:.1f} GFLOP/s")

    warm_up()  # torch's first-call costs, paid before either timing
    start = time.perf_counter()
    alone = evaluate_batch(genomes, replace(cfg, batched=False))
    t_alone = time.perf_counter() - start
    start = time.perf_counter()
    together = evaluate_batch(genomes, cfg)
    t_batch = time.perf_counter() - start
    gap = max(abs(a.val_accuracy - b.val_accuracy) for a, b in zip(alone, together, strict=True))
    achieved = dense_equivalent_flops(genomes, cfg) / t_batch / 1e9
    print(f"one by one: {t_alone:.1f}s, {n / t_alone:.2f} evaluations/s")
    print(f"batched:    {t_batch:.1f}s, {n / t_batch:.2f} evaluations/s, largest val-accuracy "
          f"difference to one by one {100 * gap:.2f} points")
    print(f"batched dense-equivalent {achieved:.1f} GFLOP/s = {achieved / peak:.1%} of matmul")
    print(f"speedup={t_alone / t_batch:.1f}")


if __name__ == "__main__":
    main()
