"""Evaluation on a Ray cluster; the only module that imports ray (inside functions: whether
ray may bind to the network is decided when it is imported, see `RayEvaluator`).

- `RayEvaluator(address=None, workers=N)` starts a private local Ray bound to
  127.0.0.1 (never any other address); `address="auto"` or "host:port" joins an
  existing cluster the user started (`join_cluster`: finds the token of a cluster
  with token authentication, warns about a cluster without it).
- The context (the fitness configuration with the dataset) is put in the object
  store once per evaluator and context, not once per task.
- Each task declares its resources: `cpus` and `gpus` (default: one GPU when the
  cluster has GPUs and the device is not "cpu"). With GPUs, tasks run only on
  nodes that have them unless `cpu_nodes_too`: then each node without GPUs takes
  tasks too, asking for CPUs only and pinned to it.
- On start, one warm-up task per slot (spread over the nodes) runs `prepare`
  (evosparse passes `fitness.warm_up`: torch's first-call costs, ~2 s a worker),
  so the first generation does not pay for it.
- At most as many tasks run as the cluster has slots, so a task starts when it
  is submitted and its deadline (`timeout_s`) measures its own run time. A task
  past its deadline is cancelled (its worker killed) and yields a `BatchFailure`.
- Batches and results of up to `INLINE_BYTES` travel inside the task's RPC instead of
  through the object store (Ray's `max_direct_call_object_size`, 100 KB by default, set
  for this process before it joins and for the workers through the tasks' runtime
  environment): each object store hop between nodes costs about 8 ms, a tenth of a
  small generation (`benchmarks/ray_scaling.py`).
- A task whose worker process or node dies is re-run by Ray up to `max_retries`
  times; after that the batch is lost and `map` raises `BatchLost`. An exception
  raised by the function itself yields a `BatchFailure` with its traceback.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from evosparse.errors import UserError
from evosparse.evaluators.base import BaseEvaluator, BatchFailure, BatchLost, call_recording_errors

B = TypeVar("B")
C = TypeVar("C")
R = TypeVar("R")

LOOPBACK = "127.0.0.1"
INLINE_BYTES = 8 << 20
_INLINE = {"RAY_max_direct_call_object_size": str(INLINE_BYTES)}
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


_NO_TOKEN = (
    "the Ray cluster at {address} requires token authentication and no token was found: "
    "copy the cluster's token (`ray get-auth-token` on its head node) to ~/.ray/auth_token, "
    "or set RAY_AUTH_TOKEN_PATH to a file holding it, or RAY_AUTH_TOKEN to the token"
)


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2: Ray's C++ client logs every refused call there."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _accepted(gcs_address: str) -> bool:
    """Whether the cluster's GCS answers this process; False when it refuses the
    process's credentials (no token, or not the cluster's token)."""
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    try:
        with _quiet_stderr():
            GcsClient(address=gcs_address)
    except AuthenticationError:
        return False
    return True


def _unreachable(gcs_address: str) -> str | None:
    """None when something accepts TCP connections at `gcs_address` (host:port); else the
    reason. Ray's own client retries for 40 s before it says the same."""
    host, _, port = gcs_address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=10):
            return None
    except (OSError, ValueError) as exc:
        return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _token_source() -> str:
    """Where Ray reads the token from in this process (its order: variable, path, default)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    return os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token"


def _token_mode() -> bool:
    """True when this process sends a token to Ray (RAY_AUTH_MODE=token, or turned on here)."""
    from ray._raylet import AuthenticationMode, get_authentication_mode

    return bool(get_authentication_mode() == AuthenticationMode.TOKEN)


def join_cluster(address: str, warn: Callable[[str], None]) -> None:
    """Connect this process as a driver to the Ray cluster at `address` ("auto" or host:port).

    `ray start --head` turns token authentication on when a token exists (RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token), but `ray.init(address=...)` sends one only
    with RAY_AUTH_MODE=token. So ask the cluster first (in ~10 ms, where `ray.init` retries
    for 20 s): when it refuses, send the token found where Ray keeps it, or stop with one
    message saying what to set. A cluster that needs no token gets a warning.
    """
    import ray
    from ray._private.services import canonicalize_bootstrap_address_or_die
    from ray._raylet import AuthenticationTokenLoader, Config
    from ray.exceptions import RpcError

    prefix = f"--ray-address {address}"
    try:
        gcs = canonicalize_bootstrap_address_or_die(address)
        why = _unreachable(gcs)
        if why is not None:
            raise UserError(f"{prefix}: cannot join the Ray cluster: nothing answers at "
                            f"{gcs} ({why})")
        accepted = _accepted(gcs)
    except (ConnectionError, ValueError, RpcError) as exc:
        raise UserError(f"{prefix}: cannot join the Ray cluster ({exc})") from None
    if not accepted:
        if not AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
            raise UserError(f"{prefix}: {_NO_TOKEN.format(address=gcs)}")
        if not _token_mode():
            if os.environ.get("RAY_AUTH_MODE"):
                raise UserError(f"{prefix}: the Ray cluster requires token authentication "
                                f"but RAY_AUTH_MODE is {os.environ['RAY_AUTH_MODE']}; unset it")
            os.environ["RAY_AUTH_MODE"] = "token"  # as `ray start` does when it finds a token
            Config.initialize("")
        if not _accepted(gcs):
            raise UserError(f"{prefix}: the Ray cluster refused the token in "
                            f"{_token_source()}: it is not this cluster's token")
    try:
        # the canonical address, not "auto": ray.init would turn token mode on by itself
        ray.init(address=gcs, logging_level="WARNING", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
        first = str(exc).split(". ")[0]
        if "token" in first.lower():
            raise UserError(f"{prefix}: {_NO_TOKEN.format(address=gcs)}") from None
        raise UserError(f"{prefix}: cannot join the Ray cluster ({first})") from None
    if not _token_mode():
        warn(f"the Ray cluster at {address} accepts connections without token "
             "authentication: anyone who can reach it can run code on it (see Ray's "
             "token authentication guide: start it where a token exists, e.g. after "
             "`ray get-auth-token --generate`)")


def _slots(nodes: list[dict[str, Any]], cpus: float, gpus: float, gpu_nodes: bool) -> int:
    """How many tasks asking for `cpus` and `gpus` fit at once on the live nodes with
    (`gpu_nodes`) or without GPUs."""
    total = 0
    for node in nodes:
        have = node["Resources"] if node.get("Alive", True) else {}
        if (have.get("GPU", 0) > 0) != gpu_nodes:
            continue
        fit = have.get("CPU", 0) // cpus
        total += int(min(fit, have["GPU"] // gpus) if gpus else fit)
    return total


def _pools(nodes: list[dict[str, Any]], cpus: float, gpus: float,
           cpu_nodes_too: bool) -> list[tuple[float, int, str | None]]:
    """(GPUs a task asks for, tasks at once, the node it is pinned to) per kind of task:
    one kind without GPUs; with GPUs, GPU tasks on the GPU nodes and, if `cpu_nodes_too`,
    CPU tasks pinned to each node without a GPU (else Ray may put them on a GPU node's
    spare CPUs, where they would wait for, and delay, the GPU tasks)."""
    if not gpus:
        return [(0.0, max(1, _slots(nodes, cpus, 0.0, True) + _slots(nodes, cpus, 0.0, False)),
                 None)]
    on_gpus = _slots(nodes, cpus, gpus, True)
    if on_gpus == 0:
        raise UserError(f"evaluation.gpus_per_batch is {gpus} with {cpus} CPUs per batch, but "
                        "no node of the Ray cluster has that many GPUs and CPUs")
    pools: list[tuple[float, int, str | None]] = [(gpus, on_gpus, None)]
    for node in nodes if cpu_nodes_too else []:
        fit = _slots([node], cpus, 0.0, False)
        if fit:
            pools.append((0.0, fit, node["NodeID"]))
    return pools


class RayEvaluator(BaseEvaluator):
    """Runs batches as Ray tasks on a cluster (see the module docstring)."""

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: int | None = None,
        cpus: float = 1.0,
        gpus: float | None = None,
        cpu_nodes_too: bool = False,
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
            for name, value in _INLINE.items():  # read by Ray when this process connects
                os.environ.setdefault(name, value)
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
                join_cluster(address, warn)
        nodes = ray.nodes()
        if gpus is None:
            has_gpus = any(n["Resources"].get("GPU", 0) > 0 for n in nodes if n.get("Alive"))
            gpus = 1.0 if has_gpus and device != "cpu" else 0.0
        try:
            pools = _pools(nodes, cpus, gpus, cpu_nodes_too)
        except UserError:
            self.close()
            raise
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        def placed(node: str | None, otherwise: str) -> Any:
            # soft: if that node is gone, the task runs elsewhere instead of failing
            return NodeAffinitySchedulingStrategy(node, soft=True) if node else otherwise

        self._timeout = timeout_s
        inline = {"runtime_env": {"env_vars": _INLINE}}  # the same for both: one worker pool
        self._pools = [(ray.remote(_run).options(num_cpus=cpus, num_gpus=g, **inline,
                                                 max_retries=max_retries, retry_exceptions=False,
                                                 scheduling_strategy=placed(node, "DEFAULT")), n)
                       for g, n, node in pools]
        self._context: tuple[Any, Any] | None = None  # (context, its object ref)
        # one warm-up per slot, spread over the nodes
        ray.get([ray.remote(_prepare).options(num_cpus=cpus, num_gpus=g, **inline,
                                              scheduling_strategy=placed(node, "SPREAD"))
                 .remote(prepare) for g, n, node in pools for _ in range(n)])

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
        # ref -> (batch index, deadline, pool)
        running: dict[Any, tuple[int, float, int]] = {}
        done: dict[int, R | BatchFailure] = {}
        next_out = 0
        try:
            while next_out < len(batches):
                for pool, (task, slots) in enumerate(self._pools):
                    while pending and sum(r[2] == pool for r in running.values()) < slots:
                        i = pending.pop()
                        deadline = (time.monotonic() + self._timeout if self._timeout
                                    else float("inf"))
                        running[task.remote(fn, batches[i], ctx)] = (i, deadline, pool)
                if running:
                    wait = min(r[1] for r in running.values()) - time.monotonic()
                    ready, _ = ray.wait(list(running), num_returns=1,
                                        timeout=max(0.0, min(wait, 1.0)))
                    for ref in ready:
                        i = running.pop(ref)[0]
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

    def _cancel_overdue(self, running: dict[Any, tuple[int, float, int]],
                        done: dict[int, Any]) -> None:
        import ray

        now = time.monotonic()
        for ref, (i, deadline, _) in list(running.items()):
            if now >= deadline:
                ray.cancel(ref, force=True)
                del running[ref]
                done[i] = BatchFailure(f"timed out after {self._timeout} s and was cancelled")

    def close(self) -> None:
        """Disconnect; a Ray this evaluator started is shut down with it."""
        import ray

        if self._started_here and ray.is_initialized():
            ray.shutdown()
