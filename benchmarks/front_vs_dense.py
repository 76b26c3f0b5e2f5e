"""Run a search and, in the same process, a dense MLP trained with the same budget; compare.

Examples (the figures in the issue notes come from these):
    python benchmarks/front_vs_dense.py                      # digits vs a 64-64-10 MLP
    python benchmarks/front_vs_dense.py --space search_spaces/mnist1d.yaml --hidden 100,100 \
        --tolerance 2 --flops-fraction 0.3333

The MLP is built as a genome and trained by the very same fitness code (same
optimiser, epochs, batch size, learning rate, splits); its accuracy is the mean
over --mlp-seeds seeds. Printed last: whether the front holds a network within
--tolerance points of the MLP's test accuracy, and one under --flops-fraction of
its FLOPs, and one that is both.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console

from evosparse.data import load_task
from evosparse.evaluators import LocalEvaluator
from evosparse.evolution import front_of
from evosparse.fitness import FitnessConfig, evaluate_batch
from evosparse.genome import InnovationRegistry
from evosparse.operators import dense_mlp_genome
from evosparse.progress import ProgressDisplay, front_table
from evosparse.rundir import RunDir, member_summary
from evosparse.runner import start_run
from evosparse.space import load_space


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--space", type=Path, default=Path("search_spaces/digits.yaml"))
    p.add_argument("--hidden", default="64", help="MLP hidden widths, comma-separated")
    p.add_argument("--mlp-seeds", type=int, default=3)
    p.add_argument("--generations", type=int, help="override the space's generations")
    p.add_argument("--seed", type=int, help="override the space's seed")
    p.add_argument("--tolerance", type=float, default=1.0, help="accuracy points")
    p.add_argument("--flops-fraction", type=float, default=0.25)
    args = p.parse_args()
    console = Console()

    space = load_space(args.space).with_overrides(generations=args.generations, seed=args.seed)
    task = load_task(space.dataset)
    widths = [int(w) for w in args.hidden.split(",") if w]
    cfg = FitnessConfig(task=task, training=space.training, bias=space.network.bias,
                        run_seed=space.seed, threads=space.evaluation.threads)
    reg = InnovationRegistry(task.n_features, task.n_classes)
    # evaluate_batch, like the search, trains under the space's fixed thread count.
    mlp = evaluate_batch([dense_mlp_genome(i, reg, widths, "relu") for i in range(args.mlp_seeds)],
                         cfg)
    mlp_test = 100 * statistics.mean(r.test_accuracy for r in mlp)
    mlp_flops = mlp[0].flops
    shape = "-".join(map(str, [task.n_features, *widths, task.n_classes]))
    console.print(f"dense MLP {shape}: test accuracy {mlp_test:.2f}% (mean of {len(mlp)}: "
                  f"{', '.join(f'{100 * r.test_accuracy:.2f}' for r in mlp)}), "
                  f"{mlp_flops:,} FLOPs")

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = RunDir(Path(tmp) / space.name)
        display = ProgressDisplay(console, space.generations)
        search = start_run(run_dir, space, LocalEvaluator(), [display])
        start = time.perf_counter()
        state = search.run()
        seconds = time.perf_counter() - start
        display.close()
    front = [member_summary(m) for m in front_of(state.population)]
    console.print(front_table(front, f"front of {space.name}, seed {space.seed}"))
    console.print(f"search: {state.evaluations} evaluations in {seconds:.1f}s")

    def show(label: str, m: dict | None) -> bool:
        if m is None:
            console.print(f"{label}: none")
            return False
        console.print(f"{label}: genome {m['genome_id']}, test {100 * m['test_accuracy']:.2f}% "
                      f"({100 * m['test_accuracy'] - mlp_test:+.2f} points), {m['flops']:,} FLOPs "
                      f"({100 * m['flops'] / mlp_flops:.1f}% of the MLP)")
        return True

    close = [m for m in front if 100 * m["test_accuracy"] >= mlp_test - args.tolerance]
    cheap = [m for m in front if m["flops"] <= args.flops_fraction * mlp_flops]
    both = [m for m in close if m in cheap]
    best = max(front, key=lambda m: m["test_accuracy"])
    show("best test accuracy on the front", best)
    a = show(f"cheapest within {args.tolerance} points", min(close, key=lambda m: m["flops"],
                                                               default=None))
    b = show(f"most accurate under {args.flops_fraction:.0%} of the FLOPs",
             max(cheap, key=lambda m: m["test_accuracy"], default=None))
    c = show("both at once", min(both, key=lambda m: m["flops"], default=None))
    console.print(f"within_tolerance={a} under_flops_fraction={b} both={c} seconds={seconds:.1f}")


if __name__ == "__main__":
    main()
