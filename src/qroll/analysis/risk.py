"""Risk of a return series and trade indicators of a backtest, with Qlib's formulas.

:func:`risk_analysis` and :func:`indicator_analysis` are Qlib's
``qlib.contrib.evaluate.risk_analysis`` and ``indicator_analysis`` (0.9.7), number for number:
the same pandas reductions in the same order, so the results agree to the last bit. What differs
is what happens on input Qlib cannot use: an unknown frequency or mode, a missing column or a
non-numeric series raises one :class:`~qroll.errors.ConfigError` naming the value and the choices
(Qlib raises a bare ``ValueError`` or ``KeyError``), and a division by a zero spread gives
``inf``/``NaN`` quietly instead of a NumPy ``RuntimeWarning``.

Returns are accumulated by **summation** in the default mode ``"sum"``, as every Qlib report does:
the annualised return is the mean daily return times ``N`` and the maximum drawdown is a
difference of summed returns, not a ratio. ``N`` is the number of periods per year; Qlib takes
**238** trading days (not 252), 50 weeks, 12 months or 240 x 238 minutes.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import pandas as pd

from qroll.errors import ConfigError

__all__ = ["indicator_analysis", "risk_analysis", "risk_scaler"]

# Periods per year for each unit of Qlib's ``Freq.parse``; 238 is the mean number of trading days
# a year of Qlib's cn calendar (2,384 days over 2010-2019).
_PERIODS_PER_YEAR = {"minute": 240 * 238, "day": 238, "week": 50, "month": 12}
# Qlib's spellings of each unit (``qlib/utils/time.py``, ``Freq.parse``), case-insensitive.
_UNITS = {"month": "month", "mon": "month", "week": "week", "w": "week", "day": "day", "d": "day",
          "minute": "minute", "min": "minute"}
_FREQ_RE = re.compile(r"^([0-9]*)(month|mon|week|w|day|d|minute|min)$")
_MODES = ("sum", "product")
_RISK_INDEX = ["mean", "std", "annualized_return", "information_ratio", "max_drawdown"]
_INDICATOR_METHODS = {"mean": "count", "amount_weighted": "deal_amount", "value_weighted": "value"}


def risk_scaler(freq: str) -> float:
    """Periods per year for a Qlib frequency string, as Qlib's ``risk_analysis`` derives ``N``.

    Parameters
    ----------
    freq : str
        ``"[count]unit"`` with unit one of month/mon, week/w, day/d, minute/min (any case), e.g.
        ``"day"``, ``"1day"``, ``"5min"``, ``"2w"``.

    Returns
    -------
    float
        Periods per year: ``{minute: 240*238, day: 238, week: 50, month: 12}[unit] / count``.

    Raises
    ------
    ConfigError
        ``freq`` is not such a string, or its count is 0.

    Examples
    --------
    >>> risk_scaler("day"), risk_scaler("5min"), risk_scaler("month")
    (238.0, 11424.0, 12.0)
    """
    match = _FREQ_RE.match(freq.lower()) if isinstance(freq, str) else None
    count = int(match.group(1)) if match and match.group(1) else 1
    if match is None or count == 0:
        raise ConfigError(
            f"risk_analysis: freq {freq!r} is not a frequency; give '[count]unit' with unit one of "
            "month/mon, week/w, day/d, minute/min and a count >= 1 (e.g. 'day', '1day', '5min'), "
            "or give N, the number of periods per year")
    return _PERIODS_PER_YEAR[_UNITS[match.group(2)]] / count


def _as_returns(r: Any) -> pd.Series:
    if isinstance(r, pd.DataFrame):
        raise ConfigError(
            f"risk_analysis: r is a DataFrame with columns {list(r.columns)!r}; pass one column "
            "as a Series, e.g. report['return'] - report['bench']")
    series = r if isinstance(r, pd.Series) else pd.Series(np.asarray(r))
    if series.ndim != 1 or not (pd.api.types.is_numeric_dtype(series.dtype)
                                and not pd.api.types.is_bool_dtype(series.dtype)):
        raise ConfigError(
            f"risk_analysis: r must be a 1-D series of numeric returns, got dtype {series.dtype}; "
            "convert it with pd.to_numeric first")
    return series


def risk_analysis(r: Any, N: float | None = None, freq: str | None = "day",
                  mode: str = "sum") -> pd.DataFrame:
    """Mean, spread, annualised return, information ratio and maximum drawdown of a return series.

    Qlib's ``qlib.contrib.evaluate.risk_analysis``: applied to the daily excess return of a
    backtest (``return - bench``, with or without ``cost``) it gives the numbers of Qlib's
    benchmark tables.

    Parameters
    ----------
    r : pd.Series or 1-D array-like of float
        Returns per period (fractions: 0.01 is 1 %). ``NaN`` values are skipped by the mean, the
        spread and the running sums, as pandas skips them; they still count in ``len(r)`` for
        the ``"product"`` mode, as in Qlib.
    N : float, optional
        Periods per year, used to annualise. Given together with ``freq`` (whose default is
        ``"day"``), ``N`` wins and a ``UserWarning`` says ``freq`` is ignored, as in Qlib; pass
        ``freq=None`` with ``N`` to silence it.
    freq : str or None, default "day"
        The period of ``r``, from which ``N`` is derived when it is not given (see
        :func:`risk_scaler`): 238 for days, 50 for weeks, 12 for months, 240*238 for minutes,
        each divided by the count (``"5min"`` gives 11,424).
    mode : {"sum", "product"}, default "sum"
        How returns accumulate. ``"sum"`` (what Qlib's reports use): ``mean = r.mean()``,
        ``std = r.std(ddof=1)``, ``annualized_return = mean * N``, ``max_drawdown =
        min(S - cummax(S))`` with ``S = r.cumsum()``. ``"product"``: ``P = cumprod(1 + r)``,
        ``mean = P[-1] ** (1/n) - 1`` (geometric), ``std`` of ``log(1 + r)``,
        ``annualized_return = P[-1] ** (N/n) - 1``, ``max_drawdown = min(P / cummax(P) - 1)``.

    Returns
    -------
    pd.DataFrame
        One column ``risk``, index ``mean, std, annualized_return, information_ratio,
        max_drawdown``. ``mean``, ``std`` and ``max_drawdown`` are per period (fractions);
        ``annualized_return`` is per year; ``information_ratio = mean / std * sqrt(N)`` has no
        unit. A series too short for a spread gives ``NaN``; a zero spread gives ``inf``/``NaN``.

    Raises
    ------
    ConfigError
        An unknown ``mode`` or ``freq``, neither ``N`` nor ``freq``, or ``r`` that is not a
        numeric series.

    Examples
    --------
    >>> r = pd.Series([0.01, -0.02, 0.015, 0.005])
    >>> risk_analysis(r)["risk"].round(6).to_dict()  # doctest: +NORMALIZE_WHITESPACE
    {'mean': 0.0025, 'std': 0.015546, 'annualized_return': 0.595, 'information_ratio': 2.480962,
     'max_drawdown': -0.02}
    >>> round(float(risk_analysis(r, mode="product").loc["max_drawdown", "risk"]), 6)
    -0.02
    """
    if mode not in _MODES:
        raise ConfigError(f"risk_analysis: mode {mode!r} is not one of {list(_MODES)!r}")
    if N is not None:
        if freq is not None:
            warnings.warn(f"risk_analysis: freq {freq!r} is ignored because N={N!r} is given; "
                          "pass freq=None with N to silence this", UserWarning, stacklevel=2)
    elif freq is not None:
        N = risk_scaler(freq)
    else:
        raise ConfigError("risk_analysis: give N (periods per year, e.g. 238 for days) or freq "
                          "(e.g. 'day'); both are None")
    series = _as_returns(r)

    # Qlib's own expressions, in its order, so that every float rounds as Qlib's does. A zero
    # spread divides by zero: Qlib returns inf/NaN with a RuntimeWarning; here without it.
    with np.errstate(divide="ignore", invalid="ignore"):
        if mode == "sum":
            mean = series.mean()
            std = series.std(ddof=1)
            annualized_return = mean * N
            cumsum = series.cumsum()
            max_drawdown = (cumsum - cumsum.cummax()).min()
        elif len(series) == 0:
            # Qlib fails on an empty series here (IndexError); an empty series has no risk figures.
            mean = std = annualized_return = max_drawdown = np.nan
        else:
            curve = (1 + series).cumprod()
            mean = curve.iloc[-1] ** (1 / len(series)) - 1
            std = np.log(1 + series).std(ddof=1)
            cumulative_return = curve.iloc[-1] - 1
            annualized_return = (1 + cumulative_return) ** (N / len(series)) - 1
            max_drawdown = (curve / curve.cummax() - 1).min()
        information_ratio = mean / std * np.sqrt(N)
    values = [mean, std, annualized_return, information_ratio, max_drawdown]
    return pd.Series(dict(zip(_RISK_INDEX, values, strict=True)), dtype=float).to_frame("risk")


def indicator_analysis(df: pd.DataFrame, method: str = "mean") -> pd.DataFrame:
    """Fill rate, price advantage and positive rate of a backtest's orders, averaged over days.

    Qlib's ``qlib.contrib.evaluate.indicator_analysis``, applied to the daily trade indicators of
    a backtest (Qlib's ``indicators_normal_1day.pkl``).

    Parameters
    ----------
    df : pd.DataFrame
        One row per step (day), with columns ``ffr`` (fraction of the ordered amount filled),
        ``pa`` (price advantage, a fraction), ``pos`` (fraction of orders with ``pa > 0``) and
        ``count`` (orders that day); ``deal_amount`` (shares) for ``"amount_weighted"`` and
        ``value`` (money) for ``"value_weighted"``. A day without orders has ``NaN`` indicators.
    method : {"mean", "amount_weighted", "value_weighted"}, default "mean"
        The weights of ``ffr`` and ``pa``: ``count``, ``|deal_amount|`` or ``|value|``. ``pos`` is
        always weighted by ``count``.

    Returns
    -------
    pd.DataFrame
        One column ``value``, index ``ffr, pa, pos``: ``sum(x * w) / sum(w)``, ``NaN`` terms
        skipped in the numerator only (as Qlib does), so a day whose indicator is ``NaN`` but
        whose weight is not still counts in the denominator. All weights zero gives ``NaN``.

    Raises
    ------
    ConfigError
        An unknown ``method`` or a column it needs is missing.

    Examples
    --------
    >>> days = pd.DataFrame({"ffr": [1.0, 0.5, np.nan], "pa": [0.0, 0.0, np.nan],
    ...                      "pos": [0.0, 0.0, np.nan], "deal_amount": [300.0, 100.0, 0.0],
    ...                      "value": [3e4, 1e4, 0.0], "count": [3, 1, 0]})
    >>> indicator_analysis(days)["value"].to_dict()
    {'ffr': 0.875, 'pa': 0.0, 'pos': 0.0}
    """
    if method not in _INDICATOR_METHODS:
        raise ConfigError(f"indicator_analysis: method {method!r} is not one of "
                          f"{list(_INDICATOR_METHODS)!r}")
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"indicator_analysis: df must be a DataFrame of daily trade indicators, "
                          f"got {type(df).__name__}")
    needed = ["ffr", "pa", "pos", "count", _INDICATOR_METHODS[method]]
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        raise ConfigError(f"indicator_analysis: df has no column(s) {missing!r} (method "
                          f"{method!r} needs {list(dict.fromkeys(needed))!r}); it has "
                          f"{list(df.columns)!r}")
    weight_col = _INDICATOR_METHODS[method]
    weights = df[weight_col] if method == "mean" else df[weight_col].abs()
    with np.errstate(divide="ignore", invalid="ignore"):
        res = df[["ffr", "pa"]].mul(weights, axis=0).sum() / weights.sum()
        counts = df["count"]
        res.loc["pos"] = df["pos"].mul(counts).sum() / counts.sum()
    return res.astype(float).to_frame("value")
