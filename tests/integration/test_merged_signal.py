"""Each model's merged signal evaluated in a run of its own: pred/label, IC and the portfolio backtest,
reused while nothing changed, recomputed when a window changes, read back by the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qroll import RecorderCollector, RollingGroup, risk_analysis
from qroll.collect.merged import backtest_config, evaluate_merged, merged_runs, window_runs
from qroll.data.source import open_source
from qroll.experiment import RollingExperiment, experiment_report
from qroll.run_config import RunConfig

pytestmark = pytest.mark.slow

DATA = "synthetic://?instruments=60&start=2015-01-01&end=2019-12-31&seed=4"
SEGMENTS = {"train": ["2015-04-01", "2017-12-31"], "valid": ["2018-01-01", "2018-12-31"],
            "test": ["2019-01-01", "2019-06-30"]}
HANDLER = {"class": "Alpha158", "kwargs": {"instruments": "all", "start_time": "2015-01-01",
                                            "end_time": "2019-12-31"}}
BACKTEST = {"strategy": {"class": "TopkDropoutStrategy", "kwargs": {"topk": 10, "n_drop": 2}}}


def run_config(tmp_path, **extra) -> RunConfig:
    linear = {"model": {"class": "LinearModel", "kwargs": {"estimator": "ridge", "alpha": 0.05}},
              "dataset": {"class": "DatasetH", "kwargs": {"handler": HANDLER, "segments": SEGMENTS}},
              "record": ["SignalRecord", "SigAnaRecord"]}
    lgb = {"model": {"class": "LGBModel", "kwargs": {"num_leaves": 8, "num_threads": 2, "num_boost_round": 20,
                                                     "early_stopping_rounds": 5}},
           "dataset": linear["dataset"], "record": linear["record"]}
    raw = {"experiment": "merged", "data": DATA, "tracking": f"sqlite:///{tmp_path}/mlflow.db",
           "rolling": {"step": "Q", "trunc_days": "auto"}, "tasks": [linear, lgb], "backtest": BACKTEST}
    raw.update(extra)
    return RunConfig.from_dict(raw)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("merged")
    mp = pytest.MonkeyPatch()
    mp.setenv("QROLL_HOME", str(tmp / "home"))
    run = RollingExperiment(run_config(tmp))
    run.train()
    first = run.evaluate()
    yield run, first
    mp.undo()


def test_one_merged_run_per_model_named_and_tagged(evaluated):
    run, first = evaluated
    assert [e.model for e in first] == ["LGBModel", "LinearModel"] and all(e.computed for e in first)
    runs = merged_runs(run.experiment)
    assert set(runs) == {"LGBModel", "LinearModel"}
    for model, rec in runs.items():
        assert rec.name == f"{model} merged 2019-01-01..2019-06-28"
        assert rec.tags["qroll.kind"] == "merged" and rec.tags["qroll.benchmark"] == "equal-weighted mean of market all"
        held = set(rec.list_artifacts())
        assert {"pred.pkl", "label.pkl", "sig_analysis/ic.pkl", "backtest.json", "windows.json",
                "portfolio_analysis/report_normal_1day.pkl", "portfolio_analysis/port_analysis_1day.pkl"} <= held
    assert len(window_runs(run.experiment)) == 4  # 2 models x 2 quarters; the merged runs are apart


def test_the_merged_prediction_is_the_windows_merged(evaluated):
    run, _ = evaluated
    windows = RecorderCollector(run.experiment, process_list=[RollingGroup()])()["pred"]
    assert set(windows) == {("LGBModel",), ("LinearModel",)}  # the collector does not see merged runs
    for model, rec in merged_runs(run.experiment).items():
        pd.testing.assert_frame_equal(rec.load_object("pred.pkl"), windows[(model,)])


def test_the_metrics_are_those_of_the_saved_backtest(evaluated):
    run, _ = evaluated
    for rec in merged_runs(run.experiment).values():
        report = rec.load_object("portfolio_analysis/report_normal_1day.pkl")
        net = risk_analysis(report["return"] - report["bench"] - report["cost"], freq="day")["risk"]
        gross = risk_analysis(report["return"] - report["bench"], freq="day")["risk"]
        assert rec.metrics["1day.excess_return_with_cost.annualized_return"] == pytest.approx(
            net["annualized_return"], rel=1e-12)
        assert rec.metrics["1day.excess_return_without_cost.max_drawdown"] == pytest.approx(
            gross["max_drawdown"], rel=1e-12)
        assert (report["turnover"] > 0).sum() > 20  # the portfolio really trades
        # Day T trades on the prediction of T-1: the first signal day trades nothing.
        assert report.index[0] == pd.Timestamp("2019-01-01") and report["turnover"].iloc[0] == 0


def test_the_default_benchmark_is_the_markets_equal_weighted_mean(evaluated):
    run, _ = evaluated
    rec = merged_runs(run.experiment)["LinearModel"]
    report = rec.load_object("portfolio_analysis/report_normal_1day.pkl")
    source = open_source(DATA)
    close = source.load(["close"], sorted(source.instruments("all")), "2018-12-01", "2019-12-31")["close"]
    daily = (close.astype("float64").pct_change(fill_method=None)).mean(axis=1)
    np.testing.assert_allclose(report["bench"].to_numpy(), daily.reindex(report.index).to_numpy(), rtol=1e-12)


def test_evaluating_again_reuses_the_merged_runs(evaluated):
    run, first = evaluated
    before = {r.id for r in run.experiment.list_recorders()}
    again = run.evaluate()
    assert [e.computed for e in again] == [False, False]
    assert [e.recorder.id for e in again] == [e.recorder.id for e in first]
    assert {r.id for r in run.experiment.list_recorders()} == before


def test_the_report_reads_the_merged_runs(evaluated):
    run, _ = evaluated
    report = experiment_report(run.experiment)
    assert len(report.windows) == 4
    stored = merged_runs(run.experiment)
    for m in report.merged:
        rec = stored[m.model]
        assert m.run_id == rec.id and m.days == len(rec.load_object("pred.pkl").index.unique("datetime"))
        assert m.excess_return_with_cost == rec.metrics["1day.excess_return_with_cost.annualized_return"]
        assert m.information_ratio_with_cost == rec.metrics["1day.excess_return_with_cost.information_ratio"]
        assert m.ic == rec.metrics["IC"]


def test_each_window_gets_its_slice_of_the_portfolio(evaluated):
    run, _ = evaluated
    report = merged_runs(run.experiment)["LGBModel"].load_object("portfolio_analysis/report_normal_1day.pkl")
    excess = report["return"] - report["bench"] - report["cost"]
    for rec in window_runs(run.experiment):
        if rec.tags["qroll.model"] != "LGBModel":
            continue
        part = excess.loc[rec.tags["qroll.test_start"]:rec.tags["qroll.test_end"]]
        expected = risk_analysis(part, freq="day")["risk"]["annualized_return"]
        assert rec.metrics["1day.excess_return_with_cost.annualized_return"] == pytest.approx(expected, rel=1e-12)
        assert rec.metrics["fit_seconds"] > 0


def test_a_changed_window_recomputes_that_models_merged_run(evaluated):
    run, first = evaluated
    exp = run.experiment
    old = {e.model: e.recorder.id for e in first}
    linear = [r for r in window_runs(exp) if r.tags["qroll.model"] == "LinearModel"]
    exp.delete_recorder(linear[0].id)
    assert len(experiment_report(exp).windows) == 3  # the stale merged run is not read as current
    run.train()  # retrains the deleted window only
    again = {e.model: e for e in run.evaluate()}
    assert not again["LGBModel"].computed and again["LGBModel"].recorder.id == old["LGBModel"]
    assert again["LinearModel"].computed and again["LinearModel"].recorder.id != old["LinearModel"]
    merged = [r for r in exp.list_recorders() if r.tags.get("qroll.kind") == "merged"]
    assert sorted(r.tags["qroll.model"] for r in merged) == ["LGBModel", "LinearModel"]  # the old one is gone


def test_backtest_null_evaluates_the_signal_only(evaluated, tmp_path):
    run, _ = evaluated
    exp = run.exp_manager.get_exp("merged")
    [lin] = [e for e in evaluate_merged(exp, None) if e.model == "LinearModel"]
    assert lin.computed  # another config: computed again
    held = set(lin.recorder.list_artifacts())
    assert "pred.pkl" in held and not any(p.startswith("portfolio_analysis") for p in held)
    row = next(m for m in experiment_report(exp).merged if m.model == "LinearModel")
    assert np.isnan(row.excess_return_with_cost) and not np.isnan(row.ic)
    # Back to the run's config: computed once more, with its backtest.
    assert all(e.computed for e in evaluate_merged(exp, backtest_config(BACKTEST)))


def test_backtest_config_normalisation():
    cfg = backtest_config({"backtest": {"exchange_kwargs": {"deal_price": "open"}}}, "SH000300")
    assert cfg is not None
    assert cfg["strategy"]["kwargs"] == {"topk": 50, "n_drop": 5, "signal": "<PRED>"}
    assert cfg["backtest"]["exchange_kwargs"] == {"deal_price": "open"}  # a given block replaces the default
    assert cfg["backtest"]["benchmark"] == "SH000300" and cfg["backtest"]["account"] == 100_000_000
    assert backtest_config(None) is None


def test_a_qlib_template_with_port_ana_record_backtests_the_merged_signal_only(tmp_path):
    port_ana = {"class": "PortAnaRecord", "module_path": "qlib.workflow.record_temp", "kwargs": {"config": {
        "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                     "kwargs": {"signal": "<PRED>", "topk": 7, "n_drop": 1}},
        "backtest": {"start_time": None, "end_time": None, "account": 1e7,
                     "exchange_kwargs": {"limit_threshold": 0.095, "deal_price": "close", "open_cost": 0.0005,
                                         "close_cost": 0.0015, "min_cost": 5}}}}}
    cfg = run_config(tmp_path, backtest=None)
    raw = {"experiment": "qlib_records", "data": DATA, "tracking": cfg.tracking, "rolling": cfg.rolling,
           "tasks": [{**cfg.tasks[0], "record": ["SignalRecord", "SigAnaRecord", port_ana]}]}
    run = RollingExperiment(RunConfig.from_dict(raw))
    windows = run.train()
    assert all(not any(a.startswith("portfolio_analysis") for a in w.list_artifacts()) for w in windows)
    [merged] = run.evaluate()
    report = merged.recorder.load_object("portfolio_analysis/report_normal_1day.pkl")
    positions = merged.recorder.load_object("portfolio_analysis/positions_normal_1day.pkl")
    assert report["account"].iloc[0] == pytest.approx(1e7, rel=1e-2)  # the record's account
    held = pd.Series([len(p.get_stock_list()) for p in positions.values()])
    # Its topk; a sell that fails (a limit, a suspension) may leave up to topk + n_drop held.
    assert held.mode()[0] == 7 and held.max() <= 8
