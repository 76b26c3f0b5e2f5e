"""Whole searches on the real loopback Ray cluster (`conftest.cluster`): same result as a
local run, and the same result after a killed worker, a killed driver, or retries used up.

Each search is the real `evosparse` command in a subprocess joined to the cluster
with `--ray-address`; its reference is the same space run locally.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from evosparse.errors import EvaluationError
from evosparse.evaluators import BaseEvaluator, LocalEvaluator
from evosparse.rundir import RunDir
from evosparse.runner import start_run
from evosparse.space import load_space
from tests.conftest import evosparse
from tests.test_evaluators import make_ray
from tests.test_resume import _comparable, _start, _wait_for_lines

pytestmark = pytest.mark.slow

SPACE = {"generations": 3, "population": 6, "training": {"epochs": 3, "batch_size": 32},
         "evaluation": {"batch_size": 2}}


def _ray_processes(title: bytes) -> list[int]:
    """Pids of the Ray worker processes whose title starts with `title` (Linux /proc):
    `ray::_run` runs an evaluation, `ray::ImplicitFunc.train` a Ray Tune trial."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().startswith(title):
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


def gated_fn(fn: Callable[[Any, Any], Any], gates: Path, ids: frozenset[int]
             ) -> Callable[[Any, Any], Any]:
    """`fn`, except that a first attempt at a batch holding one of `ids` writes its pid to
    `gates/<first id>` and waits for `gates/release` (a retry runs at once): a test then
    kills or strands the very worker that runs a known batch. Made in a factory, so
    cloudpickle ships it by value."""

    def run(batch: Any, context: Any) -> Any:
        import os
        import time
        from pathlib import Path

        hit = sorted(g.genome_id for g in batch if g.genome_id in ids)
        gate = Path(gates) / str(hit[0]) if hit else None
        if gate is not None and not gate.exists():
            tmp = gate.with_suffix(".tmp")
            tmp.write_text(str(os.getpid()))
            os.replace(tmp, gate)
            deadline = time.monotonic() + 300
            while not (Path(gates) / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        return fn(batch, context)

    return run


class Gated(BaseEvaluator):
    """An evaluator whose batches holding `ids` wait at a gate on their first attempt."""

    def __init__(self, inner: BaseEvaluator, gates: Path, ids: set[int]) -> None:
        self.inner, self.gates, self.ids = inner, gates, frozenset(ids)

    def map(self, fn: Callable[[Any, Any], Any], batches: Sequence[Any], context: Any
            ) -> Iterator[Any]:
        return self.inner.map(gated_fn(fn, self.gates, self.ids), batches, context)

    def close(self) -> None:
        self.inner.close()


def _wait_for(path: Path) -> int:
    deadline = time.monotonic() + 300
    while not path.exists():
        assert time.monotonic() < deadline, f"no batch reached the gate {path.name}"
        time.sleep(0.01)
    return int(path.read_text())


def _in_background(action: Callable[[], None]) -> threading.Thread:
    t = threading.Thread(target=action, daemon=True)
    t.start()
    return t


def _local_reference(space: Path, runs: Path) -> tuple:
    start_run(RunDir(runs / "tiny"), load_space(space), LocalEvaluator(), []).run()
    return _comparable(runs / "tiny")


def _start_on(cluster, space: Path, run: Path):
    """`evosparse run SPACE` into `run` on the cluster, in the background."""
    return _start("run", str(space), "--runs-dir", str(run.parent), "--ray-address",
                  cluster.address)


@pytest.fixture
def reference(write_space, tmp_path: Path, request) -> tuple[Path, tuple]:
    space = write_space({**SPACE, **getattr(request, "param", {})})
    out = evosparse("run", str(space), "--runs-dir", str(tmp_path / "ref"))
    assert out.returncode == 0, out.stderr
    return space, _comparable(tmp_path / "ref" / "tiny")


CONV = {"network": {"family": "conv2d", "kernel": 3, "scales": 2, "topology": "layered",
                    "initial_density": 1.0},
        "mutation": {"taps": 0.5},
        "training": {"epochs": 3, "batch_size": 32, "inheritance": "lamarckian",
                     "refit_epochs": 2}}
"""The tiny space as sparse 2-D CNNs on the digits images, Lamarckian, its last front refit
on the training and validation samples (as the conv spaces ship)."""


SMOOTHED = {"training": {"epochs": 3, "batch_size": 32, "label_smoothing": 0.1}}
"""The tiny space trained with label smoothing, as digits.yaml trains."""


@pytest.mark.parametrize("reference", [SMOOTHED, CONV], indirect=True, ids=["mlp", "conv2d"])
def test_ray_run_equals_local_run_and_warns_without_token_auth(cluster, reference,
                                                               tmp_path: Path) -> None:
    space, expected = reference
    out = evosparse("run", str(space), "--runs-dir", str(tmp_path / "ray"),
                    "--ray-address", cluster.address)
    assert out.returncode == 0, out.stderr
    assert "without token authentication" in out.stderr
    assert _comparable(tmp_path / "ray" / "tiny") == expected


def test_ray_killed_worker_mid_generation_same_result(cluster, write_space,
                                                      tmp_path: Path) -> None:
    """The worker running generation 1's batch of genome 8 is SIGKILLed while it runs that
    batch; Ray retries it and the run ends as a local one does."""
    space = write_space(SPACE)
    expected = _local_reference(space, tmp_path / "ref")
    gates = tmp_path / "gates"
    gates.mkdir()

    killed: list[int] = []

    def kill() -> None:
        killed.append(_wait_for(gates / "8"))
        os.kill(killed[0], signal.SIGKILL)
        (gates / "release").touch()

    killer = _in_background(kill)
    run = RunDir(tmp_path / "kw" / "tiny")
    evaluator = Gated(make_ray(max_retries=2), gates, {8})
    try:
        start_run(run, load_space(space), evaluator, []).run()
    finally:
        evaluator.close()
        run.unlock()
    killer.join()
    assert killed, "the worker running genome 8's batch was killed"
    history, *_ = _comparable(run.path)
    assert len({(h["generation"], h["genome_id"]) for h in history}) == len(history)
    assert _comparable(run.path) == expected


def test_ray_driver_sigkill_then_resume_on_the_cluster(cluster, reference, tmp_path: Path) -> None:
    space, expected = reference
    run = tmp_path / "kd" / "tiny"
    proc = _start_on(cluster, space, run)
    _wait_for_lines(run, 10, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    out = evosparse("resume", str(run), "--ray-address", cluster.address)
    assert out.returncode == 0, out.stderr
    assert _comparable(run) == expected


def test_ray_retries_exhausted_stop_cleanly_and_resume_finishes(cluster, write_space,
                                                                tmp_path: Path) -> None:
    """Without retries, the killed batch of genome 8 stops the search naming its genomes;
    generation 0's checkpoint is the newest, and resuming on the cluster ends as a local
    run does."""
    space = write_space(SPACE)
    expected = _local_reference(space, tmp_path / "ref")
    gates = tmp_path / "gates"
    gates.mkdir()
    killer = _in_background(lambda: os.kill(_wait_for(gates / "8"), signal.SIGKILL))
    run = RunDir(tmp_path / "rx" / "tiny")
    evaluator = Gated(make_ray(max_retries=0), gates, {8})
    try:
        with pytest.raises(EvaluationError, match=r"generation 1: genomes \[.*8.*\] could not"):
            start_run(run, load_space(space), evaluator, []).run()
    finally:
        evaluator.close()
        run.unlock()
    killer.join()
    body = run.latest_checkpoint()
    assert body is not None and body["state"]["generation"] == 0
    assert json.loads(run.front_file.read_text())["generation"] == 0
    out = evosparse("resume", str(run.path), "--ray-address", cluster.address)
    assert out.returncode == 0, out.stderr
    assert _comparable(run.path) == expected


def _start_private_ray(ray_first: bool) -> subprocess.CompletedProcess[str]:
    script = (
        ("import ray\n" if ray_first else "")
        + "from evosparse.evaluators.ray import RayEvaluator\n"
        "ev = RayEvaluator(workers=1)\n"
        "import ray\n"
        "print(sorted({n['NodeManagerAddress'] for n in ray.nodes()}))\n"
        "print(ray.get_runtime_context().gcs_address)\n"
        "ev.close()\n"
    )
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)


def test_workers_start_a_private_ray_bound_to_loopback_only() -> None:
    """`--workers N` starts Ray itself: every node and the GCS listen on 127.0.0.1, with
    nothing set in the environment; if that cannot be ensured, no Ray is started."""
    out = _start_private_ray(ray_first=False)
    assert out.returncode == 0, out.stderr
    nodes, gcs = out.stdout.strip().splitlines()[-2:]
    assert nodes == "['127.0.0.1']" and gcs.startswith("127.0.0.1:")
    refused = _start_private_ray(ray_first=True)
    assert refused.returncode != 0
    assert "refusing to start a local Ray that would listen on the network" in refused.stderr
    assert "Started a local Ray instance" not in refused.stderr


def test_ray_a_node_removed_mid_run_same_result(cluster, write_space, tmp_path: Path) -> None:
    """Generation 1's batches of genomes 6 and 8 both run, one on each worker node, when
    a node disappears without warning; its batch is re-run on the other node. A fresh
    node is added back for the tests that follow."""
    space = write_space(SPACE)
    expected = _local_reference(space, tmp_path / "ref")
    gates = tmp_path / "gates"
    gates.mkdir()

    removed: list[bool] = []

    def remove() -> None:
        _wait_for(gates / "6")
        _wait_for(gates / "8")  # both batches in progress: both nodes busy
        cluster.remove_node(cluster.worker_nodes_list[0], allow_graceful=False)
        removed.append(True)
        (gates / "release").touch()

    remover = _in_background(remove)
    run = RunDir(tmp_path / "rn" / "tiny")
    evaluator = Gated(make_ray(max_retries=3), gates, {6, 8})
    try:
        start_run(run, load_space(space), evaluator, []).run()
    finally:
        evaluator.close()
        run.unlock()
        remover.join()
        cluster.worker_nodes_list[0] = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
    assert removed, "a node was removed while both ran a gated batch"
    assert _comparable(run.path) == expected


def test_ray_batches_past_the_timeout_stop_a_generation_failing_as_a_whole(
        cluster, write_space, tmp_path: Path) -> None:
    """Every batch of generation 0 runs past its 0.05 s deadline (a million training steps
    each: none can finish), so the run stops with that reason (exit 2) instead of spending
    its budget; batches cancelled in part of a generation are recorded and the run goes on
    (`test_failures.py`, and the evaluator's own test with a batch that blocks)."""
    space = write_space({**SPACE, "generations": 1, "training": {"epochs": 100_000},
                         "evaluation": {"batch_size": 2, "timeout_s": 0.05}})
    out = evosparse("run", str(space), "--runs-dir", str(tmp_path), "--ray-address",
                    cluster.address)
    assert out.returncode == 2, out.stderr
    message = out.stderr.strip().splitlines()[-1]
    assert "generation 0: every evaluation failed with " in message
    assert "timed out after 0.05 s" in message
    assert RunDir(tmp_path / "tiny").latest_checkpoint() is None


def test_tune_trials_run_through_ray_tune_and_the_median_rule_stops_the_weak_one(
        cluster, write_space, tmp_path: Path) -> None:
    """Three Ray Tune trials on the same Optuna study; `tune.median_stopping` judges each
    trial from generation 0 against one other trial. Seed 6 draws lr 0.05, 0.05, 1e-6:
    the third trial, which barely trains (hypervolume about 0.17 against 0.60), starts
    once the first two have reported, so the rule stops it before its last generation,
    and its run directory holds only the generations it reported. The two good trials
    tie, and a tie is not stopped. Without the stopping rule (or with Ray's defaults back,
    which need 3 other trials) every trial runs all 3 generations and this fails."""
    from tests.test_tune import TUNE

    space = write_space({**TUNE, "seed": 6, "tune": {
        "generations": 2, "params": {"training.lr": {"type": "categorical",
                                                     "choices": [0.05, 1e-6]}},
        "median_stopping": {"grace_period": 1, "min_samples_required": 1}}})
    out = evosparse("tune", str(space), "--trials", "3", "--runs-dir", str(tmp_path),
                    "--ray-address", cluster.address)
    assert out.returncode == 0, out.stderr
    trials = json.loads((tmp_path / "tiny" / "trials.json").read_text())
    assert len(trials) == 3 and {t["state"] for t in trials} == {"COMPLETE"}
    lrs = [t["params"]["training.lr"] for t in trials]
    assert sorted(lrs) == [1e-6, 0.05, 0.05], lrs  # the seeded sampler's draws
    assert [t["generations"] for t in trials if t["params"]["training.lr"] == 0.05] == [3, 3]
    runs = sorted((tmp_path / "tiny").glob("trial-*/generations.jsonl"))
    assert len(runs) == 3
    logged = sorted(([json.loads(line)["hypervolume"] for line in p.open()] for p in runs),
                    key=len)
    assert [len(hv) for hv in logged][1:] == [3, 3]
    assert 1 <= len(logged[0]) < 3, logged  # the weak trial, stopped early by the rule
    weak = next(t for t in trials if t["params"]["training.lr"] == 1e-6)
    assert weak["hypervolume"] == logged[0][-1] < min(hv[-1] for hv in logged[1:])
    assert sorted(t["hypervolume"] for t in trials) == sorted(hv[-1] for hv in logged)
    best = load_space(tmp_path / "tiny" / "best.yaml")
    assert best.training.lr == 0.05


def test_a_ray_tune_trial_killed_mid_run_resumes_from_its_checkpoint(cluster, write_space,
                                                                     tmp_path: Path) -> None:
    """Tune restarts the trial from its last per-generation checkpoint; the trial's run
    directory then equals an uninterrupted run of the same space."""
    from tests.test_tune import TUNE

    space = write_space({**TUNE, "tune": {**TUNE["tune"], "generations": 5}})
    proc = subprocess.Popen(
        [sys.executable, "-m", "evosparse.cli", "tune", str(space), "--trials", "1",
         "--runs-dir", str(tmp_path), "--ray-address", cluster.address],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        logs = list((tmp_path / "tiny").glob("trial-*/generations.jsonl"))
        trials = _ray_processes(b"ray::ImplicitFunc.train")
        if logs and logs[0].read_text().count("\n") >= 2 and trials:
            os.kill(trials[0], signal.SIGKILL)
            break
        time.sleep(0.01)
    else:
        pytest.fail("the trial ended or never started before it could be killed")
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    (trial,) = json.loads((tmp_path / "tiny" / "trials.json").read_text())
    assert trial["state"] == "COMPLETE"
    run = Path(trial["run_dir"]) if trial["run_dir"] else logs[0].parent
    out = evosparse("run", str(run / "space.yaml"), "--runs-dir", str(tmp_path / "ref"))
    assert out.returncode == 0, out.stderr
    assert _comparable(run) == _comparable(tmp_path / "ref" / run.name)
    lines = [json.loads(line) for line in (run / "generations.jsonl").open()]
    assert [g["generation"] for g in lines] == list(range(6))
    assert trial["hypervolume"] == lines[-1]["hypervolume"]
