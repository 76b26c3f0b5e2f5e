"""Shared fixtures: tiny search spaces written to temporary files, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keep every Ray node on 127.0.0.1

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 3,
    "population": 6,
    "generations": 3,
    "dataset": {"name": "digits"},
    "network": {"max_hidden": 8, "max_levels": 2, "initial_density": 0.2},
    "mutation": {"add_connection_max": 8, "add_node": 0.5},
    "training": {"epochs": 1, "batch_size": 128},
    "objectives": {"reference_flops": 2000},
    "evaluation": {"batch_size": 2},
}


def deep_update(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        nested = isinstance(v, dict) and isinstance(out.get(k), dict)
        out[k] = deep_update(out[k], v) if nested else v
    return out


@pytest.fixture
def write_space(tmp_path: Path):
    """Write the tiny space, updated with `extra`, to a YAML file; return its path."""

    def write(extra: dict[str, Any] | None = None, name: str = "space.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(deep_update(TINY, extra or {})))
        return path

    return write


def evosparse(*args: str, cwd: Path | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run the real `evosparse` command in a subprocess."""
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "evosparse.cli", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=600, **kw,
    )


@pytest.fixture(scope="session")
def cluster():
    """A real Ray cluster on loopback: a head with no CPUs and two one-CPU worker nodes,
    all on 127.0.0.1; the test process is connected as a driver. Stopped by its handle."""
    import ray
    from ray.cluster_utils import Cluster

    # a node that dies is declared dead after ~3 s of failed health checks (Ray's default:
    # ~30 s), so the tests that remove one spend their time on the search, not on waiting
    health = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 1000,
              "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3}
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False,
        "_system_config": health})
    c.worker_nodes_list = [c.add_node(num_cpus=1, node_ip_address="127.0.0.1")
                           for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, logging_level="WARNING")
    yield c
    ray.shutdown()
    c.shutdown()
