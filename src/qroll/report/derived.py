"""Series the figures draw, derived from the stored ones with Qlib's report formulas.

Every cumulative figure is a **sum** of daily values, as in Qlib's reports (``analysis_position``,
``analysis_model``): sums do not compound, so a long backtest is not dominated by its last years,
and the maximum drawdown is a difference of sums (:func:`qroll.risk_analysis`, mode ``"sum"``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["drawdown", "excess_return", "group_returns", "monthly_mean"]


def excess_return(report: pd.DataFrame, with_cost: bool) -> pd.Series:
    """Daily excess return of a backtest over its benchmark (fractions).

    Parameters
    ----------
    report : pd.DataFrame
        A backtest's ``report_normal`` with columns ``return``, ``bench`` and ``cost``.
    with_cost : bool
        Subtract the day's trading cost (``return`` is before cost).

    Returns
    -------
    pd.Series
        ``return - bench`` or ``return - bench - cost``, indexed like ``report``.
    """
    out = report["return"] - report["bench"]
    return out - report["cost"] if with_cost else out


def drawdown(returns: pd.Series) -> pd.Series:
    """Qlib's drawdown of a daily return series: the cumulative sum minus its running maximum.

    Parameters
    ----------
    returns : pd.Series
        Daily returns (fractions).

    Returns
    -------
    pd.Series
        Each day's distance below the best cumulative sum so far (fractions, <= 0); its minimum is
        :func:`qroll.risk_analysis`'s ``max_drawdown``.

    Examples
    --------
    >>> drawdown(pd.Series([0.02, -0.03, 0.01, 0.03])).round(4).tolist()
    [0.0, -0.03, -0.02, 0.0]
    """
    total = returns.cumsum()
    return total - total.cummax()


def group_returns(pred_label: pd.DataFrame, n_groups: int = 5) -> pd.DataFrame:
    """Daily mean label of score quantile groups, as Qlib's ``analysis_model`` ``group_return``.

    Each day the rows with a score are sorted by score, highest first, and cut into ``n_groups``
    slices of ``len // n_groups`` rows (the lowest-scored remainder is dropped); a group's value
    is the mean label of its slice (NaN labels skipped).

    Parameters
    ----------
    pred_label : pd.DataFrame
        Columns ``score`` and ``label``, index ``(datetime, instrument)``.
    n_groups : int, default 5
        The number of groups.

    Returns
    -------
    pd.DataFrame
        Index ``datetime``; columns ``G1`` (highest scores) … ``G<n>``, ``long-short``
        (``G1 - G<n>``) and ``long-average`` (``G1`` minus the day's mean label over all rows).
        Days without any label are dropped. Qlib plots the cumulative sum of each column.

    Examples
    --------
    >>> idx = pd.MultiIndex.from_product([pd.to_datetime(["2020-01-02"]), list("abcde")],
    ...                                  names=["datetime", "instrument"])
    >>> pl = pd.DataFrame({"score": [5.0, 4, 3, 2, 1], "label": [0.05, 0.04, 0.03, 0.02, 0.01]}, index=idx)
    >>> group_returns(pl, 2).round(3).iloc[0].tolist()
    [0.045, 0.025, 0.02, 0.015]
    """
    frame = pred_label.dropna(subset=["score"])
    table = pd.DataFrame({"day": frame.index.get_level_values("datetime"),
                          "score": frame["score"].to_numpy(), "label": frame["label"].to_numpy()})
    table = table.sort_values(["day", "score"], ascending=[True, False], kind="mergesort")
    by_day = table.groupby("day", sort=True)
    position = by_day.cumcount().to_numpy()
    size = by_day["score"].transform("size").to_numpy() // n_groups
    keep = position < size * n_groups
    group = np.zeros(len(table), dtype=np.int64)
    group[keep] = position[keep] // size[keep]
    kept = table[keep].assign(group=group[keep])
    days = pd.DatetimeIndex(sorted(table["day"].unique()), name="datetime")
    means = kept.groupby(["day", "group"])["label"].mean().unstack()
    out = means.reindex(index=days, columns=range(n_groups))
    out.columns = [f"G{i + 1}" for i in range(n_groups)]
    out.index.name = "datetime"
    out["long-short"] = out["G1"] - out[f"G{n_groups}"]
    all_mean = pred_label.groupby(level="datetime")["label"].mean()
    out["long-average"] = out["G1"] - all_mean.reindex(out.index)
    return out.dropna(how="all")


def monthly_mean(daily: pd.Series) -> pd.DataFrame:
    """The mean of a daily series per calendar month, as a year × month table.

    Parameters
    ----------
    daily : pd.Series
        Indexed by day.

    Returns
    -------
    pd.DataFrame
        Index the years, columns the months 1–12; NaN where a month has no value.

    Examples
    --------
    >>> s = pd.Series([0.1, 0.3, -0.2], index=pd.to_datetime(["2020-01-02", "2020-01-03", "2020-03-02"]))
    >>> monthly_mean(s).loc[2020, [1, 2, 3]].round(2).tolist()
    [0.2, nan, -0.2]
    """
    index = pd.DatetimeIndex(daily.index)
    means = daily.groupby([index.year, index.month]).mean()
    table = means.unstack() if len(means) else pd.DataFrame(dtype="float64")
    table = table.reindex(columns=range(1, 13))
    table.index.name, table.columns.name = "year", "month"
    return table
