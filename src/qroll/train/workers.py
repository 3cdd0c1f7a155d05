"""Training workers: pool workers whose task function trains a task into an MLflow run.

The loop behind ``qroll worker`` and a pool trainer's local processes. Each worker is a
:func:`qroll.pool.worker.work` process running :func:`~qroll.train.pool_entry.task_train_entry`
(or ``end_task_train_entry`` for a delay trainer's second phase), which trains the task and stores
the run's id (JSON) as the task's result; the pool itself knows nothing of MLflow. The qroll
home, the market data and the store wait are resolved once, here, and reach every worker process
as task arguments.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from qroll.home import data_uri, qroll_home
from qroll.home import store_wait as store_wait_bound
from qroll.pool.manager import DEFAULT_LEASE_SECONDS, default_url
from qroll.pool.records import TaskStatus
from qroll.pool.run import takes_keyword
from qroll.pool.worker import DEFAULT_IDLE_POLL, WorkSummary, work
from qroll.train import pool_entry

__all__ = ["run_workers"]


def run_workers(pool_url: str | None, pool_name: str, experiment: str | None = None,
                tracking: str | None = None, concurrency: int = 1,
                lease_seconds: float = DEFAULT_LEASE_SECONDS, stop_when_empty: bool = True,
                idle_poll: float = DEFAULT_IDLE_POLL, *, artifact_root: str | None = None,
                train_func: Callable[..., Any] | None = None, task_func: Callable[..., Any] | None = None,
                query: Mapping[str, Any] | None = None, before_status: str = "waiting",
                after_status: str = "done", recorder_name: str | None = None,
                home: str | os.PathLike[str] | None = None, store_wait: float | None = None,
                data: str | None = None) -> WorkSummary:
    """Train the tasks of a pool in ``concurrency`` processes until it is empty (or for ever).

    Parameters
    ----------
    pool_url : str or None
        The pool database (``sqlite:///...``, ``postgresql://...``); ``None``: ``home``'s.
    pool_name : str
        The pool (by default a pool trainer's experiment name).
    experiment : str, optional
        The MLflow experiment the runs go to; default ``pool_name``.
    tracking : str, optional
        The MLflow tracking URI; default the qroll home's store.
    concurrency : int, default 1
        Worker processes (see :func:`qroll.pool.worker.work`).
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
        Replaces the whole task function given to :func:`~qroll.pool.run_task` (default
        :func:`~qroll.train.pool_entry.task_train_entry`, or ``end_task_train_entry`` when
        ``before_status="part_done"``); it receives ``experiment``, ``tracking``, ``artifact_root``,
        ``train_func`` (when given), from ``waiting`` ``recorder_name``, and ``home``,
        ``store_wait`` and ``data`` where it has parameters of those names.
    query : dict, optional
        Only tasks matching it.
    before_status, after_status : str
        The transition (see :func:`~qroll.pool.run_task`).
    recorder_name : str, optional
        The run name of each task.
    home : path, optional
        The qroll home: the default pool's, the default store's and the feature cache's; default
        :func:`qroll.home.qroll_home`'s, read here once.
    store_wait : float, optional
        Seconds a worker waits for a tracking store that went away (:func:`qroll.home.store_wait`).
    data : str, optional
        The market data of a handler that names none; default ``$QROLL_DATA`` (read here once),
        else the handler's own default.

    Returns
    -------
    WorkSummary
        Tasks done, failed and given back, summed over the processes.

    Raises
    ------
    PoolConnectionError, PoolError, ConfigError
        As :func:`qroll.pool.worker.work` raises them; a bad ``store_wait`` (or
        ``$QROLL_STORE_WAIT``) before any process starts.
    """
    from_waiting = TaskStatus(before_status) is TaskStatus.WAITING
    if task_func is None:
        task_func = pool_entry.task_train_entry if from_waiting else pool_entry.end_task_train_entry
    root = qroll_home(home).resolve()
    kwargs: dict[str, Any] = {"experiment": experiment or pool_name, "tracking": tracking,
                              "artifact_root": artifact_root}
    if train_func is not None:
        kwargs["train_func"] = train_func
    if from_waiting:
        kwargs["recorder_name"] = recorder_name
    settings = {"home": str(root), "store_wait": store_wait_bound(store_wait), "data": data_uri(data)}
    kwargs.update({k: v for k, v in settings.items() if takes_keyword(task_func, k)})
    return work(pool_url or default_url(root), pool_name, task_func, concurrency=concurrency,
                lease_seconds=lease_seconds, stop_when_empty=stop_when_empty, idle_poll=idle_poll,
                query=query, before_status=before_status, after_status=after_status, task_kwargs=kwargs)
