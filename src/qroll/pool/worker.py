"""Pool workers: processes that claim tasks and run a function on each, until the pool is empty.

A worker claims tasks with :func:`~qroll.pool.run_task` (leases renewed by a heartbeat, commits
fenced), calls its task function on each and stores what the function returns (JSON) as the
task's result. The function is any module-level callable: the pool knows nothing of what it does
(training workers, which record MLflow runs, are :func:`qroll.train.workers.run_workers`). A
worker killed outright (``SIGKILL``, a lost machine) loses nothing: its lease expires, the task
goes back to ``waiting`` (one attempt used) and another worker runs it. :func:`work` returns a
:class:`WorkSummary` (tasks done, failed, given back), from which ``qroll worker`` sets its exit
status.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from qroll.errors import ConfigError, PoolConfigError, PoolError, QrollError, TaskDeferredError
from qroll.pool.manager import DEFAULT_LEASE_SECONDS, TaskManager, default_url
from qroll.pool.polling import Poll, check_seconds
from qroll.pool.records import TaskStatus
from qroll.pool.run import Tally, run_with

__all__ = ["DEFAULT_IDLE_POLL", "WorkSummary", "import_function", "work"]

logger = logging.getLogger("qroll.pool")

DEFAULT_IDLE_POLL = 1.0  # seconds an idle worker sleeps before looking for tasks again


def import_function(spec: str) -> Callable[..., Any]:
    """``"package.module:function"`` (or ``package.module.function``) → the function.

    >>> import_function("json:dumps").__name__
    'dumps'

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


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkSummary:
    """What :func:`work` did, summed over its processes.

    Attributes
    ----------
    done : int
        Tasks whose result this worker committed.
    failed : int
        Tasks whose function raised here (each an attempt recorded: the task went back to the
        pool, or to ``failed`` after its last attempt).
    deferred : int
        Tasks given back unrun, attempts untouched, because a service they need was down
        (:class:`~qroll.errors.TaskDeferredError`); the process that met one stopped.
    stopped : str
        Why a process stopped before the pool was empty (the first such reason: the
        :class:`~qroll.errors.TaskDeferredError`'s message); empty when none did.

    Examples
    --------
    >>> WorkSummary(done=3) + WorkSummary(done=1, failed=2)
    WorkSummary(done=4, failed=2, deferred=0, stopped='')
    """

    done: int = 0
    failed: int = 0
    deferred: int = 0
    stopped: str = ""

    def __add__(self, other: WorkSummary) -> WorkSummary:
        return WorkSummary(done=self.done + other.done, failed=self.failed + other.failed,
                           deferred=self.deferred + other.deferred, stopped=self.stopped or other.stopped)

    @property
    def ok(self) -> bool:
        """Whether no task failed or was given back (``qroll worker`` exits 0)."""
        return not (self.failed or self.deferred)


def _parent_gone() -> bool:
    parent = multiprocessing.parent_process()
    return parent is not None and not parent.is_alive()


def _loop(pool_url: str, pool_name: str, task_func: Callable[..., Any], query: Mapping[str, Any] | None,
          before_status: str, after_status: str, lease_seconds: float, stop_when_empty: bool,
          idle_poll: float, kwargs: Mapping[str, Any]) -> WorkSummary:
    tally = Tally()

    def look(tm: TaskManager) -> bool | None:
        # Runs tasks for as long as there are some; a pause follows only an idle look.
        while run_with(tm, task_func, query, False, before_status, after_status, tally, kwargs):
            pass
        if _parent_gone():  # a child of a killed `qroll worker --concurrency N`: stop too
            return True
        tm.requeue_expired()
        stat = tm.task_stat(query)
        undone = stat.get(before_status, 0) + stat.get(TaskStatus.RUNNING.value, 0)
        return True if stop_when_empty and undone == 0 else None

    # One manager (one connection) for the whole loop: a PostgreSQL pool that restarts is
    # reconnected to by its backend, whereas opening a new one then would fail at once.
    with TaskManager(pool_name, pool_url, lease_seconds=lease_seconds) as tm:
        try:
            Poll(pause=idle_poll).until(lambda: look(tm))
        except TaskDeferredError as exc:
            # The next task would meet the same missing service: stop, and let the caller say why.
            stopped = str(exc)
        else:
            stopped = ""
    return WorkSummary(done=tally.done, failed=tally.failed, deferred=tally.deferred, stopped=stopped)


def _child(report: Any, *args: Any) -> None:
    """A worker process of ``work(concurrency=N)``: its summary, or its error, to the parent."""
    try:
        summary = _loop(*args)
    except QrollError as exc:
        report.put(exc)
        sys.exit(2)
    report.put(summary)
    sys.exit(0 if summary.ok else 1)


def work(pool_url: str | None, pool_name: str, task_func: Callable[..., Any], *, concurrency: int = 1,
         lease_seconds: float = DEFAULT_LEASE_SECONDS, stop_when_empty: bool = True,
         idle_poll: float = DEFAULT_IDLE_POLL, query: Mapping[str, Any] | None = None,
         before_status: str = "waiting", after_status: str = "done",
         task_kwargs: Mapping[str, Any] | None = None) -> WorkSummary:
    """Run ``task_func`` on the tasks of a pool in ``concurrency`` processes until it is empty.

    Parameters
    ----------
    pool_url : str or None
        The pool database (``sqlite:///...``, ``postgresql://...``); ``None``: the qroll home's.
    pool_name : str
        The pool.
    task_func : callable
        ``task_func(task_def, **task_kwargs)``, module-level (spawned processes import it by
        name); it may take a ``lease`` keyword (see :func:`~qroll.pool.run_task`). What it
        returns (JSON) is the task's result.
    concurrency : int, default 1
        Worker processes. 1 works in this process; more spawn that many children (each leaves
        when this process dies).
    lease_seconds : float, default 60
        How long a claimed task stays this worker's without a heartbeat (renewed every third).
    stop_when_empty : bool, default True
        Return once no matching task is waiting or running; otherwise poll for ever.
    idle_poll : float, default 1.0
        Seconds between looks at an idle pool.
    query : dict, optional
        Only tasks matching it.
    before_status, after_status : str
        The transition (see :func:`~qroll.pool.run_task`).
    task_kwargs : dict, optional
        Keyword arguments for every call of ``task_func`` (picklable with ``concurrency > 1``).

    Returns
    -------
    WorkSummary
        Tasks done, failed and given back, summed over the processes. A process that meets a
        :class:`~qroll.errors.TaskDeferredError` (a service the tasks need is down) gives its
        task back and stops; the others go on.

    Raises
    ------
    PoolConnectionError
        The pool stayed unreachable longer than its backend reconnects (PostgreSQL:
        ``reconnect_seconds`` in the URL, default 60 s). With ``concurrency > 1``, the first
        error of a process is raised once all have ended.
    PoolError
        A worker process ended without a report (killed, say).
    ConfigError
        ``concurrency`` below 1 (:class:`~qroll.errors.PoolConfigError`) or a negative
        ``idle_poll`` (:class:`~qroll.errors.ConfigValueError`).
    """
    if concurrency < 1:
        raise PoolConfigError(f"concurrency={concurrency} must be at least 1")
    check_seconds("idle_poll", idle_poll)
    if pool_url is None:
        pool_url = default_url()
    args = (pool_url, pool_name, task_func, query, before_status, after_status, float(lease_seconds),
            stop_when_empty, float(idle_poll), dict(task_kwargs or {}))
    if concurrency == 1:
        return _loop(*args)
    ctx = multiprocessing.get_context("spawn")  # nothing of this process leaks in; any platform
    report = ctx.SimpleQueue()
    procs = [ctx.Process(target=_child, args=(report, *args), name=f"qroll-worker-{i}")
             for i in range(concurrency)]
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
    total, errors = WorkSummary(), []
    while not report.empty():
        item = report.get()
        if isinstance(item, WorkSummary):
            total += item
        else:
            errors.append(item)
    if errors:
        raise errors[0]
    silent = [f"{p.name} (exit code {p.exitcode})" for p in procs if p.exitcode not in (0, 1)]
    if silent:
        raise PoolError(f"worker process(es) {', '.join(silent)} of pool {pool_name!r} ended without a "
                        "report (killed?); their tasks go back to the pool when their leases expire")
    return total
