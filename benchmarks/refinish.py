"""A run's finishing generation again, under other keys: finishing choices in minutes.

    python benchmarks/refinish.py runs/mnist1d_conv
    python benchmarks/refinish.py runs/mnist1d_conv --set training.finish_epochs=150
    python benchmarks/refinish.py runs/mnist1d_conv --set "training.finish_prune=[0.7, 0.5]"
    python benchmarks/refinish.py runs/digits_conv --set training.refit_epochs=30

The finishing generation (`training.finish_epochs`) only trains copies of the front, and
the refit (`training.refit_epochs`) only trains the last front again, so what they do is
measured without the search before them (a run without a finishing generation reruns its
last, breeding, one exactly as it ran): the run's checkpoint before its
last generation is read, the space (with each `--set KEY=VALUE` applied, as
`baselines.py` does) runs that one generation in this process, and the new last
population is scored as `baselines.py` scores a search's: val-HV, test-HV, best test, and
the best test at <= 20k / 7.5k / 5k FLOPs (`--budgets`), with this process's wall and CPU
seconds. The run directory is only read. With no `--set`, the run's own last generation is
repeated (the same figures as its front: a check that the rerun is exact). Keys that
change what the earlier generations did (`population`, the mutation rates, ...) are
refused.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from baselines import Point, overrides, summarise

from evosparse.data import load_task
from evosparse.errors import UserError
from evosparse.evaluators.local import LocalEvaluator
from evosparse.evolution import Search, SearchState
from evosparse.rundir import RunDir
from evosparse.space import SearchSpace

FINISHING_KEYS = {"training.finish_epochs", "training.finish_prune", "training.refit_epochs",
                  "training.lr", "training.lr_schedule", "training.weight_decay",
                  "training.optimizer", "training.batch_size", "training.shift",
                  "training.label_smoothing", "evaluation.batch_size", "evaluation.threads",
                  "evaluation.device"}
"""The keys a finishing generation's rerun may change: those of its training only (the
changed training keys act on the finishing copies alone, as the rest of the run is done)."""


def before_last(run: RunDir, space: SearchSpace) -> SearchState:
    """The state checkpointed before `run`'s last generation (`UserError` without one)."""
    body = run.checkpoint_at(space.generations - 1)
    if body is None:
        raise UserError(f"{run.path}: no checkpoint before generation {space.generations} "
                        "(the last one) is kept")
    return SearchState.from_dict(body["state"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", type=Path, help="a finished run directory")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"a finishing key (dotted, YAML value); one of {sorted(FINISHING_KEYS)}")
    p.add_argument("--budgets", type=float, nargs="+", default=[20000, 7500, 5000])
    args = p.parse_args()
    bad = sorted({pair.partition("=")[0] for pair in args.set} - FINISHING_KEYS)
    if bad:
        p.error(f"--set {', '.join(bad)}: not a finishing key ({sorted(FINISHING_KEYS)})")
    run = RunDir(args.run)
    as_run = run.load_space()
    try:
        space = as_run.with_overrides(**overrides(args.set))
        if as_run.training.finish_epochs and not space.training.finish_epochs:
            raise UserError("--set training.finish_epochs=0 would breed the last generation")
        state = before_last(run, space)
        task = load_task(space.dataset)
    except UserError as exc:
        p.error(str(exc))
    wall, cpu = time.perf_counter(), time.process_time()
    final = Search(space=space, task=task, evaluator=LocalEvaluator(), state=state).run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    points = [Point(m.result.val_accuracy, m.result.test_accuracy, m.result.flops)
              for m in final.population if m.result.ok]
    s = summarise(points, space, args.budgets[0], cpu, wall)
    budgets = " ".join(
        f"<={b:,.0f}: {100 * summarise(points, space, b, cpu, wall).best_test_budget:.1f}%"
        for b in args.budgets)
    print(f"{args.run} {' '.join(args.set) or '(as run)'}: val_hv={s.val_hv:.4f} "
          f"test_hv={s.test_hv:.4f} best_test={100 * s.best_test:.1f}% ({s.best_test_flops:,}) "
          f"{budgets} wall_s={wall:.0f} cpu_s={cpu:.0f}")


if __name__ == "__main__":
    main()
