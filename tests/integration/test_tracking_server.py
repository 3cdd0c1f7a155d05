"""Trainers and collectors on a real ``mlflow server`` (PostgreSQL backend, proxied artifacts) and on a
PostgreSQL backend store with a shared artifact root; a store that is down when a pool task runs."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from mlflow_server import fresh_database, mlflow_server
from pg_server import free_port
from test_trainers import DATA, TEMPLATE

from qroll import ExpManager, RollingGen, TrainerR, task_generator
from qroll.collect.collector import RecorderCollector
from qroll.data.source import open_source
from qroll.errors import LoadObjectError, TaskDeferredError, TrackingError
from qroll.home import store_wait
from qroll.pool import PoolLease, TaskManager
from qroll.record.store import driver_uri
from qroll.train.pool_entry import task_train_entry
from qroll.train.pool_trainer import TrainerRM

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module (starting one takes 5-15 s on this machine)."""
    root = tmp_path_factory.mktemp("server")
    with fresh_database("qroll_srv") as backend, mlflow_server(backend, root / "destination", root) as srv:
        yield srv


@pytest.fixture(scope="module")
def tasks():
    return task_generator(TEMPLATE, RollingGen(step=30, calendar=open_source(DATA).calendar, trunc_days=3))


def predictions(recs) -> dict[str, pd.DataFrame]:
    out = RecorderCollector(lambda: recs, artifacts_path={"pred": "pred.pkl"},
                            rec_key_func=lambda r: r.tags["qroll.test_start"])()
    return out["pred"]


def same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert sorted(a) == sorted(b) and len(a) == 2
    for key in a:
        x, y = a[key], b[key]
        assert x.index.get_level_values(1).equals(y.index.get_level_values(1))
        assert np.array_equal(x.to_numpy(), y.to_numpy(), equal_nan=True)  # the same fit, bit for bit


def test_trainers_record_and_collect_through_a_server(server, tasks, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("QROLL_HOME", str(home))
    store = ExpManager(server.url)
    local = TrainerR(experiment_name="srv_local", exp_manager=store).train(tasks)
    # The pool trainer's worker runs in this process (n_workers=0): what it records goes through
    # the server exactly as a spawned worker's would.
    pooled = TrainerRM("srv_pooled", pool_url=f"sqlite:///{tmp_path}/pool.db", exp_manager=store,
                       n_workers=0, timeout=120, poll=0.2).train(tasks)
    for rec in local + pooled:
        assert rec.status == "FINISHED" and rec.artifact_uri.startswith("mlflow-artifacts:/")
        assert rec._local_artifact("pred.pkl") is None  # read through the server, not from a folder
    assert not (home / "artifacts").exists() and not (home / "mlflow.db").exists()
    assert any(server.artifacts.rglob("pred.pkl"))  # the server's destination holds them
    # A fresh client (another machine, as far as it can tell) collects what both trainers wrote.
    again = ExpManager(server.url)
    same(predictions(again.get_exp("srv_local").list_recorders()), predictions(local))
    same(predictions(again.get_exp("srv_pooled").list_recorders()), predictions(local))
    with pytest.raises(LoadObjectError, match=r"has no artifact 'nothing.pkl' \(it has \[.*'pred.pkl'"):
        again.get_exp("srv_local").list_recorders()[0].load_object("nothing.pkl")


def test_trainers_on_a_postgresql_store_with_a_shared_artifact_root(tasks, tmp_path, monkeypatch):
    monkeypatch.setenv("QROLL_HOME", str(tmp_path / "home"))
    shared = tmp_path / "shared_artifacts"
    with fresh_database("qroll_store") as url:
        store = ExpManager(url, artifact_root=str(shared))
        local = TrainerR(experiment_name="pg_local", exp_manager=store).train(tasks)
        pooled = TrainerRM("pg_pooled", pool_url=url, exp_manager=store, n_workers=0, timeout=120,
                           poll=0.2).train(tasks)
        for rec in local + pooled:
            assert rec.artifact_uri.startswith(str(shared)) and rec._local_artifact("pred.pkl")
        with TaskManager("pg_pooled", url) as tm:
            assert tm.task_stat() == {"done": 2}
            assert {t["res"]["tracking_uri"] for t in tm.query()} == {store.uri}
        # Another process with another home finds the runs and their artifacts in the shared root.
        monkeypatch.setenv("QROLL_HOME", str(tmp_path / "elsewhere"))
        same(predictions(ExpManager(url).get_exp("pg_pooled").list_recorders()), predictions(local))


def test_a_store_down_for_good_gives_the_task_back_within_the_bound(tmp_path):
    closed = f"http://qroll:s3cret@127.0.0.1:{free_port()}"
    lease = PoolLease(pool="p", task_id=7, owner="w1")
    t0 = time.monotonic()
    with pytest.raises(TaskDeferredError) as info:
        task_train_entry(dict(TEMPLATE), experiment="e", tracking=closed, pool_lease=lease, store_wait=2.0)
    elapsed = time.monotonic() - t0
    message = str(info.value)
    assert 2.0 <= elapsed < 30, elapsed
    assert "http://qroll:***@127.0.0.1" in message and "s3cret" not in message
    assert "did not answer for 2 s" in message and "task 7 of pool 'p'" in message
    assert isinstance(info.value.__cause__, TrackingError)


def test_the_store_wait_is_validated(monkeypatch):
    monkeypatch.setenv("QROLL_STORE_WAIT", "soon")
    with pytest.raises(Exception, match=r"\$QROLL_STORE_WAIT='soon' must be a number of seconds"):
        store_wait()
    monkeypatch.setenv("QROLL_STORE_WAIT", "12.5")
    assert store_wait() == 12.5 and store_wait(3) == 3.0


def test_postgres_uris_get_a_driver_this_python_has():
    assert driver_uri("postgres://u:p@h/db", "x").startswith(("postgresql://", "postgresql+psycopg"))
    assert driver_uri("http://h:5000", "x") == "http://h:5000"
    with pytest.raises(TrackingError, match=r"postgresql://u:\*\*\*@h/db names the postgresql driver 'nosuch'"):
        driver_uri("postgresql+nosuch://u:p@h/db", "postgresql://u:***@h/db")
