"""Everything the report shows, read from an experiment into frozen records (no plotting here).

An experiment holds two kinds of finished runs (DESIGN §5):

- **window runs** (no ``qroll.kind`` tag): one model trained on one rolling window, with tags
  ``qroll.model`` / ``qroll.test_start`` / ``qroll.test_end``, the flattened task as params and the
  metrics ``IC``, ``Rank IC``, ``fit_seconds``, ``best_iteration`` (LightGBM);
- **merged runs** (``qroll.kind = "merged"``): one model's signal over every window, with
  ``sig_analysis/`` and, unless the run config said ``backtest: null``, ``portfolio_analysis/``.

:func:`gather_report_data` reads both into a :class:`ReportData`. A model without a merged run (an
experiment an older qroll wrote) gets its signal merged from its window runs here, and the notes
say that its portfolio backtest is missing and how to get one.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd

from qroll.analysis.signal import calc_ic, ic_summary
from qroll.clock import utcnow
from qroll.collect.merged import merge_windows
from qroll.errors import CollectError, LoadObjectError, QrollError
from qroll.messages import mask_credentials
from qroll.record import Experiment, Recorder
from qroll.record.tags import (
    KIND_MERGED,
    TAG_BENCHMARK,
    TAG_KIND,
    TAG_MERGED_END,
    TAG_MERGED_START,
    TAG_MODEL,
    TAG_TEST_END,
    TAG_TEST_START,
)
from qroll.tasks import shape

__all__ = ["ModelSeries", "ModelSummary", "ReportData", "WindowSummary", "gather_report_data"]

PRED, LABEL = "pred.pkl", "label.pkl"
IC_PATH, RIC_PATH = "sig_analysis/ic.pkl", "sig_analysis/ric.pkl"
REPORT_PATH = "portfolio_analysis/report_normal_1day.pkl"
SOURCE_PARAM = shape.handler_param("source")
# A date as Qlib's params spell it: "['2019-01-01', None]", "(Timestamp('2019-01-01 00:00:00'), ...)".
_POINT = re.compile(r"(\d{4}-\d{2}-\d{2})|\bNone\b")

Progress = Callable[[str], None]
Span = tuple[str, str]


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelSummary:
    """One row of the model comparison: a model's merged signal and its portfolio backtest.

    Attributes
    ----------
    model : str
        The model class, e.g. ``"LGBModel"``.
    run_id : str
        The merged run's id; ``""`` when the signal was merged from the window runs here.
    start, end : str
        The first and last day of the merged signal (``YYYY-MM-DD``).
    days : int
        Trading days with a prediction.
    ic, icir, rank_ic, rank_icir : float
        Mean daily IC, mean / std of daily IC, and the same for Rank IC (NaN when not recorded).
    excess_without_cost, excess_with_cost : float
        Annualised excess return over the benchmark (fractions a year, 238 trading days, summed as
        Qlib does), before and after trading costs; NaN without a portfolio backtest.
    information_ratio_with_cost : float
        Annualised information ratio of the excess return with cost.
    max_drawdown_with_cost : float
        Maximum drawdown of the summed excess return with cost (a fraction, <= 0).
    benchmark : str
        What the excess return is measured against, as the run describes it.
    """

    model: str
    run_id: str
    start: str
    end: str
    days: int
    ic: float
    icir: float
    rank_ic: float
    rank_icir: float
    excess_without_cost: float = math.nan
    excess_with_cost: float = math.nan
    information_ratio_with_cost: float = math.nan
    max_drawdown_with_cost: float = math.nan
    benchmark: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class WindowSummary:
    """One window run: its segments and its results.

    Attributes
    ----------
    model, run_id, run_name : str
        The model class, the run's id and name.
    train, valid, test : (str, str) or None
        The segments as ``(start, end)`` dates (``""`` for an open end), None when absent.
    ic, rank_ic : float
        Mean daily IC and Rank IC over the test segment.
    best_iteration : float
        The boosting round early stopping chose (LightGBM), NaN otherwise.
    fit_seconds : float
        Wall-clock seconds the fit took.
    excess_with_cost : float
        The window's own annualised excess return with cost, when its run has a backtest.
    """

    model: str
    run_id: str
    run_name: str
    train: Span | None
    valid: Span | None
    test: Span | None
    ic: float
    rank_ic: float
    best_iteration: float
    fit_seconds: float
    excess_with_cost: float


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelSeries:
    """One model's daily series for the figures; each is None when the experiment lacks it.

    Attributes
    ----------
    model : str
    report : pd.DataFrame or None
        The backtest's ``report_normal`` (index ``datetime``; ``return``, ``cost``, ``bench``,
        ``turnover`` fractions of the previous day's account value).
    ic, rank_ic : pd.Series or None
        Daily IC and Rank IC, indexed by day.
    pred_label : pd.DataFrame or None
        Columns ``score`` and ``label``, index ``(datetime, instrument)``.
    """

    model: str
    report: pd.DataFrame | None
    ic: pd.Series | None
    rank_ic: pd.Series | None
    pred_label: pd.DataFrame | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportData:
    """What one report shows: the experiment, its models, windows and daily series.

    Attributes
    ----------
    experiment : str
        The experiment's name.
    tracking_uri : str
        The tracking store, credentials masked.
    data_source : str
        The market data the windows were trained on (credentials masked), ``""`` if unknown.
    generated_at : datetime.datetime
        When the data was read (UTC).
    models : tuple of ModelSummary
        One per model, sorted by name.
    windows : tuple of WindowSummary
        One per window run, sorted by model and test start.
    series : tuple of ModelSeries
        In the order of ``models``.
    notes : tuple of str
        What is missing and why, one plain sentence each.
    """

    experiment: str
    tracking_uri: str
    data_source: str
    generated_at: dt.datetime
    models: tuple[ModelSummary, ...]
    windows: tuple[WindowSummary, ...]
    series: tuple[ModelSeries, ...]
    notes: tuple[str, ...]

    @property
    def has_portfolio(self) -> bool:
        """Whether any model has a portfolio backtest."""
        return any(s.report is not None for s in self.series)


def _metric(metrics: Mapping[str, float], name: str) -> float:
    value = metrics.get(name)
    return float(value) if value is not None else math.nan


def _portfolio_metric(metrics: Mapping[str, float], name: str) -> float:
    # Qlib prefixes the figures with the analysis frequency ("1day."); daily is what the report
    # draws, another frequency is the fallback.
    if f"1day.{name}" in metrics:
        return float(metrics[f"1day.{name}"])
    for key, value in sorted(metrics.items()):
        if key.endswith(f".{name}"):
            return float(value)
    return math.nan


def _span(text: str | None) -> Span | None:
    if not text:
        return None
    points = [m.group(1) or "" for m in _POINT.finditer(text)]
    return (points[0], points[1]) if len(points) == 2 else None


def _roles(test_key: str) -> dict[str, str]:
    """The segments the report draws, by role: ``test`` is whichever the run's test key names."""
    return {"train": "train", "valid": "valid", "test": test_key}


def _task_segments(task: Any) -> dict[str, Span | None]:
    """A pickled task's segments by role; {} for a task of another shape."""
    try:
        found, test_key = shape.segments(task), shape.task_test_key(task)
    except QrollError:
        return {}
    out: dict[str, Span | None] = {}
    for role, key in _roles(test_key).items():
        try:
            start, end = found[key]
        except (KeyError, TypeError, ValueError):
            continue
        out[role] = tuple(  # type: ignore[assignment]
            "" if p is None else f"{pd.Timestamp(p):%Y-%m-%d}" for p in (start, end))
    return out


def _load_many(jobs: Sequence[tuple[Any, Recorder, str]], threads: int = 8) -> dict[Any, Any]:
    """``{key: artifact}`` for each ``(key, rec, path)``; a missing artifact is left out."""

    def load(job: tuple[Any, Recorder, str]) -> tuple[Any, Any]:
        key, rec, path = job
        try:
            return key, rec.load_object(path)
        except LoadObjectError:
            return key, None

    if not jobs:
        return {}
    with ThreadPoolExecutor(max(1, min(threads, len(jobs)))) as pool:
        return {key: obj for key, obj in pool.map(load, jobs) if obj is not None}


def _windows(recs: Sequence[Recorder]) -> list[WindowSummary]:
    segments: dict[str, dict[str, Span | None]] = {}
    need_task = []
    for rec in recs:
        roles = _roles(rec.params.get(shape.TEST_KEY_PARAM) or shape.DEFAULT_TEST_KEY)
        parsed = {role: _span(rec.params.get(shape.segment_param(key))) for role, key in roles.items()}
        segments[rec.id] = parsed
        if parsed["train"] is None:
            need_task.append(rec)
    # Runs without the flattened task as params (logged by other tools): their pickled task.
    for run_id, task in _load_many([(rec.id, rec, "task") for rec in need_task]).items():
        segments[run_id].update(_task_segments(task))
    rows = []
    for rec in recs:
        seg = segments[rec.id]
        test = seg.get("test")
        if TAG_TEST_START in rec.tags:  # the tags are what collecting keys on: they win
            test = (rec.tags[TAG_TEST_START], rec.tags.get(TAG_TEST_END, ""))
        rows.append(WindowSummary(
            model=rec.tags.get(TAG_MODEL, "?"), run_id=rec.id, run_name=rec.name,
            train=seg.get("train"), valid=seg.get("valid"), test=test,
            ic=_metric(rec.metrics, "IC"), rank_ic=_metric(rec.metrics, "Rank IC"),
            best_iteration=_metric(rec.metrics, "best_iteration"),
            fit_seconds=_metric(rec.metrics, "fit_seconds"),
            excess_with_cost=_portfolio_metric(rec.metrics, "excess_return_with_cost.annualized_return"),
        ))
    return sorted(rows, key=lambda w: (w.model, w.test[0] if w.test else "", w.run_id))


def _pred_label(pred: Any, label: Any) -> pd.DataFrame | None:
    if not isinstance(pred, pd.DataFrame) or pred.empty:
        return None
    score = pred["score"] if "score" in pred.columns else pred.iloc[:, 0]
    out = pd.DataFrame({"score": score.astype("float64")})
    if isinstance(label, pd.DataFrame) and not label.empty:
        out["label"] = label.iloc[:, 0].reindex(out.index).astype("float64")
    else:
        return None
    return out


def _days(pl: pd.DataFrame | None, ic: pd.Series | None) -> tuple[int, str, str]:
    index = pl.index.get_level_values("datetime") if pl is not None else None
    if index is None and ic is not None:
        index = ic.index
    if index is None or len(index) == 0:
        return 0, "", ""
    return int(index.nunique()), f"{index.min():%Y-%m-%d}", f"{index.max():%Y-%m-%d}"


def _from_merged(rec: Recorder, loaded: Mapping[str, Any]) -> tuple[ModelSummary, ModelSeries]:
    model = rec.tags.get(TAG_MODEL, "?")
    pl = _pred_label(loaded.get(PRED), loaded.get(LABEL))
    ic, ric = loaded.get(IC_PATH), loaded.get(RIC_PATH)
    if (ic is None or ric is None) and pl is not None:
        ic, ric = calc_ic(pl["score"], pl["label"])
    report = loaded.get(REPORT_PATH)
    days, start, end = _days(pl, ic)
    m = rec.metrics
    summary = ModelSummary(
        model=model, run_id=rec.id,
        start=rec.tags.get(TAG_MERGED_START) or start, end=rec.tags.get(TAG_MERGED_END) or end, days=days,
        ic=_metric(m, "IC"), icir=_metric(m, "ICIR"), rank_ic=_metric(m, "Rank IC"),
        rank_icir=_metric(m, "Rank ICIR"),
        excess_without_cost=_portfolio_metric(m, "excess_return_without_cost.annualized_return"),
        excess_with_cost=_portfolio_metric(m, "excess_return_with_cost.annualized_return"),
        information_ratio_with_cost=_portfolio_metric(m, "excess_return_with_cost.information_ratio"),
        max_drawdown_with_cost=_portfolio_metric(m, "excess_return_with_cost.max_drawdown"),
        benchmark=rec.tags.get(TAG_BENCHMARK, ""),
    )
    series = ModelSeries(model=model, report=report if isinstance(report, pd.DataFrame) else None,
                         ic=ic, rank_ic=ric, pred_label=pl)
    return summary, series


def _from_windows(model: str, recs: Sequence[Recorder]) -> tuple[ModelSummary, ModelSeries]:
    try:
        pred, label = merge_windows(recs).get(model, (None, None))
    except CollectError:  # runs without qroll's tags cannot be put in window order: no signal
        pred = label = None
    pl = _pred_label(pred, label)
    ic = ric = None
    figures = dict.fromkeys(("IC", "ICIR", "Rank IC", "Rank ICIR"), math.nan)
    if pl is not None:
        ic, ric = calc_ic(pl["score"], pl["label"])
        figures = ic_summary(ic, ric)
    days, start, end = _days(pl, ic)
    summary = ModelSummary(
        model=model, run_id="", start=start, end=end, days=days, ic=figures["IC"], icir=figures["ICIR"],
        rank_ic=figures["Rank IC"], rank_icir=figures["Rank ICIR"],
    )
    return summary, ModelSeries(model=model, report=None, ic=ic, rank_ic=ric, pred_label=pl)


def _data_source(recs: Sequence[Recorder]) -> str:
    for rec in recs:
        value = rec.params.get(SOURCE_PARAM)
        if value and value != "None":
            return mask_credentials(value)
    return ""


def _names(models: Sequence[str]) -> str:
    return models[0] if len(models) == 1 else ", ".join(models[:-1]) + " and " + models[-1]


def gather_report_data(experiment: Experiment, progress: Progress | None = None) -> ReportData:
    """Read what the report shows from ``experiment``'s finished runs.

    Parameters
    ----------
    experiment : Experiment
        A rolling experiment: window runs and, per model, a merged run.
    progress : callable, optional
        Called with a short line saying what is being read.

    Returns
    -------
    ReportData

    Raises
    ------
    CollectError
        If the experiment has no finished run.
    """
    say = progress or (lambda _line: None)
    say(f"listing the runs of experiment {experiment.name!r}")
    recs = experiment.list_recorders(status={Recorder.STATUS_FI})
    uri = experiment.manager.display_uri
    if not recs:
        raise CollectError(
            f"experiment {experiment.name!r} in {uri} has no finished run to report: train it first "
            f"(`qroll run CONFIG`), or check the experiment name and the tracking URI"
        )
    window_recs = [r for r in recs if TAG_KIND not in r.tags]
    merged: dict[str, Recorder] = {}
    notes: list[str] = []
    for rec in recs:  # newest first: a rerun's merged run replaces the older one
        if rec.tags.get(TAG_KIND) != KIND_MERGED:
            continue
        model = rec.tags.get(TAG_MODEL, "?")
        if model in merged:
            notes.append(f"{model} has more than one merged run; the newest ({merged[model].id}) is shown, "
                         f"run {rec.id} is not.")
            continue
        merged[model] = rec
    say(f"reading {len(window_recs)} window runs")
    windows = _windows(window_recs)
    say(f"reading {len(merged)} merged runs")
    paths = (PRED, LABEL, IC_PATH, RIC_PATH, REPORT_PATH)

    def listing(rec: Recorder) -> tuple[str, set[str]]:
        return rec.id, set(rec.list_artifacts())

    with ThreadPoolExecutor(max(1, min(8, len(merged)))) as pool:
        held = dict(pool.map(listing, merged.values()))
    loaded = _load_many([((model, path), rec, path) for model, rec in merged.items()
                         for path in paths if path in held[rec.id]])
    summaries: list[ModelSummary] = []
    series: list[ModelSeries] = []
    by_model: dict[str, list[Recorder]] = {}
    for rec in window_recs:
        by_model.setdefault(rec.tags.get(TAG_MODEL, "?"), []).append(rec)
    no_backtest: list[str] = []
    no_merged: list[str] = []
    for model in sorted(set(merged) | set(by_model)):
        run = merged.get(model)
        if run is not None:
            own = {path: loaded[(model, path)] for path in paths if (model, path) in loaded}
            pair = _from_merged(run, own)
            if REPORT_PATH not in held[run.id]:
                no_backtest.append(model)
        else:
            say(f"merging the {len(by_model[model])} window runs of {model}")
            pair = _from_windows(model, by_model[model])
            no_merged.append(model)
        summaries.append(pair[0])
        series.append(pair[1])
    if no_backtest:
        notes.append(f"No portfolio backtest for {_names(no_backtest)}: the run config has backtest: null "
                     "(the merged runs hold no portfolio_analysis/); give it a backtest section and run "
                     "`qroll run` again to get one.")
    if no_merged:
        notes.append(f"No merged run for {_names(no_merged)}: run `qroll run` again to write one per model "
                     "(with its portfolio backtest); the signal shown here is merged from the window runs.")
    return ReportData(
        experiment=experiment.name, tracking_uri=uri, data_source=_data_source(window_recs),
        generated_at=utcnow(), models=tuple(summaries), windows=tuple(windows), series=tuple(series),
        notes=tuple(notes),
    )
