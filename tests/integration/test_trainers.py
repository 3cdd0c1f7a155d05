"""TrainerR (in process and in subprocesses), DelayTrainerR and task_train on a real SQLite MLflow
store, with tiny data so each fit takes a fraction of a second."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from qroll import DelayTrainerR, ExpManager, RollingGen, TrainerR, TrainingError, task_generator, task_train
from qroll.data.source import open_source
from qroll.record.tags import STATUS_BEGIN, STATUS_END, STATUS_KEY, TAG_HASH

DATA = "synthetic://?instruments=20&start=2017-01-01&end=2019-12-31&seed=5"
TEMPLATE = {
    "model": {"class": "LinearModel", "kwargs": {"estimator": "ridge", "alpha": 1.0}},
    "dataset": {"class": "DatasetH", "kwargs": {
        "handler": {"class": "DataHandlerLP", "kwargs": {
            "instruments": "all", "start_time": "2017-01-01", "end_time": "2019-12-31", "source": DATA,
            "data_loader": {"class": "QlibDataLoader", "kwargs": {"config": {
                "feature": (["$close/Ref($close, 5) - 1", "$volume/Mean($volume, 20)"], ["RET5", "VOL20"]),
                "label": (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"])}}},
            "learn_processors": ["DropnaLabel"], "infer_processors": [{"class": "Fillna", "kwargs": {}}]}},
        "segments": {"train": ("2017-02-01", "2018-12-20"), "test": ("2019-01-01", "2019-02-28")}}},
    "record": [{"class": "SignalRecord", "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}}],
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("trainers")
    mp.setenv("QROLL_HOME", str(home))
    yield ExpManager(f"sqlite:///{home}/mlflow.db")
    mp.undo()


@pytest.fixture(scope="module")
def tasks():
    return task_generator(TEMPLATE, RollingGen(step=20, calendar=open_source(DATA).calendar, trunc_days=3))


def test_task_train_never_touches_the_callers_task(store, tasks):
    task = tasks[0]
    before = copy.deepcopy(task)
    rec = task_train(task, "single", exp_manager=store)
    assert task == before  # <MODEL>/<DATASET> were filled in a copy
    assert rec.status == "FINISHED" and rec.tags[TAG_HASH]
    assert rec.load_object("task") == before
    assert {"pred.pkl", "label.pkl", "params.pkl", "task.json"} <= set(rec.list_artifacts())


def test_trainer_r_in_order_and_in_subprocesses(store, tasks):
    recs = TrainerR(experiment_name="inproc", exp_manager=store).train(tasks)
    assert [r.tags["qroll.test_start"] for r in recs] == ["2019-01-01", "2019-01-29", "2019-02-26"]
    assert {r.refresh().tags[STATUS_KEY] for r in recs} == {STATUS_BEGIN}
    sub = TrainerR(experiment_name="subproc", exp_manager=store, call_in_subproc=True).train(tasks[:2])
    assert [r.tags["qroll.test_start"] for r in sub] == ["2019-01-01", "2019-01-29"]
    same = [r.load_object("pred.pkl") for r in (recs[0], sub[0])]
    assert same[0].equals(same[1])  # the same fit, whichever process ran it


def test_a_failing_task_is_reported_and_the_rest_still_train(store, tasks):
    bad = copy.deepcopy(tasks[1])
    bad["model"]["kwargs"]["estimator"] = "quadratic"
    with pytest.raises(TrainingError, match="1 of 3 tasks failed .*task 1.*quadratic") as info:
        TrainerR(experiment_name="partial", exp_manager=store).train([tasks[0], bad, tasks[2]])
    assert [r is not None for r in info.value.recorders] == [True, False, True]
    statuses = sorted(r.status for r in store.get_exp("partial").list_recorders())
    assert statuses == ["FAILED", "FINISHED", "FINISHED"]
    with pytest.raises(TrainingError):
        TrainerR(experiment_name="stop", exp_manager=store, stop_on_error=True).train([bad, tasks[0]])
    assert len(store.get_exp("stop").list_recorders()) == 1


def test_delay_trainer_records_first_and_fits_in_end_train(store, tasks):
    trainer = DelayTrainerR(experiment_name="delay", exp_manager=store)
    recs = trainer.train(tasks[:2])
    assert [r.list_artifacts() for r in recs] == [["task", "task.json"]] * 2
    done = trainer.end_train(recs)
    assert [r.id for r in done] == [r.id for r in recs]
    for rec in done:
        rec.refresh()
        assert rec.status == "FINISHED" and rec.tags[STATUS_KEY] == STATUS_END
        assert "pred.pkl" in rec.list_artifacts()
    # Already ended: nothing is fitted twice. A second fit would overwrite the stored predictions
    # and model, so stand-ins put there now must come back untouched.
    marker = pd.DataFrame({"stand_in": [1.0, 2.0]})
    for rec in done:
        rec.save_objects(**{"pred.pkl": marker, "params.pkl": "stand-in model"})
    before = [sorted(r.list_artifacts()) for r in done]
    again = trainer.end_train(done)
    assert [r.id for r in again] == [r.id for r in done]
    for rec, artifacts in zip(again, before, strict=True):
        rec.refresh()
        assert rec.status == "FINISHED" and rec.tags[STATUS_KEY] == STATUS_END
        assert sorted(rec.list_artifacts()) == artifacts
        assert rec.load_object("pred.pkl").equals(marker) and rec.load_object("params.pkl") == "stand-in model"
