"""A real two-node Ray cluster on this machine, on loopback addresses, for tests.

``ray_cluster()`` runs ``ray start --head`` and a second ``ray start --address ...`` (each a
node: a raylet with its own CPUs, object store and workers) and stops them afterwards by pid,
never with ``ray stop``, which would kill every Ray instance on the machine::

    with ray_cluster(env={"PYTHONPATH": ...}) as cluster:
        run(["qroll", "worker", "--ray-address", cluster.address, ...])
        cluster.kill_node(cluster.nodes[1])          # the second node, raylet and workers, SIGKILL

The nodes have their own loopback IPs (head 127.0.0.2, second node 127.0.0.3) and a custom
resource each (``qroll_node_1``, ``qroll_node_2``). Not 127.0.0.1: Ray rewrites that address to
the machine's network IP when a node joins or a driver connects (``resolve_ip_for_localhost``),
where a cluster bound to loopback does not listen. Ray binds its gRPC ports on every interface
unless a node's IP is exactly 127.0.0.1; every address used here is loopback all the same.

Linux only (processes are found through ``/proc``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HEAD_IP, SECOND_IP = "127.0.0.2", "127.0.0.3"
RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT_S = 120  # `ray start` on a loaded 2-core machine takes 5-10 s


@dataclass
class RayNode:
    """One node of the cluster.

    Attributes
    ----------
    name : str
        ``"head"`` or ``"node2"``.
    ip : str
        The node's (loopback) IP.
    resource : str
        The custom resource only this node has (1 unit).
    node_id : str
        Ray's node id (hex), as ``ray.get_runtime_context().get_node_id()`` gives it.
    raylet_pid : int
        The node's raylet.
    daemon_pids : set of int
        The node's processes outside the raylet's tree (the GCS and monitors of the head, the
        log monitor of each node).
    """

    name: str
    ip: str
    resource: str
    node_id: str
    raylet_pid: int
    daemon_pids: set[int] = field(default_factory=set)


@dataclass
class RayCluster:
    """A running two-node cluster (see :func:`ray_cluster`).

    Attributes
    ----------
    address : str
        The head's GCS address, ``127.0.0.2:PORT``: what ``--ray-address`` takes.
    nodes : list of RayNode
        ``[head, node2]``.
    temp_dir : Path
        Ray's temp dir (sessions, logs, sockets) of this cluster only.
    start_seconds : list of float
        Wall seconds each ``ray start`` took.
    """

    address: str
    nodes: list[RayNode]
    temp_dir: Path
    start_seconds: list[float]
    _pids: set[int] = field(default_factory=set)

    def node_of(self, node_id: str) -> RayNode:
        """The node with Ray node id ``node_id``."""
        return next(n for n in self.nodes if n.node_id == node_id)

    def worker_pids(self, node: RayNode, title: str = "ray::") -> set[int]:
        """Pids of ``node``'s Ray worker processes whose title starts with ``title``.

        A worker's title is ``ray::IDLE`` when idle and ``ray::FUNCTION`` while it runs a task
        (``ray::_worker`` for a qroll pool worker).
        """
        agents = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")
        return {pid for pid in _descendants({node.raylet_pid})
                if (cmd := _cmdline(pid)).startswith(title) and not cmd.startswith(agents)}

    def kill_node(self, node: RayNode) -> set[int]:
        """Take ``node`` down at once: SIGKILL its raylet, all its workers and its daemons.

        Returns
        -------
        set of int
            The pids killed.
        """
        pids = _descendants({node.raylet_pid}) | {node.raylet_pid} | node.daemon_pids
        _kill(pids)
        return pids

    def stop(self) -> None:
        """SIGKILL every process of this cluster (and only those), then remove its temp dir."""
        self._pids |= _find(str(self.temp_dir)) | {n.raylet_pid for n in self.nodes}
        for n in self.nodes:
            self._pids |= n.daemon_pids
        _kill(self._pids | _descendants(self._pids))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie is dead, just not reaped yet


def _parents() -> dict[int, int]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return out


def _descendants(roots: set[int]) -> set[int]:
    parents = _parents()
    found: set[int] = set()
    frontier = set(roots)
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def _find(text: str) -> set[int]:
    """Live processes whose command line contains ``text``."""
    return {pid for pid in _parents() if text in _cmdline(pid) and pid != os.getpid() and _alive(pid)}


def _kill(pids: set[int], timeout: float = 30.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _raylet(temp_dir: Path, ip: str, timeout: float = 30.0) -> tuple[int, str]:
    """The pid and node id of the raylet of ``ip`` in this cluster, once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in _find(str(temp_dir)):
            args = _cmdline(pid).split()
            if args and args[0].endswith("/raylet") and f"--node_ip_address={ip}" in args:
                node_id = next(a.split("=", 1)[1] for a in args if a.startswith("--node_id="))
                return pid, node_id
        time.sleep(0.1)
    raise RuntimeError(f"no raylet for {ip} under {temp_dir} after {timeout} s")


def _ray_start(args: list[str], env: Mapping[str, str], log: Path) -> float:
    t0 = time.monotonic()
    with log.open("ab") as out:
        res = subprocess.run([RAY, "start", *args, "--disable-usage-stats"], env=dict(env), stdout=out,
                             stderr=subprocess.STDOUT, timeout=START_TIMEOUT_S)
    if res.returncode != 0:
        raise RuntimeError(f"ray start {' '.join(args)} failed ({res.returncode}):\n{log.read_text()[-3000:]}")
    return time.monotonic() - t0


@contextmanager
def ray_cluster(cpus: tuple[int, int] = (1, 1), object_store_mb: int = 100,
                env: Mapping[str, str] | None = None) -> Iterator[RayCluster]:
    """Start a head and a second node; stop every process of theirs on exit, even on failure.

    Parameters
    ----------
    cpus : (int, int), default (1, 1)
        Logical CPUs of the head and of the second node.
    object_store_mb : int, default 100
        Each node's object store (MB of shared memory).
    env : mapping, optional
        Extra environment for the nodes, hence for every Ray worker they start (``PYTHONPATH``
        for task functions: a machine of a real cluster has the code installed).

    Yields
    ------
    RayCluster
    """
    # A short path: Ray's Unix sockets live under it and their paths must stay under 108 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="qray", dir="/tmp"))
    full_env = {**os.environ, **(env or {}), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    full_env.pop("RAY_ADDRESS", None)
    log = temp_dir / "ray_start.log"
    port = _free_port(HEAD_IP)
    store = str(object_store_mb * 1024 * 1024)
    cluster = RayCluster(address=f"{HEAD_IP}:{port}", nodes=[], temp_dir=temp_dir, start_seconds=[])
    try:
        before = _find(str(temp_dir))
        cluster.start_seconds.append(_ray_start(
            ["--head", "--node-ip-address", HEAD_IP, "--port", str(port), "--num-cpus", str(cpus[0]),
             "--object-store-memory", store, "--include-dashboard", "false", "--temp-dir", str(temp_dir),
             "--resources", json.dumps({"qroll_node_1": 1})], full_env, log))
        pid, node_id = _raylet(temp_dir, HEAD_IP)
        head_daemons = _find(str(temp_dir)) - before - {pid} - _descendants({pid})
        cluster.nodes.append(RayNode(name="head", ip=HEAD_IP, resource="qroll_node_1", node_id=node_id,
                                     raylet_pid=pid, daemon_pids=head_daemons))
        cluster.start_seconds.append(_ray_start(
            ["--address", cluster.address, "--node-ip-address", SECOND_IP, "--num-cpus", str(cpus[1]),
             "--object-store-memory", store, "--resources", json.dumps({"qroll_node_2": 1})], full_env, log))
        pid, node_id = _raylet(temp_dir, SECOND_IP)
        raylets = {pid, cluster.nodes[0].raylet_pid}
        daemons = _find(str(temp_dir)) - head_daemons - raylets - _descendants(raylets)
        cluster.nodes.append(RayNode(name="node2", ip=SECOND_IP, resource="qroll_node_2", node_id=node_id,
                                     raylet_pid=pid, daemon_pids=daemons))
        yield cluster
    finally:
        cluster.stop()
        subprocess.run(["rm", "-rf", str(temp_dir)], check=False)
