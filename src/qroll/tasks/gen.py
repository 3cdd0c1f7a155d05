"""Task generators: roll one task template over the trading calendar into many tasks.

The outputs of :class:`RollingGen` equal Qlib's for every input on which Qlib does not crash:
the step is counted in trading days, each test window is exactly ``step`` days long, only the
train segment expands, the last window may pass the requested test end (its handler ``end_time``
is then extended, to ``None`` past the calendar), and a window whose test start equals the test
end is still produced. Where Qlib crashes, qroll stops cleanly or raises a
:class:`~qroll.errors.QrollError` that says what to change. One addition: a task rolled with a
``test_key`` other than ``"test"`` also carries it, as ``{"qroll": {"test_key": ...}}`` (see
:mod:`qroll.tasks.shape`), so its runs are tagged and listed by their real test window.
"""

from __future__ import annotations

import abc
import copy
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

import pandas as pd

from qroll.calendar import Segment, TimeAdjuster, as_time_adjuster
from qroll.errors import LabelLeakWarning, OutOfCalendarError, TaskGenError
from qroll.tasks import shape
from qroll.tasks.horizon import auto_trunc_days, label_horizon, task_label

__all__ = [
    "MultiHorizonGenBase",
    "RollingGen",
    "TaskGen",
    "handler_mod",
    "task_generator",
    "trunc_segments",
]

# Calendar frequencies a step may name, and the pandas period each maps to.
PERIOD_STEPS = {"W": "W-SUN", "M": "M", "Q": "Q-DEC", "Y": "Y-DEC"}


class DatasetModifier(Protocol):
    """A hook that edits a rolled task in place after its segments are set (``handler_mod``)."""

    def __call__(self, task: dict[str, Any], rolling_gen: RollingGen, /) -> None: ...


class TaskGen(abc.ABC):
    """Expand one task template into a list of tasks. Calling the object calls :meth:`generate`."""

    @abc.abstractmethod
    def generate(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        """Return the tasks generated from ``task``; ``task`` itself is never modified."""

    def __call__(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return self.generate(*args, **kwargs)


def task_generator(
    tasks: dict[str, Any] | list[dict[str, Any]], generators: TaskGen | list[TaskGen]
) -> list[dict[str, Any]]:
    """Apply generators in sequence, each to every task the previous one produced.

    The order is template-major: for templates ``[A, B]`` and one :class:`RollingGen`, all of
    A's windows in time order come first, then all of B's.

    Parameters
    ----------
    tasks : dict or list of dict
        Task templates.
    generators : TaskGen or list of TaskGen
        Applied in order (a Cartesian expansion).
    """
    task_list = [tasks] if isinstance(tasks, dict) else list(tasks)
    gen_list = [generators] if isinstance(generators, TaskGen) else list(generators)
    for gen in gen_list:
        task_list = [new for task in task_list for new in gen.generate(task)]
    return task_list


def handler_mod(task: dict[str, Any], rolling_gen: RollingGen) -> None:
    """Extend the data handler's ``end_time`` to the end of the task's test segment.

    The default ``ds_extra_mod_func`` of :class:`RollingGen`. The end is only ever extended, never
    shortened; an open-ended test (``None`` end) makes it ``None``; a ``None`` handler end, a
    handler given as a string (``"file://h.pkl"``) or a task with no handler is left alone.
    ``start_time``, ``fit_start_time`` and ``fit_end_time`` are never changed.
    """
    kwargs = shape.handler_kwargs(task)
    span = shape.task_segment(task, rolling_gen.test_key)
    if kwargs is None or span is None:
        return
    test_end = span[1]
    h_end = kwargs.get("end_time")
    if test_end is None:
        kwargs["end_time"] = None
    elif h_end is not None and rolling_gen.ta.cal_interval(h_end, test_end) < 0:
        kwargs["end_time"] = copy.deepcopy(test_end)


def trunc_segments(ta: TimeAdjuster, segments: dict[str, Any], days: int, test_key: str = "test") -> None:
    """End every segment but the test at least ``days`` trading days before the test starts.

    Changes ``segments`` in place, as Qlib does (it is called on the generator's own copy).

    Parameters
    ----------
    ta : TimeAdjuster
        The calendar.
    segments : dict
        Aligned segments, ``{name: (start, end)}``.
    days : int
        Trading days; a label looking N days ahead needs ``N + 1``.
    test_key : str, default "test"
        The segment that is not truncated.
    """
    points = [t for t in segments[test_key] if t is not None]
    if not points:
        raise TaskGenError(f"segment {test_key!r} has neither start nor end: cannot truncate before it")
    test_start = min(points)
    for key in list(segments):
        if key != test_key:
            segments[key] = ta.truncate(segments[key], test_start, days)


class RollingGen(TaskGen):
    """Roll a task over the trading calendar: one task per test window.

    The first test window starts at the template's test start and is ``step`` trading days long;
    each following window starts ``step`` trading days later, until a window would start after
    the template's test end (or the last data day). Train, valid and any other segment move with
    the test window: they slide, except train, which only grows when ``rtype`` is expanding.

    Expanding (``step=5`` on 30 business days; ``*`` train, ``v`` valid, ``x`` test)::

        >>> import pandas as pd
        >>> from qroll import TradingCalendar
        >>> from qroll.tasks.timeline import draw_windows
        >>> cal = TradingCalendar(pd.bdate_range("2020-01-01", periods=30))
        >>> task = {"dataset": {"kwargs": {"segments": {
        ...     "train": ("2020-01-01", "2020-01-14"), "valid": ("2020-01-15", "2020-01-21"),
        ...     "test": ("2020-01-22", "2020-02-11")}}}}
        >>> tasks = RollingGen(step=5, calendar=cal).generate(task)
        >>> print(draw_windows(tasks, cal))
        2020-01-01..2020-02-11, 1 column = 1 trading day
        0 **********vvvvvxxxxx
        1 ***************vvvvvxxxxx
        2 ********************vvvvvxxxxx

    Sliding: the train start moves too::

        >>> tasks = RollingGen(step=5, rtype=RollingGen.ROLL_SD, calendar=cal).generate(task)
        >>> print(draw_windows(tasks, cal))
        2020-01-01..2020-02-11, 1 column = 1 trading day
        0 **********vvvvvxxxxx
        1      **********vvvvvxxxxx
        2           **********vvvvvxxxxx

    Parameters
    ----------
    step : int or {"W", "M", "Q", "Y"}, default 40
        Test window length in trading days, or a calendar frequency: each test window is then
        one week, month, quarter or year (the first one from the test start to the end of its
        period), and the other segments move by the trading days of the window before.
    rtype : {"expanding", "sliding"}, default "expanding"
        ``ROLL_EX`` keeps the train start fixed; ``ROLL_SD`` moves it.
    ds_extra_mod_func : callable or None, default handler_mod
        Called as ``func(task, self)`` on every generated task after its segments are set.
    test_key, train_key : str
        Names of the test and train segments. A test key other than ``"test"`` is written into
        every generated task (:func:`qroll.tasks.shape.set_test_key`).
    trunc_days : int, "auto" or None, default None
        Truncate the other segments to end this many trading days before the first test start
        (see :func:`trunc_segments`). ``"auto"`` takes the label's horizon + 1 (see
        :mod:`qroll.tasks.horizon`). ``None`` keeps no gap, as Qlib does, and warns with
        :class:`~qroll.errors.LabelLeakWarning` when the label looks past the gap.
    task_copy_func : callable, default copy.deepcopy
        Copies the template for each window.
    calendar : TradingCalendar, TimeAdjuster, str or list of dates
        The trading calendar (see :func:`qroll.calendar.as_time_adjuster`). Its future days, if
        any, let the last window end past the data.
    """

    ROLL_EX = TimeAdjuster.SHIFT_EX
    ROLL_SD = TimeAdjuster.SHIFT_SD

    def __init__(
        self,
        step: int | str = 40,
        rtype: str = ROLL_EX,
        ds_extra_mod_func: DatasetModifier | Callable[..., Any] | None = handler_mod,
        test_key: str = "test",
        train_key: str = "train",
        trunc_days: int | str | None = None,
        task_copy_func: Callable[[Any], Any] = copy.deepcopy,
        calendar: Any = None,
    ) -> None:
        self.step = step
        self.rtype = rtype
        self.ds_extra_mod_func = ds_extra_mod_func
        self.test_key = test_key
        self.train_key = train_key
        self.trunc_days = trunc_days
        self.task_copy_func = task_copy_func
        self.calendar = calendar
        self._ta: TimeAdjuster | None = None
        self._periods: tuple[tuple[int, str], Any, bool] | None = None

    def __repr__(self) -> str:
        mod = getattr(self.ds_extra_mod_func, "__name__", repr(self.ds_extra_mod_func))
        copier = getattr(self.task_copy_func, "__name__", repr(self.task_copy_func))
        return (
            f"RollingGen(step={self.step!r}, rtype={self.rtype!r}, ds_extra_mod_func={mod}, "
            f"test_key={self.test_key!r}, train_key={self.train_key!r}, "
            f"trunc_days={self.trunc_days!r}, task_copy_func={copier}, calendar={self.calendar!r})"
        )

    @property
    def ta(self) -> TimeAdjuster:
        """The :class:`TimeAdjuster` over ``calendar`` (built on first use)."""
        if self._ta is None:
            self._ta = as_time_adjuster(self.calendar)
        return self._ta

    # -- validation ---------------------------------------------------------------------------
    def _check(self) -> None:
        step = self.step
        if isinstance(step, str):
            if step.upper() not in PERIOD_STEPS:
                raise TaskGenError(
                    f"step={step!r} is neither a number of trading days nor a calendar frequency: "
                    f"use a positive integer or one of {', '.join(PERIOD_STEPS)}"
                )
        elif isinstance(step, bool) or not isinstance(step, int) or step <= 0:
            raise TaskGenError(
                f"step={step!r} must be a positive number of trading days (or W, M, Q, Y)"
            )
        if self.rtype not in (self.ROLL_EX, self.ROLL_SD):
            raise TaskGenError(
                f"rtype={self.rtype!r} is unknown: use {self.ROLL_EX!r} (RollingGen.ROLL_EX) or "
                f"{self.ROLL_SD!r} (RollingGen.ROLL_SD)"
            )
        trunc = self.trunc_days
        days = isinstance(trunc, int) and not isinstance(trunc, bool) and trunc >= 0
        if not (trunc is None or trunc == "auto" or days):
            raise TaskGenError(
                f"trunc_days={trunc!r} must be None, 'auto' or a number of trading days >= 0"
            )

    def _check_segments(self, segments: Mapping[str, Any]) -> None:
        if self.test_key not in segments:
            raise TaskGenError(
                f"test_key {self.test_key!r} is not a segment of the task (segments: "
                f"{', '.join(map(str, segments)) or 'none'}); set RollingGen(test_key=...) or add it"
            )
        for key, seg in segments.items():
            if not (isinstance(seg, (tuple, list)) and len(seg) == 2):
                raise TaskGenError(f"segment {key!r} must be a [start, end] pair, got {seg!r}")
            start, end = seg
            try:
                inverted = start is not None and end is not None and pd.Timestamp(start) > pd.Timestamp(end)
            except (TypeError, ValueError) as exc:
                raise TaskGenError(f"segment {key!r} = {list(seg)} holds a value that is not a date") from exc
            if inverted:
                raise TaskGenError(
                    f"segment {key!r} starts after it ends: {start} > {end}; swap the dates"
                )
        if segments[self.test_key][0] is None:
            raise TaskGenError(
                f"segment {self.test_key!r} has no start date: rolling needs one, e.g. "
                f"[2017-01-01, null] for an open-ended test"
            )

    def trunc_days_for(self, task: Mapping[str, Any]) -> int | None:
        """The gap in trading days this generator keeps for ``task`` (``"auto"`` resolved)."""
        if self.trunc_days != "auto":
            return self.trunc_days  # type: ignore[return-value]
        labels = task_label(task)
        if labels is None:
            raise TaskGenError(
                "trunc_days='auto' found no label in dataset.kwargs.handler.kwargs.label and the "
                "handler class has no known default: give trunc_days as a number of trading days"
            )
        return auto_trunc_days(labels)

    def _warn_leak(self, task: Mapping[str, Any], segments: Mapping[str, Segment]) -> None:
        labels = task_label(task)
        if not labels:
            return
        horizon = max(label_horizon(label) for label in labels)
        test_idx = self.ta.align_idx(segments[self.test_key][0])
        for key, (_, end) in segments.items():
            if key == self.test_key or end is None:
                continue
            gap = test_idx - self.ta.align_idx(end) - 1
            if gap < horizon:
                warnings.warn(
                    f"segment {key!r} ends {gap} trading day(s) before the test but the label "
                    f"looks {horizon} day(s) ahead, so its last labels overlap the test: "
                    f"use trunc_days='auto' (or {horizon + 1})",
                    LabelLeakWarning,
                    stacklevel=3,
                )
                return

    # -- generation ---------------------------------------------------------------------------
    def generate(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        """Return one task per test window, in time order; ``task`` is not modified.

        Raises
        ------
        TaskGenError
            For an invalid ``step``, ``rtype`` or ``trunc_days``, a missing test segment, a
            segment that starts after it ends, or ``trunc_days="auto"`` with no label to read.
        CalendarError
            For a date the calendar cannot place (a test start after its last day, an end before
            its first day) or no calendar at all.
        """
        self._check()
        self._check_segments(shape.segments(task))
        trunc_days = self.trunc_days_for(task)
        t = self.task_copy_func(task)
        segments: dict[str, Any] = copy.deepcopy(self.ta.align_seg(shape.segments(t)))
        test_end = self._transform_end_date(segments[self.test_key][1])

        start = self.ta.align_idx(segments[self.test_key][0])
        segments[self.test_key] = (self.ta.get(start), self.ta.get(self._window_end(start)))
        if trunc_days is not None:
            trunc_segments(self.ta, segments, trunc_days, test_key=self.test_key)
        else:
            self._warn_leak(task, segments)
        self._update_task_segs(t, segments)
        return [t, *self.gen_following_tasks(t, test_end)]

    def gen_following_tasks(self, task: dict[str, Any], test_end: Any) -> Iterator[dict[str, Any]]:
        """Yield the windows that follow ``task``'s, while their test start is ≤ ``test_end``.

        ``task`` itself is not yielded. Used on its own to extend an online model's rolling.
        Stops cleanly when the next window would start past the calendar (Qlib raises
        ``TypeError`` when it starts exactly one day past it).
        """
        self._check()
        test_end = pd.Timestamp(test_end)
        prev = shape.segments(task)
        while True:
            prev_start = self.ta.align_idx(prev[self.test_key][0])
            next_start = self._next_start(prev_start)
            if next_start is None or next_start >= len(self.ta.cals):
                return
            delta = next_start - prev_start
            try:
                new = {
                    key: self.ta.shift(seg, delta, rtype=self._shift_type(key))
                    for key, seg in prev.items()
                    if key != self.test_key or isinstance(self.step, int)
                }
            except OutOfCalendarError:
                return
            if not isinstance(self.step, int):
                new[self.test_key] = (self.ta.get(next_start), self.ta.get(self._window_end(next_start)))
            new_start = new[self.test_key][0]
            if new_start is None or new_start > test_end:
                return
            t = self.task_copy_func(task)
            self._update_task_segs(t, new)
            yield t
            prev = new

    # -- helpers ------------------------------------------------------------------------------
    def _shift_type(self, key: str) -> str:
        # Only train can expand; every other segment slides (Qlib's rule, kept).
        if key == self.train_key and self.rtype == self.ROLL_EX:
            return TimeAdjuster.SHIFT_EX
        return TimeAdjuster.SHIFT_SD

    def _transform_end_date(self, end: pd.Timestamp | None) -> pd.Timestamp:
        last = self.ta.calendar.last_day
        return last if end is None or end > last else end

    def _period_ordinals(self) -> tuple[Any, bool]:
        """Each calendar day's period ordinal, and whether the calendar's last period is complete."""
        cals = self.ta.cals
        freq = PERIOD_STEPS[str(self.step).upper()]
        if self._periods is None or self._periods[0] != (id(cals), freq):
            ordinals = cals.to_period(freq).asi8
            # The day after the calendar ends falls in a later period only if the last one is whole.
            complete = (cals[-1] + pd.Timedelta(days=1)).to_period(freq).ordinal != ordinals[-1]
            self._periods = ((id(cals), freq), ordinals, complete)
        return self._periods[1], self._periods[2]

    def _window_end(self, start: int) -> int | None:
        """The index of the test window's last day (past the calendar ⇒ ``get`` gives None)."""
        if isinstance(self.step, int):
            return start + self.step - 1
        ordinals, last_complete = self._period_ordinals()
        end = int(ordinals.searchsorted(ordinals[start], side="right")) - 1
        if end == len(ordinals) - 1 and not last_complete:
            return None
        return end

    def _next_start(self, start: int) -> int | None:
        if isinstance(self.step, int):
            return start + self.step
        if start >= len(self.ta.cals):
            return None
        ordinals, _ = self._period_ordinals()
        return int(ordinals.searchsorted(ordinals[start], side="right"))

    def _update_task_segs(self, task: dict[str, Any], segments: dict[str, Any]) -> None:
        shape.set_segments(task, copy.deepcopy(segments))
        # The task carries its test key (when not "test"), so whatever trains, lists or tags it
        # later finds its test window without this generator.
        shape.set_test_key(task, self.test_key)
        if self.ds_extra_mod_func is not None:
            self.ds_extra_mod_func(task, self)


class MultiHorizonGenBase(TaskGen):
    """One task per label horizon, each with its segments truncated for that horizon.

    Subclasses implement :meth:`set_horizon` to put the horizon into the task (usually its label).
    Each task's non-test segments end ``horizon + label_leak_n`` trading days before the test.

    Parameters
    ----------
    horizon : list of int, default [5]
        Label horizons in trading days.
    label_leak_n : int, default 2
        Extra trading days of gap beyond the horizon.
    calendar : TradingCalendar, TimeAdjuster, str or list of dates
        The trading calendar.
    """

    def __init__(
        self, horizon: Iterable[int] = (5,), label_leak_n: int = 2, calendar: Any = None
    ) -> None:
        self.horizon = list(horizon)
        self.label_leak_n = label_leak_n
        self.calendar = calendar
        self.test_key = "test"
        self._ta: TimeAdjuster | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(horizon={self.horizon!r}, label_leak_n={self.label_leak_n!r}, "
            f"calendar={self.calendar!r})"
        )

    @property
    def ta(self) -> TimeAdjuster:
        """The :class:`TimeAdjuster` over ``calendar`` (built on first use)."""
        if self._ta is None:
            self._ta = as_time_adjuster(self.calendar)
        return self._ta

    @abc.abstractmethod
    def set_horizon(self, task: dict[str, Any], hr: int) -> None:
        """Put horizon ``hr`` (trading days) into ``task``, in place."""

    def generate(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        """Return one task per horizon, in the order of ``horizon``; ``task`` is not modified."""
        out = []
        for hr in self.horizon:
            if isinstance(hr, bool) or not isinstance(hr, int) or hr < 0:
                raise TaskGenError(f"horizon {hr!r} must be a number of trading days >= 0")
            t = copy.deepcopy(task)
            self.set_horizon(t, hr)
            segments = self.ta.align_seg(shape.segments(t))
            if self.test_key not in segments:
                raise TaskGenError(f"the task has no {self.test_key!r} segment to keep clear of")
            trunc_segments(self.ta, segments, days=hr + self.label_leak_n, test_key=self.test_key)
            shape.set_segments(t, segments)
            out.append(t)
        return out
