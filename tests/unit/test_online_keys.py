"""What names a window and a template (pure functions on task dicts), and the online strategy's
first windows on the calendar cut at the as-of day (no store is touched)."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from qroll import RollingGen, RollingStrategy
from qroll.errors import ConfigTypeError, ConfigValueError
from qroll.online.strategy import template_key
from qroll.online.update import extension_name
from qroll.record.tags import TAG_WINDOW_KEY, task_tags
from qroll.tasks.shape import window_key

MARKET = "synthetic://?instruments=4&start=2017-01-02&end=2018-06-29&seed=0"


def task(test=("2017-09-01", "2017-09-28"), handler_end="2017-12-29", train=("2017-01-02", "2017-06-30")):
    return {"model": {"class": "LinearModel"}, "dataset": {"class": "DatasetH", "kwargs": {
        "handler": {"class": "Alpha158", "kwargs": {"start_time": "2017-01-02", "end_time": handler_end,
                                                     "source": MARKET}},
        "segments": {"train": train, "test": test}}}}


def test_the_test_end_and_the_handler_end_do_not_change_the_window():
    closed = task()
    assert window_key(closed) == window_key(task(test=("2017-09-01", None), handler_end=None))
    assert window_key(closed) == window_key(task(test=("2017-09-01", "2017-10-31"), handler_end="2018-01-31"))
    assert window_key(closed) != window_key(task(test=("2017-09-04", "2017-09-28")))
    assert window_key(closed) != window_key(task(train=("2017-01-02", "2017-06-29")))
    assert closed == task()  # the caller's task is left as it was


def test_a_custom_test_key_is_the_one_opened():
    a, b = task(), task()
    for t, end in ((a, "2017-09-28"), (b, None)):
        t["dataset"]["kwargs"]["segments"]["oos"] = t["dataset"]["kwargs"]["segments"].pop("test")
        t["dataset"]["kwargs"]["segments"]["oos"] = ("2017-09-01", end)
        t["qroll"] = {"test_key": "oos"}
    assert window_key(a) == window_key(b)


def test_runs_are_tagged_with_their_window_key():
    assert task_tags(task())[TAG_WINDOW_KEY] == window_key(task())
    assert TAG_WINDOW_KEY not in task_tags({"model": {"class": "LinearModel"}})


def test_template_keys_and_extension_names():
    assert template_key(task()) == template_key(copy.deepcopy(task()))
    assert template_key(task()) != template_key(task(train=("2017-02-01", "2017-06-30")))
    assert extension_name("pred.pkl") == "pred_online.pkl"


def strategy(**kwargs):
    template = task(test=("2017-09-01", "2017-12-29"))
    return RollingStrategy("keys", template, RollingGen(step=20, rtype=RollingGen.ROLL_SD, trunc_days=3), **kwargs)


def test_first_tasks_roll_on_the_data_up_to_the_as_of_day():
    """Windows whose successor starts within the known days are closed as offline rolling closes
    them; the newest one is open (test end and handler end None) when its test runs past the day."""
    tasks = strategy().first_tasks("2017-12-01")
    tests = [t["dataset"]["kwargs"]["segments"]["test"] for t in tasks]
    assert [(s.date().isoformat(), e if e is None else e.date().isoformat()) for s, e in tests] == [
        ("2017-09-01", "2017-09-28"), ("2017-09-29", "2017-10-26"), ("2017-10-27", "2017-11-23"), ("2017-11-24", None)]
    assert tasks[-1]["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] is None
    assert tasks[0]["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] == "2017-12-29"
    whole = strategy().first_tasks()  # Qlib's first_tasks(): the data's whole calendar
    assert whole[3]["dataset"]["kwargs"]["segments"]["test"][1] == pd.Timestamp("2017-12-21")
    assert window_key(whole[3]) == window_key(tasks[3])


def test_the_calendar_is_read_at_each_call_not_frozen():
    s = strategy()
    assert s.calendar("2017-12-01").last_day == pd.Timestamp("2017-12-01")
    assert s.calendar("2018-01-19").last_day == pd.Timestamp("2018-01-19")
    assert s.rolling_gen_at("2017-12-01").ta.max() == pd.Timestamp("2017-12-01")
    assert s.rg.calendar is None  # the strategy's own RollingGen is left as given


def test_a_qlib_config_names_the_strategy():
    from qroll.config import init_instance_by_config

    built = init_instance_by_config({
        "class": "RollingStrategy", "module_path": "qlib.workflow.online.strategy",
        "kwargs": {"name_id": "cfg", "task_template": task(test=("2017-09-01", "2017-12-29")),
                   "rolling_gen": {"class": "RollingGen", "module_path": "qlib.workflow.task.gen",
                                   "kwargs": {"step": 20, "rtype": "sliding", "trunc_days": 3}}}})
    assert isinstance(built, RollingStrategy) and built.rg.step == 20
    assert len(built.first_tasks("2017-12-01")) == 4


def test_strategy_arguments_are_checked():
    with pytest.raises(ConfigValueError, match="before the first window"):
        strategy().first_tasks("2017-08-31")
    with pytest.raises(ConfigTypeError, match="must be a RollingGen"):
        RollingStrategy("keys", task(), object())
    with pytest.raises(ConfigTypeError, match="task dict"):
        RollingStrategy("keys", ["not a task"], RollingGen(step=20))
    with pytest.raises(ConfigValueError, match="name_id"):
        RollingStrategy("", task(), RollingGen(step=20))
