"""What a pool worker runs for a task: train it, and store the run as JSON, never as a pickle.

A pool result is ``{"recorder_id": ..., "experiment": ..., "tracking_uri": ...}``: enough for any
process to find the run again (:func:`result_recorder`). The functions here are module-level so
spawned worker processes can import them by name; the tracking store and the experiment travel as
keyword arguments.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from qroll.config import task_hash
from qroll.errors import RecordError
from qroll.pool.run import PoolLease, takes_keyword
from qroll.record import ExpManager, Recorder
from qroll.record.tags import TAG_ENDED_BY, TAG_HASH, TAG_POOL, TAG_POOL_ID, TAG_POOL_LEASE
from qroll.train.task import begin_task_train, end_task_train, task_train

__all__ = [
    "begin_task_train_entry",
    "end_orphaned_runs",
    "end_task_train_entry",
    "manager_for",
    "recorder_result",
    "result_recorder",
    "task_train_entry",
]

log = logging.getLogger("qroll.train")

# Tags a delay pool trainer's runs: "begin" after phase 1 (task recorded, nothing fitted), "end".
TAG_PHASE = "qroll.delay_phase"
PHASE_BEGIN, PHASE_END = "begin", "end"

# One ExpManager per store and process: opening an MLflow store takes a second or more.
_MANAGERS: dict[tuple[str | None, str | None], ExpManager] = {}


def manager_for(tracking: str | None, artifact_root: str | None = None) -> ExpManager:
    """The process's :class:`ExpManager` for ``tracking`` (``None``: the qroll home's store)."""
    key = (tracking, artifact_root)
    if key not in _MANAGERS:
        _MANAGERS[key] = ExpManager(tracking, artifact_root)
    return _MANAGERS[key]


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
        manager = manager_for(uri, exp_manager.artifact_root if exp_manager is not None else None)
    return manager.get_exp(str(res["experiment"])).get_recorder(str(res["recorder_id"]))


def _finished_run(manager: ExpManager, experiment: str, task: Mapping[str, Any]) -> Recorder | None:
    # A worker killed after its run FINISHED but before its commit leaves that run behind; the
    # retry reuses it (as TrainerR skips finished tasks) rather than training a second one.
    # A delay trainer's phase-1 run is FINISHED too but holds no model: never reuse it.
    found = manager.get_exp(experiment).list_recorders(status={Recorder.STATUS_FI},
                                                       tags={TAG_HASH: task_hash(task)}, max_results=20)
    return next((r for r in found if r.tags.get(TAG_PHASE) != PHASE_BEGIN), None)


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


def _train_kwargs(train_func: Callable[..., Any], lease: PoolLease | None) -> dict[str, Any]:
    # A custom train_func without a tags parameter still works; its runs just cannot be cleaned.
    if lease is None or not takes_keyword(train_func, "tags"):
        return {}
    return {"tags": lease_tags(lease)}


def task_train_entry(task: Mapping[str, Any], *, experiment: str, tracking: str | None = None,
                     artifact_root: str | None = None, recorder_name: str | None = None,
                     train_func: Callable[..., Recorder] = task_train,
                     reuse_finished: bool = True,
                     pool_lease: PoolLease | None = None) -> dict[str, str]:
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

    Returns
    -------
    dict
        ``{"recorder_id", "experiment", "tracking_uri"}``.
    """
    manager = manager_for(tracking, artifact_root)
    if pool_lease is not None:
        end_orphaned_runs(manager, experiment, pool_lease)
    rec = _finished_run(manager, experiment, task) if reuse_finished else None
    if rec is None:
        rec = train_func(task, experiment, recorder_name=recorder_name, exp_manager=manager,
                         **_train_kwargs(train_func, pool_lease))
    return recorder_result(rec, experiment)


def begin_task_train_entry(task: Mapping[str, Any], *, experiment: str, tracking: str | None = None,
                           artifact_root: str | None = None, recorder_name: str | None = None,
                           train_func: Callable[..., Recorder] = begin_task_train,
                           pool_lease: PoolLease | None = None) -> dict[str, str]:
    """Phase 1 of a delay pool trainer: record the task (:func:`begin_task_train`); its result.

    ``pool_lease`` as for :func:`task_train_entry`.
    """
    manager = manager_for(tracking, artifact_root)
    if pool_lease is not None:
        end_orphaned_runs(manager, experiment, pool_lease)
    rec = train_func(task, experiment, recorder_name=recorder_name, exp_manager=manager,
                     **_train_kwargs(train_func, pool_lease))
    rec.set_tags(**{TAG_PHASE: PHASE_BEGIN})
    return recorder_result(rec, experiment)


def end_task_train_entry(res: Mapping[str, Any], *, experiment: str, tracking: str | None = None,
                         artifact_root: str | None = None,
                         train_func: Callable[..., Recorder] = end_task_train) -> dict[str, str]:
    """Phase 2: fit the run phase 1 recorded (``res`` is its pool result); the result again."""
    manager = manager_for(tracking, artifact_root)
    rec = result_recorder(res, manager)
    done = train_func(rec, experiment, exp_manager=rec.manager)
    done.set_tags(**{TAG_PHASE: PHASE_END})
    return recorder_result(done, experiment)
