"""The Python API: run, resume and read searches from a script or a notebook.

The same code paths as the CLI (`commands.py`): a search made here resumes with
`evosparse resume`, and a CLI run opens here. In-memory data is saved in the run
directory as `data.npz` (never a pickle), so such a run resumes like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from evosparse.commands import evaluator, execute
from evosparse.errors import UserError
from evosparse.export import ExportedModel, export_run, run_model
from evosparse.report import write_report
from evosparse.results import Candidate, Run
from evosparse.rundir import RunDir
from evosparse.runner import resume_run, start_run
from evosparse.space import SearchSpace, load_space, validate_space


class SearchResult(Run):
    """A run directory opened for use: its front and scores (`Run`), plus trained models,
    export and report."""

    def model(self, member: Candidate | int | None = None) -> ExportedModel:
        """The trained network of a member (a `Candidate`, a genome id, or by default
        `best()`), rebuilt from the run's weights: `predict` takes raw features and returns
        the data's labels."""
        if member is None:
            member = self.best()
        if isinstance(member, int):
            found = [c for c in self.population if c.genome_id == member]
            if not found:
                raise UserError(f"genome {member} is not in the population of {self.path}")
            member = found[0]
        return run_model(self, member)

    def export(self, select: str = "front", out: str | Path | None = None) -> list[Path]:
        """Write the chosen front members as deployable files (`evosparse export`)."""
        return export_run(self, select, None if out is None else Path(out))

    def report(self) -> Path:
        """Write the plots and report.html into RUN/report/ (`evosparse report`)."""
        return write_report(self)


def open_run(run_dir: str | Path) -> SearchResult:
    """Open an existing run directory (finished, stopped, or still running elsewhere)."""
    return SearchResult(run_dir)


def _space(space: str | Path | dict[str, Any] | SearchSpace) -> SearchSpace:
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, dict):
        return validate_space(space, "space")
    if isinstance(space, str | Path):
        return load_space(space)
    raise UserError(f"space must be a path, a dict or a SearchSpace, not {type(space).__name__}")


def _console(progress: bool) -> Console | None:
    return Console() if progress else None


def search(
    space: str | Path | dict[str, Any] | SearchSpace,
    data: str | Path | tuple[Any, Any] | None = None,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    *,
    progress: bool = True,
    ray_address: str | None = None,
    workers: int | None = None,
    **overrides: Any,
) -> SearchResult:
    """Run a search and return its result.

    `space` is a search-space file, a dict of the same keys, or a `SearchSpace`. `data`
    takes the place of the space's dataset: a `.npz` / `.csv` path, or `(X, y)` arrays
    (labels may be integers or strings), which are saved in the run directory. Keyword
    overrides replace space keys (`generations=5`, `training={"epochs": 3}`). The run
    goes to `runs_dir/<name>` (default name: the space's); `progress=False` prints nothing.
    `workers` local Ray workers take batches side by side (None: the space's
    `evaluation.workers`; 0: every batch in this process); `ray_address` joins a cluster.
    """
    resolved = _space(space)
    in_memory = None
    if isinstance(data, str | Path):
        resolved = resolved.with_overrides(dataset={"name": "file",
                                                    "path": str(Path(data).resolve())})
    elif data is not None:
        if not isinstance(data, tuple | list) or len(data) != 2:
            raise UserError("data must be a dataset path or an (X, y) pair of arrays")
        in_memory = (data[0], data[1])
    resolved = resolved.with_overrides(name=name, **overrides)
    run_dir = RunDir(Path(runs_dir) / resolved.name)
    search_ = start_run(run_dir, resolved, evaluator(resolved, ray_address, workers), [],
                        data=in_memory)
    execute(search_, run_dir, _console(progress))
    return open_run(run_dir.path)


def resume(
    run_dir: str | Path,
    generations: int | None = None,
    *,
    progress: bool = True,
    ray_address: str | None = None,
    workers: int | None = None,
) -> SearchResult:
    """Continue a stopped or killed run exactly (`evosparse resume`); `generations` sets a
    new total."""
    folder = RunDir(run_dir)
    space = folder.load_space()
    search_ = resume_run(folder, evaluator(space, ray_address, workers), [], generations)
    execute(search_, folder, _console(progress))
    return open_run(folder.path)
