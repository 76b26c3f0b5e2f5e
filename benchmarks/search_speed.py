"""End-to-end speed of a search with one-by-one versus population-batched evaluation.

    python benchmarks/search_speed.py                         # default digits space
    python benchmarks/search_speed.py --generations 10

Runs the same space and seed twice in this process, first with
`evaluation.batched: false` (each genome trained alone, as before batching),
then as the space says; prints both wall times, the ratio, and whether the two
runs ended with the same Pareto front. The last line is `speedup=<number>`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from evosparse.evaluators import LocalEvaluator
from evosparse.evolution import front_of
from evosparse.fitness import resolve_device, warm_up
from evosparse.rundir import RunDir
from evosparse.runner import start_run
from evosparse.space import SearchSpace, load_space


def timed_run(space: SearchSpace) -> tuple[float, list[tuple[int, float, int]]]:
    with tempfile.TemporaryDirectory() as tmp:
        search = start_run(RunDir(Path(tmp) / space.name), space, LocalEvaluator(), [])
        start = time.perf_counter()
        state = search.run()
        seconds = time.perf_counter() - start
    front = [(m.genome.genome_id, m.result.val_accuracy, m.result.flops)
             for m in front_of(state.population)]
    return seconds, front


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--space", type=Path, default=Path("search_spaces/digits.yaml"))
    p.add_argument("--generations", type=int)
    args = p.parse_args()
    space = load_space(args.space).with_overrides(generations=args.generations)
    warm_up(space.evaluation.device)  # first-call costs, paid before either timing
    alone, front_alone = timed_run(space.with_overrides(evaluation={"batched": False}))
    batched, front_batched = timed_run(space)
    evals = space.population * (space.generations + 1)
    device = resolve_device(space.evaluation.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU"
    print(f"{space.name}: {evals} evaluations, {space.generations} generations, on {where}")
    print(f"one by one: {alone:.1f}s; batched (batch_size {space.evaluation.batch_size}): "
          f"{batched:.1f}s")
    print(f"same front: {front_alone == front_batched}")
    print(f"speedup={alone / batched:.1f}")


if __name__ == "__main__":
    main()
