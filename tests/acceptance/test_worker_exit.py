"""``qroll worker --until-empty`` exits non-zero when a task it ran failed or was given back, and
a task three times longer than its lease is run once (the heartbeat renews it)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from qroll.pool import TaskManager
from qroll.record import ExpManager, Recorder

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent


def worker(tmp_path: Path, pool: str, func: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "qroll", "--home", str(tmp_path / "home"), "worker", "--pool", pool,
           "--pool-name", "p", "--experiment", "p", "--tracking", f"sqlite:///{tmp_path}/mlflow.db",
           "--idle-poll", "0.2", "--train-func", func, "--until-empty", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def tasks(n: int, start: int = 0, **extra: object) -> list[dict[str, object]]:
    return [{"model": {"class": "Noop"}, "dataset": {"kwargs": {}}, "n": i, **extra} for i in range(start, start + n)]


def test_a_worker_whose_tasks_failed_exits_1(tmp_path):
    """Two processes (--concurrency 2): their failures are summed into one line and exit 1."""
    pool = f"sqlite:///{tmp_path}/pool.db"
    with TaskManager("p", pool, max_attempts=2) as tm:
        tm.create_task(tasks(3))
    proc = worker(tmp_path, pool, "worker_exit_funcs:fail", "--concurrency", "2")
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err
    last = err.splitlines()[-1]
    # 3 tasks x max_attempts 2, whichever child ran them
    assert last.startswith("qroll worker: pool p: 6 failed task attempt(s), 0 task(s) given back unrun, 0 done")
    assert "Traceback" not in err
    with TaskManager("p", pool) as tm:
        assert tm.task_stat() == {"failed": 3}


def test_a_worker_that_gives_a_task_back_stops_and_exits_1(tmp_path):
    pool = f"sqlite:///{tmp_path}/pool.db"
    with TaskManager("p", pool) as tm:
        [tid, _] = tm.create_task(tasks(2))
    proc = worker(tmp_path, pool, "worker_exit_funcs:defer")
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err
    assert "1 task(s) given back unrun" in err
    errors = [ln for ln in err.splitlines() if ln.startswith("qroll: error:")]
    assert len(errors) == 1 and errors[0].startswith("qroll: error: a worker stopped: "), err
    with TaskManager("p", pool) as tm:
        assert tm.task_stat() == {"waiting": 2}  # the worker stopped after the first
        assert tm.re_query(tid)["attempts"] == 0


def test_a_task_three_times_its_lease_runs_once(tmp_path):
    """Lease 2 s, a 6 s task, three workers polling every 0.2 s for expired leases."""
    pool = f"sqlite:///{tmp_path}/pool.db"
    with TaskManager("p", pool) as tm:
        [long_id, *_] = tm.create_task(tasks(1, sleep=6.0) + tasks(4, start=1, sleep=0.3))
    procs = [worker(tmp_path, pool, "pool_task_funcs:record_run", "--lease-seconds", "2") for _ in range(3)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    with TaskManager("p", pool) as tm:
        rows = list(tm.query())
    assert [(r["status"], r["attempts"]) for r in rows] == [("done", 0)] * 5
    exp = ExpManager(f"sqlite:///{tmp_path}/mlflow.db").get_exp("p")
    runs = exp.list_recorders()
    assert sorted(Counter(r.params["n"] for r in runs).items()) == [(str(i), 1) for i in range(5)]  # one run each
    long_run = exp.get_recorder(next(r for r in rows if r["_id"] == long_id)["res"]["recorder_id"])
    assert long_run.status == Recorder.STATUS_FI and long_run.params["n"] == "0"
