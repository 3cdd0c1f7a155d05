"""Run names in the MLflow store: each training run is named after its model and test window
(``LinearModel test 2019-01-01..2019-01-28``), not Qlib's ``mlflow_recorder``; a caller's name wins.

Two ridge windows on the synthetic market, trained into a real SQLite MLflow store, in process, by
the delay trainer and by a spawned pool worker."""

from __future__ import annotations

import pandas as pd
import pytest

from qroll import (
    DelayTrainerR,
    ExpManager,
    RecorderCollector,
    RollingGen,
    TrainerR,
    task_generator,
    task_train,
)
from qroll.data.source import open_source
from qroll.record import DEFAULT_REC_NAME
from qroll.record.tags import TAG_MODEL, TAG_TEST_END, TAG_TEST_START, run_name
from qroll.train.pool_trainer import TrainerRM

DATA = "synthetic://?instruments=10&start=2018-06-01&end=2019-03-29&seed=3"
TEMPLATE = {
    "model": {"class": "LinearModel", "kwargs": {"estimator": "ridge", "alpha": 1.0}},
    "dataset": {"class": "DatasetH", "kwargs": {
        "handler": {"class": "DataHandlerLP", "kwargs": {
            "instruments": "all", "start_time": "2018-06-01", "end_time": "2019-03-29", "source": DATA,
            "data_loader": {"class": "QlibDataLoader", "kwargs": {"config": {
                "feature": (["$close/Ref($close, 5) - 1"], ["RET5"]),
                "label": (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"])}}},
            "learn_processors": ["DropnaLabel"], "infer_processors": [{"class": "Fillna", "kwargs": {}}]}},
        "segments": {"train": ("2018-07-02", "2018-12-20"), "test": ("2019-01-02", "2019-02-28")}}},
    "record": [{"class": "SignalRecord", "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}}],
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("run_names")
    mp.setenv("QROLL_HOME", str(home))
    yield ExpManager(f"sqlite:///{home}/mlflow.db")
    mp.undo()


@pytest.fixture(scope="module")
def tasks():
    # Two windows of 20 trading days each over the test segment.
    tasks = task_generator(TEMPLATE, RollingGen(step=20, calendar=open_source(DATA).calendar, trunc_days=3))
    return tasks[:2]


def expected_names(recs):
    # Built from the run's own tags, so a name that disagrees with the window it holds fails.
    return [f"{r.tags[TAG_MODEL]} test {r.tags[TAG_TEST_START]}..{r.tags[TAG_TEST_END]}" for r in recs]


def test_each_window_run_is_named_after_its_model_and_test_window(store, tasks):
    recs = TrainerR(experiment_name="named", exp_manager=store).train(tasks)
    listed = sorted(store.get_exp("named").list_recorders(), key=lambda r: r.tags[TAG_TEST_START])
    names = [r.name for r in listed]
    assert names == expected_names(listed) == [run_name(t) for t in tasks]
    days = open_source(DATA).calendar.days
    first_end = days[days >= pd.Timestamp("2019-01-02")][19]  # the 20th trading day of the first window
    assert names[0] == f"LinearModel test 2019-01-02..{first_end:%Y-%m-%d}"
    assert len(set(names)) == 2 and DEFAULT_REC_NAME not in names
    # Collecting is keyed on tags, not names: both windows are still found.
    preds = RecorderCollector(store.get_exp("named"), artifacts_path={"pred": "pred.pkl"})()["pred"]
    assert sorted(key[1][0].strftime("%Y-%m-%d") for key in preds) == [r.tags[TAG_TEST_START] for r in listed]
    assert {r.id for r in recs} == {r.id for r in listed}


def test_a_callers_recorder_name_is_kept(store, tasks):
    rec = task_train(tasks[0], "explicit", recorder_name="mlflow_recorder", exp_manager=store)
    assert rec.name == DEFAULT_REC_NAME  # Qlib's name, asked for explicitly, is still honoured
    recs = TrainerR(experiment_name="explicit", exp_manager=store, default_rec_name="mine").train(tasks[1:])
    assert [r.name for r in recs] == ["mine"]
    assert sorted(r.name for r in store.get_exp("explicit").list_recorders()) == ["mine", "mlflow_recorder"]


def test_delay_trainer_names_its_run_at_the_first_phase(store, tasks):
    trainer = DelayTrainerR(experiment_name="delayed", exp_manager=store)
    recs = trainer.end_train(trainer.train(tasks[:1]))
    assert [r.refresh().name for r in recs] == [run_name(tasks[0])]
    assert recs[0].status == "FINISHED" and "pred.pkl" in recs[0].list_artifacts()


@pytest.mark.slow
def test_a_pool_worker_names_runs_the_same_way(store, tasks, tmp_path):
    # A spawned worker process runs task_train_entry, which calls task_train without a name.
    trainer = TrainerRM("pooled", pool_url=f"sqlite:///{tmp_path}/pool.db", exp_manager=store, n_workers=1,
                        skip_run_task=True, timeout=120, poll=0.2)
    recs = trainer.train(tasks)
    assert sorted(r.name for r in recs) == sorted(run_name(t) for t in tasks)
    listed = store.get_exp("pooled").list_recorders()
    assert sorted(r.name for r in listed) == sorted(expected_names(listed))
