"""Ray clusters started the way users start them, with Ray's `ray start` command, on
127.0.0.1 only; for the cluster tests and `benchmarks/ray_scaling.py`.

Every node is one `ray start ... --block` process in its own session, stopped by
killing its process group (never `ray stop`, which stops every Ray on the machine).
All nodes share one HOME: its `.ray/auth_token` is the cluster's token, so the head
turns Ray's token authentication on as it does for a user with a token there.

Ray 2.60's `ray start --address` refuses to start a worker node while
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, and without that setting it replaces 127.0.0.1 by
the host's network address and listens on every interface. Worker nodes therefore run
Ray's own `ray start` code with only that platform check lifted (`_WORKER`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_BIN = Path(sys.executable).parent
_WORKER = (
    "import sys, types\n"
    "import ray._private.ray_constants as constants\n"
    "from ray.scripts import scripts\n"
    "scripts.ray_constants = types.SimpleNamespace(**{**vars(constants),"
    " 'ENABLE_RAY_CLUSTER': True})\n"
    "sys.exit(scripts.main())\n"
)


def _ip(hex_address: str) -> str:
    """An address of /proc/net/tcp{,6} (32-bit words in host byte order) as text."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, words)


def free_port() -> int:
    """A port nothing listens on now (outside Ray's worker port range, 10002-19999)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _agent_ports() -> list[str]:
    """Distinct ports for one node's agents, so that clusters run side by side."""
    return [arg for flag in ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                             "--runtime-env-agent-port", "--metrics-export-port")
            for arg in (flag, str(free_port()))]


class LoopbackCluster:
    """A head (`num_cpus` CPUs, with the dashboard) and the worker nodes added to it."""

    def __init__(self, root: Path, *, token: bool = True, num_cpus: int = 0,
                 dashboard: bool = True) -> None:
        self.root = root
        self.home = root / "home"
        (self.home / ".ray").mkdir(parents=True, exist_ok=True)
        if token:
            (self.home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
        self.port, self.dashboard_port = free_port(), free_port()
        self.nodes: list[subprocess.Popen[bytes]] = []
        self._temps: list[str] = []
        # the head finds the token itself; `ray start --address` sends one only when told
        self._mode = {"RAY_AUTH_MODE": "token" if token else "disabled"}
        self._wait(self._launch(
            [str(_BIN / "ray"), "start", "--head", "--port", str(self.port), "--num-cpus",
             str(num_cpus), "--include-dashboard", str(dashboard).lower(), "--dashboard-port",
             str(self.dashboard_port), "--ray-client-server-port", str(free_port())],
            {} if token else self._mode))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def env(self, **extra: str) -> dict[str, str]:
        """This machine's environment as a user of the cluster has it: the cluster's HOME,
        the venv's commands on PATH, Ray kept on 127.0.0.1, and `extra`."""
        env = {k: v for k, v in os.environ.items()  # evosparse's driver may set the last
               if not k.startswith(("RAY_AUTH", "RAY_ADDRESS", "RAY_max_direct_call"))}
        return {**env, "HOME": str(self.home), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                "PATH": f"{_BIN}{os.pathsep}{env.get('PATH', '')}", **extra}

    def add_workers(self, *specs: tuple[int, int]) -> None:
        """`ray start --address HEAD --num-cpus N --num-gpus G` per (N, G), as typed on each
        worker machine; started side by side."""
        procs = [self._launch([sys.executable, "-c", _WORKER, "start", "--address",
                               self.address, "--num-cpus", str(n), "--num-gpus", str(g)],
                              self._mode) for n, g in specs]
        for proc in procs:
            self._wait(proc)

    def _launch(self, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        # a temp dir per node, as on separate machines (they would share the working
        # directories of Ray jobs); under /tmp, for short socket paths
        self._temps.append(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        with (self.root / f"node-{len(self.nodes)}.log").open("wb") as out:
            proc = subprocess.Popen(
                [*command, "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                 "--temp-dir", self._temps[-1], *_agent_ports(), "--block"],
                stdout=out, stderr=subprocess.STDOUT, env=self.env(**env),
                start_new_session=True)
        self.nodes.append(proc)
        return proc

    def _wait(self, proc: subprocess.Popen[bytes]) -> None:
        log = self.root / f"node-{self.nodes.index(proc)}.log"
        deadline = time.monotonic() + 120
        while b"Ray runtime started" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{log.name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    def pids(self, node: subprocess.Popen[bytes]) -> list[int]:
        """The processes of one node: its process group and their descendants (Linux /proc;
        the raylet may start its workers in groups of their own)."""
        parents = {}  # pid -> (parent, process group)
        for d in Path("/proc").iterdir():
            try:
                # after the command's closing parenthesis: state, ppid, pgrp
                after = (d / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(d.name)] = (int(after[1]), int(after[2]))
            except (OSError, IndexError, ValueError):
                continue
        found = {pid for pid, (_, group) in parents.items() if group == node.pid}
        grown = True
        while grown:
            more = {pid for pid, (parent, _) in parents.items() if parent in found} - found
            found |= more
            grown = bool(more)
        return sorted(found)

    def listening(self) -> set[str]:
        """The IP addresses the cluster's processes listen on with TCP (Linux /proc)."""
        inodes = set()
        for pid in (pid for node in self.nodes for pid in self.pids(node)):
            try:
                links = [os.readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir()]
            except OSError:
                continue
            inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
        found = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    found.add(_ip(fields[1].split(":")[0]))
        return found

    def stop(self) -> None:
        """Kill every node's process group; remove their temp dirs."""
        for node in self.nodes:
            try:
                os.killpg(node.pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            node.wait()
        for temp in self._temps:
            shutil.rmtree(temp, ignore_errors=True)
