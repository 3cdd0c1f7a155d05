"""A whole rolling experiment from a run config: reset → generate → train → evaluate → report.

This is Qlib's ``RollingTaskExample`` flow, on explicit objects: a :class:`~qroll.run_config.RunConfig`,
an :class:`~qroll.record.recorder.ExpManager`, a trainer and a collector.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from qroll.analysis.signal import SignalFigures, calc_ic, ic_summary
from qroll.collect.merged import (
    MergedEvaluation,
    check_backtest,
    evaluate_merged,
    merge_windows,
    merged_runs,
    window_runs,
    windows_digest,
)
from qroll.data.source import open_source
from qroll.errors import CollectError
from qroll.record import Experiment, ExpManager, Recorder
from qroll.record.tags import (
    TAG_BENCHMARK,
    TAG_MERGED_END,
    TAG_MERGED_FROM,
    TAG_MERGED_START,
    TAG_MODEL,
    TAG_TEST_END,
    TAG_TEST_START,
)
from qroll.run_config import RunConfig
from qroll.tasks import shape
from qroll.tasks.gen import task_generator
from qroll.train.task import check_task
from qroll.train.trainer import TrainerR, TrainProgress

if TYPE_CHECKING:
    from qroll.train.pool_trainer import TrainerRM

__all__ = ["ExperimentReport", "MergedSignal", "RollingExperiment", "WindowResult", "experiment_report"]

log = logging.getLogger("qroll.experiment")


@dataclass(frozen=True, kw_only=True, slots=True)
class WindowResult:
    """One trained window: its model, test segment, run status and IC metrics."""

    model: str
    test_start: str
    test_end: str
    status: str
    run_id: str
    ic: float
    rank_ic: float


@dataclass(frozen=True, kw_only=True, slots=True)
class MergedSignal(SignalFigures):
    """One model's windows merged into one signal, evaluated over every test day (the figures of
    :class:`~qroll.analysis.signal.SignalFigures`, for ``model``, stored in run ``run_id``)."""

    model: str
    run_id: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class ExperimentReport:
    """Per-window results and the merged signals of an experiment."""

    experiment: str
    windows: list[WindowResult] = field(default_factory=list)
    merged: list[MergedSignal] = field(default_factory=list)


def _metric(rec: Recorder, name: str) -> float:
    value = rec.metrics.get(name)
    return float(value) if value is not None else math.nan


def experiment_report(exp: Experiment) -> ExperimentReport:
    """Per-window IC / Rank IC from the runs' metrics, and each model's merged signal.

    The merged figures are read from the merged runs :func:`~qroll.collect.merged.evaluate_merged`
    wrote (nothing is recomputed); a model without one has its windows' predictions merged here
    with :class:`RollingGroup` for its IC, ICIR, Rank IC and Rank ICIR (no portfolio figures).

    Raises
    ------
    CollectError
        If the experiment has no finished run.
    """
    recs = window_runs(exp)
    if not recs:
        raise CollectError(f"experiment {exp.name!r} has no finished run: train it first (qroll run)")
    windows = sorted(
        (
            WindowResult(
                model=r.tags.get(TAG_MODEL, "?"),
                test_start=r.tags.get(TAG_TEST_START, ""),
                test_end=r.tags.get(TAG_TEST_END, "") or "open",
                status=r.status,
                run_id=r.id,
                ic=_metric(r, "IC"),
                rank_ic=_metric(r, "Rank IC"),
            )
            for r in recs
        ),
        key=lambda w: (w.model, w.test_start),
    )
    by_model: dict[str, list[Recorder]] = {}
    for r in recs:
        by_model.setdefault(r.tags.get(TAG_MODEL, "?"), []).append(r)
    # A merged run counts while it was computed from exactly the model's current windows.
    stored = {model: rec for model, rec in merged_runs(exp).items()
              if rec.tags.get(TAG_MERGED_FROM) == windows_digest(by_model.get(model, []))}
    merged = [_stored_signal(model, rec) for model, rec in sorted(stored.items())]
    missing = [r for r in recs if r.tags.get(TAG_MODEL, "?") not in stored]
    merged.extend(_merge_here(missing))
    merged.sort(key=lambda m: m.model)
    return ExperimentReport(experiment=exp.name, windows=windows, merged=merged)


def _stored_signal(model: str, rec: Recorder) -> MergedSignal:
    def day(tag: str) -> pd.Timestamp | None:
        value = rec.tags.get(tag)
        return pd.Timestamp(value) if value else None

    days = _metric(rec, "signal_days")
    return MergedSignal(
        model=model,
        days=0 if math.isnan(days) else int(days),
        first_day=day(TAG_MERGED_START),
        last_day=day(TAG_MERGED_END),
        ic=_metric(rec, "IC"),
        icir=_metric(rec, "ICIR"),
        rank_ic=_metric(rec, "Rank IC"),
        rank_icir=_metric(rec, "Rank ICIR"),
        excess_return=_metric(rec, "1day.excess_return_without_cost.annualized_return"),
        excess_return_with_cost=_metric(rec, "1day.excess_return_with_cost.annualized_return"),
        information_ratio_with_cost=_metric(rec, "1day.excess_return_with_cost.information_ratio"),
        max_drawdown_with_cost=_metric(rec, "1day.excess_return_with_cost.max_drawdown"),
        benchmark=rec.tags.get(TAG_BENCHMARK, ""),
        run_id=rec.id,
    )


def _merge_here(recs: list[Recorder]) -> list[MergedSignal]:
    if not recs:
        return []
    merged = []
    for model, (pred, label) in merge_windows(recs).items():
        if label is None or pred.empty:
            continue
        summary = ic_summary(*calc_ic(pred.iloc[:, 0], label.reindex(pred.index).iloc[:, 0]))
        dates = pred.index.get_level_values("datetime")
        merged.append(
            MergedSignal(
                model=model,
                days=int(dates.nunique()),
                first_day=dates.min(),
                last_day=dates.max(),
                ic=summary["IC"],
                icir=summary["ICIR"],
                rank_ic=summary["Rank IC"],
                rank_icir=summary["Rank ICIR"],
            )
        )
    return merged


class RollingExperiment:
    """Run a :class:`RunConfig`: generate its tasks, train them, collect and report.

    Parameters
    ----------
    config : RunConfig
        The run config.
    exp_manager : ExpManager, optional
        The tracking store; default ``ExpManager(config.tracking, home=home)``. Its home is where
        the windows' handlers keep their feature cache.
    home : path, optional
        The qroll home of the default ``exp_manager`` (see :func:`qroll.home.qroll_home`).

    Notes
    -----
    The steps ``qroll run`` takes, each callable on its own: :meth:`check` (the tasks, their
    classes and the backtest, before anything trains), :meth:`train` (windows already finished in
    the store are kept, so a second call trains only what is missing), :meth:`evaluate` (each
    model's merged signal into a run of its own: IC and the portfolio backtest) and
    :meth:`report`. A subclass may override a step (say, to train through another scheduler)
    and keep the rest.

    Examples
    --------
    A whole run from Python (what ``qroll run CONFIG.yaml`` does)::

        exp = RollingExperiment(RunConfig.from_file("csi300.yaml"))
        exp.check()
        exp.train()
        exp.evaluate()
        print(exp.report())
    """

    def __init__(self, config: RunConfig, exp_manager: ExpManager | None = None, *,
                 home: str | os.PathLike[str] | None = None) -> None:
        self.config = config
        self.exp_manager = exp_manager or ExpManager(config.tracking, home=home)

    @property
    def experiment(self) -> Experiment:
        """The MLflow experiment (created on first use)."""
        return self.exp_manager.get_exp(self.config.experiment)

    def reset(self) -> int:
        """Delete every run of this experiment (and nothing else); return how many."""
        exp = self.experiment
        recs = exp.list_recorders()
        for rec in recs:
            exp.delete_recorder(rec.id)
        return len(recs)

    def tasks(self) -> list[dict[str, Any]]:
        """The rolled tasks; a handler config without a ``source`` reads the run's ``data``."""
        return task_generator([self._with_source(t) for t in self.config.tasks], self.config.rolling_gen())

    def _with_source(self, task: Mapping[str, Any]) -> dict[str, Any]:
        task = dict(copy.deepcopy(task))
        handler = shape.handler_config(task)
        if isinstance(handler, dict):
            kwargs = handler.setdefault("kwargs", {}) or {}
            handler["kwargs"] = kwargs
            kwargs.setdefault("source", self.config.data)
        return task

    def check(self) -> list[dict[str, Any]]:
        """Check every template (classes, records) and roll them; nothing is written.

        Raises
        ------
        QrollError
            For a class that cannot be found, a bad record, or tasks that cannot be rolled.
        """
        for template in self.config.tasks:  # rolled tasks differ only in dates: check templates once
            check_task(template)
        tasks = self.tasks()
        if self.config.backtest is not None and tasks:
            # The merged signals are backtested after training: a config that could not run
            # fails now, before hours of training.
            source = open_source(self.config.data)
            spans = [s for s in (shape.task_segment(t) for t in tasks) if s is not None]
            cal = source.calendar.days
            span = (min(pd.Timestamp(s[0]) for s in spans),
                    max(pd.Timestamp(s[1]) if s[1] is not None else cal[-1] for s in spans))
            for market in _markets(self.config.tasks):
                check_backtest(self.config.backtest, source, market, span)
        return tasks

    def train(
        self,
        progress: TrainProgress | None = None,
        call_in_subproc: bool = False,
        tasks: list[dict[str, Any]] | None = None,
    ) -> list[Recorder]:
        """Train every task not yet finished; raises TrainingError if any fails.

        With the config's ``pool`` (a pool URL) the tasks go through a pool named after the
        experiment (:class:`~qroll.train.pool_trainer.TrainerRM`): ``workers`` processes train,
        this one and ``workers - 1`` spawned, and any ``qroll worker`` on that pool helps;
        ``workers: 0`` trains nothing here and waits for workers elsewhere (``qroll worker``).
        Otherwise :class:`TrainerR` trains them here, in order.
        ``tasks`` defaults to :meth:`check`'s; every template is checked before any run starts.
        """
        tasks = self.check() if tasks is None else tasks
        trainer: TrainerR | TrainerRM
        if self.config.pool:
            from qroll.train.pool_trainer import TrainerRM

            trainer = TrainerRM(
                experiment_name=self.config.experiment,
                pool_url=self.config.pool,
                exp_manager=self.exp_manager,
                n_workers=max(self.config.workers - 1, 0),
                skip_run_task=self.config.workers == 0,
                progress=progress,
            )
        else:
            trainer = TrainerR(
                experiment_name=self.config.experiment,
                exp_manager=self.exp_manager,
                call_in_subproc=call_in_subproc,
                progress=progress,
            )
        return trainer.end_train(trainer.train(tasks))

    def evaluate(self, progress: Callable[[str], None] | None = None) -> list[MergedEvaluation]:
        """Merge each model's windows and evaluate the merged signal in a run of its own.

        With the config's ``backtest`` (the default unless ``backtest: null``) the merged signal is
        also backtested; see :func:`~qroll.collect.merged.evaluate_merged`. A model whose windows
        did not change since the last evaluation keeps its merged run.
        """
        return evaluate_merged(self.experiment, self.config.backtest, source=self.config.data,
                               progress=progress)

    def report(self) -> ExperimentReport:
        """Per-window and merged results (see :func:`experiment_report`)."""
        return experiment_report(self.experiment)


def _markets(templates: list[dict[str, Any]]) -> list[Any]:
    """The distinct ``instruments`` of the templates' handlers (``"all"`` where none is given)."""
    found: list[Any] = []
    for task in templates:
        market = (shape.handler_kwargs(task) or {}).get("instruments", "all")
        if market not in found:
            found.append(market)
    return found
