"""The same digits generation evaluated locally and on Ray with 1 and 2 worker nodes.

    python benchmarks/ray_scaling.py                 # search_spaces/digits.yaml
    python benchmarks/ray_scaling.py --batch-size 16 # smaller batches: more tasks to spread

The generation is the children of generation 1 of the default digits search
(generation 0 is run first, locally). The Ray cluster is started as users start
one, with `ray start` (`tests/ray_cli.py`), on 127.0.0.1 with token authentication:
a head with no CPUs, then one and two worker nodes of one CPU each (one evaluation
thread, as locally); this process joins it like `evosparse run --ray-address`.
`start` is the evaluator's start-up (joining, workers launched and warmed up with
`fitness.warm_up`, once per run); `gen` is the median wall time of 15 evaluations of
the generation after that, the cost of every generation, each one right after a
local evaluation of the same generation (`local` is the median of those), so that
both see the same load on a shared machine. Prints evaluations per second and the
ratio to the local wall time, and checks the results equal the local ones; the last
line is `overhead_1_node=<ratio>`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from evosparse.data import load_task
from evosparse.evaluators import BaseEvaluator, LocalEvaluator
from evosparse.evolution import Search
from evosparse.fitness import evaluate_batch, plan_batches, warm_up
from evosparse.space import load_space

REPEATS = 15


def side_by_side(evaluator: BaseEvaluator, batches: list,
                 cfg: object) -> tuple[float, float, list]:
    """Median wall times of `REPEATS` evaluations of the generation, locally and by
    `evaluator`, taken in turns; and the evaluator's results."""
    times: dict[str, list[float]] = {"local": [], "other": []}
    for _ in range(REPEATS):
        for name, ev in (("local", LocalEvaluator()), ("other", evaluator)):
            start = time.perf_counter()
            out = list(ev.map(evaluate_batch, batches, cfg))
            times[name].append(time.perf_counter() - start)
    local, other = (sorted(t)[REPEATS // 2] for t in times.values())
    return local, other, out


def comparable(outcomes: list) -> list:
    return [[r.to_dict() | {"wall_time": 0} for r in batch] for batch in outcomes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--space", default="search_spaces/digits.yaml")
    parser.add_argument("--batch-size", type=int, help="override evaluation.batch_size")
    args = parser.parse_args()
    space = load_space(args.space)
    if args.batch_size:
        space = space.with_overrides(evaluation={"batch_size": args.batch_size})
    search = Search(space=space, task=load_task(space.dataset), evaluator=LocalEvaluator())
    search.step()  # generation 0
    genomes = search._children(1)
    cfg, ev = search.config, space.evaluation
    batches = plan_batches(genomes, cfg, ev.batch_size, ev.memory_cap_mb)
    n = len(genomes)
    print(f"{n} genomes in {len(batches)} batch(es) of up to {ev.batch_size}")
    reference = list(LocalEvaluator().map(evaluate_batch, batches, cfg))
    rows = []  # (setting, start-up, its generation time, the local one beside it)

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on loopback
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.ray_cli
    from evosparse.evaluators.ray import RayEvaluator
    from tests.ray_cli import LoopbackCluster

    with tempfile.TemporaryDirectory() as root:
        cluster = LoopbackCluster(Path(root), dashboard=False)
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(cluster.home / ".ray" / "auth_token")
        try:
            for nodes in (1, 2):
                cluster.add_workers((1, 0))
                start = time.perf_counter()
                evaluator = RayEvaluator(address=cluster.address, cpus=ev.threads,
                                         device=ev.device, prepare=partial(warm_up, ev.device))
                startup = time.perf_counter() - start
                try:
                    local, warm, out = side_by_side(evaluator, batches, cfg)
                finally:
                    evaluator.close()
                same = comparable(out) == comparable(reference)
                rows += [("local", 0.0, local, local),
                         (f"ray, {nodes} node(s){'' if same else ' RESULTS DIFFER'}",
                          startup, warm, local)]
        finally:
            cluster.stop()
    print(f"{'setting':<22} {'start s':>8} {'gen s':>8} {'evals/s':>8} {'gen / local':>12}")
    for name, startup, warm, local in rows:
        print(f"{name:<22} {startup:>8.2f} {warm:>8.2f} {n / warm:>8.1f} {warm / local:>12.2f}")
    print(f"overhead_1_node={rows[1][2] / rows[1][3]:.3f}")


if __name__ == "__main__":
    main()
