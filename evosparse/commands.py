"""What the `evosparse` commands do once their arguments are parsed.

Kept apart from `cli.py` so that `evosparse --help` answers without importing
torch; `cli.main` imports this module only to run a command.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from evosparse.data import Task
from evosparse.errors import EvaluationError, UserError
from evosparse.evaluators import BaseEvaluator, LocalEvaluator
from evosparse.evolution import Search, SearchState, front_of
from evosparse.progress import ProgressDisplay, front_table
from evosparse.results import Run
from evosparse.rundir import RunDir, member_summary
from evosparse.runner import resume_run, start_run
from evosparse.space import SearchSpace


def evaluator(space: SearchSpace, ray_address: str | None, workers: int | None) -> BaseEvaluator:
    """In-process evaluation, or Ray when a cluster address or a worker count is given.

    The worker count is `workers` (`--workers`), else the space's `evaluation.workers`; 0
    evaluates in this process. Evaluation on this machine (in-process or local workers)
    needs the device it names: a space that asks for CUDA where there is none stops here,
    before anything is written.
    """
    if ray_address is None:
        _check_device(space.evaluation.device)
    workers = space.evaluation.workers if workers is None else workers
    if workers < 0:
        raise UserError(f"workers must be at least 0, got {workers}")
    if ray_address is None and workers == 0:
        return LocalEvaluator()
    from evosparse.evaluators.ray import RayEvaluator  # imports ray: only when asked for
    from evosparse.fitness import warm_up

    ev = space.evaluation
    return RayEvaluator(address=ray_address, workers=workers, cpus=ev.cpus_per_batch or ev.threads,
                        gpus=ev.gpus_per_batch, cpu_nodes_too=ev.cpu_nodes_too,
                        device=ev.device, timeout_s=ev.timeout_s, max_retries=ev.max_retries,
                        prepare=partial(warm_up, ev.device))


def _check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("evaluation.device is cuda but this machine has no CUDA device; "
                        "use --device cpu (or auto)")


def run(space: SearchSpace, runs_dir: Path, console: Console, ray_address: str | None = None,
        workers: int | None = None, task: Task | None = None) -> int:
    """`evosparse run`: start a new run directory and search (on `task` when the caller
    loaded the space's data already)."""
    run_dir = RunDir(runs_dir / space.name)
    search = start_run(run_dir, space, evaluator(space, ray_address, workers), [], task=task)
    return _finish(search, run_dir, console)


def resume(path: Path, generations: int | None, console: Console,
           ray_address: str | None = None, workers: int | None = None) -> int:
    """`evosparse resume`: continue a run from its newest valid checkpoint."""
    run_dir = RunDir(path)
    space = run_dir.load_space()
    search = resume_run(run_dir, evaluator(space, ray_address, workers), [], generations)
    return _finish(search, run_dir, console)


def execute(search: Search, run_dir: RunDir, console: Console | None) -> SearchState:
    """Run the search with a progress display on `console` (None: silently).

    A first Ctrl-C stops after the current generation's checkpoint; a second raises
    KeyboardInterrupt at once (the previous checkpoint stays valid). Workers that keep
    dying end in a `UserError` that says how to continue.
    """
    display = None if console is None else ProgressDisplay(console, search.space)
    if display is not None:
        search.reporters.append(display)

    def on_sigint(signum: int, frame: Any) -> None:
        if search.stop_requested:
            raise KeyboardInterrupt
        search.stop_requested = True
        message = "Ctrl-C: stopping after this generation's checkpoint (press again to abort now)"
        if display is not None:
            display.progress.console.print(f"[yellow]{message}[/]")
        else:
            print(message, file=sys.stderr)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    try:
        return search.run()
    except EvaluationError as exc:
        raise UserError(f"{exc}; the newest checkpoint in {run_dir.path} is intact: continue "
                        f"with `evosparse resume {run_dir.path}` once the cause is fixed"
                        ) from None
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
        if display is not None:
            display.close()
        search.evaluator.close()
        run_dir.unlock()


def _finish(search: Search, run_dir: RunDir, console: Console) -> int:
    """`execute` for the CLI: exit code 130 on an abort, the final front printed."""
    try:
        state = execute(search, run_dir, console)
    except KeyboardInterrupt:
        console.print(f"aborted; the newest checkpoint in {run_dir.path} is intact; "
                      f"continue with `evosparse resume {run_dir.path}`")
        return 130
    front = [member_summary(m) for m in front_of(state.population)]
    console.print(front_table(front, f"Pareto front after generation {state.generation}"))
    if search.stop_requested and not search.done():
        console.print(f"stopped at generation {state.generation}; continue with "
                      f"`evosparse resume {run_dir.path}`")
    console.print(f"run directory: {run_dir.path}")
    return 0


def status(path: Path, as_json: bool, console: Console) -> int:
    """`evosparse status`: print a run's progress and front."""
    doc = Run(path).status()
    if as_json:
        print(json.dumps(doc, indent=2), flush=True)  # a closed pipe raises here, not at exit
        return 0
    console.print(
        f"{doc['run']}: generation {doc['generation']}/{doc['generations']}, "
        f"{doc['evaluations']} evaluations, hypervolume {doc['hypervolume']:.4f}",
        highlight=False,
    )
    console.print(front_table(doc["front"], "Pareto front"))
    return 0


def export(path: Path, how: str, out: Path | None, console: Console) -> int:
    """`evosparse export`: write the chosen front members as deployable files."""
    from evosparse.export import export_run

    folders = export_run(Run(path), how, out)
    for folder in folders:
        m = json.loads((folder / "metrics.json").read_text())
        console.print(f"{folder}: test accuracy {m['test_accuracy']:.4f}, {m['flops']} FLOPs, "
                      f"ONNX max |diff| {m['onnx']['max_abs_diff_vs_torch']:.1e}",
                      highlight=False, soft_wrap=True)
    console.print(f"exported {len(folders)} network(s)")
    return 0


def report(path: Path, console: Console) -> int:
    """`evosparse report`: plots and report.html in the run directory."""
    from evosparse.report import write_report

    page = write_report(Run(path))
    console.print(f"report: {page}")
    return 0
