"""Ways to choose activation functions, side by side: equal budgets, equal seeds.

    python benchmarks/activations.py                       # digits and MNIST-1D, 30 generations
    python benchmarks/activations.py --datasets digits --generations 10

For each dataset, the co-evolution space (search_spaces/<dataset>_coevolution.yaml:
three hidden levels) runs once per row with the same seed, population and
generations, so every row spends the same evaluations and training budget:

- relu:          every hidden node ReLU, no activation mutation;
- library:       per-node mutation among the library functions (AIL units included);
- ail:           per-node mutation among ReLU and the six AIL two-input units;
- random-expr:   per-node random search over expressions (a fresh one per change);
- mutate-expr:   per-node evolved expressions (a subtree of the node's one replaced);
- shared:        co-evolution with one shared population of functions;
- coevolution:   co-evolution with input-side, middle and output-side populations.

It prints one table per dataset (final hypervolume, the front's best test accuracy
and its FLOPs, wall time) and the evolved functions: the best front member's, and
for co-evolution each population's best three with their credited fitness.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from evosparse.activations import ACTIVATIONS
from evosparse.data import load_task
from evosparse.evaluators import LocalEvaluator
from evosparse.evolution import Search, SearchState, front_of
from evosparse.pareto import hypervolume
from evosparse.space import SearchSpace, load_space, validate_space

ROWS: dict[str, dict[str, Any]] = {
    "relu": {"coevolution": None, "activations": {"hidden": ["relu"]},
             "mutation": {"change_activation": 0.0}},
    "library": {"coevolution": None, "activations": {"hidden": list(ACTIVATIONS)},
                "mutation": {"change_activation": 0.3}},
    "ail": {"coevolution": None,
            "activations": {"hidden": ["relu", "and_ail", "or_ail", "xnor_ail", "and_ail_norm",
                                       "or_ail_norm", "xnor_ail_norm"]},
            "mutation": {"change_activation": 0.3}},
    "random-expr": {"coevolution": None,
                    "activations": {"expressions": 1.0, "expression_search": "random"},
                    "mutation": {"change_activation": 0.3}},
    "mutate-expr": {"coevolution": None, "activations": {"expressions": 1.0},
                    "mutation": {"change_activation": 0.3}},
    "shared": {"coevolution": {"populations": 1}},
    "coevolution": {},
}


def row_space(base: SearchSpace, name: str) -> SearchSpace:
    """The base space with one row's change (sections updated key by key; None removes
    an optional section)."""
    data = base.model_dump(mode="json")
    data["name"] = f"act-{name}"
    for key, value in ROWS[name].items():
        if isinstance(value, dict) and isinstance(data[key], dict):
            data[key].update(value)
        else:
            data[key] = value
    return validate_space(data, f"row {name}")


def run(space: SearchSpace) -> tuple[SearchState, float, float]:
    """The finished search's state, its final hypervolume and its wall seconds."""
    search = Search(space=space, task=load_task(space.dataset), evaluator=LocalEvaluator())
    start = time.perf_counter()
    state = search.run()
    seconds = time.perf_counter() - start
    hv = hypervolume([m.objectives for m in state.population], space.objectives.reference)
    return state, hv, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", default="digits,mnist1d", help="comma-separated")
    p.add_argument("--generations", type=int, default=30)
    p.add_argument("--only", help=f"comma-separated rows of {', '.join(ROWS)}")
    args = p.parse_args()
    console = Console()
    names = args.only.split(",") if args.only else list(ROWS)
    for dataset in args.datasets.split(","):
        base = load_space(f"search_spaces/{dataset}_coevolution.yaml").with_overrides(
            generations=args.generations)
        table = Table(title=f"{dataset}: population {base.population}, {base.generations} "
                            f"generations, seed {base.seed}")
        for col in ("row", "hypervolume", "best test acc", "its FLOPs", "seconds"):
            table.add_column(col, justify="left" if col == "row" else "right")
        notes = []
        for name in names:
            state, hv, seconds = run(row_space(base, name))
            best = max(front_of(state.population), key=lambda m: m.result.test_accuracy)
            r = best.result
            table.add_row(name, f"{hv:.4f}", f"{100 * r.test_accuracy:.2f}%", f"{r.flops:,}",
                          f"{seconds:.0f}")
            used = sorted({str(a) for a in best.genome.node_act[best.genome.node_kind == 1]})
            console.print(f"{dataset} {name}: hypervolume {hv:.4f}, best test "
                          f"{100 * r.test_accuracy:.2f}% at {r.flops:,} FLOPs, {seconds:.0f}s; "
                          f"its functions: {', '.join(used) or 'none'}")
            for pop in state.functions:
                top = sorted(zip(pop.fitness, pop.members, strict=True), reverse=True)[:3]
                notes.append(f"{dataset} {name} [{pop.name}] " + "; ".join(
                    f"{m} ({f:.3f})" for f, m in top))
        console.print(table)
        for line in notes:
            console.print(line)


if __name__ == "__main__":
    main()
