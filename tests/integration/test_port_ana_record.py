"""PortAnaRecord on a real SQLite MLflow store and a seeded synthetic market (real backtests).

Covered: Qlib's artifact names and layouts, the 13 metrics against ``risk_analysis`` /
``indicator_analysis`` of the saved report and indicators, ``"<PRED>"``, the time range taken from
the predictions (with the clip at the calendar's end), Qlib's default config (on ``cn_csi300``,
which holds SH000300), skipping without a label, ``skip_existing``, bad input leaving the run
untouched, where the market data comes from, frequencies, and a Qlib-path record config run by
``task_train``.
"""

from __future__ import annotations

import copy
import math
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pytest
from backtest_examples import example_bench, example_pred
from conftest import shared_dataset

from qroll import task_train
from qroll.analysis.risk import indicator_analysis, risk_analysis
from qroll.backtest import Position, TradeIndicators, run_backtest
from qroll.data.qlib_bin import QlibBinSource
from qroll.data.source import open_source
from qroll.errors import (
    CalendarError,
    ClassNotFoundError,
    ConfigError,
    DataNotFoundError,
    RecordSkippedWarning,
)
from qroll.record import Experiment, ExpManager, PortAnaRecord, Recorder
from qroll.record.portfolio import DEFAULT_PORT_ANALYSIS_CONFIG

DATA = "synthetic://?instruments=20&start=2018-06-01&end=2019-12-31&seed=3"
STANDARD = {"limit_threshold": 0.095, "deal_price": "close", "open_cost": 0.0005, "close_cost": 0.0015,
            "min_cost": 5}
ARTIFACTS = ["indicator_analysis_1day.pkl", "indicators_normal_1day.pkl", "indicators_normal_1day_obj.pkl",
             "port_analysis_1day.pkl", "positions_normal_1day.pkl", "report_normal_1day.pkl"]
RISK = ["mean", "std", "annualized_return", "information_ratio", "max_drawdown"]
EXCESS = ["excess_return_without_cost", "excess_return_with_cost"]
METRICS = [f"1day.{e}.{r}" for e in EXCESS for r in RISK] + ["1day.ffr", "1day.pa", "1day.pos"]


@pytest.fixture(scope="module")
def source() -> Any:
    return open_source(DATA)


@pytest.fixture(scope="module")
def pred(source: Any) -> pd.DataFrame:
    return example_pred(source, "all", "2019-01-01", "2019-06-28")


@pytest.fixture(scope="module")
def bench(source: Any) -> pd.Series:
    return example_bench(source, "all", "2019-01-01", "2019-12-31")


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Any:
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("port_ana")
    mp.setenv("QROLL_HOME", str(home))
    mp.delenv("QROLL_DATA", raising=False)
    yield ExpManager(f"sqlite:///{home}/mlflow.db")
    mp.undo()


@pytest.fixture
def exp(manager: ExpManager) -> Experiment:
    return manager.get_exp(f"port-{uuid.uuid4().hex[:8]}")


def _config(bench: Any, start: Any = "2019-01-02", end: Any = "2019-07-01", **strategy: Any) -> dict:
    return {"strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                         "kwargs": {"signal": "<PRED>", "topk": 5, "n_drop": 1, **strategy}},
            "backtest": {"start_time": start, "end_time": end, "account": 1e7, "benchmark": bench,
                         "exchange_kwargs": STANDARD}}


def _signal_run(exp: Experiment, pred: pd.DataFrame, label: bool = True) -> Recorder:
    rec = exp.start_recorder()
    objects = {"pred.pkl": pred}
    if label:
        objects["label.pkl"] = pred.rename(columns={"score": "label"})
    rec.save_objects(**objects)
    return rec


def _portfolio(rec: Recorder, name: str) -> Any:
    return rec.load_object(f"portfolio_analysis/{name}")


def test_artifacts_layout_and_metrics(exp: Experiment, pred: pd.DataFrame, bench: pd.Series,
                                      source: Any) -> None:
    rec = _signal_run(exp, pred)
    record = PortAnaRecord(rec, _config(bench), source=DATA)
    assert record.list() == ["report_normal_1day.pkl", "positions_normal_1day.pkl", "indicators_normal_1day.pkl",
                             "indicators_normal_1day_obj.pkl", "port_analysis_1day.pkl",
                             "indicator_analysis_1day.pkl"]
    metrics = record.generate()
    rec.end()
    assert rec.list_artifacts() == sorted(["label.pkl", "pred.pkl"] + [f"portfolio_analysis/{a}" for a in ARTIFACTS])
    record.check(include_self=True)

    # The report is the backtest's (same inputs straight into run_backtest).
    report = _portfolio(rec, "report_normal_1day.pkl")
    strategy = {"class": "TopkDropoutStrategy", "kwargs": {"signal": pred, "topk": 5, "n_drop": 1}}
    direct = run_backtest("2019-01-02", "2019-07-01", strategy, account=1e7, benchmark=bench,
                          exchange_kwargs=STANDARD, source=source)
    pd.testing.assert_frame_equal(report, direct.report)
    assert report["turnover"].iloc[0] > 0.9  # the first day buys: the book is filled
    positions = _portfolio(rec, "positions_normal_1day.pkl")
    assert list(positions) == list(report.index) and all(isinstance(p, Position) for p in positions.values())
    indicators = _portfolio(rec, "indicators_normal_1day.pkl")
    pd.testing.assert_frame_equal(indicators, direct.indicators)
    obj = _portfolio(rec, "indicators_normal_1day_obj.pkl")
    assert isinstance(obj, TradeIndicators)
    pd.testing.assert_frame_equal(obj.generate_trade_indicators_dataframe(), indicators)

    # port_analysis: Qlib's 2-level index, one column "risk", the risk of both excess returns.
    port = _portfolio(rec, "port_analysis_1day.pkl")
    assert list(port.columns) == ["risk"] and list(port.index.names) == [None, None]
    assert list(port.index) == [(e, r) for e in EXCESS for r in RISK]
    excess = report["return"] - report["bench"]
    assert (report["bench"] != 0).any()
    want = pd.concat([risk_analysis(excess, freq="day")["risk"],
                      risk_analysis(excess - report["cost"], freq="day")["risk"]]).to_numpy()
    np.testing.assert_array_equal(port["risk"].to_numpy(), want)
    ind = _portfolio(rec, "indicator_analysis_1day.pkl")
    assert list(ind.index) == ["ffr", "pa", "pos"] and list(ind.columns) == ["value"]
    pd.testing.assert_frame_equal(ind, indicator_analysis(indicators))

    # 13 metrics with Qlib's names: the port_analysis figures and the indicator analysis.
    assert list(metrics) == METRICS
    assert [metrics[m] for m in METRICS[:10]] == list(want)
    assert metrics["1day.ffr"] == ind.loc["ffr", "value"] and metrics["1day.pa"] == 0.0
    assert rec.list_metrics() == pytest.approx(metrics)
    assert record.metric_names() == METRICS


def test_pred_placeholder_and_default_range(exp: Experiment, pred: pd.DataFrame, bench: pd.Series,
                                            source: Any) -> None:
    config = _config(None, start=None, end=None)
    config["backtest"]["benchmark"] = bench
    before = copy.deepcopy({**config, "backtest": {**config["backtest"], "benchmark": None}})
    rec = _signal_run(exp, pred)
    PortAnaRecord(rec, config, source=source).generate()
    rec.end()
    # "<PRED>" and the None dates were filled in copies; the benchmark Series is shared, not copied.
    assert config["backtest"]["benchmark"] is bench
    assert {**config, "backtest": {**config["backtest"], "benchmark": None}} == before
    report = _portfolio(rec, "report_normal_1day.pkl")
    # Qlib 0.9.7: start = the pred's first date (no signal yet: no trade), end = the next trading day.
    days = source.calendar.all_days()
    last = pred.index.get_level_values("datetime").max()
    assert report.index[0] == pred.index.get_level_values("datetime").min()
    assert report.index[-1] == days[days.searchsorted(last) + 1]
    assert report["turnover"].iloc[0] == 0.0 and report["turnover"].iloc[1] > 0.9


def test_default_end_is_clipped_at_the_calendar_end(exp: Experiment, source: Any) -> None:
    days = source.calendar.all_days()
    for last in (days[-1], days[-2]):  # the next trading day is past or on the calendar's last day
        late = example_pred(source, "all", "2019-12-02", f"{last:%Y-%m-%d}")
        rec = _signal_run(exp, late)
        PortAnaRecord(rec, _config(None, start=None, end=None), source=source).generate()
        rec.end()
        report = _portfolio(rec, "report_normal_1day.pkl")
        assert report.index[-1] == days[-2]  # the last day a daily step can end on


def test_qlib_default_config(exp: Experiment) -> None:
    src = QlibBinSource(shared_dataset("cn_csi300", "calendars/day.txt"))
    pred = example_pred(src, "csi300", "2020-11-02", "2020-12-31")
    rec = _signal_run(exp, pred)
    record = PortAnaRecord(rec, source=src)
    assert record.strategy_config == DEFAULT_PORT_ANALYSIS_CONFIG["strategy"]
    assert record.strategy_config is not DEFAULT_PORT_ANALYSIS_CONFIG["strategy"]
    metrics = record.generate()
    rec.end()
    report = _portfolio(rec, "report_normal_1day.pkl")
    # Account 1e8; the range from the pred (2020-11-02 .. the trading day after 2020-12-31).
    assert report["account"].iloc[0] == 1e8 and report.index[0] == pd.Timestamp("2020-11-02")
    assert report.index[-1] == pd.Timestamp("2021-01-04")
    assert report["bench"].abs().sum() > 0  # SH000300's daily return
    assert list(metrics) == METRICS


def test_omitted_backtest_keys_take_qlib_backtest_defaults(exp: Experiment, pred: pd.DataFrame) -> None:
    # PortAnaRecord calls qlib.backtest.backtest: account 1e9 and fees of 15 bp (buys) / 25 bp (sells).
    config = _config(None)
    del config["backtest"]["account"], config["backtest"]["exchange_kwargs"]
    rec = _signal_run(exp, pred)
    PortAnaRecord(rec, config, source=DATA).generate()
    rec.end()
    report = _portfolio(rec, "report_normal_1day.pkl")
    first = report.iloc[0]  # buys only
    assert first["account"] + first["total_cost"] == pytest.approx(1e9, rel=1e-12)
    assert first["total_cost"] / first["total_turnover"] == pytest.approx(0.0015, rel=1e-9)
    second = report.iloc[1]  # one sell (25 bp) and one buy (15 bp)
    day_cost = second["total_cost"] - first["total_cost"]
    day_turnover = second["total_turnover"] - first["total_turnover"]
    assert 0.0015 < day_cost / day_turnover < 0.0025


def test_no_trade_at_all_logs_nan_metrics(exp: Experiment, pred: pd.DataFrame) -> None:
    # Every stock limited both ways: no order is ever sent, so ffr, pa, pos are undefined.
    config = _config(None)
    config["backtest"]["exchange_kwargs"] = {**STANDARD, "limit_threshold": ["$close > 0", "$close > 0"]}
    rec = _signal_run(exp, pred)
    metrics = PortAnaRecord(rec, config, source=DATA).generate()
    rec.end()
    assert (_portfolio(rec, "indicators_normal_1day.pkl")["count"] == 0).all()
    stored = rec.list_metrics()
    for key in ("1day.ffr", "1day.pa", "1day.pos", "1day.excess_return_with_cost.information_ratio"):
        assert math.isnan(metrics[key]) and math.isnan(stored[key]), key
    assert metrics["1day.excess_return_with_cost.mean"] == 0.0


def test_missing_label_or_pred_skips_with_a_warning(exp: Experiment, pred: pd.DataFrame) -> None:
    rec = _signal_run(exp, pred, label=False)
    with pytest.warns(RecordSkippedWarning, match="dependent data.*label.pkl"):
        assert PortAnaRecord(rec, _config(None), source=DATA).generate() == {}
    empty = exp.start_recorder()
    with pytest.warns(RecordSkippedWarning, match="pred.pkl"):
        assert PortAnaRecord(empty, _config(None), source=DATA).generate() == {}
    rec.end()
    empty.end()
    assert rec.list_artifacts() == ["pred.pkl"] and rec.list_metrics() == {}
    assert empty.list_artifacts() == [] and empty.list_metrics() == {}


def test_skip_existing_returns_the_stored_metrics(exp: Experiment, pred: pd.DataFrame) -> None:
    rec = _signal_run(exp, pred)
    first = PortAnaRecord(rec, _config(None), source=DATA).generate()
    # A config that could not run (an unknown benchmark) shows the backtest is not run again.
    again = PortAnaRecord(rec, _config("NOPE"), skip_existing=True, source=DATA).generate()
    rec.end()
    assert again == pytest.approx(first) and list(again) != []
    with pytest.raises(DataNotFoundError):
        PortAnaRecord(rec, _config("NOPE"), source=DATA).generate()


@pytest.mark.parametrize(("change", "error", "match"), [
    ({"strategy": {"class": "NoSuchStrategy", "kwargs": {}}}, ClassNotFoundError, "NoSuchStrategy"),
    ({"benchmark": "SH000300"}, DataNotFoundError, "'SH000300'"),
    ({"start_time": "2019-09-02", "end_time": "2019-10-31"}, ConfigError, "does not overlap"),
    ({"exchange_kwargs": {**STANDARD, "deal_price": "$amount"}}, DataNotFoundError, r"\$amount"),
    ({"end_time": "2019-12-31"}, CalendarError, "last day"),
    ({"account": {"cash": 1e6, "SYN0001": {"amount": 100, "price": 10}}}, ConfigError, "account .* number"),
])
def test_bad_input_records_nothing(exp: Experiment, pred: pd.DataFrame, change: dict, error: type,
                                   match: str) -> None:
    config = _config(None)
    if "strategy" in change:
        config["strategy"] = change["strategy"]
    else:
        config["backtest"].update(change)
    rec = _signal_run(exp, pred)
    with pytest.raises(error, match=match):
        PortAnaRecord(rec, config, source=DATA).generate()
    rec.end()
    assert rec.list_artifacts() == ["label.pkl", "pred.pkl"] and rec.list_metrics() == {}


def test_where_the_market_data_comes_from(exp: Experiment, pred: pd.DataFrame, source: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _signal_run(exp, pred)
    with pytest.raises(ConfigError, match="source='qlib:///path/to/data'.*QROLL_DATA"):
        PortAnaRecord(rec, _config(None)).generate()
    # The task's handler source wins over $QROLL_DATA (which here names data without these stocks).
    rec.save_objects(task={"model": {}, "dataset": {"kwargs": {"handler": {"kwargs": {"source": DATA}}}}})
    monkeypatch.setenv("QROLL_DATA", "synthetic://?instruments=3&start=2018-06-01&end=2019-12-31&seed=9")
    assert PortAnaRecord(rec, _config(None))._open_source().instruments().keys() == source.instruments().keys()
    other = _signal_run(exp, pred)  # no task: $QROLL_DATA
    assert len(PortAnaRecord(other, _config(None))._open_source().instruments()) == 3
    rec.end()
    other.end()
    with pytest.raises(ConfigError, match="neither a data URI"):
        PortAnaRecord(rec, _config(None), source=42)  # type: ignore[arg-type]


def test_frequencies_and_arguments() -> None:
    for freq in ("day", "d", "1day", "DAY", ["day", "1day"]):
        assert PortAnaRecord(None, None, freq).risk_analysis_freq == ["1day"]  # the third positional
        assert PortAnaRecord(None, indicator_analysis_freq=freq).indicator_analysis_freq == ["1day"]
    for bad in ("week", "1min", "2day", 5):
        with pytest.raises(ConfigError, match="daily steps only"):
            PortAnaRecord(None, None, bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'median'"):
        PortAnaRecord(None, indicator_analysis_method="median")
    with pytest.raises(ConfigError, match=r"unknown arguments \['topk'\]"):
        PortAnaRecord(None, topk=5)
    PortAnaRecord(None, model=object(), dataset=object())  # offered by the trainer: ignored
    base = _config(None)
    with pytest.raises(ConfigError, match="lacks \\['end_time'\\]"):
        PortAnaRecord(None, {**base, "backtest": {"start_time": None}})
    with pytest.raises(ConfigError, match="unknown keys \\['freq'\\]"):
        PortAnaRecord(None, {**base, "backtest": {**base["backtest"], "freq": "day"}})
    with pytest.raises(ConfigError, match="'strategy' and 'backtest'"):
        PortAnaRecord(None, {"strategy": base["strategy"]})
    executor = {"class": "SimulatorExecutor", "kwargs": {"time_per_step": "week", "generate_portfolio_metrics": True}}
    with pytest.raises(ConfigError, match="'week'"):
        PortAnaRecord(None, {**base, "executor": executor})
    executor["kwargs"] = {"time_per_step": "day"}
    with pytest.raises(ConfigError, match="generate_portfolio_metrics"):
        PortAnaRecord(None, {**base, "executor": executor})
    executor["class"] = "qlib.backtest.executor.SimulatorExecutor"
    executor["kwargs"]["generate_portfolio_metrics"] = True
    PortAnaRecord(None, {**base, "executor": executor})


@pytest.mark.slow
def test_qlib_path_config_through_task_train(manager: ExpManager) -> None:
    task = {
        "model": {"class": "LinearModel", "module_path": "qlib.contrib.model.linear",
                  "kwargs": {"estimator": "ridge", "alpha": 1.0}},
        "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset", "kwargs": {
            "handler": {"class": "DataHandlerLP", "kwargs": {
                "instruments": "all", "start_time": "2018-06-01", "end_time": "2019-12-31", "source": DATA,
                "data_loader": {"class": "QlibDataLoader", "kwargs": {"config": {
                    "feature": (["$close/Ref($close, 5) - 1", "$volume/Mean($volume, 20)"], ["RET5", "VOL20"]),
                    "label": (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"])}}},
                "learn_processors": ["DropnaLabel"], "infer_processors": [{"class": "Fillna", "kwargs": {}}]}},
            "segments": {"train": ("2018-07-02", "2018-12-20"), "test": ("2019-01-01", "2019-03-29")}}},
        "record": [
            {"class": "SignalRecord", "module_path": "qlib.workflow.record_temp",
             "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}},
            {"class": "PortAnaRecord", "module_path": "qlib.workflow.record_temp",
             "kwargs": {"config": _config(None, start=None, end=None)}},
        ],
    }
    rec = task_train(task, "port-ana-task", exp_manager=manager)  # the data: the task's handler source
    assert rec.status == "FINISHED"
    assert {f"portfolio_analysis/{a}" for a in ARTIFACTS} <= set(rec.list_artifacts())
    metrics = rec.list_metrics()
    assert set(METRICS) <= set(metrics) and metrics["1day.ffr"] == 1.0
    report = rec.load_object("portfolio_analysis/report_normal_1day.pkl")
    dates = rec.load_object("pred.pkl").index.get_level_values("datetime")
    assert report.index[0] == dates.min() and report.index[-1] == pd.Timestamp("2019-04-01")
    assert report["turnover"].iloc[1] > 0.9
