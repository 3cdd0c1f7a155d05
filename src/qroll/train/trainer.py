"""Trainers: turn a list of tasks into MLflow runs (Qlib's ``Trainer`` family).

``TrainerR`` trains in this process, in order (optionally each task in a fresh process). A failing
task ends its run FAILED and is reported; the others still train, and :class:`TrainingError` at
the end lists the failures and carries every run that finished. Tasks whose hash already has a
FINISHED run in the experiment are not trained again (``skip_finished``).

:func:`finished_runs` is the one lookup of "the finished run for this task hash", for these
trainers and for the pool's entry points (:mod:`qroll.train.pool_entry`). A delay trainer's
first phase leaves a FINISHED run that holds the task and no model (tagged
``qroll.delay_phase=begin``): only a delay trainer takes such a run up, to fit it.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from qroll.config import task_hash
from qroll.errors import TrainingError
from qroll.pool.run import takes_keyword
from qroll.record import ExpManager, Recorder
from qroll.record.tags import STATUS_BEGIN, STATUS_END, STATUS_KEY, TAG_HASH
from qroll.train.task import begin_task_train, end_task_train, task_train

__all__ = [
    "PHASE_BEGIN",
    "PHASE_END",
    "TAG_PHASE",
    "DelayTrainerR",
    "TaskOutcome",
    "Trainer",
    "TrainerR",
    "TrainProgress",
    "finished_runs",
]

log = logging.getLogger("qroll.train")
DEFAULT_EXPERIMENT = "Experiment"

#: Tags a delay trainer's runs, in process or through the pool: ``begin`` once the task is
#: recorded (a FINISHED run with no model yet), ``end`` once it is fitted.
TAG_PHASE = "qroll.delay_phase"
PHASE_BEGIN, PHASE_END = "begin", "end"


def finished_runs(manager: ExpManager, experiment: str, task_hashes: Iterable[str] | None = None, *,
                  first_phase: bool = False) -> dict[str, Recorder]:
    """The newest FINISHED run of each task hash in ``experiment``: tasks that need no training.

    Parameters
    ----------
    manager : ExpManager
        The tracking store.
    experiment : str
        The experiment (created when missing, as training would).
    task_hashes : iterable of str, optional
        The :func:`~qroll.config.task_hash` values to look up; ``None``: every hash the
        experiment holds. A single hash is looked up with a tag filter in the store (a pool
        worker's retry); more list the experiment's FINISHED runs once.
    first_phase : bool, default False
        Also take a delay trainer's first-phase runs (tagged ``qroll.delay_phase=begin``: the
        task recorded, nothing fitted). Only a delay trainer, whose ``end_train`` fits them,
        asks for them; anything else would return a run without a model as if trained.

    Returns
    -------
    dict
        Task hash -> its newest such run; hashes without one are absent.
    """
    wanted = None if task_hashes is None else set(task_hashes)
    if wanted is not None and not wanted:
        return {}
    tags = {TAG_HASH: next(iter(wanted))} if wanted is not None and len(wanted) == 1 else None
    done: dict[str, Recorder] = {}
    # Newest first: the first usable run of a hash is the one kept.
    for rec in manager.get_exp(experiment).list_recorders(status={Recorder.STATUS_FI}, tags=tags):
        key = rec.tags.get(TAG_HASH)
        if not key or key in done or (wanted is not None and key not in wanted):
            continue
        if first_phase or rec.tags.get(TAG_PHASE) != PHASE_BEGIN:
            done[key] = rec
    return done


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskOutcome:
    """What happened to one task: ``"trained"``, ``"skipped"`` (already finished) or ``"failed"``."""

    index: int
    total: int
    status: str
    task: Mapping[str, Any]
    recorder: Recorder | None
    seconds: float
    error: str | None = None


class TrainProgress(Protocol):
    """Called after each task, e.g. to advance a progress bar."""

    def __call__(self, outcome: TaskOutcome, /) -> None: ...


class Trainer:
    """Base trainer: ``train`` then ``end_train``; calling the trainer does both.

    Subclasses implement :meth:`train`; :meth:`end_train` here tags the runs as ended (Qlib's
    ``TrainerR`` and ``TrainerRM`` do the same), and delay trainers override it to fit them.
    """

    delay = False

    def train(self, tasks: Any, *args: Any, **kwargs: Any) -> list[Any]:
        """Train ``tasks``; return their runs."""
        raise NotImplementedError(f"{type(self).__name__} must implement train()")

    def end_train(self, models: Any, *args: Any, **kwargs: Any) -> list[Any]:
        """Tag every run (:class:`Recorder`) ``train_status=end_task_train``; the runs as a list.

        ``models`` is one run or a sequence of them; anything other than a run is passed through.
        """
        recs = self._recorder_list(models)
        for rec in recs:
            if isinstance(rec, Recorder):
                rec.set_tags(**{STATUS_KEY: STATUS_END})
        return recs

    @staticmethod
    def _task_list(tasks: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """One task (a dict) or a sequence of them, as a list."""
        return [tasks] if isinstance(tasks, Mapping) else list(tasks)

    @staticmethod
    def _recorder_list(models: Any) -> list[Any]:
        """One run or a sequence of them, as a list."""
        return [models] if isinstance(models, Recorder) else list(models)

    def is_delay(self) -> bool:
        """Whether training is split into ``train`` (record) and ``end_train`` (fit)."""
        return self.delay

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.end_train(self.train(*args, **kwargs))

    def has_worker(self) -> bool:
        """Whether :meth:`worker` can run tasks submitted elsewhere."""
        return False

    def worker(self) -> None:
        """Run tasks from a pool (only pool trainers have workers)."""
        raise NotImplementedError(f"{type(self).__name__} has no worker")


def _with_as_of(func: Callable[..., Any], kwargs: dict[str, Any], as_of: Any) -> dict[str, Any]:
    """``kwargs`` with ``as_of`` for ``func``; a function that cannot take it trains on all the data."""
    if as_of is None:
        return kwargs
    if takes_keyword(func, "as_of"):
        return {**kwargs, "as_of": as_of}
    log.warning("%s takes no as_of: its tasks are trained on the data as it is, not as of %s",
                getattr(func, "__qualname__", func), as_of)
    return kwargs


def _train_in_subprocess(
    train_func: Callable[..., Recorder],
    task: Mapping[str, Any],
    experiment_name: str,
    recorder_name: str | None,
    uri: str,
    kwargs: dict[str, Any],
) -> str:
    rec = train_func(
        task, experiment_name, recorder_name=recorder_name, exp_manager=ExpManager(uri), **kwargs
    )
    return rec.id


class TrainerR(Trainer):
    """Train tasks one after another in this process; return their runs in input order.

    Parameters
    ----------
    experiment_name : str, optional
        Default experiment (``"Experiment"`` when none is given anywhere).
    train_func : callable, default task_train
        ``train_func(task, experiment_name, recorder_name=..., exp_manager=..., **kwargs) -> Recorder``.
    call_in_subproc : bool, default False
        Train each task in a fresh process (spawned, so any platform), which returns all its
        memory to the system when the task ends.
    default_rec_name : str, optional
        Run name for every task.
    exp_manager : ExpManager, optional
        The tracking store (default: ``ExpManager()``, the qroll home's SQLite store).
    skip_finished : bool, default True
        Reuse the FINISHED run of a task whose hash is already in the experiment.
    stop_on_error : bool, default False
        Stop at the first failing task instead of training the rest.
    progress : callable, optional
        Called with a :class:`TaskOutcome` after each task.
    """

    STATUS_KEY, STATUS_BEGIN, STATUS_END = STATUS_KEY, STATUS_BEGIN, STATUS_END

    def __init__(
        self,
        experiment_name: str | None = None,
        train_func: Callable[..., Recorder] = task_train,
        call_in_subproc: bool = False,
        default_rec_name: str | None = None,
        exp_manager: ExpManager | None = None,
        skip_finished: bool = True,
        stop_on_error: bool = False,
        progress: TrainProgress | None = None,
    ) -> None:
        self.experiment_name = experiment_name
        self.train_func = train_func
        self.call_in_subproc = call_in_subproc
        self.default_rec_name = default_rec_name
        self.exp_manager = exp_manager
        self.skip_finished = skip_finished
        self.stop_on_error = stop_on_error
        self.progress = progress

    @property
    def manager(self) -> ExpManager:
        """The tracking store (built on first use)."""
        if self.exp_manager is None:
            self.exp_manager = ExpManager()
        return self.exp_manager

    def train(
        self,
        tasks: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        train_func: Callable[..., Recorder] | None = None,
        experiment_name: str | None = None,
        *,
        as_of: Any = None,
        **kwargs: Any,
    ) -> list[Recorder]:
        """Train every task; return their runs in input order, each tagged ``train_status``.

        Parameters
        ----------
        tasks : dict or list of dict
            The tasks.
        train_func : callable, optional
            Instead of the trainer's.
        experiment_name : str, optional
            Instead of the trainer's.
        as_of : date, optional
            Train on the data as it stood on that day (``train_func``'s ``as_of``, see
            :func:`~qroll.train.task_train`): what :class:`~qroll.online.OnlineManager` passes, so
            that a window trained on day d sees nothing after it. The tasks and their hashes are
            unchanged. A delay trainer uses it in :meth:`~DelayTrainerR.end_train`, which fits.
        **kwargs
            Passed to ``train_func``.

        Raises
        ------
        TrainingError
            After all tasks ran (or at the first failure with ``stop_on_error``), if any failed; its
            ``recorders`` holds the runs in input order (``None`` for the failed ones).
        """
        task_list = self._task_list(tasks)
        if not task_list:
            return []
        func = train_func or self.train_func
        name = experiment_name or self.experiment_name or DEFAULT_EXPERIMENT
        if not self.is_delay():  # a delay trainer's first phase fits nothing: its end_train takes the day
            kwargs = _with_as_of(func, kwargs, as_of)
        hashes = [task_hash(task) for task in task_list] if self.skip_finished else []
        # A delay trainer takes its own first-phase runs up again (its end_train fits them).
        done = finished_runs(self.manager, name, hashes, first_phase=self.is_delay()) if hashes else {}
        recorders: list[Recorder | None] = []
        failures: list[tuple[int, str]] = []
        for i, task in enumerate(task_list):
            t0 = time.perf_counter()
            known = done.get(hashes[i]) if done else None
            if known is not None:
                recorders.append(known)
                self._report(i, task_list, "skipped", known, t0)
                continue
            try:
                rec = self._train_one(func, task, name, kwargs)
            except Exception as exc:  # one failing window must not lose the others
                message = f"{type(exc).__name__}: {exc}"
                failures.append((i, message))
                recorders.append(None)
                log.error("task %d/%d failed: %s\n%s", i + 1, len(task_list), message, traceback.format_exc())
                self._report(i, task_list, "failed", None, t0, message)
                if self.stop_on_error:
                    break
                continue
            recorders.append(rec)
            self._report(i, task_list, "trained", rec, t0)
        if failures:
            raise TrainingError(failures=failures, recorders=recorders, total=len(task_list))
        return [r for r in recorders if r is not None]

    def _phase_tags(self) -> dict[str, str]:
        # A delay trainer's runs say they are not fitted yet, so no lookup takes them for trained.
        return {TAG_PHASE: PHASE_BEGIN} if self.is_delay() else {}

    def _train_one(
        self, func: Callable[..., Recorder], task: Mapping[str, Any], name: str, kwargs: dict[str, Any]
    ) -> Recorder:
        phase = self._phase_tags()
        if phase and takes_keyword(func, "tags"):
            # Tagged from its start: a process killed before the run is tagged below leaves no
            # untagged first-phase run behind.
            kwargs = {**kwargs, "tags": {**(kwargs.get("tags") or {}), **phase}}
        if self.call_in_subproc:
            # One worker process per task, spawned: nothing of the parent leaks in, any platform.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(1, mp_context=context) as pool:
                rid = pool.submit(
                    _train_in_subprocess, func, task, name, self.default_rec_name, self.manager.uri, kwargs
                ).result()
            rec = self.manager.get_exp(name).get_recorder(rid)
        else:
            rec = func(task, name, recorder_name=self.default_rec_name, exp_manager=self.manager, **kwargs)
        rec.set_tags(**{STATUS_KEY: STATUS_BEGIN, **phase})
        return rec

    def _report(
        self,
        index: int,
        tasks: Sequence[Mapping[str, Any]],
        status: str,
        rec: Recorder | None,
        t0: float,
        error: str | None = None,
    ) -> None:
        if self.progress is not None:
            seconds = 0.0 if status == "skipped" else time.perf_counter() - t0
            self.progress(TaskOutcome(index=index, total=len(tasks), status=status, task=tasks[index],
                                      recorder=rec, seconds=seconds, error=error))


class DelayTrainerR(TrainerR):
    """``train`` only records each task (:func:`begin_task_train`); ``end_train`` fits them.

    ``train``'s runs are tagged ``qroll.delay_phase=begin`` (``end`` once fitted), so no other
    trainer takes them for trained ones; with ``skip_finished`` a delay trainer takes up a task's
    recorded run again instead of recording a second one. Runs already tagged ``end_task_train``
    are skipped by ``end_train``; a run without the tag is treated as not yet fitted (Qlib raises
    ``KeyError``).
    """

    delay = True

    def __init__(
        self,
        experiment_name: str | None = None,
        train_func: Callable[..., Recorder] = begin_task_train,
        end_train_func: Callable[..., Recorder] = end_task_train,
        **kwargs: Any,
    ) -> None:
        super().__init__(experiment_name, train_func, **kwargs)
        self.end_train_func = end_train_func

    def end_train(
        self,
        models: Recorder | Sequence[Recorder],
        end_train_func: Callable[..., Recorder] | None = None,
        experiment_name: str | None = None,
        *,
        as_of: Any = None,
        **kwargs: Any,
    ) -> list[Recorder]:
        """Fit every recorded task not yet fitted, in its own run; tag it ``end_task_train``.

        ``as_of`` fits on the data as it stood on that day (see :meth:`TrainerR.train`).
        """
        recs = self._recorder_list(models)
        func = end_train_func or self.end_train_func
        name = experiment_name or self.experiment_name or DEFAULT_EXPERIMENT
        kwargs = _with_as_of(func, kwargs, as_of)
        out = []
        for rec in recs:
            if rec.tags.get(STATUS_KEY) != STATUS_END:
                rec = func(rec, name, exp_manager=self.manager, **kwargs)
                rec.set_tags(**{STATUS_KEY: STATUS_END, TAG_PHASE: PHASE_END})
            out.append(rec)
        return out
