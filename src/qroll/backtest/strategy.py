"""``TopkDropoutStrategy`` and the signal it reads, with Qlib's semantics (reference §3, §4).

qroll's deliberate fixes to Qlib's behaviour, everywhere else the numbers are Qlib's:

- ties in the ranking are broken stably, by instrument name (Qlib's quicksort order is undefined
  and CPU dependent);
- when more than ``topk + n_drop`` stocks are held (planned sells that failed), the strategy buys
  nothing new that day (Qlib's negative slice makes it buy almost the whole universe).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from qroll.backtest.exchange import Exchange
from qroll.backtest.position import Position
from qroll.errors import ConfigError

__all__ = ["Order", "TopkDropoutStrategy", "prepare_signal"]


@dataclass
class Order:
    """One order: ``amount`` in adjusted shares of ``code``, a buy when ``buy``."""

    code: str
    amount: float
    buy: bool


def prepare_signal(signal: Any, calendar: pd.DatetimeIndex) -> dict[int, pd.Series]:
    """Group the prediction by the step that trades on it.

    The step trading on calendar day ``T = calendar[k]`` reads the rows dated in ``[calendar[k-1],
    T)`` (Qlib's one-bar shift) and takes per instrument the last non-NaN score.

    Parameters
    ----------
    signal : pd.Series or pd.DataFrame
        Scores indexed by ``(datetime, instrument)``; a DataFrame's first column is used.
    calendar : pd.DatetimeIndex
        The trading calendar (future days included).

    Returns
    -------
    dict of int to pd.Series
        Calendar position k → scores (float64) indexed by instrument, in name order.

    Raises
    ------
    ConfigError
        If the signal is not indexed by (datetime, instrument).
    """
    if isinstance(signal, pd.DataFrame):
        signal = signal.iloc[:, 0]
    if not isinstance(signal, pd.Series) or signal.index.nlevels != 2:
        raise ConfigError(
            f"the strategy signal must be a pd.Series or pd.DataFrame indexed by (datetime, instrument), "
            f"not {type(signal).__name__}; pass the pred DataFrame of a SignalRecord"
        )
    names = list(signal.index.names)
    dt_level = names.index("datetime") if "datetime" in names else 0
    dates = pd.DatetimeIndex(signal.index.get_level_values(dt_level))
    codes = signal.index.get_level_values(1 - dt_level).astype(str)
    step = calendar.searchsorted(dates, side="right")
    frame = pd.DataFrame({"step": step, "date": dates, "code": codes,
                          "score": signal.to_numpy(dtype=np.float64)})
    frame = frame[(dates >= calendar[0]) & (step < len(calendar))]
    frame = frame.sort_values(["step", "date"], kind="stable").dropna(subset=["score"])
    last = frame.groupby(["step", "code"], sort=True)["score"].last()
    return {int(k): s.droplevel(0) for k, s in last.groupby(level=0, sort=False)}


def _rank(codes: np.ndarray, values: np.ndarray) -> list[str]:
    """Codes by descending score, NaN last, ties in name order (``codes`` come name-sorted)."""
    return codes[np.argsort(-values, kind="stable")].tolist()


def _arrays(scores: pd.Series) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """A step's scores (name-sorted by :func:`prepare_signal`'s groupby) as code and value arrays
    plus a code → row map (plain numpy: pandas reindex/sort per day was half of a CSI300
    backtest's time)."""
    if not scores.index.is_monotonic_increasing:  # ties are broken in name order: keep it so
        scores = scores.sort_index(kind="stable")
    codes = scores.index.to_numpy(dtype=object)
    return codes, scores.to_numpy(dtype=np.float64), {c: i for i, c in enumerate(codes)}


def _subset(codes: set[str], arrays: tuple[np.ndarray, np.ndarray, dict[str, int]]) -> list[str]:
    """Rank ``codes`` by the step's scores, NaN for codes without one (``scores.reindex``)."""
    _, values, row = arrays
    names = np.array(sorted(codes), dtype=object)
    vals = np.array([values[row[c]] if c in row else np.nan for c in names], dtype=np.float64)
    return _rank(names, vals)


class TopkDropoutStrategy:
    """Hold the ``topk`` best-scored stocks, replacing at most ``n_drop`` a day (Qlib's algorithm).

    Parameters
    ----------
    signal : pd.DataFrame or pd.Series
        Scores indexed by ``(datetime, instrument)``; the step trading on day T uses the scores of
        the previous trading day.
    topk : int
        Target number of holdings.
    n_drop : int
        Most holdings replaced per day (0 plans to sell every holding, as in Qlib).
    method_sell : {"bottom", "random"}, default "bottom"
        Sell the lowest-ranked holdings, or a random choice (numpy's global RNG, unseeded as Qlib).
    method_buy : {"top", "random"}, default "top"
        Buy the best-ranked names not held, or a random choice among the top ``topk``.
    hold_thresh : int, default 1
        Sell only holdings held at least this many trading days.
    only_tradable : bool, default False
        Keep only names tradable today in the selection lists.
    forbid_all_trade_at_limit : bool, default True
        Any limit flag blocks a buy or sell; False: only the order's own direction.
    risk_degree : float, default 0.95
        Fraction of the cash spent on the day's buys.

    Notes
    -----
    Ties in the ranking are broken by instrument name, and when more than ``topk + n_drop``
    stocks are held the strategy buys nothing new: both are deliberate fixes of Qlib, whose tie
    order is undefined and which then buys almost the whole universe.
    """

    def __init__(self, signal: Any = None, topk: int = 50, n_drop: int = 5, method_sell: str = "bottom",
                 method_buy: str = "top", hold_thresh: int = 1, only_tradable: bool = False,
                 forbid_all_trade_at_limit: bool = True, risk_degree: float = 0.95, **kwargs: Any) -> None:
        if kwargs:
            raise ConfigError(f"TopkDropoutStrategy got unknown arguments {sorted(kwargs)}")
        if method_sell not in ("bottom", "random") or method_buy not in ("top", "random"):
            raise ConfigError(f"method_sell {method_sell!r} / method_buy {method_buy!r}: use "
                              "'bottom'|'random' and 'top'|'random'")
        if signal is None:
            raise ConfigError("TopkDropoutStrategy needs a signal (the pred DataFrame)")
        self.signal = signal
        self.topk, self.n_drop = int(topk), int(n_drop)
        self.method_sell, self.method_buy = method_sell, method_buy
        self.hold_thresh = hold_thresh
        self.only_tradable = only_tradable
        self.forbid_all_trade_at_limit = forbid_all_trade_at_limit
        self.risk_degree = float(risk_degree)
        self._steps: dict[int, pd.Series] | None = None

    def prepare(self, calendar: pd.DatetimeIndex) -> dict[int, pd.Series]:
        """Group the signal by step (done once per backtest)."""
        self._steps = prepare_signal(self.signal, calendar)
        return self._steps

    def generate_orders(self, k: int, t: int, position: Position, exchange: Exchange) -> list[Order]:
        """The day's orders: sells (in holding order), then buys (in ranking order).

        Parameters
        ----------
        k : int
            Calendar position of the trading day.
        t : int
            Step index into the exchange's days.
        position, exchange
            The current position (not modified) and the exchange.
        """
        assert self._steps is not None, "call prepare() first"
        scores = self._steps.get(k)
        if scores is None or scores.empty:
            return []

        def ok(code: str, direction: str | None = None) -> bool:
            return exchange.is_tradable(code, t, direction)

        def first_n(li: list[str], n: int) -> list[str]:
            if not self.only_tradable:
                # qroll's fix: Qlib's li[:n] with n < 0 keeps all but the last |n| names.
                return li[:n] if n >= 0 else []
            # Qlib's loop appends before it tests the count, so n <= 0 still gives one name.
            res = []
            for code in li:
                if ok(code):
                    res.append(code)
                    if len(res) >= n:
                        break
            return res

        def last_n(li: list[str], n: int) -> list[str]:
            if not self.only_tradable:
                return li[-n:]  # n = 0 takes the whole list, as in Qlib (n_drop = 0)
            res = []
            for code in reversed(li):
                if ok(code):
                    res.append(code)
                    if len(res) >= n:
                        break
            return res[::-1]

        temp = position.copy()
        cash = temp.get_cash()
        held = temp.get_stock_list()
        held_set = set(held)
        arrays = _arrays(scores)
        codes, values, _ = arrays
        last = _subset(held_set, arrays)
        n_today = self.n_drop + self.topk - len(last)
        if self.method_buy == "top":
            others = np.fromiter((c not in held_set for c in codes), dtype=bool, count=len(codes))
            today = first_n(_rank(codes[others], values[others]), n_today)
        else:
            candi = [c for c in first_n(_rank(codes, values), self.topk) if c not in held_set]
            # Qlib falls back to every candidate when there are fewer than n; qroll buys none
            # when n <= 0 (Qlib's negative n raises there and it buys all candidates).
            if n_today <= 0:
                today = []
            elif len(candi) < n_today:
                today = candi
            else:
                today = [str(c) for c in np.random.choice(candi, n_today, replace=False)]
        comb = _subset(held_set | set(today), arrays)
        if self.method_sell == "bottom":
            bottom = set(last_n(comb, self.n_drop))
            sell = {c for c in last if c in bottom}
        else:
            cands = [c for c in last if ok(c)] if self.only_tradable else last
            if not last:
                sell = set()
            elif len(cands) < self.n_drop:
                sell = set(cands)  # Qlib's fallback on ValueError: every candidate
            else:
                sell = {str(c) for c in np.random.choice(cands, self.n_drop, replace=False)}
        buy = today[: max(0, len(sell) + self.topk - len(last))]

        orders: list[Order] = []
        sell_dir = None if self.forbid_all_trade_at_limit else "sell"
        for code in held:
            if not ok(code, sell_dir) or code not in sell:
                continue
            if temp.get_stock_count(code) < self.hold_thresh:
                continue
            amount = temp.get_stock_amount(code)
            if exchange.is_tradable(code, t, "sell"):
                orders.append(Order(code, amount, False))
                val, cost, _, _ = exchange.fill(code, t, amount, False, temp)
                cash += val - cost
        value = cash * self.risk_degree / len(buy) if buy else 0.0
        buy_dir = None if self.forbid_all_trade_at_limit else "buy"
        for code in buy:
            if not ok(code, buy_dir):
                continue
            price = exchange.deal_price(code, t, True)
            factor = float(exchange.factor[t, exchange.col[code]])
            orders.append(Order(code, exchange.round_lot(value / price, factor), True))
        return orders
