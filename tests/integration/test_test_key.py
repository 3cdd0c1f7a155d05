"""A run config with ``rolling: {test_key: backtest}``: every place that shows or keys on a window's
test segment uses the ``backtest`` segment, not a ``test`` segment the task also holds.

Ridge windows on the synthetic market, trained by ``RollingExperiment`` (TrainerR, and TrainerRM on
a SQLite pool with this process as its worker) into real SQLite MLflow stores; the windows expected
are counted on the data's own trading days, not by qroll's roller."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from rich.console import Console

from qroll import ExpManager, TaskManager
from qroll.console import TrainingProgress
from qroll.data.source import open_source
from qroll.experiment import RollingExperiment
from qroll.pool.admin import task_rows
from qroll.record.tags import TAG_TEST_END, TAG_TEST_START
from qroll.report.data import gather_report_data
from qroll.run_config import RunConfig

# Each MLflow store takes seconds to create.
pytestmark = pytest.mark.slow

DATA = "synthetic://?instruments=8&start=2018-06-01&end=2019-03-29&seed=5"
STEP = 20
BACKTEST = ("2019-01-02", "2019-02-28")
DECOY = ("2018-10-01", "2018-10-31")
TEMPLATE = {
    "model": {"class": "LinearModel", "kwargs": {"estimator": "ridge", "alpha": 1.0}},
    "dataset": {"class": "DatasetH", "kwargs": {
        "handler": {"class": "DataHandlerLP", "kwargs": {
            "instruments": "all", "start_time": "2018-06-01", "end_time": "2019-03-29",
            "data_loader": {"class": "QlibDataLoader", "kwargs": {"config": {
                "feature": (["$close/Ref($close, 5) - 1"], ["RET5"]),
                "label": (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"])}}},
            "learn_processors": ["DropnaLabel"], "infer_processors": [{"class": "Fillna", "kwargs": {}}]}},
        "segments": {"train": ("2018-07-02", "2018-09-28"), "test": DECOY, "backtest": BACKTEST}}},
    # SignalRecord predicts on the segment named "test", as Qlib's does: fit only.
    "record": [],
}


def config(tmp_path, **extra):
    return RunConfig.from_dict({
        "experiment": "oos", "data": DATA, "tracking": f"sqlite:///{tmp_path}/mlflow.db", "backtest": None,
        "rolling": {"step": STEP, "test_key": "backtest", "trunc_days": 3}, "tasks": [TEMPLATE], **extra})


@pytest.fixture(scope="module")
def windows():
    """The backtest windows: STEP trading days each from the first trading day of BACKTEST."""
    days = open_source(DATA).calendar.days
    days = days[days >= BACKTEST[0]]
    starts = [i for i in range(0, len(days), STEP) if days[i] <= pd.Timestamp(BACKTEST[1])]
    return [(f"{days[i]:%Y-%m-%d}", f"{days[min(i + STEP, len(days)) - 1]:%Y-%m-%d}") for i in starts]


def train(cfg):
    exp = RollingExperiment(cfg, ExpManager(cfg.tracking))
    tasks = exp.check()
    out = io.StringIO()
    with TrainingProgress(Console(file=out, width=200, color_system=None), len(tasks)) as progress:
        recs = exp.train(progress=progress, tasks=tasks)
    return exp, tasks, recs, out.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, windows):
    tmp = tmp_path_factory.mktemp("test_key")
    mp = pytest.MonkeyPatch()
    mp.setenv("QROLL_HOME", str(tmp / "home"))
    yield train(config(tmp))
    mp.undo()


def test_windows_are_the_backtest_segments(windows):
    assert len(windows) == 3  # 2019-01-02..2019-02-28 holds 42 trading days: windows start at 0, 20, 40
    assert windows[0][0] == "2019-01-02"


def test_trainer_r_tags_and_names_runs_by_the_backtest_window(trained, windows):
    _, tasks, recs, _ = trained
    assert len(tasks) == len(recs) == len(windows)
    spans = sorted((r.tags[TAG_TEST_START], r.tags[TAG_TEST_END]) for r in recs)
    assert spans == windows
    assert sorted(r.name for r in recs) == [f"LinearModel test {s}..{e}" for s, e in windows]
    assert all(r.params["qroll.test_key"] == "backtest" for r in recs)


def test_progress_lines_show_the_backtest_window(trained, windows):
    _, _, _, printed = trained
    lines = [line for line in printed.splitlines() if "LinearModel" in line]
    assert len(lines) == len(windows)
    for line, (start, end) in zip(lines, windows, strict=True):
        assert f"test {start}..{end}" in line


def test_the_report_reads_the_backtest_window(trained, windows):
    exp, _, _, _ = trained
    data = gather_report_data(exp.experiment)
    assert sorted(w.test for w in data.windows if w.test) == windows
    assert all(w.train is not None and w.train[0] == "2018-07-02" for w in data.windows)


def test_through_a_pool_the_list_and_the_tags_show_the_backtest_window(tmp_path, monkeypatch, windows):
    monkeypatch.setenv("QROLL_HOME", str(tmp_path / "home"))
    pool = f"sqlite:///{tmp_path}/pool.db"
    _, tasks, recs, printed = train(config(tmp_path, pool=pool, workers=1))
    assert sorted((r.tags[TAG_TEST_START], r.tags[TAG_TEST_END]) for r in recs) == windows
    assert sorted(w for w in windows if f"test {w[0]}..{w[1]}" in printed) == windows
    # What `qroll pool list` shows, read back from the pool's JSON definitions.
    with TaskManager("oos", pool) as tm:
        rows = task_rows(tm)
    assert sorted(r.test for r in rows) == [f"{s}..{e}" for s, e in windows]
    assert {r.model for r in rows} == {"LinearModel"}
