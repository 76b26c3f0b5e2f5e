"""What a Ray batch asks for (`evaluation.cpus_per_batch`, `gpus_per_batch`, `cpu_nodes_too`)
and how many batches fit at once; no Ray needed (`tests/test_ray_cluster.py` runs them)."""

from __future__ import annotations

import pytest

from evosparse.errors import UserError
from evosparse.evaluators.ray import _pools
from evosparse.space import validate_space
from tests.conftest import TINY, deep_update

GPU_NODE = {"NodeID": "g", "Alive": True, "Resources": {"CPU": 8.0, "GPU": 2.0}}
CPU_NODE = {"NodeID": "c", "Alive": True, "Resources": {"CPU": 6.0}}
DEAD = {"NodeID": "d", "Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}
HEAD = {"NodeID": "h", "Alive": True, "Resources": {"memory": 1e9}}  # --num-cpus 0


@pytest.mark.parametrize(("cpus", "gpus", "cpu_nodes_too", "expected"), [
    (1, 0.0, False, [(0.0, 14, None)]),                 # no GPU asked for: every node's CPUs
    (4, 0.0, False, [(0.0, 3, None)]),
    (1, 1.0, False, [(1.0, 2, None)]),                  # GPU batches on the GPU node only
    (1, 0.25, False, [(0.25, 8, None)]),                # four batches share each GPU
    (1, 0.25, True, [(0.25, 8, None), (0.0, 6, "c")]),  # and, pinned, the CPU node if asked
    (2, 0.25, True, [(0.25, 4, None), (0.0, 3, "c")]),  # CPUs per batch bound both
])
def test_batches_that_fit_at_once(cpus, gpus, cpu_nodes_too, expected) -> None:
    assert _pools([HEAD, GPU_NODE, CPU_NODE, DEAD], cpus, gpus, cpu_nodes_too) == expected


def test_gpus_asked_for_on_a_cluster_without_them_is_one_message() -> None:
    with pytest.raises(UserError, match=r"evaluation.gpus_per_batch is 0.5 with 1 CPUs"):
        _pools([HEAD, CPU_NODE], 1, 0.5, False)


@pytest.mark.parametrize(("evaluation", "message"), [
    ({"gpus_per_batch": 1, "device": "cpu"}, "gpus_per_batch is 1.0 but device is cpu"),
    ({"gpus_per_batch": 1.5}, "gpus_per_batch above 1 must be a whole number, got 1.5"),
    ({"gpus_per_batch": 0}, "gpus_per_batch"),
    ({"cpus_per_batch": -1}, "cpus_per_batch"),
])
def test_bad_resources_name_the_key(evaluation, message) -> None:
    with pytest.raises(UserError, match="evaluation") as info:
        validate_space(deep_update(TINY, {"evaluation": evaluation}), "space.yaml")
    assert message in str(info.value)
