"""Window operators of Qlib's expression engine, vectorised over all instruments at once.

Each function takes *series-major* 2-D arrays, shape (instruments, days): row k is instrument k's
series over consecutive trading days, so every series is contiguous in memory. Days before an
instrument's first stored day hold NaN. Qlib evaluates every instrument separately on a series that
*starts* at its first stored day; the operators here either skip NaN (so leading NaN days change
nothing) or take a ``start`` day per series to truncate the window there, which gives the same
numbers.

Where pandas computes Qlib's statistic (mean, sum, std, quantile, rank, corr, ...), pandas is
called on every series: it is the same 1-D kernel Qlib's per-instrument calls run, so the numbers are
bit-identical to Qlib's per-instrument calls (``reference/alpha158.md`` §3.9). One exception: a
rolling std or variance over a window whose values are all equal is exactly 0 (:func:`equal_windows`),
as pandas 1.5-2.x give it, where pandas 3's running sums may keep a round-off residue.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "elementwise", "equal_windows", "pandas_rolling", "ref", "regression", "rolling_corr", "window_apply",
]

FloatArray = np.ndarray


def as_float64(x: np.ndarray) -> np.ndarray:
    """The panel as float64 with ±inf turned into NaN, as pandas' rolling machinery sees it."""
    out = np.array(x, dtype=np.float64, copy=True)
    out[np.isinf(out)] = np.nan
    return out


try:  # pandas' own Cython kernels, called once per column without the DataFrame machinery around them
    from pandas._libs.window import aggregations as _agg  # type: ignore[attr-defined]
    from pandas.core.indexers.objects import (  # type: ignore[attr-defined]
        ExpandingIndexer,
        FixedWindowIndexer,
    )
except ImportError:  # pragma: no cover - a pandas that moved them; the public API below still works
    _agg = None

_KERNELS = {
    "mean": "roll_mean", "sum": "roll_sum", "var": "roll_var", "std": "roll_var", "max": "roll_max",
    "min": "roll_min", "median": "roll_median_c", "skew": "roll_skew", "kurt": "roll_kurt",
    "quantile": "roll_quantile", "rank": "roll_rank",
}


def _bounds(days: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    indexer = ExpandingIndexer() if n == 0 else FixedWindowIndexer(window_size=n)
    return indexer.get_window_bounds(num_values=days, min_periods=1, center=False, closed=None, step=None)


def _kernel(how: str, args: tuple[float, ...]) -> Callable[..., np.ndarray] | None:
    name = _KERNELS.get(how)
    func = getattr(_agg, name, None) if _agg is not None and name else None
    if func is None:
        return None
    if how == "quantile":
        (q,) = args
        if q in (0.0, 1.0):  # pandas answers these with its min/max kernels
            return _agg.roll_min if q == 0.0 else _agg.roll_max
        return lambda v, a, b, m: func(v, a, b, m, quantile=q, interpolation="linear")
    if how == "rank":
        return lambda v, a, b, m: func(v, a, b, m, method="average", ascending=True, percentile=True)
    if how in ("var", "std"):
        return lambda v, a, b, m: func(v, a, b, m, ddof=1)
    return func


def pandas_rolling(x: np.ndarray, n: int, how: str, *args: float) -> np.ndarray:
    """``rolling(n, min_periods=1).<how>(*args)`` of every series; ``n = 0`` is an expanding window.

    Parameters
    ----------
    x : ndarray (instruments, days)
    n : int
        Window length in trading days; 0 for an expanding window.
    how : str
        A pandas rolling method name: mean, sum, std, var, max, min, median, count, skew, kurt,
        quantile, rank (``pct=True``).

    Returns
    -------
    ndarray (instruments, days), float64
        pandas' numbers, bit for bit, except that std and var are exactly 0 on a window of at least
        two non-NaN values that are all equal (see :func:`equal_windows`).
    """
    kernel = _kernel(how, args)
    if kernel is None:
        frame = pd.DataFrame(np.asarray(x, dtype=np.float64).T)
        roller = frame.expanding(min_periods=1) if n == 0 else frame.rolling(n, min_periods=1)
        res = roller.rank(pct=True) if how == "rank" else getattr(roller, how)(*args)
        out = np.ascontiguousarray(res.to_numpy(dtype=np.float64).T)
        if how in ("std", "var"):
            out[equal_windows(as_float64(x), n)] = 0.0
        return out
    series = as_float64(x)
    start, end = _bounds(series.shape[1], n)
    out = np.empty_like(series)
    with np.errstate(all="ignore"):
        for i, row in enumerate(series):
            out[i] = kernel(row, start, end, 1)
        if how == "std":
            out = np.sqrt(np.where(out < 0, 0.0, out))  # pandas' zsqrt
    if how in ("std", "var"):
        # pandas 3's running sums keep a round-off residue on a window of equal values (it depends
        # on the history before the window); pandas 1.5-2.x, and Qlib on them, give exactly 0.
        out[equal_windows(series, n)] = 0.0
    return out


def equal_windows(x: np.ndarray, n: int) -> np.ndarray:
    """Mask of the windows whose non-NaN values number at least 2 and are all equal.

    The window at day t holds days ``max(0, t - n + 1) .. t`` (``n = 0``: days ``0 .. t``), as in
    :func:`pandas_rolling`; NaN days are skipped, so ``[3, NaN, 3]`` counts as equal. It is the rule
    by which pandas 1.5-2.x set a rolling variance to exactly 0 (a run of equal values at least as
    long as the window's count).

    Parameters
    ----------
    x : ndarray (instruments, days), float64
        Series with NaN on the days to skip (±inf already turned into NaN).
    n : int
        Window length in trading days; 0 for an expanding window.

    Returns
    -------
    ndarray of bool (instruments, days)
    """
    width, days = x.shape
    mask = np.zeros((width, days), dtype=bool)
    valid = ~np.isnan(x)
    values = x[valid]  # the non-NaN values of every series, series after series
    # Only a value equal to the previous non-NaN value of its series can end an equal window, and
    # most series (prices, say) have none: then this is all it costs.
    repeat = np.zeros(values.size, dtype=bool)
    repeat[1:] = values[1:] == values[:-1]
    if not repeat.any():
        return mask
    where = np.flatnonzero(valid)  # each value's position in the flattened panel
    hits = np.flatnonzero(repeat)
    repeat[hits[where[hits] // days != where[hits - 1] // days]] = False  # not across two series
    hits = np.flatnonzero(repeat)
    # Each repeat's run of equal values begins at the value before the first repeat of its block.
    block = np.ones(hits.size, dtype=bool)
    block[1:] = np.diff(hits) != 1
    begin = (hits - 1)[block][np.cumsum(block) - 1]
    # The days whose latest non-NaN value is a repeat: from it up to the next value or series end.
    after = hits + 1 < where.size
    stop = (where[hits] // days + 1) * days
    stop[after] = np.minimum(stop[after], where[hits[after] + 1])
    length = stop - where[hits]
    offset = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
    cell = np.repeat(where[hits], length) + offset
    latest = np.repeat(hits, length)
    t = cell % days
    low = cell - t if n == 0 else cell - np.minimum(t, n - 1)
    # The window's first non-NaN value; equal when it holds 2 values or more, all inside the run.
    first = np.minimum(np.searchsorted(where, low), latest)
    equal = (latest > first) & (first >= np.repeat(begin, length))
    mask.reshape(-1)[cell[equal]] = True
    return mask


def rolling_corr(x: np.ndarray, y: np.ndarray, n: int, how: str = "corr") -> np.ndarray:
    """Pandas' rolling ``corr``/``cov`` of each series of ``x`` with the same series of ``y``."""
    fx = np.asarray(x, dtype=np.float64)
    fy = np.asarray(y, dtype=np.float64)
    kernel = getattr(_agg, f"roll_{how}", None) if _agg is not None else None
    if kernel is None or how == "cov":
        fxf, fyf = pd.DataFrame(fx.T), pd.DataFrame(fy.T)
        roller = fxf.expanding(min_periods=1) if n == 0 else fxf.rolling(n, min_periods=1)
        return np.ascontiguousarray(getattr(roller, how)(fyf).to_numpy(dtype=np.float64).T)
    with np.errstate(all="ignore"):
        # pandas pairs the two sides first (x + 0*y), so a NaN or inf on either side drops the pair.
        px = as_float64(fx + 0 * fy)
        py = as_float64(fy + 0 * fx)
        start, end = _bounds(px.shape[1], n)
        out = np.empty_like(px)
        for i in range(px.shape[0]):
            out[i] = kernel(px[i], py[i], start, end, 1)
    return out


def window_apply(
    x: np.ndarray, n: int, start: np.ndarray, func: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Apply ``func`` (reducing the last axis) over trailing windows truncated at each series' start.

    Mirrors pandas' ``rolling(n, min_periods=1).apply(func, raw=True)`` on a series that begins at
    day ``start[k]``: the window at day t holds days ``max(start[k], t - n + 1) .. t``; ±inf become
    NaN; a window with no finite value gives NaN.

    Parameters
    ----------
    x : ndarray (instruments, days)
    n : int
        Window length in trading days.
    start : ndarray of int (instruments,)
        First day of each series.
    func : callable
        Maps an array (..., L) of windows to (...).
    """
    v = as_float64(x)
    width, days = v.shape
    padded = np.hstack([np.full((width, n - 1), np.nan), v])
    windows = sliding_window_view(padded, n, axis=1)  # (width, days, n), each window contiguous
    # Chunks of series keep the temporaries that func may build small.
    chunk = max(1, 4_000_000 // max(1, days * n))
    out = np.concatenate(
        [np.asarray(func(windows[i : i + chunk]), dtype=np.float64) for i in range(0, width, chunk)]
    )
    seen = np.hstack([np.zeros((width, 1), dtype=np.int64), np.cumsum(~np.isnan(v), axis=1)])
    counts = seen[:, 1:] - seen[:, np.maximum(np.arange(1, days + 1) - n, 0)]
    # The first n - 1 days of a series see a shorter window: redo them with the true length.
    rows = np.arange(width)
    for length in range(1, n):
        day = start + length - 1
        ok = (day >= 0) & (day < days)
        if not ok.any():
            continue
        d, r = day[ok], rows[ok]
        idx = d[:, None] - length + 1 + np.arange(length)[None, :]
        out[r, d] = func(v[r[:, None], idx])
    out[~(counts > 0)] = np.nan
    return out


def regression(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Qlib's rolling Slope, Rsquare (before its std mask) and Resi, bit for bit.

    Runs the running-sum algorithm of Qlib's Cython module (``reference/alpha158.md`` §3.9.1)
    down all columns at once: one Python step per day, numpy across instruments. ±inf are *not*
    turned into NaN, as in Qlib, so an inf poisons the sums for the rest of the series.

    Parameters
    ----------
    x : ndarray (instruments, days)
    n : int
        Window length in trading days (> 0).

    Returns
    -------
    slope, rsquare, resi : ndarray (instruments, days), float64
    """
    # Day-major inside: each step reads and writes one contiguous row across instruments.
    v_all = np.ascontiguousarray(np.asarray(x, dtype=np.float64).T)
    days, width = v_all.shape
    slope = np.empty((days, width))
    rsq = np.empty((days, width))
    resi = np.empty((days, width))
    i_sum = np.zeros(width)
    x_sum = np.zeros(width)
    x2_sum = np.zeros(width)
    y_sum = np.zeros(width)
    y2_sum = np.zeros(width)
    xy_sum = np.zeros(width)
    na = np.full(width, float(n))
    nn = float(n * n)
    fn = float(n)
    with np.errstate(all="ignore"):
        for t in range(days):
            v = v_all[t]
            xy_sum = xy_sum - y_sum
            x2_sum = x2_sum + i_sum - 2 * x_sum
            x_sum = x_sum - i_sum
            if t >= n:
                o = v_all[t - n]
                o_ok = ~np.isnan(o)
                i_sum = i_sum - o_ok
                y_sum = np.where(o_ok, y_sum - o, y_sum)
                y2_sum = np.where(o_ok, y2_sum - o * o, y2_sum)
                na = na - ~o_ok
            else:
                na = na - 1.0
            v_ok = ~np.isnan(v)
            na = na + ~v_ok
            i_sum = i_sum + v_ok
            x_sum = np.where(v_ok, x_sum + fn, x_sum)
            x2_sum = np.where(v_ok, x2_sum + nn, x2_sum)
            y_sum = np.where(v_ok, y_sum + v, y_sum)
            y2_sum = np.where(v_ok, y2_sum + v * v, y2_sum)
            xy_sum = np.where(v_ok, xy_sum + fn * v, xy_sum)
            cnt = fn - na
            num = cnt * xy_sum - x_sum * y_sum
            den = cnt * x2_sum - x_sum * x_sum
            b = num / den
            slope[t] = b
            resi[t] = v - (b * fn + (y_sum / cnt - b * (x_sum / cnt)))
            r = num / np.sqrt(den * (cnt * y2_sum - y_sum * y_sum))
            rsq[t] = r * r
    return slope.T.copy(), rsq.T.copy(), resi.T.copy()


def first_valid_day(x: np.ndarray) -> np.ndarray:
    """Per series, the first day holding a non-NaN value (the number of days when there is none)."""
    valid = ~np.isnan(np.asarray(x, dtype=np.float64))
    first = np.argmax(valid, axis=1)
    first[~valid.any(axis=1)] = valid.shape[1]
    return first


def nan_argext(windows: np.ndarray, largest: bool) -> np.ndarray:
    """1 + NumPy ``argmax``/``argmin`` of each window: the first NaN wins, as in Qlib's IdxMax/IdxMin."""
    pos = np.argmax(windows, axis=-1) if largest else np.argmin(windows, axis=-1)
    return pos.astype(np.float64) + 1.0


def weighted_mean(windows: np.ndarray) -> np.ndarray:
    """Qlib's WMA body: ``nanmean(w * x)`` with weights 1..L normalised to sum 1."""
    length = windows.shape[-1]
    w = np.arange(1, length + 1, dtype=np.float64)
    w /= w.sum()
    with np.errstate(all="ignore"):
        return _nanmean(windows * w)


def mean_abs_dev(windows: np.ndarray) -> np.ndarray:
    """Qlib's Mad body: ``nanmean(|x - nanmean(x)|)``."""
    with np.errstate(all="ignore"):
        m = _nanmean(windows)
        return _nanmean(np.abs(windows - m[..., None]))


def delta(windows: np.ndarray) -> np.ndarray:
    """Qlib's Delta body: newest minus oldest value of the window."""
    return windows[..., -1] - windows[..., 0]


def _nanmean(a: np.ndarray) -> np.ndarray:
    # np.nanmean warns on all-NaN slices; the caller masks those rows anyway.
    ok = ~np.isnan(a)
    return np.where(ok, a, 0.0).sum(axis=-1) / ok.sum(axis=-1)


def ref(x: np.ndarray, n: int, start: np.ndarray | None = None) -> np.ndarray:
    """Qlib's ``Ref(x, n)``: the value n days earlier (n < 0: later; n = 0: the first loaded value).

    For n = 0, ``start`` gives each series' first day (its value is used even if NaN); by default
    the first non-NaN day.
    """
    # x is (instruments, days): shifting along days keeps NaN days as rows, as Qlib does.
    out = np.full_like(x, np.nan, dtype=np.result_type(x.dtype, np.float32))
    if n > 0:
        out[:, n:] = x[:, :-n]
    elif n < 0:
        out[:, :n] = x[:, -n:]
    else:
        first = first_valid_day(x) if start is None else np.asarray(start, dtype=np.int64)
        rows = np.arange(x.shape[0])
        ok = first < x.shape[1]
        out[ok] = x[rows[ok], first[ok]][:, None]
    return out


def elementwise(name: str, args: list[Any]) -> Any:
    """Qlib's element-wise operator ``name`` on panels or numbers, in the operands' dtypes."""
    if not any(isinstance(v, np.ndarray) for v in args):
        # Qlib evaluates number-only parts as Python numbers; a NumPy scalar would instead widen a
        # float32 operand to float64 under NumPy 2 promotion.
        with np.errstate(all="ignore"):
            return np.asarray(elementwise(name, [np.asarray(v) for v in args])).item()
    a = args[0]
    if name == "Abs":
        return np.abs(a)
    if name == "Sign":
        return np.sign(np.asarray(a, dtype=np.float32))
    if name == "Log":
        return np.log(a)
    if name == "Not":
        return np.bitwise_not(a)
    if name == "Neg":
        return np.negative(a)
    if name == "If":
        return np.where(np.asarray(a, dtype=bool), args[1], args[2])
    b = args[1]
    binary = {
        "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Power": np.power,
        "Greater": np.maximum, "Less": np.minimum, "Gt": np.greater, "Ge": np.greater_equal,
        "Lt": np.less, "Le": np.less_equal, "Eq": np.equal, "Ne": np.not_equal,
        "And": np.bitwise_and, "Or": np.bitwise_or,
    }
    return binary[name](a, b)
