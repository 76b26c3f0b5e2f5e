"""The README's cluster commands on a cluster started with `ray start` (`tests/ray_cli.py`):
a head with Ray's token authentication on (a token in HOME, as `ray start --head` finds
it), a one-CPU worker and a two-CPU worker that declares one GPU, all on 127.0.0.1.

Each search is the real `evosparse` command in a subprocess, joined with `--ray-address`
and no RAY_AUTH_* variable, or submitted with `ray job submit`; it must end with the
same front, history and weights as the same space run locally.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY, deep_update
from tests.ray_cli import LoopbackCluster
from tests.test_ray_search import _ray_processes
from tests.test_resume import _comparable, _wait_for_lines

pytestmark = pytest.mark.slow

# device cpu: the worker's declared GPU is not real, and both workers should take batches
SPACE = deep_update(TINY, {"generations": 2, "population": 6,
                           "training": {"epochs": 2, "batch_size": 32},
                           "evaluation": {"batch_size": 2, "device": "cpu"}})


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    c = LoopbackCluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.add_workers((1, 0), (2, 1))
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, tuple]:
    """The space's file and its local run."""
    root = tmp_path_factory.mktemp("reference")
    space = root / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    out = _cli(["run", str(space), "--runs-dir", str(root / "runs")], os.environ)
    assert out.returncode == 0, out.stderr
    return space, _comparable(root / "runs" / "tiny")


def _cli(args: list[str], env, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evosparse.cli", *args], capture_output=True,
                          text=True, env={**env, "COLUMNS": "120"}, timeout=600, **kw)


def _submit(c: LoopbackCluster, workdir: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """`ray job submit` as the README has it (with the RAY_AUTH_MODE Ray's CLI needs)."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", c.dashboard,
         "--working-dir", str(workdir), "--", *command],
        capture_output=True, text=True, env=c.env(RAY_AUTH_MODE="token"), timeout=600)


def test_the_cluster_listens_on_loopback_only(ray_cluster) -> None:
    found = ray_cluster.listening()
    assert found and found <= {"127.0.0.1", "::ffff:127.0.0.1"}


def test_join_finds_the_token_where_ray_keeps_it_and_ends_identical(ray_cluster, reference,
                                                                     tmp_path: Path) -> None:
    space, expected = reference
    out = _cli(["run", str(space), "--runs-dir", str(tmp_path), "--ray-address",
                ray_cluster.address], ray_cluster.env())
    assert out.returncode == 0, out.stderr
    assert "token" not in out.stderr
    assert _comparable(tmp_path / "tiny") == expected


def test_a_missing_or_wrong_token_is_one_message(ray_cluster, reference, tmp_path: Path) -> None:
    space, _ = reference
    args = ["run", str(space), "--runs-dir", str(tmp_path), "--ray-address", ray_cluster.address]
    (tmp_path / "home").mkdir()
    missing = _cli(args, ray_cluster.env(HOME=str(tmp_path / "home")))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"evosparse: error: --ray-address {ray_cluster.address}: the Ray cluster at "
        f"{ray_cluster.address} requires token authentication and no token was found: copy "
        "the cluster's token (`ray get-auth-token` on its head node) to ~/.ray/auth_token, or "
        "set RAY_AUTH_TOKEN_PATH to a file holding it, or RAY_AUTH_TOKEN to the token"]
    wrong = _cli(args, ray_cluster.env(RAY_AUTH_TOKEN="0" * 64))
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines() == [
        f"evosparse: error: --ray-address {ray_cluster.address}: the Ray cluster refused the "
        "token in RAY_AUTH_TOKEN: it is not this cluster's token"]
    disabled = _cli(args, ray_cluster.env(RAY_AUTH_MODE="disabled"))
    assert disabled.returncode == 2
    assert disabled.stderr.strip().endswith("the Ray cluster requires token authentication "
                                            "but RAY_AUTH_MODE is disabled; unset it")
    assert not (tmp_path / "tiny").exists()


_RESOURCES = """
import json, sys
import ray
from evosparse.evaluators.ray import RayEvaluator

def where(batch, context):
    import time
    time.sleep(0.3)
    ctx = ray.get_runtime_context()
    return ctx.get_node_id(), ctx.get_assigned_resources()

ev = RayEvaluator(address=sys.argv[1], cpus=1, gpus=0.5, cpu_nodes_too=sys.argv[2] == "1")
print(json.dumps({"slots": [n for _, n in ev._pools],
                  "gpu_node": [n["NodeID"] for n in ray.nodes()
                               if n["Alive"] and n["Resources"].get("GPU")][0],
                  "runs": list(ev.map(where, list(range(8)), None))}))
ev.close()
"""


@pytest.mark.parametrize("cpu_nodes_too", [False, True])
def test_gpu_batches_share_the_gpu_and_use_cpu_nodes_only_when_asked(ray_cluster,
                                                                     cpu_nodes_too) -> None:
    out = subprocess.run([sys.executable, "-c", _RESOURCES, ray_cluster.address,
                          str(int(cpu_nodes_too))], capture_output=True, text=True,
                         env=ray_cluster.env(), timeout=300)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    # the GPU node: 2 CPUs and 1 GPU hold two batches of 1 CPU and 0.5 GPU
    assert doc["slots"] == ([2, 1] if cpu_nodes_too else [2])
    on_gpu = [r for node, r in doc["runs"] if node == doc["gpu_node"]]
    assert all(r == {"CPU": 1.0, "GPU": 0.5} for r in on_gpu)
    elsewhere = [r for node, r in doc["runs"] if node != doc["gpu_node"]]
    assert elsewhere if cpu_nodes_too else not elsewhere
    assert all(r == {"CPU": 1.0} for r in elsewhere)


def test_job_submit_run_then_status_and_resume(ray_cluster, reference, tmp_path: Path) -> None:
    space, expected = reference
    work = tmp_path / "work"
    work.mkdir()
    (work / "space.yaml").write_text(space.read_text())
    runs = tmp_path / "runs"
    out = _submit(ray_cluster, work, "evosparse", "run", "space.yaml", "--ray-address", "auto",
                  "--runs-dir", str(runs), "--generations", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    status = _cli(["status", str(runs / "tiny"), "--json"], ray_cluster.env())
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["generation"] == 1
    out = _cli(["resume", str(runs / "tiny"), "--generations", "2", "--ray-address",
                ray_cluster.address], ray_cluster.env())
    assert out.returncode == 0, out.stderr
    assert _comparable(runs / "tiny") == expected


def test_job_submit_tune(ray_cluster, tmp_path: Path) -> None:
    from tests.test_tune import TUNE

    work = tmp_path / "work"
    work.mkdir()
    space = deep_update(TINY, deep_update(TUNE, {"tune": {"generations": 1}}))
    (work / "tune.yaml").write_text(yaml.safe_dump(space))
    runs = tmp_path / "runs"
    out = _submit(ray_cluster, work, "evosparse", "tune", "tune.yaml", "--trials", "2",
                  "--ray-address", "auto", "--runs-dir", str(runs))
    assert out.returncode == 0, out.stdout + out.stderr
    trials = json.loads((runs / "tiny" / "trials.json").read_text())
    assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE"]
    assert (runs / "tiny" / "best.yaml").is_file()


def test_a_worker_raylet_then_the_driver_sigkilled_resume_ends_identical(
        ray_cluster, reference, tmp_path: Path) -> None:
    """The one-CPU worker node's raylet is killed while it runs a batch: the run goes on
    (its batches re-run on the other node); then the driver is killed, and `evosparse
    resume --ray-address` ends identical to the local run. Last: that node is gone after."""
    space, expected = reference
    run = tmp_path / "tiny"
    proc = subprocess.Popen([sys.executable, "-m", "evosparse.cli", "run", str(space),
                             "--runs-dir", str(tmp_path), "--ray-address", ray_cluster.address],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ray_cluster.env())
    worker = ray_cluster.nodes[1]
    deadline = time.monotonic() + 300
    while not set(_ray_processes(b"ray::_run")) & set(ray_cluster.pids(worker)):
        assert proc.poll() is None and time.monotonic() < deadline, "the worker took no batch"
        time.sleep(0.002)
    (raylet,) = [pid for pid in ray_cluster.pids(worker)
                 if b"raylet/raylet" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    os.kill(raylet, signal.SIGKILL)
    _wait_for_lines(run, 8, proc)  # into generation 1, after the lost node's batches
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    out = _cli(["resume", str(run), "--ray-address", ray_cluster.address], ray_cluster.env())
    assert out.returncode == 0, out.stderr
    assert _comparable(run) == expected
