"""Each model's windows merged into one signal, evaluated once and kept in a run of its own.

After rolling, a model's per-window predictions are merged (:class:`~qroll.collect.group.RollingGroup`)
into one signal over every test day, as Qlib's ``contrib/rolling`` does, and that signal is judged
in a new run of the experiment: ``pred.pkl`` and ``label.pkl``, the signal analysis
(:class:`~qroll.record.records.SigAnaRecord`) and the portfolio backtest
(:class:`~qroll.record.portfolio.PortAnaRecord`, Qlib's artifacts and metrics). The run is named
``"LGBModel merged 2019-01-02..2020-12-31"`` and tagged ``qroll.kind=merged``, with a digest of the
window runs and the backtest config it was computed from (``qroll.merged_from``): evaluating again
with nothing changed reuses it, and reports read it without recomputing.

The backtest config is Qlib's ``port_analysis_config`` without the signal (the strategy's
``signal`` is ``"<PRED>"``, the merged prediction). Default: ``TopkDropoutStrategy`` topk 50,
n_drop 5, account 1e8, Qlib's standard exchange (limit 0.095, close, 0.0005 / 0.0015, min cost 5);
the benchmark is the run config's ``benchmark:`` instrument, else the equal-weighted mean daily
return of the members of the market the model was trained on (the task's ``instruments``).
"""

from __future__ import annotations

import ast
import copy
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from qroll.analysis.risk import risk_analysis
from qroll.backtest.benchmark import market_mean_returns
from qroll.collect.collector import RecorderCollector, rolling_key
from qroll.collect.group import RollingGroup
from qroll.config import task_hash
from qroll.data.source import Source, open_source
from qroll.errors import CalendarError, CollectError, ConfigError, LoadObjectError
from qroll.record import Experiment, Recorder
from qroll.record.records import SigAnaRecord
from qroll.record.tags import (
    KIND_MERGED,
    TAG_BACKTEST_HASH,
    TAG_BENCHMARK,
    TAG_KIND,
    TAG_MERGED_END,
    TAG_MERGED_FROM,
    TAG_MERGED_START,
    TAG_MODEL,
    TAG_TEST_END,
    TAG_TEST_START,
    run_name,
)
from qroll.tasks import shape

__all__ = [
    "DEFAULT_BACKTEST",
    "MergedEvaluation",
    "backtest_config",
    "check_backtest",
    "evaluate_merged",
    "merge_windows",
    "merged_runs",
    "stored_config",
    "window_runs",
    "windows_digest",
]

log = logging.getLogger("qroll.collect")

DEFAULT_BACKTEST: dict[str, Any] = {
    "strategy": {"class": "TopkDropoutStrategy", "kwargs": {"topk": 50, "n_drop": 5}},
    "backtest": {
        "start_time": None,
        "end_time": None,
        "account": 100_000_000,
        "exchange_kwargs": {"limit_threshold": 0.095, "deal_price": "close", "open_cost": 0.0005,
                            "close_cost": 0.0015, "min_cost": 5},
    },
}
"""The merged signal's backtest when the run config names none (Qlib's standard block)."""

_CONFIG_KEYS = ("strategy", "backtest", "executor")
_BACKTEST_KEYS = ("start_time", "end_time", "account", "benchmark", "exchange_kwargs", "pos_type")
# The per-window metrics: the merged portfolio's days inside each window's test segment.
_WINDOW_SERIES = ("excess_return_without_cost", "excess_return_with_cost")
_RISK_NAMES = ("mean", "std", "annualized_return", "information_ratio", "max_drawdown")


def backtest_config(
    raw: Any = "default", benchmark: str | None = None, where: str = "backtest"
) -> dict[str, Any] | None:
    """Normalise a run config's ``backtest:`` value into a full ``port_analysis_config``.

    Parameters
    ----------
    raw : mapping, None or "default"
        Qlib's ``port_analysis_config`` (``strategy``, ``backtest``, ``executor``), with or
        without the strategy's ``signal``; missing parts come from :data:`DEFAULT_BACKTEST`.
        ``None`` turns the backtest off.
    benchmark : str, optional
        The run config's ``benchmark:`` instrument, used when ``raw`` names no benchmark.
    where : str
        Where ``raw`` comes from, for error messages.

    Returns
    -------
    dict or None
        The config with ``strategy.kwargs.signal = "<PRED>"``; ``backtest.benchmark`` absent means
        the market's equal-weighted mean return.

    Raises
    ------
    ConfigError
        For a value of the wrong shape or an unknown key.
    """
    if raw is None:
        return None
    if isinstance(raw, str) and raw == "default":
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be Qlib's port_analysis_config (a mapping with strategy, backtest, "
                          f"executor) or null to turn the backtest off, got {raw!r}")
    unknown = [k for k in raw if k not in _CONFIG_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(_CONFIG_KEYS)}")
    cfg = copy.deepcopy(DEFAULT_BACKTEST)
    if raw.get("strategy") is not None:
        strategy = raw["strategy"]
        if not isinstance(strategy, Mapping) or "class" not in strategy:
            raise ConfigError(f"{where}.strategy must be a class config ({{class: TopkDropoutStrategy, "
                              f"kwargs: {{topk: 50, n_drop: 5}}}}), got {strategy!r}")
        cfg["strategy"] = copy.deepcopy(dict(strategy))
    kwargs = dict(cfg["strategy"].get("kwargs") or {})
    kwargs.setdefault("signal", "<PRED>")
    cfg["strategy"]["kwargs"] = kwargs
    block = raw.get("backtest")
    if block is not None:
        if not isinstance(block, Mapping):
            raise ConfigError(f"{where}.backtest must be a mapping of {', '.join(_BACKTEST_KEYS)}, "
                              f"got {block!r}")
        bad = [k for k in block if k not in _BACKTEST_KEYS]
        if bad:
            raise ConfigError(f"{where}.backtest: unknown key {bad[0]!r}; known: {', '.join(_BACKTEST_KEYS)}")
        merged = {**cfg["backtest"], **copy.deepcopy(dict(block))}
        if "exchange_kwargs" in block:  # a given exchange block replaces the default one
            merged["exchange_kwargs"] = dict(block["exchange_kwargs"] or {})
        cfg["backtest"] = merged
    if benchmark is not None and cfg["backtest"].get("benchmark") is None:
        cfg["backtest"]["benchmark"] = benchmark
    if raw.get("executor") is not None:
        cfg["executor"] = copy.deepcopy(raw["executor"])
    return cfg


def describe_benchmark(config: Mapping[str, Any], market: Any) -> str:
    """What the merged backtest compares against, in words (the ``qroll.benchmark`` tag)."""
    bench = config["backtest"].get("benchmark")
    if bench is not None:
        return str(bench)
    shown = f"market {market}" if isinstance(market, str) else f"{len(market)} instruments"
    return f"equal-weighted mean of {shown}"


def check_backtest(config: Mapping[str, Any], source: Source, market: Any, span: tuple[Any, Any]) -> None:
    """Fail now, before any training, on a backtest config that could not run after it.

    The config is run for two trading days on a one-row signal at the start of ``span``: the
    strategy class and options, the executor, the exchange (deal price field, limit expressions)
    and the benchmark are all checked by the code that will run them.

    Parameters
    ----------
    config : mapping
        From :func:`backtest_config`.
    source : Source
        The run's market data.
    market : str or list of str
        The tasks' ``instruments`` (for the default benchmark).
    span : (start, end)
        The first and last test day of the tasks.

    Raises
    ------
    ConfigError, DataNotFoundError, CalendarError, ExpressionError
        Naming the value at fault.
    """
    from qroll.backtest.daily import backtest_daily

    cal = source.calendar.days
    block = config["backtest"]
    lo, hi = pd.Timestamp(span[0]), pd.Timestamp(span[1])
    start, end = block.get("start_time"), block.get("end_time")
    for name, value in (("start_time", start), ("end_time", end)):
        if value is not None and not cal[0] <= pd.Timestamp(value) <= cal[-1]:
            raise CalendarError(f"backtest.{name} {pd.Timestamp(value):%Y-%m-%d} is outside the data's "
                                f"calendar {cal[0]:%Y-%m-%d}..{cal[-1]:%Y-%m-%d}; choose a day inside it")
    if (start is not None and pd.Timestamp(start) > hi) or (end is not None and pd.Timestamp(end) < lo):
        raise ConfigError(f"the backtest range {start}..{end} does not overlap the test windows "
                          f"{lo:%Y-%m-%d}..{hi:%Y-%m-%d}: the merged signal exists only there")
    a = int(cal.searchsorted(max(lo, pd.Timestamp(start) if start is not None else lo)))
    if a + 2 >= len(cal):
        raise CalendarError(f"the test windows start at {cal[min(a, len(cal) - 1)]:%Y-%m-%d}, on the data's "
                            "last days: a backtest needs a few trading days after its signal")
    codes = list(source.instruments(market)) if isinstance(market, str) else [str(c).upper() for c in market]
    signal = pd.DataFrame({"score": [0.0]}, index=pd.MultiIndex.from_tuples(
        [(cal[a], codes[0] if codes else "X")], names=["datetime", "instrument"]))
    strategy = copy.deepcopy(dict(config["strategy"]))
    strategy["kwargs"] = {**dict(strategy.get("kwargs") or {}), "signal": signal}
    bench = block.get("benchmark")
    if bench is None:
        bench = market_mean_returns(source, market, cal[a:a + 2])
    backtest_daily(cal[a], cal[a + 1], strategy, executor=config.get("executor"),
                   account=block.get("account", 1e8), benchmark=bench,
                   exchange_kwargs=block.get("exchange_kwargs"), pos_type=block.get("pos_type", "Position"),
                   source=source)


@dataclass(frozen=True, kw_only=True, slots=True)
class MergedEvaluation:
    """One model's merged run and whether it was computed now (``False``: an up-to-date one was reused)."""

    model: str
    recorder: Recorder
    computed: bool


def window_runs(exp: Experiment) -> list[Recorder]:
    """The experiment's finished per-window runs (not the merged ones), newest first."""
    return [r for r in exp.list_recorders(status={Recorder.STATUS_FI}) if r.tags.get(TAG_KIND) != KIND_MERGED]


def merged_runs(exp: Experiment) -> dict[str, Recorder]:
    """The newest finished merged run of each model."""
    out: dict[str, Recorder] = {}
    for rec in exp.list_recorders(status={Recorder.STATUS_FI}, tags={TAG_KIND: KIND_MERGED}):
        out.setdefault(rec.tags.get(TAG_MODEL, "?"), rec)
    return out


def windows_digest(windows: Iterable[Recorder]) -> str:
    """A digest of a set of window runs (their ids): a merged run is current while it matches."""
    return task_hash({"windows": sorted(r.id for r in windows)})


def _config_digest(config: Mapping[str, Any] | None) -> str:
    return task_hash({"backtest": _jsonable(config)})


def _jsonable(config: Any) -> Any:
    return json.loads(json.dumps(config, default=str, sort_keys=True))


def _param(rec: Recorder, name: str) -> Any:
    text = rec.params.get(name)
    if text is None:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def evaluate_merged(
    exp: Experiment,
    config: Mapping[str, Any] | None | str = "default",
    *,
    source: str | Source | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[MergedEvaluation]:
    """Merge each model's windows and evaluate the merged signal in a run of its own.

    Parameters
    ----------
    exp : Experiment
        The experiment holding the window runs.
    config : mapping, None or "default"
        The backtest, as returned by :func:`backtest_config` (``"default"``:
        :data:`DEFAULT_BACKTEST`; ``None``: signal analysis only, no backtest).
    source : str or Source, optional
        The market data to backtest on; default the ``source`` the windows were trained on.
    progress : callable, optional
        Called with a line for each model evaluated.

    Returns
    -------
    list of MergedEvaluation
        One per model, in model order. A model whose windows and config did not change since
        its merged run was written reuses that run.

    Raises
    ------
    CollectError
        If the experiment has no finished window run.
    """
    if isinstance(config, str):
        config = backtest_config(config)
    windows = window_runs(exp)
    if not windows:
        raise CollectError(f"experiment {exp.name!r} has no finished run: train it first (qroll run)")
    by_model: dict[str, list[Recorder]] = {}
    for rec in windows:
        if TAG_MODEL in rec.tags and TAG_TEST_START in rec.tags:
            by_model.setdefault(rec.tags[TAG_MODEL], []).append(rec)
    existing = {m: r for m, r in merged_runs(exp).items()}
    results = []
    opened: Source | None = None
    for model in sorted(by_model):
        recs = by_model[model]
        digest = windows_digest(recs)
        old = existing.get(model)
        if (old is not None and old.tags.get(TAG_MERGED_FROM) == digest
                and old.tags.get(TAG_BACKTEST_HASH) == _config_digest(config)):
            results.append(MergedEvaluation(model=model, recorder=old, computed=False))
            continue
        if opened is None:
            opened = _open_source(source, recs[0])
        rec = _evaluate_model(exp, model, recs, config, opened, digest)
        if progress is not None:
            progress(f"{model}: merged {len(recs)} window(s) into run {rec.id[:8]}")
        # The new run is finished before older ones go: a crash in between leaves two, and the
        # newest wins when read.
        for stale in exp.list_recorders(tags={TAG_KIND: KIND_MERGED, TAG_MODEL: model}):
            if stale.id != rec.id:
                exp.delete_recorder(stale.id)
        results.append(MergedEvaluation(model=model, recorder=rec, computed=True))
    return results


def stored_config(exp: Experiment) -> dict[str, Any] | None | str:
    """The backtest config the experiment's newest merged run used (``"default"`` if it has none).

    ``qroll collect`` evaluates with it, so collecting again after a ``qroll run`` reuses that
    run's merged results instead of computing them with another config.
    """
    runs = merged_runs(exp)
    if not runs:
        return "default"
    newest = next(iter(runs.values()))  # listed newest first
    try:
        config: dict[str, Any] | None = newest.load_object("backtest.json")
    except LoadObjectError:
        return "default"
    return config


def _open_source(source: str | Source | None, window: Recorder) -> Source:
    if source is not None:
        return open_source(source) if isinstance(source, str) else source
    uri = _param(window, shape.handler_param("source"))
    if not isinstance(uri, str):
        raise ConfigError(f"run {window.id} does not say which data it was trained on: pass the data "
                          "source (qroll collect --data URI)")
    return open_source(uri)


def merge_windows(recs: Iterable[Recorder]) -> dict[str, tuple[pd.DataFrame, pd.DataFrame | None]]:
    """Each model's window predictions and labels merged in window order (:class:`RollingGroup`).

    Parameters
    ----------
    recs : iterable of Recorder
        Window runs tagged by qroll (model and test segment).

    Returns
    -------
    dict of str to (pred, label)
        Model class → merged ``pred.pkl`` and merged ``label.pkl`` (None where no run has labels).

    Raises
    ------
    CollectError
        If a run lacks qroll's model / test-segment tags.
    """
    listed = list(recs)
    collected = RecorderCollector(
        lambda: listed, process_list=[RollingGroup()], rec_key_func=rolling_key,
        artifacts_path={"pred": "pred.pkl", "label": "label.pkl"},
    )()
    labels = collected.get("label", {})
    return {key[0]: (pred, labels.get(key)) for key, pred in sorted(collected.get("pred", {}).items())}


def _evaluate_model(exp: Experiment, model: str, recs: list[Recorder], config: Mapping[str, Any] | None,
                    source: Source, digest: str) -> Recorder:
    pred, label = merge_windows(recs).get(model, (None, None))
    if pred is None or pred.empty:
        raise CollectError(f"the {len(recs)} window run(s) of {model} in {exp.name!r} hold no predictions: "
                           "were they trained with SignalRecord?")
    dates = pd.DatetimeIndex(pred.index.get_level_values("datetime"))
    span = (dates.min(), dates.max())
    market = _param(recs[0], shape.handler_param("instruments")) or "all"
    tags = {TAG_KIND: KIND_MERGED, TAG_MODEL: model, TAG_MERGED_START: f"{span[0]:%Y-%m-%d}",
            TAG_MERGED_END: f"{span[1]:%Y-%m-%d}", TAG_MERGED_FROM: digest,
            TAG_BACKTEST_HASH: _config_digest(config)}
    if config is not None:
        tags[TAG_BENCHMARK] = describe_benchmark(config, market)
    rec = exp.start_recorder(run_name({"model": {"class": model}}, "merged", segment=span), tags=tags)
    try:
        _fill_merged(rec, recs, pred, label, config, source, market, dates)
    except BaseException:
        # A merged run is derived data: one that could not be completed is removed, not left FAILED.
        exp.delete_recorder(rec.id)
        raise
    rec.end(Recorder.STATUS_FI)
    return rec.refresh()


def _fill_merged(
    rec: Recorder, recs: list[Recorder], pred: pd.DataFrame, label: pd.DataFrame | None,
    config: Mapping[str, Any] | None, source: Source, market: Any, dates: pd.DatetimeIndex,
) -> None:
    objects: dict[str, Any] = {"pred.pkl": pred}
    if label is not None:
        objects["label.pkl"] = label.reindex(pred.index)
    rec.save_objects(**objects)
    rec.save_json("windows.json", sorted(r.id for r in recs))
    rec.log_metrics(signal_days=float(dates.nunique()))
    if label is not None:
        SigAnaRecord(rec).generate()
    rec.save_json("backtest.json", _jsonable(config))  # null: evaluated without a backtest
    if config is not None:
        report = _backtest(rec, config, source, market, dates)
        _log_window_metrics(recs, report)


def _backtest(rec: Recorder, config: Mapping[str, Any], source: Source, market: Any,
              dates: pd.DatetimeIndex) -> pd.DataFrame:
    from qroll.record.portfolio import PortAnaRecord

    cfg = copy.deepcopy(dict(config))
    block = cfg["backtest"]
    if block.get("benchmark") is None:
        # Over every day the backtest could step: the signal's span and the day after it, or the
        # configured range.
        cal = source.calendar.days
        lo = pd.Timestamp(block["start_time"]) if block.get("start_time") is not None else dates.min()
        hi = (pd.Timestamp(block["end_time"]) if block.get("end_time") is not None
              else cal[min(len(cal) - 1, int(cal.searchsorted(dates.max())) + 1)])
        block["benchmark"] = market_mean_returns(source, market, cal[(cal >= lo) & (cal <= hi)])
    PortAnaRecord(rec, cfg, source=source).generate()
    report: pd.DataFrame = rec.load_object("portfolio_analysis/report_normal_1day.pkl")
    return report


def _log_window_metrics(recs: list[Recorder], report: pd.DataFrame) -> None:
    """Log each window's slice of the merged portfolio, so the MLflow UI compares windows."""
    excess = {
        "excess_return_without_cost": report["return"] - report["bench"],
        "excess_return_with_cost": report["return"] - report["bench"] - report["cost"],
    }
    for rec in recs:
        start = pd.Timestamp(rec.tags[TAG_TEST_START])
        end = pd.Timestamp(rec.tags[TAG_TEST_END]) if rec.tags.get(TAG_TEST_END) else report.index[-1]
        metrics: dict[str, float] = {}
        for name in _WINDOW_SERIES:
            part = excess[name].loc[start:end]
            if len(part) < 2:
                continue
            risk = risk_analysis(part, freq="day")["risk"]
            metrics.update({f"1day.{name}.{k}": float(risk[k]) for k in _RISK_NAMES
                            if math.isfinite(risk[k])})
        if metrics:
            rec.log_metrics(step=None, **metrics)
