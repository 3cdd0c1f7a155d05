"""Pool workers launched on a Ray cluster: ``qroll worker --ray`` (``pip install 'qroll[ray]'``).

Ray only places the workers: each one is an ordinary pool worker (:func:`qroll.pool.worker.work`
with one process) running as a Ray task, claiming tasks with leases from the pool database and
recording runs in the MLflow store, exactly as a worker started from a shell would. Nothing about
a task travels through Ray, so a Ray task that dies (node lost, cancelled) is just a killed
worker: its lease expires and the task is run again elsewhere.

On a cluster every node must reach the pool database and the tracking store: use PostgreSQL
(``postgresql://...``) for both, or a tracking server; a ``sqlite:///`` path works only when all
workers share that file system (a local Ray instance).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

from qroll.errors import ConfigError, QrollError
from qroll.home import qroll_home
from qroll.record.store import mask_credentials

__all__ = ["work_on_ray"]

logger = logging.getLogger("qroll.pool")


CONNECT_TIMEOUT_S = 5  # seconds to wait for the cluster's port before saying it is unreachable


def _check_reachable(address: str) -> None:
    """Fail fast on a dead address: Ray itself retries for minutes before giving up."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rsplit("@", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"the Ray address {address!r} is not ray://HOST:PORT, HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise QrollError(f"cannot reach the Ray cluster at {mask_credentials(address)}: {exc}; check "
                         f"the address and that the cluster is up (waited {CONNECT_TIMEOUT_S} s)") from exc


def _worker(work_kwargs: Mapping[str, Any]) -> None:
    """One pool worker in a Ray task."""
    from qroll.pool.worker import work

    work(concurrency=1, **work_kwargs)


def work_on_ray(address: str | None, workers: int, *, num_cpus: float = 1.0,
                **work_kwargs: Any) -> None:
    """Run ``workers`` pool workers as Ray tasks and wait until they all return.

    Parameters
    ----------
    address : str or None
        The Ray cluster (``ray://head:10001``, ``head:6379``, or ``"auto"`` for the cluster this
        machine belongs to); ``None`` starts a local Ray instance.
    workers : int
        How many workers (Ray tasks).
    num_cpus : float, default 1
        CPUs Ray reserves for each worker (LightGBM's ``num_threads`` should match).
    **work_kwargs
        What :func:`qroll.pool.worker.work` takes, except ``concurrency``: ``pool_url``,
        ``pool_name``, ``experiment``, ``tracking``, ``lease_seconds``, ``stop_when_empty``, ...

    Raises
    ------
    ConfigError
        Ray is not installed, or ``workers`` is below 1.
    QrollError
        The cluster cannot be reached, or a worker failed (its error is in the message).
    """
    if workers < 1:
        raise ConfigError(f"--concurrency {workers} must be at least 1")
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("qroll worker --ray needs Ray: pip install 'qroll[ray]'") from exc
    from qroll.pool.manager import TaskManager

    # A bad pool URL or schema fails here, in one line, before any Ray process starts.
    TaskManager(work_kwargs["pool_name"], work_kwargs.get("pool_url")).close()
    if address is not None:
        _check_reachable(address)
    where = "a local Ray instance" if address is None else f"the Ray cluster at {mask_credentials(address)}"
    # Workers find defaults (pool.db, mlflow.db, the feature cache) under the driver's qroll home.
    env = {"QROLL_HOME": str(qroll_home().resolve())}
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=True, ignore_reinit_error=True,
                 runtime_env={"env_vars": env})
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise QrollError(f"cannot reach {where}: {str(exc).splitlines()[0]}; check the address "
                         "(ray://HOST:10001, HOST:6379 or auto) and that the cluster is up") from exc
    # A worker whose process or node dies is started again (up to 3 times): it just resumes claiming.
    remote = ray.remote(num_cpus=num_cpus, max_retries=3)(_worker)
    refs = [remote.remote(work_kwargs) for _ in range(workers)]
    logger.info("%d pool worker(s) on %s", workers, where)
    try:
        ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        raise QrollError(f"a pool worker on {where} failed: {type(cause).__name__}: {cause}") from exc
    except KeyboardInterrupt:
        for ref in refs:  # their leases expire and the tasks go back to the pool
            ray.cancel(ref, force=True)
        raise
    finally:
        if address is None:
            ray.shutdown()
