"""`qroll run`, `qroll collect` and their bad inputs, in subprocesses against real MLflow stores."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from qroll.record import ExpManager

pytestmark = pytest.mark.slow

DATA = "synthetic://?instruments=30&start=2016-01-01&end=2019-12-31&seed=3"


def config(tmp_path: Path, **override) -> Path:
    segments = {"train": ["2016-04-01", "2018-06-30"], "valid": ["2018-07-01", "2018-12-31"],
                "test": ["2019-01-01", "2019-06-30"]}
    handler = {"class": "Alpha158", "kwargs": {"instruments": "all", "start_time": "2016-01-01",
                                                "end_time": "2019-12-31"}}
    task = {"model": {"class": "LGBModel", "kwargs": {"num_leaves": 8, "num_threads": 2, "num_boost_round": 30,
                                                      "early_stopping_rounds": 5}},
            "dataset": {"class": "DatasetH", "kwargs": {"handler": handler, "segments": segments}},
            "record": ["SignalRecord", "SigAnaRecord"]}
    raw = {"experiment": "cli_run", "data": DATA, "tracking": f"sqlite:///{tmp_path}/mlflow.db",
           "rolling": {"step": "Q", "trunc_days": "auto"}, "tasks": [task]}
    for key, value in override.items():
        if key == "task":
            value(task)
        else:
            raw[key] = value
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def qroll_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qroll", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=600)


def runs(tmp_path: Path) -> int:
    manager = ExpManager(f"sqlite:///{tmp_path}/mlflow.db")
    names = [e.name for e in manager.list_experiments()]
    return len(manager.get_exp("cli_run").list_recorders()) if "cli_run" in names else 0


def test_run_collect_and_rerun(tmp_path):
    path = config(tmp_path)
    res = qroll_cli("run", str(path), home=tmp_path / "home")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count(" trained ") == 2  # two quarters
    assert "merged signal" in res.stdout and "LGBModel" in res.stdout
    assert "INFO" not in res.stderr  # MLflow's chatter stays quiet
    assert len(list((tmp_path / "home" / "cache" / "features").glob("*.json"))) == 1  # --home's cache
    # The merged signal's portfolio columns, against the market's equal-weighted mean, and the report.
    assert "excess w/ cost" in res.stdout and "max DD w/ cost" in res.stdout
    assert "equal-weighted mean of market all" in res.stdout and "LGBModel: merged 2 window(s)" in res.stdout
    index = tmp_path / "home" / "reports" / "cli_run" / "index.html"
    assert f"report: {index}" in res.stdout.replace("\n", "") and index.is_file()
    assert runs(tmp_path) == 3  # two windows and the merged run
    res = qroll_cli("collect", "cli_run", "--tracking", f"sqlite:///{tmp_path}/mlflow.db", home=tmp_path / "home")
    assert res.returncode == 0 and "2019-01-01..2019-03-29" in res.stdout and "2019-04-01..2019-06-28" in res.stdout
    assert "excess w/ cost" in res.stdout and "merged 2 window(s)" not in res.stdout  # read back, not recomputed
    res = qroll_cli("report", "cli_run", "--tracking", f"sqlite:///{tmp_path}/mlflow.db", "--out",
                    str(tmp_path / "rep"), home=tmp_path / "home")
    assert res.returncode == 0 and (tmp_path / "rep" / "index.html").is_file(), res.stderr
    assert len(list((tmp_path / "rep").glob("*.png"))) == 8
    res = qroll_cli("run", str(path), home=tmp_path / "home")
    assert res.returncode == 0 and res.stdout.count("already done") == 2 and " trained " not in res.stdout
    assert runs(tmp_path) == 3
    res = qroll_cli("run", str(path), "--reset", home=tmp_path / "home")
    assert res.returncode == 0 and res.stdout.count(" trained ") == 2 and runs(tmp_path) == 3


def bad_model(task):
    task["model"] = {"class": "NoSuchModel", "module_path": "qroll.models"}


def no_segments(task):
    del task["dataset"]["kwargs"]["segments"]


def record_without_model(task):
    task["record"] = [{"class": "SignalRecord", "kwargs": {"model": None}}]


def port_ana_with_a_bad_strategy(task):
    task["record"].append({"class": "PortAnaRecord", "module_path": "qlib.workflow.record_temp", "kwargs": {
        "config": {"strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                                "kwargs": {"signal": "<PRED>", "topk": 5, "n_dorp": 1}},
                   "backtest": {"start_time": None, "end_time": None}}}})


@pytest.mark.parametrize(("mutate", "message"), [
    (bad_model, "NoSuchModel"),
    (port_ana_with_a_bad_strategy, "n_dorp"),
    (no_segments, "no dataset.kwargs.segments"),
    (record_without_model, "SignalRecord needs a model"),
])
def test_bad_tasks_exit_2_before_any_run_is_written(tmp_path, mutate, message):
    res = qroll_cli("run", str(config(tmp_path, task=mutate)), home=tmp_path / "home")
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("qroll: error: ") and res.stderr.count("\n") == 1 and message in res.stderr
    assert runs(tmp_path) == 0


@pytest.mark.parametrize(("backtest", "message"), [
    ({"strategy": {"class": "TopDropStrategy"}}, "TopDropStrategy"),
    ({"backtest": {"benchmark": "SH999999"}}, "'SH999999' is not an instrument"),
    ({"backtest": {"start_time": "2031-01-02"}}, "start_time 2031-01-02 is outside the data's calendar"),
    ({"backtest": {"end_time": "2018-03-01"}}, "does not overlap the test windows"),
    ({"executor": {"class": "NestedExecutor"}}, "NestedExecutor"),
])
def test_a_backtest_that_could_not_run_exits_2_before_training(tmp_path, backtest, message):
    res = qroll_cli("run", str(config(tmp_path, backtest=backtest)), home=tmp_path / "home")
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("qroll: error: ") and res.stderr.count("\n") == 1 and message in res.stderr
    assert runs(tmp_path) == 0


def test_a_deal_price_field_the_data_lacks_exits_2(tmp_path):
    data = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cn_csi300"
    if not data.is_dir():
        pytest.skip(f"{data} is absent (the shared market data); it has no $vwap to be missing")
    backtest = {"backtest": {"exchange_kwargs": {"deal_price": "vwap"}}}
    res = qroll_cli("run", str(config(tmp_path, data=f"qlib://{data.resolve()}", backtest=backtest)),
                    home=tmp_path / "home")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "vwap" in res.stderr, res.stderr
    assert runs(tmp_path) == 0


def test_unreachable_tracking_uri_fails_fast_with_one_line(tmp_path):
    t0 = time.perf_counter()
    res = qroll_cli("run", str(config(tmp_path, tracking="postgresql://qroll:secret@127.0.0.1:1/nowhere")),
                    home=tmp_path / "home")
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "127.0.0.1:1" in res.stderr and "secret" not in res.stderr
    assert time.perf_counter() - t0 < 60


@pytest.mark.parametrize("command", ["collect", "report"])
def test_collect_or_report_of_an_unknown_experiment(tmp_path, command):
    res = qroll_cli(command, "never_ran", "--tracking", f"sqlite:///{tmp_path}/mlflow.db", home=tmp_path)
    assert res.returncode == 2 and "never_ran" in res.stderr and res.stderr.count("\n") == 1


def test_a_failing_window_exits_1_after_training_the_others(tmp_path):
    def two_models(task):
        task["model"]["kwargs"]["num_leaves"] = 1  # LightGBM refuses num_leaves < 2 when it trains
    lgb_bad = config(tmp_path, task=two_models)
    raw = yaml.safe_load(lgb_bad.read_text())
    good = yaml.safe_load(config(tmp_path).read_text())["tasks"][0]
    good["model"] = {"class": "LinearModel", "kwargs": {"estimator": "ridge", "alpha": 0.1}}
    raw["tasks"].append(good)
    lgb_bad.write_text(yaml.safe_dump(raw))
    res = qroll_cli("run", str(lgb_bad), home=tmp_path / "home")
    assert res.returncode == 1, res.stderr
    assert res.stdout.count("FAILED") == 2 and res.stdout.count(" trained ") == 2
    assert "2 of 4 tasks failed" in res.stderr and "LinearModel" in res.stdout
