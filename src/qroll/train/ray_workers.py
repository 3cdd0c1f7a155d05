"""Pool workers launched on a Ray cluster: ``qroll worker --ray`` (``pip install 'qroll[ray]'``).

Ray only places the workers: each one is an ordinary training worker
(:func:`qroll.train.workers.run_workers` with one process) running as a Ray task, claiming tasks
with leases from the pool database and recording runs in the MLflow store, exactly as a worker
started from a shell would. Nothing about a task travels through Ray, so a Ray task that dies (node
lost, cancelled) is just a killed worker: its lease expires and the task is run again elsewhere.

Placement: each worker reserves ``num_cpus`` CPUs of a node and the workers are *spread* over
the nodes (Ray's ``SPREAD`` strategy) rather than packed onto the driver's node first, so the
training load lands on every machine. A worker whose process or node dies is started again by Ray
(``max_retries``), wherever CPUs are free.

On a cluster every node must reach the pool database and the tracking store: use PostgreSQL
(``postgresql://...``) for both, or a tracking server; a ``sqlite:///`` path works only when all
workers share that file system (a local Ray instance, or nodes on one machine). Every node must
also import the task's code (``--train-func``) and qroll itself: Ray ships neither.

The driver's settings reach the workers as arguments, resolved once on the driver: its qroll
home (where a default pool, store and feature cache are), the market data of a handler that
names none (``$QROLL_DATA``) and the store wait. Nothing travels through the workers'
environment.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

from qroll.errors import ConfigError, RayClusterError
from qroll.home import data_uri, qroll_home
from qroll.home import store_wait as store_wait_bound
from qroll.messages import mask_credentials

__all__ = ["MAX_RETRIES", "check_address", "work_on_ray"]

logger = logging.getLogger("qroll.train")


CONNECT_TIMEOUT_S = 5  # seconds to wait for the cluster's port before saying it is unreachable
MAX_RETRIES = 3  # times Ray starts a worker again after its process or node died

# A gRPC server (Ray's GCS, or its client server behind ray://) answers the HTTP/2 client preface
# with a SETTINGS frame. Checking that takes milliseconds, whereas ray.init() pointed at another
# service (a database port, say) retries for minutes before it gives up.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + SETTINGS
_SETTINGS_FRAME_TYPE = 4


def _host_port(address: str) -> tuple[str, int]:
    hostport = address.split("://", 1)[-1].rsplit("@", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"the Ray address {mask_credentials(address)!r} is not ray://HOST:PORT, "
                          "HOST:PORT or auto")
    return host.strip("[]"), int(port)


def check_address(address: str) -> None:
    """Fail fast, writing nothing, on an address that is not a reachable Ray cluster.

    Ray itself retries for minutes before giving up on a dead address or on a port where another
    service listens; this check takes at most :data:`CONNECT_TIMEOUT_S` seconds. It connects to
    the port and checks that a gRPC server (Ray's GCS, or its client server for ``ray://``)
    answers there; ``"auto"`` is left to Ray.

    Parameters
    ----------
    address : str
        ``HOST:PORT`` (the head's GCS, 6379 by default), ``ray://HOST:PORT`` or ``"auto"``.

    Raises
    ------
    ConfigError
        The address is not written as ``ray://HOST:PORT``, ``HOST:PORT`` or ``auto``.
    RayClusterError
        Nothing listens there, or what listens is not a Ray cluster.
    """
    if address == "auto":
        return
    host, port = _host_port(address)
    shown = mask_credentials(address)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as sock:
            sock.sendall(_HTTP2_PREFACE)
            reply = sock.recv(9)  # an HTTP/2 frame header: length (3), type (1), flags, stream id
    except TimeoutError as exc:
        raise RayClusterError(f"{shown} is not a Ray cluster: the service there did not answer "
                              f"a Ray (gRPC) handshake within {CONNECT_TIMEOUT_S} s; give the head "
                              "node's address (HOST:6379 or ray://HOST:10001)") from exc
    except OSError as exc:
        raise RayClusterError(f"cannot reach the Ray cluster at {shown}: {exc}; check the address "
                              f"and that the cluster is up (waited {CONNECT_TIMEOUT_S} s)") from exc
    if len(reply) < 4 or reply[3] != _SETTINGS_FRAME_TYPE:
        raise RayClusterError(f"{shown} is not a Ray cluster: the service listening there does not "
                              "speak Ray's protocol (gRPC); give the head node's address (HOST:6379, "
                              "or ray://HOST:10001 for Ray Client)")


def _worker(work_kwargs: Mapping[str, Any]) -> Any:
    """One pool worker in a Ray task: what :func:`~qroll.train.workers.run_workers` returns."""
    from qroll.train.workers import run_workers

    return run_workers(concurrency=1, **work_kwargs)


def _total(results: list[Any]) -> Any:
    # work() returns a summary that adds up (WorkSummary); a qroll whose work() returns None
    # reports nothing, and None is read as "no failure".
    total = None
    for res in results:
        if res is not None:
            total = res if total is None else total + res
    return total


def work_on_ray(address: str | None, workers: int, *, num_cpus: float = 1.0, **work_kwargs: Any) -> Any:
    """Run ``workers`` pool workers as Ray tasks and wait until they all return.

    Parameters
    ----------
    address : str or None
        The Ray cluster (``ray://head:10001``, ``head:6379``, or ``"auto"`` for the cluster this
        machine belongs to); ``None`` starts a local Ray instance.
    workers : int
        How many workers (Ray tasks), spread over the cluster's nodes.
    num_cpus : float, default 1
        CPUs Ray reserves for each worker on its node (LightGBM's ``num_threads`` should match):
        a node with ``C`` CPUs runs at most ``C / num_cpus`` workers at once; the others wait.
    **work_kwargs
        What :func:`qroll.train.workers.run_workers` takes, except ``concurrency``: ``pool_url``,
        ``pool_name``, ``experiment``, ``tracking``, ``lease_seconds``, ``stop_when_empty``,
        ``home``, ``store_wait``, ``data``, ... The last three (and a default ``pool_url``, the
        home's pool) are resolved here, on the driver, and passed to every worker.

    Returns
    -------
    WorkSummary or None
        The sum of what the workers' :func:`~qroll.train.workers.run_workers` returned (tasks done and
        failed); ``None`` when it returns nothing. A worker whose process died and was started
        again reports only its last run.

    Raises
    ------
    ConfigError
        Ray is not installed, ``workers`` is below 1, the address is malformed, or the store
        wait is not a number of seconds >= 0.
    RayClusterError
        The cluster cannot be reached, or the address is not a Ray cluster.
    QrollError
        A worker failed (its error is in the message).
    """
    if workers < 1:
        raise ConfigError(f"--concurrency {workers} must be at least 1")
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("qroll worker --ray needs Ray: pip install 'qroll[ray]'") from exc
    from qroll.errors import QrollError
    from qroll.pool.manager import TaskManager, default_url

    # Workers find defaults (pool.db, mlflow.db, the feature cache) under the driver's qroll
    # home, and take the driver's data and store wait: all resolved here, once.
    home = qroll_home(work_kwargs.get("home")).resolve()
    work_kwargs = {**work_kwargs, "home": str(home),
                   "store_wait": store_wait_bound(work_kwargs.get("store_wait")),
                   "data": data_uri(work_kwargs.get("data")),
                   "pool_url": work_kwargs.get("pool_url") or default_url(home)}
    # A bad address or pool fails here, in one line, before any Ray process starts; the address
    # first, since opening a new SQLite pool creates its file.
    if address is not None:
        check_address(address)
    TaskManager(work_kwargs["pool_name"], work_kwargs["pool_url"]).close()
    where = "a local Ray instance" if address is None else f"the Ray cluster at {mask_credentials(address)}"
    try:
        # "local", not None: ray.init(None) joins the cluster this machine last started with
        # `ray start`, if any, where a local instance was asked for.
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=True,
                 ignore_reinit_error=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayClusterError(f"cannot reach {where}: {str(exc).splitlines()[0]}; check the address "
                              "(ray://HOST:10001, HOST:6379 or auto) and that the cluster is up") from exc
    remote = ray.remote(num_cpus=num_cpus, max_retries=MAX_RETRIES, scheduling_strategy="SPREAD")(_worker)
    refs = [remote.remote(work_kwargs) for _ in range(workers)]
    logger.info("%d pool worker(s) on %s", workers, where)
    try:
        return _total(ray.get(refs))
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        if isinstance(cause, QrollError):  # the worker's own one-line error, as a local worker gives it
            raise cause from exc
        raise QrollError(f"a pool worker on {where} failed: {type(cause).__name__}: {cause}") from exc
    except ray.exceptions.RayError as exc:  # its process or node died more often than Ray retries
        raise QrollError(f"a pool worker on {where} was lost {MAX_RETRIES + 1} times "
                         f"({type(exc).__name__}); its task goes back to the pool when its lease "
                         "expires") from exc
    except KeyboardInterrupt:
        for ref in refs:  # their leases expire and the tasks go back to the pool
            ray.cancel(ref, force=True)
        raise
    finally:
        if address is None:
            ray.shutdown()
