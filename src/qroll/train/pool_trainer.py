"""``TrainerRM`` and ``DelayTrainerRM``: train through a task pool, with local and remote workers.

Qlib's pool trainers, fixed (reference §1.10, §3 W1–W4, W14): results are JSON run ids, never
pickled recorders; ``wait`` has a timeout and notices dead workers; a failing task ends ``failed``
after its attempts and is reported with the others' runs (:class:`~qroll.errors.TrainingError`);
a killed worker's task is re-run once its lease expires; ``part_done`` never hangs a waiter.
"""

from __future__ import annotations

import logging
import multiprocessing
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.process import BaseProcess
from typing import Any

from qroll.errors import ConfigTypeError, ConfigValueError, PoolTimeoutError, RecordError, TrainingError
from qroll.pool.manager import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, TaskManager, default_url
from qroll.pool.polling import Poll, check_seconds
from qroll.pool.records import TaskStatus
from qroll.pool.run import PoolLease, run_task, takes_keyword
from qroll.pool.worker import DEFAULT_IDLE_POLL
from qroll.record import ExpManager, Recorder
from qroll.record.tags import STATUS_BEGIN, STATUS_END, STATUS_KEY, TAG_POOL_ID
from qroll.tasks import shape
from qroll.train import pool_entry
from qroll.train.task import begin_task_train, end_task_train, task_train
from qroll.train.trainer import DEFAULT_EXPERIMENT, TaskOutcome, Trainer, TrainProgress
from qroll.train.workers import run_workers

__all__ = ["DelayTrainerRM", "TrainerRM"]

log = logging.getLogger("qroll.train")

WAITING, RUNNING, PART_DONE, DONE, FAILED = (s.value for s in TaskStatus)


def _left(stat: Mapping[str, int], undone: set[str]) -> int:
    return sum(n for s, n in stat.items() if s in undone)


def _as_of_day(as_of: Any) -> str | None:
    """``as_of`` as the pool task carries it (``YYYY-MM-DD``), or None."""
    if as_of is None:
        return None
    try:
        return shape.format_day(as_of)
    except (TypeError, ValueError) as exc:
        raise ConfigValueError(f"as_of={as_of!r} is not a day: give a date such as '2019-03-29'") from exc


def _dated(tasks: list[Mapping[str, Any]], as_of: str | None) -> list[Mapping[str, Any]]:
    # The day travels in the pool task itself, so any worker (a `qroll worker` started elsewhere
    # knows nothing of this trainer) trains it as of that day; the worker takes it out again, so
    # the run records the bare task (its hash and window key unchanged).
    # The pool's dedupe hash is that of the definition *with* the day, on purpose: a pool row is a
    # request to fit as of one day, and a row still waiting for day d1 must not absorb a request
    # for d2 (its worker would train as of d1, and the window's predictions would stop short of
    # d2). The fit itself is not repeated: the worker reuses the window's FINISHED run, whatever day
    # trained it (pool_entry.task_train_entry, as TrainerR skips finished tasks), and
    # OnlineManager never resubmits a window it has (shape.window_key ignores the day).
    return [shape.with_as_of(t, as_of) for t in tasks] if as_of is not None else tasks


class TrainerRM(Trainer):
    """Put tasks in a pool, train them with local worker processes (and any ``qroll worker``), wait.

    Parameters
    ----------
    experiment_name : str, optional
        The MLflow experiment (default ``"Experiment"``).
    task_pool : str, optional
        The pool's name; default the experiment name.
    train_func : callable, default task_train
        ``train_func(task, experiment, recorder_name=..., exp_manager=...) -> Recorder``; a
        module-level function, so spawned workers can import it.
    skip_run_task : bool, default False
        When False this process trains tasks too; when True it only waits (for the ``n_workers``
        local processes and for workers started elsewhere).
    default_rec_name : str, optional
        The run name of every task.
    pool_url : str, optional
        The pool database; default ``sqlite:///<home>/pool.db``, the home of ``exp_manager``
        (else :func:`qroll.home.qroll_home`'s).
    exp_manager : ExpManager, optional
        The tracking store; workers open the same URI, with its home (where they keep the feature
        cache). Default the qroll home's store.
    n_workers : int, default 1
        Local worker processes (spawned) started by :meth:`train`; 0 starts none.
    timeout : float, optional
        Seconds :meth:`train` waits for the pool's tasks after this process stops working;
        ``None`` waits as long as workers make progress.
    poll : float, default 1.0
        Seconds between looks at the pool while waiting.
    lease_seconds : float, default 60
        The workers' lease (renewed by a heartbeat every third).
    max_attempts : int, default 3
        Failures (or lost leases) of a new task before it is ``failed``.
    progress : callable, optional
        Called with a :class:`~qroll.train.TaskOutcome` as each task ends.

    Raises
    ------
    ConfigValueError
        ``n_workers`` below 0 or not whole, ``poll`` or ``timeout`` negative; a bad
        ``lease_seconds`` or ``max_attempts`` raises :class:`~qroll.errors.PoolConfigError` at
        the first :meth:`train`.

    Notes
    -----
    A task already ``done`` in the pool is reused without training (as in Qlib), unless its run
    is gone from MLflow (then it is trained again); a ``failed`` one is retried.
    """

    STATUS_KEY, STATUS_BEGIN, STATUS_END = STATUS_KEY, STATUS_BEGIN, STATUS_END
    TM_ID = TAG_POOL_ID

    def __init__(
        self,
        experiment_name: str | None = None,
        task_pool: str | None = None,
        train_func: Callable[..., Recorder] = task_train,
        skip_run_task: bool = False,
        default_rec_name: str | None = None,
        *,
        pool_url: str | None = None,
        exp_manager: ExpManager | None = None,
        n_workers: int = 1,
        timeout: float | None = None,
        poll: float = 1.0,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        progress: TrainProgress | None = None,
    ) -> None:
        try:
            workers = operator.index(n_workers)
        except TypeError:
            workers = -1
        if workers < 0:
            raise ConfigValueError(f"n_workers={n_workers!r} must be a whole number >= 0 (0 starts no "
                                   "local worker process)")
        check_seconds("poll", poll)
        check_seconds("timeout", timeout, optional=True)
        self.experiment_name = experiment_name
        self.task_pool = task_pool
        self.train_func = train_func
        self.skip_run_task = skip_run_task
        self.default_rec_name = default_rec_name
        self.pool_url = pool_url or default_url(exp_manager.home if exp_manager is not None else None)
        self.exp_manager = exp_manager
        self.n_workers = n_workers
        self.timeout = timeout
        self.poll = poll
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.progress = progress
        self._skipped: set[int] = set()  # tasks already finished when the current train() began

    # -- helpers ------------------------------------------------------------------------------
    @property
    def manager(self) -> ExpManager:
        """The tracking store (built on first use)."""
        if self.exp_manager is None:
            self.exp_manager = ExpManager()
        return self.exp_manager

    def _submit(
        self, task_list: list[Mapping[str, Any]], experiment_name: str | None
    ) -> tuple[str, str, list[int]]:
        """Put the tasks in the pool (a failed one is retried); the experiment, pool and task ids."""
        name, pool = self._names(experiment_name)
        with self._tm(pool) as tm:
            ids = [int(i) for i in tm.create_task(task_list, retry_failed=True) if i is not None]
            self._drop_stale(tm, ids)
        return name, pool, ids

    def _names(self, experiment_name: str | None) -> tuple[str, str]:
        name = experiment_name or self.experiment_name or DEFAULT_EXPERIMENT
        return name, self.task_pool or name

    def _tm(self, pool: str) -> TaskManager:
        return TaskManager(pool, self.pool_url, lease_seconds=self.lease_seconds,
                           max_attempts=self.max_attempts)

    def _entry_kwargs(self, name: str) -> dict[str, Any]:
        manager = self.manager
        return {"experiment": name, "tracking": manager.uri, "artifact_root": manager.artifact_root,
                "home": str(manager.home)}

    def _start_workers(self, n: int, pool: str, name: str, query: dict[str, Any], before: str, after: str,
                       task_func: Callable[..., Any],
                       train_func: Callable[..., Recorder]) -> list[BaseProcess]:
        ctx = multiprocessing.get_context("spawn")
        kwargs = {**self._entry_kwargs(name),
                  "lease_seconds": self.lease_seconds, "stop_when_empty": True,
                  "idle_poll": min(self.poll, DEFAULT_IDLE_POLL), "task_func": task_func,
                  "train_func": train_func, "query": query, "before_status": before, "after_status": after}
        if before == WAITING:
            kwargs["recorder_name"] = self.default_rec_name
        procs: list[BaseProcess] = [
            ctx.Process(target=run_workers, args=(self.pool_url, pool), kwargs=kwargs,
                        name=f"qroll-worker-{i}", daemon=True)
            for i in range(n)
        ]
        for proc in procs:
            proc.start()
        return procs

    def _drop_stale(self, tm: TaskManager, ids: list[int]) -> None:
        # A done task whose run was deleted (``qroll run --reset``) is trained again, not reused.
        stale = []
        for task in tm.query({"_id": {"$in": ids}, "status": {"$in": [DONE, PART_DONE]}}):
            try:
                pool_entry.result_recorder(task["res"], self.manager)
            except RecordError:
                stale.append(task["_id"])
        if stale:
            log.info("tasks %s of pool %r name deleted runs: training them again", stale, tm.task_pool)
            tm.reset_status({"_id": {"$in": stale}}, WAITING)

    def _run(self, tasks: list[Mapping[str, Any]], name: str, pool: str, ids: list[int], before: str,
             after: str, undone: set[str], task_func: Callable[..., Any], train_func: Callable[..., Recorder],
             work_here: bool) -> dict[int, dict[str, Any]]:
        """Train the tasks ``ids`` from ``before`` to ``after``; return their final rows by id."""
        query = {"_id": {"$in": sorted(set(ids))}}
        reported: set[int] = set()
        t0 = time.perf_counter()
        with self._tm(pool) as tm:
            self._skipped = {t["_id"] for t in tm.query(query) if t["status"] not in undone}
        procs = self._start_workers(self.n_workers, pool, name, query, before, after, task_func, train_func)
        try:
            with self._tm(pool) as tm:
                kwargs = {**self._entry_kwargs(name), "train_func": train_func}
                if before == WAITING:
                    kwargs["recorder_name"] = self.default_rec_name

                def func(param: Any, pool_lease: PoolLease | None = None, **kw: Any) -> Any:
                    self._report(tm, tasks, ids, reported, t0, undone)
                    if pool_lease is not None and takes_keyword(task_func, "pool_lease"):
                        kw["pool_lease"] = pool_lease
                    return task_func(param, **kw)

                def here() -> None:
                    run_task(func, pool, query=query, before_status=before, after_status=after,
                             url=self.pool_url, lease_seconds=self.lease_seconds, **kwargs)

                if work_here:
                    here()
                self._wait(tm, tasks, ids, reported, t0, undone, procs, here if work_here else None)
                return {t["_id"]: t for t in tm.query(query)}
        finally:
            for proc in procs:
                proc.join(timeout=5 * self.poll)
                if proc.is_alive():
                    proc.terminate()  # their leases expire; nothing is lost
                    proc.join()

    def _wait(self, tm: TaskManager, tasks: list[Mapping[str, Any]], ids: list[int], reported: set[int],
              t0: float, undone: set[str], procs: list[BaseProcess], here: Callable[[], None] | None) -> None:
        last: dict[str, int] = {}

        def look() -> bool | None:
            tm.requeue_expired()
            last.clear()
            last.update(self._report(tm, tasks, ids, reported, t0, undone))
            return True if _left(last, undone) == 0 else None

        def between() -> None:
            if here is not None and not any(p.is_alive() for p in procs):
                # No local worker left (none started, or they died): this process takes what is
                # waiting; a task running elsewhere is waited for (or requeued when its lease ends).
                here()

        if Poll(pause=self.poll, timeout=self.timeout).until(look, between=between) is None:
            counts = ", ".join(f"{k}={v}" for k, v in sorted(last.items()))
            raise PoolTimeoutError(
                f"waited {self.timeout:g} s for {_left(last, undone)} tasks of pool {tm.task_pool!r} "
                f"({counts}); start workers (qroll worker --pool ... --pool-name ...) or raise the timeout"
            )

    def _report(self, tm: TaskManager, tasks: list[Mapping[str, Any]], ids: list[int], reported: set[int],
                t0: float, undone: set[str]) -> dict[str, int]:
        rows = {t["_id"]: t for t in tm.query({"_id": {"$in": sorted(set(ids))}})}
        stat: dict[str, int] = {}
        for i, task_id in enumerate(ids):
            row = rows.get(task_id)
            status = row["status"] if row else "missing"
            stat[status] = stat.get(status, 0) + 1
            if row is None or status in undone or i in reported or self.progress is None:
                continue
            reported.add(i)
            kind = "failed" if status == FAILED else "skipped" if task_id in self._skipped else "trained"
            self.progress(TaskOutcome(index=i, total=len(ids), status=kind, task=tasks[i], recorder=None,
                                      seconds=time.perf_counter() - t0,
                                      error=row.get("last_error") if status == FAILED else None))
        return stat

    def _collect(self, rows: dict[int, dict[str, Any]], ids: list[int], ok: set[str],
                 tag: str) -> list[Recorder]:
        recorders: list[Recorder | None] = []
        failures: list[tuple[int, str]] = []
        for i, task_id in enumerate(ids):
            row = rows.get(task_id)
            if row is None or row["status"] not in ok:
                status = row["status"] if row else "removed from the pool"
                why = (row or {}).get("last_error") or f"the task is {status}"
                failures.append((i, f"pool task {task_id}: {why}"))
                recorders.append(None)
                continue
            try:
                rec = pool_entry.result_recorder(row["res"], self.manager)
                rec.set_tags(**{STATUS_KEY: tag, TAG_POOL_ID: str(task_id)})
            except RecordError as exc:
                failures.append((i, f"pool task {task_id}: {exc}"))
                recorders.append(None)
                continue
            recorders.append(rec)
        if failures:
            raise TrainingError(failures=failures, recorders=recorders, total=len(ids))
        return [r for r in recorders if r is not None]

    # -- Qlib's API -----------------------------------------------------------------------------
    def train(
        self,
        tasks: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        train_func: Callable[..., Recorder] | None = None,
        experiment_name: str | None = None,
        *,
        as_of: Any = None,
        **kwargs: Any,
    ) -> list[Recorder]:
        """Add the tasks to the pool, train them, wait; return their runs in input order.

        Each run is tagged ``train_status=begin_task_train`` and ``qroll.pool_task_id``.

        Parameters
        ----------
        tasks : dict or list of dict
            The tasks.
        train_func : callable, optional
            Instead of the trainer's.
        experiment_name : str, optional
            Instead of the trainer's.
        as_of : date, optional
            Train on the data as it stood on that day (see :func:`~qroll.train.task_train`): what
            :class:`~qroll.online.OnlineManager` passes. The day travels in each pool task (its
            ``qroll.as_of``, see :func:`~qroll.tasks.shape.with_as_of`), so every worker, a
            ``qroll worker`` started elsewhere too, honours it; the runs record the tasks without it
            (hashes and window keys as :meth:`TrainerR.train <qroll.train.TrainerR.train>` gives).

        Raises
        ------
        ConfigValueError
            ``as_of`` is not a date.
        TrainingError
            Some tasks ended ``failed``; its ``recorders`` holds the others' runs (``None`` at the
            failed ones), its ``failures`` the last error of each.
        PoolTimeoutError
            ``timeout`` passed with tasks still waiting or running.
        """
        if kwargs:
            raise ConfigTypeError(f"TrainerRM.train got unexpected arguments {sorted(kwargs)}: it takes "
                                  "tasks, train_func, experiment_name and as_of")
        day = _as_of_day(as_of)
        task_list = self._task_list(tasks)
        if not task_list:
            return []
        name, pool, ids = self._submit(_dated(task_list, day), experiment_name)
        rows = self._run(task_list, name, pool, ids, WAITING, DONE, {WAITING, RUNNING},
                         pool_entry.task_train_entry, train_func or self.train_func, not self.skip_run_task)
        return self._collect(rows, ids, {DONE}, STATUS_BEGIN)

    def has_worker(self) -> bool:
        """Pool trainers have workers."""
        return True

    def worker(self, train_func: Callable[..., Recorder] | None = None, experiment_name: str | None = None,
               stop_when_empty: bool = True) -> None:
        """Work on every waiting task of the pool in this process (Qlib's ``worker``)."""
        name, pool = self._names(experiment_name)
        run_workers(self.pool_url, pool, name, self.manager.uri, lease_seconds=self.lease_seconds,
             stop_when_empty=stop_when_empty, artifact_root=self.manager.artifact_root,
             train_func=train_func or self.train_func, recorder_name=self.default_rec_name,
             home=self.manager.home)


class DelayTrainerRM(TrainerRM):
    """``train`` records each task in this process (pool ``part_done``); ``end_train`` fits them
    with the workers (pool ``done``).

    Parameters are :class:`TrainerRM`'s, with ``train_func`` the first phase and
    ``end_train_func`` the second (``end_train_func(rec, experiment, exp_manager=...)``).
    """

    delay = True

    def __init__(
        self,
        experiment_name: str | None = None,
        task_pool: str | None = None,
        train_func: Callable[..., Recorder] = begin_task_train,
        end_train_func: Callable[..., Recorder] = end_task_train,
        skip_run_task: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(experiment_name, task_pool, train_func, skip_run_task, **kwargs)
        self.end_train_func = end_train_func

    def train(
        self,
        tasks: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        train_func: Callable[..., Recorder] | None = None,
        experiment_name: str | None = None,
        *,
        as_of: Any = None,
        **kwargs: Any,
    ) -> list[Recorder]:
        """Record every task (phase 1, in this process: it is quick); their runs in input order.

        A task already ``done`` in the pool is returned as it is; ``end_train`` skips it.

        ``as_of`` (a date) is the day :meth:`end_train` fits on (see :meth:`TrainerRM.train`). It is
        given here because it travels in the pool task, which the pool fixes when the task is added:
        the run records the task without it, and its pool result carries it to phase 2, in any
        worker. :meth:`end_train` must be given the same day (or none).

        Raises
        ------
        ConfigValueError
            ``as_of`` is not a date.
        """
        if kwargs:
            raise ConfigTypeError(f"DelayTrainerRM.train got unexpected arguments {sorted(kwargs)}: it "
                                  "takes tasks, train_func, experiment_name and as_of")
        day = _as_of_day(as_of)
        task_list = self._task_list(tasks)
        if not task_list:
            return []
        name, pool, ids = self._submit(_dated(task_list, day), experiment_name)
        n_workers, self.n_workers = self.n_workers, 0  # phase 1 is quick: no process to spawn
        try:
            rows = self._run(task_list, name, pool, ids, WAITING, PART_DONE, {WAITING, RUNNING},
                             pool_entry.begin_task_train_entry, train_func or self.train_func, True)
        finally:
            self.n_workers = n_workers
        return self._collect(rows, ids, {PART_DONE, DONE}, STATUS_BEGIN)

    def end_train(
        self,
        models: Recorder | Sequence[Recorder],
        end_train_func: Callable[..., Recorder] | None = None,
        experiment_name: str | None = None,
        *,
        as_of: Any = None,
        **kwargs: Any,
    ) -> list[Recorder]:
        """Fit every ``part_done`` task of these runs with the workers; their runs, tagged END.

        Each task is fitted as of the day :meth:`train` was given (it travels in the pool task);
        ``as_of``, when given, must be that day.

        Raises
        ------
        TrainingError
            A run without the ``qroll.pool_task_id`` tag, or tasks that ended ``failed``.
        ConfigValueError
            ``as_of`` is not a date, or not the day a task to fit was submitted with (nothing is fitted).
        """
        day = _as_of_day(as_of)
        recs = self._recorder_list(models)
        if not recs:
            return []
        name, pool = self._names(experiment_name)
        ids: list[int] = []
        for i, rec in enumerate(recs):
            task_id = rec.refresh().tags.get(TAG_POOL_ID)
            if task_id is None:
                raise TrainingError(f"run {rec.id} (input {i}) has no {TAG_POOL_ID!r} tag: pass the runs "
                                    "DelayTrainerRM.train returned")
            ids.append(int(task_id))
        with self._tm(pool) as tm:
            rows = {t["_id"]: t for t in tm.query({"_id": {"$in": sorted(set(ids))}})}
        if day is not None:
            self._check_day(rows, day)
        task_list = [shape.without_as_of(rows[i]["def"]) if i in rows else {} for i in ids]
        done = self._run(task_list, name, pool, ids, PART_DONE, DONE, {PART_DONE, RUNNING},
                         pool_entry.end_task_train_entry, end_train_func or self.end_train_func,
                         not self.skip_run_task)
        return self._collect(done, ids, {DONE}, STATUS_END)

    @staticmethod
    def _check_day(rows: Mapping[int, Mapping[str, Any]], day: str) -> None:
        # Phase 2 reads its day from phase 1's result (any worker may fit it): a different day
        # asked for here could not reach those workers, so it is refused rather than half-honoured.
        found = {task_id: row["res"].get("as_of") if isinstance(row.get("res"), Mapping) else None
                 for task_id, row in rows.items() if row["status"] == PART_DONE}
        wrong = [(task_id, d) for task_id, d in found.items() if d != day]
        if wrong:
            shown = ", ".join(f"task {i}: {d or 'none'}" for i, d in wrong[:5])
            raise ConfigValueError(f"end_train(as_of={day!r}) but the tasks were recorded with another "
                                   f"as-of day ({shown}): pass as_of to DelayTrainerRM.train, which puts it "
                                   "in the pool task, and the same day (or none) to end_train")

    def worker(self, end_train_func: Callable[..., Recorder] | None = None,
               experiment_name: str | None = None, stop_when_empty: bool = True) -> None:
        """Fit every ``part_done`` task of the pool in this process (Qlib's ``worker``)."""
        name, pool = self._names(experiment_name)
        run_workers(self.pool_url, pool, name, self.manager.uri, lease_seconds=self.lease_seconds,
             stop_when_empty=stop_when_empty, artifact_root=self.manager.artifact_root,
             train_func=end_train_func or self.end_train_func, before_status=PART_DONE,
             home=self.manager.home)

