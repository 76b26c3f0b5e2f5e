"""Run options that had no test: keep_checkpoints, resume with fewer generations,
`report`, `--workers` and `evaluation.workers` through the CLI, an unreachable `--ray-address`,
`expression_search: random`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evosparse.evaluators import LocalEvaluator
from evosparse.evolution import GenerationRecord, Reporter, SearchState
from evosparse.expressions import mutate_expression, random_expression
from evosparse.genome import HIDDEN, InnovationRegistry
from evosparse.operators import change_activation, dense_mlp_genome
from evosparse.rundir import RunDir
from evosparse.runner import resume_run, start_run
from evosparse.space import ActivationSpec, load_space
from tests.conftest import evosparse
from tests.test_cli import _assert_one_clear_error
from tests.test_resume import _comparable


class StopAfter(Reporter):
    """Asks its search to stop once generation `last` has ended (as Ctrl-C does)."""

    def __init__(self, last: int) -> None:
        self.last, self.search = last, None

    def generation_end(self, record: GenerationRecord, state: SearchState) -> None:
        if record.generation == self.last and self.search is not None:
            self.search.stop_requested = True


def test_keep_checkpoints_keeps_the_newest_and_the_weights_they_need(write_space,
                                                                     tmp_path: Path) -> None:
    """Mutant that fails this: `write_checkpoint` deleting nothing (`[keep:]` -> `[:0]`)."""
    space = load_space(write_space({"generations": 4, "keep_checkpoints": 2}))
    run = RunDir(tmp_path / "tiny")
    start_run(run, space, LocalEvaluator(), []).run()
    run.unlock()
    kept = sorted(p.name for p in run.checkpoint_dir.glob("*.json"))
    assert kept == ["gen-000003.json", "gen-000004.json"]
    generations = [json.loads(p.read_text())["body"]["state"] for p in
                   sorted(run.checkpoint_dir.glob("*.json"))]
    needed = {m["genome"]["genome_id"] for s in generations for m in s["population"]}
    assert {int(p.stem) for p in run.model_dir.glob("*.safetensors")} == needed


def test_resume_with_fewer_generations_ends_where_a_run_that_long_ends(write_space,
                                                                       tmp_path: Path) -> None:
    """A 4-generation run stopped after generation 1 and resumed with 2 generations equals
    a straight 2-generation run; resumed with fewer than it has done, it evaluates nothing."""
    space = load_space(write_space({"generations": 4}))
    ref = RunDir(tmp_path / "ref" / "tiny")
    start_run(ref, space.with_overrides(generations=2), LocalEvaluator(), []).run()
    run = RunDir(tmp_path / "run" / "tiny")
    stop = StopAfter(1)
    search = start_run(run, space, LocalEvaluator(), [stop])
    stop.search = search
    assert search.run().generation == 1
    run.unlock()
    assert resume_run(run, LocalEvaluator(), [], generations=2).run().generation == 2
    run.unlock()
    assert _comparable(run.path) == _comparable(ref.path)
    history = run.history_file.read_bytes()
    state = resume_run(run, LocalEvaluator(), [], generations=1).run()
    run.unlock()
    assert state.generation == 2 and run.history_file.read_bytes() == history


def test_report_through_the_cli(write_space, tmp_path: Path) -> None:
    run = RunDir(tmp_path / "tiny")
    start_run(run, load_space(write_space({"generations": 1})), LocalEvaluator(), []).run()
    run.unlock()
    report = evosparse("report", str(run.path))
    assert report.returncode == 0, report.stderr
    page = run.path / "report" / "report.html"
    assert page.is_file() and f"report: {page}" in report.stdout.replace("\n", "")


@pytest.mark.slow  # Ray waits about 45 s for the cluster's GCS before giving up
def test_an_unreachable_ray_address_exits_2_before_writing(write_space, tmp_path: Path) -> None:
    out = evosparse("run", str(write_space()), "--ray-address", "127.0.0.1:1",
                    "--runs-dir", str(tmp_path / "runs"))
    _assert_one_clear_error(out, "127.0.0.1:1")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_workers_through_the_cli_equal_a_local_run(write_space, tmp_path: Path) -> None:
    space = write_space({"generations": 1})
    local = evosparse("run", str(space), "--runs-dir", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    ray = evosparse("run", str(space), "--workers", "2", "--runs-dir", str(tmp_path / "ray"))
    assert ray.returncode == 0, ray.stderr
    assert _comparable(tmp_path / "ray" / "tiny") == _comparable(tmp_path / "local" / "tiny")


def test_the_space_names_its_local_workers(write_space) -> None:
    """`evaluation.workers: 2` starts a private local Ray of 2 CPUs when neither
    `--workers` nor `--ray-address` is given; `--workers 0` evaluates in process. Mutant
    that fails this: `commands.evaluator` ignoring the space's workers."""
    script = (
        "import sys, ray\n"
        "from evosparse.commands import evaluator\n"
        "from evosparse.space import load_space\n"
        "space = load_space(sys.argv[1])\n"
        "print(type(evaluator(space, None, 0)).__name__)\n"
        "ev = evaluator(space, None, None)\n"
        "print(type(ev).__name__, ray.cluster_resources()['CPU'])\n"
        "ev.close()\n"
    )
    path = write_space({"evaluation": {"workers": 2}})
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-2:] == ["LocalEvaluator", "RayEvaluator 2.0"]


@pytest.mark.parametrize("search", ["random", "mutate"])
def test_expression_search_draws_fresh_or_mutates(search: str) -> None:
    """`random` draws a fresh expression for the node, `mutate` evolves its current one
    (same generator, same draws). Mutant that fails this: `change_activation` ignoring
    `expression_search` (always mutating)."""
    acts = ActivationSpec(hidden=("relu",), expressions=1.0, expression_search=search)
    g = dense_mlp_genome(0, InnovationRegistry(4, 2), [3], "sin(x) * 0.5")
    for seed in range(5):
        child = change_activation(g, np.random.default_rng(seed), acts)
        rng = np.random.default_rng(seed)
        row = rng.choice(np.flatnonzero(g.node_kind == HIDDEN))
        want = (random_expression(rng, acts.primitives, acts.expression_depth)
                if search == "random" else
                mutate_expression(str(g.node_act[row]), rng, acts.primitives,
                                  acts.expression_depth))
        assert child.node_act[row] == want
