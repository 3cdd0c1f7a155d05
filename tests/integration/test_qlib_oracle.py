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


@pytest.mark.parametrize("case", cases("time_adjuster"), ids=lambda c: c["id"])
def test_time_adjuster_equals_qlib(case):
    inputs = case["inputs"]
    ta = TimeAdjuster(calendar(case["calendar"]), **inputs["ta_kwargs"])
    if inputs["method"] == "len_cals":
        assert len(ta.cals) == case["result"]
        return
    call = lambda: getattr(ta, inputs["method"])(*to_args(case), **inputs["kwargs"])  # noqa: E731
    if case["outcome"] == "error":
        qroll_result = None
        try:
            qroll_result = call()
        except QrollError:
            return
        # Where Qlib crashes on a point qroll accepts (a list segment, a truncation onto day 0),
        # there is nothing to compare: only check that qroll answered.
        assert qroll_result is not None or inputs["method"] in ("get", "align_time", "align_idx")
        return
    try:
        got = call()
    except QrollError as exc:
        # The only answers qroll refuses are Qlib's silently wrong ones: an end aligned before the
        # calendar (Qlib gives the last day) and a "segment" that is not a pair (Qlib drops the rest).
        assert "before the first trading day" in str(exc) or "must be a (start, end) pair" in str(exc), case["id"]
        return
    assert encode(got) == case["result"], case["id"]
