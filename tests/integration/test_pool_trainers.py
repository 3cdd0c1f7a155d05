"""TrainerRM and DelayTrainerRM on SQLite and PostgreSQL pools, against TrainerR on the same tasks,
with real MLflow SQLite stores, spawned worker processes and tiny LinearModel fits."""

# ruff: noqa: F811  (fixtures imported from pool_fixtures are re-bound as test arguments)

from __future__ import annotations

import copy

import pandas as pd
import pytest
from pool_fixtures import pool_url  # noqa: F401
from test_trainers import DATA, TEMPLATE

from qroll import ExpManager, RollingGen, TrainerR, TrainingError, task_generator
from qroll.collect.collector import RecorderCollector, rolling_key
from qroll.collect.group import RollingGroup
from qroll.data.source import open_source
from qroll.errors import PoolTimeoutError
from qroll.pool import TaskManager
from qroll.record.tags import STATUS_BEGIN, STATUS_END, STATUS_KEY, TAG_POOL_ID
from qroll.train.pool_trainer import DelayTrainerRM, TrainerRM

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("QROLL_HOME", str(tmp_path / "home"))
    return ExpManager(f"sqlite:///{tmp_path}/mlflow.db")


@pytest.fixture(scope="module")
def tasks():
    return task_generator(TEMPLATE, RollingGen(step=20, calendar=open_source(DATA).calendar, trunc_days=3))


def merged(recs) -> pd.DataFrame:
    out = RecorderCollector(lambda: recs, process_list=[RollingGroup()], rec_key_func=rolling_key,
                            artifacts_path={"pred": "pred.pkl"})()
    (pred,) = out["pred"].values()
    # A task read back from the pool holds its dates as ISO strings, which pandas 3 parses to
    # microseconds where the generator's Timestamps give nanoseconds: the same days.
    dates = pred.index.levels[0].as_unit("ns")
    return pred.set_axis(pred.index.set_levels(dates, level=0))


def test_trainer_rm_with_two_workers_gives_trainer_r_predictions(pool_url, store, tasks):
    expected = TrainerR(experiment_name="local", exp_manager=store).train(tasks)
    trainer = TrainerRM("pooled", pool_url=pool_url, exp_manager=store, n_workers=2, skip_run_task=True,
                        timeout=300, poll=0.2)
    recs = trainer.train(list(reversed(tasks)))
    assert [r.tags["qroll.test_start"] for r in recs] == ["2019-02-26", "2019-01-29", "2019-01-01"]
    with TaskManager("pooled", pool_url) as tm:
        assert tm.task_stat() == {"done": 3}
        rows = {t["_id"]: t for t in tm.query()}
        owners = {t["res"]["recorder_id"] for t in rows.values()}
        assert all(set(t["res"]) == {"recorder_id", "experiment", "tracking_uri"} for t in rows.values())
    assert owners == {r.id for r in recs}
    for rec in recs:
        rec.refresh()
        assert rec.status == "FINISHED" and rec.tags[STATUS_KEY] == STATUS_BEGIN
        assert rows[int(rec.tags[TAG_POOL_ID])]["res"]["recorder_id"] == rec.id
    pd.testing.assert_frame_equal(merged(recs), merged(expected))
    # Submitting the same tasks again reuses the done ones: same runs, nothing trained.
    again = TrainerRM("pooled", pool_url=pool_url, exp_manager=store, n_workers=0, timeout=30).train(tasks)
    assert [r.id for r in again] == [r.id for r in reversed(recs)]
    assert len(store.get_exp("pooled").list_recorders()) == 3


def test_failed_tasks_are_reported_with_the_others_runs(pool_url, store, tasks):
    bad = copy.deepcopy(tasks[1])
    bad["model"]["kwargs"]["estimator"] = "quadratic"
    trainer = TrainerRM("partial", pool_url=pool_url, exp_manager=store, n_workers=0, max_attempts=2, timeout=60)
    with pytest.raises(TrainingError, match="1 of 3 tasks failed .*task 1.*quadratic") as info:
        trainer.train([tasks[0], bad, tasks[2]])
    assert [r is not None for r in info.value.recorders] == [True, False, True]
    with TaskManager("partial", pool_url) as tm:
        stat = tm.task_stat()
        # This process gives a failing task up after one try in a call; it is retried on the next.
        assert stat["done"] == 2 and stat.get("failed", 0) + stat.get("waiting", 0) == 1


def test_wait_times_out_without_workers(pool_url, store, tasks):
    trainer = TrainerRM("idle", pool_url=pool_url, exp_manager=store, n_workers=0, skip_run_task=True,
                        timeout=1.0, poll=0.2)
    with pytest.raises(PoolTimeoutError, match="waited 1 s for 1 tasks"):
        trainer.train(tasks[:1])


def test_delay_trainer_rm_part_done_then_done(pool_url, store, tasks):
    trainer = DelayTrainerRM("delay", pool_url=pool_url, exp_manager=store, n_workers=1, timeout=300, poll=0.2)
    recs = trainer.train(tasks[:2])
    with TaskManager("delay", pool_url) as tm:
        assert tm.task_stat() == {"part_done": 2}
    assert [r.list_artifacts() for r in recs] == [["task", "task.json"]] * 2
    done = trainer.end_train(recs)
    assert [r.id for r in done] == [r.id for r in recs]
    with TaskManager("delay", pool_url) as tm:
        assert tm.task_stat() == {"done": 2}
    for rec in done:
        rec.refresh()
        assert rec.status == "FINISHED" and rec.tags[STATUS_KEY] == STATUS_END
        assert "pred.pkl" in rec.list_artifacts()
    expected = TrainerR(experiment_name="local2", exp_manager=store).train(tasks[:2])
    pd.testing.assert_frame_equal(merged(done), merged(expected))
