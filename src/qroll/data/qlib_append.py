"""Append days to a Qlib data directory, as Qlib's data collectors do: :func:`append_qlib_bin`.

A directory written up to a day (:func:`~qroll.data.qlib_bin.dump_qlib_bin` with ``end``, Qlib's
``dump_bin``, a collector) grows by the source's later days: each ``.bin`` file is extended in
place, new instruments get their files, the instruments files' spans move on, and
``calendars/day.txt`` is replaced last. :class:`~qroll.data.qlib_bin.QlibBinSource` reads only the
values that fall on ``day.txt``'s days, so a reader never sees a calendar longer than its data,
even while an append runs or after one was killed (run it again to complete it).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qroll.calendar import TradingCalendar
from qroll.data.qlib_bin import (
    BIN_SUFFIX,
    QlibBinSource,
    bin_bytes,
    days_text,
    instruments_text,
    members_until,
    symbol_folder,
    symbol_ranges,
)
from qroll.data.source import Source, as_date, day_window, field_name, prefix_digest
from qroll.errors import ConfigValueError, DataError, DataNotFoundError

__all__ = ["QlibAppend", "append_qlib_bin"]


@dataclass(frozen=True, kw_only=True, slots=True)
class QlibAppend:
    """What :func:`append_qlib_bin` added to a Qlib data directory."""

    path: Path
    """The directory."""
    first_day: pd.Timestamp
    """The first day appended."""
    last_day: pd.Timestamp
    """The directory's new last day."""
    days: int
    """Trading days appended."""
    new_instruments: tuple[str, ...]
    """Symbols the directory did not hold before, sorted."""


@dataclass(frozen=True, slots=True)
class _FilePlan:
    """One ``.bin`` file's part in an append: extend it in place, or write it whole."""

    path: Path
    first: int  # calendar index of the file's first value
    keep: int  # values already in the file to keep (those on the old calendar's days); -1: write it whole
    stop: int  # calendar index one past the new last value

    @property
    def start(self) -> int:
        """The calendar index of the first value to write."""
        return self.first + max(self.keep, 0)


Plans = list[tuple[str, list[_FilePlan]]]
"""Per symbol, the files an append writes."""


def append_qlib_bin(
    source: Source, out_dir: str | os.PathLike[str], *, end: Any = None, chunk: int = 256
) -> QlibAppend:
    """Append a source's days after a Qlib directory's last day, as Qlib's data collectors do.

    The directory (written by :func:`~qroll.data.qlib_bin.dump_qlib_bin`, Qlib's ``dump_bin`` or a
    collector) keeps its
    markets and fields. Each symbol's ``.bin`` files are extended in place, their start index
    unchanged, with the source's values from the day after the file's last value to the new last
    day (NaN where the symbol stored nothing, so every value stays on its calendar day; Qlib's
    ``DumpDataUpdate`` appends only the rows a symbol has, which shifts later values when one is
    missing). A symbol new to the directory gets its files; each ``instruments/<market>.txt`` is
    rewritten with the spans as seen on the new last day; ``calendars/day.txt`` gains the days.
    The result equals a direct :func:`~qroll.data.qlib_bin.dump_qlib_bin` of the source up to ``end``.

    Crash-safe for readers: the ``.bin`` files are written first (a reader ignores values past the
    calendar), each instruments file is replaced in one rename, and ``day.txt`` is replaced last,
    in one rename. An append interrupted before that leaves the directory reading as before, and
    running it again completes it. (Against a power cut, the renames are flushed to disk, the
    ``.bin`` appends are not, as in Qlib's tools.)

    Parameters
    ----------
    source : Source
        The data, holding the directory's days (with the same values, memberships and calendar)
        and later ones.
    out_dir : path
        An existing Qlib data directory.
    end : date, optional
        The last day to append; default the source's last data day. It must be after the
        directory's last day.
    chunk : int, default 256
        Symbols loaded at a time, to bound memory.

    Returns
    -------
    QlibAppend
        The days appended and the new symbols.

    Raises
    ------
    DataNotFoundError
        If ``out_dir`` is not a Qlib data directory, or the source lacks one of its markets or fields.
    DataError
        If the source disagrees with the directory on a day up to the directory's last day
        (calendar, memberships, values or stored ranges: the two digests of
        :func:`~qroll.data.source.prefix_digest` differ), or has no day after it. Nothing is written.
    ConfigValueError
        If ``end`` is not after the directory's last day.

    Examples
    --------
    >>> import tempfile
    >>> from qroll.data.qlib_bin import dump_qlib_bin
    >>> from qroll.data.synthetic import SyntheticMarket
    >>> market = SyntheticMarket(instruments=3, start="2020-01-01", end="2020-03-31", seed=2)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> out = dump_qlib_bin(market, tmp.name + "/q", end="2020-02-28")
    >>> done = append_qlib_bin(market, out, end="2020-03-13")
    >>> done.days, done.first_day.date(), QlibBinSource(out).calendar.last_day.date()
    (10, datetime.date(2020, 3, 2), datetime.date(2020, 3, 13))
    >>> tmp.cleanup()
    """
    root = Path(out_dir).expanduser()
    stamp = None if end is None else as_date(end, "append_qlib_bin: end")
    target = QlibBinSource(root)
    last = target.calendar.last_day
    if stamp is not None and stamp <= last:
        raise ConfigValueError(
            f"append_qlib_bin: end {stamp.date()} is not after {root}'s last day {last.date()}: "
            "give a later end (to rewrite the directory, dump_qlib_bin(..., overwrite=True))"
        )
    cal = source.calendar
    k = day_window(cal, None, stamp)[1]
    k_old = day_window(cal, None, last)[1]
    if k <= k_old:
        raise DataError(
            f"{source.uri} has no trading day after {root}'s last day {last.date()}"
            + (f" up to {stamp.date()}" if stamp is not None else "")
            + ": nothing to append"
        )
    markets = target.markets()
    fields = target.fields()
    for what, needed, have in (("market", markets, [m.lower() for m in source.markets()]),
                               ("field", fields, [field_name(f) for f in source.fields()])):
        missing = sorted(set(needed) - set(have))
        if missing:
            raise DataNotFoundError(
                f"{source.uri} lacks the {what}(s) {', '.join(missing)} that {root} holds: append from a "
                f"source with every {what} of the directory"
            )
    # The past must be the same: else the appended days would continue another history.
    mine = prefix_digest(target, last, fields=fields, markets=markets, shared_ranges=True, chunk=chunk)
    theirs = prefix_digest(source, last, fields=fields, markets=markets, shared_ranges=True, chunk=chunk)
    if mine != theirs:
        raise DataError(
            f"{source.uri} disagrees with {root} on or before its last day {last.date()} (calendar, "
            f"memberships, values or stored ranges; digests {theirs} and {mine}): appending would join two "
            "different histories; dump the source again with dump_qlib_bin(..., overwrite=True)"
        )

    limit = cal.days[k - 1]
    members = {market: members_until(source, market, limit) for market in markets}
    symbols = sorted(set().union(*members.values())) if members else []
    folders = target.feature_folders()
    plans = _plan_append(target, source, symbols, fields, folders, limit, k, chunk)
    new_symbols = tuple(s for s in symbols if s not in folders)

    # The data first (readers ignore it past the calendar), then memberships, the calendar last.
    _write_append(source, plans, fields, limit, chunk)
    for market in markets:
        _replace_text(root / "instruments" / f"{market}.txt", instruments_text(members[market]))
    future_file = root / "calendars" / "day_future.txt"
    if len(cal.future) or future_file.exists():
        known = TradingCalendar.from_day_txt(future_file).all_days() if future_file.exists() else cal.days[:0]
        _replace_text(future_file, days_text(known.union(cal.all_days(future=True))))
    _replace_text(root / "calendars" / "day.txt", days_text(cal.days[:k]))
    return QlibAppend(path=root, first_day=cal.days[k_old], last_day=limit, days=k - k_old,
                      new_instruments=new_symbols)


def _plan_append(
    target: QlibBinSource, source: Source, symbols: list[str], fields: list[str], folders: dict[str, str],
    limit: pd.Timestamp, k: int, chunk: int,
) -> Plans:
    """What to write for each symbol, decided before anything is written.

    A file with values on the old calendar's days keeps them and its start index; the others
    (new symbols, header-only files, files of an interrupted append) are written whole.
    """
    features = target.root / "features"
    plans: Plans = []
    for i in range(0, len(symbols), chunk):
        part = symbols[i : i + chunk]
        firsts, lasts = symbol_ranges(source, fields, part, limit, k)
        for j, symbol in enumerate(part):
            folder = features / folders.get(symbol, symbol_folder(symbol))
            first, stop = (int(firsts[j]), int(lasts[j]) + 1) if lasts[j] >= firsts[j] else (0, 0)
            files = []
            for name in fields:
                path = folder / f"{name}{BIN_SUFFIX}"
                try:
                    have_first, count = target.file_extent(path)
                except FileNotFoundError:
                    files.append(_FilePlan(path, first, -1, stop))
                    continue
                if count == 0:
                    if stop > first:  # else a header-only file that stays one
                        files.append(_FilePlan(path, first, -1, stop))
                elif have_first + count < stop:
                    files.append(_FilePlan(path, have_first, count, stop))
                elif have_first + count > stop or have_first < first:
                    raise DataError(  # the digests agreed, so only a file outside every market gets here
                        f"{path} stores calendar days {have_first}..{have_first + count - 1} but "
                        f"{source.uri} stores {first}..{stop - 1} for {symbol}: dump the source again with "
                        "dump_qlib_bin(..., overwrite=True)"
                    )
            plans.append((symbol, files))
    return plans


def _write_append(source: Source, plans: Plans, fields: list[str], limit: pd.Timestamp, chunk: int) -> None:
    """Extend or write the planned ``.bin`` files, loading the source's values a chunk of symbols at once."""
    days = source.calendar.days
    by_field = {name: k for k, name in enumerate(fields)}
    for i in range(0, len(plans), chunk):
        part = [(symbol, files) for symbol, files in plans[i : i + chunk] if files]
        if not part:
            continue
        # Load from the earliest day a file needs; a header-only file needs none.
        needs = [p.start for _, files in part for p in files if p.stop > p.start]
        begin = min(needs, default=0)
        stacked = np.zeros((len(fields), len(part), 0), dtype=np.float32)
        if needs:
            frames = source.load(fields, [symbol for symbol, _ in part], days[begin], limit)
            stacked = np.stack([frames[f].to_numpy(dtype=np.float32).T for f in fields])
        for j, (_, files) in enumerate(part):
            for plan in files:
                row = stacked[by_field[plan.path.name[: -len(BIN_SUFFIX)]], j]
                values = row[plan.start - begin : plan.stop - begin] if plan.stop > plan.start else row[:0]
                if plan.keep < 0:
                    plan.path.parent.mkdir(parents=True, exist_ok=True)
                    _replace_bytes(plan.path, bin_bytes(plan.first, values))
                    continue
                with open(plan.path, "r+b") as fh:
                    # Values past the old calendar are from an interrupted append: replace them.
                    fh.truncate(4 * (1 + plan.keep))
                    fh.seek(0, os.SEEK_END)
                    fh.write(values.astype("<f4").tobytes())


def _replace_bytes(path: Path, data: bytes, sync: bool = False) -> None:
    """Write a file under a temporary name beside it, then rename it into place in one step."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _replace_text(path: Path, text: str) -> None:
    _replace_bytes(path, text.encode(), sync=True)
