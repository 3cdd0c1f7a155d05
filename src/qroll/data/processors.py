"""Data processors: Qlib's per-column transforms of a handler frame, with Qlib's numbers.

A processor takes the handler layout (rows indexed by ``(datetime, instrument)``, two-level
columns ``("feature", NAME)`` ... ``("label", NAME)``) and returns it transformed. ``fields_group``
picks the columns: ``None`` means all of them (the label too), ``"feature"`` or ``"label"`` one
group. Processors with a fit range (:class:`ZScoreNorm`, :class:`RobustZScoreNorm`,
:class:`MinMaxNorm`) learn their statistics from the rows with
``fit_start_time <= datetime <= fit_end_time`` (both inclusive).

The cross-sectional ("per day") processors reproduce pandas' float32 reductions exactly
(NaN set to 0 in place, NumPy pairwise sums per column, float32 counts), so their output is
bit-identical to Qlib's ``groupby("datetime").apply`` while running one NumPy pass per day.
"""

from __future__ import annotations

import warnings
from typing import Any, cast

import numpy as np
import pandas as pd

from qroll.errors import ProcessorError

__all__ = [
    "CSRankNorm",
    "CSZFillna",
    "CSZScoreNorm",
    "DropCol",
    "DropnaFeature",
    "DropnaLabel",
    "DropnaProcessor",
    "Fillna",
    "FilterCol",
    "MinMaxNorm",
    "ProcessInf",
    "Processor",
    "RobustZScoreNorm",
    "TanhProcess",
    "ZScoreNorm",
    "get_group_columns",
]

EPS = 1e-12


def get_group_columns(df: pd.DataFrame, group: str | None) -> pd.Index:
    """The columns of ``df`` in the column group ``group`` (all columns for ``None``).

    Raises
    ------
    ProcessorError
        If ``group`` is not a top-level column group of ``df``.

    Examples
    --------
    >>> cols = pd.MultiIndex.from_tuples([("feature", "A"), ("label", "L")])
    >>> get_group_columns(pd.DataFrame(columns=cols), "label").tolist()
    [('label', 'L')]
    """
    if group is None:
        return df.columns
    groups = df.columns.get_level_values(0).unique().tolist() if df.columns.nlevels > 1 else []
    if group not in groups:
        raise ProcessorError(
            f"fields_group={group!r} is not a column group of the data (groups: {groups}); "
            "use one of them, or None for all columns"
        )
    return cast(pd.Index, df.columns[df.columns.get_loc(group)])


def _fit_rows(df: pd.DataFrame, start: Any, end: Any) -> pd.DataFrame:
    if start is None and end is None:
        return df
    return df.loc[pd.IndexSlice[slice(start, end), :], :]


def _with_values(df: pd.DataFrame, cols: pd.Index, values: np.ndarray) -> pd.DataFrame:
    """``df`` with the columns ``cols`` replaced by ``values`` (rows × len(cols)).

    The other columns are shared with ``df``, not copied: a label-only processor on a frame of
    158 features allocates one column. Every processor that reads several columns makes its own
    layout explicit (``_columns_major``, ``_fit_values``), so the block layout of the result
    cannot change a number.
    """
    positions = df.columns.get_indexer(cols)
    if all(dt == values.dtype for dt in df.dtypes):
        if len(positions) == df.shape[1] and np.array_equal(positions, np.arange(df.shape[1])):
            # Every column replaced: `values` (fresh from the processor) becomes the frame, as one
            # column-major block; it is copied only if it still shares memory with `df`.
            block = np.asfortranarray(values)
            if any(np.may_share_memory(block, b.values) for b in df._mgr.blocks):
                block = block.copy(order="F")
            return pd.DataFrame(block, index=df.index, columns=df.columns, copy=False)
        out = df.copy(deep=False)  # copy-on-write: the untouched blocks stay views of df's
        out.isetitem(list(positions), np.asarray(values))
        return out
    out = df.copy()
    out[cols] = values
    return out


def _day_bounds(df: pd.DataFrame) -> tuple[np.ndarray | None, np.ndarray]:
    """(row order or None if rows are already grouped by day, start positions of each day + end)."""
    if "datetime" not in df.index.names:
        raise ProcessorError(
            f"the data's index has no 'datetime' level (levels: {list(df.index.names)}); "
            "processors need the handler layout (datetime, instrument)"
        )
    dates = np.asarray(pd.DatetimeIndex(df.index.get_level_values("datetime")).asi8)
    order = None
    if len(dates) > 1 and np.any(dates[1:] < dates[:-1]):
        order = np.argsort(dates, kind="stable")
        dates = dates[order]
    cuts = np.flatnonzero(dates[1:] != dates[:-1]) + 1
    return order, np.concatenate([[0], cuts, [len(dates)]]).astype(np.int64)


def _columns_major(df: pd.DataFrame, cols: pd.Index, order: np.ndarray | None) -> np.ndarray:
    """A writable C-contiguous (columns, rows) copy of the selected values: each column contiguous."""
    values = df[cols].to_numpy()
    if order is not None:
        values = values[order]
    return np.array(values.T, order="C", copy=True)


def _back(out_t: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    values = out_t.T
    if order is not None:
        restored = np.empty_like(values)
        restored[order] = values
        return restored
    return values


def _pd_mean(block: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """pandas' skipna mean of each row of ``block`` (columns, n): NaN->0 in place, then sum / count."""
    dtype = block.dtype
    zeroed = np.where(mask, 0, block)
    count = (block.shape[1] - mask.sum(axis=1)).astype(dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        return zeroed.sum(axis=1, dtype=dtype) / count


def _pd_std(block: np.ndarray, mask: np.ndarray, ddof: int = 1) -> np.ndarray:
    """pandas' skipna std of each row: float64 two-pass variance, rounded to the input dtype."""
    dtype = block.dtype
    zeroed = np.where(mask, 0, block)
    count = (block.shape[1] - mask.sum(axis=1)).astype(dtype)
    d = count - dtype.type(ddof)
    few = count <= ddof
    d[few] = np.nan
    count[few] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = zeroed.sum(axis=1, dtype=np.float64) / count
        sqr = (avg[:, None] - zeroed) ** 2
        sqr[mask] = 0
        var = (sqr.sum(axis=1, dtype=np.float64) / d).astype(dtype)
        return np.sqrt(var)


class Processor:
    """A transform of a handler frame; Qlib's ``Processor`` interface.

    Subclasses override :meth:`__call__` and, when they learn statistics, :meth:`fit`.

    Notes
    -----
    A processor of your own is a subclass in any importable module, named in a handler's
    ``infer_processors`` / ``learn_processors`` as ``{"class": "Demean", "module_path":
    "mypkg.procs", "kwargs": {...}}``. When its ``__init__`` takes ``fit_start_time`` and
    ``fit_end_time``, the handler passes the train segment's first and last day (unless the config
    sets them), so statistics are learnt from train rows only; :meth:`fit` receives the frame and
    learns from those rows. ``is_for_infer()`` returning False keeps it off inference data (the
    handler refuses it in ``infer_processors``); ``readonly()`` returning True lets the handler skip
    a defensive copy. A built-in processor is added to ``QROLL_CLASSES`` too (see ARCHITECTURE.md).

    Examples
    --------
    >>> import pandas as pd
    >>> class Demean(Processor):
    ...     def fit(self, df=None):
    ...         self.mean = df.mean()
    ...     def __call__(self, df):
    ...         return df - self.mean
    >>> frame = pd.DataFrame({"x": [1.0, 2.0, 6.0]})
    >>> proc = Demean()
    >>> proc.fit(frame)
    >>> proc(frame)["x"].tolist()
    [-2.0, -1.0, 3.0]
    """

    def fit(self, df: pd.DataFrame | None = None) -> None:
        """Learn what the processor needs from ``df`` (nothing by default)."""

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        """Return the processed frame."""
        raise NotImplementedError(f"{type(self).__name__} does not implement __call__")

    def is_for_infer(self) -> bool:
        """Whether the processor may run on inference data (``DropnaLabel`` may not)."""
        return True

    def readonly(self) -> bool:
        """Whether the processor leaves its input unchanged, so the handler need not copy it."""
        return False

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_train"))
        return f"{type(self).__name__}({args})"


class DropnaProcessor(Processor):
    """Drop the rows with a NaN in any column of ``fields_group``."""

    def __init__(self, fields_group: str | None = None) -> None:
        self.fields_group = fields_group

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        return df.dropna(subset=get_group_columns(df, self.fields_group))

    def readonly(self) -> bool:
        return True


class DropnaLabel(DropnaProcessor):
    """Drop the rows whose label is NaN; learning data only."""

    def __init__(self, fields_group: str = "label") -> None:
        super().__init__(fields_group=fields_group)

    def is_for_infer(self) -> bool:
        return False


class DropnaFeature(DropnaProcessor):
    """Drop the rows with a NaN feature (Qlib spells it ``DropnaProcessor(fields_group="feature")``)."""

    def __init__(self, fields_group: str = "feature") -> None:
        super().__init__(fields_group=fields_group)


class DropCol(Processor):
    """Drop the columns whose last-level name is in ``col_list``."""

    def __init__(self, col_list: list[str] | None = None) -> None:
        self.col_list = list(col_list or [])

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        mask = df.columns.get_level_values(-1).isin(self.col_list)
        return df.loc[:, ~mask]

    def readonly(self) -> bool:
        return True


class FilterCol(Processor):
    """Keep the ``col_list`` columns of ``fields_group`` and every column outside the group."""

    def __init__(self, fields_group: str = "feature", col_list: list[str] | None = None) -> None:
        self.fields_group = fields_group
        self.col_list = list(col_list or [])

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        cols = get_group_columns(df, self.fields_group)
        names = df.columns.get_level_values(-1)
        outside = set(names) - set(cols.get_level_values(-1))
        return df.loc[:, names.isin(outside | set(self.col_list))]

    def readonly(self) -> bool:
        return True


class Fillna(Processor):
    """Replace NaN by ``fill_value`` in ``fields_group`` (``None``: every column, the label too)."""

    def __init__(self, fields_group: str | None = None, fill_value: float = 0) -> None:
        self.fields_group = fields_group
        self.fill_value = fill_value

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        cols = get_group_columns(df, self.fields_group)
        values = df[cols].to_numpy()
        filled = np.where(np.isnan(values), values.dtype.type(self.fill_value), values)
        return _with_values(df, cols, filled)


class ProcessInf(Processor):
    """Replace ±inf by the mean of the column's finite values on that day (all columns)."""

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        values = df.to_numpy()
        if values.dtype.kind != "f" or not np.isinf(values).any():
            return df
        order, bounds = _day_bounds(df)
        cols = df.columns
        at = _columns_major(df, cols, order)
        inf_cols = np.flatnonzero(np.isinf(at).any(axis=1))
        for c in inf_cols:
            row = at[c]
            # Only the days that hold an inf in this column need a mean.
            inf_days = np.unique(np.searchsorted(bounds, np.flatnonzero(np.isinf(row)), "right") - 1)
            for d in inf_days:
                day = row[bounds[d] : bounds[d + 1]]
                bad = np.isinf(day)
                # pandas averages the compacted finite values: positions shift past each inf.
                kept = day[~bad][None, :]
                day[bad] = _pd_mean(kept, np.isnan(kept))[0]
        return _with_values(df, cols, _back(at, order))


class CSZScoreNorm(Processor):
    """Cross-sectional z-score per day: ``(x - mean) / std`` (ddof 1), or a robust variant.

    ``method="robust"``: ``clip((x - median) / MAD / 1.4826, -3, 3)`` with no EPS.
    """

    def __init__(self, fields_group: str | None = None, method: str = "zscore") -> None:
        if method not in ("zscore", "robust"):
            raise ProcessorError(f"CSZScoreNorm method={method!r} is unknown: use 'zscore' or 'robust'")
        self.fields_group = fields_group
        self.method = method

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        cols = get_group_columns(df, self.fields_group)
        if self.method == "robust":
            return self._robust(df, cols)
        order, bounds = _day_bounds(df)
        at = _columns_major(df, cols, order)
        out = np.empty_like(at)
        with np.errstate(invalid="ignore", divide="ignore"):
            for s, e in zip(bounds[:-1], bounds[1:], strict=True):
                block = at[:, s:e]
                mask = np.isnan(block)
                out[:, s:e] = (block - _pd_mean(block, mask)[:, None]) / _pd_std(block, mask)[:, None]
        return _with_values(df, cols, _back(out, order))

    @staticmethod
    def _robust(df: pd.DataFrame, cols: pd.Index) -> pd.DataFrame:
        def robust_zscore(x: pd.DataFrame) -> pd.DataFrame:
            x = x - x.median()
            mad = x.abs().median()
            return np.clip(x / mad / 1.4826, -3, 3)

        with np.errstate(invalid="ignore", divide="ignore"):
            result = df[cols].groupby("datetime", group_keys=False).apply(robust_zscore)
        return _with_values(df, cols, result.loc[df.index].to_numpy())


class CSZFillna(Processor):
    """Fill NaN with the mean of that day's values, per column."""

    def __init__(self, fields_group: str | None = None) -> None:
        self.fields_group = fields_group

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        cols = get_group_columns(df, self.fields_group)
        order, bounds = _day_bounds(df)
        at = _columns_major(df, cols, order)
        for s, e in zip(bounds[:-1], bounds[1:], strict=True):
            block = at[:, s:e]
            mask = np.isnan(block)
            if mask.any():
                mean = np.broadcast_to(_pd_mean(block, mask)[:, None], block.shape)
                block[mask] = mean[mask]
        return _with_values(df, cols, _back(at, order))


class CSRankNorm(Processor):
    """Cross-sectional rank per day: ``(pct_rank - 0.5) * 3.46``; the columns become float64."""

    def __init__(self, fields_group: str | None = None) -> None:
        self.fields_group = fields_group

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        cols = get_group_columns(df, self.fields_group)
        ranked = df[cols].groupby("datetime", group_keys=False).rank(pct=True)
        ranked -= 0.5
        ranked *= 3.46
        return _with_values(df, cols, ranked.to_numpy())


class TanhProcess(Processor):
    """``tanh(x - 1)`` on every column whose name does not contain ``LABEL``."""

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        cols = df.columns[~df.columns.get_level_values(-1).str.contains("LABEL")]
        return _with_values(df, cols, np.tanh(df[cols].to_numpy() - 1))


class _FitRangeProcessor(Processor):
    """A processor that learns per-column statistics on ``[fit_start_time, fit_end_time]``."""

    def __init__(
        self, fit_start_time: Any = None, fit_end_time: Any = None, fields_group: str | None = None
    ) -> None:
        self.fit_start_time = fit_start_time
        self.fit_end_time = fit_end_time
        self.fields_group = fields_group
        self.cols: pd.Index | None = None

    def _fit_values(self, df: pd.DataFrame) -> np.ndarray:
        rows = _fit_rows(df, self.fit_start_time, self.fit_end_time)
        if rows.empty:
            raise ProcessorError(
                f"{type(self).__name__} has no rows to fit in {self.fit_start_time}..{self.fit_end_time}: "
                "choose a fit range inside the handler's time range"
            )
        self.cols = get_group_columns(rows, self.fields_group)
        # Qlib's `.values` of a multi-block frame is column-major; NumPy then sums each column
        # pairwise, which the float32 statistics depend on.
        return np.asfortranarray(rows[self.cols].to_numpy())

    def _checked_cols(self, df: pd.DataFrame) -> pd.Index:
        if self.cols is None:
            raise ProcessorError(f"{type(self).__name__} is used before fit(): call fit(df) first")
        return self.cols


class ZScoreNorm(_FitRangeProcessor):
    """``(x - mean) / std`` with mean and std (ddof 0) of each column over the fit range.

    A column with std 0 is left unchanged (mean 0, std 1).
    """

    def fit(self, df: pd.DataFrame | None = None) -> None:
        assert df is not None
        values = self._fit_values(df)
        with warnings.catch_warnings(), np.errstate(invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, as in Qlib
            self.mean_train = np.nanmean(values, axis=0)
            self.std_train = np.nanstd(values, axis=0)
        ignore = self.std_train == 0
        self.std_train[ignore] = 1
        self.mean_train[ignore] = 0

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        cols = self._checked_cols(df)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = (df[cols].to_numpy() - self.mean_train) / self.std_train
        return _with_values(df, cols, values)


class RobustZScoreNorm(_FitRangeProcessor):
    """``(x - median) / ((MAD + 1e-12) * 1.4826)`` per column over the fit range, clipped to ±3.

    ``clip_outlier=False`` skips the clipping.
    """

    def __init__(
        self,
        fit_start_time: Any = None,
        fit_end_time: Any = None,
        fields_group: str | None = None,
        clip_outlier: bool = True,
    ) -> None:
        super().__init__(fit_start_time, fit_end_time, fields_group)
        self.clip_outlier = clip_outlier

    def fit(self, df: pd.DataFrame | None = None) -> None:
        assert df is not None
        values = self._fit_values(df)
        with warnings.catch_warnings(), np.errstate(invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            self.mean_train = np.nanmedian(values, axis=0)
            self.std_train = np.nanmedian(np.abs(values - self.mean_train), axis=0)
        self.std_train += EPS
        self.std_train *= 1.4826

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        cols = self._checked_cols(df)
        values = df[cols].to_numpy().copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            values -= self.mean_train
            values /= self.std_train
        if self.clip_outlier:
            values = np.clip(values, -3, 3)
        return _with_values(df, cols, values)


class MinMaxNorm(_FitRangeProcessor):
    """``(x - min) / (max - min)`` per column over the fit range; constant columns are unchanged."""

    def fit(self, df: pd.DataFrame | None = None) -> None:
        assert df is not None
        values = self._fit_values(df)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.min_val = np.nanmin(values, axis=0)
            self.max_val = np.nanmax(values, axis=0)
        ignore = self.min_val == self.max_val
        self.min_val[ignore] = 0
        self.max_val[ignore] = 1

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        cols = self._checked_cols(df)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = (df[cols].to_numpy() - self.min_val) / (self.max_val - self.min_val)
        return _with_values(df, cols, values)


FIT_RANGE_PROCESSORS = (ZScoreNorm, RobustZScoreNorm, MinMaxNorm)
"""The processors that take ``fit_start_time``/``fit_end_time``."""

DAY_LOCAL_PROCESSORS = frozenset({
    DropnaProcessor, DropnaLabel, DropnaFeature, DropCol, FilterCol, Fillna, ProcessInf,
    CSZScoreNorm, CSZFillna, CSRankNorm, TanhProcess,
})
"""Processors whose output rows for a day depend only on that day's input rows (and no fit).

Exact classes, not subclasses: a subclass may look across days.
"""


def is_day_local(proc: Processor) -> bool:
    """Whether ``proc`` is one of :data:`DAY_LOCAL_PROCESSORS` (its exact class).

    Examples
    --------
    >>> is_day_local(DropnaLabel()), is_day_local(ZScoreNorm("2010-01-01", "2012-12-31"))
    (True, False)
    """
    return type(proc) in DAY_LOCAL_PROCESSORS
