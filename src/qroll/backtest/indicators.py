"""Trade indicators of a daily backtest: fill rate, price advantage and order counts (reference §6.6).

Qlib's ``Indicator`` for the atomic daily ``SimulatorExecutor``: per step, each order's fill rate is
``deal_amount / amount`` (``0 / 0`` gives NaN and is skipped by the mean), its price advantage is 0
(the deal price is its own baseline at the innermost level), and the step's row aggregates them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["INDICATOR_COLUMNS", "ORDER_COLUMNS", "OrderRecord", "TradeIndicators", "indicator_frame",
           "numpy_sum", "order_frame", "step_indicators"]

#: The columns of the per-step indicator frame, in Qlib's order.
INDICATOR_COLUMNS = ["ffr", "pa", "pos", "deal_amount", "value", "count"]
#: The columns of the per-order frame (Qlib's order-indicator metrics, daily executor).
ORDER_COLUMNS = ["amount", "deal_amount", "trade_price", "trade_value", "trade_cost", "trade_dir", "ffr",
                 "pa"]

#: One order as the backtest logs it: ``(step, code, amount, deal_amount, trade_price, trade_value,
#: trade_cost, is_buy)``, ``step`` a position in the backtest's days.
OrderRecord = tuple[int, str, float, float, float, float, float, bool]

_NAN = float("nan")
_EMPTY = (_NAN, _NAN, _NAN, 0.0, 0.0, 0)


def step_indicators(amounts: Sequence[float], deals: Sequence[float],
                    values: Sequence[float]) -> tuple[float, float, float, float, float, int]:
    """One step's ``(ffr, pa, pos, deal_amount, value, count)`` from its orders, as Qlib computes them.

    Parameters
    ----------
    amounts, deals : sequence of float
        Ordered and dealt amount of each order of the step (adjusted shares, unsigned), in
        execution order.
    values : sequence of float
        Traded value of each order (money, unsigned).

    Returns
    -------
    tuple
        ``ffr``: mean fill rate over the orders whose rate is defined (fraction; NaN when none
        is); ``pa`` and ``pos``: 0.0 (price advantage and the share of orders with a positive
        one); ``deal_amount`` (adjusted shares) and ``value`` (money): sums over the orders;
        ``count``: the number of orders. A step without orders gives ``(nan, nan, nan, 0.0, 0.0,
        0)``.

    Examples
    --------
    >>> step_indicators([100.0, 200.0, 0.0], [100.0, 50.0, 0.0], [1000.0, 500.0, 0.0])
    (0.625, 0.0, 0.0, 150.0, 1500.0, 3)
    >>> step_indicators([], [], [])
    (nan, nan, nan, 0.0, 0.0, 0)
    """
    count = len(amounts)
    if count == 0:
        return _EMPTY
    # Plain Python (a step has a handful of orders; numpy's per-call cost was 3 % of a backtest),
    # summing in numpy's order so the figures are those of Qlib's np.nanmean / np.nansum.
    rates = []
    defined = 0
    for ordered, dealt in zip(amounts, deals, strict=True):
        if ordered:
            rates.append(dealt / ordered)
            defined += 1
        elif dealt:
            rates.append(math.copysign(math.inf, dealt))
            defined += 1
        else:
            rates.append(0.0)  # 0 / 0: NaN, which np.nanmean counts as 0 over the defined ones
    ffr = numpy_sum(rates) / defined if defined else _NAN
    deal_amount = numpy_sum([abs(x) for x in deals])
    value = numpy_sum([abs(x) for x in values])
    return ffr, 0.0, 0.0, deal_amount, value, count


def numpy_sum(values: Sequence[float]) -> float:
    """``np.sum`` of a float64 sequence, bit for bit, in plain Python (numpy's pairwise summation).

    numpy adds fewer than 8 terms one by one; up to 128 terms in 8 interleaved partial sums,
    combined as ``((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7))``, then the remainder; longer runs are split
    in two halves (the first a multiple of 8) summed the same way.

    Examples
    --------
    >>> import numpy as np
    >>> x = [0.1 * k for k in range(300)]
    >>> numpy_sum(x) == float(np.sum(np.array(x)))
    True
    """
    return _pairwise(values, 0, len(values))


def _pairwise(a: Sequence[float], lo: int, n: int) -> float:
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    if n <= 128:
        r0, r1, r2, r3, r4, r5, r6, r7 = a[lo:lo + 8]
        i, stop = lo + 8, lo + n - n % 8
        while i < stop:
            r0 += a[i]
            r1 += a[i + 1]
            r2 += a[i + 2]
            r3 += a[i + 3]
            r4 += a[i + 4]
            r5 += a[i + 5]
            r6 += a[i + 6]
            r7 += a[i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        for j in range(stop, lo + n):
            res += a[j]
        return res
    half = n // 2
    half -= half % 8
    return _pairwise(a, lo, half) + _pairwise(a, lo + half, n - half)


def indicator_frame(days: pd.DatetimeIndex, records: Sequence[OrderRecord]) -> pd.DataFrame:
    """The per-step indicator frame (index = ``days``, unnamed, as Qlib's) of a backtest's orders.

    Parameters
    ----------
    days : pd.DatetimeIndex
        The steps' trading days.
    records : sequence of OrderRecord
        Every order in execution order (see :func:`order_frame`); steps without one get the
        no-order row of :func:`step_indicators`.
    """
    rows = [_EMPTY] * len(days)
    i, n = 0, len(records)
    while i < n:
        step, j = records[i][0], i
        while j < n and records[j][0] == step:
            j += 1
        chunk = records[i:j]
        rows[step] = step_indicators([r[2] for r in chunk], [r[3] for r in chunk], [r[5] for r in chunk])
        i = j
    values = np.array(rows, dtype=np.float64).reshape(len(days), len(INDICATOR_COLUMNS))
    frame = pd.DataFrame(values[:, :-1], index=pd.DatetimeIndex(days, name=None),
                         columns=INDICATOR_COLUMNS[:-1])
    frame["count"] = values[:, -1].astype(np.int64)
    return frame


def order_frame(days: pd.DatetimeIndex, records: Sequence[OrderRecord]) -> pd.DataFrame:
    """The per-order frame: index ``(datetime, instrument)``, columns :data:`ORDER_COLUMNS`.

    ``records`` are :data:`OrderRecord` tuples, ``step`` a position in ``days``; ``trade_dir`` is 1
    for a buy and 0 for a sell (Qlib's ``OrderDir``).
    """
    columns = list(zip(*records, strict=True)) if records else [()] * 8
    step, codes = np.asarray(columns[0], dtype=np.int64), list(columns[1])
    index = pd.MultiIndex.from_arrays([days[step], pd.Index(codes, dtype=object)],
                                      names=["datetime", "instrument"])
    amount, deal = (np.asarray(c, dtype=np.float64) for c in columns[2:4])
    with np.errstate(divide="ignore", invalid="ignore"):
        ffr = deal / amount
    data = {"amount": amount, "deal_amount": deal, "trade_price": np.asarray(columns[4], dtype=np.float64),
            "trade_value": np.asarray(columns[5], dtype=np.float64),
            "trade_cost": np.asarray(columns[6], dtype=np.float64),
            "trade_dir": np.asarray(columns[7], dtype=np.int64), "ffr": ffr, "pa": np.zeros(len(amount))}
    return pd.DataFrame(data, index=index, columns=ORDER_COLUMNS)


@dataclass(frozen=True)
class TradeIndicators:
    """The trade indicators of one backtest (what ``indicators_normal_1day_obj.pkl`` holds).

    Qlib saves its ``Indicator`` object there; qroll saves this one, which offers the same frame
    through Qlib's method name :meth:`generate_trade_indicators_dataframe`.

    Attributes
    ----------
    frame : pd.DataFrame
        One row per step (index = step dates), columns ``ffr, pa, pos`` (fractions),
        ``deal_amount`` (adjusted shares), ``value`` (money), ``count`` (orders, int).
    orders : pd.DataFrame
        One row per order, index ``(datetime, instrument)``, columns ``amount``, ``deal_amount``
        (adjusted shares), ``trade_price`` (money per adjusted share; NaN when the order could not
        trade), ``trade_value``, ``trade_cost`` (money), ``trade_dir`` (1 buy, 0 sell), ``ffr``
        (``deal_amount / amount``), ``pa`` (0).
    freq : str
        The step frequency, ``"1day"``.
    """

    frame: pd.DataFrame
    orders: pd.DataFrame
    freq: str = "1day"

    def generate_trade_indicators_dataframe(self) -> pd.DataFrame:
        """The per-step frame (a copy), as Qlib's ``Indicator`` method of that name returns it."""
        return self.frame.copy()

    def __repr__(self) -> str:
        days = len(self.frame)
        total = int(self.frame["count"].sum()) if days else 0
        ffr = self.frame["ffr"].mean() if days else math.nan
        return f"TradeIndicators(freq={self.freq!r}, steps={days}, orders={total}, mean_ffr={ffr:.4g})"
