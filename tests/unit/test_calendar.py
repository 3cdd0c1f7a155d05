"""TradingCalendar and TimeAdjuster: Qlib's semantics (reference §1.1) and qroll's fixes."""

from __future__ import annotations

import pandas as pd
import pytest

from qroll import CalendarError, OutOfCalendarError, TaskGenError, TimeAdjuster, TradingCalendar
from qroll.calendar import as_time_adjuster

T = pd.Timestamp


# -- TradingCalendar --------------------------------------------------------------------------
def test_calendar_sorts_dedups_and_keeps_only_future_days_after_the_data():
    cal = TradingCalendar(["2020-01-06", "2020-01-02", "2020-01-02"], future=["2020-01-03", "2020-01-07"])
    assert list(cal.days) == [T("2020-01-02"), T("2020-01-06")]
    assert list(cal.future) == [T("2020-01-07")]
    assert cal.last_day == T("2020-01-06")
    assert list(cal.all_days(future=False)) == list(cal.days)


@pytest.mark.parametrize(
    ("days", "match"),
    [([], "no trading day"), (["2020-01-02", "not a date"], "not a date"), ("2020-01-02", "list of dates")],
)
def test_calendar_rejects_bad_days(days, match):
    with pytest.raises(CalendarError, match=match):
        TradingCalendar(days)


def test_from_day_txt_reads_qlib_layout(tmp_path):
    (tmp_path / "calendars").mkdir()
    (tmp_path / "calendars" / "day.txt").write_text("2020-01-02\n2020-01-03\n2020-01-06\n")
    (tmp_path / "calendars" / "day_future.txt").write_text("2020-01-02\n2020-01-03\n2020-01-06\n2020-01-07\n")
    cal = TradingCalendar.from_qlib_dir(tmp_path)
    assert len(cal) == 3 and list(cal.future) == [T("2020-01-07")]
    assert len(TradingCalendar.from_qlib_dir(tmp_path, future=False).future) == 0


def test_from_day_txt_names_the_bad_line(tmp_path):
    path = tmp_path / "day.txt"
    path.write_text("2020-01-02\n2020-13-45\n")
    with pytest.raises(CalendarError, match=r"day.txt:2: '2020-13-45' is not a date"):
        TradingCalendar.from_day_txt(path)
    with pytest.raises(CalendarError, match="cannot read calendar file .*missing.txt"):
        TradingCalendar.from_day_txt(tmp_path / "missing.txt")


def test_from_exchange_splits_data_and_future_days():
    cal = TradingCalendar.from_exchange("XNYS", start="2020-12-01", end="2020-12-31", future_until="2021-01-08")
    assert T("2020-12-25") not in cal.days  # Christmas
    assert cal.last_day == T("2020-12-31")
    assert list(cal.future) == list(pd.bdate_range("2021-01-04", "2021-01-08"))


def test_from_exchange_shanghai_skips_spring_festival():
    cal = TradingCalendar.from_exchange("XSHG", start="2020-01-20", end="2020-02-10")
    assert T("2020-01-24") not in cal.days and T("2020-02-03") in cal.days


def test_from_exchange_unknown_name_suggests_close_ones():
    with pytest.raises(CalendarError, match="unknown exchange calendar 'XNYZ'.*XNYS"):
        TradingCalendar.from_exchange("XNYZ")


def test_as_time_adjuster_accepts_every_form(tmp_path, cal):
    day = tmp_path / "day.txt"
    day.write_text("2020-01-02\n2020-01-03\n")
    assert len(as_time_adjuster(day).cals) == 2
    assert as_time_adjuster(cal).calendar is cal
    assert len(as_time_adjuster(["2020-01-02"]).cals) == 1
    with pytest.raises(CalendarError, match="no trading calendar given"):
        as_time_adjuster(None)


# -- TimeAdjuster: Qlib's conformance cases (§4.2, 1-5) ---------------------------------------
def test_align_seg_of_the_default_segments(cal):
    ta = TimeAdjuster(cal)
    segs = ta.align_seg({"train": ("2008-01-01", "2014-12-31"), "valid": ["2015-01-01", "2016-12-31"],
                         "test": ("2017-01-01", "2020-08-01")})
    assert segs == {"train": (T("2008-01-01"), T("2014-12-31")), "valid": (T("2015-01-01"), T("2016-12-30")),
                    "test": (T("2017-01-02"), T("2020-07-31"))}


def test_shift_sliding_and_expanding(cal):
    ta = TimeAdjuster(cal)
    seg = (T("2017-01-02"), T("2017-01-06"))
    assert ta.shift(seg, 5) == (T("2017-01-09"), T("2017-01-13"))
    assert ta.shift(seg, 5, rtype="expanding") == (T("2017-01-02"), T("2017-01-13"))
    assert ta.shift([None, seg[1]], 5) == (None, T("2017-01-13"))


def test_shift_past_the_end(cal_future):
    ta = TimeAdjuster(cal_future)
    seg = (T("2021-12-27"), T("2021-12-31"))
    assert ta.shift(seg, 3) == (T("2021-12-30"), None)
    # Qlib's boundary: a start exactly one past the end is open, strictly past raises.
    assert ta.shift(seg, 5) == (None, None)
    with pytest.raises(OutOfCalendarError, match="starts past the last trading day 2021-12-31"):
        ta.shift(seg, 10)
    with pytest.raises(TaskGenError, match="unknown rtype 'rolling'"):
        ta.shift(seg, 1, rtype="rolling")


def test_truncate_and_cal_interval(cal):
    ta = TimeAdjuster(cal)
    assert ta.truncate((T("2015-01-05"), T("2016-12-30")), T("2017-01-02"), 3) == (T("2015-01-05"), T("2016-12-28"))
    assert ta.truncate(["2015-01-05", "2016-12-30"], "2017-01-02", 3) == (T("2015-01-05"), T("2016-12-28"))
    assert ta.cal_interval("2017-01-09", "2017-01-02") == 5
    assert ta.cal_interval("2017-01-02", "2017-01-09") == -5


def test_truncate_keeps_the_first_calendar_day_which_qlib_rejects(cal):
    ta = TimeAdjuster(cal)
    assert ta.truncate(("2005-01-04", "2005-02-01"), "2005-01-10", 3) == (T("2005-01-04"), T("2005-01-05"))
    with pytest.raises(CalendarError, match="falls before the first trading day 2005-01-04"):
        ta.truncate(("2005-01-04", "2005-02-01"), "2005-01-05", 3)


def test_truncate_open_points(cal):
    ta = TimeAdjuster(cal)
    assert ta.truncate((None, None), "2017-01-02", 3) == (None, T("2016-12-28"))


def test_align_time_fixes_qlib_edge_cases(cal):
    ta = TimeAdjuster(cal)
    assert ta.align_time("2017-01-01") == T("2017-01-02")
    assert ta.align_time("2017-01-01", "end") == T("2016-12-30")
    assert ta.align_time(None) is None
    # Qlib returns the LAST calendar day here.
    with pytest.raises(CalendarError, match="end 1990-01-01 is before the first trading day 2005-01-04"):
        ta.align_time("1990-01-01", "end")
    # Qlib raises IndexError here.
    with pytest.raises(CalendarError, match="start 2030-01-01 is after the last trading day 2020-09-25"):
        ta.align_time("2030-01-01")
    with pytest.raises(CalendarError, match="tp_type must be 'start' or 'end'"):
        ta.align_idx("2017-01-01", "middle")


def test_align_idx_keeps_qlib_out_of_range_indices(cal):
    ta = TimeAdjuster(cal)
    assert ta.align_idx("2030-01-01") == len(cal)
    assert ta.align_idx("1990-01-01", "end") == -1
    assert ta.align_idx(None) is None


def test_get_and_max(cal, cal_future):
    ta = TimeAdjuster(cal)
    assert ta.get(0) == T("2005-01-04") and ta.get(len(cal)) is None and ta.get(None) is None
    assert ta.max() == T("2020-09-25")
    assert TimeAdjuster(cal_future).max() == T("2021-12-31")
    assert TimeAdjuster(cal_future, future=False).max() == T("2020-09-25")
    with pytest.raises(CalendarError, match="index -1 is before the first trading day"):
        ta.get(-1)


def test_cal_interval_with_none_names_both_values(cal):
    with pytest.raises(CalendarError, match="cal_interval needs two dates, got None and '2017-01-02'"):
        TimeAdjuster(cal).cal_interval(None, "2017-01-02")


def test_end_time_cuts_the_days(cal_future):
    ta = TimeAdjuster(cal_future, end_time="2020-12-31")
    assert ta.max() == T("2020-12-31")
    ta.set_end_time()
    assert ta.max() == T("2021-12-31")
    with pytest.raises(CalendarError, match="before the first trading day"):
        ta.set_end_time("2000-01-01")


def test_bad_segment_shape(cal):
    with pytest.raises(CalendarError, match="must be a .start, end. pair"):
        TimeAdjuster(cal).align_seg(("2017-01-01",))
