"""Trainers: turn a list of tasks into MLflow runs (Qlib's ``Trainer`` family).

``TrainerR`` trains in this process, in order (optionally each task in a fresh process). A failing
task ends its run FAILED and is reported; the others still train, and :class:`TrainingError` at
the end lists the failures and carries every run that finished. Tasks whose hash already has a
FINISHED run in the experiment are not trained again (``skip_finished``).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from qroll.config import task_hash
from qroll.errors import TrainingError
from qroll.record import ExpManager, Recorder
from qroll.record.tags import STATUS_BEGIN, STATUS_END, STATUS_KEY, TAG_HASH
from qroll.train.task import begin_task_train, end_task_train, task_train

__all__ = ["DelayTrainerR", "TaskOutcome", "Trainer", "TrainerR", "TrainProgress"]

log = logging.getLogger("qroll.train")
DEFAULT_EXPERIMENT = "Experiment"


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
    """Base trainer: ``train`` then ``end_train``; calling the trainer does both."""

    delay = False

    def train(self, tasks: Any, *args: Any, **kwargs: Any) -> list[Any]:
        """Train ``tasks``; return their runs."""
        raise NotImplementedError(f"{type(self).__name__} must implement train()")

    def end_train(self, models: Any, *args: Any, **kwargs: Any) -> Any:
        """Finish the runs ``train`` returned (nothing to do unless delayed)."""
        return models

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

    def _finished_by_hash(self, experiment_name: str) -> dict[str, Recorder]:
        exp = self.manager.get_exp(experiment_name)
        done: dict[str, Recorder] = {}
        for rec in exp.list_recorders(status={Recorder.STATUS_FI}):  # newest first: keep the newest
            key = rec.tags.get(TAG_HASH)
            if key and key not in done:
                done[key] = rec
        return done

    def train(
        self,
        tasks: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        train_func: Callable[..., Recorder] | None = None,
        experiment_name: str | None = None,
        **kwargs: Any,
    ) -> list[Recorder]:
        """Train every task; return their runs in input order, each tagged ``train_status``.

        Raises
        ------
        TrainingError
            After all tasks ran (or at the first failure with ``stop_on_error``), if any failed; its
            ``recorders`` holds the runs in input order (``None`` for the failed ones).
        """
        task_list = [tasks] if isinstance(tasks, Mapping) else list(tasks)
        if not task_list:
            return []
        func = train_func or self.train_func
        name = experiment_name or self.experiment_name or DEFAULT_EXPERIMENT
        done = self._finished_by_hash(name) if self.skip_finished else {}
        recorders: list[Recorder | None] = []
        failures: list[tuple[int, str]] = []
        for i, task in enumerate(task_list):
            t0 = time.perf_counter()
            known = done.get(task_hash(task)) if done else None
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

    def _train_one(
        self, func: Callable[..., Recorder], task: Mapping[str, Any], name: str, kwargs: dict[str, Any]
    ) -> Recorder:
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
        rec.set_tags(**{STATUS_KEY: STATUS_BEGIN})
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

    def end_train(self, models: Recorder | Sequence[Recorder], *args: Any, **kwargs: Any) -> list[Recorder]:
        """Tag every run ``train_status=end_task_train``."""
        recs = [models] if isinstance(models, Recorder) else list(models)
        for rec in recs:
            rec.set_tags(**{STATUS_KEY: STATUS_END})
        return recs


class DelayTrainerR(TrainerR):
    """``train`` only records each task (:func:`begin_task_train`); ``end_train`` fits them.

    Runs already tagged ``end_task_train`` are skipped by ``end_train``; a run without the tag is
    treated as not yet fitted (Qlib raises ``KeyError``).
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
        **kwargs: Any,
    ) -> list[Recorder]:
        """Fit every recorded task not yet fitted, in its own run; tag it ``end_task_train``."""
        recs = [models] if isinstance(models, Recorder) else list(models)
        func = end_train_func or self.end_train_func
        name = experiment_name or self.experiment_name or DEFAULT_EXPERIMENT
        out = []
        for rec in recs:
            if rec.tags.get(STATUS_KEY) != STATUS_END:
                rec = func(rec, name, exp_manager=self.manager, **kwargs)
                rec.set_tags(**{STATUS_KEY: STATUS_END})
            out.append(rec)
        return out
