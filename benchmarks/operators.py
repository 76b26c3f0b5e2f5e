"""The genetic and training operators side by side on MNIST-1D: equal budgets, equal seeds.

    python benchmarks/operators.py                        # the shipped 100 generations
    python benchmarks/operators.py --generations 30 --only base,kstarts

Part 1 runs the MNIST-1D space (search_spaces/mnist1d.yaml) once per variant,
all with the same seed, population and generations (so the same number of
evaluations and the same per-evaluation training budget) and prints one table:
final hypervolume, the front's best test accuracy and its FLOPs, wall time.
`base` is mutation only with Baldwinian inheritance; every other row changes
one thing. Part 2 compares, per member of a population, the K-starts winner of
K masks with one random mask of the same density, both then trained with the
space's budget plus the K short trainings' epochs for the single mask, so both
spend the same number of training epochs; it prints the mean test accuracies.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from evosparse.data import load_task
from evosparse.evaluators import LocalEvaluator
from evosparse.evolution import front_of
from evosparse.fitness import FitnessConfig, evaluate_batch
from evosparse.genome import InnovationRegistry
from evosparse.operators import dense_mlp_genome, kstarts
from evosparse.rundir import RunDir
from evosparse.runner import start_run
from evosparse.space import SearchSpace, load_space

KSTARTS = {"k": 4, "density": 0.1, "hidden": [100], "epochs": 1, "criterion": "magnitude"}
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "kstarts": {"kstarts": KSTARTS},
    "kstarts-saliency": {"kstarts": {**KSTARTS, "criterion": "magnitude_gradient"}},
    "magnitude": {"sparse_training": {"method": "magnitude", "density": 0.7, "end_epoch": 3}},
    "snip": {"sparse_training": {"method": "snip", "density": 0.7}},
    "dissipating": {"sparse_training": {"method": "dissipating", "watch_epochs": 2,
                                        "threshold": 0.5}},
    "set": {"sparse_training": {"method": "set", "zeta": 0.3, "zeta_decay": "constant",
                                "interval": 50, "end_epoch": 4}},
    "rigl": {"sparse_training": {"method": "rigl", "zeta": 0.3, "interval": 25, "end_epoch": 4}},
    "ctre": {"sparse_training": {"method": "ctre", "zeta": 0.3, "interval": 25, "end_epoch": 4}},
    "speciation": {"speciation": {"target_species": 4}},
    "lamarckian": {"training": {"inheritance": "lamarckian"}},
}


def variant(base: SearchSpace, name: str) -> SearchSpace:
    """The space of one row: Baldwinian mutation-only plus the row's change."""
    space = base.with_overrides(training={"inheritance": "baldwinian"})
    return space.with_overrides(name=f"ops-{name}", **VARIANTS[name])


def run(space: SearchSpace) -> tuple[float, float, int, float]:
    """Final hypervolume, best front test accuracy, its FLOPs, wall seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        search = start_run(RunDir(Path(tmp) / space.name), space, LocalEvaluator(), [])
        start = time.perf_counter()
        state = search.run()
        seconds = time.perf_counter() - start
        hv = float(json.loads((Path(tmp) / space.name / "front.json").read_text())["hypervolume"])
    best = max(front_of(state.population), key=lambda m: m.result.test_accuracy)
    return hv, best.result.test_accuracy, best.result.flops, seconds


def kstarts_versus_one_mask(space: SearchSpace, members: int) -> tuple[float, float]:
    """Mean test accuracy of K-starts winners and of single random masks, equal epochs."""
    task = load_task(space.dataset)
    rng = np.random.default_rng(space.seed)
    registry = InnovationRegistry(task.n_features, task.n_classes)
    topology = dense_mlp_genome(-1, registry, KSTARTS["hidden"], "relu",
                                space.network.max_levels)
    k, short = KSTARTS["k"], KSTARTS["epochs"]
    candidates = [[kstarts.masked(topology, m * k + i, KSTARTS["density"], rng) for i in range(k)]
                  for m in range(members)]
    base = FitnessConfig(task=task, training=space.training, bias=True, run_seed=space.seed,
                         threads=space.evaluation.threads)
    trials = evaluate_batch([g for c in candidates for g in c], FitnessConfig(
        task=task, training=space.training.model_copy(update={"epochs": short}), bias=True,
        run_seed=space.seed, threads=space.evaluation.threads, track_gradients=True))
    winners = [kstarts.winner(c, trials[m * k : (m + 1) * k], KSTARTS["criterion"])
               for m, c in enumerate(candidates)]
    singles = [c[0] for c in candidates]  # the first mask: as random as any
    longer = FitnessConfig(task=task, bias=True, run_seed=space.seed,
                           threads=space.evaluation.threads, training=space.training.model_copy(
                               update={"epochs": space.training.epochs + k * short}))
    won = statistics.mean(r.test_accuracy for r in evaluate_batch(winners, base))
    single = statistics.mean(r.test_accuracy for r in evaluate_batch(singles, longer))
    return won, single


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--space", type=Path, default=Path("search_spaces/mnist1d.yaml"))
    p.add_argument("--generations", type=int, help="override the space's generations")
    p.add_argument("--only", help=f"comma-separated rows of {', '.join(VARIANTS)}")
    p.add_argument("--members", type=int, default=32, help="part 2: masks compared")
    args = p.parse_args()
    console = Console()
    base = load_space(args.space).with_overrides(generations=args.generations)
    names = args.only.split(",") if args.only else list(VARIANTS)
    table = Table(title=f"{base.dataset.name}: population {base.population}, "
                        f"{base.generations} generations, seed {base.seed}")
    for col in ("variant", "hypervolume", "best test acc", "its FLOPs", "seconds"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for name in names:
        hv, acc, flops, seconds = run(variant(base, name))
        table.add_row(name, f"{hv:.4f}", f"{100 * acc:.2f}%", f"{flops:,}", f"{seconds:.0f}")
        console.print(f"{name}: hypervolume {hv:.4f}, best test {100 * acc:.2f}% at {flops:,} "
                      f"FLOPs, {seconds:.0f}s")
    console.print(table)
    if args.members:
        won, single = kstarts_versus_one_mask(base, args.members)
        console.print(f"K-starts (k={KSTARTS['k']}, density {KSTARTS['density']}, "
                      f"{KSTARTS['criterion']}): winner {100 * won:.2f}% vs one random mask "
                      f"trained {KSTARTS['k'] * KSTARTS['epochs']} epochs longer "
                      f"{100 * single:.2f}% (mean test accuracy of {args.members})")


if __name__ == "__main__":
    main()
