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
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from qroll.calendar import TradingCalendar
from qroll.errors import ConfigError, DataNotFoundError

__all__ = [
    "Source",
    "describe_source",
    "Spans",
    "open_source",
    "register_source",
    "source_schemes",
]

Spans: TypeAlias = "list[tuple[pd.Timestamp, pd.Timestamp]]"
"""Membership spans of one instrument: ``(first, last)`` trading days, both inclusive, ascending."""


@runtime_checkable
class Source(Protocol):
    """Market data: a calendar, markets with membership spans, and raw daily fields.

    Attributes
    ----------
    uri : str
        The URI the source was opened from (``qlib:///path``, ``table:///file``, ``synthetic://?...``).
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
