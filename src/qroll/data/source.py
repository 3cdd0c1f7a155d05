"""The :class:`Source` protocol every market data source follows, and :func:`open_source`.

A source gives a trading calendar, instrument universes ("markets") with membership spans, and raw
fields per (instrument, trading day) as wide float32 frames. The URI scheme picks the class:

==================  ==========================================  =============================
scheme              example                                     class
==================  ==========================================  =============================
``qlib://``         ``qlib:///data/cn_csi300``                  :class:`~qroll.data.qlib_bin.QlibBinSource`
``table://``        ``table:///prices.parquet?instrument=ticker``  :class:`~qroll.data.table.TableSource`
``synthetic://``    ``synthetic://?instruments=300&seed=0``     :class:`~qroll.data.synthetic.SyntheticMarket`
==================  ==========================================  =============================
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from qroll.calendar import TradingCalendar
from qroll.errors import ConfigError, DataNotFoundError

__all__ = [
    "Ranges",
    "Source",
    "describe_source",
    "Spans",
    "open_source",
    "register_source",
    "source_schemes",
]

Spans: TypeAlias = "list[tuple[pd.Timestamp, pd.Timestamp]]"
"""Membership spans of one instrument: ``(first, last)`` trading days, both inclusive, ascending."""

Ranges: TypeAlias = "dict[str, tuple[np.ndarray, np.ndarray]]"
"""Stored ranges: field → ``(first, last)`` int64 arrays, one entry per instrument, inclusive positions
in ``calendar.days``; an instrument with nothing stored (in the window) has ``first > last``."""


@runtime_checkable
class Source(Protocol):
    """Market data: a calendar, markets with membership spans, and raw daily fields.

    Attributes
    ----------
    uri : str
        The URI the source was opened from (``qlib:///path``, ``table:///file``, ``synthetic://?...``).

    Notes
    -----
    Qlib's series of a field for an instrument is its *stored range*: every day from the first to
    the last stored value, NaN values included (a suspension is a stored NaN, not a missing day).
    :meth:`load` gives NaN both there and outside the range, so the range comes separately from
    :meth:`stored_ranges`; it decides which rows a feature query returns and where windows begin
    and end (``reference/alpha158.md`` §3.1, §4). A third-party source without ``stored_ranges``
    still works with :func:`~qroll.data.features.compute_features`, which then falls back to
    :func:`ranges_from_values` (first..last *non-NaN* value of each field): exact except where an
    instrument's data begins or ends with stored NaN days, whose rows are then dropped.
    """

    uri: str

    @property
    def calendar(self) -> TradingCalendar:
        """The data's trading days (plus any known future days)."""
        ...

    def markets(self) -> list[str]:
        """The market names, lower-case; always holds ``"all"``."""
        ...

    def instruments(self, market: str = "all") -> dict[str, Spans]:
        """Each UPPER-case symbol of ``market`` mapped to its membership spans."""
        ...

    def fields(self) -> list[str]:
        """The stored field names, lower-case and without ``$`` (``"close"``)."""
        ...

    def load(
        self, fields: Sequence[str], instruments: Sequence[str], start: Any = None, end: Any = None
    ) -> dict[str, pd.DataFrame]:
        """One wide float32 frame per field: data days in ``[start, end]`` × the given symbols."""
        ...

    def stored_ranges(
        self, fields: Sequence[str], instruments: Sequence[str], start: Any = None, end: Any = None
    ) -> Ranges:
        """Per field, each symbol's stored range clipped to ``[start, end]`` (see :data:`Ranges`).

        Without reading the values where the format allows it. A field or symbol the source lacks
        has an empty range (``first > last``) for every symbol.
        """
        ...

    def fingerprint(self) -> str:
        """A short hex digest that changes whenever the data changes."""
        ...


# scheme -> factory, or "module:attr" imported on first use so that opening a synthetic market
# does not import pyarrow and the modules here can import this one without a cycle.
_REGISTRY: dict[str, Callable[[str], Source] | str] = {
    "qlib": "qroll.data.qlib_bin:QlibBinSource",
    "table": "qroll.data.table:TableSource",
    "synthetic": "qroll.data.synthetic:SyntheticMarket",
}


def register_source(scheme: str, factory: Callable[[str], Source] | str) -> None:
    """Make ``open_source`` open URIs of ``scheme`` with ``factory(uri)``.

    Parameters
    ----------
    scheme : str
        The URI scheme, without ``://``.
    factory : callable or str
        Called with the whole URI; or a ``"module:attr"`` string naming it, imported on first use.

    Notes
    -----
    This is how a data source of your own reaches every part of qroll: a run config's ``data:``,
    a handler's ``source``, ``qroll data``, the backtest. The class needs the :class:`Source`
    members (``uri``, ``calendar``, ``markets()``, ``instruments()``, ``fields()``, ``load()``,
    ``stored_ranges()``, ``fingerprint()``); the feature cache keys on ``fingerprint()``, so it
    must change whenever the data does. For example, a source over a company database::

        # mypkg/warehouse.py
        class WarehouseSource:
            def __init__(self, uri: str): ...   # "warehouse://host/db?universe=all"
            ...                                 # the Source members

        register_source("warehouse", "mypkg.warehouse:WarehouseSource")
        open_source("warehouse://host/db?universe=all")

    A registration lasts for the process: register in the module your workers import too (the
    ``--train-func`` module, say), since spawned workers start a fresh interpreter.
    """
    _REGISTRY[scheme] = factory


def source_schemes() -> list[str]:
    """The URI schemes :func:`open_source` knows, sorted.

    Examples
    --------
    >>> source_schemes()
    ['qlib', 'synthetic', 'table']
    """
    return sorted(_REGISTRY)


def open_source(uri: str) -> Source:
    """Open the data source a URI names.

    Parameters
    ----------
    uri : str
        ``qlib:///path``, ``table:///file.parquet?date=...&instrument=...`` or
        ``synthetic://?instruments=300&start=...&end=...&seed=0``. A bare directory path is read as
        ``qlib://``.

    Raises
    ------
    ConfigError
        For an unknown scheme; the message lists the supported ones.
    DataError
        When the data the URI points at cannot be read.

    Examples
    --------
    >>> src = open_source("synthetic://?instruments=5&start=2020-01-01&end=2020-03-31&seed=1")
    >>> type(src).__name__, len(src.instruments())
    ('SyntheticMarket', 5)
    """
    scheme = urlsplit(uri).scheme if "://" in uri else "qlib"
    factory = _REGISTRY.get(scheme)
    if factory is None:
        raise ConfigError(
            f"data source {uri!r} has an unknown scheme {scheme!r}: use one of "
            + ", ".join(f"{s}://" for s in source_schemes())
        )
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(uri)


# -- helpers shared by the sources -------------------------------------------------------------


def field_name(field: str) -> str:
    """The canonical name of a field: lower-case, without ``$``.

    Examples
    --------
    >>> field_name("$Close")
    'close'
    """
    return field.strip().lstrip("$").lower()


def day_window(calendar: TradingCalendar, start: Any = None, end: Any = None) -> tuple[int, int]:
    """Positions ``[a, b)`` of the data days in ``[start, end]``; bounds snap inward, ``None`` is open.

    Examples
    --------
    >>> cal = TradingCalendar(["2020-01-02", "2020-01-03", "2020-01-06"])
    >>> day_window(cal, "2020-01-03", None), day_window(cal, "2020-01-04", "2020-01-05")
    ((1, 3), (2, 2))
    """
    days = calendar.days
    a = 0 if start is None else int(days.searchsorted(pd.Timestamp(start), side="left"))
    b = len(days) if end is None else int(days.searchsorted(pd.Timestamp(end), side="right"))
    return a, max(a, b)


def wide_frame(values: np.ndarray, index: pd.DatetimeIndex, columns: Sequence[str]) -> pd.DataFrame:
    """A float32 frame from an array shaped ``(n_columns, n_days)``.

    The array is transposed, not copied: pandas stores a frame's block as (columns, rows).
    """
    frame = pd.DataFrame(values.T, index=index, columns=pd.Index(list(columns)), copy=False)
    frame.index.name = "datetime"
    frame.columns.name = "instrument"
    return frame


def clip_ranges(
    first: np.ndarray, last: np.ndarray, calendar: TradingCalendar, start: Any = None, end: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Stored ranges (calendar positions, inclusive) clipped to the data days in ``[start, end]``.

    Examples
    --------
    >>> cal = TradingCalendar(["2020-01-02", "2020-01-03", "2020-01-06"])
    >>> f, l = clip_ranges(np.array([0, 2, 3]), np.array([2, 2, -1]), cal, "2020-01-03", None)
    >>> f.tolist(), l.tolist()
    ([1, 2, 3], [2, 2, -1])
    """
    a, b = day_window(calendar, start, end)
    return (np.maximum(np.asarray(first, dtype=np.int64), a),
            np.minimum(np.asarray(last, dtype=np.int64), b - 1))


def ranges_from_values(frames: Mapping[str, pd.DataFrame | np.ndarray], offset: int = 0) -> Ranges:
    """Approximate stored ranges from loaded values: each column's first..last non-NaN row.

    The fallback for sources without ``stored_ranges``. ``frames`` are (days, instruments) as
    :meth:`Source.load` returns them; ``offset`` is the calendar position of their first row.

    Examples
    --------
    >>> nan = np.nan
    >>> r = ranges_from_values({"close": np.array([[nan, 1.0], [2.0, nan], [nan, nan]])}, offset=10)
    >>> [a.tolist() for a in r["close"]]
    [[11, 10], [11, 10]]
    """
    out: Ranges = {}
    for name, frame in frames.items():
        valid = ~np.isnan(np.asarray(frame, dtype=np.float64))
        days = valid.shape[0]
        has = valid.any(axis=0)
        first = np.where(has, np.argmax(valid, axis=0), days).astype(np.int64)
        last = np.where(has, days - 1 - np.argmax(valid[::-1], axis=0), -1).astype(np.int64)
        out[name] = (first + offset, last + offset)
    return out


def stat_digest(parts: Iterable[str], paths: Iterable[str | os.PathLike[str]]) -> str:
    """A 16-hex-digit digest of some strings and the size and modification time of some files."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            h.update(f"{os.fspath(path)}:missing\0".encode())
            continue
        h.update(f"{os.fspath(path)}:{st.st_size}:{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:16]


def unknown_market(market: str, available: Iterable[str], where: str) -> DataNotFoundError:
    """The error for a market a source does not have, listing the ones it has."""
    return DataNotFoundError(
        f"market {market!r} is not in {where}: use one of {', '.join(sorted(available))}"
    )


def describe_source(source: Source) -> dict[str, Any]:
    """What a source holds: its calendar range, fields, and instruments per market.

    Returns
    -------
    dict
        ``uri``, ``first_day``, ``last_day``, ``days`` (trading days), ``future_days``, ``fields``
        and ``markets``: ``{market: {"instruments": n, "skipped": n}}``, where ``skipped`` counts
        members the source lists but holds no data for (Qlib skips them silently).
    """
    cal = source.calendar
    extra = source.info() if callable(getattr(source, "info", None)) else {}  # type: ignore[attr-defined]
    skipped = extra.get("skipped", {}) if isinstance(extra, dict) else {}
    markets = {
        market: {"instruments": len(source.instruments(market)), "skipped": len(skipped.get(market, []))}
        for market in source.markets()
    }
    return {
        "uri": source.uri,
        "first_day": cal.first_day,
        "last_day": cal.last_day,
        "days": len(cal),
        "future_days": len(cal.future),
        "fields": list(source.fields()),
        "markets": markets,
    }
