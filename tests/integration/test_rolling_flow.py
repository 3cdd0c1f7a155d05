"""The whole rolling flow for real: generate → train (LightGBM and Linear) → record in a real SQLite
MLflow store → collect → merge; and a rerun that trains nothing."""

from __future__ import annotations

import pytest

from qroll import RecorderCollector, RollingGroup, TrainerR
from qroll.experiment import RollingExperiment
from qroll.run_config import RunConfig

pytestmark = pytest.mark.slow

DATA = "synthetic://?instruments=100&start=2015-01-01&end=2019-12-31&seed=0"
SEGMENTS = {"train": ["2015-04-01", "2017-12-31"], "valid": ["2018-01-01", "2018-12-31"], "test": ["2019-01-01", "2019-12-31"]}
HANDLER = {"class": "Alpha158", "module_path": "qlib.contrib.data.handler",
           "kwargs": {"instruments": "all", "start_time": "2015-01-01", "end_time": "2019-12-31",
                      "fit_start_time": "<dataset.kwargs.segments.train.0>",
                      "fit_end_time": "<dataset.kwargs.segments.train.1>"}}
LINEAR_HANDLER = {"class": "Alpha158", "kwargs": {
    **HANDLER["kwargs"],
    "infer_processors": [{"class": "RobustZScoreNorm", "kwargs": {"fields_group": "feature", "clip_outlier": True}},
                         {"class": "Fillna", "kwargs": {"fields_group": "feature"}}],
    "learn_processors": ["DropnaLabel", {"class": "CSRankNorm", "kwargs": {"fields_group": "label"}}]}}
RECORDS = [{"class": "SignalRecord", "module_path": "qlib.workflow.record_temp",
            "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}}, "SigAnaRecord"]


def run_config(tmp_path) -> RunConfig:
    lgb = {"model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt",
                     "kwargs": {"loss": "mse", "num_leaves": 16, "learning_rate": 0.1, "num_threads": 2,
                                "early_stopping_rounds": 10, "num_boost_round": 200, "seed": 0}},
           "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset",
                       "kwargs": {"handler": HANDLER, "segments": SEGMENTS}},
           "record": RECORDS}
    linear = {"model": {"class": "LinearModel", "kwargs": {"estimator": "ridge", "alpha": 0.05}},
              "dataset": {"class": "DatasetH", "kwargs": {"handler": LINEAR_HANDLER, "segments": SEGMENTS}},
              "record": RECORDS}
    return RunConfig.from_dict({
        "experiment": "flow", "data": DATA, "tracking": f"sqlite:///{tmp_path}/mlflow.db",
        "rolling": {"step": "Q", "rtype": "sliding", "trunc_days": "auto"}, "tasks": [lgb, linear],
    })


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flow")
    mp = pytest.MonkeyPatch()
    mp.setenv("QROLL_HOME", str(tmp / "home"))
    run = RollingExperiment(run_config(tmp))
    templates = [dict(t) for t in run.config.tasks]
    recs = run.train()
    yield run, recs, templates
    mp.undo()


def test_every_window_trains_into_a_finished_run(trained):
    run, recs, _ = trained
    assert len(recs) == 8  # 2 models x 4 quarters of 2019
    assert {r.status for r in recs} == {"FINISHED"}
    rec = recs[0].refresh()
    assert rec.tags["train_status"] == "end_task_train"
    assert rec.tags["qroll.model"] == "LGBModel" and rec.tags["qroll.test_start"] == "2019-01-01"
    assert {"task", "task.json", "params.pkl", "pred.pkl", "label.pkl", "sig_analysis/ic.pkl"} <= set(rec.list_artifacts())
    assert any(name.startswith("l2.") for name in rec.metrics)  # LightGBM's curves are logged


def test_merged_predictions_cover_every_test_day_exactly_once(trained):
    run, _, _ = trained
    days = run.config.time_adjuster().calendar.days
    test_days = set(days[(days >= "2019-01-01") & (days <= "2019-12-31")])
    windows = RecorderCollector(run.experiment, artifacts_path={"pred": "pred.pkl"})()["pred"]
    for model in ("LGBModel", "LinearModel"):
        preds = [p for key, p in windows.items() if key[0] == model]
        per_window_days = [set(p.index.get_level_values("datetime")) for p in preds]
        assert sum(len(d) for d in per_window_days) == len(set().union(*per_window_days)), "windows overlap"
        assert set().union(*per_window_days) == test_days
    merged = RecorderCollector(run.experiment, process_list=[RollingGroup()])()["pred"]
    assert set(merged) == {("LGBModel",), ("LinearModel",)}
    for pred in merged.values():
        assert not pred.index.duplicated().any()
        assert set(pred.index.get_level_values("datetime")) == test_days


def test_the_merged_signal_finds_the_synthetic_market_signal(trained):
    run, _, _ = trained
    report = run.report()
    assert len(report.windows) == 8
    by_model = {m.model: m for m in report.merged}
    assert by_model["LGBModel"].ic > 0 and by_model["LGBModel"].days == 261
    assert by_model["LinearModel"].rank_ic > 0


def test_caller_templates_are_untouched_and_a_rerun_trains_nothing(trained):
    run, recs, templates = trained
    assert [dict(t) for t in run.config.tasks] == templates
    outcomes = []
    again = TrainerR(experiment_name="flow", exp_manager=run.exp_manager, progress=outcomes.append).train(run.tasks())
    assert [o.status for o in outcomes] == ["skipped"] * 8
    assert [r.id for r in again] == [r.id for r in recs]
