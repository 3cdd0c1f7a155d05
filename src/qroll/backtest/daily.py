"""Qlib's daily portfolio backtest loop, its report and trade indicators (reference §2, §6).

:func:`run_backtest` is the loop; it returns a :class:`BacktestResult` (report, positions, trade
indicators, orders). :func:`backtest_daily` is Qlib's ``qlib.contrib.evaluate.backtest_daily``
interface on top of it (report and positions only).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from qroll.backtest.benchmark import benchmark_returns
from qroll.backtest.exchange import Exchange, exchange_kwargs_check
from qroll.backtest.indicators import OrderRecord, indicator_frame, order_frame
from qroll.backtest.position import Position
from qroll.backtest.strategy import TopkDropoutStrategy
from qroll.config.instance import resolve_class
from qroll.data.source import Source, open_source
from qroll.errors import CalendarError, ConfigError
from qroll.home import data_uri

__all__ = ["BacktestResult", "REPORT_COLUMNS", "backtest_daily", "check_executor", "run_backtest"]

#: The daily report's columns, in Qlib's order.
REPORT_COLUMNS = ["account", "return", "total_turnover", "turnover", "total_cost", "cost", "value",
                  "cash", "bench"]

# qlib.contrib.evaluate.backtest_daily's exchange defaults (the standard config's costs).
_EXCHANGE_DEFAULTS = {"limit_threshold": None, "deal_price": None, "open_cost": 0.0005,
                      "close_cost": 0.0015, "min_cost": 5}


def backtest_daily(
    start_time: Any,
    end_time: Any,
    strategy: Any,
    executor: Any = None,
    account: float = 1e8,
    benchmark: Any = "SH000300",
    exchange_kwargs: Mapping[str, Any] | None = None,
    pos_type: str = "Position",
    *,
    source: str | Source | None = None,
) -> tuple[pd.DataFrame, dict[pd.Timestamp, Position]]:
    """Run Qlib's daily backtest of a strategy and return its report and positions.

    Day T trades on the prediction of the previous trading day at T's deal price; orders fill
    serially (sells first); holdings are marked to T's close; one report row per trading day.

    Parameters
    ----------
    start_time, end_time : date
        The backtest range; both snap inward to trading days. The trading day after the last
        step must exist in the calendar (as in Qlib).
    strategy : dict or TopkDropoutStrategy
        ``{"class": "TopkDropoutStrategy", "module_path": ..., "kwargs": {"signal": pred, ...}}``
        (Qlib's module paths accepted) or a strategy object.
    executor : dict, optional
        Qlib's executor config; only the daily ``SimulatorExecutor`` is supported.
    account : float, default 1e8
        Initial cash (money).
    benchmark : str, list of str, pd.Series or None, default "SH000300"
        Instrument code(s) of the source or a Series of daily returns; ``None`` means no
        benchmark (``bench`` is 0; qroll's fix: Qlib silently uses SH000300).
    exchange_kwargs : mapping, optional
        Exchange options (see :class:`~qroll.backtest.exchange.Exchange`); defaults: close deal
        price, limit 0.095, open cost 0.0005, close cost 0.0015, min cost 5 (money), lot 100.
    pos_type : str, default "Position"
        Only ``"Position"`` is supported.
    source : str or Source, optional
        Market data: a source or its URI. Callers that know the data pass it (the merged
        evaluation passes its run's); default ``$QROLL_DATA`` (see :func:`qroll.home.data_uri`).

    Returns
    -------
    report_normal : pd.DataFrame
        Index ``datetime`` (the steps), columns ``account, return, total_turnover, turnover,
        total_cost, cost, value, cash, bench``: money columns in the account's currency, the
        others fractions of the previous day's account value (``return`` is before costs).
    positions : dict of pd.Timestamp to Position
        The end-of-day position of each step.

    Raises
    ------
    ConfigError
        An unknown strategy class, option or executor; a signal that does not overlap the range.
    CalendarError
        A range outside the calendar, or ending on or after its last day.
    DataNotFoundError
        A benchmark code or deal-price field the source lacks.
    """
    result = run_backtest(start_time, end_time, strategy, executor, account, benchmark, exchange_kwargs,
                          pos_type, source=source)
    return result.report, result.positions


@dataclass(frozen=True)
class BacktestResult:
    """What one daily backtest produced.

    Attributes
    ----------
    report : pd.DataFrame
        Qlib's ``report_normal``: index ``datetime`` (the steps), columns
        :data:`REPORT_COLUMNS` (see :func:`backtest_daily`).
    positions : dict of pd.Timestamp to Position
        The end-of-day position of each step (Qlib's ``positions_normal``).
    indicators : pd.DataFrame
        Qlib's ``indicators_normal``: one row per step (index = step dates, unnamed), columns
        ``ffr`` (mean fill rate of the step's orders, a fraction), ``pa`` (price advantage, 0),
        ``pos`` (share of orders with ``pa > 0``, 0), ``deal_amount`` (Σ dealt amount, adjusted
        shares), ``value`` (Σ traded value, money), ``count`` (orders, int). A step without
        orders has NaN ``ffr``, ``pa`` and ``pos`` and zeros elsewhere.
    order_log : list of OrderRecord
        Every order sent to the exchange, in execution order, as logged (see :attr:`orders`).
    """

    report: pd.DataFrame
    positions: dict[pd.Timestamp, Position]
    indicators: pd.DataFrame
    order_log: list[OrderRecord] = field(repr=False, compare=False)

    @cached_property
    def orders(self) -> pd.DataFrame:
        """Every order as a frame, index ``(datetime, instrument)`` (see
        :class:`~qroll.backtest.indicators.TradeIndicators`); built on first use."""
        return order_frame(pd.DatetimeIndex(self.report.index), self.order_log)


def run_backtest(
    start_time: Any,
    end_time: Any,
    strategy: Any,
    executor: Any = None,
    account: float = 1e8,
    benchmark: Any = "SH000300",
    exchange_kwargs: Mapping[str, Any] | None = None,
    pos_type: str = "Position",
    *,
    source: str | Source | None = None,
) -> BacktestResult:
    """Run Qlib's daily backtest and return the report, positions and trade indicators.

    The parameters, defaults and errors are those of :func:`backtest_daily`, which returns only
    the report and the positions of this function's result.

    Returns
    -------
    BacktestResult
        ``report``, ``positions``, ``indicators`` (one row of trade indicators per step) and
        ``orders`` (one row per order).
    """
    if pos_type != "Position":
        raise ConfigError(f"pos_type {pos_type!r} is not supported; use 'Position'")
    if isinstance(account, bool) or not isinstance(account, numbers.Real):
        raise ConfigError(f"account {account!r} must be a number, the initial cash (money); qroll's "
                          "backtest does not start from holdings")
    check_executor(executor)
    src = _open(source)
    strat = _make_strategy(strategy)
    cal = src.calendar.all_days(future=True)
    start, end = pd.Timestamp(start_time), pd.Timestamp(end_time)
    a = int(cal.searchsorted(start, side="left"))
    b = int(cal.searchsorted(end, side="right"))  # steps are cal[a:b]
    if b <= a:
        raise CalendarError(f"backtest range {start:%Y-%m-%d}..{end:%Y-%m-%d} holds no trading day of the "
                            f"calendar ({cal[0]:%Y-%m-%d}..{cal[-1]:%Y-%m-%d}); choose dates inside it")
    if b >= len(cal):
        raise CalendarError(
            f"backtest end_time {end:%Y-%m-%d} is on or past the calendar's last day {cal[-1]:%Y-%m-%d}: "
            "a daily step needs the next trading day; end the backtest before "
            f"{cal[-1]:%Y-%m-%d}"
        )
    days = cal[a:b]
    kwargs: dict[str, Any] = dict(_EXCHANGE_DEFAULTS)
    kwargs.update(exchange_kwargs or {})
    exchange_kwargs_check(kwargs)
    exchange = Exchange(src, days, **kwargs)
    steps = strat.prepare(cal)
    if not any(a <= k < b for k in steps):
        raise ConfigError(
            f"the strategy signal does not overlap the backtest {days[0]:%Y-%m-%d}..{days[-1]:%Y-%m-%d} "
            "(day T trades on the prediction of the previous trading day); backtest over the "
            "signal's dates"
        )
    bench = benchmark_returns(benchmark, src, days)
    return _run(strat, exchange, days, a, float(account), bench)


def _run(strat: TopkDropoutStrategy, exchange: Exchange, days: pd.DatetimeIndex, a: int, account: float,
         bench: np.ndarray) -> BacktestResult:
    pos = Position(account)
    rows = np.empty((len(days), len(REPORT_COLUMNS)))
    positions: dict[pd.Timestamp, Position] = {}
    records: list[OrderRecord] = []  # every order, for the trade indicators
    total_val = total_cost = 0.0
    last_value = account
    for t, day in enumerate(days):
        prev_cost, prev_val = total_cost, total_val
        for order in strat.generate_orders(a + t, t, pos, exchange):
            val, cost, price, deal = exchange.fill(order.code, t, order.amount, order.buy, pos)
            if val > 1e-5:
                total_val += val
                total_cost += cost
            records.append((t, order.code, order.amount, deal, price, val, cost, order.buy))
        # Bar end: mark non-suspended holdings to the close, then age every holding by a day.
        for code in pos.get_stock_list():
            if not exchange.is_suspended(code, t):
                pos.position[code]["price"] = float(exchange.close[t, exchange.col[code]])
        for code in pos.get_stock_list():
            pos.position[code]["count_day"] += 1
        value = pos.calculate_value()
        stock_value = pos.calculate_stock_value()
        earning, cost_t = value - last_value, total_cost - prev_cost
        rows[t] = (value, (earning + cost_t) / last_value, total_val, (total_val - prev_val) / last_value,
                   total_cost, cost_t / last_value, stock_value, pos.get_cash(), bench[t])
        last_value = value
        pos.position["now_account_value"] = value
        for code in pos.get_stock_list():
            entry = pos.position[code]
            entry["weight"] = entry["amount"] * entry["price"] / value
        positions[day] = pos.copy()
    report = pd.DataFrame(rows, index=pd.DatetimeIndex(days, name="datetime"), columns=REPORT_COLUMNS)
    return BacktestResult(report, positions, indicator_frame(days, records), records)


def _open(source: str | Source | None) -> Source:
    if source is None:
        uri = data_uri()
        if uri is None:
            raise ConfigError("backtest_daily needs market data: pass source='qlib:///path' "
                              "or set $QROLL_DATA")
        return open_source(uri)
    if isinstance(source, (str, os.PathLike)):
        return open_source(os.fspath(source))
    return source


def _make_strategy(strategy: Any) -> TopkDropoutStrategy:
    if isinstance(strategy, Mapping):
        # The project's one class resolver: short names, qroll's and Qlib's module paths.
        cls = resolve_class(strategy)
        if not (isinstance(cls, type) and issubclass(cls, TopkDropoutStrategy)):
            raise ConfigError(f"strategy class {strategy.get('class')!r} is not a strategy qroll's backtest "
                              "runs: use TopkDropoutStrategy")
        return cls(**dict(strategy.get("kwargs") or {}))
    if isinstance(strategy, TopkDropoutStrategy):
        return strategy
    raise ConfigError(f"strategy {type(strategy).__name__} is not a strategy config dict or a "
                      "TopkDropoutStrategy object")


def check_executor(executor: Any) -> None:
    """Accept Qlib's daily ``SimulatorExecutor`` config (or None, its default); refuse the rest.

    Raises
    ------
    ConfigError
        For another executor class, another ``time_per_step``, or a value that is not a config dict.
    """
    if executor is None:
        return
    if isinstance(executor, Mapping):
        # "SimulatorExecutor" or Qlib's full "qlib.backtest.executor.SimulatorExecutor".
        name = str(executor.get("class", "SimulatorExecutor")).rpartition(".")[2]
        kwargs = executor.get("kwargs") or {}
        step = str(kwargs.get("time_per_step", "day")).lower()
        if name == "SimulatorExecutor" and step in ("day", "1day", "d", "1d"):
            return
        raise ConfigError(f"executor {name!r} with time_per_step {step!r} is not supported: qroll runs "
                          "Qlib's daily SimulatorExecutor only")
    raise ConfigError(f"executor {executor!r} must be an executor config dict (or None)")
