"""What a desk acts on: tomorrow's target holdings and orders from today's online signal.

A signal is a score per name; a desk needs trades. :func:`next_orders` turns the online signal of
an as-of day into the orders of the next trading day with the **same code** the run config's
backtest runs (:class:`~qroll.backtest.TopkDropoutStrategy.generate_orders`, configured as
:class:`~qroll.record.PortAnaRecord` configures it), from the holdings the backtest of the same
signal holds at the as-of day's close (:func:`holdings_at`). Replayed over past days, the orders
of each day are the trades the backtest makes on the next day.

Known limits, by nature of trading tomorrow on what is known today:

- the next day's prices are not known on the as-of day: every deal price is estimated by the
  as-of day's close, so buy amounts (the cash split over the buys, rounded to lots) and the cash
  sells bring in are estimates; sell amounts are exact (a sell is the whole holding);
- the next day's limits and suspensions are not known: every name quoted on the as-of day is
  taken as tradable; on the day, a name suspended or at its limit does not trade, as in the
  backtest (which then also spends the cash differently);
- where the data holds the next trading day (a replay of the past), ``prices="trade_day"`` uses
  that day's quotes and limits, and the orders equal the backtest's exactly, amounts included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from qroll.backtest.benchmark import market_mean_returns
from qroll.backtest.daily import BacktestResult, run_backtest
from qroll.backtest.exchange import Exchange, exchange_kwargs_check
from qroll.backtest.position import Position
from qroll.backtest.strategy import TopkDropoutStrategy, prepare_signal
from qroll.calendar import TradingCalendar
from qroll.config.instance import resolve_class
from qroll.data.asof import AsOfSource
from qroll.data.source import Ranges, Source, Spans, open_source
from qroll.errors import ConfigError, ConfigValueError
from qroll.online.strategy import as_of_day
from qroll.record.portfolio import PortAnaRecord

__all__ = ["ESTIMATE_NOTE", "Orders", "backtest_signal", "holdings_at", "next_orders"]

ESTIMATE_NOTE = (
    "prices are estimates: the deal price of every order is the close of {as_of}, because the next "
    "trading day's prices, limits and suspensions are not known on {as_of}; sell amounts are exact, buy "
    "amounts (and the cash sells bring in) are estimates, and a name suspended or at its limit on the day "
    "will not trade"
)
"""The caveat printed with estimated orders (``{as_of}``: the as-of day)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Orders:
    """The next trading day's orders and target holdings computed on an as-of day.

    Amounts are in adjusted shares (the data's ``$factor``-adjusted units, as the backtest trades
    them); prices in adjusted money per share; values and cash in the account's currency.
    """

    as_of: pd.Timestamp
    """The as-of day: the signal's last day and the holdings' day."""
    trade_day: pd.Timestamp | None
    """The trading day the orders are for, when the data's calendar knows it (else None)."""
    estimated: bool
    """True when the prices are the as-of close (the next day's are not known)."""
    holdings: pd.DataFrame
    """Now: index ``instrument``; ``amount``, ``price`` (the as-of close), ``value``, ``weight``,
    ``days_held`` (trading days)."""
    cash: float
    """Cash now."""
    orders: pd.DataFrame
    """One row per order, sells first then buys: ``instrument``, ``direction`` (``sell`` / ``buy``),
    ``amount`` (ordered), ``price`` (deal price), ``value`` (amount × price), ``deal_amount`` (what
    would fill at that price: the cash, holding and lot clips), ``score`` (the as-of day's signal)."""
    target: pd.DataFrame
    """After the orders fill at ``price``: index ``instrument``; ``amount``, ``price``, ``value``,
    ``weight``."""
    target_cash: float
    """Cash after the orders fill at ``price``, fees paid."""
    note: str
    """What is estimated, in words (empty when nothing is)."""


class _WithNextDay:
    """A source view whose calendar knows one day after its last: a daily step needs the next day.

    The backtest (as Qlib's) refuses to end on the calendar's last day, because a step ends on
    the next trading day; the holdings at the as-of day's close need a step ending after it.
    Nothing is read on that day.
    """

    def __init__(self, view: AsOfSource, next_day: pd.Timestamp) -> None:
        self._view = view
        self.uri = view.uri
        self._calendar = TradingCalendar(view.calendar.days, future=[next_day])

    @property
    def calendar(self) -> TradingCalendar:
        return self._calendar

    def markets(self) -> list[str]:
        return self._view.markets()

    def fields(self) -> list[str]:
        return self._view.fields()

    def instruments(self, market: str = "all") -> dict[str, Spans]:
        return self._view.instruments(market)

    def load(self, fields: Sequence[str], instruments: Sequence[str], start: Any = None,
             end: Any = None) -> dict[str, pd.DataFrame]:
        return self._view.load(fields, instruments, start, end)

    def stored_ranges(self, fields: Sequence[str], instruments: Sequence[str], start: Any = None,
                      end: Any = None) -> Ranges:
        return self._view.stored_ranges(fields, instruments, start, end)

    def fingerprint(self) -> str:
        return self._view.fingerprint()

    def fingerprint_until(self, day: Any) -> str:
        return self._view.fingerprint_until(day)


def _frame(signal: pd.Series | pd.DataFrame) -> pd.DataFrame:
    frame = signal.to_frame("score") if isinstance(signal, pd.Series) else signal
    if frame.index.nlevels != 2 or "datetime" not in frame.index.names:
        raise ConfigError("the signal must be indexed by (datetime, instrument): pass the online signal "
                          f"(qroll signals), not an index of {list(frame.index.names)}")
    return frame


def _open(source: Source | str) -> Source:
    return open_source(source) if isinstance(source, str) else source


def _arguments(signal: pd.DataFrame, config: Mapping[str, Any], source: Any) -> dict[str, Any]:
    """The run_backtest arguments the run config's backtest gives ``signal`` (PortAnaRecord's rules)."""
    if not isinstance(config, Mapping) or "strategy" not in config or "backtest" not in config:
        raise ConfigError(f"the backtest config must be a port_analysis_config (strategy, backtest), got "
                          f"{config!r}; the run config's backtest: null turns the backtest off")
    return PortAnaRecord(None, dict(config)).backtest_arguments(signal, source)


def _strategy(config: Any) -> TopkDropoutStrategy:
    cls = resolve_class(config)
    if not (isinstance(cls, type) and issubclass(cls, TopkDropoutStrategy)):
        raise ConfigError(f"strategy class {config.get('class')!r} is not a strategy qroll's backtest runs: "
                          "use TopkDropoutStrategy")
    return cls(**dict(config.get("kwargs") or {}))


def backtest_signal(signal: pd.Series | pd.DataFrame, config: Mapping[str, Any], source: Source | str, *,
                    market: Any = "all", benchmark: bool = True) -> BacktestResult:
    """Backtest a signal as the run config's ``backtest:`` backtests a merged signal.

    The range, defaults and strategy are :class:`~qroll.record.PortAnaRecord`'s (``start_time`` /
    ``end_time`` None: the signal's first day / the trading day after its last, clipped to the
    calendar); a config without a benchmark compares against the equal-weighted mean return of
    ``market``, as ``qroll run`` does.

    Parameters
    ----------
    signal : Series or DataFrame
        Scores indexed by (``datetime``, ``instrument``).
    config : mapping
        A :attr:`~qroll.run_config.RunConfig.backtest` (Qlib's ``port_analysis_config``).
    source : Source or str
        The market data; pass an :class:`~qroll.data.asof.AsOfSource` to see nothing after a day.
    market : str or list of str, default "all"
        The universe of the default benchmark.
    benchmark : bool, default True
        False runs without any benchmark (``bench`` 0): positions and trades do not depend on it.

    Returns
    -------
    BacktestResult
        Report, positions, trade indicators and orders.

    Raises
    ------
    ConfigError, CalendarError, DataNotFoundError
        As :func:`~qroll.backtest.run_backtest`.
    """
    src = _open(source)
    frame = _frame(signal)
    args = _arguments(frame, config, src)
    if not benchmark:
        args["benchmark"] = None
    elif config["backtest"].get("benchmark") is None:
        cal = src.calendar.days
        days = cal[(cal >= pd.Timestamp(args["start_time"])) & (cal <= pd.Timestamp(args["end_time"]))]
        args["benchmark"] = market_mean_returns(src, market, days)
    return run_backtest(source=src, **args)


def holdings_at(signal: pd.Series | pd.DataFrame, config: Mapping[str, Any], source: Source | str,
                as_of: Any) -> Position:
    """The backtest's holdings at the as-of day's close: the signal up to that day, nothing later read.

    The backtest is the run config's (:func:`backtest_signal`), from its ``start_time`` (or the
    signal's first day) through ``as_of``; before its first trade the holdings are the account's
    cash.

    Raises
    ------
    ConfigValueError
        If ``as_of`` is before the data's first day.
    """
    src = _open(source)
    view = AsOfSource(src, as_of_day(as_of, "as_of"))
    day = view.as_of
    ext = _WithNextDay(view, _next_day(src, day)[1])
    frame = _cut(_frame(signal), day)
    return _holdings(frame, _resolved(frame, config, ext, day), ext, day)


def _cut(frame: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    return frame[frame.index.get_level_values("datetime") <= day]


def _next_day(source: Source, day: pd.Timestamp) -> tuple[pd.Timestamp | None, pd.Timestamp]:
    """The trading day after ``day`` when the calendar knows it, and a day to step to either way."""
    days = source.calendar.all_days(future=True)
    at = int(days.searchsorted(day, side="right"))
    known = days[at] if at < len(days) else None
    # Only a step index: no value is read on it, so any later date serves when none is known.
    return known, known if known is not None else day + pd.offsets.BDay(1)


def _resolved(frame: pd.DataFrame, config: Mapping[str, Any], ext: _WithNextDay,
              day: pd.Timestamp) -> dict[str, Any]:
    """The backtest arguments of ``frame`` (of a one-row stand-in when it is empty: the config's
    account and exchange still apply)."""
    if frame.empty:
        index = pd.MultiIndex.from_tuples([(day, "")], names=["datetime", "instrument"])
        frame = pd.DataFrame({"score": [np.nan]}, index=index)
    return _arguments(frame, config, ext)


def _holdings(frame: pd.DataFrame, args: dict[str, Any], ext: _WithNextDay, day: pd.Timestamp) -> Position:
    cal = ext.calendar.all_days(future=True)
    a = int(cal.searchsorted(pd.Timestamp(args["start_time"]), side="left"))
    b = int(cal.searchsorted(day, side="right"))
    if frame.empty or not any(a <= k < b for k in prepare_signal(frame, cal)):
        return Position(float(args["account"]))  # nothing traded yet: the starting cash
    # The benchmark changes no trade; the last step is the as-of day.
    result = run_backtest(source=ext, **{**args, "benchmark": None, "end_time": day})
    return result.positions[day].copy()


def _estimating(exchange: Exchange) -> Exchange:
    """The as-of day's exchange as tomorrow's estimate: the close as every deal price, every quoted
    name tradable (tomorrow's limits are not known; a name without a close stays suspended)."""
    exchange.buy_price = exchange.close.copy()
    exchange.sell_price = exchange.close.copy()
    exchange.limit_buy = exchange.suspended.copy()
    exchange.limit_sell = exchange.suspended.copy()
    return exchange


def next_orders(signal: pd.Series | pd.DataFrame, config: Mapping[str, Any], source: Source | str,
                as_of: Any, *, prices: str = "as_of") -> Orders:
    """The next trading day's orders and target holdings from the online signal of ``as_of``.

    The holdings are :func:`holdings_at` ``as_of``; the orders are what the run config's strategy
    (:meth:`~qroll.backtest.TopkDropoutStrategy.generate_orders`, the backtest's own code) sends on
    the next trading day on the signal of ``as_of``.

    Parameters
    ----------
    signal : Series or DataFrame
        The online signal, indexed by (``datetime``, ``instrument``); days after ``as_of`` are
        ignored.
    config : mapping
        The run config's ``backtest:`` (:attr:`~qroll.run_config.RunConfig.backtest`).
    source : Source or str
        The market data.
    as_of : date
        The as-of day (a non-trading day means the trading day before it).
    prices : {"as_of", "trade_day"}, default "as_of"
        ``"as_of"``: every deal price is the as-of close and every quoted name is tradable (the
        next day is not known yet; see the module docstring). ``"trade_day"``: the next trading
        day's own quotes and limits, for a day the data already holds (a replay).

    Returns
    -------
    Orders

    Raises
    ------
    ConfigValueError
        For an unknown ``prices``, or ``"trade_day"`` when the data does not hold that day.
    ConfigError
        For a backtest config qroll's backtest cannot run.
    """
    if prices not in ("as_of", "trade_day"):
        raise ConfigValueError(f"prices={prices!r}: use 'as_of' (the as-of close, an estimate) or "
                               "'trade_day' (the next day's own quotes, for a day the data holds)")
    src = _open(source)
    view = AsOfSource(src, as_of_day(as_of, "as_of"))
    day = view.as_of
    trade_day, step_day = _next_day(src, day)
    ext = _WithNextDay(view, step_day)
    frame = _cut(_frame(signal), day)
    args = _resolved(frame, config, ext, day)
    position = _holdings(frame, args, ext, day)
    exchange_kwargs = dict(args["exchange_kwargs"])
    exchange_kwargs_check(exchange_kwargs)
    if prices == "trade_day":
        if trade_day is None or trade_day > src.calendar.last_day:
            raise ConfigValueError(f"prices='trade_day': the data holds no trading day after {day.date()}; "
                                   "use prices='as_of' (estimates at the as-of close)")
        # One day's quotes: Qlib's rule that a row without a factor anywhere in the backtest turns
        # lot rounding off is judged on this day alone (data with factors everywhere: no difference).
        exchange = Exchange(src, pd.DatetimeIndex([trade_day]), **exchange_kwargs)
    else:
        exchange = _estimating(Exchange(view, pd.DatetimeIndex([day]), **exchange_kwargs))
    cal = ext.calendar.all_days(future=True)
    sent = []
    if not frame.empty:
        strategy = _strategy(args["strategy"])
        strategy.prepare(cal)
        sent = strategy.generate_orders(len(cal) - 1, 0, position, exchange)
    today = frame[frame.index.get_level_values("datetime") == day]
    scores: pd.Series = today.iloc[:, 0].droplevel("datetime")
    after = position.copy()
    rows = []
    for order in sent:
        _, _, _, deal = exchange.fill(order.code, 0, order.amount, order.buy, after)
        price = exchange.deal_price(order.code, 0, order.buy)
        rows.append({"instrument": order.code, "direction": "buy" if order.buy else "sell",
                     "amount": order.amount, "price": price, "value": order.amount * price,
                     "deal_amount": deal, "score": float(scores.get(order.code, np.nan))})
    columns = ["instrument", "direction", "amount", "price", "value", "deal_amount", "score"]
    estimated = prices == "as_of"
    return Orders(
        as_of=day,
        trade_day=trade_day,
        estimated=estimated,
        holdings=_table(position, lambda code: position.get_stock_price(code), days=True),
        cash=position.get_cash(),
        orders=pd.DataFrame(rows, columns=columns),
        target=_table(after, lambda code: _mark(exchange, code, after)),
        target_cash=after.get_cash(),
        note=ESTIMATE_NOTE.format(as_of=f"{day:%Y-%m-%d}") if estimated else "",
    )


def _mark(exchange: Exchange, code: str, position: Position) -> float:
    j = exchange.col.get(code)
    close = float(exchange.close[0, j]) if j is not None else float("nan")
    return close if np.isfinite(close) else position.get_stock_price(code)


def _table(position: Position, price_of: Any, days: bool = False) -> pd.DataFrame:
    codes = position.get_stock_list()
    amount = np.array([position.get_stock_amount(c) for c in codes], dtype=np.float64)
    price = np.array([price_of(c) for c in codes], dtype=np.float64)
    value = amount * price
    total = float(np.nansum(value)) + position.get_cash()
    frame = pd.DataFrame({"amount": amount, "price": price, "value": value,
                          "weight": value / total if total > 0 else np.nan},
                         index=pd.Index(codes, name="instrument"))
    if days:
        frame["days_held"] = [position.get_stock_count(c) for c in codes]
    return frame.sort_index()
