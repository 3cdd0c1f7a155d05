"""Qlib's binary data layout: read it (:class:`QlibBinSource`) and write it (:func:`dump_qlib_bin`).

::

    <root>/calendars/day.txt                      one YYYY-MM-DD per line; line k = calendar index k
    <root>/calendars/day_future.txt               optional: known future trading days
    <root>/instruments/<market>.txt               SYMBOL<TAB>start<TAB>end, one line per membership span
    <root>/features/<symbol lower>/<field>.day.bin   little-endian float32; element 0 = the calendar
                                                     index of the first value, then one value per day
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
    clip_ranges,
    day_window,
    field_name,
    ranges_from_values,
    stat_digest,
    unknown_market,
    wide_frame,
)
from qroll.data.uri import parse_source_uri
from qroll.errors import ConfigError, DataError, DataFormatError, DataNotFoundError

__all__ = ["QlibBinSource", "dump_qlib_bin"]

_SUFFIX = ".day.bin"
# Qlib prefixes symbols that are Windows device names, so their folders can exist on Windows.
_DEVICE_NAMES = {"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(10)}
_DEVICE_PREFIX = "_qlib_"


def _folder_symbol(folder: str) -> str:
    name = folder.lower()
    if name.startswith(_DEVICE_PREFIX) and name[len(_DEVICE_PREFIX):] in _DEVICE_NAMES:
        name = name[len(_DEVICE_PREFIX):]
    return name.upper()


def _symbol_folder(symbol: str) -> str:
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

    def _feature_folders(self) -> dict[str, str]:
        if self._folders is None:
            features = self.root / "features"
            folders: dict[str, str] = {}
            if features.is_dir():
                with os.scandir(features) as it:
                    for entry in it:
                        if entry.is_dir():
                            folders[_folder_symbol(entry.name)] = entry.name
            self._folders = folders
        return self._folders

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
        folders = self._feature_folders()
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
        for symbol, folder in sorted(self._feature_folders().items()):
            files = sorted((self.root / "features" / folder).glob("*" + _SUFFIX))
            ranges = [self._stored_range(p) for p in files]
            ranges = [r for r in ranges if r[1] > r[0]]
            if ranges:
                first, stop = min(r[0] for r in ranges), max(r[1] for r in ranges)
                spans[symbol] = [(days[first], days[stop - 1])]
        return spans

    def _stored_range(self, path: Path) -> tuple[int, int]:
        with open(path, "rb") as fh:
            head = np.frombuffer(fh.read(4), dtype="<f4")
        size = path.stat().st_size
        self._check(path, size, float(head[0]) if len(head) else float("nan"))
        first = int(head[0])
        return first, first + size // 4 - 1

    def fields(self) -> list[str]:
        """The fields some feature folder holds a ``<field>.day.bin`` for, sorted."""
        if self._fields is None:
            names: set[str] = set()
            for folder in self._feature_folders().values():
                with os.scandir(self.root / "features" / folder) as it:
                    names.update(e.name[: -len(_SUFFIX)].lower() for e in it if e.name.endswith(_SUFFIX))
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
    def _check(self, path: str | Path, size: int, first: float) -> None:
        n_days = len(self._calendar)
        if size % 4 or size < 4:
            raise DataFormatError(
                f"{path} is malformed: its size {size} bytes is not a positive multiple of 4 (float32); "
                "rewrite it with dump_qlib_bin or Qlib's dump_bin"
            )
        if not (first == first and 0 <= first < n_days and first == int(first)):
            raise DataFormatError(
                f"{path} is malformed: its start index {first} is beyond the calendar "
                f"({n_days} days in calendars/day.txt)"
            )
        n_values = size // 4 - 1
        if int(first) + n_values > n_days:
            raise DataFormatError(
                f"{path} is malformed: {n_values} values from calendar index {int(first)} run "
                f"{int(first) + n_values - n_days} days past the calendar's {n_days} days"
            )

    def load(
        self, fields: Sequence[str], instruments: Sequence[str], start: Any = None, end: Any = None
    ) -> dict[str, pd.DataFrame]:
        """Read fields for some symbols into wide float32 frames.

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
        folders = self._feature_folders()
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
                path = os.path.join(features, folder, name + _SUFFIX)
                try:
                    with open(path, "rb") as fh:
                        buf = fh.read()
                except FileNotFoundError:
                    continue
                # Check the byte count before viewing it as float32, which would drop a partial value.
                head = float(np.frombuffer(buf[:4], "<f4")[0]) if len(buf) >= 4 else np.nan
                self._check(path, len(buf), head)
                raw = np.frombuffer(buf, dtype="<f4")
                first = int(raw[0])
                lo, hi = max(a, first), min(b, first + len(raw) - 1)
                if hi > lo:
                    values[j, lo - a : hi - a] = raw[1 + lo - first : 1 + hi - first]
            out[name] = wide_frame(values, index, instruments)
        return out

    def stored_ranges(
        self, fields: Sequence[str], instruments: Sequence[str], start: Any = None, end: Any = None
    ) -> Ranges:
        """Each symbol's stored range per field, from the ``.bin`` headers and sizes (values unread).

        A file stores calendar positions ``first .. first + size/4 - 2`` (element 0 is ``first``);
        NaN values inside are part of the range. A missing file or symbol gives an empty range.
        See :meth:`~qroll.data.source.Source.stored_ranges`.

        Raises
        ------
        DataFormatError
            For a malformed ``.bin`` file (the message names it).
        """
        folders = self._feature_folders()
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
                path = os.path.join(features, folder, name + _SUFFIX)
                try:
                    with open(path, "rb") as fh:
                        head = fh.read(4)
                        size = os.fstat(fh.fileno()).st_size
                except FileNotFoundError:
                    continue
                start_pos = float(np.frombuffer(head, "<f4")[0]) if len(head) == 4 else np.nan
                self._check(path, size, start_pos)
                first[j] = int(start_pos)
                last[j] = int(start_pos) + size // 4 - 2
            out[name] = clip_ranges(first, last, self._calendar, start, end)
        return out

    def fingerprint(self) -> str:
        """A digest of the path and the size and modification time of every data file."""
        paths: list[Path] = [self.root / "calendars" / "day.txt", self.root / "calendars" / "day_future.txt"]
        paths += self._instrument_files().values()
        features = self.root / "features"
        for folder in sorted(self._feature_folders().values()):
            with os.scandir(features / folder) as it:
                paths += sorted(features / folder / e.name for e in it if e.name.endswith(_SUFFIX))
        return stat_digest([str(self.root.resolve())], paths)


def dump_qlib_bin(
    source: Source,
    out_dir: str | os.PathLike[str],
    markets: Sequence[str] | None = None,
    *,
    fields: Sequence[str] | None = None,
    overwrite: bool = False,
    chunk: int = 256,
) -> Path:
    """Write any source in Qlib's binary layout.

    Each symbol's fields share one stored range, the hull of its fields' stored ranges
    (:meth:`~qroll.data.source.Source.stored_ranges`, stored NaN days included; for a source without
    it, its first to last day with a value in any field), as Qlib's ``dump_bin`` writes them; a
    symbol with no stored range at all gets header-only files, so it still has a feature folder
    and keeps its membership spans when read back. The dump is written into a temporary folder
    beside ``out_dir`` and renamed into place, so a crash leaves no half-written dump.

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

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    DataError
        If ``out_dir`` is a non-empty directory (or a file) and ``overwrite`` is false.
    """
    out = Path(out_dir).expanduser()
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
        _write_dump(source, tmp, names, field_names, chunk)
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


def _write_dump(source: Source, root: Path, markets: list[str], fields: list[str], chunk: int) -> None:
    cal = source.calendar
    (root / "calendars").mkdir()
    (root / "instruments").mkdir()
    (root / "features").mkdir()
    (root / "calendars" / "day.txt").write_text("".join(f"{d:%Y-%m-%d}\n" for d in cal.days))
    if len(cal.future):
        # Qlib's day_future.txt lists past and future days alike.
        (root / "calendars" / "day_future.txt").write_text(
            "".join(f"{d:%Y-%m-%d}\n" for d in cal.all_days(future=True))
        )
    symbols: set[str] = set()
    for market in markets:
        members = source.instruments(market)
        symbols.update(members)
        lines = [f"{sym}\t{a:%Y-%m-%d}\t{b:%Y-%m-%d}\n" for sym in sorted(members) for a, b in members[sym]]
        (root / "instruments" / f"{market}.txt").write_text("".join(lines))
    ordered = sorted(symbols)
    for i in range(0, len(ordered), chunk):
        part = ordered[i : i + chunk]
        frames = source.load(fields, part)
        stacked = np.stack([frames[f].to_numpy(dtype=np.float32).T for f in fields]) if fields else None
        # One range per symbol: the hull of its fields' stored ranges, stored NaN days included.
        ranges = (source.stored_ranges(fields, part) if callable(getattr(source, "stored_ranges", None))
                  else ranges_from_values(frames)) if fields else {}
        big = np.iinfo(np.int64).max
        firsts = np.min([np.where(a <= b, a, big) for a, b in ranges.values()], axis=0) if ranges else None
        lasts = np.max([np.where(a <= b, b, -1) for a, b in ranges.values()], axis=0) if ranges else None
        for j, symbol in enumerate(part):
            folder = root / "features" / _symbol_folder(symbol)
            folder.mkdir()
            if stacked is None or firsts is None or lasts is None:
                continue
            block = stacked[:, j, :]
            first, stop = (int(firsts[j]), int(lasts[j]) + 1) if lasts[j] >= firsts[j] else (0, 0)
            for k, name in enumerate(fields):
                data = np.empty(stop - first + 1, dtype="<f4")
                data[0] = first
                data[1:] = block[k, first:stop]
                data.tofile(folder / f"{name}{_SUFFIX}")
