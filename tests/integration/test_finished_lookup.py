"""One lookup of "the finished run for this task hash": a delay trainer's first-phase runs (the
task recorded, nothing fitted) are never taken for trained ones, in process or in the pool.

Issue 11: ``TrainerR.train`` after ``DelayTrainerR.train`` on three ridge tasks returned the
three first-phase runs (same ids, artifacts only ``task`` and ``task.json``) as if trained.
"""

from __future__ import annotations

import pytest
from test_trainers import DATA, TEMPLATE

from qroll import DelayTrainerR, ExpManager, RollingGen, TrainerR, task_generator
from qroll.config import task_hash
from qroll.data.source import open_source
from qroll.record.tags import STATUS_END, STATUS_KEY, TAG_HASH
from qroll.train.pool_entry import begin_task_train_entry, task_train_entry
from qroll.train.trainer import PHASE_BEGIN, PHASE_END, TAG_PHASE, finished_runs

FIRST_PHASE_ARTIFACTS = ["task", "task.json"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    # One store (creating one takes seconds); each test uses experiments of its own.
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("lookup")
    mp.setenv("QROLL_HOME", str(home / "home"))
    yield ExpManager(f"sqlite:///{home}/mlflow.db")
    mp.undo()


@pytest.fixture(scope="module")
def tasks():
    found = task_generator(TEMPLATE, RollingGen(step=20, calendar=open_source(DATA).calendar, trunc_days=3))
    assert len(found) == 3  # the three ridge tasks
    return found


def assert_trained(recs, tasks) -> None:
    for rec, task in zip(recs, tasks, strict=True):
        rec.refresh()
        assert rec.status == "FINISHED" and rec.tags[TAG_HASH] == task_hash(task)
        assert {"params.pkl", "pred.pkl"} <= set(rec.list_artifacts()), rec.list_artifacts()


def test_trainer_r_after_delay_trainer_r_trains_instead_of_returning_first_phase_runs(store, tasks):
    first = DelayTrainerR(experiment_name="mixed", exp_manager=store).train(tasks)
    assert [r.list_artifacts() for r in first] == [FIRST_PHASE_ARTIFACTS] * 3
    assert {r.refresh().tags[TAG_PHASE] for r in first} == {PHASE_BEGIN}
    trained = TrainerR(experiment_name="mixed", exp_manager=store).train(tasks)
    assert not {r.id for r in trained} & {r.id for r in first}, "first-phase runs returned as trained"
    assert_trained(trained, tasks)
    # The first-phase runs are left as they were: recorded, not fitted.
    assert [store.get_exp("mixed").get_recorder(r.id).list_artifacts() for r in first] == \
        [FIRST_PHASE_ARTIFACTS] * 3


def test_runs_a_delay_trainer_fitted_are_reused_by_trainer_r(store, tasks):
    delay = DelayTrainerR(experiment_name="fitted", exp_manager=store)
    fitted = delay.end_train(delay.train(tasks))
    assert {r.refresh().tags[TAG_PHASE] for r in fitted} == {PHASE_END}
    again = TrainerR(experiment_name="fitted", exp_manager=store).train(tasks)
    assert [r.id for r in again] == [r.id for r in fitted]
    assert len(store.get_exp("fitted").list_recorders()) == 3  # nothing trained a second time


def test_a_delay_trainer_resumes_its_own_first_phase_runs(store, tasks):
    first = DelayTrainerR(experiment_name="resume", exp_manager=store).train(tasks[:2])
    # A second delay trainer (a restarted process) takes the recorded tasks up instead of
    # recording them again, and end_train fits them in those runs.
    delay = DelayTrainerR(experiment_name="resume", exp_manager=store)
    again = delay.train(tasks[:2])
    assert [r.id for r in again] == [r.id for r in first]
    done = delay.end_train(again)
    assert [r.refresh().tags[STATUS_KEY] for r in done] == [STATUS_END] * 2
    assert_trained(done, tasks[:2])


def test_the_pool_entry_and_the_trainer_share_the_lookup(store, tasks):
    task = tasks[0]
    res = begin_task_train_entry(task, experiment="pooled", tracking=store.uri,
                                 artifact_root=store.artifact_root)
    assert finished_runs(store, "pooled", [task_hash(task)]) == {}
    assert set(finished_runs(store, "pooled", [task_hash(task)], first_phase=True)) == {task_hash(task)}
    # A phase-1 run recorded in process is skipped by the pool's entry point too.
    DelayTrainerR(experiment_name="pooled", exp_manager=store).train(tasks[1])
    trained = [task_train_entry(t, experiment="pooled", tracking=store.uri, artifact_root=store.artifact_root)
               for t in tasks[:2]]
    assert res["recorder_id"] not in {r["recorder_id"] for r in trained}
    recs = [store.get_exp("pooled").get_recorder(r["recorder_id"]) for r in trained]
    assert_trained(recs, tasks[:2])
    # ... and TrainerR finds the runs the pool trained, and trains only the third task.
    again = TrainerR(experiment_name="pooled", exp_manager=store).train(tasks)
    assert [r.id for r in again[:2]] == [r.id for r in recs]
    assert_trained(again, tasks)
    found = finished_runs(store, "pooled", [task_hash(t) for t in tasks])
    assert [found[task_hash(t)].id for t in tasks] == [r.id for r in again]
