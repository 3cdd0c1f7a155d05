"""``PortAnaRecord``: backtest a run's predictions and record the portfolio analysis (Qlib's record).

The record reads the run's ``pred.pkl``, runs qroll's daily backtest (Qlib's numbers, see
:func:`qroll.backtest.run_backtest`) with Qlib's ``port_analysis_config``, and writes Qlib's
artifacts and metrics, so Qlib tooling (``analysis_position.report_graph`` ...) reads qroll runs:

=====================================================  =====================================================
``portfolio_analysis/report_normal_1day.pkl``          the daily report (account, return, cost, bench ...)
``portfolio_analysis/positions_normal_1day.pkl``       ``{day: Position}`` at each day's end
``portfolio_analysis/indicators_normal_1day.pkl``      daily trade indicators (ffr, pa, pos, deal_amount ...)
``portfolio_analysis/indicators_normal_1day_obj.pkl``  a :class:`~qroll.backtest.TradeIndicators` (Qlib:
                                                       its ``Indicator``), with the frame and every order
``portfolio_analysis/port_analysis_1day.pkl``          risk of the excess return without / with cost
``portfolio_analysis/indicator_analysis_1day.pkl``     ffr, pa, pos averaged over the days
=====================================================  =====================================================

Metrics (13, Qlib's names): ``1day.excess_return_without_cost.{mean, std, annualized_return,
information_ratio, max_drawdown}``, the same five ``1day.excess_return_with_cost.*``, and
``1day.ffr``, ``1day.pa``, ``1day.pos``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from typing import Any

import pandas as pd

from qroll.analysis.risk import indicator_analysis, risk_analysis
from qroll.backtest.daily import check_executor, run_backtest
from qroll.backtest.indicators import TradeIndicators
from qroll.backtest.strategy import TopkDropoutStrategy
from qroll.config.instance import resolve_class
from qroll.config.placeholder import fill_placeholder
from qroll.data.source import Source, open_source
from qroll.errors import ConfigError, LoadObjectError, RecordSkippedWarning
from qroll.home import data_uri
from qroll.record.recorder import Recorder
from qroll.record.records import RecordTemp, SignalRecord

__all__ = ["DEFAULT_PORT_ANALYSIS_CONFIG", "PortAnaRecord"]

logger = logging.getLogger(__name__)

#: Qlib's ``PortAnaRecord`` default (``config=None``): TopkDropout 50/5 on the run's predictions,
#: over the predictions' dates, account 1e8 (money), benchmark SH000300, the standard exchange.
DEFAULT_PORT_ANALYSIS_CONFIG: dict[str, Any] = {
    "strategy": {
        "class": "TopkDropoutStrategy",
        "module_path": "qlib.contrib.strategy",
        "kwargs": {"signal": "<PRED>", "topk": 50, "n_drop": 5},
    },
    "backtest": {
        "start_time": None,
        "end_time": None,
        "account": 100000000,
        "benchmark": "SH000300",
        "exchange_kwargs": {"limit_threshold": 0.095, "deal_price": "close", "open_cost": 0.0005,
                            "close_cost": 0.0015, "min_cost": 5},
    },
}

# qlib.backtest.backtest's defaults for keys the backtest block leaves out (not backtest_daily's):
# account 1e9, and get_exchange's 15 / 25 bp fees.
_QLIB_BACKTEST_DEFAULTS = {"account": 1e9, "benchmark": "SH000300", "pos_type": "Position"}
_QLIB_EXCHANGE_DEFAULTS = {"open_cost": 0.0015, "close_cost": 0.0025, "min_cost": 5.0,
                           "limit_threshold": None, "deal_price": None}
_DEFAULT_EXECUTOR = {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
                     "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True}}
# Qlib's Freq.parse spellings of one day; qroll backtests daily steps only.
_FREQS = {"day": "1day", "d": "1day", "1day": "1day", "1d": "1day"}
_BACKTEST_KEYS = ("start_time", "end_time", "account", "benchmark", "exchange_kwargs", "pos_type")
_RISK_NAMES = ("mean", "std", "annualized_return", "information_ratio", "max_drawdown")
_EXCESS = ("excess_return_without_cost", "excess_return_with_cost")
_INDICATOR_METHODS = ("mean", "amount_weighted", "value_weighted")
# Offered by the trainer to every record (try_kwargs); a portfolio analysis has no use for them.
_TRAINER_KWARGS = frozenset({"model", "dataset"})


class PortAnaRecord(RecordTemp):
    """Backtest the run's predictions and save Qlib's portfolio analysis (Qlib's ``PortAnaRecord``).

    Parameters
    ----------
    recorder : Recorder
        A run holding ``pred.pkl`` and ``label.pkl`` (from :class:`SignalRecord`).
    config : dict, optional
        Qlib's ``port_analysis_config``, unchanged:

        - ``strategy`` (required): ``{"class": "TopkDropoutStrategy", "module_path": ...,
          "kwargs": {"signal": "<PRED>", "topk": 50, "n_drop": 5, ...}}``; ``"<PRED>"`` anywhere
          in it (or in ``executor``) becomes the run's ``pred.pkl``.
        - ``backtest`` (required): ``start_time`` and ``end_time`` (both must be present, either
          may be None), ``account`` (initial cash, money), ``benchmark``, ``exchange_kwargs``,
          ``pos_type`` (see :func:`~qroll.backtest.backtest_daily`). Keys left out take the
          defaults of Qlib's ``qlib.backtest.backtest``, which PortAnaRecord calls: account 1e9,
          benchmark SH000300, open cost 0.0015, close cost 0.0025, min cost 5 (money), limit
          0.095, close deal price (``backtest_daily``'s fees are 0.0005 / 0.0015). ``start_time=None`` is the
          predictions' first date (that day trades nothing: it has no previous-day prediction);
          ``end_time=None`` is the trading day after the predictions' last date, as Qlib 0.9.7
          sets it, clipped to the calendar's end and, when that is the calendar's last day, to
          the day before it, the last day a daily step can end on (Qlib raises ``IndexError``
          there).
        - ``executor`` (optional): only Qlib's daily ``SimulatorExecutor`` with
          ``generate_portfolio_metrics=True``.

        Default (None): Qlib's, :data:`DEFAULT_PORT_ANALYSIS_CONFIG`.
    risk_analysis_freq, indicator_analysis_freq : str or list of str, optional
        ``"day"``, ``"d"``, ``"1day"`` or ``"1d"`` (all mean ``"1day"``); default ``"1day"``.
    indicator_analysis_method : {"mean", "amount_weighted", "value_weighted"}, optional
        How :func:`~qroll.analysis.risk.indicator_analysis` weighs the days; default ``"mean"``.
    skip_existing : bool, default False
        Do nothing (and return the stored metrics) when this record's artifacts already exist.
    source : str or Source, optional
        The market data to backtest on. Default: the ``source`` of the handler in the run's
        ``task`` artifact (the data the predictions came from), else ``$QROLL_DATA``.
    **kwargs
        ``model`` and ``dataset``, which the trainer offers every record, are accepted and
        ignored; any other keyword is an error (Qlib raises ``TypeError``).

    Raises
    ------
    ConfigError
        A config without ``strategy`` or ``backtest``, a backtest block without ``start_time`` or
        ``end_time`` or with an unknown key, an unsupported executor, frequency or indicator
        method, an unknown strategy class or an unknown keyword argument.
    """

    artifact_path = "portfolio_analysis"
    depend_cls = SignalRecord

    def __init__(
        self,
        recorder: Recorder | None = None,
        config: Mapping[str, Any] | None = None,
        risk_analysis_freq: str | list[str] | None = None,
        indicator_analysis_freq: str | list[str] | None = None,
        indicator_analysis_method: str | None = None,
        skip_existing: bool = False,
        *,
        source: str | os.PathLike[str] | Source | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(recorder=recorder)
        unknown = sorted(set(kwargs) - _TRAINER_KWARGS)
        if unknown:
            raise ConfigError(
                f"PortAnaRecord got unknown arguments {unknown}: its arguments are config, "
                "risk_analysis_freq, indicator_analysis_freq, indicator_analysis_method, "
                "skip_existing and source"
            )
        cfg = _copy_basic(DEFAULT_PORT_ANALYSIS_CONFIG if config is None else config)
        if not isinstance(cfg, Mapping) or "strategy" not in cfg or "backtest" not in cfg:
            shown = sorted(cfg) if isinstance(cfg, Mapping) else type(cfg).__name__
            raise ConfigError(
                f"PortAnaRecord config must be a dict with 'strategy' and 'backtest' (and optionally "
                f"'executor'), got {shown}; see Qlib's port_analysis_config"
            )
        self.strategy_config: Any = cfg["strategy"]
        self.executor_config: Any = cfg.get("executor") or _copy_basic(_DEFAULT_EXECUTOR)
        self.backtest_config: dict[str, Any] = _backtest_block(cfg["backtest"])
        _check_strategy(self.strategy_config)
        _check_executor(self.executor_config)
        self.all_freq = ["1day"]
        self.risk_analysis_freq = _freqs(risk_analysis_freq, "risk_analysis_freq")
        self.indicator_analysis_freq = _freqs(indicator_analysis_freq, "indicator_analysis_freq")
        if indicator_analysis_method is not None and indicator_analysis_method not in _INDICATOR_METHODS:
            raise ConfigError(
                f"indicator_analysis_method {indicator_analysis_method!r} is not one of "
                f"{list(_INDICATOR_METHODS)}"
            )
        self.indicator_analysis_method = indicator_analysis_method
        self.skip_existing = skip_existing
        if not (source is None or isinstance(source, (str, os.PathLike)) or hasattr(source, "calendar")):
            raise ConfigError(
                f"source {source!r} is neither a data URI ('qlib:///path', 'synthetic://?...') nor a Source"
            )
        self._source_arg = source
        self._source: Source | None = None

    # -- names ----------------------------------------------------------------------------------------

    def metric_names(self) -> list[str]:
        """The names of the metrics :meth:`generate` logs (Qlib's)."""
        names = [f"{freq}.{excess}.{name}" for freq in self.risk_analysis_freq for excess in _EXCESS
                 for name in _RISK_NAMES]
        return names + [f"{freq}.{k}" for freq in self.indicator_analysis_freq for k in ("ffr", "pa", "pos")]

    # -- generation -------------------------------------------------------------------------------

    def generate(self, **kwargs: Any) -> dict[str, float]:
        """Backtest ``pred.pkl``, log the metrics, save the artifacts; return the metrics logged.

        Everything is computed before anything is written: a backtest that fails (an unknown
        benchmark code, a missing deal-price field, a range outside the calendar, a prediction that
        does not overlap the range) raises its error and leaves the run as it was.

        Parameters
        ----------
        **kwargs
            Ignored, as Qlib does.

        Returns
        -------
        dict of str to float
            The 13 metrics (NaN where undefined, e.g. ``1day.ffr`` when no order was ever sent,
            logged as NaN as Qlib does); ``{}`` when skipped (no ``pred.pkl``/``label.pkl`` or
            an empty prediction, with a :class:`RecordSkippedWarning`); the run's stored metrics
            when ``skip_existing`` found the artifacts.

        Raises
        ------
        ConfigError, CalendarError, DataNotFoundError
            From the backtest, or when no market data is known (see ``source``).
        """
        recorder = self.recorder
        if self.skip_existing:
            try:
                self.check(include_self=True, parents=False)
            except LoadObjectError:
                pass
            else:
                logger.info("portfolio analysis of run %s exists: skipped", recorder.id)
                wanted: set[str] = set(self.metric_names())
                return {k: v for k, v in recorder.list_metrics().items() if k in wanted}
        try:
            self.check()
        except LoadObjectError as exc:
            return _skipped(recorder, f"the dependent data does not exist ({exc})")
        pred = self.load("pred.pkl")
        if not isinstance(pred, (pd.DataFrame, pd.Series)) or pred.empty:
            return _skipped(recorder, f"pred.pkl is empty or not a DataFrame ({type(pred).__name__})")
        src = self._open_source()
        result = run_backtest(source=src, **self.backtest_arguments(pred, src))
        report = result.report

        metrics: dict[str, float] = {}
        objects: dict[str, Any] = {}
        for freq in self.all_freq:
            objects.update({
                f"report_normal_{freq}.pkl": report,
                f"positions_normal_{freq}.pkl": result.positions,
                f"indicators_normal_{freq}.pkl": result.indicators,
                f"indicators_normal_{freq}_obj.pkl": TradeIndicators(result.indicators, result.orders, freq),
            })
        excess = report["return"] - report["bench"]
        for freq in self.risk_analysis_freq:
            analysis = pd.concat({_EXCESS[0]: risk_analysis(excess, freq=freq),
                                  _EXCESS[1]: risk_analysis(excess - report["cost"], freq=freq)})
            risk = analysis["risk"]
            for kind in _EXCESS:
                for name in _RISK_NAMES:
                    metrics[f"{freq}.{kind}.{name}"] = float(risk[(kind, name)])
            objects[f"port_analysis_{freq}.pkl"] = analysis
            logger.info("run %s, risk of the excess return (%s):\n%s", recorder.id, freq,
                        analysis["risk"].unstack(0).to_string())
        for freq in self.indicator_analysis_freq:
            ind = indicator_analysis(result.indicators, method=self.indicator_analysis_method or "mean")
            metrics.update({f"{freq}.{k}": float(v) for k, v in ind["value"].items()})
            objects[f"indicator_analysis_{freq}.pkl"] = ind
            logger.info("run %s, trade indicators (%s): %s", recorder.id, freq, ind["value"].to_dict())
        recorder.log_metrics(step=None, **metrics)
        self.save(**objects)
        logger.info("saved the portfolio analysis of run %s", recorder.id)
        return metrics

    def backtest_arguments(self, pred: pd.DataFrame | pd.Series, source: Source) -> dict[str, Any]:
        """The keyword arguments (all but ``source``) of the :func:`~qroll.backtest.run_backtest` this
        record runs on ``pred``: the config with ``"<PRED>"`` filled, Qlib's defaults for the keys
        it leaves out, and ``start_time``/``end_time`` None taken from ``pred``'s dates.

        Online rolling (:mod:`qroll.online.orders`) backtests a signal that is in no run with it,
        so the two backtests cannot drift apart.
        """
        filled = {"<PRED>": pred}
        strategy = fill_placeholder(self.strategy_config, filled)
        executor = fill_placeholder(self.executor_config, filled)
        backtest = self._time_range({**_QLIB_BACKTEST_DEFAULTS, **self.backtest_config}, pred, source)
        backtest["exchange_kwargs"] = {**_QLIB_EXCHANGE_DEFAULTS, **(backtest.get("exchange_kwargs") or {})}
        return {"strategy": strategy, "executor": executor, **backtest}

    def _time_range(self, backtest: dict[str, Any], pred: pd.DataFrame | pd.Series,
                    src: Source) -> dict[str, Any]:
        """Fill ``start_time``/``end_time`` None from the predictions' dates (Qlib 0.9.7's rule)."""
        if backtest["start_time"] is not None and backtest["end_time"] is not None:
            return backtest
        if "datetime" not in (pred.index.names or []):
            raise ConfigError(
                f"pred.pkl of run {self._recorder.id if self._recorder else '-'} has no 'datetime' index "
                f"level (it has {list(pred.index.names)}), so the backtest range cannot be taken from it; "
                "give backtest start_time and end_time"
            )
        dates = pd.DatetimeIndex(pred.index.get_level_values("datetime"))
        if backtest["start_time"] is None:
            backtest["start_time"] = dates.min()
        if backtest["end_time"] is None:
            days = src.calendar.all_days(future=False)
            # Qlib: get_date_by_shift(last, 1) on the calendar, clipped to its last day.
            end = days[min(int(days.searchsorted(dates.max(), side="right")), len(days) - 1)]
            # A daily step needs the next trading day: end on the last day that has one.
            full = src.calendar.all_days(future=True)
            if len(full) >= 2 and end > full[-2]:
                logger.info("backtest end_time %s is the calendar's last day: ending on %s instead",
                            f"{end:%Y-%m-%d}", f"{full[-2]:%Y-%m-%d}")
                end = full[-2]
            backtest["end_time"] = end
        return backtest

    def _open_source(self) -> Source:
        if self._source is None:
            arg = self._source_arg if self._source_arg is not None else self._task_source()
            if arg is None:
                arg = data_uri()
            if arg is None:
                raise ConfigError(
                    f"PortAnaRecord of run {self.recorder.id} needs the market data to backtest on: pass "
                    "source='qlib:///path/to/data' (or a Source), give the task's handler a 'source', or "
                    "set $QROLL_DATA"
                )
            self._source = open_source(os.fspath(arg)) if isinstance(arg, (str, os.PathLike)) else arg
        return self._source

    def _task_source(self) -> Any:
        """The ``source`` of the handler in the run's ``task`` artifact, or None."""
        recorder = self.recorder
        if "task" not in recorder.list_artifacts():
            return None
        try:
            task = recorder.load_object("task")
        except LoadObjectError as exc:
            logger.warning("run %s: cannot read its task for the data source: %s", recorder.id, exc)
            return None
        handler = _dig(task, "dataset", "kwargs", "handler")
        source = _dig(handler, "kwargs", "source") if isinstance(handler, Mapping) else None
        if source is None and handler is not None and not isinstance(handler, (Mapping, str)):
            source = getattr(handler, "source", None)  # a handler object in the task: its data
        return source

    def list(self) -> list[str]:
        """The artifacts this record writes, relative to ``portfolio_analysis/``."""
        paths = []
        for freq in self.all_freq:
            paths += [f"report_normal_{freq}.pkl", f"positions_normal_{freq}.pkl",
                      f"indicators_normal_{freq}.pkl", f"indicators_normal_{freq}_obj.pkl"]
        paths += [f"port_analysis_{freq}.pkl" for freq in self.risk_analysis_freq]
        paths += [f"indicator_analysis_{freq}.pkl" for freq in self.indicator_analysis_freq]
        return paths


def _skipped(recorder: Recorder, why: str) -> dict[str, float]:
    warnings.warn(f"PortAnaRecord skipped for run {recorder.id}: {why}; run SignalRecord on a DatasetH "
                  "with a test segment first", RecordSkippedWarning, stacklevel=3)
    return {}


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _copy_basic(obj: Any) -> Any:
    """Copy dicts, lists and tuples, share everything else (Qlib's ``deepcopy_basic_type``)."""
    if isinstance(obj, tuple):
        return tuple(_copy_basic(v) for v in obj)
    if isinstance(obj, list):
        return [_copy_basic(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _copy_basic(v) for k, v in obj.items()}
    return obj


def _freqs(value: str | list[str] | None, name: str) -> list[str]:
    items: list[Any] = (["1day"] if value is None else list(value) if isinstance(value, (list, tuple))
                        else [value])
    out: list[str] = []
    for item in items:
        freq = _FREQS.get(item.lower()) if isinstance(item, str) else None
        if freq is None:
            raise ConfigError(
                f"{name} {item!r} is not supported: qroll backtests daily steps only; use 'day' "
                "(or 'd', '1day')"
            )
        if freq not in out:
            out.append(freq)
    return out


def _backtest_block(block: Any) -> dict[str, Any]:
    if not isinstance(block, Mapping):
        raise ConfigError(f"PortAnaRecord config 'backtest' must be a dict, not {block!r}")
    missing = [k for k in ("start_time", "end_time") if k not in block]
    if missing:
        raise ConfigError(
            f"PortAnaRecord config 'backtest' lacks {missing}: give both start_time and end_time "
            "(None takes them from the predictions' dates)"
        )
    unknown = sorted(set(block) - set(_BACKTEST_KEYS))
    if unknown:
        raise ConfigError(
            f"PortAnaRecord config 'backtest' has unknown keys {unknown}; its keys are "
            f"{', '.join(_BACKTEST_KEYS)}"
        )
    return dict(block)


def _check_strategy(strategy: Any) -> None:
    if isinstance(strategy, TopkDropoutStrategy):
        return
    if not isinstance(strategy, Mapping):
        raise ConfigError(f"PortAnaRecord config 'strategy' must be a strategy config dict, not "
                          f"{type(strategy).__name__}")
    cls = resolve_class(strategy)
    if not (isinstance(cls, type) and issubclass(cls, TopkDropoutStrategy)):
        raise ConfigError(f"strategy class {strategy.get('class')!r} is not a strategy qroll's backtest "
                          "runs: use TopkDropoutStrategy")
    # Built once with "<PRED>" still in place: its arguments are checked before any backtest runs.
    cls(**dict(strategy.get("kwargs") or {}))


def _check_executor(executor: Any) -> None:
    check_executor(executor)
    kwargs = (executor.get("kwargs") or {}) if isinstance(executor, Mapping) else {}
    if not kwargs.get("generate_portfolio_metrics", False):
        raise ConfigError(
            "PortAnaRecord's executor must have generate_portfolio_metrics: True (without it there is "
            "no report to analyse; Qlib fails with IndexError)"
        )
