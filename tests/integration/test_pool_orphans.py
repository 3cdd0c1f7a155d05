"""Runs that a worker which lost its lease left RUNNING are ended by the task's next holder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from qroll import ExpManager
from qroll.pool.run import PoolLease
from qroll.record import Recorder
from qroll.record.tags import TAG_ENDED_BY, TAG_POOL_LEASE, task_tags
from qroll.train.pool_entry import lease_tags, task_train_entry

TASK = {"model": {"class": "LinearModel"}, "n": 1,
        "dataset": {"kwargs": {"segments": {"test": ["2020-01-02", "2020-03-31"]}}}}


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("QROLL_HOME", str(tmp_path / "home"))
    return ExpManager(f"sqlite:///{tmp_path}/mlflow.db")


def quick_train(task: Mapping[str, Any], experiment_name: str, recorder_name: str | None = None,
                exp_manager: ExpManager | None = None, tags: Mapping[str, str] | None = None) -> Recorder:
    assert exp_manager is not None
    with exp_manager.get_exp(experiment_name).start_recorder(
            recorder_name, tags={**task_tags(task), **(tags or {})}) as rec:
        rec.log_params(n=task["n"])
    return rec


def untagged_train(task: Mapping[str, Any], experiment_name: str, recorder_name: str | None = None,
                   exp_manager: ExpManager | None = None) -> Recorder:
    assert exp_manager is not None
    with exp_manager.get_exp(experiment_name).start_recorder(recorder_name, tags=task_tags(task)) as rec:
        rec.log_params(n=task["n"])
    return rec


def left_running(store: ExpManager, lease: PoolLease) -> Recorder:
    """A run started under ``lease`` and never ended: what a SIGKILLed worker leaves in the store."""
    return store.get_exp("orphans").start_recorder(None, tags={**task_tags(TASK), **lease_tags(lease)})


def test_the_next_holder_ends_runs_of_lost_leases_only(store):
    old, new = PoolLease("p", 7, "w1:aa1"), PoolLease("p", 7, "w2:bb1")
    orphan = left_running(store, old)
    other_task = left_running(store, PoolLease("p", 8, "w1:aa2"))
    other_pool = left_running(store, PoolLease("q", 7, "w1:aa3"))
    res = task_train_entry(TASK, experiment="orphans", tracking=store.uri, train_func=quick_train,
                           pool_lease=new)
    exp = store.get_exp("orphans")
    ended = exp.get_recorder(orphan.id)
    assert ended.status == Recorder.STATUS_K
    assert "w1:aa1" in ended.tags[TAG_ENDED_BY] and ended.tags[TAG_ENDED_BY].startswith("w2:bb1")
    assert {exp.get_recorder(r.id).status for r in (other_task, other_pool)} == {Recorder.STATUS_R}
    trained = exp.get_recorder(res["recorder_id"])
    assert trained.status == Recorder.STATUS_FI and trained.tags[TAG_POOL_LEASE] == "w2:bb1"
    # Running the same lease's entry again (its own run is FINISHED now) ends nothing more.
    assert task_train_entry(TASK, experiment="orphans", tracking=store.uri, train_func=quick_train,
                            pool_lease=new)["recorder_id"] == trained.id


def test_a_train_func_without_tags_still_trains_untagged(store):
    orphan = left_running(store, PoolLease("p", 7, "w1:aa1"))
    res = task_train_entry(TASK, experiment="orphans", tracking=store.uri, train_func=untagged_train,
                           pool_lease=PoolLease("p", 7, "w2:bb1"))
    exp = store.get_exp("orphans")
    assert exp.get_recorder(orphan.id).status == Recorder.STATUS_K
    assert TAG_POOL_LEASE not in exp.get_recorder(res["recorder_id"]).tags
