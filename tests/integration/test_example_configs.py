"""The bundled example configs: every class resolves and the windows are what their comments say."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from qroll.experiment import RollingExperiment
from qroll.run_config import RunConfig
from tests.conftest import ROOT, shared_dataset

EXAMPLES = ROOT / "src" / "qroll" / "examples"


def cfg_with_tracking(cfg: RunConfig, tmp_path: Path) -> RunConfig:
    from dataclasses import replace

    return replace(cfg, tracking=f"sqlite:///{tmp_path}/mlflow.db")


def test_demo_config(tmp_path):
    tasks = RollingExperiment(cfg_with_tracking(RunConfig.from_file(EXAMPLES / "synthetic_rolling.yaml"), tmp_path)).check()
    assert len(tasks) == 16
    assert tasks[-1]["dataset"]["kwargs"]["segments"]["test"] == (pd.Timestamp("2020-10-01"), pd.Timestamp("2020-12-31"))


def test_csi300_config(tmp_path, monkeypatch):
    data = shared_dataset("cn_csi300", "calendars/day.txt")
    monkeypatch.chdir(ROOT)
    tasks = RollingExperiment(cfg_with_tracking(RunConfig.from_file(EXAMPLES / "csi300_rolling.yaml"), tmp_path)).check()
    # 2019-2020 has 487 A-share trading days: ceil(487 / 63) = 8 windows for each of 2 models.
    assert len(tasks) == 16
    assert [t["model"]["class"] for t in tasks] == ["LGBModel"] * 8 + ["LinearModel"] * 8
    first = tasks[0]["dataset"]["kwargs"]["segments"]
    assert first["test"][0] == pd.Timestamp("2019-01-02")
    # No leak: Alpha158's label Ref($close, -2)/Ref($close, -1) - 1 reads two trading days ahead,
    # so trunc_days "auto" (horizon + 1, Qlib's rule) ends train and valid exactly 3 trading days
    # before the test starts, counted on the data's own calendar file.
    days = pd.DatetimeIndex((data / "calendars" / "day.txt").read_text().split())
    test_at = days.get_loc(first["test"][0])
    assert days.get_loc(first["valid"][1]) == test_at - 3
    assert first["train"][1] <= first["valid"][0] and days.get_loc(first["train"][1]) < test_at - 3
    for task in tasks:  # every window, both models: the gap never closes as the windows roll
        segs = task["dataset"]["kwargs"]["segments"]
        assert days.get_loc(segs["valid"][1]) == days.get_loc(segs["test"][0]) - 3
    # The merged signals are backtested against the index, with limits on the percent $change.
    backtest = RunConfig.from_file(EXAMPLES / "csi300_rolling.yaml").backtest
    assert backtest is not None and backtest["backtest"]["benchmark"] == "SH000300"
    assert backtest["backtest"]["exchange_kwargs"]["limit_threshold"] == ["$change >= 9.5", "$change <= -9.5"]


def test_sp500_config(tmp_path, monkeypatch):
    shared_dataset("sp500", "prices.parquet")
    monkeypatch.chdir(ROOT)
    tasks = RollingExperiment(cfg_with_tracking(RunConfig.from_file(EXAMPLES / "sp500_rolling.yaml"), tmp_path)).check()
    assert len(tasks) == 27  # one window per month, 2019-01 .. 2021-03
    assert tasks[1]["dataset"]["kwargs"]["segments"]["test"][0] == pd.Timestamp("2019-02-01")
