"""How many evaluations the XOR space needs to solve XOR (all four points), over several seeds.

    python benchmarks/xor.py --seeds 10

Evaluations are counted up to and including the first network whose accuracy on
the four points is 1.0 (read from the run's history), as NEAT's papers count them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from evosparse.evaluators import LocalEvaluator
from evosparse.rundir import RunDir
from evosparse.runner import start_run
from evosparse.space import load_space


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--space", type=Path, default=Path("search_spaces/xor.yaml"))
    p.add_argument("--seeds", type=int, default=10)
    args = p.parse_args()
    used = []
    for seed in range(args.seeds):
        space = load_space(args.space).with_overrides(seed=seed)
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = RunDir(Path(tmp) / space.name)
            start_run(run_dir, space, LocalEvaluator(), []).run()
            history = run_dir.read_history()
        solved = [i for i, h in enumerate(history) if h["val_accuracy"] == 1.0]
        if solved:
            winner = history[solved[0]]
            used.append(solved[0] + 1)
            print(f"seed {seed}: solved after {solved[0] + 1} evaluations "
                  f"(generation {winner['generation']}, genome {winner['genome_id']}, "
                  f"{winner['flops']} FLOPs)")
        else:
            print(f"seed {seed}: not solved in {len(history)} evaluations")
    print(f"solved {len(used)}/{args.seeds}; evaluations mean {statistics.mean(used):.0f}, "
          f"median {statistics.median(used):.0f}, max {max(used)}" if used else "never solved")


if __name__ == "__main__":
    main()
