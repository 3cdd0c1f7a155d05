"""``run_task``: a worker loop over a pool, Qlib's arguments, with leases and kept failures."""

from __future__ import annotations

import contextlib
import inspect
import logging
import multiprocessing
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from qroll.errors import LeaseLostError, NotSerializableError, PoolConfigError, TaskDeferredError
from qroll.pool.manager import DEFAULT_LEASE_SECONDS, Heartbeat, TaskManager
from qroll.pool.records import TaskStatus

__all__ = ["PoolLease", "Tally", "run_task", "run_with", "takes_keyword"]

logger = logging.getLogger("qroll.pool")

# (before_status, after_status) → what task_func receives, as in Qlib's run_task.
TRANSITIONS = {
    ("waiting", "done"): "def",
    ("waiting", "part_done"): "def",
    ("part_done", "part_done"): "res",
    ("part_done", "done"): "res",
}


@dataclass(frozen=True, slots=True)
class PoolLease:
    """The lease under which a worker runs a task, for task functions that take ``pool_lease``.

    ``run_task`` passes it as the keyword argument ``pool_lease`` to a task function whose
    signature has that parameter. The training entry points tag their MLflow run with it, so
    that the next holder of the task can end the runs that earlier, lost leases left RUNNING.
    """

    pool: str
    task_id: int
    owner: str


def takes_keyword(func: Callable[..., Any], name: str) -> bool:
    """Whether ``func`` has a parameter called ``name`` (``**kwargs`` does not count).

    >>> takes_keyword(lambda task, pool_lease=None: None, "pool_lease")
    True
    """
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False


def _call_in_fresh_process(task_func: Callable[..., Any], param: Any, kwargs: Mapping[str, Any]) -> Any:
    # "spawn" whatever the platform's default: a forked child would inherit the pool connection,
    # the heartbeat thread and any library state, and forking a threaded process can deadlock.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as executor:
        return executor.submit(task_func, param, **kwargs).result()


def run_task(task_func: Callable[..., Any], task_pool: str, query: Mapping[str, Any] | None = None,
             force_release: bool = False, before_status: str = "waiting", after_status: str = "done",
             *, url: str | None = None, lease_seconds: float = DEFAULT_LEASE_SECONDS,
             **kwargs: Any) -> bool:
    """Claim, run and commit tasks of a pool until none in ``before_status`` is left.

    Parameters
    ----------
    task_func : callable
        ``task_func(param, **kwargs) -> result``; ``param`` is the task's ``def`` when
        ``before_status="waiting"`` and its ``res`` when ``"part_done"``. The result must be JSON
        (e.g. ``{"recorder_id": ..., "experiment": ...}``). With ``force_release`` it must be
        importable by name (a module-level function).
    task_pool : str
        The pool's name.
    query : dict, optional
        Only tasks matching it (see :meth:`TaskManager.query`).
    force_release : bool, default False
        Run each task in a fresh process (``spawn``, so it works under any start method) that
        exits afterwards, handing back all its memory.
    before_status, after_status : str
        One of Qlib's transitions: waiting→done, waiting→part_done, part_done→part_done,
        part_done→done.
    url : str, optional
        The pool database (default ``sqlite:///<qroll_home()>/pool.db``).
    lease_seconds : float, default 60
        The lease; a heartbeat thread renews it every third of it while the task runs.
    **kwargs
        Passed to ``task_func``; so is ``pool_lease`` (a :class:`PoolLease`) when ``task_func``
        has a parameter of that name.

    Returns
    -------
    bool
        Whether at least one task was committed.

    Notes
    -----
    A task whose ``task_func`` raises is recorded (message and traceback, one attempt) and goes
    back to ``before_status``, or to ``failed`` after its ``max_attempts``; the loop goes on with
    the next task (and does not take that one again in this call, leaving the retry to another
    worker or a later call), unlike Qlib's, which re-raises and stops. ``KeyboardInterrupt`` and
    :class:`~qroll.errors.TaskDeferredError` (a service the task needs is down) return the task
    without using an attempt and propagate. A result that is not JSON counts as a failure. If the
    lease was lost meanwhile (another worker now holds the task), the result is dropped with a
    warning.

    Raises
    ------
    PoolConfigError
        An unsupported transition (before the pool is opened).
    PoolConnectionError
        The pool stayed unreachable longer than its backend reconnects (PostgreSQL:
        ``reconnect_seconds``).
    """
    _field(before_status, after_status)
    with TaskManager(task_pool, url, lease_seconds=lease_seconds) as tm:
        return run_with(tm, task_func, query, force_release, before_status, after_status, Tally(),
                        kwargs) > 0


@dataclass(slots=True)
class Tally:
    """What one worker did so far (mutable: counted while tasks run): tasks committed, tasks whose
    function failed (an attempt recorded), tasks given back unrun (:class:`TaskDeferredError`)."""

    done: int = 0
    failed: int = 0
    deferred: int = 0


def run_with(tm: TaskManager, task_func: Callable[..., Any], query: Mapping[str, Any] | None,
             force_release: bool, before_status: str, after_status: str, tally: Tally,
             kwargs: Mapping[str, Any]) -> int:
    """:func:`run_task`'s loop on an open manager, counting into ``tally``; the tasks committed.

    Raises what :func:`run_task` raises, and :class:`~qroll.errors.PoolConnectionError` when the
    pool stays unreachable (a task then held keeps its lease until it expires).
    """
    field = _field(before_status, after_status)
    task_pool = tm.task_pool
    takes_lease = takes_keyword(task_func, "pool_lease")
    committed = 0
    failed_here: list[int] = []  # tasks this call saw fail: left to other workers or a later call

    def claim_query() -> dict[str, Any]:
        q = dict(query or {})
        if failed_here and "_id" not in q:
            q["_id"] = {"$nin": failed_here}
        return q

    def failed(task: dict[str, Any], exc: Exception) -> None:
        failed_here.append(int(task["_id"]))
        tally.failed += 1
        _record(tm, task, exc, before_status)

    task = tm.fetch_task(query=claim_query(), status=before_status)
    while task is not None:
        current = task
        logger.info("running task %s of pool %r", current["_id"], task_pool)
        call_kwargs = dict(kwargs)
        if takes_lease:
            call_kwargs["pool_lease"] = PoolLease(task_pool, int(current["_id"]), str(current["lease_owner"]))
        try:
            with Heartbeat(tm, current):
                if force_release:
                    res = _call_in_fresh_process(task_func, current[field], call_kwargs)
                else:
                    res = task_func(current[field], **call_kwargs)
        except (KeyboardInterrupt, TaskDeferredError) as exc:
            # Not the task's fault: back to the pool with its attempts untouched.
            _give_back(tm, current, before_status)
            if isinstance(exc, TaskDeferredError):
                tally.deferred += 1  # its message says what happened; the caller reports it once
            raise
        except Exception as exc:  # a task's failure is recorded; the worker goes on
            failed(current, exc)
            task = tm.fetch_task(query=claim_query(), status=before_status)
            continue
        # Outside the try above: a pool that stays unreachable is no failure of the task (its
        # lease expires and another worker runs it), so it propagates instead of being recorded.
        try:
            # The result and the next claim commit together: one disk flush per task.
            task = tm.commit_and_fetch(current, res, status=after_status, query=claim_query(),
                                       next_status=before_status)
            committed += 1
            tally.done += 1
            continue
        except LeaseLostError as exc:
            logger.warning("%s", exc)
        except NotSerializableError as exc:  # a result that is not JSON is the task's failure
            failed(current, exc)
        task = tm.fetch_task(query=claim_query(), status=before_status)
    return committed


def _field(before_status: str, after_status: str) -> str:
    """What a task function receives for this transition; a clear error for others."""
    key = (TaskStatus(before_status).value, TaskStatus(after_status).value)
    if key not in TRANSITIONS:
        raise PoolConfigError(f"run_task cannot move tasks {before_status}→{after_status}: use one of "
                        + ", ".join(f"{a}→{b}" for a, b in TRANSITIONS))
    return TRANSITIONS[key]


def _give_back(tm: TaskManager, task: dict[str, Any], status: str) -> None:
    with contextlib.suppress(LeaseLostError):
        tm.return_task(task, status=status)


def _record(tm: TaskManager, task: dict[str, Any], exc: Exception, status: str) -> None:
    if isinstance(exc, NotSerializableError):
        exc = NotSerializableError(f"the task's result cannot be stored: {exc}; return JSON values "
                                   "such as the recorder id")
    try:
        new = tm.record_failure(task, exc, status=status)
        logger.warning("task %s failed (%s): %s", task["_id"], new, exc)
    except LeaseLostError:
        logger.warning("task %s failed after its lease was lost: %s", task["_id"], exc)
