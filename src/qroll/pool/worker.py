"""Pool workers: the loop behind ``qroll worker`` and a pool trainer's local processes.

A worker claims tasks with :func:`~qroll.pool.run_task` (leases renewed by a heartbeat, commits
fenced), trains each into an MLflow run and stores the run's id as the result. A worker killed
outright (``SIGKILL``, a lost machine) loses nothing: its lease expires, the task goes back to
``waiting`` (one attempt used) and another worker runs it.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import time
from collections.abc import Callable, Mapping
from typing import Any

from qroll.errors import ConfigError
from qroll.pool.manager import DEFAULT_LEASE_SECONDS, TaskManager
from qroll.pool.records import TaskStatus
from qroll.pool.run import run_task

__all__ = ["DEFAULT_IDLE_POLL", "import_function", "work"]

logger = logging.getLogger("qroll.pool")

DEFAULT_IDLE_POLL = 1.0  # seconds an idle worker sleeps before looking for tasks again


def import_function(spec: str) -> Callable[..., Any]:
    """``"package.module:function"`` (or ``package.module.function``) → the function.

    >>> import_function("qroll.train.task:task_train").__name__
    'task_train'

    Raises
    ------
    ConfigError
        The module or function cannot be found.
    """
    module_name, sep, name = spec.partition(":")
    if not sep:
        module_name, _, name = spec.rpartition(".")
    try:
        func = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"cannot import the task function {spec!r} ({exc}); write it as "
                          "'package.module:function', importable by the worker's Python") from exc
    if not callable(func):
        raise ConfigError(f"{spec!r} is not a function")
    return func


def _parent_gone() -> bool:
    parent = multiprocessing.parent_process()
    return parent is not None and not parent.is_alive()


def _loop(pool_url: str, pool_name: str, task_func: Callable[..., Any], query: Mapping[str, Any] | None,
          before_status: str, after_status: str, lease_seconds: float, stop_when_empty: bool,
          idle_poll: float, kwargs: Mapping[str, Any]) -> int:
    committed = 0
    with TaskManager(pool_name, pool_url, lease_seconds=lease_seconds) as tm:
        while True:
            if run_task(task_func, pool_name, query=dict(query or {}), before_status=before_status,
                        after_status=after_status, url=pool_url, lease_seconds=lease_seconds, **kwargs):
                committed += 1
                continue
            if _parent_gone():  # a child of a killed `qroll worker --concurrency N`: stop too
                return committed
            tm.requeue_expired()
            stat = tm.task_stat(query)
            if stop_when_empty and stat.get(before_status, 0) + stat.get(TaskStatus.RUNNING.value, 0) == 0:
                return committed
            time.sleep(idle_poll)


def work(pool_url: str | None, pool_name: str, experiment: str | None = None, tracking: str | None = None,
         concurrency: int = 1, lease_seconds: float = DEFAULT_LEASE_SECONDS, stop_when_empty: bool = True,
         idle_poll: float = DEFAULT_IDLE_POLL, *, artifact_root: str | None = None,
         train_func: Callable[..., Any] | None = None, task_func: Callable[..., Any] | None = None,
         query: Mapping[str, Any] | None = None, before_status: str = "waiting",
         after_status: str = "done", recorder_name: str | None = None) -> None:
    """Run tasks of a pool in ``concurrency`` processes until it is empty (or for ever).

    Parameters
    ----------
    pool_url : str or None
        The pool database (``sqlite:///...``, ``postgresql://...``); ``None``: the qroll home's.
    pool_name : str
        The pool (by default a pool trainer's experiment name).
    experiment : str, optional
        The MLflow experiment the runs go to; default ``pool_name``.
    tracking : str, optional
        The MLflow tracking URI; default the qroll home's store.
    concurrency : int, default 1
        Worker processes. 1 works in this process; more spawn that many children (each leaves
        when this process dies).
    lease_seconds : float, default 60
        How long a claimed task stays this worker's without a heartbeat (renewed every third).
    stop_when_empty : bool, default True
        Return once no matching task is waiting or running; otherwise poll for ever.
    idle_poll : float, default 1.0
        Seconds between looks at an idle pool.
    artifact_root : str, optional
        The tracking store's artifact root (see :class:`~qroll.record.ExpManager`).
    train_func : callable, optional
        ``train_func(task, experiment, recorder_name=..., exp_manager=...) -> Recorder``, module-level;
        default :func:`~qroll.train.task_train` (or ``end_task_train`` from ``part_done``).
    task_func : callable, optional
        Replaces the whole task function given to :func:`run_task` (default
        :func:`~qroll.train.pool_entry.task_train_entry`, or ``end_task_train_entry`` when
        ``before_status="part_done"``); it receives ``experiment``, ``tracking``, ``artifact_root``,
        ``train_func`` (when given) and, from ``waiting``, ``recorder_name``.
    query : dict, optional
        Only tasks matching it.
    before_status, after_status : str
        The transition (see :func:`run_task`).
    recorder_name : str, optional
        The run name of each task.
    """
    from qroll.train import pool_entry

    if concurrency < 1:
        raise ConfigError(f"concurrency={concurrency} must be at least 1")
    from_waiting = TaskStatus(before_status) is TaskStatus.WAITING
    if task_func is None:
        task_func = pool_entry.task_train_entry if from_waiting else pool_entry.end_task_train_entry
    kwargs: dict[str, Any] = {"experiment": experiment or pool_name, "tracking": tracking,
                              "artifact_root": artifact_root}
    if train_func is not None:
        kwargs["train_func"] = train_func
    if from_waiting:
        kwargs["recorder_name"] = recorder_name
    if pool_url is None:
        from qroll.pool.manager import default_url

        pool_url = default_url()
    args = (pool_url, pool_name, task_func, query, before_status, after_status, float(lease_seconds),
            stop_when_empty, float(idle_poll), kwargs)
    if concurrency == 1:
        _loop(*args)
        return
    ctx = multiprocessing.get_context("spawn")  # nothing of this process leaks in; any platform
    procs = [ctx.Process(target=_loop, args=args, name=f"qroll-worker-{i}") for i in range(concurrency)]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # their leases expire and the tasks go to other workers
                proc.join()
