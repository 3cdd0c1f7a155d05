"""`qroll pool status|list|retry|reset|remove`, `qroll worker` and `qroll run --pool`, in subprocesses,
with their bad inputs (exit 2, one line)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from requires import require_ray
from test_cli_run import DATA

from qroll.collect.merged import window_runs
from qroll.pool import TaskManager
from qroll.record import ExpManager

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent


def qroll_cli(*args: str, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    env.pop("QROLL_HOME", None)  # --home alone says where the home is
    return subprocess.run([sys.executable, "-m", "qroll", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=600, env=env, cwd=cwd)


@pytest.fixture
def pool(tmp_path):
    url = f"sqlite:///{tmp_path}/pool.db"
    with TaskManager("p", url, max_attempts=1) as tm:
        tm.create_task([{"model": {"class": "LinearModel"}, "dataset": {"kwargs": {"segments": {
            "test": ["2020-01-02", "2020-03-31"]}}}, "n": i} for i in range(4)])
        first = tm.fetch_task()
        tm.record_failure(first, RuntimeError("boom\nsecond line"))  # max_attempts=1: failed
        tm.commit_task_res(tm.fetch_task(), {"recorder_id": "r1", "experiment": "e", "tracking_uri": "x"})
    return url


def test_status_list_retry_reset_remove(pool, tmp_path):
    home = tmp_path / "home"
    res = qroll_cli("pool", "status", "--pool", pool, "--pool-name", "p", home=home)
    assert res.returncode == 0, res.stderr
    lines = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in res.stdout.splitlines()
             if line.count("│") == 3}
    assert lines == {"done": "1", "failed": "1", "waiting": "2", "total": "4"}
    res = qroll_cli("pool", "list", "--pool", pool, "--pool-name", "p", "--status", "failed", home=home)
    assert res.returncode == 0 and "RuntimeError: boom" in res.stdout and "second line" not in res.stdout
    assert "LinearModel" in res.stdout and "2020-01-02..2020-03-31" in res.stdout and "1/1" in res.stdout
    res = qroll_cli("pool", "retry", "--pool", pool, "--pool-name", "p", home=home)
    assert res.returncode == 0 and "1 failed task(s) back to waiting" in res.stdout
    with TaskManager("p", pool, lease_seconds=0.001) as tm:
        tm.fetch_task()  # a lease that has expired by the time reset looks
        assert tm.task_stat() == {"done": 1, "running": 1, "waiting": 2}
    res = qroll_cli("pool", "reset", "--pool", pool, "--pool-name", "p", home=home)
    assert res.returncode == 0 and "reset: 1 running" in res.stdout
    res = qroll_cli("pool", "remove", "--pool", pool, "--pool-name", "p", "--where", "n=3", home=home)
    assert res.returncode == 0 and "deleted 1 task(s)" in res.stdout
    with TaskManager("p", pool) as tm:
        assert tm.task_stat() == {"done": 1, "waiting": 2}
        assert all(t["attempts"] == 0 for t in tm.query({"status": "waiting"}))
    res = qroll_cli("pool", "remove", "--pool", pool, "--pool-name", "p", "--all", home=home)
    assert res.returncode == 0 and "deleted 3 task(s)" in res.stdout


@pytest.mark.parametrize("args, message", [
    (["status", "--pool", "postgresql://u:s3cret@127.0.0.1:1/none", "--pool-name", "p"], "cannot connect"),
    (["status", "--pool", "mysql://localhost/x", "--pool-name", "p"], "mysql"),
    (["status", "--pool-name", "nope"], "no pool named 'nope'"),
    (["list", "--pool-name", "p", "--where", "nonsense"], "is not PATH=VALUE"),
    (["list", "--pool-name", "p", "--status", "finished"], "'finished' is not a valid TaskStatus"),
    (["remove", "--pool-name", "p"], "needs a filter"),
])
def test_bad_input_exits_2_with_one_line(pool, tmp_path, args, message):
    if "--pool" not in args:
        args = [*args, "--pool", pool]
    res = qroll_cli("pool", *args, home=tmp_path / "home")
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.count("\n") == 1 and message in res.stderr and "s3cret" not in res.stderr


def test_worker_with_an_unknown_train_func_exits_2(pool, tmp_path):
    res = qroll_cli("worker", "--pool", pool, "--pool-name", "p", "--train-func", "no.such:func",
                    home=tmp_path / "h")
    assert res.returncode == 2 and "cannot import the task function 'no.such:func'" in res.stderr


def test_run_with_a_pool_and_two_workers_matches_trainer_r(tmp_path):
    segments = {"train": ["2016-04-01", "2018-06-30"], "valid": ["2018-07-01", "2018-12-31"],
                "test": ["2019-01-01", "2019-06-30"]}
    handler = {"class": "Alpha158", "kwargs": {"instruments": "all", "start_time": "2016-01-01",
                                                "end_time": "2019-12-31"}}
    task = {"model": {"class": "LinearModel", "kwargs": {"estimator": "ridge", "alpha": 1.0}},
            "dataset": {"class": "DatasetH", "kwargs": {"handler": handler, "segments": segments}},
            "record": ["SignalRecord"]}
    raw = {"experiment": "local", "data": DATA, "tracking": f"sqlite:///{tmp_path}/mlflow.db",
           "rolling": {"step": "Q", "trunc_days": "auto"}, "tasks": [task]}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    home = tmp_path / "home"
    assert qroll_cli("run", str(path), home=home).returncode == 0
    pool = f"sqlite:///{tmp_path}/pool.db"
    # A fresh home for the pooled run, from another directory: the spawned worker gets the home as
    # an argument (nothing in its environment), so its feature cache is that home's, not ./qroll_runs.
    pooled_home, elsewhere = tmp_path / "pooled_home", tmp_path / "cwd"
    elsewhere.mkdir()
    res = qroll_cli("run", str(path), "--experiment", "pooled", "--pool", pool, "--workers", "2",
                    home=pooled_home, cwd=elsewhere)
    assert res.returncode == 0, res.stderr
    with TaskManager("pooled", pool) as tm:
        assert tm.task_stat() == {"done": 2}
    assert len(list((pooled_home / "cache" / "features").glob("*.json"))) == 1
    assert not (elsewhere / "qroll_runs").exists()
    store = ExpManager(f"sqlite:///{tmp_path}/mlflow.db")

    def preds(name):
        recs = sorted(window_runs(store.get_exp(name)), key=lambda r: r.tags["qroll.test_start"])
        return [r.load_object("pred.pkl") for r in recs]

    for a, b in zip(preds("local"), preds("pooled"), strict=True):
        assert a.index.equals(b.index) and a.columns.equals(b.columns)
        assert np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True)  # the same fit, bit for bit


def test_worker_on_ray_runs_the_pool(tmp_path):
    require_ray()
    url, tracking = f"sqlite:///{tmp_path}/ray_pool.db", f"sqlite:///{tmp_path}/mlflow.db"
    ExpManager(tracking).get_exp("r")  # the store exists before the workers race for it
    with TaskManager("r", url) as tm:
        ids = tm.create_task([{"model": {"class": "Noop"}, "dataset": {"kwargs": {}}, "n": i, "sleep": 0.1}
                              for i in range(6)])
    res = qroll_cli("worker", "--pool", url, "--pool-name", "r", "--experiment", "r", "--tracking", tracking,
                    "--train-func", "pool_task_funcs:record_run", "--until-empty", "--idle-poll", "0.2",
                    "--ray", "--concurrency", "2", home=tmp_path / "home")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 Ray worker(s) finished; pool r: done 6" in res.stdout
    with TaskManager("r", url) as tm:
        rows = list(tm.query())
    assert [r["_id"] for r in rows] == ids and {r["status"] for r in rows} == {"done"}
    exp = ExpManager(tracking).get_exp("r")
    for row in rows:
        rec = exp.get_recorder(row["res"]["recorder_id"])
        assert rec.status == "FINISHED" and rec.params["n"] == str(row["def"]["n"])


def test_worker_on_ray_with_a_bad_pool_url_exits_2_before_ray_starts(tmp_path):
    require_ray()
    res = qroll_cli("worker", "--pool", "mongodb://h/db", "--pool-name", "p", "--ray", home=tmp_path / "home")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "no supported scheme" in res.stderr and "Ray" not in res.stdout


def test_worker_on_an_unreachable_ray_cluster_exits_2_fast(pool, tmp_path):
    require_ray()
    res = qroll_cli("worker", "--pool", pool, "--pool-name", "p", "--ray-address", "127.0.0.1:9", "--until-empty",
                    home=tmp_path / "home")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "cannot reach the Ray cluster at 127.0.0.1:9" in res.stderr
