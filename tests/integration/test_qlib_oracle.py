"""qroll's RollingGen, MultiHorizonGenBase and TimeAdjuster against Qlib 0.9.7's recorded outputs.

``tests/fixtures/qlib_rolling_oracle.json`` holds what Qlib 0.9.7 returned (or raised) for 1,648
inputs on the Mon–Fri calendar 2005-01-04..2020-09-25, with and without future days to
2021-12-31; ``benchmarks/oracle/qlib_rolling_cases.py`` regenerates it in Qlib's own venv.

Where Qlib returns an answer, qroll must return the same one, except where qroll fixes Qlib on
purpose (each exception is listed in ``deliberate_difference`` with its reason). Where Qlib
crashes, qroll must stop cleanly with the windows Qlib had produced, or raise a QrollError.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from qroll import MultiHorizonGenBase, QrollError, RollingGen, TimeAdjuster, TradingCalendar, handler_mod
from qroll.errors import CalendarError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "qlib_rolling_oracle.json"
pytestmark = pytest.mark.filterwarnings("ignore::qroll.LabelLeakWarning")


@cache
def oracle() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


@cache
def calendar(kind: str) -> TradingCalendar:
    cals = oracle()["calendars"][kind]
    days = pd.bdate_range(cals["day_txt"]["start"], cals["day_txt"]["end"])
    fut = cals["day_future_txt"]
    return TradingCalendar(days, future=pd.bdate_range(fut["start"], fut["end"]) if fut else None)


def cases(kind: str) -> list[dict[str, Any]]:
    return [c for c in oracle()["cases"] if c["kind"] == kind]


def iso(value: Any) -> str | None:
    return None if value is None else str(pd.Timestamp(value).date())


def summary(task: dict[str, Any]) -> dict[str, Any]:
    segs = {k: [iso(s), iso(e)] for k, (s, e) in task["dataset"]["kwargs"]["segments"].items()}
    handler = task["dataset"]["kwargs"]["handler"]
    if not isinstance(handler, dict):
        end, kind = None, "handler_not_dict"
    elif "end_time" not in handler["kwargs"]:
        end, kind = None, "absent"
    else:
        value = handler["kwargs"]["end_time"]
        end = value if isinstance(value, str) else iso(value)
        kind = type(value).__name__
    return {"segments": segs, "handler_end_time": end, "handler_end_time_type": kind}


def template(case: dict[str, Any]) -> dict[str, Any]:
    inputs = case["inputs"]
    task = copy.deepcopy(oracle()["base_template"])
    wrap = list if inputs.get("segments_container") == "list" else tuple
    task["dataset"]["kwargs"]["segments"] = {k: wrap(v) for k, v in inputs["segments"].items()}
    if "handler" in inputs:
        task["dataset"]["kwargs"]["handler"] = copy.deepcopy(inputs["handler"])
    if inputs.get("handler_end_time_as_timestamp"):
        kwargs = task["dataset"]["kwargs"]["handler"]["kwargs"]
        kwargs["end_time"] = pd.Timestamp(kwargs["end_time"])
    return task


def deliberate_difference(case: dict[str, Any]) -> str | None:
    """Why qroll's answer to this case differs from Qlib 0.9.7's on purpose, or None."""
    gen = case["inputs"].get("gen_kwargs", {})
    segs = case["inputs"].get("segments", {})
    if gen.get("rtype") not in (None, "expanding", "sliding"):
        return "unknown rtype: Qlib silently slides, qroll raises TaskGenError"
    for start, end in segs.values():
        if start and end and pd.Timestamp(start) > pd.Timestamp(end):
            return "segment starting after it ends: qroll raises TaskGenError"
    test = segs.get(gen.get("test_key", "test"))
    if test and test[1] and pd.Timestamp(test[1]) < calendar(case["calendar"]).first_day:
        return "test end before the calendar: Qlib aligns it to the LAST day, qroll raises CalendarError"
    return None


def open_test_handler_end(case: dict[str, Any], expected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Qlib HEAD's handler_mod (and qroll's) sets the handler end to None for an open-ended test;
    0.9.7's keeps the old end, so its data would stop before the window does."""
    gen = case["inputs"]["gen_kwargs"]
    out = copy.deepcopy(expected)
    if gen["ds_extra_mod_func"] != "handler_mod":
        return out
    for task in out:
        kind = task["handler_end_time_type"]
        if kind in ("str", "Timestamp", "absent") and task["segments"][gen["test_key"]][1] is None:
            task["handler_end_time"], task["handler_end_time_type"] = None, "NoneType"
    return out


def run_rolling(case: dict[str, Any]) -> list[dict[str, Any]]:
    gen = dict(case["inputs"]["gen_kwargs"])
    gen["ds_extra_mod_func"] = handler_mod if gen["ds_extra_mod_func"] == "handler_mod" else None
    task = template(case)
    before = copy.deepcopy(task)
    tasks = RollingGen(**gen, calendar=calendar(case["calendar"])).generate(task)
    assert task == before, "the template was modified"
    return [summary(t) for t in tasks]


@pytest.mark.parametrize("case", cases("rolling_gen"), ids=lambda c: c["id"])
def test_rolling_gen_equals_qlib(case):
    reason = deliberate_difference(case)
    if reason:
        with pytest.raises(QrollError):
            run_rolling(case)
        return
    test_key = case["inputs"]["gen_kwargs"]["test_key"]
    if case["outcome"] == "ok":
        assert run_rolling(case) == open_test_handler_end(case, case["tasks"])
        return
    error = case["error"]["type"]
    if error == "TypeError" and case["tasks_before_error"]:
        # Qlib crashes when the next window starts one day past the calendar: qroll stops there.
        assert run_rolling(case) == open_test_handler_end(case, case["tasks_before_error"])
    else:
        # Qlib crashed before any window (a None it cannot compare, a truncation onto the first
        # calendar day): qroll either refuses with a QrollError or rolls with its rules intact.
        try:
            tasks = run_rolling(case)
        except QrollError:
            return
        trunc = case["inputs"]["gen_kwargs"]["trunc_days"]
        first_test = tasks[0]["segments"][test_key][0]
        assert tasks and all(t["segments"]["train"][0] >= "2005-01-04" for t in tasks if "train" in t["segments"])
        if trunc:
            ends = [e for k, (_, e) in tasks[0]["segments"].items() if k != test_key]
            assert all(e is not None and e < first_test for e in ends)


class LabelHorizonGen(MultiHorizonGenBase):
    def set_horizon(self, task, hr):
        fmt = oracle()["horizon_label_format"]
        task["dataset"]["kwargs"]["handler"]["kwargs"]["label"] = [fmt.format(hr=hr, hr_plus_1=hr + 1)]


@pytest.mark.parametrize("case", cases("multi_horizon"), ids=lambda c: c["id"])
def test_multi_horizon_equals_qlib(case):
    inputs = case["inputs"]
    gen = LabelHorizonGen(horizon=inputs["horizon"], label_leak_n=inputs["label_leak_n"],
                          calendar=calendar(case["calendar"]))
    if case["outcome"] == "error":
        # AssertionError in Qlib: a segment truncated onto the calendar's first day, which qroll keeps.
        assert len(gen.generate(template(case))) == len(inputs["horizon"])
        return
    got = gen.generate(template(case))
    assert [{k: [iso(s), iso(e)] for k, (s, e) in t["dataset"]["kwargs"]["segments"].items()} for t in got] == \
        [t["segments"] for t in case["tasks"]]
    assert [t["dataset"]["kwargs"]["handler"]["kwargs"]["label"] for t in got] == [t["label"] for t in case["tasks"]]


def to_args(case: dict[str, Any]) -> list[Any]:
    tuple_idx = set(case["inputs"]["tuple_args"])
    args = []
    for n, arg in enumerate(case["inputs"]["args"]):
        if isinstance(arg, list) and n in tuple_idx:
            arg = tuple(arg)
        elif isinstance(arg, dict):
            arg = {k: tuple(v) if isinstance(v, list) else v for k, v in arg.items()}
        args.append(arg)
    return args


def encode(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return iso(value)
    if isinstance(value, (tuple, list)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


def trading_days(case: dict[str, Any]) -> pd.DatetimeIndex:
    """The days the case's TimeAdjuster sees (future ones where ``future=True``), from the fixture alone."""
    cals = oracle()["calendars"][case["calendar"]]
    days = pd.bdate_range(cals["day_txt"]["start"], cals["day_txt"]["end"])
    fut = cals["day_future_txt"]
    if fut and case["inputs"]["ta_kwargs"].get("future", False):
        days = days.append(pd.bdate_range(fut["start"], fut["end"]))
    return days


def segment_refusal(segment: Any, first: pd.Timestamp) -> str | None:
    """Why qroll's align_seg refuses a segment, or a dict of them, nested or not (see :func:`refusal`)."""
    if isinstance(segment, dict):
        return next(filter(None, (segment_refusal(v, first) for v in segment.values())), None)
    if len(segment) != 2:
        return "not a pair"
    if segment[1] is not None and pd.Timestamp(segment[1]) < first:
        return "an end before the calendar"
    return None


def refusal(case: dict[str, Any]) -> str | None:
    """Why qroll refuses (CalendarError) an input Qlib answers, or None where it must answer as Qlib.

    qroll refuses exactly Qlib's silently wrong answers: a negative trading-day index, which Qlib
    counts from the calendar's END, an end aligned before the calendar (Qlib gives the last day),
    and a "segment" that is not a pair (Qlib drops the rest).
    """
    inputs = case["inputs"]
    method, args = inputs["method"], inputs["args"]
    days = trading_days(case)
    if method == "get" and args[0] is not None and args[0] < 0:
        return "a negative index"
    tp_type = args[1] if len(args) > 1 else inputs["kwargs"].get("tp_type", "start")  # Qlib's default
    if method == "align_time" and tp_type == "end" and pd.Timestamp(args[0]) < days[0]:
        return "an end before the calendar"
    if method == "align_seg":
        return segment_refusal(args[0], days[0])
    if method == "shift":
        (start, end), step = args[0], args[1]
        moved = [end] if inputs["kwargs"].get("rtype") == "expanding" else [start, end]
        if any(d is not None and days.searchsorted(pd.Timestamp(d)) + step < 0 for d in moved):
            return "a shift to a negative index"
    return None


def answer_where_qlib_crashes(case: dict[str, Any]) -> list[Any] | None:
    """qroll's answer where Qlib 0.9.7 crashes on an input qroll accepts, or None where qroll must
    refuse with a QrollError. Each answer comes from Qlib itself, not from qroll:

    - a segment given as a list (Qlib takes only a tuple): Qlib's answer for the same tuple;
    - ``truncate`` touching the calendar's first day (Qlib asserts index > 0) or with an open end
      (Qlib compares None): Qlib's rule ``min(align_idx(point), align_idx(test_start) - days)``
      on the fixture's calendar, an open start staying open and an open end truncated.
    """
    inputs = case["inputs"]
    method, args, error = inputs["method"], inputs["args"], case["error"]["type"]
    if error == "NotImplementedError" and method in ("shift", "truncate") and 0 not in inputs["tuple_args"]:
        twin = case["id"].replace("(list:", "(")
        [same] = [c for c in cases("time_adjuster") if c["id"] == twin]
        assert same["outcome"] == "ok"
        return list(same["result"])
    if method == "truncate" and error in ("AssertionError", "TypeError") and args[1] is not None:
        days = trading_days(case)
        limit = int(days.searchsorted(pd.Timestamp(args[1]))) - args[2]
        start, end = args[0]
        return [None if start is None else iso(days[min(int(days.searchsorted(pd.Timestamp(start))), limit)]),
                iso(days[limit if end is None else min(int(days.searchsorted(pd.Timestamp(end))), limit)])]
    return None


@pytest.mark.parametrize("case", cases("time_adjuster"), ids=lambda c: c["id"])
def test_time_adjuster_equals_qlib(case):
    inputs = case["inputs"]
    ta = TimeAdjuster(calendar(case["calendar"]), **inputs["ta_kwargs"])
    if inputs["method"] == "len_cals":
        assert len(ta.cals) == case["result"]
        return
    call = lambda: getattr(ta, inputs["method"])(*to_args(case), **inputs["kwargs"])  # noqa: E731
    if case["outcome"] == "error":
        want = answer_where_qlib_crashes(case)
        if want is None:
            with pytest.raises(QrollError):
                call()
        else:
            assert encode(call()) == want, case["id"]
        return
    if refusal(case):
        with pytest.raises(CalendarError):
            call()
        return
    assert encode(call()) == case["result"], case["id"]
