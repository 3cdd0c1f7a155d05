"""What a pool worker runs for a task: train it, and store the run as JSON, never as a pickle.

A pool result is ``{"recorder_id": ..., "experiment": ..., "tracking_uri": ...}``: enough for any
process to find the run again (:func:`result_recorder`). The functions here are module-level so
spawned worker processes can import them by name; the tracking store, the experiment, the qroll
home, the market data and the store wait travel as keyword arguments, never through the
environment. Each process opens a store once (:meth:`ExpManager.shared <qroll.record.ExpManager.shared>`).

A tracking store that goes away while a task trains (a tracking server stopped, a PostgreSQL
backend restarted) does not fail the task: the entry points wait for the store, with growing
pauses, for at most ``store_wait`` seconds (see :func:`qroll.home.store_wait`: default
``$QROLL_STORE_WAIT`` or 60). If it answers again, the runs the outage left RUNNING or FAILED under
this lease are ended KILLED (tagged ``qroll.ended_by``) and the task is trained again; a run the
store had already FINISHED is reused. If not, :class:`~qroll.errors.TaskDeferredError` gives the
task back to the pool unrun, no attempt used, and the worker stops. Either way no half-recorded
run is ever stored as a task's result.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pandas as pd

from qroll.config import task_hash
from qroll.errors import RecordError, TaskConfigError, TaskDeferredError, TrackingError
from qroll.home import STORE_WAIT_ENV
from qroll.home import store_wait as store_wait_bound
from qroll.messages import mask_credentials
from qroll.pool.polling import Poll
from qroll.pool.run import PoolLease, takes_keyword
from qroll.record import ExpManager, Recorder
from qroll.record.store import driver_uri, probe_store
from qroll.record.tags import TAG_ENDED_BY, TAG_POOL, TAG_POOL_ID, TAG_POOL_LEASE
from qroll.tasks import shape
from qroll.train.task import begin_task_train, end_task_train, task_train
from qroll.train.trainer import PHASE_BEGIN, PHASE_END, TAG_PHASE, finished_runs

__all__ = [
    "begin_task_train_entry",
    "end_orphaned_runs",
    "end_outage_runs",
    "end_task_train_entry",
    "recorder_result",
    "result_recorder",
    "task_train_entry",
]

log = logging.getLogger("qroll.train")

_FIRST_PAUSE_S, _MAX_PAUSE_S = 0.5, 8.0  # pauses between looks at a store that is down, doubling

T = TypeVar("T")


def recorder_result(rec: Recorder, experiment: str) -> dict[str, str]:
    """The JSON a pool stores for a run (the tracking URI unmasked: workers need it; never print it)."""
    return {"recorder_id": rec.id, "experiment": experiment, "tracking_uri": rec.manager.uri}


def result_recorder(res: Any, exp_manager: ExpManager | None = None) -> Recorder:
    """The :class:`Recorder` a pool result names.

    Parameters
    ----------
    res : dict
        ``{"recorder_id", "experiment", "tracking_uri"}`` as :func:`recorder_result` writes it.
    exp_manager : ExpManager, optional
        Used when its URI is the result's; otherwise the result's store is opened.

    Raises
    ------
    RecordError
        ``res`` is not such a dict, or the run is gone from its experiment.
    """
    if not isinstance(res, Mapping) or not {"recorder_id", "experiment"} <= set(res):
        raise RecordError(f"a pool result must be a dict with 'recorder_id' and 'experiment', got "
                          f"{str(res)[:80]!r}; was the task run by an older or foreign worker?")
    uri = res.get("tracking_uri")
    if exp_manager is not None and (uri is None or uri == exp_manager.uri):
        manager = exp_manager
    else:
        manager = ExpManager.shared(uri, exp_manager.artifact_root if exp_manager is not None else None,
                                    home=exp_manager.home if exp_manager is not None else None)
    return manager.get_exp(str(res["experiment"])).get_recorder(str(res["recorder_id"]))


def _finished_run(manager: ExpManager, experiment: str, task: Mapping[str, Any]) -> Recorder | None:
    # A worker killed after its run FINISHED but before its commit leaves that run behind; the
    # retry reuses it (as TrainerR skips finished tasks) rather than training a second one. The
    # lookup is TrainerR's: a delay trainer's phase-1 run, FINISHED with no model, is never reused.
    key = task_hash(task)
    return finished_runs(manager, experiment, [key]).get(key)


def lease_tags(lease: PoolLease) -> dict[str, str]:
    """The tags of a run trained under ``lease``: pool, task id and lease owner."""
    return {TAG_POOL: lease.pool, TAG_POOL_ID: str(lease.task_id), TAG_POOL_LEASE: lease.owner}


def end_orphaned_runs(manager: ExpManager, experiment: str, lease: PoolLease) -> list[Recorder]:
    """End as KILLED the RUNNING runs of this pool task that were started under another lease.

    Only the holder of a task's lease trains it, and ``lease`` is that holder's. A RUNNING run of
    the same pool task under any other lease belongs to a worker that lost its lease (killed, out
    of memory, cut off): it would stay RUNNING in MLflow for ever, and its worker, if still alive,
    can no longer commit it (fencing). Each run ended gets the tag ``qroll.ended_by`` saying why.

    Returns
    -------
    list of Recorder
        The runs ended.
    """
    exp = manager.get_exp(experiment)
    running = exp.list_recorders(status={Recorder.STATUS_R},
                                 tags={TAG_POOL: lease.pool, TAG_POOL_ID: str(lease.task_id)})
    ended = []
    for rec in running:
        old = rec.tags.get(TAG_POOL_LEASE)
        if old == lease.owner:
            continue
        rec.set_tags(**{TAG_ENDED_BY: f"{lease.owner}: the run's pool lease {old} was lost (its "
                                      "worker stopped renewing it) and the task was run again"})
        rec.end(Recorder.STATUS_K)
        ended.append(rec)
    if ended:
        log.warning("ended %d run(s) of task %s of pool %r left RUNNING by lost leases: %s", len(ended),
                    lease.task_id, lease.pool, ", ".join(r.id for r in ended))
    return ended


def _train_kwargs(train_func: Callable[..., Any], lease: PoolLease | None,
                  phase: Mapping[str, str] | None = None, data: str | None = None,
                  as_of: Any = None) -> dict[str, Any]:
    # A custom train_func without a tags (or data) parameter still works; its runs just cannot
    # be cleaned (and its phase is tagged once it returns), and its handlers find their own data.
    tags = {**(lease_tags(lease) if lease is not None else {}), **(phase or {})}
    kwargs: dict[str, Any] = {}
    if tags and takes_keyword(train_func, "tags"):
        kwargs["tags"] = tags
    if data is not None and takes_keyword(train_func, "data"):
        kwargs["data"] = data
    if as_of is not None:
        if not takes_keyword(train_func, "as_of"):
            log.warning("%s takes no as_of: the task is trained on the data as it is, not as of %s",
                        getattr(train_func, "__qualname__", train_func), as_of)
        else:
            kwargs["as_of"] = as_of
    return kwargs


def _task_day(task: Mapping[str, Any], given: Any) -> tuple[Mapping[str, Any], Any]:
    """The task without its ``qroll.as_of``, and the day to train it as of (the task's, else ``given``).

    Read before anything is recorded, so a malformed day fails the task (an attempt of it), never
    the worker, and leaves no run behind.

    Raises
    ------
    TaskConfigError
        The task's ``qroll.as_of`` is not a day, or it differs from the ``as_of`` the worker was given.
    """
    day = shape.task_as_of(task)
    if day is None:
        return task, given
    if given is not None and pd.Timestamp(given) != day:
        raise TaskConfigError(f"the task's {shape.AS_OF_PARAM} is {shape.format_day(day)} but the worker was "
                              f"given as_of={shape.format_day(given)}: start the worker without as_of (the "
                              "task's own day is used)")
    return shape.without_as_of(task), day


# -- a tracking store that goes away -------------------------------------------------------------


def _store_down(uri: str) -> TrackingError | None:
    """The probe's error when the store does not answer now; None when it does."""
    shown = mask_credentials(uri)
    try:
        probe_store(driver_uri(uri, shown), shown)
    except TrackingError as exc:
        return exc
    return None


def _wait_for_store(uri: str, deadline: float) -> TrackingError | None:
    """Look at the store with doubling pauses until it answers (None) or ``deadline`` passes."""
    last: list[TrackingError | None] = [None]

    def look() -> bool | None:
        last[0] = _store_down(uri)
        return True if last[0] is None else None

    Poll(pause=_FIRST_PAUSE_S, timeout=max(deadline - time.monotonic(), 0.0), backoff=2,
         max_pause=_MAX_PAUSE_S, clip=True).until(look)
    return last[0]


def end_outage_runs(manager: ExpManager, experiment: str, lease: PoolLease) -> list[Recorder]:
    """End as KILLED the runs of this lease that a store outage left RUNNING or FAILED.

    Such a run may miss any of its records (the store went away while they were written); it is
    ended so that nothing reads it as a result, and tagged ``qroll.ended_by`` saying why. A run
    the store FINISHED is complete and left alone (:func:`task_train_entry` reuses it).

    Returns
    -------
    list of Recorder
        The runs ended.
    """
    exp = manager.get_exp(experiment)
    found = exp.list_recorders(status={Recorder.STATUS_R, Recorder.STATUS_FA}, tags=lease_tags(lease))
    for rec in found:
        rec.set_tags(**{TAG_ENDED_BY: f"{lease.owner}: the tracking store went away while this run "
                                      "was recorded; the task was run again"})
        rec.end(Recorder.STATUS_K)
    if found:
        log.warning("ended %d run(s) of task %s of pool %r left by a tracking store outage: %s", len(found),
                    lease.task_id, lease.pool, ", ".join(r.id for r in found))
    return found


def _through_outages(attempt: Callable[[ExpManager], T], *, tracking: str | None, artifact_root: str | None,
                     home: str | os.PathLike[str] | None, wait: float | None, lease: PoolLease | None,
                     after_outage: Callable[[ExpManager], Any] | None = None) -> T:
    """``attempt(manager)``, again after each outage of the store, within the wait's bound.

    An exception is an outage when the store does not answer a probe just after it; any other
    is the task's own and propagates (the pool counts an attempt). ``after_outage`` cleans up
    once the store is back, before the next try.
    """
    bound = store_wait_bound(wait)
    deadline: float | None = None
    while True:
        try:
            manager = ExpManager.shared(tracking, artifact_root, home=home)
            if deadline is not None and after_outage is not None:
                after_outage(manager)
            return attempt(manager)
        except TaskDeferredError:
            raise
        except Exception as exc:
            if tracking is None or _store_down(tracking) is None:
                raise  # the store answers (or is the home's SQLite file): the failure is the task's own
            shown = mask_credentials(tracking)
            if deadline is None:
                deadline = time.monotonic() + bound
            log.warning("tracking store %s went away (%s); waiting up to %.0f s for it", shown,
                        type(exc).__name__, max(deadline - time.monotonic(), 0.0))
            down = _wait_for_store(tracking, deadline)
            if down is not None:
                where = f"task {lease.task_id} of pool {lease.pool!r}" if lease else "the task"
                raise TaskDeferredError(
                    f"tracking store {shown} did not answer for {bound:.0f} s ({down}); {where} "
                    "goes back to the pool unrun; start the store (or fix the address) and the "
                    f"workers again (--store-wait or ${STORE_WAIT_ENV} sets the wait)"
                ) from exc
            log.warning("tracking store %s answers again: running the task again", shown)


# -- entry points --------------------------------------------------------------------------------


def task_train_entry(task: Mapping[str, Any], *, experiment: str, tracking: str | None = None,
                     artifact_root: str | None = None, recorder_name: str | None = None,
                     train_func: Callable[..., Recorder] = task_train,
                     reuse_finished: bool = True,
                     pool_lease: PoolLease | None = None,
                     store_wait: float | None = None,
                     home: str | os.PathLike[str] | None = None,
                     data: str | None = None,
                     as_of: Any = None) -> dict[str, str]:
    """Train one pool task with ``train_func`` and return its run as a pool result (JSON).

    Parameters
    ----------
    task : dict
        The task definition as the pool stores it (JSON values).
    experiment : str
        The MLflow experiment name.
    tracking, artifact_root : str, optional
        The tracking store (default: the qroll home's) and its artifact root.
    recorder_name : str, optional
        The run name.
    train_func : callable, default task_train
        ``train_func(task, experiment, recorder_name=..., exp_manager=...) -> Recorder``;
        module-level, so that spawned workers can import it.
    reuse_finished : bool, default True
        Return the FINISHED run of an identical task (same hash) instead of training again.
    pool_lease : PoolLease, optional
        Given by ``run_task``: first end the runs of this task that lost leases left RUNNING
        (:func:`end_orphaned_runs`), then tag the new run with the lease (when ``train_func``
        takes ``tags``).
    store_wait : float, optional
        Seconds to wait for a tracking store that went away (see the module docstring); default
        :func:`qroll.home.store_wait`'s.
    home : path, optional
        The qroll home: the default store's and the feature cache's (the manager ``train_func``
        gets carries it); default :func:`qroll.home.qroll_home`'s.
    data : str, optional
        The market data of a handler that names none, given to a ``train_func`` that takes
        ``data`` (as :func:`~qroll.train.task_train` does); the task itself is left as it is.
    as_of : date, optional
        Train on the data as it stood on that day (``train_func``'s ``as_of``, see
        :func:`~qroll.train.task_train`); the task itself is left as it is. A task that carries
        its own day (``qroll.as_of``, as :class:`~qroll.train.TrainerRM` submits it) is trained as of
        that day, and without that key: its run, ``task`` artifact, hash and window key are those of
        the same task trained by :class:`~qroll.train.TrainerR` with ``as_of``.

    Returns
    -------
    dict
        ``{"recorder_id", "experiment", "tracking_uri"}``.

    Raises
    ------
    TaskDeferredError
        The tracking store stayed away for ``store_wait`` seconds: the task goes back to the pool.
    TaskConfigError
        The task's ``qroll.as_of`` is not a day (or is not ``as_of``): nothing is recorded.
    """
    bare, day = _task_day(task, as_of)

    def attempt(manager: ExpManager) -> dict[str, str]:
        if pool_lease is not None:
            end_orphaned_runs(manager, experiment, pool_lease)
        # The same window's FINISHED run is reused whatever day trained it (as TrainerR skips it).
        rec = _finished_run(manager, experiment, bare) if reuse_finished else None
        if rec is None:
            rec = train_func(bare, experiment, recorder_name=recorder_name, exp_manager=manager,
                             **_train_kwargs(train_func, pool_lease, data=data, as_of=day))
        return recorder_result(rec, experiment)

    return _through_outages(attempt, tracking=tracking, artifact_root=artifact_root, home=home,
                            wait=store_wait, lease=pool_lease,
                            after_outage=_outage_cleanup(experiment, pool_lease))


def _outage_cleanup(experiment: str, lease: PoolLease | None) -> Callable[[ExpManager], Any] | None:
    if lease is None:
        return None
    return lambda manager: end_outage_runs(manager, experiment, lease)


def begin_task_train_entry(task: Mapping[str, Any], *, experiment: str, tracking: str | None = None,
                           artifact_root: str | None = None, recorder_name: str | None = None,
                           train_func: Callable[..., Recorder] = begin_task_train,
                           pool_lease: PoolLease | None = None,
                           store_wait: float | None = None,
                           home: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Phase 1 of a delay pool trainer: record the task (:func:`begin_task_train`); its result.

    ``pool_lease``, ``store_wait`` and ``home`` as for :func:`task_train_entry`. The task is recorded
    without its ``qroll.as_of``; the day goes on in the result (``"as_of"``), where phase 2
    (:func:`end_task_train_entry`), in any worker, finds it.

    Raises
    ------
    TaskConfigError
        The task's ``qroll.as_of`` is not a day: nothing is recorded.
    """
    bare, day = _task_day(task, None)

    def attempt(manager: ExpManager) -> dict[str, str]:
        if pool_lease is not None:
            end_orphaned_runs(manager, experiment, pool_lease)
        phase = {TAG_PHASE: PHASE_BEGIN}  # from the run's start where train_func takes tags
        rec = train_func(bare, experiment, recorder_name=recorder_name, exp_manager=manager,
                         **_train_kwargs(train_func, pool_lease, phase))
        rec.set_tags(**phase)
        res = recorder_result(rec, experiment)
        return res if day is None else {**res, "as_of": shape.format_day(day)}

    return _through_outages(attempt, tracking=tracking, artifact_root=artifact_root, home=home,
                            wait=store_wait, lease=pool_lease,
                            after_outage=_outage_cleanup(experiment, pool_lease))


def end_task_train_entry(res: Mapping[str, Any], *, experiment: str, tracking: str | None = None,
                         artifact_root: str | None = None,
                         train_func: Callable[..., Recorder] = end_task_train,
                         pool_lease: PoolLease | None = None,
                         store_wait: float | None = None,
                         home: str | os.PathLike[str] | None = None,
                         data: str | None = None,
                         as_of: Any = None) -> dict[str, str]:
    """Phase 2: fit the run phase 1 recorded (``res`` is its pool result); the result again.

    After an outage of the store the same run is resumed and fitted again: it is the run the
    pool's result names, so it is never ended as an outage's leftover. ``store_wait``, ``home``,
    ``data`` and ``as_of`` as for :func:`task_train_entry`; the day phase 1 put in ``res``
    (``"as_of"``, from the task's ``qroll.as_of``) is the one used.

    Raises
    ------
    TaskConfigError
        ``res`` holds an ``as_of`` that is not a day, or that is not ``as_of``: nothing is fitted.
    """
    given = res.get("as_of") if isinstance(res, Mapping) else None
    _, day = _task_day({shape.META_KEY: {"as_of": given}} if given is not None else {}, as_of)

    def attempt(manager: ExpManager) -> dict[str, str]:
        rec = result_recorder(res, manager)
        done = train_func(rec, experiment, exp_manager=rec.manager,
                          **_train_kwargs(train_func, None, data=data, as_of=day))
        done.set_tags(**{TAG_PHASE: PHASE_END})
        return recorder_result(done, experiment)

    return _through_outages(attempt, tracking=tracking, artifact_root=artifact_root, home=home,
                            wait=store_wait, lease=pool_lease)
