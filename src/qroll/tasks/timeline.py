"""Show generated tasks before training them: a table of windows and an ASCII timeline."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from qroll.calendar import TimeAdjuster, as_time_adjuster
from qroll.tasks import shape
from qroll.tasks.shape import format_day

__all__ = ["draw_windows", "format_day", "tasks_table", "window_rows"]

MARKS = {"train": "*", "valid": "v", "test": "x"}
OTHER_MARK = "o"
# Where several segments share a column, the later stage of the flow shows.
PRIORITY = {"x": 3, "v": 2, "*": 1, OTHER_MARK: 0}


def _handler_end(task: Mapping[str, Any]) -> str:
    kwargs = shape.handler_kwargs(task)
    if kwargs is None or "end_time" not in kwargs:
        return "-"
    return format_day(kwargs["end_time"])


def window_rows(tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """One row per task: its model, every segment as ``start..end``, and the handler end."""
    rows = []
    for task in tasks:
        row = {"model": shape.model_name(task) or "-"}
        for key, span in shape.segments(task).items():
            row[key] = shape.format_segment(span)
        row["handler end"] = _handler_end(task)
        rows.append(row)
    return rows


def tasks_table(tasks: Sequence[Mapping[str, Any]], title: str | None = None) -> Any:
    """A :class:`rich.table.Table` of :func:`window_rows`, numbered from 0."""
    from rich.table import Table

    rows = window_rows(tasks)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns and c != "handler end"]
    table = Table(title=title, header_style="bold")
    table.add_column("#", justify="right")
    for col in [*columns, "handler end"]:
        table.add_column(col, no_wrap=True)
    for n, row in enumerate(rows):
        table.add_row(str(n), *(row.get(c, "-") for c in [*columns, "handler end"]))
    return table


def draw_windows(
    tasks: Sequence[Mapping[str, Any]],
    calendar: Any,
    width: int = 72,
    test_key: str | None = None,
    train_key: str = shape.DEFAULT_TRAIN_KEY,
) -> str:
    """Draw each task's segments over trading days: ``*`` train, ``v`` valid, ``x`` test.

    One row per task; columns are trading days from the earliest segment start to the latest
    end. When that span is wider than ``width``, each column stands for several trading days and
    shows the latest stage among them. An open-ended segment ends in ``>``.

    Parameters
    ----------
    tasks : sequence of dict
        Generated tasks.
    calendar : TradingCalendar, TimeAdjuster or anything :func:`~qroll.calendar.as_time_adjuster` takes
        The trading calendar the tasks were generated on.
    width : int, default 72
        The most columns a row may use.
    test_key : str, optional
        The test segment's name; default each task's own (:func:`qroll.tasks.shape.task_test_key`).
    train_key : str, default "train"
        The train segment's name.
    """
    ta = calendar if isinstance(calendar, TimeAdjuster) else as_time_adjuster(calendar)
    # Only the segments that are train and test here are drawn so: a "test" segment beside
    # another test key is just another segment.
    base = {key: mark for key, mark in MARKS.items() if mark not in ("*", "x")}
    spans: list[list[tuple[int, int, str, bool]]] = []
    for task in tasks:
        marks = {**base, train_key: "*", test_key or shape.task_test_key(task): "x"}
        row = []
        for key, (start, end) in shape.segments(task).items():
            lo = 0 if start is None else ta.align_idx(start, "start")
            hi = len(ta.cals) - 1 if end is None else ta.align_idx(end, "end")
            row.append((lo, hi, marks.get(key, OTHER_MARK), end is None))
        spans.append(row)
    if not spans or not any(spans):
        return ""
    first = min(lo for row in spans for lo, _, _, _ in row)
    last = max(hi for row in spans for _, hi, _, _ in row)
    per_col = max(1, math.ceil((last - first + 1) / width))
    ncols = (last - first) // per_col + 1
    unit = "1 column = 1 trading day" if per_col == 1 else f"1 column = {per_col} trading days"
    lines = [f"{format_day(ta.cals[first])}..{format_day(ta.cals[last])}, {unit}"]
    label_width = len(str(len(spans) - 1))
    for n, row in enumerate(spans):
        cols = [" "] * ncols
        for lo, hi, mark, open_end in row:
            for c in range((lo - first) // per_col, (hi - first) // per_col + 1):
                if cols[c] == " " or PRIORITY[mark] > PRIORITY.get(cols[c], -1):
                    cols[c] = mark
            if open_end:
                cols[(hi - first) // per_col] = ">"
        lines.append(f"{n:>{label_width}} {''.join(cols).rstrip()}")
    return "\n".join(lines)
