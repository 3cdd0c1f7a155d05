"""The task's shape has one home (qroll.tasks.shape), and a RollingGen test key other than "test"
travels with each rolled task to everything that reads its test window: the run tags and name,
the ``qroll tasks`` timeline and the training progress lines.

The expected windows are counted on a plain Mon-Fri calendar with pandas, not by qroll."""

from __future__ import annotations

import copy
import io

import pandas as pd
import pytest
from rich.console import Console

from qroll import RollingGen, task_hash
from qroll.console import TrainingProgress
from qroll.errors import ConfigError, TaskGenError
from qroll.record import tags as tags_module
from qroll.record.tags import TAG_TEST_END, TAG_TEST_START, run_name, task_tags
from qroll.tasks import shape
from qroll.tasks.timeline import draw_windows, window_rows
from qroll.train.trainer import TaskOutcome

DAYS = pd.bdate_range("2019-01-01", "2019-12-31")
STEP = 5


def template(**segments):
    """A ridge task over train, a decoy "test" segment and the real test window, "backtest"."""
    return {
        "model": {"class": "LinearModel", "module_path": "qroll.models.linear", "kwargs": {}},
        "dataset": {"class": "DatasetH", "kwargs": {
            "handler": {"class": "DataHandlerLP", "kwargs": {"start_time": "2019-01-01",
                                                             "end_time": "2019-12-31"}},
            "segments": {"train": ("2019-01-01", "2019-03-29"), "test": ("2019-04-01", "2019-04-30"),
                         "backtest": ("2019-06-03", "2019-06-28"), **segments}}},
        "record": [],
    }


def expected_windows(start: str, end: str) -> list[tuple[str, str]]:
    """Consecutive STEP-day windows from the first business day >= start, while they start <= end."""
    days = DAYS[DAYS.searchsorted(pd.Timestamp(start)):]
    out = []
    for i in range(0, len(days), STEP):
        if days[i] > pd.Timestamp(end):
            break
        out.append((f"{days[i]:%Y-%m-%d}", f"{days[min(i + STEP, len(days)) - 1]:%Y-%m-%d}"))
    return out


@pytest.fixture
def rolled():
    gen = RollingGen(step=STEP, test_key="backtest", trunc_days=3, calendar=list(DAYS))
    return gen.generate(template())


def test_a_rolled_task_carries_its_test_key_and_is_tagged_by_that_window(rolled):
    windows = expected_windows("2019-06-03", "2019-06-28")
    assert len(windows) == 4 and len(rolled) == 4
    assert all(t["qroll"] == {"test_key": "backtest"} for t in rolled)
    assert [shape.task_test_key(t) for t in rolled] == ["backtest"] * 4
    for task, (start, end) in zip(rolled, windows, strict=True):
        tags = task_tags(task)
        assert (tags[TAG_TEST_START], tags[TAG_TEST_END]) == (start, end)
        assert run_name(task) == f"LinearModel test {start}..{end}"
        # The decoy "test" segment is a segment like any other: no tag or name shows it.
        decoy = shape.format_segment(task["dataset"]["kwargs"]["segments"]["test"])
        assert decoy not in run_name(task) and decoy != f"{start}..{end}"


def test_an_explicit_test_key_still_wins(rolled):
    span = rolled[0]["dataset"]["kwargs"]["segments"]["test"]
    tags = task_tags(rolled[0], test_key="test")
    assert (tags[TAG_TEST_START], tags[TAG_TEST_END]) == tuple(shape.format_day(p) for p in span)


def test_the_default_key_leaves_the_task_exactly_qlibs():
    task = template()
    del task["dataset"]["kwargs"]["segments"]["backtest"]
    task["dataset"]["kwargs"]["segments"]["test"] = ("2019-06-03", "2019-06-28")
    rolled = RollingGen(step=STEP, trunc_days=3, calendar=list(DAYS)).generate(task)
    assert all(set(t) == set(task) for t in rolled)
    assert shape.META_KEY not in task  # the template is not modified either
    # The same window written by hand, as Qlib rolls it, has the same identity.
    by_hand = copy.deepcopy(task)
    start, end = expected_windows("2019-06-03", "2019-06-28")[0]
    by_hand["dataset"]["kwargs"]["segments"] = {
        "train": (pd.Timestamp("2019-01-01"), pd.Timestamp("2019-03-29")),
        "test": (pd.Timestamp(start), pd.Timestamp(end))}
    assert task_hash(by_hand) == task_hash(rolled[0])
    tags = task_tags(rolled[0])
    assert (tags[TAG_TEST_START], tags[TAG_TEST_END]) == expected_windows("2019-06-03", "2019-06-28")[0]


def test_rolling_again_with_the_default_key_removes_the_marker(rolled):
    again = RollingGen(step=STEP, trunc_days=3, calendar=list(DAYS)).generate(rolled[0])
    assert all(shape.META_KEY not in t for t in again)
    assert shape.task_segment(again[0]) == again[0]["dataset"]["kwargs"]["segments"]["test"]


def test_set_test_key_keeps_the_rest_of_the_block():
    task = {"model": {}, "qroll": {"note": "x"}}
    shape.set_test_key(task, "oos")
    assert task["qroll"] == {"note": "x", "test_key": "oos"}
    shape.set_test_key(task, "test")
    assert task["qroll"] == {"note": "x"}


def test_the_timeline_draws_each_tasks_own_test_key(rolled):
    text = draw_windows(rolled[:1], list(DAYS), width=400)
    row = text.splitlines()[1][2:]
    first = DAYS.get_loc(pd.Timestamp("2019-01-01"))  # the row starts at the train start
    col = {key: [DAYS.get_loc(pd.Timestamp(d)) - first for d in span]
           for key, span in rolled[0]["dataset"]["kwargs"]["segments"].items()}
    assert set(row[col["backtest"][0]:col["backtest"][1] + 1]) == {"x"}
    assert set(row[col["test"][0]:col["test"][1] + 1]) == {"o"}  # the decoy is "another segment"
    assert set(row[col["train"][0]:col["train"][1] + 1]) == {"*"}
    assert window_rows(rolled[:1])[0]["model"] == "LinearModel"


def test_the_progress_line_shows_the_real_test_window(rolled):
    out = io.StringIO()
    start, end = expected_windows("2019-06-03", "2019-06-28")[1]
    with TrainingProgress(Console(file=out, width=200, color_system=None), total=4) as progress:
        progress(TaskOutcome(index=1, total=4, status="trained", task=rolled[1], recorder=None, seconds=1.5))
    line = next(line for line in out.getvalue().splitlines() if "2/4" in line)
    assert "LinearModel" in line and f"test {start}..{end}" in line


def test_a_malformed_marker_is_refused_when_tagging_and_ignored_when_listing(rolled):
    for bad in ({"test_key": 5}, "backtest", {"test_key": ""}):
        task = {**rolled[0], "qroll": bad}
        with pytest.raises(ConfigError, match="qroll"):
            task_tags(task)
        assert shape.task_segment(task) is None
        assert shape.window_text(task, missing="?") == "?"


def test_segments_and_handler_lookups():
    task = template()
    assert list(shape.segments(task)) == ["train", "test", "backtest"]
    with pytest.raises(TaskGenError, match="no dataset.kwargs.segments"):
        shape.segments({"model": {}})
    with pytest.raises(TaskGenError, match="must be a mapping"):
        shape.segments({"dataset": {"kwargs": {"segments": [1, 2]}}})
    kwargs = shape.handler_kwargs(task)
    assert kwargs is task["dataset"]["kwargs"]["handler"]["kwargs"]  # the task's own, editable
    assert shape.handler_kwargs({"dataset": {"kwargs": {"handler": {"class": "H", "kwargs": None}}}}) is None
    assert shape.handler_config({"dataset": None}) is None
    assert shape.segment_param("backtest") == "dataset.kwargs.segments.backtest"


class Ridge:
    pass


@pytest.mark.parametrize("model, name", [
    ({"class": "qlib.contrib.model.gbdt.LGBModel"}, "LGBModel"),
    ({"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt"}, "LGBModel"),
    ({"class": Ridge}, "Ridge"),
    (Ridge, "Ridge"),
    (Ridge(), "Ridge"),
    ({"kwargs": {}}, ""),
])
def test_model_name(model, name):
    assert shape.model_name({"model": model}) == name


def test_days_and_segments_as_text():
    assert shape.format_day(pd.Timestamp("2019-06-03")) == "2019-06-03"
    assert shape.format_day("2019-06-03 15:00") == "2019-06-03T15:00:00"
    assert shape.format_segment((None, "2019-06-28")) == "open..2019-06-28"
    weird = {"dataset": {"kwargs": {"segments": {"test": ["soon", None]}}}}
    assert shape.window_text(weird) == "soon..None"  # shown as written, never an exception


def test_the_old_names_still_import_from_the_tags_module():
    assert tags_module.model_name is shape.model_name
    assert tags_module.task_segment is shape.task_segment
