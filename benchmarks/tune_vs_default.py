"""Does tuning pay? A tuned digits space against the default one at equal evaluation budget.

    python benchmarks/tune_vs_default.py                 # 20 trials, 3 seeds
    python benchmarks/tune_vs_default.py --trials 8 --seeds 1 --generations 5   # a quick look

1. `evosparse tune search_spaces/digits_tune.yaml --trials T` (SQLite storage in a
   temporary folder): each trial a 10-generation search, pruned by the median rule
   on its hypervolume; prints the trials, the number pruned and the time pruning
   saved (each pruned trial's missing generations at the mean generation time of
   the complete trials).
2. The untuned space (search_spaces/digits_tune.yaml, its own default values) and the
   tuned best.yaml run side by side with the same seeds, population and generations
   (so the same number of evaluations); prints each run's final hypervolume and the
   means. The last line is `hv_default=<mean> hv_tuned=<mean>`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
from rich.console import Console

from evosparse.evaluators import LocalEvaluator
from evosparse.rundir import RunDir
from evosparse.runner import start_run
from evosparse.space import SearchSpace, load_space
from evosparse.tune import tune


def final_hypervolume(space: SearchSpace, folder: Path) -> tuple[float, int]:
    run_dir = RunDir(folder / space.name)
    start_run(run_dir, space, LocalEvaluator(), []).run()
    run_dir.unlock()
    front = json.loads(run_dir.front_file.read_text())
    return front["hypervolume"], front["evaluations"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--generations", type=int, help="override both spaces' generations")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = load_space("search_spaces/digits_tune.yaml")
        start = time.perf_counter()
        best_path = tune(base, args.trials, None, "bench", root, console)
        tune_s = time.perf_counter() - start
        storage = optuna.storages.RDBStorage(f"sqlite:///{root / 'bench' / 'study.db'}")
        trials = optuna.load_study(study_name="bench", storage=storage).trials
        states = optuna.trial.TrialState
        done = [t for t in trials if t.state == states.COMPLETE]
        pruned = [t for t in trials if t.state == states.PRUNED]
        steps = base.tune.generations + 1 if base.tune else 1
        per_generation = np.mean([t.duration.total_seconds() / steps for t in done])
        saved = sum((steps - (t.last_step or 0) - 1) * per_generation for t in pruned)
        best = max(done, key=lambda t: t.value or 0.0)
        print(f"best trial {best.number}: " + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items()))
        print(f"tune: {len(trials)} trials in {tune_s:.0f} s, {len(pruned)} pruned, "
              f"about {saved:.0f} s saved by pruning ({saved / (tune_s + saved):.0%} of the "
              "unpruned time)")
        default, tuned = load_space("search_spaces/digits_tune.yaml"), load_space(best_path)
        rows = []
        for seed in range(args.seeds):
            pair = []
            for space in (default, tuned):
                space = space.with_overrides(seed=seed, generations=args.generations,
                                             name=f"{space.name}-{seed}")
                pair.append(final_hypervolume(space, root / "compare"))
            rows.append(pair)
            (hv_d, n_d), (hv_t, n_t) = pair
            print(f"seed {seed}: default hypervolume {hv_d:.4f} ({n_d} evaluations), "
                  f"tuned {hv_t:.4f} ({n_t} evaluations)")
        hv_default = float(np.mean([r[0][0] for r in rows]))
        hv_tuned = float(np.mean([r[1][0] for r in rows]))
        print(f"hv_default={hv_default:.4f} hv_tuned={hv_tuned:.4f}")


if __name__ == "__main__":
    main()
