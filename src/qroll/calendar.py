"""Trading calendars and the :class:`TimeAdjuster` that moves dates along them.

Every "day" and every "step" in qroll is a count of **trading days**: an offset in a
:class:`TradingCalendar`, never a count of calendar days.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias, overload

import numpy as np
import pandas as pd

from qroll.clock import utcnow
from qroll.errors import CalendarError, OutOfCalendarError, TaskGenError

__all__ = ["Segment", "TimeAdjuster", "TimePoint", "TradingCalendar", "as_time_adjuster"]

TimePoint: TypeAlias = "str | pd.Timestamp | np.datetime64 | Any | None"
"""Anything ``pd.Timestamp`` accepts (a string, a date, a datetime), or ``None`` for "unbounded"."""

Segment: TypeAlias = "tuple[pd.Timestamp | None, pd.Timestamp | None]"
"""A ``(start, end)`` pair of trading days, both inclusive; ``None`` means open-ended."""


def _to_timestamp(value: Any, what: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise CalendarError(f"{what} {value!r} is not a date: use YYYY-MM-DD") from exc
    if ts is pd.NaT:
        raise CalendarError(f"{what} {value!r} is not a date: use YYYY-MM-DD")
    return ts.tz_localize(None) if ts.tzinfo is not None else ts


def _to_days(days: Iterable[Any], what: str) -> pd.DatetimeIndex:
    if isinstance(days, (str, bytes)):
        raise CalendarError(f"{what} must be a list of dates, not the string {days!r}")
    try:
        index = pd.DatetimeIndex(pd.to_datetime(list(days)))
    except (TypeError, ValueError) as exc:
        raise CalendarError(f"{what} holds a value that is not a date ({exc}); use YYYY-MM-DD") from exc
    if index.hasnans:
        raise CalendarError(f"{what} holds a missing date (NaT); remove it")
    if index.tz is not None:
        index = index.tz_localize(None)
    # Sorted and unique is what every lookup below assumes.
    return pd.DatetimeIndex(index.unique().sort_values()).as_unit("ns")


class TradingCalendar:
    """The trading days of a market, plus optional future trading days beyond the data.

    Parameters
    ----------
    days : iterable of dates
        The trading days the data covers. Sorted and de-duplicated on construction.
    future : iterable of dates, optional
        Trading days known in advance (an exchange's schedule). Only those after the last data
        day are kept: they let a rolling window's test segment end past the data, as Qlib's
        ``day_future.txt`` does.

    Examples
    --------
    >>> cal = TradingCalendar(["2020-01-02", "2020-01-03", "2020-01-06"], future=["2020-01-07"])
    >>> cal
    TradingCalendar(3 days 2020-01-02..2020-01-06, 1 future day to 2020-01-07)
    >>> len(cal), len(cal.all_days())
    (3, 4)
    """

    def __init__(self, days: Iterable[Any], future: Iterable[Any] | None = None) -> None:
        self._days = _to_days(days, "calendar days")
        if len(self._days) == 0:
            raise CalendarError("the calendar has no trading day: give at least one date")
        fut = _to_days(future, "future days") if future is not None else pd.DatetimeIndex([])
        self._future = pd.DatetimeIndex(fut[fut > self._days[-1]]).as_unit("ns")

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def from_list(cls, days: Iterable[Any], future: Iterable[Any] | None = None) -> TradingCalendar:
        """Build a calendar from lists of dates (same as the constructor)."""
        return cls(days, future)

    @classmethod
    def from_day_txt(
        cls, path: str | os.PathLike[str], future_path: str | os.PathLike[str] | None = None
    ) -> TradingCalendar:
        """Read a Qlib calendar file: one ``YYYY-MM-DD`` per line.

        Parameters
        ----------
        path : path
            ``calendars/day.txt`` of a Qlib data directory.
        future_path : path, optional
            ``calendars/day_future.txt`` (past and future days); only its days after the last
            day of ``path`` are used.

        Raises
        ------
        CalendarError
            If a file is missing or holds a line that is not a date.
        """
        days = _read_day_file(path)
        future = _read_day_file(future_path) if future_path is not None else None
        return cls(days, future)

    @classmethod
    def from_qlib_dir(cls, provider_uri: str | os.PathLike[str], future: bool = True) -> TradingCalendar:
        """Read ``calendars/day.txt`` (and ``day_future.txt`` when present) of a Qlib data directory."""
        root = os.path.expanduser(os.fspath(provider_uri))
        day = os.path.join(root, "calendars", "day.txt")
        fut = os.path.join(root, "calendars", "day_future.txt")
        return cls.from_day_txt(day, fut if future and os.path.exists(fut) else None)

    @classmethod
    def from_exchange(
        cls,
        name: str,
        start: Any = "2005-01-01",
        end: Any = None,
        future_until: Any = None,
    ) -> TradingCalendar:
        """Build a calendar from an exchange's schedule with ``exchange_calendars``.

        Parameters
        ----------
        name : str
            An ``exchange_calendars`` name or alias, e.g. ``"XSHG"`` (Shanghai) or ``"XNYS"``.
        start, end : date, optional
            The data days run from ``start`` to ``end`` inclusive; ``end`` defaults to today (UTC).
        future_until : date, optional
            Add the exchange's sessions after ``end`` up to this date as future days.

        Raises
        ------
        CalendarError
            For an unknown exchange (the message lists the closest names) or dates outside the
            range ``exchange_calendars`` knows.
        """
        import exchange_calendars as xcals

        names = xcals.get_calendar_names(include_aliases=True)
        if name not in names:
            close = difflib.get_close_matches(name.upper(), names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; e.g. XSHG, XNYS, XLON"
            raise CalendarError(f"unknown exchange calendar {name!r}{hint}")
        start_ts = _to_timestamp(start, "calendar start")
        end_ts = _to_timestamp(end, "calendar end") if end is not None else pd.Timestamp(utcnow().date())
        last = _to_timestamp(future_until, "future_until") if future_until is not None else end_ts
        if last < end_ts:
            raise CalendarError(f"future_until {last.date()} is before the calendar end {end_ts.date()}")
        try:
            with warnings.catch_warnings():
                # exchange_calendars trips pandas deprecations the user can do nothing about.
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", FutureWarning)
                exchange = xcals.get_calendar(name, start=start_ts, end=max(last, start_ts))
        except Exception as exc:  # exchange_calendars raises many types for out-of-range bounds
            raise CalendarError(
                f"exchange calendar {name!r} cannot cover {start_ts.date()}..{last.date()}: {exc}"
            ) from exc
        sessions = pd.DatetimeIndex(exchange.sessions)
        days = sessions[sessions <= end_ts]
        if len(days) == 0:
            raise CalendarError(f"exchange {name!r} has no session in {start_ts.date()}..{end_ts.date()}")
        return cls(days, sessions[sessions > end_ts])

    # -- access -------------------------------------------------------------------------------
    @property
    def days(self) -> pd.DatetimeIndex:
        """The data's trading days."""
        return self._days

    @property
    def future(self) -> pd.DatetimeIndex:
        """The known trading days after the last data day (may be empty)."""
        return self._future

    def all_days(self, future: bool = True) -> pd.DatetimeIndex:
        """The data days, followed by the future days when ``future`` is true."""
        if future and len(self._future):
            return pd.DatetimeIndex(self._days.append(self._future))
        return self._days

    @property
    def first_day(self) -> pd.Timestamp:
        """The first data day."""
        return self._days[0]

    @property
    def last_day(self) -> pd.Timestamp:
        """The last data day (future days excluded)."""
        return self._days[-1]

    def __len__(self) -> int:
        return len(self._days)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TradingCalendar):
            return NotImplemented
        return self._days.equals(other._days) and self._future.equals(other._future)

    def __hash__(self) -> int:
        return hash((len(self._days), self._days[0], self._days[-1], len(self._future)))

    def __repr__(self) -> str:
        text = f"TradingCalendar({len(self._days)} days {_d(self._days[0])}..{_d(self._days[-1])}"
        if len(self._future):
            plural = "s" if len(self._future) > 1 else ""
            text += f", {len(self._future)} future day{plural} to {_d(self._future[-1])}"
        return text + ")"


def _d(value: Any) -> str:
    """A date as people write it: ``2020-01-02``, or the full time when it is not midnight."""
    if value is None:
        return "None"
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return str(value)
    return str(ts.date()) if ts == ts.normalize() else str(ts)


def _read_day_file(path: str | os.PathLike[str]) -> list[pd.Timestamp]:
    try:
        with open(path, encoding="utf-8") as fh:
            lines = [(n, line.strip()) for n, line in enumerate(fh, 1)]
    except OSError as exc:
        raise CalendarError(f"cannot read calendar file {os.fspath(path)}: {exc.strerror}") from exc
    days = []
    for n, text in lines:
        if not text:
            continue
        try:
            days.append(pd.Timestamp(text))
        except ValueError as exc:
            raise CalendarError(f"{os.fspath(path)}:{n}: {text!r} is not a date (YYYY-MM-DD)") from exc
    if not days:
        raise CalendarError(f"calendar file {os.fspath(path)} holds no date")
    return days


class TimeAdjuster:
    """Move dates and segments along a trading calendar, with Qlib's semantics.

    A start point aligns *forward* to the next trading day, an end point *back* to the previous
    one, and ``None`` means open-ended. Where Qlib silently returns a wrong date or crashes, this
    raises :class:`~qroll.errors.CalendarError` with the dates in the message (an end before the
    calendar, a negative index, a ``None`` in :meth:`cal_interval`) and lists are accepted as
    tuples.

    Parameters
    ----------
    calendar : TradingCalendar or iterable of dates
        The trading calendar.
    future : bool, default True
        Include the calendar's future days (Qlib's ``day_future.txt``).
    end_time : date, optional
        Drop the days after this date.

    Examples
    --------
    >>> ta = TimeAdjuster(TradingCalendar(pd.bdate_range("2017-01-02", "2017-01-31")))
    >>> ta.align_seg({"test": ("2017-01-01", "2017-01-08")})["test"]
    (Timestamp('2017-01-02 00:00:00'), Timestamp('2017-01-06 00:00:00'))
    >>> ta.shift((pd.Timestamp("2017-01-02"), pd.Timestamp("2017-01-06")), 5)
    (Timestamp('2017-01-09 00:00:00'), Timestamp('2017-01-13 00:00:00'))
    """

    SHIFT_SD = "sliding"
    SHIFT_EX = "expanding"

    def __init__(
        self,
        calendar: TradingCalendar | Iterable[Any],
        future: bool = True,
        end_time: TimePoint = None,
    ) -> None:
        self.calendar = calendar if isinstance(calendar, TradingCalendar) else TradingCalendar(calendar)
        self.future = future
        self.set_end_time(end_time)

    def set_end_time(self, end_time: TimePoint = None) -> None:
        """Reload the days from the calendar, dropping those after ``end_time``."""
        cals = self.calendar.all_days(self.future)
        if end_time is not None:
            cals = cals[cals <= _to_timestamp(end_time, "end_time")]
            if len(cals) == 0:
                raise CalendarError(
                    f"end_time {end_time} is before the first trading day {_d(self.calendar.first_day)}"
                )
        self.cals: pd.DatetimeIndex = cals

    def __repr__(self) -> str:
        return f"TimeAdjuster({self.calendar!r}, future={self.future})"

    def get(self, idx: int | None) -> pd.Timestamp | None:
        """Return the trading day at ``idx``; ``None`` for ``None`` or an index past the end.

        Raises
        ------
        CalendarError
            For a negative index (Qlib wraps it around to the end of the calendar).
        """
        if idx is None or idx >= len(self.cals):
            return None
        if idx < 0:
            raise CalendarError(
                f"trading-day index {idx} is before the first trading day {_d(self.cals[0])}"
            )
        return self.cals[idx]

    def max(self) -> pd.Timestamp:
        """Return the last trading day (future days included when enabled)."""
        return self.cals[-1]

    @overload
    def align_idx(self, time_point: None, tp_type: str = ...) -> None: ...
    @overload
    def align_idx(self, time_point: Any, tp_type: str = ...) -> int: ...

    def align_idx(self, time_point: TimePoint, tp_type: str = "start") -> int | None:
        """Return the calendar index a point aligns to.

        ``"start"``: the first trading day on or after the point (may be ``len(cals)``).
        ``"end"``: the last trading day on or before it (may be ``-1``). ``None`` stays ``None``.
        """
        if time_point is None:
            return None
        ts = _to_timestamp(time_point, f"{tp_type} point")
        if tp_type == "start":
            return int(self.cals.searchsorted(ts, side="left"))
        if tp_type == "end":
            return int(self.cals.searchsorted(ts, side="right")) - 1
        raise CalendarError(f"tp_type must be 'start' or 'end', not {tp_type!r}")

    def cal_interval(self, time_point_A: TimePoint, time_point_B: TimePoint) -> int:
        """Return the number of trading days from B to A (both start-aligned), ``A - B``.

        Raises
        ------
        CalendarError
            If either point is ``None`` (Qlib raises ``TypeError``).
        """
        if time_point_A is None or time_point_B is None:
            raise CalendarError(
                f"cal_interval needs two dates, got {time_point_A!r} and {time_point_B!r}"
            )
        return self.align_idx(time_point_A) - self.align_idx(time_point_B)

    def align_time(self, time_point: TimePoint, tp_type: str = "start") -> pd.Timestamp | None:
        """Return the trading day a point aligns to (see :meth:`align_idx`).

        Raises
        ------
        CalendarError
            For a start after the last trading day, or an end before the first (Qlib silently
            returns the *last* calendar day for the latter).
        """
        if time_point is None:
            return None
        idx = self.align_idx(time_point, tp_type)
        if idx >= len(self.cals):
            raise CalendarError(
                f"start {_d(_to_timestamp(time_point, 'start'))} is after the last trading day "
                f"{_d(self.cals[-1])}: move it earlier or extend the calendar"
            )
        if idx < 0:
            raise CalendarError(
                f"end {_d(_to_timestamp(time_point, 'end'))} is before the first trading day "
                f"{_d(self.cals[0])}: move it later or use an earlier calendar"
            )
        return self.cals[idx]

    @overload
    def align_seg(self, segment: Mapping[str, Any]) -> dict[str, Any]: ...
    @overload
    def align_seg(self, segment: tuple[Any, Any] | list[Any]) -> Segment: ...

    def align_seg(self, segment: Any) -> Any:
        """Align a ``(start, end)`` segment, or a dict of them (recursively), to trading days.

        The start moves forward to the next trading day, the end back to the previous one.
        A list is read as a tuple; the result is always a tuple.

        Raises
        ------
        CalendarError
            If the segment is not a pair or a dict, or a point is outside the calendar.
        """
        if isinstance(segment, Mapping):
            return {k: self.align_seg(seg) for k, seg in segment.items()}
        pair = _as_pair(segment)
        # A segment with no trading day (a weekend) aligns to start > end, as in Qlib; callers
        # that need a non-empty segment check the raw dates themselves.
        return (self.align_time(pair[0], "start"), self.align_time(pair[1], "end"))

    def truncate(self, segment: tuple[Any, Any] | list[Any], test_start: TimePoint, days: int) -> Segment:
        """End a segment at least ``days`` trading days before ``test_start``.

        Each point becomes ``min(point, test_start - days)`` in trading days (start alignment),
        which leaves ``days - 1`` trading days unused before the test. A ``None`` start stays
        ``None``; a ``None`` end becomes the bound. For a label that looks N days ahead, ``days``
        should be ``N + 1``.

        Raises
        ------
        CalendarError
            If the truncated segment would begin before the first trading day.
        """
        pair = _as_pair(segment)
        test_idx = self.align_idx(test_start)
        if test_idx is None:
            raise CalendarError("truncate needs a test start date, got None")
        bound = test_idx - days
        out: list[pd.Timestamp | None] = []
        for pos, point in enumerate(pair):
            if point is None and pos == 0:
                out.append(None)
                continue
            tp_idx = bound if point is None else min(self.align_idx(point), bound)
            if tp_idx < 0:
                raise CalendarError(
                    f"truncating {_d(pair[0])}..{_d(pair[1])} to end {days} trading days before "
                    f"{_d(_to_timestamp(test_start, 'test start'))} falls before the first trading "
                    f"day {_d(self.cals[0])}: start the test later or lower trunc_days"
                )
            out.append(self.get(tp_idx))
        return (out[0], out[1])

    def shift(self, seg: tuple[Any, Any] | list[Any], step: int, rtype: str = SHIFT_SD) -> Segment:
        """Shift a segment by ``step`` trading days.

        ``"sliding"`` moves both ends; ``"expanding"`` moves only the end. An end that runs past
        the calendar becomes ``None`` (open-ended); a ``None`` end stays ``None``.

        Raises
        ------
        OutOfCalendarError
            If the shifted start lies strictly past the end of the calendar.
        TaskGenError
            For an unknown ``rtype``.
        """
        pair = _as_pair(seg)
        start_idx = self.align_idx(pair[0], "start")
        end_idx = self.align_idx(pair[1], "end")
        if rtype == self.SHIFT_SD:
            start_idx = None if start_idx is None else start_idx + step
            end_idx = None if end_idx is None else end_idx + step
        elif rtype == self.SHIFT_EX:
            end_idx = None if end_idx is None else end_idx + step
        else:
            raise TaskGenError(f"unknown rtype {rtype!r}: use 'sliding' or 'expanding'")
        # Qlib's boundary, kept exactly: a start index equal to len(cals) gives an open start.
        if start_idx is not None and start_idx > len(self.cals):
            raise OutOfCalendarError(
                f"segment {_d(pair[0])}..{_d(pair[1])} shifted by {step} trading days starts past "
                f"the last trading day {_d(self.cals[-1])}"
            )
        return (self.get(start_idx), self.get(end_idx))


def _as_pair(segment: Any) -> tuple[Any, Any]:
    if isinstance(segment, (tuple, list)) and len(segment) == 2:
        return (segment[0], segment[1])
    raise CalendarError(f"a segment must be a (start, end) pair, got {segment!r}")



def as_time_adjuster(calendar: Any, future: bool = True) -> TimeAdjuster:
    """Turn any calendar specification into a :class:`TimeAdjuster`.

    Parameters
    ----------
    calendar : TimeAdjuster, TradingCalendar, str, path or iterable of dates
        A ready adjuster or calendar; a path to a Qlib ``day.txt`` or a Qlib data directory;
        an exchange name known to ``exchange_calendars`` (``"XSHG"``, ``"XNYS"``, ...); or dates.
    future : bool, default True
        Whether the adjuster includes future days.

    Raises
    ------
    CalendarError
        If ``calendar`` is ``None`` or cannot be turned into a calendar.
    """
    if isinstance(calendar, TimeAdjuster):
        return calendar
    if calendar is None:
        raise CalendarError(
            "no trading calendar given: pass calendar= a TradingCalendar, a TimeAdjuster, "
            "an exchange name such as 'XSHG', or the path of a Qlib day.txt"
        )
    if isinstance(calendar, (str, os.PathLike)):
        path = os.path.expanduser(os.fspath(calendar))
        if os.path.isdir(path):
            calendar = TradingCalendar.from_qlib_dir(path, future=future)
        elif os.path.exists(path) or path.endswith(".txt"):
            calendar = TradingCalendar.from_day_txt(path)
        else:
            calendar = TradingCalendar.from_exchange(os.fspath(calendar))
    return TimeAdjuster(calendar, future=future)
