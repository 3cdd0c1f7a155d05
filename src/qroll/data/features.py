"""Qlib's Alpha158 and Alpha360 feature sets, and :func:`compute_features` over a data source.

The configs reproduce ``Alpha158DL.get_feature_config`` / ``Alpha360DL.get_feature_config`` of
pyqlib 0.9.7 name for name and string for string (``reference/alpha158.md`` §1–§2).

Examples
--------
>>> exprs, names = alpha158_config()
>>> len(names), names[:3], names[-1]
(158, ['KMID', 'KLEN', 'KMID2'], 'VSUMD60')
>>> alpha158_config({"rolling": {"windows": [5], "include": ["MA"]}})
(['Mean($close, 5)/$close'], ['MA5'])
>>> exprs, names = alpha360_config()
>>> len(names), names[0], exprs[0]
(360, 'CLOSE59', 'Ref($close, 59)/$close')
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from qroll.data.expression import Evaluator, extent, fields_of, parse
from qroll.data.source import field_name, ranges_from_values
from qroll.errors import ConfigValueError, DataError, DataNotFoundError, ExpressionError, MissingFieldWarning

__all__ = [
    "ALPHA158_CONFIG",
    "DEFAULT_LABEL",
    "alpha158_config",
    "alpha360_config",
    "compute_features",
]

ALPHA158_CONFIG: dict[str, Any] = {
    "kbar": {},
    "price": {"windows": [0], "feature": ["OPEN", "HIGH", "LOW", "VWAP"]},
    "rolling": {},
}
"""The config Qlib's ``Alpha158`` handler passes to ``Alpha158DL.get_feature_config``."""

DEFAULT_LABEL: tuple[list[str], list[str]] = (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"])
"""Alpha158's and Alpha360's label: the return from the next close to the close after it."""

_KBAR = [
    ("KMID", "($close-$open)/$open"),
    ("KLEN", "($high-$low)/$open"),
    ("KMID2", "($close-$open)/($high-$low+1e-12)"),
    ("KUP", "($high-Greater($open, $close))/$open"),
    ("KUP2", "($high-Greater($open, $close))/($high-$low+1e-12)"),
    ("KLOW", "(Less($open, $close)-$low)/$open"),
    ("KLOW2", "(Less($open, $close)-$low)/($high-$low+1e-12)"),
    ("KSFT", "(2*$close-$high-$low)/$open"),
    ("KSFT2", "(2*$close-$high-$low)/($high-$low+1e-12)"),
]

_DIFF_C = "$close-Ref($close, 1)"
_DIFF_V = "$volume-Ref($volume, 1)"
# (config key, name prefix, template with {d} = window), in Qlib's order.
_ROLLING = [
    ("ROC", "ROC", "Ref($close, {d})/$close"),
    ("MA", "MA", "Mean($close, {d})/$close"),
    ("STD", "STD", "Std($close, {d})/$close"),
    ("BETA", "BETA", "Slope($close, {d})/$close"),
    ("RSQR", "RSQR", "Rsquare($close, {d})"),
    ("RESI", "RESI", "Resi($close, {d})/$close"),
    ("MAX", "MAX", "Max($high, {d})/$close"),
    ("LOW", "MIN", "Min($low, {d})/$close"),
    ("QTLU", "QTLU", "Quantile($close, {d}, 0.8)/$close"),
    ("QTLD", "QTLD", "Quantile($close, {d}, 0.2)/$close"),
    ("RANK", "RANK", "Rank($close, {d})"),
    ("RSV", "RSV", "($close-Min($low, {d}))/(Max($high, {d})-Min($low, {d})+1e-12)"),
    ("IMAX", "IMAX", "IdxMax($high, {d})/{d}"),
    ("IMIN", "IMIN", "IdxMin($low, {d})/{d}"),
    ("IMXD", "IMXD", "(IdxMax($high, {d})-IdxMin($low, {d}))/{d}"),
    ("CORR", "CORR", "Corr($close, Log($volume+1), {d})"),
    ("CORD", "CORD", "Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), {d})"),
    ("CNTP", "CNTP", "Mean($close>Ref($close, 1), {d})"),
    ("CNTN", "CNTN", "Mean($close<Ref($close, 1), {d})"),
    ("CNTD", "CNTD", "Mean($close>Ref($close, 1), {d})-Mean($close<Ref($close, 1), {d})"),
    ("SUMP", "SUMP", f"Sum(Greater({_DIFF_C}, 0), {{d}})/(Sum(Abs({_DIFF_C}), {{d}})+1e-12)"),
    ("SUMN", "SUMN", f"Sum(Greater(Ref($close, 1)-$close, 0), {{d}})/(Sum(Abs({_DIFF_C}), {{d}})+1e-12)"),
    ("SUMD", "SUMD", f"(Sum(Greater({_DIFF_C}, 0), {{d}})-Sum(Greater(Ref($close, 1)-$close, 0), {{d}}))"
     f"/(Sum(Abs({_DIFF_C}), {{d}})+1e-12)"),
    ("VMA", "VMA", "Mean($volume, {d})/($volume+1e-12)"),
    ("VSTD", "VSTD", "Std($volume, {d})/($volume+1e-12)"),
    ("WVMA", "WVMA", "Std(Abs($close/Ref($close, 1)-1)*$volume, {d})"
     "/(Mean(Abs($close/Ref($close, 1)-1)*$volume, {d})+1e-12)"),
    ("VSUMP", "VSUMP", f"Sum(Greater({_DIFF_V}, 0), {{d}})/(Sum(Abs({_DIFF_V}), {{d}})+1e-12)"),
    ("VSUMN", "VSUMN", f"Sum(Greater(Ref($volume, 1)-$volume, 0), {{d}})/(Sum(Abs({_DIFF_V}), {{d}})+1e-12)"),
    ("VSUMD", "VSUMD", f"(Sum(Greater({_DIFF_V}, 0), {{d}})-Sum(Greater(Ref($volume, 1)-$volume, 0), {{d}}))"
     f"/(Sum(Abs({_DIFF_V}), {{d}})+1e-12)"),
]


def alpha158_config(config: Mapping[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """Expressions and names of Alpha158, like Qlib's ``Alpha158DL.get_feature_config(config)``.

    Parameters
    ----------
    config : mapping, optional
        Keys ``kbar`` (9 candle features), ``price`` (``windows``: lags in trading days, default
        ``range(5)``; ``feature``: fields, default OPEN HIGH LOW CLOSE VWAP), ``volume``
        (``windows``, default ``range(5)``) and ``rolling`` (``windows`` in trading days, default
        5 10 20 30 60; ``include``/``exclude``: family keys, where MIN's key is ``"LOW"``).
        Default: :data:`ALPHA158_CONFIG`, which gives the 158 features.

    Returns
    -------
    (list of str, list of str)
        The expressions and their names, in Qlib's order.
    """
    config = ALPHA158_CONFIG if config is None else config
    exprs: list[str] = []
    names: list[str] = []
    if "kbar" in config:
        names += [n for n, _ in _KBAR]
        exprs += [e for _, e in _KBAR]
    if "price" in config:
        windows = config["price"].get("windows", range(5))
        for field in config["price"].get("feature", ["OPEN", "HIGH", "LOW", "CLOSE", "VWAP"]):
            low = field.lower()
            exprs += [f"Ref(${low}, {d})/$close" if d != 0 else f"${low}/$close" for d in windows]
            names += [f"{field.upper()}{d}" for d in windows]
    if "volume" in config:
        windows = config["volume"].get("windows", range(5))
        exprs += [
            f"Ref($volume, {d})/($volume+1e-12)" if d != 0 else "$volume/($volume+1e-12)" for d in windows
        ]
        names += [f"VOLUME{d}" for d in windows]
    if "rolling" in config:
        windows = config["rolling"].get("windows", [5, 10, 20, 30, 60])
        include = config["rolling"].get("include")
        exclude = config["rolling"].get("exclude", [])
        for key, prefix, template in _ROLLING:
            if key in exclude or (include is not None and key not in include):
                continue
            exprs += [template.format(d=d) for d in windows]
            names += [f"{prefix}{d}" for d in windows]
    return exprs, names


def alpha360_config() -> tuple[list[str], list[str]]:
    """Expressions and names of Alpha360 (``Alpha360DL.get_feature_config``): 6 blocks × lags 59..0."""
    exprs: list[str] = []
    names: list[str] = []
    for field in ("close", "open", "high", "low", "vwap"):
        exprs += [f"Ref(${field}, {i})/$close" for i in range(59, 0, -1)] + [f"${field}/$close"]
        names += [f"{field.upper()}{i}" for i in range(59, -1, -1)]
    exprs += [f"Ref($volume, {i})/($volume+1e-12)" for i in range(59, 0, -1)] + ["$volume/($volume+1e-12)"]
    names += [f"VOLUME{i}" for i in range(59, -1, -1)]
    return exprs, names


def compute_features(
    source: Any,
    feature_exprs: Sequence[str],
    feature_names: Sequence[str],
    label_exprs: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    instruments: str | Sequence[str] = "all",
    start: Any = None,
    end: Any = None,
    n_jobs: int | None = None,
    *,
    warm_up: int | None = None,
) -> pd.DataFrame:
    """Compute feature and label expressions for every instrument at once, in Qlib's handler layout.

    Parameters
    ----------
    source : Source
        Anything with ``calendar``, ``instruments(market)``, ``fields()`` and ``load(...)``, and
        ideally ``stored_ranges(...)``; without it each field's stored range is approximated by
        its first..last non-NaN value (see :class:`~qroll.data.source.Source`).
    feature_exprs, feature_names : sequence of str
        Qlib expressions and their column names (group ``"feature"``).
    label_exprs, label_names : sequence of str, optional
        The same for group ``"label"``; none by default (pass ``*DEFAULT_LABEL`` for LABEL0).
    instruments : str or sequence of str
        A market name (rows outside its membership spans are dropped after the computation) or a
        list of symbols (no span filter), as in Qlib.
    start, end : date, optional
        Inclusive bounds, snapped inward to trading days; the history and future each expression
        needs (:func:`~qroll.data.expression.extent`) are loaded beyond them.
    n_jobs : int, optional
        Threads, each computing a block of instruments; default: the CPU count (at most 8).
    warm_up : int, optional
        Trading days evaluated before ``start``, for every expression (at least its own look-back).
        By default each expression is evaluated from its own look-back before ``start``, as Qlib
        loads it. ``start``'s calendar position evaluates everything from the first day: the
        values, bit for bit, of a computation over the whole calendar (pandas' rolling sums and
        Qlib's regression keep running sums from the series' first day, so a later first day can
        change the last bits).

    Returns
    -------
    DataFrame
        float32, indexed by sorted (``datetime``, ``instrument``), columns (``feature``, NAME) then
        (``label``, NAME); one row per instrument-day inside the stored range of any field the
        expressions read, stored NaN days included (and inside its membership spans, for a market).

    Warns
    -----
    MissingFieldWarning
        Once, naming the fields the expressions read but the source lacks; those values are NaN.
    """
    label_exprs, label_names = list(label_exprs or []), list(label_names or [])
    exprs = list(feature_exprs) + label_exprs
    names = list(feature_names) + label_names
    if len(feature_exprs) != len(feature_names) or len(label_exprs) != len(label_names):
        raise ExpressionError(
            f"{len(feature_exprs)} feature and {len(label_exprs)} label expressions but "
            f"{len(feature_names)} and {len(label_names)} names: give one name per expression"
        )
    if warm_up is not None and (isinstance(warm_up, bool) or not isinstance(warm_up, int) or warm_up < 0):
        raise ConfigValueError(f"warm_up={warm_up!r} must be a whole number of trading days >= 0, or None")
    nodes = [parse(e) for e in exprs]
    days = source.calendar.days
    s, e = _snap(days, start, end)
    sizes = [(max(lft, warm_up or 0), rgt) for lft, rgt in (extent(n) for n in nodes)] or [(0, 0)]
    lo = max(0, s - max(z[0] for z in sizes))
    hi = min(len(days) - 1, e + max(z[1] for z in sizes))

    spans = _universe(source, instruments)
    symbols = sorted(spans)
    needed = sorted(set().union(*(fields_of(n) for n in nodes)))
    available = set(source.fields())
    missing = [f for f in needed if f not in available]
    if missing:
        warnings.warn(
            f"the source {getattr(source, 'uri', source)!r} has no field "
            f"{', '.join('$' + f for f in missing)}: "
            "the expressions that read it are NaN; drop them or use a source that stores it",
            MissingFieldWarning,
            stacklevel=2,
        )
    present = [f for f in needed if f in available]
    loaded = source.load(present, symbols, days[lo], days[hi]) if present and symbols else {}
    shape = (hi - lo + 1, len(symbols))
    panels: dict[str, np.ndarray] = {}
    for f in needed:
        frame = loaded.get(f)
        panels[f] = _align(frame, days[lo : hi + 1], symbols) if frame is not None else np.full(
            shape, np.nan, dtype=np.float32
        )

    ranges = _stored_ranges(source, needed, present, symbols, panels, days, lo, hi)
    rows = _row_mask(ranges, s, e, days[s : e + 1], symbols, spans, instruments)
    # Column-major, so each feature's values are one contiguous run and the frame needs no copy.
    block = np.empty((len(nodes), int(rows.sum())), dtype=np.float32).T
    dest = np.full(rows.shape, -1, dtype=np.int64)
    dest[rows] = np.arange(block.shape[0])

    # Qlib loads each expression from s - lft(E) (§3.1), and that start fixes the round-off of the
    # online window algorithms and the value of start-dependent operators (Ref(x, 0), EMA). So
    # expressions are evaluated in groups sharing a first day; with full history there is one group.
    groups: dict[int, list[int]] = {}
    for j, (lft, _) in enumerate(sizes[: len(nodes)]):
        groups.setdefault(max(lo, s - lft), []).append(j)

    def run(cols: slice) -> None:
        sel = rows[:, cols]
        where = dest[:, cols][sel]
        whole = len(where) == block.shape[0]  # one block: rows already in order
        r_sel, c_sel = np.nonzero(sel)
        for first, members in groups.items():
            part = {f: p[first - lo :, cols] for f, p in panels.items()}
            bounds = {f: (a[cols] - first, b[cols] - first) for f, (a, b) in ranges.items()}
            # Flat positions of the wanted (day, instrument) cells in an (instruments, days) buffer.
            flat = c_sel * (shape[0] - (first - lo)) + (r_sel + (s - first))
            for j, value in zip(members, Evaluator(part, bounds).evaluate_many([nodes[i] for i in members]),
                                strict=True):
                picked = np.take(np.ravel(value.T), flat)
                if whole:
                    block[:, j] = picked
                else:
                    block[where, j] = picked

    # Every instrument is computed on its own, so column blocks run in threads: the pandas and
    # NumPy kernels release the GIL.
    jobs = n_jobs if n_jobs is not None else min(os.cpu_count() or 1, 8)
    jobs = max(1, min(jobs, len(symbols) // 16 or 1))
    bounds = np.linspace(0, len(symbols), jobs + 1).astype(int)
    chunks = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    if len(chunks) <= 1:
        for chunk in chunks:
            run(chunk)
    else:
        with ThreadPoolExecutor(len(chunks)) as pool:
            for future in [pool.submit(run, chunk) for chunk in chunks]:
                future.result()
    r_idx, c_idx = np.nonzero(rows)
    index = pd.MultiIndex(
        levels=[pd.DatetimeIndex(days[s : e + 1]), pd.Index(symbols, dtype=object)],
        codes=[r_idx, c_idx],  # type: ignore[list-item]
        names=["datetime", "instrument"],
    )
    columns = pd.MultiIndex.from_arrays(
        [["feature"] * len(feature_names) + ["label"] * len(label_names), names]
    )
    return pd.DataFrame(block, index=index, columns=columns, copy=False)


def _snap(days: pd.DatetimeIndex, start: Any, end: Any) -> tuple[int, int]:
    s = 0 if start is None else int(days.searchsorted(pd.Timestamp(start), side="left"))
    e = len(days) - 1 if end is None else int(days.searchsorted(pd.Timestamp(end), side="right")) - 1
    if s > e:
        raise DataNotFoundError(
            f"no trading day between start={start} and end={end} "
            f"(the data has {days[0].date()}..{days[-1].date()}); widen the range"
        )
    return s, e


def _universe(source: Any, instruments: str | Sequence[str]) -> dict[str, list[Any]]:
    if isinstance(instruments, str):
        return {str(k).upper(): list(v) for k, v in source.instruments(instruments).items()}
    return {str(sym).upper(): [] for sym in instruments}


def _align(frame: pd.DataFrame, index: pd.DatetimeIndex, symbols: list[str]) -> np.ndarray:
    if frame.shape == (len(index), len(symbols)) and list(frame.columns) == symbols:
        return frame.to_numpy(dtype=np.float32)
    return frame.reindex(index=index, columns=symbols).to_numpy(dtype=np.float32)


def _stored_ranges(
    source: Any,
    needed: list[str],
    present: list[str],
    symbols: list[str],
    panels: Mapping[str, np.ndarray],
    days: pd.DatetimeIndex,
    lo: int,
    hi: int,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each needed field's stored range per symbol, in calendar positions clipped to ``[lo, hi]``.

    From ``source.stored_ranges`` when the source has it; otherwise approximated by each field's
    first..last non-NaN loaded day (see :class:`~qroll.data.source.Source`). A field the source
    lacks has an empty range (``first > last``): it adds no rows.
    """
    if present and symbols and callable(getattr(source, "stored_ranges", None)):
        got = source.stored_ranges(present, symbols, days[lo], days[hi])
        found = {field_name(k): v for k, v in got.items()}
    else:
        found = ranges_from_values({f: panels[f] for f in present}, offset=lo)
    empty = (np.full(len(symbols), hi + 1, dtype=np.int64), np.full(len(symbols), lo - 1, dtype=np.int64))
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for f in needed:
        if f not in found:
            out[f] = empty
            continue
        first, last = (np.asarray(a, dtype=np.int64).reshape(-1) for a in found[f])
        if first.shape != (len(symbols),) or last.shape != (len(symbols),):
            raise DataError(
                f"{getattr(source, 'uri', source)!r}.stored_ranges gave {first.size}/{last.size} "
                f"ranges of ${f} for {len(symbols)} instruments: it must give one per instrument"
            )
        out[f] = (np.maximum(first, lo), np.minimum(last, hi))
    return out


def _row_mask(
    ranges: Mapping[str, tuple[np.ndarray, np.ndarray]],
    s: int,
    e: int,
    dates: pd.DatetimeIndex,
    symbols: list[str],
    spans: Mapping[str, list[Any]],
    instruments: str | Sequence[str],
) -> np.ndarray:
    """Rows to return (days ``s..e`` × symbols): inside a stored range and, for a market, a span.

    Qlib's per-instrument result has the union of its expressions' indexes, and an expression's
    index is the union of its fields' stored ranges, stored NaN days included (``alpha158.md`` §4).
    """
    t = np.arange(s, e + 1)[:, None]
    rows = np.zeros((e - s + 1, len(symbols)), dtype=bool)
    for first, last in ranges.values():
        rows |= (t >= first[None, :]) & (t <= last[None, :])
    if isinstance(instruments, str):
        member = np.zeros_like(rows)
        for k, sym in enumerate(symbols):
            for first, last in spans[sym]:
                a = dates.searchsorted(pd.Timestamp(first), side="left")
                b = dates.searchsorted(pd.Timestamp(last), side="right")
                member[a:b, k] = True
        rows &= member
    return rows
