"""One contract suite for every evaluator (as Optuna tests its storages), plus Ray's faults.

The Ray evaluator runs on the real multi-node Ray cluster of `conftest.cluster`.
Functions sent to Ray are made inside factories, so cloudpickle ships them by
value and the workers need not import this test module.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from evosparse.evaluators import BaseEvaluator, LocalEvaluator
from evosparse.evaluators.base import BatchFailure, BatchLost


def scale_fn() -> Callable[[list[int], int], list[int]]:
    def fn(batch: list[int], factor: int) -> list[int]:
        return [x * factor for x in batch]

    return fn


def raising_fn() -> Callable[[list[int], int], list[int]]:
    def fn(batch: list[int], factor: int) -> list[int]:
        if 13 in batch:
            raise ValueError("unlucky batch 13")
        return [x * factor for x in batch]

    return fn


def first_attempt_slow_fn() -> Callable[[tuple[str, int, float], int], int]:
    """Records its pid in a file and sleeps on the first attempt; answers at once after."""

    def fn(batch: tuple[str, int, float], factor: int) -> int:
        import os
        import time
        from pathlib import Path

        path, value, seconds = batch
        if not Path(path).exists():
            Path(path).write_text(str(os.getpid()))
            time.sleep(seconds)
        return value * factor

    return fn


def make_ray(**kw: object) -> BaseEvaluator:
    from evosparse.evaluators.ray import RayEvaluator

    return RayEvaluator(**kw)  # type: ignore[arg-type]


@pytest.fixture(params=["local", pytest.param("ray", marks=pytest.mark.slow)])
def evaluator(request: pytest.FixtureRequest) -> BaseEvaluator:
    if request.param == "local":
        return LocalEvaluator()
    request.getfixturevalue("cluster")
    return make_ray()


# -- the contract ------------------------------------------------------------------------------

def test_outcomes_come_in_batch_order(evaluator: BaseEvaluator) -> None:
    batches = [[i, i + 1] for i in range(0, 12, 2)]
    assert list(evaluator.map(scale_fn(), batches, 3)) == [[3 * x for x in b] for b in batches]


def test_a_raising_batch_is_recorded_with_its_traceback(evaluator: BaseEvaluator) -> None:
    out = list(evaluator.map(raising_fn(), [[1], [13], [2]], 2))
    assert out[0] == [2] and out[2] == [4]
    assert isinstance(out[1], BatchFailure)
    assert "Traceback" in out[1].reason and "ValueError: unlucky batch 13" in out[1].reason


def test_no_batches(evaluator: BaseEvaluator) -> None:
    assert list(evaluator.map(scale_fn(), [], 1)) == []


# -- Ray's faults ------------------------------------------------------------------------------


def _kill_when_started(pid_file: Path) -> threading.Thread:
    """SIGKILL the worker process that writes `pid_file`, once it appears."""

    def kill() -> None:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)

    t = threading.Thread(target=kill, daemon=True)
    t.start()
    return t


@pytest.mark.slow
def test_ray_a_killed_worker_process_is_retried(cluster, tmp_path: Path) -> None:
    batches = [(str(tmp_path / "a"), 5, 30.0), (str(tmp_path / "b"), 7, 0.0)]
    killer = _kill_when_started(tmp_path / "a")
    out = list(make_ray(max_retries=2).map(first_attempt_slow_fn(), batches, 10))
    killer.join()
    assert out == [50, 70]  # one result per batch, the killed one from its retry


@pytest.mark.slow
def test_ray_retries_exhausted_name_the_batch(cluster, tmp_path: Path) -> None:
    batches = [(str(tmp_path / "ok"), 1, 0.0), (str(tmp_path / "dies"), 2, 30.0)]
    killer = _kill_when_started(tmp_path / "dies")
    with pytest.raises(BatchLost) as info:
        list(make_ray(max_retries=0).map(first_attempt_slow_fn(), batches, 1))
    killer.join()
    assert info.value.indices == [1]
    assert "Worker" in info.value.reason or "died" in info.value.reason


@pytest.mark.slow
def test_ray_a_hanging_batch_is_cancelled_at_the_timeout(cluster, tmp_path: Path) -> None:
    batches = [(str(tmp_path / "hangs"), 1, 600.0), (str(tmp_path / "quick"), 2, 0.0)]
    start = time.monotonic()
    out = list(make_ray(timeout_s=3.0).map(first_attempt_slow_fn(), batches, 1))
    assert time.monotonic() - start < 60
    assert isinstance(out[0], BatchFailure) and "timed out after 3.0 s" in out[0].reason
    assert out[1] == 2


@pytest.mark.slow
def test_ray_a_removed_node_is_survived(cluster, tmp_path: Path) -> None:
    """Two long batches occupy both one-CPU worker nodes; one node is removed without
    warning; its batch is re-run on the other node. A fresh node is added back."""
    from ray.cluster_utils import Cluster

    c: Cluster = cluster  # type: ignore[assignment]
    batches = [(str(tmp_path / f"n{i}"), i, 8.0) for i in range(2)]
    evaluator = make_ray(max_retries=3)

    def remove() -> None:
        while not all((tmp_path / f"n{i}").exists() for i in range(2)):
            time.sleep(0.02)
        c.remove_node(c.worker_nodes_list[0], allow_graceful=False)  # type: ignore[attr-defined]

    t = threading.Thread(target=remove, daemon=True)
    t.start()
    out = list(evaluator.map(first_attempt_slow_fn(), batches, 3))
    t.join()
    assert out == [0, 3]
    c.worker_nodes_list[0] = c.add_node(num_cpus=1, node_ip_address="127.0.0.1")  # type: ignore[attr-defined]
    c.wait_for_nodes()
