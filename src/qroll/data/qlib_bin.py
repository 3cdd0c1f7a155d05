"""Qlib's binary data layout: read it (:class:`QlibBinSource`), write it (:func:`dump_qlib_bin`) and
append days to it (:func:`~qroll.data.qlib_append.append_qlib_bin`).

::

    <root>/calendars/day.txt                      one YYYY-MM-DD per line; line k = calendar index k
    <root>/calendars/day_future.txt               optional: known future trading days
    <root>/instruments/<market>.txt               SYMBOL<TAB>start<TAB>end, one line per membership span
    <root>/features/<symbol lower>/<field>.day.bin   little-endian float32; element 0 = the calendar
                                                     index of the first value, then one value per day

The calendar is the directory's clock: a reader takes from each ``.bin`` file only the values that
fall on ``day.txt``'s days, and ignores any beyond (as Qlib does). That is what lets
:mod:`~qroll.data.qlib_append` grow a directory that is being read: it appends to the ``.bin`` files
first and replaces ``day.txt`` last, in one rename, so a reader sees either the old days or the
new ones, never a calendar longer than its data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qroll.calendar import TradingCalendar
from qroll.data.source import (
    Ranges,
    Source,
    Spans,
    as_date,
    canonical_values,
    clip_ranges,
    clip_spans,
    day_window,
    digest_head,
    field_name,
    hull_ranges,
    range_bytes,
    ranges_from_values,
    stat_digest,
    unknown_market,
    wide_frame,
)
from qroll.data.uri import parse_source_uri
from qroll.errors import (
    ConfigError,
    ConfigValueError,
    DataError,
    DataFormatError,
    DataNotFoundError,
)

__all__ = ["QlibBinSource", "dump_qlib_bin"]

BIN_SUFFIX = ".day.bin"
# Qlib prefixes symbols that are Windows device names, so their folders can exist on Windows.
_DEVICE_NAMES = {"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(10)}
_DEVICE_PREFIX = "_qlib_"


def _folder_symbol(folder: str) -> str:
    name = folder.lower()
    if name.startswith(_DEVICE_PREFIX) and name[len(_DEVICE_PREFIX):] in _DEVICE_NAMES:
        name = name[len(_DEVICE_PREFIX):]
    return name.upper()


def symbol_folder(symbol: str) -> str:
    """The feature folder of a symbol: lower case, Windows device names prefixed as Qlib does."""
    name = symbol.lower()
    return _DEVICE_PREFIX + name if name in _DEVICE_NAMES else name


class QlibBinSource:
    """Market data stored in Qlib's binary layout (``qlib:///path``).

    Symbols are matched case-insensitively (instrument files hold ``SH600000``, feature folders
    ``sh600000``). A symbol listed in an instruments file with no feature folder is left out of
    :meth:`instruments`, as Qlib's ``D.features`` silently skips it; :meth:`info` counts them.
    Values are returned as stored: prices adjusted by ``$factor``, no transformation.

    Parameters
    ----------
    uri : str or path
        ``qlib:///abs/path`` or a plain directory path.

    Raises
    ------
    DataNotFoundError
        If the directory or its ``calendars/day.txt`` does not exist.
    """

    def __init__(self, uri: str | os.PathLike[str]) -> None:
        text = os.fspath(uri)
        if "://" in text:
            parsed = parse_source_uri(text)
            if parsed.scheme != "qlib":
                raise ConfigError(f"QlibBinSource reads qlib:// URIs, not {text!r}")
            path = parsed.path
        else:
            path, text = os.path.expanduser(text), f"qlib://{os.path.abspath(os.path.expanduser(text))}"
        self.uri = text
        self.root = Path(path)
        if not self.root.is_dir():
            raise DataNotFoundError(f"Qlib data directory {self.root} does not exist (from {self.uri!r})")
        day_txt = self.root / "calendars" / "day.txt"
        if not day_txt.is_file():
            raise DataNotFoundError(
                f"{day_txt} does not exist: {self.root} is not a Qlib data directory "
                "(it needs calendars/day.txt, instruments/ and features/)"
            )
        self._calendar = TradingCalendar.from_qlib_dir(self.root)
        self._folders: dict[str, str] | None = None
        self._fields: list[str] | None = None
        self._markets: dict[str, dict[str, Spans]] = {}
        self._skipped: dict[str, list[str]] = {}

    def __repr__(self) -> str:
        return f"QlibBinSource({self.uri!r})"

    # -- structure ---------------------------------------------------------------------------
    @property
    def calendar(self) -> TradingCalendar:
        """The days of ``calendars/day.txt``, plus ``day_future.txt``'s later days as future days."""
        return self._calendar

    def feature_folders(self) -> dict[str, str]:
        """Each symbol with a folder under ``features/`` (UPPER case) → the folder's name on disk."""
        if self._folders is None:
            features = self.root / "features"
            folders: dict[str, str] = {}
            if features.is_dir():
                with os.scandir(features) as it:
                    for entry in it:
                        if entry.is_dir():
                            folders[_folder_symbol(entry.name)] = entry.name
            self._folders = folders
        return dict(self._folders)

    def _instrument_files(self) -> dict[str, Path]:
        folder = self.root / "instruments"
        if not folder.is_dir():
            return {}
        return {p.stem.lower(): p for p in sorted(folder.glob("*.txt"))}

    def markets(self) -> list[str]:
        """``all`` and one market per ``instruments/<name>.txt`` (name lower-cased), sorted."""
        return sorted(set(self._instrument_files()) | {"all"})

    def instruments(self, market: str = "all") -> dict[str, Spans]:
        """UPPER-case symbol → membership spans (inclusive, ascending) of a market.

        Without ``instruments/all.txt``, ``all`` holds every feature folder over its stored days.

        Raises
        ------
        DataNotFoundError
            For a market with no instruments file; the message lists the available ones.
        """
        key = market.lower()
        if key not in self._markets:
            files = self._instrument_files()
            if key in files:
                self._markets[key] = self._read_market(key, files[key])
            elif key == "all":
                self._markets[key] = self._stored_spans()
            else:
                raise unknown_market(market, self.markets(), f"{self.root / 'instruments'}")
        return {sym: list(spans) for sym, spans in self._markets[key].items()}

    def _read_market(self, market: str, path: Path) -> dict[str, Spans]:
        folders = self.feature_folders()
        spans: dict[str, Spans] = {}
        skipped: set[str] = set()
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                parts = line.rstrip("\n").split("\t")
                if len(parts) < 3:
                    parts = line.split()
                try:
                    symbol = parts[0].strip().upper()
                    first, last = pd.Timestamp(parts[1].strip()), pd.Timestamp(parts[2].strip())
                except (IndexError, ValueError) as exc:
                    raise DataFormatError(
                        f"{path}:{n}: {line.strip()!r} is not 'SYMBOL<TAB>start<TAB>end'"
                    ) from exc
                if symbol not in folders:
                    skipped.add(symbol)
                    continue
                spans.setdefault(symbol, []).append((first, last))
        self._skipped[market] = sorted(skipped)
        return {sym: sorted(spans[sym]) for sym in sorted(spans)}

    def _stored_spans(self) -> dict[str, Spans]:
        days = self._calendar.days
        spans: dict[str, Spans] = {}
        for symbol, folder in sorted(self.feature_folders().items()):
            files = sorted((self.root / "features" / folder).glob("*" + BIN_SUFFIX))
            ranges = [r for r in (self.file_extent(p) for p in files) if r[1] > 0]
            if ranges:
                first, stop = min(r[0] for r in ranges), max(r[0] + r[1] for r in ranges)
                spans[symbol] = [(days[first], days[stop - 1])]
        return spans

    def file_extent(self, path: str | Path) -> tuple[int, int]:
        """``(first, count)`` of a ``.bin`` file: its first calendar index and its values on calendar days.

        Read from the file's header and size; values past the calendar's last day do not count
        (see the module docstring).

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        DataFormatError
            If it is malformed (the message names it).
        """
        with open(path, "rb") as fh:
            head = fh.read(4)
            size = os.fstat(fh.fileno()).st_size
        return self._extent(path, size, head)

    def fields(self) -> list[str]:
        """The fields some feature folder holds a ``<field>.day.bin`` for, sorted."""
        if self._fields is None:
            names: set[str] = set()
            for folder in self.feature_folders().values():
                with os.scandir(self.root / "features" / folder) as it:
                    files = [e.name for e in it if e.name.endswith(BIN_SUFFIX)]
                names.update(name.removesuffix(BIN_SUFFIX).lower() for name in files)
            self._fields = sorted(names)
        return list(self._fields)

    def info(self) -> dict[str, Any]:
        """A summary: path, days, fields, and per market the symbols kept and those skipped."""
        markets = {}
        for market in self.markets():
            kept = self.instruments(market)
            markets[market] = {"instruments": len(kept), "skipped": len(self._skipped.get(market, []))}
        return {
            "uri": self.uri,
            "days": len(self._calendar),
            "first_day": self._calendar.first_day,
            "last_day": self._calendar.last_day,
            "fields": self.fields(),
            "markets": markets,
            "skipped": {m: list(s) for m, s in self._skipped.items() if s},
        }

    # -- values ------------------------------------------------------------------------------
    def _extent(self, path: str | Path, size: int, head: bytes) -> tuple[int, int]:
        """``(first, count)``: a file's first calendar index and how many of its values lie on calendar days.

        Values past the calendar's last day are ignored, as Qlib ignores them: they are days an
        append has written and not yet published in ``day.txt`` (a file whose first day is past
        the calendar has ``count == 0``). A trailing partial value past the calendar is an append
        cut short, ignored too; on a calendar day it makes the file malformed.
        """
        n_days = len(self._calendar)
        if size < 4:
            raise DataFormatError(
                f"{path} is malformed: its size {size} bytes is not a positive multiple of 4 (float32); "
                "rewrite it with dump_qlib_bin or Qlib's dump_bin"
            )
        start = float(np.frombuffer(head[:4], dtype="<f4")[0])
        if not (start == start and start >= 0 and start == int(start)):
            raise DataFormatError(
                f"{path} is malformed: its start index {start} is not a calendar index (a whole number "
                "from 0); rewrite it with dump_qlib_bin or Qlib's dump_bin"
            )
        first = int(start)
        n_values, partial = divmod(size - 4, 4)
        if partial and first + n_values < n_days:
            raise DataFormatError(
                f"{path} is malformed: its size {size} bytes is not a positive multiple of 4 (float32); "
                "rewrite it with dump_qlib_bin or Qlib's dump_bin"
            )
        return first, max(0, min(n_values, n_days - first))

    def load(
        self, fields: Sequence[str], instruments: Sequence[str], start: Any = None, end: Any = None
    ) -> dict[str, pd.DataFrame]:
        """Read fields for some symbols into wide float32 frames.

        Only the bytes of the asked days are read from each file.

        Parameters
        ----------
        fields : sequence of str
            Field names, with or without ``$``, any case; the result is keyed by the canonical name.
        instruments : sequence of str
            Symbols, any case; they are the columns, in this order.
        start, end : date, optional
            Inclusive bounds; they snap inward to trading days. ``None`` is open-ended.

        Returns
        -------
        dict of str to DataFrame
            Index: the data days in ``[start, end]``; NaN where a file stores no value (before its
            first or after its last day, a missing file, an unknown symbol).

        Raises
        ------
        DataFormatError
            For a malformed ``.bin`` file (the message names it).
        """
        a, b = day_window(self._calendar, start, end)
        index = self._calendar.days[a:b]
        folders = self.feature_folders()
        # Plain string joins: pathlib costs more than the read itself for these small files.
        features = os.fspath(self.root / "features")
        out: dict[str, pd.DataFrame] = {}
        for field in fields:
            name = field_name(field)
            values = np.full((len(instruments), b - a), np.nan, dtype=np.float32)
            for j, symbol in enumerate(instruments):
                folder = folders.get(symbol.upper())
                if folder is None:
                    continue
                path = os.path.join(features, folder, name + BIN_SUFFIX)
                try:
                    with open(path, "rb") as fh:
                        head = fh.read(4)
                        first, count = self._extent(path, os.fstat(fh.fileno()).st_size, head)
                        lo, hi = max(a, first), min(b, first + count)
                        if hi > lo:
                            if lo > first:
                                fh.seek(4 * (1 + lo - first))
                            raw = fh.read(4 * (hi - lo))
                except FileNotFoundError:
                    continue
                if hi > lo:
                    values[j, lo - a : hi - a] = np.frombuffer(raw, dtype="<f4")
            out[name] = wide_frame(values, index, instruments)
        return out

    def stored_ranges(
        self, fields: Sequence[str], instruments: Sequence[str], start: Any = None, end: Any = None
    ) -> Ranges:
        """Each symbol's stored range per field, from the ``.bin`` headers and sizes (values unread).

        A file stores calendar positions ``first .. first + size/4 - 2`` (element 0 is ``first``),
        cut at the calendar's last day; NaN values inside are part of the range. A missing file or
        symbol gives an empty range. See :meth:`~qroll.data.source.Source.stored_ranges`.

        Raises
        ------
        DataFormatError
            For a malformed ``.bin`` file (the message names it).
        """
        folders = self.feature_folders()
        features = os.fspath(self.root / "features")
        n_days = len(self._calendar)
        out: Ranges = {}
        for field in fields:
            name = field_name(field)
            first = np.full(len(instruments), n_days, dtype=np.int64)
            last = np.full(len(instruments), -1, dtype=np.int64)
            for j, symbol in enumerate(instruments):
                folder = folders.get(symbol.upper())
                if folder is None:
                    continue
                try:
                    extent = self.file_extent(os.path.join(features, folder, name + BIN_SUFFIX))
                except FileNotFoundError:
                    continue
                first[j], last[j] = extent[0], extent[0] + extent[1] - 1
            out[name] = clip_ranges(first, last, self._calendar, start, end)
        return out

    def fingerprint(self) -> str:
        """A digest of the path and the size and modification time of every data file."""
        paths: list[Path] = [self.root / "calendars" / "day.txt", self.root / "calendars" / "day_future.txt"]
        paths += self._instrument_files().values()
        features = self.root / "features"
        for folder in sorted(self.feature_folders().values()):
            with os.scandir(features / folder) as it:
                paths += sorted(features / folder / e.name for e in it if e.name.endswith(BIN_SUFFIX))
        return stat_digest([str(self.root.resolve())], paths)

    def lineage(self) -> str:
        """The directory's resolved path: the same while it gains days (see
        :class:`~qroll.data.source.Source`)."""
        return f"qlib://{self.root.resolve()}"

    def fingerprint_until(self, day: Any) -> str:
        """The digest of the data up to ``day`` (see :meth:`~qroll.data.source.Source.fingerprint_until`).

        Equal to :func:`~qroll.data.source.prefix_digest`, computed from the files: the calendar
        prefix, the instruments files' spans as seen on ``day``, and each ``.bin`` file's bytes up
        to ``day``'s calendar index, read without the bytes after it. Appending days leaves it
        unchanged; rewriting a past value changes it.

        Raises
        ------
        DataFormatError
            For a malformed ``.bin`` file (the message names it).
        """
        h, k, symbols, fields = digest_head(self, day)
        folders = self.feature_folders()
        features = os.fspath(self.root / "features")
        for symbol in symbols if k else []:
            folder = folders.get(symbol)
            for name in fields:
                first, last, raw = 0, -1, b""
                if folder is not None:
                    path = os.path.join(features, folder, name + BIN_SUFFIX)
                    try:
                        with open(path, "rb") as fh:
                            head = fh.read(4)
                            first, count = self._extent(path, os.fstat(fh.fileno()).st_size, head)
                            last = min(first + count, k) - 1
                            raw = fh.read(4 * (last - first + 1)) if last >= first else b""
                    except FileNotFoundError:
                        pass
                h.update(range_bytes(symbol, name, first, last))
                if last >= first:
                    h.update(canonical_values(np.frombuffer(raw, dtype="<f4")))
        return h.hexdigest()[:16]


def dump_qlib_bin(
    source: Source,
    out_dir: str | os.PathLike[str],
    markets: Sequence[str] | None = None,
    *,
    fields: Sequence[str] | None = None,
    overwrite: bool = False,
    chunk: int = 256,
    end: Any = None,
) -> Path:
    """Write any source in Qlib's binary layout, optionally only its days up to ``end``.

    Each symbol's fields share one stored range, the hull of its fields' stored ranges
    (:meth:`~qroll.data.source.Source.stored_ranges`, stored NaN days included; for a source without
    it, its first to last day with a value in any field), as Qlib's ``dump_bin`` writes them; a
    symbol with no stored range at all gets header-only files, so it still has a feature folder
    and keeps its membership spans when read back. The dump is written into a temporary folder
    beside ``out_dir`` and renamed into place, so a crash leaves no half-written dump.

    With ``end``, the directory holds the source as it stood on ``end``: the data days up to it,
    membership spans starting later left out and the others cut there, values and stored ranges
    cut there. :func:`~qroll.data.qlib_append.append_qlib_bin` then adds the later days, as Qlib's
    data collectors do.

    Parameters
    ----------
    source : Source
        The data to write.
    out_dir : path
        The Qlib data directory to create.
    markets : sequence of str, optional
        The markets to write (``all`` is always written); default every market of the source.
    fields : sequence of str, optional
        The fields to write; default every field of the source.
    overwrite : bool, default False
        Replace a non-empty ``out_dir``.
    chunk : int, default 256
        Symbols loaded at a time, to bound memory.
    end : date, optional
        The last day to write; default the source's last data day. Known future days of the
        source (``day_future.txt``) are written whatever ``end``.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    DataError
        If ``out_dir`` is a non-empty directory (or a file) and ``overwrite`` is false.
    ConfigValueError
        If ``end`` is before the source's first trading day.
    ConfigTypeError
        If ``end`` is not a date.

    Examples
    --------
    >>> import tempfile
    >>> from qroll.data.synthetic import SyntheticMarket
    >>> market = SyntheticMarket(instruments=3, start="2020-01-01", end="2020-03-31", seed=2)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> out = dump_qlib_bin(market, tmp.name + "/q", end="2020-02-28")
    >>> QlibBinSource(out).calendar.last_day.date()
    datetime.date(2020, 2, 28)
    >>> tmp.cleanup()
    """
    out = Path(out_dir).expanduser()
    k = _days_until(source, end, "dump_qlib_bin")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise DataError(
            f"{out} is not empty: pass overwrite=True (qroll data dump --overwrite) to replace it, "
            "or choose an empty folder"
        )
    names = sorted({m.lower() for m in (markets if markets is not None else source.markets())} | {"all"})
    field_names = [field_name(f) for f in (fields if fields is not None else source.fields())]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _write_dump(source, tmp, names, field_names, chunk, k)
        if out.exists():
            # Move the old dump aside first: the new one appears in one rename.
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "dump")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _days_until(source: Source, end: Any, caller: str) -> int:
    """How many of the source's data days fall on or before ``end`` (all of them for ``None``)."""
    cal = source.calendar
    if end is None:
        return len(cal)
    stamp = as_date(end, f"{caller}: end")
    k = day_window(cal, None, stamp)[1]
    if k == 0:
        raise ConfigValueError(
            f"{caller}: end {stamp.date()} is before the first trading day {cal.first_day.date()} of "
            f"{source.uri!r}: give an end on or after it"
        )
    return k


# -- the layout's pieces, shared with qlib_append ---------------------------------------------


def members_until(source: Source, market: str, limit: pd.Timestamp) -> dict[str, Spans]:
    """A market's members as seen on ``limit`` (see :func:`~qroll.data.source.clip_spans`)."""
    members = source.instruments(market)
    clipped = {sym: clip_spans(spans, limit) for sym, spans in members.items()}
    return {sym: spans for sym, spans in clipped.items() if spans}


def instruments_text(members: dict[str, Spans]) -> str:
    """An ``instruments/<market>.txt`` file: ``SYMBOL<TAB>start<TAB>end`` per span, by symbol."""
    return "".join(f"{sym}\t{a:%Y-%m-%d}\t{b:%Y-%m-%d}\n" for sym in sorted(members) for a, b in members[sym])


def days_text(days: pd.DatetimeIndex) -> str:
    """A ``calendars/*.txt`` file: one ``YYYY-MM-DD`` per line."""
    return "".join(f"{d:%Y-%m-%d}\n" for d in days)


def symbol_ranges(source: Source, fields: list[str], part: list[str], limit: pd.Timestamp, k: int,
                   frames: dict[str, pd.DataFrame] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each symbol's one stored range up to calendar position ``k - 1``: the hull of its fields' ranges."""
    if callable(getattr(source, "stored_ranges", None)):
        ranges = source.stored_ranges(fields, part, None, limit)
    else:
        ranges = ranges_from_values(frames if frames is not None else source.load(fields, part, None, limit))
    return hull_ranges(ranges, k)


def bin_bytes(first: int, values: np.ndarray) -> bytes:
    """A whole ``.bin`` file: the start index as a float32, then the values."""
    data = np.empty(len(values) + 1, dtype="<f4")
    data[0] = first
    data[1:] = values
    return data.tobytes()


def _write_dump(
    source: Source, root: Path, markets: list[str], fields: list[str], chunk: int, k: int
) -> None:
    cal = source.calendar
    limit = cal.days[k - 1]
    (root / "calendars").mkdir()
    (root / "instruments").mkdir()
    (root / "features").mkdir()
    (root / "calendars" / "day.txt").write_text(days_text(cal.days[:k]))
    if len(cal.future):
        # Qlib's day_future.txt lists past and future days alike.
        (root / "calendars" / "day_future.txt").write_text(days_text(cal.all_days(future=True)))
    symbols: set[str] = set()
    for market in markets:
        members = members_until(source, market, limit)
        symbols.update(members)
        (root / "instruments" / f"{market}.txt").write_text(instruments_text(members))
    ordered = sorted(symbols)
    for i in range(0, len(ordered), chunk):
        part = ordered[i : i + chunk]
        frames = source.load(fields, part, None, limit)
        stacked = np.stack([frames[f].to_numpy(dtype=np.float32).T for f in fields]) if fields else None
        # One range per symbol: the hull of its fields' stored ranges, stored NaN days included.
        firsts, lasts = symbol_ranges(source, fields, part, limit, k, frames) if fields else (None, None)
        for j, symbol in enumerate(part):
            folder = root / "features" / symbol_folder(symbol)
            folder.mkdir()
            if stacked is None or firsts is None or lasts is None:
                continue
            first, stop = (int(firsts[j]), int(lasts[j]) + 1) if lasts[j] >= firsts[j] else (0, 0)
            for kk, name in enumerate(fields):
                (folder / f"{name}{BIN_SUFFIX}").write_bytes(bin_bytes(first, stacked[kk, j, first:stop]))
