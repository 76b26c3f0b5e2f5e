"""The `evosparse` command: run, resume, status, export, report and tune.

Bad input ends with one message and exit code 2; Ctrl-C stops after the
current generation's checkpoint (a second Ctrl-C aborts at once, leaving the
previous checkpoint intact; exit code 130).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console

from evosparse.data import load_task
from evosparse.errors import UserError
from evosparse.space import load_space


def _nonneg(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _ray_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray-address", metavar="HOST:PORT|auto",
                   help="evaluate on this existing Ray cluster (started with `ray start`)")
    p.add_argument("--workers", type=_nonneg, metavar="N",
                   help="without --ray-address: start a private local Ray (bound to 127.0.0.1) "
                        "with N CPUs; 0: evaluate in this process (default: the space's "
                        "evaluation.workers)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evosparse",
        description="Evolve sparse neural networks on the accuracy-versus-FLOPs Pareto front.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="start a search from a search-space YAML file")
    run.add_argument("space", type=Path, help="search-space file, e.g. search_spaces/digits.yaml")
    run.add_argument("--name", help="run name (default: the space's name)")
    run.add_argument("--runs-dir", type=Path, default=Path("runs"), help="default: runs")
    run.add_argument("--generations", type=_nonneg, help="override the space's generations")
    run.add_argument("--population", type=int, help="override the space's population")
    run.add_argument("--seed", type=_nonneg, help="override the space's seed")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"],
                     help="override evaluation.device (auto: CUDA when present)")
    _ray_options(run)

    resume = sub.add_parser("resume", help="continue a stopped or killed run exactly")
    resume.add_argument("run_dir", type=Path, help="the run directory, e.g. runs/digits")
    resume.add_argument("--generations", type=_nonneg, help="new total number of generations")
    _ray_options(resume)

    status = sub.add_parser("status", help="show a run's progress and Pareto front")
    status.add_argument("run_dir", type=Path)
    status.add_argument("--json", action="store_true", help="print machine-readable JSON")

    export = sub.add_parser(
        "export", help="write front members as genome.json, safetensors, ONNX, metrics, card")
    export.add_argument("run_dir", type=Path)
    export.add_argument(
        "--select", default="front", metavar="WHICH",
        help="front (default) | best-accuracy | max-flops=X | min-accuracy=Y "
             "(accuracies are validation accuracies, Y a fraction)")
    export.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/export)")

    tune = sub.add_parser("tune", help="tune the search's meta-parameters with Optuna")
    tune.add_argument("space", type=Path, help="a search-space file with a `tune:` section")
    tune.add_argument("--trials", type=int, required=True,
                      help="trials the study should hold (finished or running, all processes)")
    tune.add_argument("--storage", help="SQLAlchemy URL or journal:PATH "
                                        "(default: sqlite in RUNS_DIR/STUDY/study.db)")
    tune.add_argument("--study", help="study name (default: the space's name)")
    tune.add_argument("--runs-dir", type=Path, default=Path("runs"), help="default: runs")
    tune.add_argument("--ray-address", metavar="HOST:PORT|auto",
                      help="run the trials with Ray Tune on this cluster (same study storage)")

    report = sub.add_parser("report", help="plot fronts, hypervolume, topologies; report.html")
    report.add_argument("run_dir", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `evosparse` console script."""
    args = _parser().parse_args(argv)
    console = Console()
    try:
        if args.command == "run":
            space = load_space(args.space).with_overrides(
                name=args.name, generations=args.generations,
                population=args.population, seed=args.seed,
                evaluation={"device": args.device},
            )
            task = load_task(space.dataset)  # bad data fails here, before torch is imported
        from evosparse import commands  # imports torch: only once a command runs

        if args.command == "run":
            return commands.run(space, args.runs_dir, console, args.ray_address, args.workers,
                                task)
        if args.command == "resume":
            return commands.resume(args.run_dir, args.generations, console, args.ray_address,
                                   args.workers)
        if args.command == "export":
            return commands.export(args.run_dir, args.select, args.out, console)
        if args.command == "tune":
            from evosparse.tune import tune

            tune(load_space(args.space), args.trials, args.storage, args.study, args.runs_dir,
                 console, args.ray_address)
            return 0
        if args.command == "report":
            return commands.report(args.run_dir, console)
        return commands.status(args.run_dir, args.json, console)
    except UserError as exc:
        print(f"evosparse: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `evosparse status RUN --json | head`: the reader left early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
