"""Qlib's ``TaskManager`` on SQL: the same methods and statuses, with leases, attempts and JSON.

Differences from Qlib (``qlib/workflow/task/manage.py``), each on purpose:

- a claim sets a **lease** (``lease_seconds``) that the worker renews (:meth:`TaskManager.heartbeat`,
  :class:`Heartbeat`); a task whose lease expired goes back to the status it was fetched from, or
  to ``failed`` after ``max_attempts``; claims requeue them at most every quarter lease (and
  whenever a claim finds nothing), :meth:`~TaskManager.wait` on every poll;
- :meth:`~TaskManager.commit_task_res` and :meth:`~TaskManager.return_task` are **fenced**: only the
  holder of the current lease may end it (:class:`~qroll.errors.LeaseLostError` otherwise);
- :meth:`~TaskManager.commit_and_fetch` (not in Qlib) commits a result and claims the next task
  in one transaction, as a worker loop needs: one durable commit per task instead of two;
- everything is JSON, never pickle: ``def`` comes back as JSON values (tuples are lists, dates ISO
  strings) and a result must be JSON (a recorder id, not a recorder);
- ``create_task(dry_run=True)`` returns the ids; ``remove()`` refuses an empty query;
  ``task_stat`` counts in SQL; ``wait`` has a timeout, and ``part_done`` counts as finished;
- a ``failed`` status, kept errors and tracebacks; ``re_query`` of a missing id raises
  :class:`~qroll.errors.PoolError`.
"""

from __future__ import annotations

import builtins
import datetime as dt
import itertools
import logging
import os
import secrets
import socket
import threading
import traceback as tb_module
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from qroll.clock import utcnow
from qroll.config import canonical_json, task_hash
from qroll.errors import LeaseLostError, PoolConfigError, PoolError, PoolTimeoutError
from qroll.home import qroll_home
from qroll.pool.backend import NewTask, PoolBackend, open_backend
from qroll.pool.polling import Poll, check_seconds
from qroll.pool.records import Task, TaskStatus

__all__ = ["DEFAULT_CLOCK_TOLERANCE", "DEFAULT_LEASE_SECONDS", "DEFAULT_MAX_ATTEMPTS", "Heartbeat",
           "TaskManager", "default_url"]

logger = logging.getLogger("qroll.pool")

DEFAULT_LEASE_SECONDS = 60.0  # seconds a claim holds a task without a heartbeat
DEFAULT_MAX_ATTEMPTS = 3  # failures (errors or lost leases) before a task is ``failed``
#: Seconds past a lease's end before another worker requeues it (at most ``lease_seconds``): the
#: clock skew between machines that cannot make a lease expire early.
DEFAULT_CLOCK_TOLERANCE = 5.0
Query = Mapping[str, Any]


def default_url(home: str | os.PathLike[str] | None = None) -> str:
    """``sqlite:///<home>/pool.db``, absolute (``home`` as :func:`qroll.home.qroll_home` takes it)."""
    return f"sqlite:///{(qroll_home(home) / 'pool.db').resolve()}"


def _undone(stat: Mapping[str, int]) -> int:
    return stat.get(TaskStatus.WAITING.value, 0) + stat.get(TaskStatus.RUNNING.value, 0)


def _handle(task: Mapping[str, Any] | Task) -> tuple[int, str]:
    task_id: Any
    if isinstance(task, Task):
        task_id, owner = task.id, task.lease_owner
    else:
        task_id, owner = task.get("_id"), task.get("lease_owner")
    if task_id is None:
        raise PoolConfigError(f"{task!r} is not a task fetched from the pool: it has no '_id'")
    return int(task_id), str(owner or "")


class TaskManager:
    """A pool of tasks in a SQL database, with Qlib's ``TaskManager`` methods.

    Parameters
    ----------
    task_pool : str
        The pool's name (Qlib's MongoDB collection); many pools share one database.
    url : str, optional
        ``sqlite:///path/pool.db`` or ``postgresql://user:pass@host:5432/db``; default
        ``sqlite:///<qroll_home()>/pool.db``.
    lease_seconds : float, default 60
        How long, in seconds, a fetched task stays the worker's without a :meth:`heartbeat`.
    max_attempts : int, default 3
        Stored with tasks this manager creates: failures or lost leases before ``failed``.
    clock : callable, optional
        Returns the current UTC time; default :func:`qroll.clock.utcnow`. Tests freeze it.
    worker_id : str, optional
        Names this worker in leases; default ``host:pid``. Each claim adds a unique suffix (a
        random per-manager token and a counter), so a re-claim never reuses a stale lease.
    clock_tolerance : float, optional
        Seconds this manager waits past the end of another worker's lease before requeueing it;
        default ``min(5, lease_seconds)``. A lease's end is written with its holder's clock and
        judged with this manager's: clocks that differ by up to this much never make a lease
        expire early. The cost is that a killed worker's task is retried that much later.

    Notes
    -----
    Why a tolerance rather than the database's clock: one rule for both backends, testable with
    frozen clocks (``clock``), and no extra round trip. A holder renewing on time (every third
    of its lease, :class:`Heartbeat`) already survives a skew of up to two thirds of the lease;
    the tolerance covers short leases, late renewals (a database outage, a busy machine) and
    fetch-to-commit without a heartbeat.

    Raises
    ------
    PoolConnectionError, PoolSchemaError
        See :func:`qroll.pool.backend.open_backend`.

    Examples
    --------
    >>> import tempfile
    >>> tm = TaskManager("demo", f"sqlite:///{tempfile.mkdtemp()}/pool.db")
    >>> tm.create_task([{"model": "A"}, {"model": "B"}, {"model": "A"}])
    [1, 2, 1]
    >>> task = tm.fetch_task()
    >>> task["def"], task["status"]
    ({'model': 'A'}, 'running')
    >>> tm.commit_task_res(task, {"recorder_id": "abc"})
    >>> tm.task_stat()
    {'done': 1, 'waiting': 1}
    """

    STATUS_WAITING = TaskStatus.WAITING.value
    STATUS_RUNNING = TaskStatus.RUNNING.value
    STATUS_PART_DONE = TaskStatus.PART_DONE.value
    STATUS_DONE = TaskStatus.DONE.value
    STATUS_FAILED = TaskStatus.FAILED.value

    def __init__(self, task_pool: str, url: str | None = None, *,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, clock: Callable[[], dt.datetime] | None = None,
                 worker_id: str | None = None, clock_tolerance: float | None = None) -> None:
        if not (lease_seconds > 0 and max_attempts >= 1):  # NaN too
            raise PoolConfigError(f"lease_seconds={lease_seconds} and max_attempts={max_attempts}: "
                                  "both must be positive")
        if clock_tolerance is not None and not clock_tolerance >= 0:
            raise PoolConfigError(f"clock_tolerance={clock_tolerance} must be zero or more seconds")
        self.task_pool = task_pool
        self.url = url or default_url()
        self.lease_seconds = float(lease_seconds)
        self.max_attempts = int(max_attempts)
        self.clock = clock or utcnow
        self.clock_tolerance = (min(DEFAULT_CLOCK_TOLERANCE, self.lease_seconds) if clock_tolerance is None
                                else float(clock_tolerance))
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.backend: PoolBackend = open_backend(self.url)
        self._token = secrets.token_hex(4)
        self._claims = itertools.count(1)
        # When (by self.clock) claims next requeue expired leases; None: at the next claim.
        self._next_requeue: dt.datetime | None = None

    # -- helpers ------------------------------------------------------------------------------
    def _now(self) -> dt.datetime:
        return self.clock()

    def _new_owner(self) -> str:
        """A lease token no other claim uses: this worker's id, a random token and a counter."""
        return f"{self.worker_id}:{self._token}{next(self._claims):x}"

    def _requeue_due(self, now: dt.datetime) -> bool:
        """Whether claims should requeue expired leases first (see :meth:`fetch_task`)."""
        return self._next_requeue is None or now >= self._next_requeue

    def _lease_until(self, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(seconds=self.lease_seconds)

    def _expired_before(self, now: dt.datetime) -> dt.datetime:
        """Leases that ended before this time (by this manager's clock) are expired."""
        return now - dt.timedelta(seconds=self.clock_tolerance)

    def close(self) -> None:
        """Close the database connection."""
        self.backend.close()

    def __enter__(self) -> TaskManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __str__(self) -> str:
        return f"TaskManager({self.task_pool})"

    def __repr__(self) -> str:
        return f"TaskManager({self.task_pool!r}, {getattr(self.backend, 'masked_url', '?')!r})"

    # -- creating -----------------------------------------------------------------------------
    def create_task(self, task_def_l: Sequence[Mapping[str, Any]], dry_run: bool = False,
                    print_nt: bool = False, *, retry_failed: bool = False,
                    priority: int = 0) -> list[int | None]:
        """Add the tasks that are not in the pool yet; return every task's id, in order.

        Parameters
        ----------
        task_def_l : list of dict
            Task definitions; identical ones (by :func:`qroll.config.task_hash`, so dict order,
            tuple/list and date spelling do not matter) are one task, within the batch too.
        dry_run : bool, default False
            Insert nothing; return the existing ids, ``None`` for tasks that would be new.
        print_nt : bool, default False
            Log the new tasks' definitions.
        retry_failed : bool, default False
            Put existing ``failed`` tasks back to ``waiting`` with their attempts reset. Tasks in
            any other status (``done`` included, as in Qlib) are reused as they are.
        priority : int, default 0
            Priority of the new tasks; higher is fetched first.

        Returns
        -------
        list of int or None

        Raises
        ------
        NotSerializableError
            A task holds a value with no JSON form (its path is named); nothing is inserted.
        """
        items = [NewTask(task_hash=task_hash(t), definition=canonical_json(t), priority=int(priority),
                         max_attempts=self.max_attempts) for t in task_def_l]
        out = self.backend.add(self.task_pool, items, now=self._now(), dry_run=dry_run,
                               retry_failed=retry_failed)
        new = [t for t, (_, is_new) in zip(task_def_l, out, strict=True) if is_new]
        logger.info("Total Tasks: %d, New Tasks: %d%s", len(items), len(new), " (dry run)" if dry_run else "")
        if print_nt:
            for t in new:
                logger.info("new task: %s", t)
        return [task_id for task_id, _ in out]

    # -- claiming -----------------------------------------------------------------------------
    def fetch_task(self, query: Query | None = None, status: str = STATUS_WAITING) -> dict[str, Any] | None:
        """Claim the best task in ``status`` matching ``query``: it becomes ``running``, leased.

        Expired leases are requeued first (at most every ``lease_seconds / 4``, and always when
        nothing else is claimable). Higher priority first, then the oldest.

        Returns
        -------
        dict or None
            ``None`` when nothing matches; else the task (:meth:`Task.to_dict`: ``_id``, ``def``,
            ``filter``, ``status`` "running", ``res``, ``lease_owner``, ``attempts``, ...). Pass it
            to :meth:`commit_task_res` or :meth:`return_task` before ``lease_seconds`` pass, or
            renew with :meth:`heartbeat`.
        """
        now = self._now()
        owner = self._new_owner()
        status = TaskStatus(status).value
        # Requeueing scans the running tasks; doing it on every claim cost a statement (or a
        # transaction) per task. A lease expires only lease_seconds after its last renewal, so
        # requeueing every quarter lease delays a retry by at most that much, and a claim that
        # finds nothing requeues at once (so an idle worker never waits on a dead one's lease).
        due = self._requeue_due(now)
        if due:
            self._next_requeue = now + dt.timedelta(seconds=self.lease_seconds / 4)
        lease_until = self._lease_until(now)
        task = self.backend.claim(self.task_pool, query, status=status, owner=owner, now=now,
                                  lease_until=lease_until, requeue=due,
                                  expired_before=self._expired_before(now))
        if task is None and not due and self.requeue_expired():
            task = self.backend.claim(self.task_pool, query, status=status, owner=owner, now=now,
                                      lease_until=lease_until, requeue=False)
        return None if task is None else task.to_dict()

    @contextmanager
    def safe_fetch_task(self, query: Query | None = None,
                        status: str = STATUS_WAITING) -> Iterator[dict[str, Any] | None]:
        """:meth:`fetch_task` as a context manager: on an exception (``KeyboardInterrupt``
        included) in the block the task goes back to ``status`` and the exception propagates.

        A killed process cannot run this; its lease expiry covers that case.
        """
        task = self.fetch_task(query=query, status=status)
        try:
            yield task
        except (Exception, KeyboardInterrupt):
            if task is not None:
                try:
                    self.return_task(task, status=status)
                except LeaseLostError:
                    logger.warning("task %s was not returned: its lease was lost", task["_id"])
            raise

    def task_fetcher_iter(self, query: Query | None = None) -> Iterator[dict[str, Any]]:
        """Yield claimed ``waiting`` tasks until none is left; the consumer commits each."""
        while True:
            task = self.fetch_task(query=query)
            if task is None:
                return
            yield task

    def heartbeat(self, task: Mapping[str, Any] | Task) -> dt.datetime:
        """Renew the lease of a task this worker holds; return its new expiry (UTC).

        Raises
        ------
        LeaseLostError
            The lease expired and was requeued, or another worker holds it now.
        """
        task_id, owner = _handle(task)
        now = self._now()
        until = self._lease_until(now)
        if not self.backend.heartbeat(self.task_pool, task_id, owner, now=now, lease_until=until):
            raise self._lost(task_id, owner, "renew")
        return until

    def _lost(self, task_id: int, owner: str, action: str) -> LeaseLostError:
        return LeaseLostError(
            f"cannot {action} task {task_id} of pool {self.task_pool!r}: lease {owner or '(none)'} is no "
            "longer held (it expired and was requeued, or another worker claimed it); its result is "
            "not stored: renew leases more often or raise lease_seconds"
        )

    # -- ending a lease -----------------------------------------------------------------------
    def commit_task_res(self, task: Mapping[str, Any] | Task, res: Any, status: str = STATUS_DONE) -> None:
        """Store ``res`` (JSON) and set ``status`` (``done``, or ``part_done``), fenced by the lease.

        Raises
        ------
        LeaseLostError
            This worker no longer holds the task; nothing is changed.
        NotSerializableError
            ``res`` is not JSON; nothing is changed.
        """
        task_id, owner = _handle(task)
        text = canonical_json(res, path="res")
        done = self.backend.finish(self.task_pool, task_id, owner, status=TaskStatus(status or "done").value,
                                   now=self._now(), result=text)
        if done is None:
            raise self._lost(task_id, owner, "commit")

    def commit_and_fetch(self, task: Mapping[str, Any] | Task, res: Any, status: str = STATUS_DONE,
                         query: Query | None = None,
                         next_status: str = STATUS_WAITING) -> dict[str, Any] | None:
        """:meth:`commit_task_res`, then :meth:`fetch_task`, in one transaction.

        What a worker does between two tasks, in one commit (one disk flush) instead of two: the
        result is stored and the next task claimed together. Same fencing and requeue schedule
        as the two calls.

        Parameters
        ----------
        task, res, status
            As for :meth:`commit_task_res`.
        query, next_status
            As ``query`` and ``status`` for :meth:`fetch_task`.

        Returns
        -------
        dict or None
            The next task, claimed (as from :meth:`fetch_task`), or ``None`` when none is left.

        Raises
        ------
        LeaseLostError
            This worker no longer holds ``task``; nothing is changed and nothing is claimed.
        NotSerializableError
            ``res`` is not JSON; nothing is changed.
        """
        now = self._now()
        if self._requeue_due(now):  # fetch_task requeues expired leases before it claims
            self.commit_task_res(task, res, status=status)
            return self.fetch_task(query=query, status=next_status)
        task_id, owner = _handle(task)
        text = canonical_json(res, path="res")
        finished, claimed = self.backend.finish_and_claim(
            self.task_pool, task_id, owner, status=TaskStatus(status or "done").value, result=text,
            query=query, next_status=TaskStatus(next_status).value, next_owner=self._new_owner(),
            now=now, lease_until=self._lease_until(now))
        if not finished:
            raise self._lost(task_id, owner, "commit")
        if claimed is None:  # nothing claimable: fetch_task requeues expired leases and looks again
            return self.fetch_task(query=query, status=next_status)
        return claimed.to_dict()

    def return_task(self, task: Mapping[str, Any] | Task, status: str = STATUS_WAITING) -> None:
        """Give a task back unchanged, in ``status``, without using an attempt; fenced.

        Raises
        ------
        LeaseLostError
            This worker no longer holds the task; nothing is changed.
        """
        task_id, owner = _handle(task)
        if self.backend.finish(self.task_pool, task_id, owner, status=TaskStatus(status or "waiting").value,
                               now=self._now()) is None:
            raise self._lost(task_id, owner, "return")

    def record_failure(self, task: Mapping[str, Any] | Task, error: BaseException | str,
                       status: str = STATUS_WAITING) -> TaskStatus:
        """Record a failed attempt (message and traceback) and give the task back; fenced.

        The task goes to ``status`` (where it was fetched from), or ``failed`` when this was its
        ``max_attempts``-th failure. Returns the status it got.
        """
        task_id, owner = _handle(task)
        if isinstance(error, BaseException):
            message = f"{type(error).__name__}: {error}"
            trace = "".join(tb_module.format_exception(type(error), error, error.__traceback__))
        else:
            message, trace = str(error), None
        done = self.backend.finish(self.task_pool, task_id, owner, status=TaskStatus(status).value,
                                   now=self._now(), error=message, traceback=trace, count_attempt=True)
        if done is None:
            raise self._lost(task_id, owner, "record the failure of")
        return done

    # -- reading ------------------------------------------------------------------------------
    def query(self, query: Query | None = None, decode: bool = True) -> Iterator[dict[str, Any]]:
        """Yield the tasks matching ``query``, by id.

        ``query`` takes equality, ``{"$in": [...]}`` or ``{"$nin": [...]}`` on ``_id``, ``status``,
        ``priority``, ``attempts``, ``lease_owner``, ``task_hash``, and dotted paths into the definition
        (``"def.model.class"`` or Qlib's ``"filter.model.class"``); with ``decode=False``,
        ``def``, ``filter`` and ``res`` are the stored JSON text.

        Raises
        ------
        PoolQueryError
            An unknown field (the message lists the valid ones) or operator.
        """
        for row in self.backend.select(self.task_pool, query):
            if decode:
                yield Task.from_row(row).to_dict()
            else:
                raw = Task.from_row({**row, "def": None, "result": None}).to_dict()
                raw.update({"def": row["def"], "filter": row["def"], "res": row["result"]})
                yield raw

    def re_query(self, _id: int | str) -> dict[str, Any]:
        """The task with this id. Raises :class:`PoolError` when there is none."""
        for task in self.query({"_id": _id}):
            return task
        raise PoolError(f"the pool {self.task_pool!r} has no task with id {_id!r}")

    def task_stat(self, query: Query | None = None) -> dict[str, int]:
        """Status → number of tasks matching ``query``, counted by the database."""
        return self.backend.stats(self.task_pool, query)

    # -- changing many ------------------------------------------------------------------------
    def remove(self, query: Query | None = None, all: bool = False) -> int:  # noqa: A002 - Qlib's name
        """Delete the tasks matching ``query``; an empty query needs ``all=True``. The count."""
        if not query and not all:
            raise PoolConfigError(f"remove() with an empty query would delete every task of pool "
                                  f"{self.task_pool!r}: pass a query, or all=True to mean it")
        return self.backend.delete(self.task_pool, query)

    def reset_status(self, query: Query | None, status: str) -> int:
        """Set the status of matching tasks, dropping their leases; the count.

        A task leaving ``failed`` gets its attempts back to 0. A running task reset here may still
        be worked on; that worker can no longer commit (its lease is gone).
        """
        n = self.backend.update(self.task_pool, query, now=self._now(), status=TaskStatus(status).value)
        logger.info("reset %d tasks of pool %r to %s", n, self.task_pool, status)
        return n

    def reset_waiting(self, query: Query | None = None) -> int:
        """Put matching tasks back to ``waiting``; with no ``status`` in the query, the running ones."""
        query = dict(query or {})
        query.setdefault("status", self.STATUS_RUNNING)
        return self.reset_status(query, self.STATUS_WAITING)

    def prioritize(self, task: Mapping[str, Any] | Task, priority: int) -> None:
        """Set a task's priority (higher is fetched first)."""
        task_id, _ = _handle(task)
        self.backend.update(self.task_pool, {"_id": task_id}, now=self._now(), priority=int(priority))

    def requeue_expired(self) -> int:
        """Send running tasks whose lease expired more than ``clock_tolerance`` seconds ago back
        (or to ``failed``); the count."""
        now = self._now()
        return self.backend.requeue_expired(self.task_pool, now=now, expired_before=self._expired_before(now))

    def wait(self, query: Query | None = None, timeout: float | None = None,
             poll: float = 1.0) -> dict[str, int]:
        """Block until no task matching ``query`` is ``waiting`` or ``running``.

        Unlike Qlib, ``part_done`` counts as finished here, so a pool shared with a delay trainer
        does not hang its waiters. Expired leases are requeued on every poll, so a killed worker's
        task is retried (or ``failed``) rather than waited on for ever.

        Parameters
        ----------
        query : dict, optional
        timeout : float, optional
            Seconds (wall clock) before giving up; ``None`` waits for as long as it takes.
        poll : float, default 1.0
            Seconds between checks.

        Returns
        -------
        dict
            The final :meth:`task_stat`.

        Raises
        ------
        PoolTimeoutError
            ``timeout`` passed; the message has the counts by status.
        ConfigValueError
            ``timeout`` or ``poll`` is negative (or not a number).
        """
        query = {k: v for k, v in (query or {}).items() if k != "status"}
        pacing = Poll(pause=check_seconds("poll", poll),
                      timeout=check_seconds("timeout", timeout, optional=True), clip=True)
        last: dict[str, int] = {}

        def look() -> dict[str, int] | None:
            self.requeue_expired()
            last.clear()
            last.update(self.task_stat(query))
            return dict(last) if _undone(last) == 0 else None

        def between() -> None:
            logger.info("waiting for %d undone tasks of pool %r", _undone(last), self.task_pool)

        stat = pacing.until(look, between=between)
        if stat is None:
            counts = ", ".join(f"{k}={v}" for k, v in sorted(last.items()))
            raise PoolTimeoutError(
                f"waited {timeout:g} s for pool {self.task_pool!r}: {_undone(last)} tasks still waiting or "
                f"running ({counts}); start workers (qroll worker) or raise the timeout"
            )
        return stat

    # Last, so that ``list`` in the annotations above is still the builtin.
    def list(self) -> builtins.list[str]:
        """The names of the pools in this database that hold tasks (Qlib's ``list()``)."""
        return self.backend.pools()


class Heartbeat:
    """Renew a task's lease from a background thread while the task runs.

    Parameters
    ----------
    tm : TaskManager
    task : dict
        A task from :meth:`TaskManager.fetch_task`.
    interval : float, optional
        Seconds between renewals; default a third of ``tm.lease_seconds``.

    Attributes
    ----------
    lost : threading.Event
        Set when a renewal found the lease gone; the thread then stops.

    Examples
    --------
    >>> # with Heartbeat(tm, task):
    >>> #     res = train(task["def"])
    """

    def __init__(self, tm: TaskManager, task: Mapping[str, Any] | Task,
                 interval: float | None = None) -> None:
        self.tm = tm
        self.task = task
        self.interval = interval if interval is not None else tm.lease_seconds / 3
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qroll-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tm.heartbeat(self.task)
            except LeaseLostError:
                logger.warning("lost the lease of task %s", _handle(self.task)[0])
                self.lost.set()
                return
            except PoolError as exc:  # a passing outage: keep trying until the lease runs out
                logger.warning("heartbeat of task %s failed: %s", _handle(self.task)[0], exc)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
