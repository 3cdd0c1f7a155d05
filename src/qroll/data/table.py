"""Long tables of daily prices, one row per (date, instrument): :class:`TableSource`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qroll.calendar import TradingCalendar
from qroll.data.source import (
    Ranges,
    Spans,
    clip_ranges,
    day_window,
    field_name,
    prefix_digest,
    stat_digest,
    unknown_market,
    wide_frame,
)
from qroll.data.uri import parse_source_uri
from qroll.errors import ConfigError, DataFormatError, DataNotFoundError

ADJUSTED_PRICES = ("open", "high", "low", "close", "vwap")
"""Fields multiplied by the adjustment factor (Qlib's convention; volume is divided by it)."""

__all__ = ["TableSource"]

# Tried in order, case-insensitively, when the URI and the constructor name no column.
_DATE_NAMES = ("date", "datetime", "timestamp", "time")
_INSTRUMENT_NAMES = ("instrument", "ticker", "symbol", "code")


class TableSource:
    """Daily data in one long Parquet or CSV file (``table:///prices.parquet?instrument=ticker``).

    The file holds a date column, an instrument column and any number of numeric field columns
    (their names lower-cased are the fields). The calendar is the distinct dates; the only market
    is ``all``, where each instrument's span runs from its first to its last date. Columns are read
    from Parquet only when needed and kept in memory for the life of the object.

    Parameters
    ----------
    uri : str or path
        ``table:///abs/file.parquet`` (or ``.csv``), optionally with ``?date=NAME&instrument=NAME``;
        or a plain file path.
    date, instrument : str, optional
        The date and instrument column names; they override the URI's. By default the first of
        ``date``/``datetime``/``timestamp``/``time`` and of ``instrument``/``ticker``/``symbol``/``code``
        that the file has (any case).
    adjust : str, optional
        A column of split- and dividend-adjusted closes (``?adjust=adj_close``). Prices are then
        adjusted as Qlib's data are: ``factor = adjusted close / close`` becomes a field, and
        ``open``, ``high``, ``low``, ``close`` and ``vwap`` are multiplied by it, ``volume`` divided.

    Raises
    ------
    DataNotFoundError
        For a missing file or column (the message names the URI parameter to set).
    DataFormatError
        For a file pyarrow/pandas cannot read, or two rows for the same (date, instrument).
    """

    def __init__(
        self,
        uri: str | os.PathLike[str],
        *,
        date: str | None = None,
        instrument: str | None = None,
        adjust: str | None = None,
    ) -> None:
        text = os.fspath(uri)
        params: dict[str, str] = {}
        if "://" in text:
            parsed = parse_source_uri(text)
            if parsed.scheme != "table":
                raise ConfigError(f"TableSource reads table:// URIs, not {text!r}")
            path, params = parsed.path, parsed.params
        else:
            path, text = os.path.expanduser(text), f"table://{os.path.abspath(os.path.expanduser(text))}"
        self.uri = text
        self.path = Path(path)
        if not self.path.is_file():
            raise DataNotFoundError(f"table file {self.path} does not exist (from {self.uri!r})")
        self._csv = ".csv" in self.path.name.lower()
        self._frame: pd.DataFrame | None = None  # the whole CSV, read once
        self._columns = self._read_schema()
        self.date_column = self._pick(date or params.get("date"), _DATE_NAMES, "date")
        self.instrument_column = self._pick(
            instrument or params.get("instrument"), _INSTRUMENT_NAMES, "instrument"
        )
        self._field_columns: dict[str, str] = {}
        for col, numeric in self._columns.items():
            if col in (self.date_column, self.instrument_column) or not numeric:
                continue
            name = field_name(col)
            if name in self._field_columns:
                raise DataFormatError(
                    f"table {self.path} has columns {self._field_columns[name]!r} and {col!r}, "
                    f"both field {name!r} once lower-cased: rename one"
                )
            self._field_columns[name] = col
        self.adjust = adjust or params.get("adjust")
        if self.adjust is not None:
            adjusted = self._pick(self.adjust, (), "adjust")
            if "close" not in self._field_columns:
                raise DataNotFoundError(f"table {self.path} has no close column to adjust with {adjusted!r}")
            # `factor` is derived: read from the adjusted-close column, divided by close below.
            self._field_columns["factor"] = adjusted
        self._cache: dict[str, np.ndarray] = {}
        self._index_rows()

    def __repr__(self) -> str:
        return f"TableSource({self.uri!r})"

    # -- reading -----------------------------------------------------------------------------
    def _read_schema(self) -> dict[str, bool]:
        """Column name → whether it is numeric."""
        try:
            if self._csv:
                self._frame = pd.read_csv(self.path)
                return {str(c): pd.api.types.is_numeric_dtype(t) for c, t in self._frame.dtypes.items()}
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pq.read_schema(self.path)
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"cannot read table {self.path}: {exc}") from exc
        numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal, pa.types.is_boolean)
        return {f.name: any(test(f.type) for test in numeric) for f in schema}

    def _pick(self, given: str | None, defaults: tuple[str, ...], what: str) -> str:
        if given is not None:
            if given in self._columns:
                return given
            raise DataNotFoundError(
                f"table {self.path} has no {what} column {given!r} (it has {', '.join(self._columns)}): "
                f"set ?{what}=NAME in the URI or {what}=NAME in TableSource"
            )
        lower = {c.lower(): c for c in self._columns}
        for name in defaults:
            if name in lower:
                return lower[name]
        raise DataNotFoundError(
            f"table {self.path} has no {what} column (looked for {', '.join(defaults)}; it has "
            f"{', '.join(self._columns)}): set ?{what}=NAME in the URI or {what}=NAME in TableSource"
        )

    def _columns_of(self, names: list[str]) -> dict[str, Any]:
        """Some columns: numpy arrays from a CSV, pyarrow ChunkedArrays from Parquet.

        Parquet columns are read in one call, so pyarrow decodes them in parallel.
        """
        if self._frame is not None:
            return {name: self._frame[name].to_numpy() for name in names}
        import pyarrow.parquet as pq

        table = pq.read_table(self.path, columns=names)
        return {name: table.column(name) for name in names}

    def _index_rows(self) -> None:
        """Map every row to (instrument code, calendar position), once."""
        import pyarrow as pa
        import pyarrow.compute as pc

        both = self._columns_of([self.date_column, self.instrument_column])
        dates_raw, inst_raw = both[self.date_column], both[self.instrument_column]
        if isinstance(dates_raw, pa.ChunkedArray):
            if pa.types.is_date(dates_raw.type) or pa.types.is_timestamp(dates_raw.type):
                dates = pd.DatetimeIndex(dates_raw.cast(pa.timestamp("ns")).to_numpy())
            else:
                dates = pd.DatetimeIndex(pd.to_datetime(dates_raw.to_numpy(zero_copy_only=False)))
        else:
            dates = pd.DatetimeIndex(pd.to_datetime(dates_raw))
        if dates.tz is not None:
            dates = dates.tz_localize(None)
        if dates.hasnans:
            raise DataFormatError(f"table {self.path} has a missing date in column {self.date_column!r}")
        # Hash the dates, then sort only the distinct ones: far cheaper than sorting every row.
        codes, uniques = pd.factorize(dates.to_numpy())
        perm = np.argsort(uniques)
        rank = np.empty(len(perm), dtype=np.int64)
        rank[perm] = np.arange(len(perm))
        days, day_pos = np.asarray(uniques)[perm], rank[codes]

        arr = inst_raw if isinstance(inst_raw, pa.ChunkedArray) else pa.chunked_array([pa.array(inst_raw)])
        encoded = pc.dictionary_encode(arr.cast(pa.string()).combine_chunks())
        names = [str(s).upper() for s in encoded.dictionary.to_pylist()]
        symbols = sorted(set(names))
        remap = np.array([symbols.index(n) for n in names] if len(names) < 64 else
                         pd.Index(symbols).get_indexer(names), dtype=np.int64)
        sym_code = remap[encoded.indices.to_numpy(zero_copy_only=False)]

        n_days, n_syms = len(days), len(symbols)
        key = sym_code * n_days + day_pos
        if n_days * n_syms <= 4 * len(key) + 1_000_000:
            # A slot per (instrument, day): rows come out in key order without a sort.
            slot = np.full(n_days * n_syms, -1, dtype=np.int64)
            slot[key] = np.arange(len(key))
            order = slot[slot >= 0]
        else:
            order = np.argsort(key, kind="stable")
        if len(order) < len(key) or (len(key) > 1 and (np.diff(key[order]) == 0).any()):
            order = np.argsort(key, kind="stable")
            dup = order[np.flatnonzero(np.diff(key[order]) == 0)[0]]
            raise DataFormatError(
                f"table {self.path} has more than one row for instrument {symbols[sym_code[dup]]} on "
                f"{pd.Timestamp(days[day_pos[dup]]).date()}: keep one row per (date, instrument)"
            )
        first = np.full(n_syms, n_days, dtype=np.int64)
        last = np.full(n_syms, -1, dtype=np.int64)
        np.minimum.at(first, sym_code, day_pos)
        np.maximum.at(last, sym_code, day_pos)

        self._calendar = TradingCalendar(days)
        self._first, self._last = first, last
        cal_days = self._calendar.days
        self._symbols = symbols
        self._sym_index = {s: i for i, s in enumerate(symbols)}
        self._spans: dict[str, Spans] = {
            s: [(cal_days[first[i]], cal_days[last[i]])] for i, s in enumerate(symbols)
        }
        # Rows sorted by (instrument, day), with each instrument's slice: a load of a few symbols
        # touches only their rows.
        self._order = order
        self._sorted_code = sym_code[self._order]
        self._sorted_pos = day_pos[self._order]
        self._bounds = np.searchsorted(self._sorted_code, np.arange(n_syms + 1))

    # -- structure ---------------------------------------------------------------------------
    @property
    def calendar(self) -> TradingCalendar:
        """The distinct dates of the date column."""
        return self._calendar

    def markets(self) -> list[str]:
        """Only ``all``."""
        return ["all"]

    def instruments(self, market: str = "all") -> dict[str, Spans]:
        """UPPER-case symbol → one span: its first..last date in the file.

        Raises
        ------
        DataNotFoundError
            For any market but ``all``.
        """
        if market.lower() != "all":
            raise unknown_market(market, self.markets(), f"table {self.path}")
        return {s: list(spans) for s, spans in self._spans.items()}

    def fields(self) -> list[str]:
        """The numeric columns other than date and instrument, lower-cased, in file order."""
        return list(self._field_columns)

    def info(self) -> dict[str, Any]:
        """A summary: file, columns used, days, instruments and fields."""
        return {
            "uri": self.uri,
            "date_column": self.date_column,
            "instrument_column": self.instrument_column,
            "days": len(self._calendar),
            "instruments": len(self._symbols),
            "fields": self.fields(),
        }

    # -- values ------------------------------------------------------------------------------
    def _read_fields(self, names: list[str]) -> None:
        """Read the named fields not yet in memory, as float32 in (instrument, day) order."""
        missing = [n for n in dict.fromkeys(names) if n in self._field_columns and n not in self._cache]
        if not missing:
            return
        factor = None
        needs_factor = any(n in ADJUSTED_PRICES or n in ("volume", "factor") for n in missing)
        if self.adjust is not None and needs_factor:
            both = self._columns_of([self._field_columns["factor"], self._field_columns["close"]])
            adj, close = (np.asarray(both[c], dtype=np.float64) for c in
                          (self._field_columns["factor"], self._field_columns["close"]))
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = np.where(close > 0, adj / close, np.nan)
        derived = "factor" if self.adjust is not None else None  # a plain `factor` column is read as it is
        raw = self._columns_of([self._field_columns[n] for n in missing if n != derived])
        for name in missing:
            if name == "factor" and self.adjust is not None:
                values = factor
            else:
                col = raw[self._field_columns[name]]
                values = np.asarray(col if isinstance(col, np.ndarray) else col.to_numpy(), dtype=np.float64)
                if factor is not None and name in ADJUSTED_PRICES:
                    values = values * factor
                elif factor is not None and name == "volume":
                    values = values / factor
            assert values is not None
            self._cache[name] = values[self._order].astype(np.float32)

    def load(
        self, fields: Sequence[str], instruments: Sequence[str], start: Any = None, end: Any = None
    ) -> dict[str, pd.DataFrame]:
        """Wide float32 frames of some fields for some symbols (see :class:`~qroll.data.source.Source`).

        Only the requested field columns are read from the file (once each); a field the table
        lacks and a symbol it lacks come back as NaN.
        """
        a, b = day_window(self._calendar, start, end)
        index = self._calendar.days[a:b]
        # One gather per field: the rows of the chosen symbols and where each lands.
        src_parts, col_parts, day_parts = [], [], []
        for j, symbol in enumerate(instruments):
            code = self._sym_index.get(symbol.upper())
            if code is None:
                continue
            lo, hi = self._bounds[code], self._bounds[code + 1]
            pos = self._sorted_pos[lo:hi]
            keep = (pos >= a) & (pos < b)
            src_parts.append(np.arange(lo, hi)[keep])
            day_parts.append(pos[keep] - a)
            col_parts.append(np.full(int(keep.sum()), j))
        src, cols, dst = (np.concatenate(p) if p else np.zeros(0, np.int64)
                          for p in (src_parts, col_parts, day_parts))
        names = [field_name(f) for f in fields]
        self._read_fields(names)
        out: dict[str, pd.DataFrame] = {}
        for name in names:
            values = np.full((len(instruments), b - a), np.nan, dtype=np.float32)
            if name in self._cache:
                values[cols, dst] = self._cache[name][src]
            out[name] = wide_frame(values, index, instruments)
        return out

    def stored_ranges(
        self, fields: Sequence[str], instruments: Sequence[str], start: Any = None, end: Any = None
    ) -> Ranges:
        """Each symbol's stored range per field: its first to its last row in the file.

        Every field column of the table shares the instrument's rows, NaN values and days without a
        row in between included; this is what Qlib's ``dump_bin`` would store from the same table.
        So a column that is NaN on all of an instrument's rows still has the instrument's range (a
        stored, all-NaN series: its rows are returned, its values are NaN), while a field that is not
        a column of the table, or an unknown symbol, has an empty range. No column is read.
        See :meth:`~qroll.data.source.Source.stored_ranges`.
        """
        n_days = len(self._calendar)
        codes = np.array([self._sym_index.get(s.upper(), -1) for s in instruments], dtype=np.int64)
        known = codes >= 0
        idx = codes[known]
        first = np.full(len(codes), n_days, dtype=np.int64)
        last = np.full(len(codes), -1, dtype=np.int64)
        first[known], last[known] = self._first[idx], self._last[idx]
        clipped = clip_ranges(first, last, self._calendar, start, end)
        empty = (np.full(len(codes), n_days, dtype=np.int64), np.full(len(codes), -1, dtype=np.int64))
        return {
            name: (clipped[0].copy(), clipped[1].copy()) if name in self._field_columns else empty
            for name in (field_name(f) for f in fields)
        }

    def fingerprint(self) -> str:
        """A digest of the file's path, size and modification time, the columns used and the adjustment."""
        return stat_digest(
            [str(self.path.resolve()), self.date_column, self.instrument_column, self.adjust or ""],
            [self.path],
        )

    def lineage(self) -> str:
        """The file's resolved path and the columns it is read by: the same while rows are added
        (see :class:`~qroll.data.source.Source`)."""
        return (f"table://{self.path.resolve()}?date={self.date_column}&instrument={self.instrument_column}"
                f"&adjust={self.adjust or ''}")

    def fingerprint_until(self, day: Any) -> str:
        """The digest of the rows dated on or before ``day``; rows added later leave it unchanged.

        The content digest of :func:`~qroll.data.source.prefix_digest` (calendar, each instrument's
        span and stored range cut at ``day``, values), so it equals that of a Qlib dump of the same
        rows. See :meth:`~qroll.data.source.Source.fingerprint_until`.
        """
        return prefix_digest(self, day)
