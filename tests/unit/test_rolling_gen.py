"""RollingGen, handler_mod, trunc_segments, MultiHorizonGenBase, task_generator.

Expected windows are Qlib's, from shared/reference/qlib_rolling.md §1.5 and §4.2 (cases 6-11),
on the Mon–Fri calendar 2005-01-04..2020-09-25 (future days to 2021-12-31).
"""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from qroll import (
    CalendarError,
    LabelLeakWarning,
    MultiHorizonGenBase,
    RollingGen,
    TaskGenError,
    TimeAdjuster,
    handler_mod,
    task_generator,
    trunc_segments,
)

pytestmark = pytest.mark.filterwarnings("ignore::qroll.LabelLeakWarning")
T = pd.Timestamp


def seg(task, key="test"):
    return task["dataset"]["kwargs"]["segments"][key]


def d(a, b):
    return (None if a is None else T(a), None if b is None else T(b))


def h_end(task):
    return task["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"]


# -- §1.5: the worked results -----------------------------------------------------------------
@pytest.mark.parametrize("future", [False, True])
def test_default_expanding_40(make_task, cal, cal_future, future):
    tasks = RollingGen(calendar=cal_future if future else cal).generate(make_task())
    assert len(tasks) == 24
    first, second, last = tasks[0], tasks[1], tasks[-1]
    assert seg(first, "train") == d("2008-01-01", "2014-12-31")
    assert seg(first, "valid") == d("2015-01-01", "2016-12-30")
    assert seg(first) == d("2017-01-02", "2017-02-24")
    assert seg(second, "train") == d("2008-01-01", "2015-02-25")
    assert seg(second, "valid") == d("2015-02-26", "2017-02-24")
    assert seg(second) == d("2017-02-27", "2017-04-21")
    assert seg(last, "train") == d("2008-01-01", "2018-07-11")
    assert seg(last, "valid") == d("2018-07-12", "2020-07-10")
    assert seg(last) == d("2020-07-13", "2020-09-04")
    # Only the last window extends the handler; the others keep the template's string.
    assert h_end(last) == T("2020-09-04")
    assert [h_end(t) for t in tasks[:-1]] == ["2020-08-01"] * 23


def test_sliding_40(make_task, cal):
    tasks = RollingGen(40, RollingGen.ROLL_SD, calendar=cal).generate(make_task())
    assert len(tasks) == 24
    assert seg(tasks[1], "train") == d("2008-02-26", "2015-02-25")
    assert seg(tasks[-1], "train") == d("2011-07-12", "2018-07-11")


def test_step_20_trunc_21(make_task, cal):
    tasks = RollingGen(20, trunc_days=21, calendar=cal).generate(make_task())
    assert len(tasks) == 47
    assert seg(tasks[0], "valid") == d("2015-01-01", "2016-12-02")
    assert seg(tasks[0]) == d("2017-01-02", "2017-01-27")
    assert seg(tasks[1], "valid") == d("2015-01-29", "2016-12-30")
    assert seg(tasks[1]) == d("2017-01-30", "2017-02-24")
    assert seg(tasks[-1], "valid")[1] == T("2020-06-12")
    assert seg(tasks[-1]) == d("2020-07-13", "2020-08-07")


@pytest.mark.parametrize(
    ("future", "last_test", "last_handler_end"),
    [(True, d("2019-02-11", "2021-03-19"), T("2021-03-19")), (False, d("2019-02-11", None), None)],
)
def test_sliding_550_with_and_without_future(make_task, cal, cal_future, future, last_test, last_handler_end):
    task = make_task(handler={"instruments": "csi100"})
    tasks = RollingGen(550, RollingGen.ROLL_SD, calendar=cal_future if future else cal).generate(task)
    assert len(tasks) == 2
    assert seg(tasks[0]) == d("2017-01-02", "2019-02-08")
    assert seg(tasks[1], "train") == d("2010-02-09", "2017-02-08")
    assert seg(tasks[1], "valid") == d("2017-02-09", "2019-02-08")
    assert seg(tasks[1]) == last_test
    assert h_end(tasks[1]) == last_handler_end


# -- §4.2 cases 7-10 --------------------------------------------------------------------------
def test_open_ended_test(make_task, cal):
    tasks = RollingGen(100, calendar=cal).generate(make_task(segments={
        "train": ("2008-01-01", "2018-12-31"), "valid": ("2019-01-01", "2019-12-31"), "test": ("2020-01-01", None)}))
    assert [seg(t) for t in tasks] == [d("2020-01-01", "2020-05-19"), d("2020-05-20", None)]
    assert [h_end(t) for t in tasks] == ["2020-08-01", None]


def test_none_handler_end_is_never_changed(make_task, cal):
    tasks = RollingGen(100, calendar=cal).generate(make_task(handler={"end_time": None}))
    assert all(h_end(t) is None for t in tasks)


def test_exact_multiple_ending_on_the_last_day_stops_cleanly(make_task, cal):
    # 2020-06-15..2020-09-25 is 75 business days = 3 x 25: Qlib raises TypeError on the 4th window.
    task = make_task(segments={"train": ("2008-01-01", "2019-12-31"), "test": ("2020-06-15", "2020-09-25")})
    tasks = RollingGen(25, calendar=cal).generate(task)
    assert [seg(t) for t in tasks] == [d("2020-06-15", "2020-07-17"), d("2020-07-20", "2020-08-21"),
                                       d("2020-08-24", "2020-09-25")]


def test_short_test_with_step_10(make_task, cal):
    task = make_task(segments={"train": ("2008-01-01", "2019-12-31"), "test": ("2020-01-01", "2020-01-31")})
    tasks = RollingGen(10, calendar=cal).generate(task)
    assert [seg(t) for t in tasks] == [d("2020-01-01", "2020-01-14"), d("2020-01-15", "2020-01-28"),
                                       d("2020-01-29", "2020-02-11")]


def test_a_window_starting_on_the_test_end_is_produced(make_task, cal):
    task = make_task(segments={"train": ("2008-01-01", "2019-12-31"), "test": ("2020-01-01", "2020-01-15")})
    tasks = RollingGen(10, calendar=cal).generate(task)
    assert [seg(t)[0] for t in tasks] == [T("2020-01-01"), T("2020-01-15")]


# -- templates, order, copies -----------------------------------------------------------------
def test_template_is_left_untouched_and_outputs_are_independent(make_task, cal):
    task = make_task()
    before = copy.deepcopy(task)
    tasks = RollingGen(calendar=cal, trunc_days=3).generate(task)
    assert task == before
    tasks[0]["dataset"]["kwargs"]["handler"]["kwargs"]["instruments"] = "changed"
    assert tasks[1]["dataset"]["kwargs"]["handler"]["kwargs"]["instruments"] == "csi300"


def test_task_generator_is_template_major(make_task, cal):
    templates = [make_task(model="XGBModel"), make_task(model="LGBModel")]
    tasks = task_generator(templates, RollingGen(550, RollingGen.ROLL_SD, calendar=cal))
    assert [t["model"]["class"] for t in tasks] == ["XGBModel", "XGBModel", "LGBModel", "LGBModel"]
    assert seg(tasks[0]) == seg(tasks[2]) and seg(tasks[1]) == seg(tasks[3])
    assert len(task_generator(make_task(), [RollingGen(550, calendar=cal)])) == 2


def test_custom_copy_and_mod_funcs_are_used(make_task, cal):
    copies, mods = [], []

    def copier(t):
        copies.append(1)
        return copy.deepcopy(t)

    tasks = RollingGen(550, calendar=cal, task_copy_func=copier,
                       ds_extra_mod_func=lambda t, rg: mods.append(rg)).generate(make_task())
    assert len(copies) == len(tasks) and len(mods) == len(tasks)
    assert h_end(tasks[-1]) == "2020-08-01"  # handler_mod was replaced


def test_handler_mod_leaves_string_handlers_alone(make_task, cal):
    task = make_task()
    task["dataset"]["kwargs"]["handler"] = "file://h.pkl"
    tasks = RollingGen(550, calendar=cal).generate(task)
    assert [t["dataset"]["kwargs"]["handler"] for t in tasks] == ["file://h.pkl"] * 2


def test_handler_mod_extends_only(make_task, cal):
    rg = RollingGen(calendar=cal)
    task = make_task(handler={"end_time": "2020-12-31"})
    task["dataset"]["kwargs"]["segments"]["test"] = d("2017-01-02", "2020-09-04")
    handler_mod(task, rg)
    assert h_end(task) == "2020-12-31"
    task["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] = "2020-01-01"
    handler_mod(task, rg)
    assert h_end(task) == T("2020-09-04")


def test_extra_segment_keys_slide(make_task, cal):
    task = make_task()
    task["dataset"]["kwargs"]["segments"]["extra"] = ("2016-01-04", "2016-01-08")
    tasks = RollingGen(40, calendar=cal).generate(task)
    assert seg(tasks[1], "extra") == d("2016-02-29", "2016-03-04")


def test_trunc_segments_in_place(cal):
    ta = TimeAdjuster(cal)
    segments = {"train": d("2008-01-01", "2014-12-31"), "valid": d("2015-01-05", "2016-12-30"),
                "test": d("2017-01-02", "2017-02-24")}
    assert trunc_segments(ta, segments, 3) is None
    assert segments["valid"] == d("2015-01-05", "2016-12-28")
    assert segments["train"] == d("2008-01-01", "2014-12-31")


# -- MultiHorizonGenBase (§1.6, case 11) ------------------------------------------------------
class LabelHorizonGen(MultiHorizonGenBase):
    def set_horizon(self, task, hr):
        task["dataset"]["kwargs"]["handler"]["kwargs"]["label"] = [f"Ref($close, -{hr + 1})/Ref($close, -1) - 1"]


def test_multi_horizon(make_task, cal):
    task = make_task()
    tasks = LabelHorizonGen(horizon=[1, 5], calendar=cal).generate(task)
    assert [seg(t, "valid")[1] for t in tasks] == [T("2016-12-28"), T("2016-12-22")]
    assert tasks[1]["dataset"]["kwargs"]["handler"]["kwargs"]["label"] == ["Ref($close, -6)/Ref($close, -1) - 1"]
    assert "label" not in task["dataset"]["kwargs"]["handler"]["kwargs"]
    assert "horizon=[1, 5]" in repr(LabelHorizonGen(horizon=[1, 5]))


# -- beyond Qlib: trunc_days="auto" -----------------------------------------------------------
def test_auto_trunc_days_from_the_default_alpha158_label(make_task, cal):
    tasks = RollingGen(40, trunc_days="auto", calendar=cal).generate(make_task())
    # Alpha158's label looks 2 days ahead => gap 3, the same as trunc_days=3.
    assert [seg(t, "valid") for t in tasks] == [seg(t, "valid") for t in
                                                RollingGen(40, trunc_days=3, calendar=cal).generate(make_task())]
    assert seg(tasks[0], "valid")[1] == T("2016-12-28")


def test_auto_trunc_days_from_an_explicit_label(make_task, cal):
    task = make_task(handler={"label": (["Ref($close, -21)/Ref($close, -1) - 1"], ["LABEL0"])})
    tasks = RollingGen(20, trunc_days="auto", calendar=cal).generate(task)
    assert seg(tasks[0], "valid") == seg(RollingGen(20, trunc_days=22, calendar=cal).generate(task)[0], "valid")


def test_auto_trunc_days_without_a_label_is_an_error(make_task, cal):
    task = make_task()
    task["dataset"]["kwargs"]["handler"]["class"] = "MyHandler"
    with pytest.raises(TaskGenError, match="trunc_days='auto' found no label"):
        RollingGen(trunc_days="auto", calendar=cal).generate(task)


@pytest.mark.filterwarnings("error::qroll.LabelLeakWarning")
def test_no_gap_warns_about_label_leakage(make_task, cal):
    with pytest.warns(LabelLeakWarning, match="segment 'valid' ends 0 trading day.*looks 2 day.*trunc_days='auto'"):
        RollingGen(calendar=cal).generate(make_task())
    RollingGen(calendar=cal, trunc_days=3).generate(make_task())  # no warning: would raise here


# -- beyond Qlib: calendar-period steps -------------------------------------------------------
def test_monthly_step(make_task, cal):
    task = make_task(segments={"train": ("2008-01-01", "2020-01-14"), "test": ("2020-01-15", "2020-04-30")})
    tasks = RollingGen("M", trunc_days=3, calendar=cal).generate(task)
    assert [seg(t) for t in tasks] == [d("2020-01-15", "2020-01-31"), d("2020-02-03", "2020-02-28"),
                                       d("2020-03-02", "2020-03-31"), d("2020-04-01", "2020-04-30")]
    ta = TimeAdjuster(cal)
    # Every window keeps the same 3-day gap: train moves by the trading days of the window before.
    assert seg(tasks[0], "train")[1] == T("2020-01-10")
    assert [ta.cal_interval(seg(t)[0], seg(t, "train")[1]) for t in tasks] == [3, 3, 3, 3]
    assert all(seg(t, "train")[0] == T("2008-01-01") for t in tasks)


def test_quarterly_step_and_an_incomplete_last_period(make_task, cal, cal_future):
    task = make_task(segments={"train": ("2008-01-01", "2018-12-31"), "test": ("2019-01-01", "2020-09-25")})
    tasks = RollingGen("Q", calendar=cal).generate(task)
    assert len(tasks) == 7
    assert seg(tasks[0]) == d("2019-01-01", "2019-03-29")
    # The calendar stops inside Q3 2020, so the last quarter is open-ended...
    assert seg(tasks[-1]) == d("2020-07-01", None) and h_end(tasks[-1]) is None
    # ...unless future days tell where it ends.
    assert seg(RollingGen("q", calendar=cal_future).generate(task)[-1]) == d("2020-07-01", "2020-09-30")


def test_weekly_step(make_task, cal):
    task = make_task(segments={"train": ("2008-01-01", "2019-12-31"), "test": ("2020-01-01", "2020-01-31")})
    tasks = RollingGen("W", calendar=cal).generate(task)
    assert [seg(t)[0] for t in tasks] == [T(x) for x in ["2020-01-01", "2020-01-06", "2020-01-13", "2020-01-20", "2020-01-27"]]
    assert seg(tasks[0])[1] == T("2020-01-03")


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("step", [0, -5, 1.5, True, "D", None])
def test_bad_step(make_task, cal, step):
    with pytest.raises(TaskGenError, match=f"step={step!r}"):
        RollingGen(step=step, calendar=cal).generate(make_task())


def test_bad_rtype_and_trunc_days(make_task, cal):
    with pytest.raises(TaskGenError, match="rtype='rolling' is unknown.*ROLL_EX"):
        RollingGen(rtype="rolling", calendar=cal).generate(make_task())
    with pytest.raises(TaskGenError, match="trunc_days=-1"):
        RollingGen(trunc_days=-1, calendar=cal).generate(make_task())


def test_missing_test_key_names_the_segments(make_task, cal):
    with pytest.raises(TaskGenError, match="test_key 'oos' is not a segment of the task .segments: train, valid, test"):
        RollingGen(test_key="oos", calendar=cal).generate(make_task())
    task = make_task()
    del task["dataset"]["kwargs"]["segments"]
    with pytest.raises(TaskGenError, match="no dataset.kwargs.segments"):
        RollingGen(calendar=cal).generate(task)


def test_segment_starting_after_it_ends(make_task, cal):
    task = make_task(segments={"train": ("2014-12-31", "2008-01-01"), "test": ("2017-01-01", "2020-08-01")})
    with pytest.raises(TaskGenError, match="segment 'train' starts after it ends: 2014-12-31 > 2008-01-01"):
        RollingGen(calendar=cal).generate(task)


def test_dates_outside_the_calendar(make_task, cal):
    task = make_task(segments={"train": ("2008-01-01", "2014-12-31"), "test": ("2030-01-01", "2030-08-01")})
    with pytest.raises(CalendarError, match="start 2030-01-01 is after the last trading day 2020-09-25"):
        RollingGen(calendar=cal).generate(task)
    with pytest.raises(CalendarError, match="no trading calendar given"):
        RollingGen().generate(make_task())


def test_repr_shows_every_parameter():
    text = repr(RollingGen(20, "sliding", trunc_days="auto", calendar="XSHG"))
    for part in ["step=20", "rtype='sliding'", "ds_extra_mod_func=handler_mod", "test_key='test'",
                 "train_key='train'", "trunc_days='auto'", "task_copy_func=deepcopy", "calendar='XSHG'"]:
        assert part in text
