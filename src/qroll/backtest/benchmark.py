"""The benchmark's daily return, rebuilt as Qlib's ``PortfolioMetrics`` does (reference §6.4)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from qroll.data.source import Source
from qroll.errors import ConfigError, DataNotFoundError

__all__ = ["benchmark_returns"]


def benchmark_returns(benchmark: Any, source: Source, days: pd.DatetimeIndex) -> np.ndarray:
    """Benchmark return of each step (fractions).

    Parameters
    ----------
    benchmark : str, list of str, pd.Series or None
        Instrument code(s) of the source: ``$close/Ref($close,1)-1`` computed in float32 as Qlib's
        expression engine does (the first day reaches the stored row before it), averaged over
        the codes per day, NaN → 0. A Series of daily returns (index = dates) is used as is,
        a missing day giving 0. ``None``: no benchmark, all zeros (qroll's fix: Qlib silently
        falls back to SH000300).
    source : Source
        Market data.
    days : pd.DatetimeIndex
        The steps' trading days.

    Returns
    -------
    np.ndarray
        float64, one return per day.

    Raises
    ------
    DataNotFoundError
        For a code the source does not hold.
    ConfigError
        For a benchmark of another type.
    """
    if benchmark is None:
        return np.zeros(len(days))
    if isinstance(benchmark, pd.Series):
        series = benchmark.copy()
        series.index = pd.DatetimeIndex(series.index)
        series = series[~series.index.duplicated(keep="last")]
        out = series.reindex(days).to_numpy(dtype=np.float64)
        # Π(1 + x) − 1 over the single row of a daily step; NaN rows are skipped, giving 0.
        return np.where(np.isnan(out), 0.0, out)
    codes = ([benchmark] if isinstance(benchmark, str)
             else list(benchmark) if isinstance(benchmark, (list, tuple)) else None)
    if not codes or not all(isinstance(c, str) for c in codes):
        raise ConfigError(f"benchmark {benchmark!r} must be an instrument code, a list of codes, "
                          "a pd.Series of daily returns or None")
    known = source.instruments("all")
    missing = [c for c in codes if c.upper() not in known]
    if missing:
        raise DataNotFoundError(
            f"benchmark {missing if len(missing) > 1 else missing[0]!r} is not an instrument of "
            f"{getattr(source, 'uri', source)!r}; pass another code, a pd.Series of daily returns, or None"
        )
    cal = source.calendar.days
    a = int(cal.searchsorted(days[0]))
    first = cal[max(0, a - 1)]
    close = source.load(["close"], [c.upper() for c in codes], first, days[-1])["close"]
    values = close.to_numpy(dtype=np.float32)
    with np.errstate(all="ignore"):
        ret = np.full_like(values, np.nan)
        ret[1:] = values[1:] / values[:-1] - np.float32(1)
    frame = pd.DataFrame(ret.astype(np.float64), index=close.index)
    mean = frame.mean(axis=1).reindex(days)
    return mean.fillna(0.0).to_numpy(dtype=np.float64)


def market_mean_returns(source: Source, market: str | list[str], days: pd.DatetimeIndex) -> pd.Series:
    """The equal-weighted mean daily return of a market's members: a benchmark for any market.

    Each day's value is the mean of ``close_T / close_{T-1} - 1`` over the instruments that are
    members on T and have both closes (float64 from the stored float32 closes); a day with no
    such instrument gives 0.

    Parameters
    ----------
    source : Source
        Market data.
    market : str or list of str
        A market name of the source (``"csi300"``, ``"all"``) or a list of instrument codes.
    days : pd.DatetimeIndex
        The trading days to return.

    Returns
    -------
    pd.Series
        Daily returns (fractions) indexed by ``days``, named ``bench``.

    Raises
    ------
    DataNotFoundError
        For a market the source does not hold.
    """
    cal = source.calendar.days
    a = int(cal.searchsorted(days[0]))
    first = cal[max(0, a - 1)]
    if isinstance(market, str):
        if market.lower() not in source.markets():
            raise DataNotFoundError(
                f"market {market!r} is not in {getattr(source, 'uri', source)!r} (it has "
                f"{', '.join(source.markets())}); give a market of the source as the benchmark"
            )
        spans = source.instruments(market.lower())
    else:
        known = source.instruments("all")
        spans = {c.upper(): known.get(c.upper(), [(first, days[-1])]) for c in market}
    codes = sorted(spans)
    close = source.load(["close"], codes, first, days[-1])["close"].astype(np.float64)
    with np.errstate(all="ignore"):
        ret = close / close.shift(1) - 1.0
    member = pd.DataFrame(False, index=close.index, columns=close.columns)
    for code, code_spans in spans.items():
        for lo, hi in code_spans:
            member.loc[(member.index >= lo) & (member.index <= hi), code] = True
    mean = ret.where(member).mean(axis=1).reindex(days)
    return mean.fillna(0.0).rename("bench")
