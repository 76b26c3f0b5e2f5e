"""Live progress display and the final front table, drawn with rich."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from evosparse.evolution import GenerationRecord, Reporter, SearchState
from evosparse.fitness import EvalResult
from evosparse.space import SearchSpace


class ProgressDisplay(Reporter):
    """A bar for the evaluations of the current generation and a line per generation.

    The line shows generation, evaluations, best validation accuracy, front size,
    hypervolume, elapsed and estimated remaining time. The estimate counts each
    generation still to come at the mean time of a plain one so far. The first
    population's training counts as initial_epochs / epochs plain generations
    (`training.initial_epochs`); a finishing generation (`training.finish_epochs`), which
    trains each front member `finish_epochs` where a plain one trains each of `population`
    children `epochs`, as front x finish_epochs / (population x epochs), with the front as
    it stands (times 1 + the `finish_prune` shares: each adds a pruned copy per member);
    the refit after it (`training.refit_epochs`) as front x refit_epochs / (population x
    epochs) more.
    """

    def __init__(self, console: Console, space: SearchSpace) -> None:
        self.console = console
        self.generations = space.generations
        training = space.training
        self._finish_share = (training.finish_epochs * (1 + len(training.finish_prune))
                              / (training.epochs * space.population))
        """What one front member's finishing costs (with its pruned copies), in plain
        generations."""
        self._refit_share = training.refit_epochs / (training.epochs * space.population)
        """What one front member's refit costs, in plain generations."""
        self._initial = (training.initial_epochs or training.epochs) / training.epochs
        """What the first population's training costs, in plain generations."""
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=True,
        )
        self._task: Any = None
        self._started: int | None = None
        """The generation whose evaluations the bar last counted."""
        self._start = time.monotonic()
        self._done = 0.0
        """Generations done in this process, in plain generations' time."""

    def generation_start(self, generation: int, n_evaluations: int) -> None:
        """A bar for the generation's evaluations; a second start of the same generation
        is the refit of its front (`training.refit_epochs`) and is labelled so."""
        if self._task is None:
            self.progress.start()
        else:
            self.progress.remove_task(self._task)
        label = (f"refit of the front {generation}/{self.generations}"
                 if generation == self._started else f"generation {generation}/{self.generations}")
        self._started = generation
        self._task = self.progress.add_task(label, total=n_evaluations)

    def evaluated(self, results: list[EvalResult]) -> None:
        self.progress.advance(self._task, len(results))

    def generation_end(self, record: GenerationRecord, state: SearchState) -> None:
        self._done += self._initial if record.generation == 0 else 1
        elapsed = time.monotonic() - self._start
        to_come = max(self.generations - record.generation, 0)
        if to_come:  # the last of them may finish (instead of breeding), then refit
            to_come += ((self._finish_share + self._refit_share) * len(record.front)
                        - bool(self._finish_share))
        left = to_come * elapsed / self._done
        failed = f" | failed {record.failed}" if record.failed else ""
        self.progress.console.print(
            f"gen {record.generation:>3}/{self.generations} | evals {record.evaluations:>5} | "
            f"best val {record.best_val_accuracy:.4f} | front {len(record.front):>2} | "
            f"HV {record.hypervolume:.4f}{failed} | {elapsed:6.1f}s elapsed, ~{left:.0f}s left",
            highlight=False,
            soft_wrap=True,
        )

    def close(self) -> None:
        self.progress.stop()


def front_table(front: list[dict[str, Any]], title: str) -> Table:
    """The Pareto front as a table, best accuracy first."""
    table = Table(title=title)
    for col in ("genome", "val acc", "test acc", "FLOPs", "params", "hidden"):
        table.add_column(col, justify="right")
    for m in front:
        table.add_row(
            str(m["genome_id"]), f"{m['val_accuracy']:.4f}", f"{m['test_accuracy']:.4f}",
            f"{m['flops']:,}", f"{m['params']:,}", str(m["hidden_nodes"]),
        )
    return table
