"""Signal quality per trading day: IC, Rank IC and long-short returns, with Qlib's formulas.

Qlib computes these with a ``groupby(...).apply`` of ``Series.corr`` per day
(``qlib/contrib/eva/alpha.py``); here the same numbers come from whole-column arithmetic, so a
test segment of a thousand days costs milliseconds rather than seconds. The conventions are
Qlib's: pred and label are aligned on their union index, a day's correlation uses the rows where
both are present, a day with fewer than two such rows or a constant column has ``NaN``, and the
summary statistics skip ``NaN`` days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["SignalFigures", "calc_ic", "calc_long_short_return", "ic_summary"]


@dataclass(frozen=True, kw_only=True, slots=True)
class SignalFigures:
    """A signal judged over its days: the fields of the results table ``qroll run`` prints.

    IC figures are daily correlations with the label (ICIR: mean over standard deviation, not
    annualised). The portfolio figures, NaN without a backtest, are those of the signal's
    backtest: the annualised excess return over the benchmark before and after costs (fractions
    a year, Qlib's sum of daily excess returns × 238), the information ratio and the maximum
    drawdown of the excess return after costs (a difference of summed daily returns, as Qlib
    computes it).
    """

    days: int
    first_day: pd.Timestamp | None
    last_day: pd.Timestamp | None
    ic: float
    icir: float
    rank_ic: float
    rank_icir: float
    excess_return: float = math.nan
    excess_return_with_cost: float = math.nan
    information_ratio_with_cost: float = math.nan
    max_drawdown_with_cost: float = math.nan
    benchmark: str = ""


def _aligned(pred: pd.Series, label: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"pred": pred, "label": label})


def _day_keys(df: pd.DataFrame, date_col: str) -> pd.Index:
    return pd.Index(df.index.get_level_values(date_col)).unique().sort_values()


def _pearson_by_day(x: pd.Series, y: pd.Series, date_col: str) -> pd.Series:
    """Pearson correlation of ``x`` and ``y`` per day; both are NaN-free and share one index."""
    days = x.index.get_level_values(date_col)
    dx = x - x.groupby(days).transform("mean")
    dy = y - y.groupby(days).transform("mean")
    frame = pd.DataFrame({"xy": dx * dy, "xx": dx * dx, "yy": dy * dy, "n": 1.0}, index=x.index)
    sums = frame.groupby(days).sum()
    denom = np.sqrt(sums["xx"].to_numpy() * sums["yy"].to_numpy())
    # A constant column (zero spread) or a single row has no correlation: NaN, as pandas gives,
    # without the division warning.
    valid = (denom > 0) & (sums["n"].to_numpy() >= 2)
    out = np.full(len(sums), np.nan)
    out[valid] = np.clip(sums["xy"].to_numpy()[valid] / denom[valid], -1.0, 1.0)
    return pd.Series(out, index=sums.index)


def calc_ic(
    pred: pd.Series, label: pd.Series, date_col: str = "datetime", dropna: bool = False
) -> tuple[pd.Series, pd.Series]:
    """Daily IC (Pearson) and Rank IC (Spearman) of a prediction against a label.

    Parameters
    ----------
    pred, label : pd.Series
        Indexed by ``(datetime, instrument)``; aligned on the union of their indexes.
    date_col : str, default "datetime"
        The index level holding the day.
    dropna : bool, default False
        Drop the days whose correlation is undefined.

    Returns
    -------
    (pd.Series, pd.Series)
        IC and Rank IC, one value per day (sorted by day), each in [-1, 1] or NaN.

    Examples
    --------
    >>> idx = pd.MultiIndex.from_product([pd.to_datetime(["2020-01-02", "2020-01-03"]), list("abc")],
    ...                                  names=["datetime", "instrument"])
    >>> pred = pd.Series([1.0, 2.0, 3.0, 3.0, 1.0, 2.0], index=idx)
    >>> label = pd.Series([0.1, 0.2, 0.4, 0.1, 0.2, 0.3], index=idx)
    >>> ic, ric = calc_ic(pred, label)
    >>> [round(v, 4) for v in ic], [round(v, 4) for v in ric]
    ([0.982, -0.5], [1.0, -0.5])
    """
    df = _aligned(pred, label)
    days = _day_keys(df, date_col)
    both = df.dropna()
    ic = _pearson_by_day(both["pred"], both["label"], date_col).reindex(days)
    # Spearman is Pearson on average ranks taken within each day over the rows present in both.
    keys = both.index.get_level_values(date_col)
    ranks = both.groupby(keys).rank(method="average")
    ric = _pearson_by_day(ranks["pred"], ranks["label"], date_col).reindex(days)
    ic.index.name = ric.index.name = date_col
    if dropna:
        return ic.dropna(), ric.dropna()
    return ic, ric


def calc_long_short_return(
    pred: pd.Series,
    label: pd.Series,
    date_col: str = "datetime",
    quantile: float = 0.2,
    dropna: bool = False,
) -> tuple[pd.Series, pd.Series]:
    """Daily long-short and long-average returns of a prediction (Qlib's definition).

    Each day, ``N = int(n * quantile)`` where ``n`` counts the day's rows (after dropping rows
    with a missing value when ``dropna``); the long leg is the mean label of the ``N`` highest
    predictions, the short leg that of the ``N`` lowest (ties broken by row order, missing
    predictions never chosen).

    Parameters
    ----------
    pred : pd.Series
        Predictions indexed by ``(datetime, instrument)``.
    label : pd.Series
        Raw returns (per period, e.g. 0.01 for 1 %) on the same index.
    date_col : str, default "datetime"
        The index level holding the day.
    quantile : float, default 0.2
        The fraction of the day's instruments in each leg.
    dropna : bool, default False
        Drop rows with a missing prediction or label first.

    Returns
    -------
    (pd.Series, pd.Series)
        ``(long - short) / 2`` and the mean label of all instruments, per day (returns per
        period; NaN on a day with too few instruments for one name per leg).

    Examples
    --------
    >>> idx = pd.MultiIndex.from_product([pd.to_datetime(["2020-01-02"]), list("abcde")],
    ...                                  names=["datetime", "instrument"])
    >>> ls, avg = calc_long_short_return(pd.Series([5.0, 4, 3, 2, 1], index=idx),
    ...                                  pd.Series([0.05, 0.0, 0.0, 0.0, -0.03], index=idx))
    >>> round(float(ls.iloc[0]), 4), round(float(avg.iloc[0]), 4)
    (0.04, 0.004)
    """
    df = _aligned(pred, label)
    if dropna:
        df = df.dropna()
    keys = df.index.get_level_values(date_col)
    group = df.groupby(keys)
    n_pick = (group["pred"].transform("size") * quantile).astype(int)
    # rank(method="first") numbers tied predictions in row order, as nlargest/nsmallest keep="first".
    top = group["pred"].rank(method="first", ascending=False)
    bottom = group["pred"].rank(method="first", ascending=True)
    long_r = df["label"].where(top <= n_pick).groupby(keys).mean()
    short_r = df["label"].where(bottom <= n_pick).groupby(keys).mean()
    avg_r = group["label"].mean()
    for series in (long_r, short_r, avg_r):
        series.index.name = date_col
    return (long_r - short_r) / 2, avg_r


def ic_summary(ic: pd.Series, ric: pd.Series) -> dict[str, float]:
    """Qlib's summary metrics of daily IC series: ``IC``, ``ICIR``, ``Rank IC``, ``Rank ICIR``.

    ``ICIR`` is the mean over the sample standard deviation (ddof=1) of the daily values; it is
    not annualised, as in Qlib.

    Examples
    --------
    >>> ic_summary(pd.Series([0.1, 0.3]), pd.Series([0.2, 0.2]))["ICIR"]
    1.4142135623730951
    """
    return {
        "IC": float(ic.mean()),
        "ICIR": _ratio(ic),
        "Rank IC": float(ric.mean()),
        "Rank ICIR": _ratio(ric),
    }


def _ratio(series: pd.Series) -> float:
    mean, std = float(series.mean()), float(series.std())
    # Qlib divides blindly: a zero spread gives inf or NaN. NaN says "undefined" without warnings.
    return mean / std if std > 0 else float("nan")
