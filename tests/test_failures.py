"""A generation that fails as a whole stops the run (exit 2, previous checkpoint intact,
resumable); one that fails in part goes on; an unusable device stops before any write;
a second Ctrl-C aborts at once with the previous checkpoint valid."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from evosparse.errors import EvaluationError
from evosparse.evaluators import BaseEvaluator, LocalEvaluator
from evosparse.evaluators.base import BatchFailure
from evosparse.evolution import common_failure
from evosparse.fitness import EvalResult
from evosparse.rundir import RunDir
from evosparse.runner import resume_run, start_run
from evosparse.space import load_space
from tests.conftest import evosparse
from tests.test_cli import _assert_one_clear_error
from tests.test_resume import _comparable, _start, _wait_for_lines

OOM = "RuntimeError: CUDA error: out of memory"


class Failing(BaseEvaluator):
    """In-process evaluation whose `map` calls from number `start` on fail the batches
    `fails(index)` selects, with `reason` as their traceback's last line."""

    def __init__(self, start: int, fails: Callable[[int], bool], reason: str = OOM) -> None:
        self.calls, self.start, self.fails, self.reason = 0, start, fails, reason

    def map(self, fn: Callable[[Any, Any], Any], batches: Sequence[Any], context: Any
            ) -> Iterator[Any]:
        self.calls += 1
        for i, out in enumerate(LocalEvaluator().map(fn, batches, context)):
            failing = self.calls > self.start and self.fails(i)
            yield BatchFailure(f"Traceback ...\n{self.reason}\n") if failing else out


def _result(status: str, error: str | None) -> EvalResult:
    return EvalResult(0, 0, status, 0.0, 0.0, 1, 1, 1, 0.0, error=error)


def test_common_failure_is_one_reason_shared_by_every_failed_result() -> None:
    same = [_result("failed", f"Traceback (genome {i})\n{OOM}\n") for i in range(3)]
    assert common_failure(same) == OOM
    assert common_failure([*same, _result("ok", None)]) is None
    assert common_failure([*same, _result("nan", "loss became nan")]) is None
    assert common_failure([*same, _result("failed", "ValueError: other")]) is None
    assert common_failure([]) is None


def test_a_generation_failing_as_a_whole_stops_with_the_reason_and_resumes_identical(
        write_space, tmp_path: Path) -> None:
    """Generation 1's every batch fails (here: as a GPU out of memory would): the search
    raises with the reason instead of recording failures until its budget is spent, the
    generation-0 checkpoint stays the newest, and a resume ends identical to a run that
    never failed. Mutant that fails this: the stop in `Search.step` removed."""
    space = load_space(write_space({"generations": 2}))
    reference = RunDir(tmp_path / "ref" / "tiny")
    start_run(reference, space, LocalEvaluator(), []).run()
    run = RunDir(tmp_path / "run" / "tiny")
    search = start_run(run, space, Failing(1, lambda i: True), [])
    with pytest.raises(EvaluationError, match=f"generation 1: every evaluation failed with {OOM}"):
        search.run()
    run.unlock()
    assert run.latest_checkpoint()["state"]["generation"] == 0
    resume_run(run, LocalEvaluator(), []).run()
    assert _comparable(run.path) == _comparable(reference.path)


def test_a_generation_failing_in_part_goes_on_and_records_the_failures(
        write_space, tmp_path: Path) -> None:
    """Batch 0 of every later generation times out: its genomes are recorded failed with
    the reason, never selected, and the run spends its whole budget."""
    space = load_space(write_space({"generations": 2}))
    run = RunDir(tmp_path / "tiny")
    reason = "batch timed out after 0.05 s"
    state = start_run(run, space, Failing(1, lambda i: i == 0, reason), []).run()
    run.unlock()
    assert state.generation == 2
    failed = [r for r in run.read_history() if r["status"] == "failed"]
    assert len(failed) == 2 * space.evaluation.batch_size
    assert all(reason in r["error"] for r in failed)
    assert {r["genome_id"] for r in failed}.isdisjoint(m.genome.genome_id
                                                       for m in state.population)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_for_on_a_machine_without_it_exits_2_before_writing(
        write_space, tmp_path: Path) -> None:
    """Mutant that fails this: the device check in `commands.evaluator` removed (every
    evaluation then fails alike, and the run stops at generation 0, after writing)."""
    runs = tmp_path / "runs"
    out = evosparse("run", str(write_space()), "--device", "cuda", "--runs-dir", str(runs))
    _assert_one_clear_error(out, "evaluation.device is cuda", "no CUDA device", "--device cpu")
    assert not runs.exists()


def test_a_second_ctrl_c_aborts_at_once_with_exit_130_and_a_valid_checkpoint(
        write_space, tmp_path: Path) -> None:
    """Mutant that fails this: the handler's second-press `raise KeyboardInterrupt` removed
    (the run then stops after the generation, exit 0)."""
    space = write_space({"generations": 30})
    run = tmp_path / "tiny"
    proc = _start("run", str(space), "--runs-dir", str(tmp_path))
    _wait_for_lines(run, 8, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.stdout is not None
    for line in proc.stdout:  # the first Ctrl-C is handled: it says so
        if "Ctrl-C: stopping after this generation" in line:
            break
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130
    assert "aborted; the newest checkpoint" in stdout
    body = RunDir(run).latest_checkpoint()  # checksummed: a torn or partial file is None
    assert body is not None and body["state"]["generation"] < 30
