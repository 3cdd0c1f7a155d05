"""How a feature-cache entry grows by new days, and how an as-of view is cut out of it.

**Extension.** Features only look back: the value of a column on day t depends on the data of
days ``t - look_back .. t + look_ahead`` (:func:`~qroll.data.expression.look_back`,
:func:`~qroll.data.expression.look_ahead`). When the source gained days and its past is unchanged
(:meth:`~qroll.data.source.Source.fingerprint_until` of the entry's last day D equals the one the
entry recorded), :func:`extend` computes the days from ``D + 1 - H`` on, H the largest look-ahead
of the columns, each expression with the warm-up its look-back needs
(:func:`~qroll.data.features.compute_features` with ``start``). Those first H days were the entry's
last days: their labels needed days after D and were NaN; the new values of the look-ahead
columns replace them there, while the other columns keep their stored values (their days are
done). An expression of unbounded memory (``EMA``, an expanding window, ``Ref(x, 0)``) cannot be
extended: the entry is computed again over the whole calendar.

**Numerics.** The new days are computed from a warm-up, not from the first day of the data.
pandas' rolling mean/sum/var/std/skew/kurt/corr kernels and Qlib's Slope/Rsquare/Resi keep running
sums from the first day they see, so their float64 result can differ in the last bits; the cache
stores float32, and most of that rounds away. Measured on Alpha158 (158 features and LABEL0) over
the synthetic market (300 instruments, 2008–2020, seed 0), new days computed from their warm-up
against a computation over the whole calendar, at 12 points from 2008 to 2020, 60 days each
(25.5 million values): 703 values differ (0.003 %), by at most 4 float32 units in the last place
(STD5 in 2019, a relative difference under 5e-7) and at most 1.2e-7 in absolute value (WVMA30);
the others are bit-identical, NaN where the other is NaN. On ``cn_csi300`` (its csi300 market,
back-adjusted prices up to 10⁴, 31 million values) the same comparison finds 309 values apart,
every column within 1.2e-7 absolute except RSQR30, up to 1.7e-3 there: Qlib's running-sum
regression cancels catastrophically on a nearly flat series of a high price. Making the extension
bit-identical would take the whole history through every running-sum kernel (those 95 of the 158
features alone take 2.2 s of a full computation's 3.7 s here): far over the one second an
extension may take, so the cache keeps the warm-up and this bound
(``tests/integration/test_cache_growth.py`` holds it to 8 units and 2.5e-7).

**As-of views.** :func:`as_of_rows` cuts the rows up to day d out of an entry: the look-back-only
columns are the entry's own values (views, no copy), identical to a computation on the
:class:`~qroll.data.asof.AsOfSource` itself, since both evaluate every series from the same first
day; the look-ahead columns of the last H days are computed again on the view (from the first day,
so bit for bit), which makes them NaN exactly where they would need a day after d. (On days an
extension added, the view's look-back columns are the extension's values, within the bound above
of a computation over the whole calendar.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

from qroll.data.cache_files import Rows
from qroll.data.expression import look_ahead, look_back

__all__ = ["Columns", "as_of_rows", "extend"]

Config = tuple[list[str], list[str]]
"""Expressions and their names."""


@dataclass(frozen=True, slots=True)
class Columns:
    """An entry's expressions, with each column's look-ahead and look-back (trading days)."""

    feature: tuple[list[str], list[str]]
    label: tuple[list[str], list[str]]
    ahead: tuple[int, ...]
    back: tuple[int | None, ...]

    @classmethod
    def of(cls, feature: tuple[Sequence[str], Sequence[str]],
           label: tuple[Sequence[str], Sequence[str]]) -> Columns:
        """The columns of ``feature`` then ``label`` (each ``(expressions, names)``)."""
        f = (list(feature[0]), list(feature[1]))
        g = (list(label[0]), list(label[1]))
        exprs = f[0] + g[0]
        return cls(feature=f, label=g, ahead=tuple(look_ahead(e) for e in exprs),
                   back=tuple(look_back(e) for e in exprs))

    @property
    def horizon(self) -> int:
        """The largest look-ahead: the entry's last days whose look-ahead columns are not final."""
        return max(self.ahead, default=0)

    @property
    def bounded(self) -> bool:
        """Whether every column has a finite look-back (the entry can be extended by new days)."""
        return all(b is not None for b in self.back)

    @property
    def unbounded(self) -> list[str]:
        """The expressions of unbounded memory."""
        exprs = self.feature[0] + self.label[0]
        return [e for e, b in zip(exprs, self.back, strict=True) if b is None]

    @property
    def forward(self) -> list[int]:
        """Positions of the columns that look ahead."""
        return [j for j, a in enumerate(self.ahead) if a > 0]

    def subset(self, positions: Sequence[int]) -> tuple[Config, Config]:
        """The ``(feature, label)`` configs of the columns at ``positions``, in the entry's order."""
        n = len(self.feature[0])
        mine = [j for j in positions if j < n]
        theirs = [j - n for j in positions if j >= n]
        return (([self.feature[0][j] for j in mine], [self.feature[1][j] for j in mine]),
                ([self.label[0][j] for j in theirs], [self.label[1][j] for j in theirs]))


def _compute(source: Any, columns: Columns, feature: tuple[list[str], list[str]],
             label: tuple[list[str], list[str]], instruments: Any, **kwargs: Any) -> pd.DataFrame:
    from qroll.data.features import compute_features

    return compute_features(source, feature[0], feature[1], label[0], label[1], instruments, **kwargs)


def extend(source: Any, columns: Columns, instruments: str | Sequence[str], old: pd.DataFrame | None,
           load_old: Any, last: pd.Timestamp) -> tuple[pd.DataFrame, pd.Timestamp, Rows] | None:
    """The part extending an entry that ends on ``last`` to the source's last day, and the grown rows.

    Parameters
    ----------
    source : Source
        The data, grown past ``last`` with its past unchanged.
    columns : Columns
        The entry's expressions (all of finite look-back).
    instruments : str or sequence of str
        The entry's market or symbols.
    old : DataFrame, optional
        The entry's frame, when it is in memory.
    load_old : callable
        ``load_old(spare_rows) -> Rows | None`` reads the entry with room for that many more rows,
        when ``old`` is None.
    last : Timestamp
        The entry's last day.

    Returns
    -------
    (DataFrame, Timestamp, Rows) or None
        The part (the days from its first day on), its first day, and the entry's rows with the
        part joined; None when the entry could not be read or does not match the source (its rows
        on the redone days differ: the caller computes everything again).
    """
    days = source.calendar.days
    end = int(days.searchsorted(last, "right")) - 1
    redo = max(0, end + 1 - columns.horizon)
    part = _compute(source, columns, columns.feature, columns.label, instruments, start=days[redo])
    values = np.array(part.to_numpy(dtype=np.float32), order="F")  # its own copy: the redone days change
    part_index = cast(pd.MultiIndex, part.index)
    p0 = np.asarray(part_index.codes[0], dtype=np.int32)
    overlap = int(np.searchsorted(p0, end + 1 - redo, "left"))  # the part's rows on the redone days
    if old is not None:
        rows = _rows_of(old, spare=len(part))
    else:
        rows = load_old(len(part))
        if rows is None:
            return None
    cut = int(np.searchsorted(rows.codes0[: rows.rows], redo, "left"))  # the stored rows kept as they are
    p_symbols: np.ndarray = np.asarray(list(part_index.levels[1]), dtype=object)
    p1 = np.asarray(part_index.codes[1], dtype=np.int32)
    stored_symbols = np.asarray(rows.symbols, dtype=object)
    same_rows = (rows.rows - cut == overlap
                 and np.array_equal(rows.codes0[cut : rows.rows] - redo, p0[:overlap])
                 and np.array_equal(stored_symbols[rows.codes1[cut : rows.rows]], p_symbols[p1[:overlap]]))
    if not same_rows or len(rows.dates) != end + 1:
        return None
    backward = [j for j in range(values.shape[1]) if columns.ahead[j] == 0]
    # The redone days' look-back columns keep their stored values: those days are done.
    values[:overlap, backward] = rows.block[backward, cut : rows.rows].T
    part = pd.DataFrame(values, index=part.index, columns=part.columns, copy=False)
    symbols = sorted(set(rows.symbols) | set(p_symbols.tolist()))
    old_map = np.searchsorted(symbols, rows.symbols).astype(np.int32)
    new_map = np.searchsorted(symbols, p_symbols).astype(np.int32)
    grown = Rows(block=rows.block, codes0=rows.codes0, codes1=rows.codes1, dates=days[: len(days)],
                 symbols=symbols, columns=rows.columns, rows=cut + len(part))
    if len(symbols) != len(rows.symbols):
        grown.codes1[:cut] = old_map[rows.codes1[:cut]]
    grown.block[:, cut : grown.rows] = values.T
    grown.codes0[cut : grown.rows] = p0 + redo
    grown.codes1[cut : grown.rows] = new_map[p1]
    return part, days[redo], grown


def _rows_of(frame: pd.DataFrame, spare: int) -> Rows:
    """A frame's rows copied into new arrays with room for ``spare`` more."""
    index = frame.index
    assert isinstance(index, pd.MultiIndex)
    columns = [(str(c[0]), str(c[1])) for c in cast(pd.MultiIndex, frame.columns)]
    n = len(frame)
    out = Rows.empty(columns, pd.DatetimeIndex(index.levels[0]), [str(s) for s in index.levels[1]], n + spare)
    out.block[:, :n] = frame.to_numpy(dtype=np.float32).T
    out.codes0[:n] = index.codes[0]
    out.codes1[:n] = index.codes[1]
    out.rows = n
    return out


def as_of_rows(full: pd.DataFrame, view: Any, columns: Columns,
               instruments: str | Sequence[str]) -> tuple[pd.DataFrame, int] | None:
    """The frame :func:`~qroll.data.features.compute_features` gives on ``view``, cut out of ``full``.

    Parameters
    ----------
    full : DataFrame
        The entry of ``view.source`` (its whole calendar, from the same first day as the view).
    view : AsOfSource
        The source as of a day.
    columns : Columns
        The entry's expressions.
    instruments : str or sequence of str
        The entry's market or symbols.

    Returns
    -------
    (DataFrame, int) or None
        The view's frame (look-back columns sharing ``full``'s memory) and the number of rows
        computed for it (the look-ahead columns of its last days); None if ``full`` does not
        cover the view's days as expected.
    """
    index = full.index
    assert isinstance(index, pd.MultiIndex)
    dates = index.levels[0]
    k = int(dates.searchsorted(view.as_of, "right"))
    view_days = view.calendar.days
    if k != len(view_days) or not dates[:k].equals(view_days):
        return None
    codes0 = np.asarray(index.codes[0])
    n = int(np.searchsorted(codes0, k, "left"))
    codes0 = codes0[:n]
    stored = [str(s) for s in index.levels[1]]
    if isinstance(instruments, str):
        symbols = sorted(str(s).upper() for s in view.instruments(instruments))
    else:
        symbols = stored
    codes1: np.ndarray = np.asarray(index.codes[1][:n])
    if symbols != stored:
        # The view's universe (members listed by its day) is part of the entry's.
        if not set(symbols) <= set(stored):
            return None
        mapping = np.searchsorted(symbols, stored).astype(np.int32)
        codes1 = mapping[codes1]
        if n and not np.array_equal(np.asarray(symbols, dtype=object)[codes1],
                                    np.asarray(stored, dtype=object)[np.asarray(index.codes[1][:n])]):
            return None
    new_index = pd.MultiIndex(levels=[dates[:k], pd.Index(symbols, dtype=object)],
                              codes=cast(Any, [codes0, codes1]), names=["datetime", "instrument"],
                              verify_integrity=False)
    forward = columns.forward
    computed = 0
    pieces: list[pd.DataFrame] = []
    if forward:
        first = max(0, k - columns.horizon)
        feature, label = columns.subset(forward)
        # From the first day (warm_up = first): the look-ahead columns as a computation on the view
        # gives them, bit for bit, NaN where they need a day after the view's last.
        tail = _compute(view, columns, feature, label, instruments, start=view_days[first], warm_up=first)
        m = len(tail)
        tail_index = cast(pd.MultiIndex, tail.index)
        t0 = np.asarray(tail_index.codes[0], dtype=np.int64) + first
        t_symbols = np.asarray(list(tail_index.levels[1]), dtype=object)[np.asarray(tail_index.codes[1])]
        if m > n or not (np.array_equal(t0, codes0[n - m : n])
                         and np.array_equal(t_symbols, np.asarray(symbols, dtype=object)[codes1[n - m :]])):
            return None
        ahead = np.array(full.iloc[:n, forward].to_numpy(dtype=np.float32), order="F")
        ahead[n - m :] = tail.to_numpy(dtype=np.float32)
        computed = m
    position = 0
    n_cols = full.shape[1]
    while position < n_cols:
        # Runs of look-back columns are views of the entry; look-ahead columns are the copies above.
        stop = position
        looks_ahead = columns.ahead[position] > 0
        while stop < n_cols and (columns.ahead[stop] > 0) == looks_ahead:
            stop += 1
        if looks_ahead:
            cols = [forward.index(j) for j in range(position, stop)]
            piece = pd.DataFrame(ahead[:, cols], index=new_index, columns=full.columns[position:stop],
                                 copy=False)
        else:
            piece = full.iloc[:n, position:stop]
            piece.index = new_index  # the same index object for every piece: concat compares nothing
        pieces.append(piece)
        position = stop
    out = pieces[0] if len(pieces) == 1 else pd.concat(pieces, axis=1)
    return out, computed
