"""Evaluation on a Ray cluster; the only module that imports ray (inside functions: whether
ray may bind to the network is decided when it is imported, see `RayEvaluator`).

- `RayEvaluator(address=None, workers=N)` starts a private local Ray bound to
  127.0.0.1 (never any other address); `address="auto"` or "host:port" joins an
  existing cluster the user started, and warns when that connection does not
  use Ray's token authentication.
- The context (the fitness configuration with the dataset) is put in the object
  store once per evaluator and context, not once per task.
- Each task declares its resources: `cpus` (the space's thread count) and one GPU
  when the cluster has GPUs and the device is not "cpu".
- On start, one warm-up task per slot (spread over the nodes) runs `prepare`
  (evosparse passes `fitness.warm_up`: torch's first-call costs, ~2 s a worker),
  so the first generation does not pay for it.
- At most as many tasks run as the cluster has slots, so a task starts when it
  is submitted and its deadline (`timeout_s`) measures its own run time. A task
  past its deadline is cancelled (its worker killed) and yields a `BatchFailure`.
- A task whose worker process or node dies is re-run by Ray up to `max_retries`
  times; after that the batch is lost and `map` raises `BatchLost`. An exception
  raised by the function itself yields a `BatchFailure` with its traceback.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from evosparse.errors import UserError
from evosparse.evaluators.base import BaseEvaluator, BatchFailure, BatchLost, call_recording_errors

B = TypeVar("B")
C = TypeVar("C")
R = TypeVar("R")

LOOPBACK = "127.0.0.1"
_NOT_LOOPBACK = (
    "refusing to start a local Ray that would listen on the network, not only on 127.0.0.1: "
    "ray was imported before evosparse could set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (or it "
    "is set to 1); unset it, or join a cluster you started with --ray-address"
)


def _run(fn: Callable[[B, C], R], batch: B, context: C) -> R | BatchFailure:
    """The remote task body; ray resolves `context` (an object ref) before the call."""
    return call_recording_errors(fn, batch, context)


def _prepare(prepare: Callable[[], object] | None) -> int:
    """Warm-up task body: run the caller's `prepare` in a worker before its first batch."""
    if prepare is not None:
        prepare()
    return os.getpid()


def _token_auth() -> bool:
    """True when this process talks to Ray with token authentication (RAY_AUTH_MODE=token)."""
    try:
        from ray._raylet import AuthenticationMode, get_authentication_mode
    except ImportError:  # a Ray without token authentication
        return False
    return bool(get_authentication_mode() == AuthenticationMode.TOKEN)


class RayEvaluator(BaseEvaluator):
    """Runs batches as Ray tasks on a cluster (see the module docstring)."""

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: int | None = None,
        cpus: float = 1.0,
        device: str = "auto",
        timeout_s: float | None = None,
        max_retries: int = 3,
        prepare: Callable[[], object] | None = None,
        warn: Callable[[str], None] = lambda m: print(f"evosparse: warning: {m}", file=sys.stderr),
    ) -> None:
        if address is None and workers is not None and workers < 1:
            raise UserError(f"--workers must be at least 1, got {workers}")
        if address is None and "ray" not in sys.modules:
            # Ray replaces 127.0.0.1 by the host's network address unless this is set
            # when it is imported; only for a Ray we start, never when joining a cluster.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray

        self._started_here = not ray.is_initialized()
        if self._started_here:
            if address is None:
                from ray._private import ray_constants  # read once, when ray was imported

                if ray_constants.ENABLE_RAY_CLUSTER:
                    raise UserError(_NOT_LOOPBACK)
                # address="local": always a new private Ray, never one already running here
                ray.init(address="local", num_cpus=workers or os.cpu_count(),
                         _node_ip_address=LOOPBACK,
                         include_dashboard=False, logging_level="WARNING",
                         log_to_driver=False)
                bound = {n["NodeManagerAddress"] for n in ray.nodes()}
                if bound != {LOOPBACK}:  # a backstop: the check above should have refused
                    ray.shutdown()
                    raise UserError(f"{_NOT_LOOPBACK} (it bound {sorted(bound)}; stopped)")
            else:
                try:
                    ray.init(address=address, logging_level="WARNING", log_to_driver=False)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise UserError(f"--ray-address {address}: cannot join the Ray cluster "
                                    f"({exc})") from None
                if not _token_auth():
                    warn(f"the Ray cluster at {address} was joined without token "
                         "authentication (RAY_AUTH_MODE=token is not set): anyone who can "
                         "reach it can run code on it")
        resources = ray.cluster_resources()
        self._gpus = 1.0 if resources.get("GPU", 0) > 0 and device != "cpu" else 0.0
        self._cpus = cpus
        self._slots = max(1, int(resources.get("CPU", 1) // cpus))
        self._timeout = timeout_s
        self._task = ray.remote(_run).options(num_cpus=cpus, num_gpus=self._gpus,
                                              max_retries=max_retries, retry_exceptions=False)
        self._context: tuple[Any, Any] | None = None  # (context, its object ref)
        warm = ray.remote(_prepare).options(num_cpus=cpus, num_gpus=self._gpus,
                                            scheduling_strategy="SPREAD")
        ray.get([warm.remote(prepare) for _ in range(self._slots)])

    def _context_ref(self, context: Any) -> Any:
        import ray

        if self._context is None or self._context[0] is not context:
            self._context = (context, ray.put(context))
        return self._context[1]

    def map(
        self, fn: Callable[[B, C], R], batches: Sequence[B], context: C
    ) -> Iterator[R | BatchFailure]:
        import ray

        ctx = self._context_ref(context)
        pending = list(range(len(batches)))[::-1]  # submit in order
        running: dict[Any, tuple[int, float]] = {}  # ref -> (batch index, deadline)
        done: dict[int, R | BatchFailure] = {}
        next_out = 0
        try:
            while next_out < len(batches):
                while pending and len(running) < self._slots:
                    i = pending.pop()
                    deadline = time.monotonic() + self._timeout if self._timeout else float("inf")
                    running[self._task.remote(fn, batches[i], ctx)] = (i, deadline)
                if running:
                    wait = min(d for _, d in running.values()) - time.monotonic()
                    ready, _ = ray.wait(list(running), num_returns=1,
                                        timeout=max(0.0, min(wait, 1.0)))
                    for ref in ready:
                        i, _ = running.pop(ref)
                        done[i] = self._collect(ref, i)
                    self._cancel_overdue(running, done)
                while next_out in done:
                    yield done.pop(next_out)
                    next_out += 1
        finally:
            for ref in running:
                ray.cancel(ref, force=True)

    def _collect(self, ref: Any, index: int) -> Any:
        import ray
        from ray.exceptions import RayTaskError

        try:
            return ray.get(ref)
        except RayTaskError as exc:  # raised outside `call_recording_errors`
            return BatchFailure(str(exc))
        except ray.exceptions.RayError as exc:  # worker or node died, retries used up
            raise BatchLost([index], f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from exc

    def _cancel_overdue(self, running: dict[Any, tuple[int, float]],
                        done: dict[int, Any]) -> None:
        import ray

        now = time.monotonic()
        for ref, (i, deadline) in list(running.items()):
            if now >= deadline:
                ray.cancel(ref, force=True)
                del running[ref]
                done[i] = BatchFailure(f"timed out after {self._timeout} s and was cancelled")

    def close(self) -> None:
        """Disconnect; a Ray this evaluator started is shut down with it."""
        import ray

        if self._started_here and ray.is_initialized():
            ray.shutdown()
