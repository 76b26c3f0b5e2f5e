"""The `evosparse` command: run, resume and status.

Bad input ends with one message and exit code 2; Ctrl-C stops after the
current generation's checkpoint (a second Ctrl-C aborts at once, leaving the
previous checkpoint intact; exit code 130).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from evosparse.errors import UserError
from evosparse.evaluators import LocalEvaluator
from evosparse.pareto import hypervolume
from evosparse.progress import ProgressDisplay, front_table
from evosparse.rundir import RunDir, member_summary
from evosparse.runner import resume_run, start_run
from evosparse.search import Search, SearchState, front_of
from evosparse.space import load_space


def _nonneg(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


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

    resume = sub.add_parser("resume", help="continue a stopped or killed run exactly")
    resume.add_argument("run_dir", type=Path, help="the run directory, e.g. runs/digits")
    resume.add_argument("--generations", type=_nonneg, help="new total number of generations")

    status = sub.add_parser("status", help="show a run's progress and Pareto front")
    status.add_argument("run_dir", type=Path)
    status.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return p


def _execute(search: Search, run_dir: RunDir, console: Console) -> int:
    """Run the search with a progress display; handle Ctrl-C; print the final front."""
    display = ProgressDisplay(console, search.space.generations)
    search.reporters.append(display)

    def on_sigint(signum: int, frame: Any) -> None:
        if search.stop_requested:
            raise KeyboardInterrupt
        search.stop_requested = True
        display.progress.console.print(
            "[yellow]Ctrl-C: stopping after this generation's checkpoint "
            "(press again to abort now)[/]"
        )

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        state = search.run()
    except KeyboardInterrupt:
        display.close()
        console.print(f"aborted; the newest checkpoint in {run_dir.path} is intact; "
                      f"continue with `evosparse resume {run_dir.path}`")
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
        display.close()
        run_dir.unlock()
    front = [member_summary(m) for m in front_of(state.population)]
    console.print(front_table(front, f"Pareto front after generation {state.generation}"))
    if search.stop_requested and not search.done():
        console.print(f"stopped at generation {state.generation}; continue with "
                      f"`evosparse resume {run_dir.path}`")
    console.print(f"run directory: {run_dir.path}")
    return 0


def _status(run_dir: RunDir, as_json: bool, console: Console) -> int:
    space = run_dir.load_space()
    body = run_dir.latest_checkpoint()
    if body is None:
        raise UserError(f"{run_dir.path} has no finished generation yet")
    state = SearchState.from_dict(body["state"])
    front = front_of(state.population)
    ref = (space.objectives.reference_error, space.objectives.reference_flops)
    doc = {
        "run": str(run_dir.path),
        "generation": state.generation,
        "generations": space.generations,
        "evaluations": state.evaluations,
        "hypervolume": hypervolume([m.objectives for m in state.population], ref),
        "front": [member_summary(m) for m in front],
    }
    if as_json:
        print(json.dumps(doc, indent=2))
        return 0
    console.print(
        f"{doc['run']}: generation {doc['generation']}/{doc['generations']}, "
        f"{doc['evaluations']} evaluations, hypervolume {doc['hypervolume']:.4f}",
        highlight=False,
    )
    console.print(front_table(doc["front"], "Pareto front"))
    return 0


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
            run_dir = RunDir(args.runs_dir / space.name)
            search = start_run(run_dir, space, LocalEvaluator(), [])
            return _execute(search, run_dir, console)
        if args.command == "resume":
            run_dir = RunDir(args.run_dir)
            search = resume_run(run_dir, LocalEvaluator(), [], args.generations)
            return _execute(search, run_dir, console)
        return _status(RunDir(args.run_dir), args.json, console)
    except UserError as exc:
        print(f"evosparse: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
