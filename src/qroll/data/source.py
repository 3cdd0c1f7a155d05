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
from qroll.errors import ConfigError, ConfigTypeError, DataNotFoundError

__all__ = [
    "Ranges",
    "Source",
    "describe_source",
    "Spans",
    "open_source",
    "prefix_digest",
    "register_source",
    "source_fingerprint_until",
    "source_lineage",
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

    A source may also have ``lineage() -> str | None``: what stays the same as it gains days (the
    path of a Qlib directory or a table file with its reading options, a synthetic market's
    parameters without ``end``). The feature cache keys an entry by it, so that the entry of a
    source that gained days is extended by the new days (after checking with
    :meth:`fingerprint_until` that its past is unchanged) instead of computed again. Without it
    (:func:`source_lineage` gives None) the cache keys by :meth:`fingerprint`: a source that gains
    days is then a new entry.
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

    def fingerprint_until(self, day: Any) -> str:
        """A 16-hex-digit digest of everything the source holds up to and including ``day``.

        It covers the calendar's data days on or before ``day``, every market's memberships as seen
        on those days (spans that start later left out, spans that run later cut at ``day``), and
        every field's stored range and values on those days (:func:`prefix_digest` defines the
        bytes). So two sources, of any class, give the same digest for ``day`` if and only if they
        hold the same data up to ``day``: days appended after it leave it unchanged, a changed
        past value, range, membership or calendar day changes it. The feature cache compares it to
        extend by new days only, and to detect a source whose past changed;
        :func:`~qroll.data.qlib_append.append_qlib_bin` compares it before appending.

        A source without this method still works: :func:`source_fingerprint_until` falls back to
        :func:`prefix_digest`, which computes the same digest from the other members.
        """
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
    ``stored_ranges()``, ``fingerprint()``, ``fingerprint_until()``, and optionally ``lineage()``,
    see :class:`Source`);
    the feature cache keys on ``fingerprint()``, so it must change whenever the data does
    (``fingerprint_until`` can be ``return prefix_digest(self, day)``), or, with a ``lineage()``,
    on the lineage and extends its entry as the data gains days. For example, a source over a
    company database::

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
    >>> src = open_source("synthetic://?instruments=8&start=2020-01-01&end=2020-03-31&seed=1")
    >>> type(src).__name__, len(src.instruments())  # two more list after the first year
    ('SyntheticMarket', 6)
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


def days_until(calendar: TradingCalendar, day: Any) -> int:
    """How many data days fall on or before ``day`` (all of them for ``None``).

    Raises
    ------
    ConfigTypeError
        If ``day`` is not a date.

    Examples
    --------
    >>> cal = TradingCalendar(["2020-01-02", "2020-01-03", "2020-01-06"])
    >>> days_until(cal, "2020-01-05"), days_until(cal, None), days_until(cal, "2019-12-31")
    (2, 3, 0)
    """
    return len(calendar) if day is None else day_window(calendar, None, as_date(day, "day"))[1]


def as_date(value: Any, what: str) -> pd.Timestamp:
    """``value`` as a Timestamp; a :class:`~qroll.errors.ConfigTypeError` naming ``what`` if it is no date.

    Examples
    --------
    >>> as_date("2019-06-28", "end").date()
    datetime.date(2019, 6, 28)
    """
    try:
        # pandas reads "June" as 0001-06-01, which no calendar can hold: refused like any non-date.
        stamp = pd.Timestamp(value).as_unit("ns")
    except (TypeError, ValueError) as exc:
        raise ConfigTypeError(f"{what}={value!r} is not a date: give one such as '2019-06-28'") from exc
    if stamp is pd.NaT:
        raise ConfigTypeError(f"{what}={value!r} is not a date: give one such as '2019-06-28'")
    return stamp


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


PREFIX_DIGEST_VERSION = 1
"""Bumped whenever the bytes :func:`prefix_digest` hashes change meaning."""

_CANONICAL_NAN = np.float32(np.nan)


def prefix_digest(
    source: Source,
    day: Any = None,
    *,
    fields: Sequence[str] | None = None,
    markets: Sequence[str] | None = None,
    shared_ranges: bool = False,
    chunk: int = 256,
) -> str:
    """The content digest of a source's data up to ``day``: what :meth:`Source.fingerprint_until` gives.

    Computed from the protocol's members alone, so it is the same for any two sources that hold
    the same data, whatever their class. It hashes, in this order:

    1. the data days on or before ``day`` (int64 nanoseconds);
    2. per market (sorted), per member (sorted): its spans that start on or before the last of
       those days, each cut at that day;
    3. the field names (sorted); then per symbol of those markets (sorted), per field: its stored
       range clipped to those days (calendar positions) and its float32 values there, every NaN
       written as the same NaN.

    Parameters
    ----------
    source : Source
        The data. Without ``stored_ranges``, the ranges come from :func:`ranges_from_values`;
        without ``markets()``, the only market is ``all``.
    day : date, optional
        The last day covered; ``None`` covers every data day.
    fields, markets : sequence of str, optional
        Cover only these (default: all of the source's). For comparing a source with a Qlib
        directory written from it with some of its fields or markets.
    shared_ranges : bool, default False
        Give each symbol's fields one stored range, the hull of their ranges on those days, with
        NaN where a field stores nothing: the data as :func:`~qroll.data.qlib_bin.dump_qlib_bin`
        writes it (Qlib's layout stores one range per symbol).
    chunk : int, default 256
        Symbols loaded at a time, to bound memory.

    Returns
    -------
    str
        16 hex digits.

    Examples
    --------
    >>> from qroll.data.synthetic import SyntheticMarket
    >>> short = SyntheticMarket(instruments=4, start="2020-01-01", end="2020-03-31", seed=1)
    >>> long = SyntheticMarket(instruments=4, start="2020-01-01", end="2020-06-30", seed=1)
    >>> prefix_digest(short) == prefix_digest(long, "2020-03-31") != prefix_digest(long)
    True
    """
    h, k, ordered, field_names = digest_head(source, day, fields=fields, markets=markets)
    limit = source.calendar.days[k - 1] if k else None
    has_ranges = callable(getattr(source, "stored_ranges", None))
    for i in range(0, len(ordered) if k and field_names else 0, chunk):
        part = ordered[i : i + chunk]
        frames = source.load(field_names, part, None, limit)
        ranges = (source.stored_ranges(field_names, part, None, limit) if has_ranges
                  else ranges_from_values(frames))
        values = {name: frames[name].to_numpy(dtype=np.float32).T for name in field_names}
        if shared_ranges:
            hull = hull_ranges(ranges, k)
            ranges = {name: hull for name in field_names}
        for j, symbol in enumerate(part):
            for name in field_names:
                first, last = int(ranges[name][0][j]), int(ranges[name][1][j])
                h.update(range_bytes(symbol, name, first, last))
                if first <= last:
                    h.update(canonical_values(values[name][j, first : last + 1]))
    return h.hexdigest()[:16]


def digest_head(
    source: Source, day: Any, *, fields: Sequence[str] | None = None, markets: Sequence[str] | None = None
) -> tuple[Any, int, list[str], list[str]]:
    """The start of :func:`prefix_digest`: a sha256 fed the calendar and memberships up to ``day``.

    Returns the hash object, the number of data days covered, the member symbols (sorted) and the
    field names (sorted), for a caller that feeds the values its own way (a Qlib directory reads
    them straight from its files) and must give the same digest.
    """
    cal = source.calendar
    k = days_until(cal, day)
    h = hashlib.sha256()
    h.update(f"qroll.prefix_digest/{PREFIX_DIGEST_VERSION}\0".encode())
    h.update(np.asarray(cal.days[:k].asi8, dtype="<i8").tobytes())
    limit = cal.days[k - 1] if k else None
    if markets is None:
        markets = source.markets() if callable(getattr(source, "markets", None)) else ["all"]
    symbols: set[str] = set()
    for market in sorted({m.lower() for m in markets}):
        h.update(f"\0market {market}\0".encode())
        members = source.instruments(market)
        for symbol in sorted(members):
            spans = clip_spans(members[symbol], limit)
            if spans:
                symbols.add(symbol)
                h.update(span_bytes(symbol, spans))
    field_names = sorted({field_name(f) for f in (fields if fields is not None else source.fields())})
    h.update(("\0fields " + ",".join(field_names) + "\0").encode())
    return h, k, sorted(symbols), field_names


def canonical_values(values: np.ndarray) -> bytes:
    """float32 values as :func:`prefix_digest` hashes them: little-endian, every NaN the same NaN."""
    block = np.asarray(values, dtype=np.float32)
    return np.where(np.isnan(block), _CANONICAL_NAN, block).astype("<f4").tobytes()


def hull_ranges(ranges: Ranges, n_days: int) -> tuple[np.ndarray, np.ndarray]:
    """Each symbol's hull of its fields' stored ranges: ``(first, last)``; ``(n_days, -1)`` if all are empty.

    Examples
    --------
    >>> r = {"close": (np.array([2, 5, 9]), np.array([8, 4, 3])),
    ...      "vwap": (np.array([4, 1, 9]), np.array([9, 2, 3]))}
    >>> [a.tolist() for a in hull_ranges(r, 10)]
    [[2, 1, 10], [9, 2, -1]]
    """
    if not ranges:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    firsts = np.stack([np.where(a <= b, a, n_days) for a, b in ranges.values()]).astype(np.int64)
    lasts = np.stack([np.where(a <= b, b, -1) for a, b in ranges.values()]).astype(np.int64)
    return firsts.min(axis=0), lasts.max(axis=0)


def source_fingerprint_until(source: Source, day: Any) -> str:
    """``source.fingerprint_until(day)``, or :func:`prefix_digest` for a source without it."""
    method = getattr(source, "fingerprint_until", None)
    return str(method(day)) if callable(method) else prefix_digest(source, day)


def source_lineage(source: Any) -> str | None:
    """``source.lineage()``, or None for a source without it (see :class:`Source`'s notes).

    Examples
    --------
    >>> from qroll.data.synthetic import SyntheticMarket
    >>> source_lineage(SyntheticMarket(instruments=4, end="2020-03-31", seed=1)) == source_lineage(
    ...     SyntheticMarket(instruments=4, end="2020-06-30", seed=1))
    True
    >>> source_lineage(object()) is None
    True
    """
    method = getattr(source, "lineage", None)
    if not callable(method):
        return None
    value = method()
    return None if value is None else str(value)


def clip_spans(spans: Iterable[tuple[pd.Timestamp, pd.Timestamp]], limit: pd.Timestamp | None) -> Spans:
    """Membership spans as seen on ``limit``: those starting later dropped, the others cut at it.

    Examples
    --------
    >>> t = pd.Timestamp
    >>> spans = [(t("2020-01-02"), t("2020-01-10")), (t("2020-02-03"), t("2020-03-02")),
    ...          (t("2020-04-01"), t("2020-05-04"))]
    >>> [(str(a.date()), str(b.date())) for a, b in clip_spans(spans, t("2020-02-10"))]
    [('2020-01-02', '2020-01-10'), ('2020-02-03', '2020-02-10')]
    """
    if limit is None:
        return []
    return [(pd.Timestamp(a), min(pd.Timestamp(b), limit)) for a, b in spans if pd.Timestamp(a) <= limit]


def span_bytes(symbol: str, spans: Spans) -> bytes:
    """A member's clipped spans as :func:`prefix_digest` hashes them."""
    stamps = np.array([[pd.Timestamp(a).value, pd.Timestamp(b).value] for a, b in spans], dtype="<i8")
    return symbol.encode() + b"\0" + stamps.tobytes()


def range_bytes(symbol: str, field: str, first: int, last: int) -> bytes:
    """A symbol's stored range of a field (positions; empty when ``first > last``) as hashed."""
    pair = (first, last) if first <= last else (-1, -1)
    return f"{symbol}/{field}\0".encode() + np.array(pair, dtype="<i8").tobytes()


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
