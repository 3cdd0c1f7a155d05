"""A signal judged as ``qroll run`` judges a merged signal: IC against the labels, and the backtest.

``qroll simulate`` replays days one by one; its day-by-day signal is then judged here with the run
config's own label (the first template's handler) and ``backtest:``, on the data up to the span's
last day only.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from qroll.analysis.risk import risk_analysis
from qroll.analysis.signal import SignalFigures, calc_ic, ic_summary
from qroll.collect.merged import describe_benchmark
from qroll.config import init_instance_by_config
from qroll.data.asof import AsOfSource
from qroll.data.source import Source
from qroll.errors import QrollError
from qroll.online.orders import backtest_signal
from qroll.tasks import shape

if TYPE_CHECKING:
    # Only the type: a run config is read, never built here (run_config.py sits above online/).
    from qroll.backtest.daily import BacktestResult
    from qroll.run_config import RunConfig

__all__ = ["SignalFigures", "judge", "labels", "templates"]

log = logging.getLogger("qroll.online")


def templates(config: RunConfig) -> list[dict[str, Any]]:
    """The config's templates as ``qroll run`` trains them: a handler naming no source reads ``data``."""
    out = []
    for task in config.tasks:
        task = copy.deepcopy(dict(task))
        handler = shape.handler_config(task)
        if isinstance(handler, dict):
            kwargs = handler.setdefault("kwargs", {}) or {}
            handler["kwargs"] = kwargs
            kwargs.setdefault("source", config.data)
        out.append(task)
    return out


def _market(config: RunConfig) -> Any:
    return (shape.handler_kwargs(config.tasks[0]) or {}).get("instruments", "all")


def labels(config: RunConfig, source: Source, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series | None:
    """The raw label of the first template's handler over ``start..end`` on ``source`` (None without one).

    Only the label expressions are computed (no feature), on the handler's universe.
    """
    from qroll.data.features import compute_features

    template = templates(config)[0]
    handler_cfg = shape.handler_config(template)
    if not isinstance(handler_cfg, Mapping):
        return None
    cfg = copy.deepcopy(dict(handler_cfg))
    cfg["kwargs"] = {**dict(cfg.get("kwargs") or {}), "source": source, "cache": False}
    handler = init_instance_by_config(cfg, default_module="qroll.data.handler")
    try:
        _, (exprs, names) = handler.feature_config()
    except QrollError as exc:
        log.warning("no label to judge the simulated signal with: %s", exc)
        return None
    if not exprs:
        return None
    frame = compute_features(source, [], [], exprs, names, handler.instruments, start, end)
    series: pd.Series = frame.iloc[:, 0].astype("float64")
    series.name = "label"
    return series


def judge(config: RunConfig, data: Source, signal: pd.Series,
          days: pd.DatetimeIndex) -> tuple[pd.Series | None, SignalFigures, BacktestResult | None]:
    """A day-by-day signal over ``days`` judged as ``qroll run`` judges a merged signal.

    The IC against the raw label of the data up to the last day (:func:`labels`: the last days'
    labels look past it and are NaN), and the config's ``backtest:`` on the data up to the last
    day (:func:`~qroll.online.orders.backtest_signal`; it ends the day before, since a step needs
    the next day); no backtest with ``backtest: null`` or fewer than 3 days.

    Returns
    -------
    (label, figures, backtest)
        The label of the signal's rows (or None), the figures, the backtest (or None).
    """
    seen = AsOfSource(data, days[-1])
    label = labels(config, seen, days[0], days[-1]) if len(signal) else None
    ic: dict[str, float] = dict.fromkeys(("IC", "ICIR", "Rank IC", "Rank ICIR"), math.nan)
    if label is not None and len(signal):
        ic = ic_summary(*calc_ic(signal, label.reindex(signal.index), dropna=True))
    result = None
    figures = dict.fromkeys(("excess_return", "excess_return_with_cost", "information_ratio_with_cost",
                             "max_drawdown_with_cost"), math.nan)
    benchmark = ""
    if config.backtest is not None and len(days) >= 3 and len(signal):
        result = backtest_signal(signal, config.backtest, seen, market=_market(config))
        report = result.report
        excess = report["return"] - report["bench"]
        plain = risk_analysis(excess, freq="day")["risk"]
        costly = risk_analysis(excess - report["cost"], freq="day")["risk"]
        figures = {"excess_return": float(plain["annualized_return"]),
                   "excess_return_with_cost": float(costly["annualized_return"]),
                   "information_ratio_with_cost": float(costly["information_ratio"]),
                   "max_drawdown_with_cost": float(costly["max_drawdown"])}
        benchmark = describe_benchmark(config.backtest, _market(config))
    dates = signal.index.get_level_values("datetime") if len(signal) else pd.DatetimeIndex([])
    summary = SignalFigures(days=int(dates.nunique()), first_day=dates.min() if len(dates) else None,
                            last_day=dates.max() if len(dates) else None, ic=ic["IC"], icir=ic["ICIR"],
                            rank_ic=ic["Rank IC"], rank_icir=ic["Rank ICIR"], benchmark=benchmark, **figures)
    return label, summary, result
