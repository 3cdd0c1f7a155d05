"""Online windows trained through a task pool see nothing after their as-of day.

The as-of day travels in the pool task (``{"qroll": {"as_of": "YYYY-MM-DD"}}``): a local worker
process of :class:`TrainerRM`, a ``qroll worker`` started as a separate process and the delay
trainer's second phase all train as of it, and record the task without it, so that the run is the
one :class:`TrainerR` records for the same window. Real SQLite pools and MLflow stores, the
synthetic market of ``test_online.py`` (data up to 2018-06-29), linear fits.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_online import make_task, rolling

from qroll import ConfigValueError, ExpManager, OnlineManager, RollingStrategy, TrainerR, task_hash
from qroll.config import canonical_json
from qroll.pool.manager import TaskManager
from qroll.pool.run import run_task
from qroll.record.tags import TAG_WINDOW_KEY
from qroll.tasks.shape import window_key, with_as_of
from qroll.train import pool_entry
from qroll.train.pool_trainer import DelayTrainerRM, TrainerRM

DUE = pd.Timestamp("2017-12-22")  # the window due on this day (step 20 from 2017-11-24)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("online_pool")
    mp = pytest.MonkeyPatch()
    mp.setenv("QROLL_HOME", str(root / "home"))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def store(home) -> ExpManager:
    return ExpManager(f"sqlite:///{home}/mlflow.db")


def routine_at_due_day(store: ExpManager, name: str, trainer: Any) -> Any:
    """First-train on 2017-12-01, routine on the due day; the window trained that day."""
    strategy = RollingStrategy(name, make_task(), rolling())
    manager = OnlineManager(strategy, trainer, begin_time="2017-12-01")
    manager.first_train()
    manager.routine(DUE)
    (rec,) = strategy.tool.online_models()
    assert rec.tags["qroll.test_start"] == str(DUE.date())
    return rec


def pred_days(rec: Any) -> set[pd.Timestamp]:
    return set(rec.load_object("pred.pkl").index.get_level_values("datetime"))


def open_window_task() -> dict[str, Any]:
    """The window due on 2017-12-22 as the online strategy rolls it: test and handler ends open."""
    task = make_task(segments={"train": ("2017-06-02", "2017-10-27"), "valid": ("2017-10-30", "2017-11-21"),
                               "test": ("2017-12-22", None)})
    task["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] = None
    return task


@pytest.mark.slow
def test_a_routine_through_a_pool_trains_the_due_window_as_of_its_day_as_trainer_r_does(store, home):
    """With a local worker process (this process only waits), the due window's pred.pkl ends on the
    as-of day although the data go on to 2018-06-29; its task artifact, hash and window key are those
    of the same window trained by TrainerR, value by value its predictions too. The pool task carries
    the day; asked again at a later day the window is found, not trained again."""
    url = f"sqlite:///{home}/pool.db"
    trainer = TrainerRM(pool_url=url, exp_manager=store, n_workers=1, skip_run_task=True, poll=0.2, timeout=300)
    pooled = routine_at_due_day(store, "pooled-asof", trainer)
    direct = routine_at_due_day(store, "direct-asof", TrainerR(exp_manager=store))
    assert pred_days(pooled) == pred_days(direct) == {DUE}
    task = pooled.load_object("task")
    assert "qroll" not in task  # the day is not part of the task as recorded
    assert canonical_json(task) == canonical_json(direct.load_object("task"))
    for tag in ("qroll.task_hash", TAG_WINDOW_KEY):
        assert pooled.tags[tag] == direct.tags[tag]
    assert pooled.tags["qroll.task_hash"] == task_hash(task) and pooled.tags[TAG_WINDOW_KEY] == window_key(task)
    pd.testing.assert_frame_equal(pooled.load_object("pred.pkl"), direct.load_object("pred.pkl"))
    with TaskManager("pooled-asof", url) as tm:
        (row,) = [t for t in tm.query() if t["_id"] == int(pooled.tags["qroll.pool_task_id"])]
    assert row["def"]["qroll"] == {"as_of": "2017-12-22"}

    # A later as-of is another pool request (the pool hashes the day with the task) but not
    # another fit: the worker reuses the window's finished run.
    (again,) = trainer.train([task], experiment_name="pooled-asof", as_of="2018-01-05")
    assert again.id == pooled.id
    with TaskManager("pooled-asof", url) as tm:
        assert sum(1 for t in tm.query() if t["def"].get("qroll", {}).get("as_of") == "2018-01-05") == 1


def test_a_delay_pool_trainer_fits_as_of_the_day_its_tasks_were_recorded_with(store, home):
    """DelayTrainerRM: the day goes in the pool task at train(), to phase 2 in phase 1's result."""
    trainer = DelayTrainerRM(pool_url=f"sqlite:///{home}/delay.db", exp_manager=store, n_workers=0, poll=0.2,
                             timeout=120)
    rec = routine_at_due_day(store, "delay-pooled-asof", trainer)
    assert pred_days(rec) == {DUE}
    assert rec.tags["qroll.delay_phase"] == "end" and "qroll" not in rec.load_object("task")
    (first,) = trainer.train([open_window_task()], experiment_name="delay-other", as_of="2017-12-29")
    with pytest.raises(ConfigValueError, match="another as-of day"):
        trainer.end_train([first], experiment_name="delay-other", as_of="2018-01-05")
    (fitted,) = trainer.end_train([first], experiment_name="delay-other", as_of="2017-12-29")
    assert max(pred_days(fitted)) == pd.Timestamp("2017-12-29")


def qroll_worker(home: Path, pool: str, name: str, tracking: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qroll", "--home", str(home / "worker_home"), "worker", "--pool",
                           pool, "--pool-name", name, "--experiment", name, "--tracking", tracking,
                           "--until-empty", "--idle-poll", "0.2"], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_qroll_worker_process_honours_the_as_of_and_fails_only_a_malformed_one(store, home):
    """A ``qroll worker`` started on its own knows the day only from the pool task: the good task's
    pred.pkl ends on it; a task whose qroll.as_of is not a day fails (TaskConfigError, no run
    recorded), and the worker goes on and reports it (exit 1, not a crash)."""
    url, name = f"sqlite:///{home}/cli.db", "cli-asof"
    with TaskManager(name, url, max_attempts=1) as tm:
        good, bad = tm.create_task([with_as_of(open_window_task(), DUE),
                                    {**make_task(), "qroll": {"as_of": "2017-13-45"}}])
    res = qroll_worker(home, url, name, store.uri)
    assert res.returncode == 1, res.stderr
    with TaskManager(name, url) as tm:
        rows = {t["_id"]: t for t in tm.query()}
    assert rows[good]["status"] == "done" and rows[bad]["status"] == "failed"
    assert "TaskConfigError" in rows[bad]["last_error"] and "qroll.as_of is '2017-13-45'" in rows[bad]["last_error"]
    (rec,) = store.get_exp(name).list_recorders()  # only the good task's run
    assert pool_entry.result_recorder(rows[good]["res"], store).id == rec.id
    assert pred_days(rec) == {DUE}
    assert rec.tags["qroll.task_hash"] == task_hash(open_window_task())


def test_a_malformed_as_of_fails_the_task_before_any_run_is_recorded(store, home):
    """In this process: the entry point raises TaskConfigError, run_task records it, and the worker loop
    carries on (it returns, having committed nothing)."""
    url, name = f"sqlite:///{home}/bad.db", "bad-asof"
    with TaskManager(name, url, max_attempts=1) as tm:
        (task_id,) = tm.create_task([{**make_task(), "qroll": {"as_of": ["2017-12-22"]}}])
    assert not run_task(pool_entry.task_train_entry, name, url=url, experiment=name, tracking=store.uri)
    with TaskManager(name, url) as tm:
        row = tm.re_query(task_id)
    assert row["status"] == "failed" and "TaskConfigError" in row["last_error"]
    assert store.get_exp(name).list_recorders() == []
