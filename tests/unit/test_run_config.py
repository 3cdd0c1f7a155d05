"""Run config validation and the calendar it resolves."""

from __future__ import annotations

import pandas as pd
import pytest

from qroll import CalendarError, ConfigError, DataError, QrollError
from qroll.data.source import open_source
from qroll.data.uri import parse_source_uri
from qroll.run_config import RunConfig

TASK = {"model": {"class": "LGBModel"}, "dataset": {"class": "DatasetH", "kwargs": {
    "handler": {"class": "Alpha158", "kwargs": {"end_time": "2020-06-30"}},
    "segments": {"train": ["2015-01-01", "2018-12-31"], "test": ["2019-01-01", "2019-12-31"]}}}}


def test_defaults_and_generation(monkeypatch):
    monkeypatch.delenv("QROLL_DATA", raising=False)
    cfg = RunConfig.from_dict({"tasks": [TASK]})
    assert cfg.data.startswith("synthetic://") and cfg.calendar == "data" and cfg.workers == 1
    assert cfg.rolling == {"step": 40, "rtype": "expanding", "trunc_days": "auto"}
    tasks = cfg.generate_tasks()
    # 2019 has 261 business days => 7 windows of 40; auto gap 3 before the first test.
    assert len(tasks) == 7
    assert tasks[0]["dataset"]["kwargs"]["segments"]["train"][1] == pd.Timestamp("2018-12-27")


def test_the_backtest_defaults_to_qlibs_standard_block_and_null_turns_it_off():
    cfg = RunConfig.from_dict({"tasks": [TASK]})
    assert cfg.backtest is not None
    assert cfg.backtest["strategy"] == {"class": "TopkDropoutStrategy",
                                        "kwargs": {"topk": 50, "n_drop": 5, "signal": "<PRED>"}}
    assert cfg.backtest["backtest"]["exchange_kwargs"] == {"limit_threshold": 0.095, "deal_price": "close",
                                                          "open_cost": 0.0005, "close_cost": 0.0015, "min_cost": 5}
    assert "benchmark" not in cfg.backtest["backtest"]  # the market's equal-weighted mean
    assert RunConfig.from_dict({"tasks": [TASK], "benchmark": "SH000300"}).backtest["backtest"]["benchmark"] == "SH000300"
    assert RunConfig.from_dict({"tasks": [TASK], "backtest": None}).backtest is None


QLIB_PORT_ANA = {"class": "PortAnaRecord", "module_path": "qlib.workflow.record_temp", "kwargs": {"config": {
    "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                 "kwargs": {"signal": "<PRED>", "topk": 30, "n_drop": 3}},
    "backtest": {"start_time": "2019-01-01", "end_time": "2019-12-31", "account": 100000000,
                 "benchmark": "SH000300", "exchange_kwargs": {"deal_price": "open", "open_cost": 0.001}}}}}


def test_a_templates_port_ana_record_becomes_the_merged_signals_backtest():
    task = {**TASK, "record": ["SignalRecord", "SigAnaRecord", QLIB_PORT_ANA]}
    cfg = RunConfig.from_dict({"tasks": [task, task]})
    assert [t["record"] for t in cfg.tasks] == [["SignalRecord", "SigAnaRecord"]] * 2  # off the windows
    assert cfg.backtest is not None
    assert cfg.backtest["strategy"] == QLIB_PORT_ANA["kwargs"]["config"]["strategy"]
    block = cfg.backtest["backtest"]
    assert block["start_time"] == "2019-01-01" and block["benchmark"] == "SH000300"
    assert block["exchange_kwargs"] == {"deal_price": "open", "open_cost": 0.001}
    assert task["record"][2] is QLIB_PORT_ANA  # the caller's template is not modified
    # Qlib's PortAnaRecord default config names SH000300.
    bare = RunConfig.from_dict({"tasks": [{**TASK, "record": ["SignalRecord", "PortAnaRecord"]}]})
    assert bare.backtest is not None and bare.backtest["backtest"]["benchmark"] == "SH000300"


def test_a_port_ana_record_and_a_backtest_key_conflict():
    task = {**TASK, "record": ["SignalRecord", QLIB_PORT_ANA]}
    with pytest.raises(ConfigError, match="both 'backtest' and a PortAnaRecord"):
        RunConfig.from_dict({"tasks": [task], "backtest": None}, origin="run.yaml")
    other = {**TASK, "record": ["SignalRecord", "PortAnaRecord"]}
    with pytest.raises(ConfigError, match="the tasks' PortAnaRecords differ"):
        RunConfig.from_dict({"tasks": [task, other]}, origin="run.yaml")


def test_qroll_data_env_sets_the_default_source(monkeypatch):
    monkeypatch.setenv("QROLL_DATA", "synthetic://?start=2019-01-01&end=2019-12-31")
    cfg = RunConfig.from_dict({"tasks": TASK})
    assert cfg.time_adjuster().max() == pd.Timestamp("2019-12-31")


def test_an_exchange_calendar():
    cfg = RunConfig.from_dict({"tasks": [TASK], "calendar": "XNYS", "rolling": {"step": "M", "trunc_days": 3}})
    tasks = cfg.generate_tasks()
    assert len(tasks) == 12
    assert tasks[0]["dataset"]["kwargs"]["segments"]["test"] == (pd.Timestamp("2019-01-02"), pd.Timestamp("2019-01-31"))


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"tasks": [TASK], "experimnt": "x"}, "unknown key 'experimnt'; did you mean 'experiment'"),
        ({"tasks": []}, "'tasks' must be a non-empty list"),
        ({"tasks": [{"model": {}}]}, r"tasks\[0\] must be a mapping with 'model' and 'dataset'"),
        ({"tasks": [TASK], "rolling": {"stp": 5}}, "unknown rolling key 'stp'"),
        ({"tasks": [TASK], "rolling": [5]}, "'rolling' must be a mapping"),
        ({"tasks": [TASK], "workers": -1}, "workers=-1 must be a whole number >= 0"),
        ({"tasks": [TASK], "workers": 0}, r"workers=0 \(train nothing here, wait for `qroll worker`s\) needs a pool"),
        ({"tasks": [TASK], "backtest": {"stratgy": {}}}, "run.yaml: backtest: unknown key 'stratgy'"),
        ({"tasks": [TASK], "backtest": 5}, "backtest must be Qlib's port_analysis_config"),
        ({"tasks": [TASK], "backtest": {"strategy": "TopkDropoutStrategy"}}, "backtest.strategy must be a class config"),
        ({"tasks": [TASK], "backtest": {"backtest": {"acount": 1}}}, "backtest.backtest: unknown key 'acount'"),
        ({"tasks": [TASK], "benchmark": ["SH000300"]}, "benchmark=.* must be an instrument code"),
    ],
)
def test_bad_run_configs(raw, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig.from_dict(raw, origin="run.yaml")


def test_source_uris(tmp_path):
    assert parse_source_uri("table:///x/prices.csv?date=Date").params == {"date": "Date"}
    with pytest.raises(ConfigError, match="unknown scheme 'mongodb'.*qlib://, table://, synthetic://"):
        parse_source_uri("mongodb://localhost/db")
    with pytest.raises(ConfigError, match="names no path"):
        parse_source_uri("qlib://")
    with pytest.raises(DataError, match="missing"):
        open_source(f"qlib://{tmp_path}/missing")
    csv = tmp_path / "prices.csv"
    csv.write_text("Date,ticker,close\n2020-01-03,A,1\n2020-01-02,A,1\n2020-01-02,B,2\n")
    assert list(open_source(f"table://{csv}?date=Date").calendar.days) == [pd.Timestamp("2020-01-02"), pd.Timestamp("2020-01-03")]
    with pytest.raises(QrollError, match="date"):
        _ = open_source(f"table://{csv}?date=when").calendar


def test_qlib_source_calendar(tmp_path):
    (tmp_path / "calendars").mkdir()
    (tmp_path / "calendars" / "day.txt").write_text("2020-01-02\n2020-01-03\n")
    assert len(open_source(f"qlib://{tmp_path}").calendar) == 2
    (tmp_path / "calendars" / "day.txt").write_text("garbage\n")
    with pytest.raises(CalendarError, match="day.txt:1: 'garbage' is not a date"):
        _ = open_source(f"qlib://{tmp_path}").calendar
