"""Pool workers under SIGKILL: 100 real tasks, 4 ``qroll worker`` processes, one killed about every
second and restarted; every task ends ``done`` once, with exactly one FINISHED MLflow run."""

# ruff: noqa: F811  (fixtures imported from pool_fixtures are re-bound as test arguments)

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from pool_fixtures import pool_url  # noqa: E402, F401

from qroll.config import task_hash  # noqa: E402
from qroll.pool import TaskManager  # noqa: E402
from qroll.record import ExpManager, Recorder  # noqa: E402
from qroll.record.tags import TAG_ENDED_BY, TAG_HASH  # noqa: E402

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
N_TASKS, N_WORKERS, LEASE = 100, 4, 3.0
KILL_PHASE = 45.0  # seconds of killing at most; then the workers are left to finish


def start_worker(url: str, tracking: str, home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "qroll", "--home", str(home), "worker", "--pool", url, "--pool-name", "faults",
           "--experiment", "faults", "--tracking", tracking, "--lease-seconds", str(LEASE), "--idle-poll", "0.2",
           "--train-func", "pool_task_funcs:record_run", "--until-empty"]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def test_sigkilled_workers_lose_nothing(pool_url, tmp_path):
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    store = ExpManager(tracking)
    store.get_exp("faults")  # the store's schema and the experiment exist before workers race for them
    tasks = [{"model": {"class": "Noop"}, "dataset": {"kwargs": {}}, "n": i, "sleep": 0.2} for i in range(N_TASKS)]
    with TaskManager("faults", pool_url, max_attempts=100) as tm:
        ids = tm.create_task(tasks)
    log = tmp_path / "workers.log"
    rng = random.Random(0)
    workers = [start_worker(pool_url, tracking, tmp_path / "home", log) for _ in range(N_WORKERS)]
    kills, t0 = 0, time.monotonic()
    try:
        with TaskManager("faults", pool_url) as tm:
            while time.monotonic() - t0 < KILL_PHASE and tm.task_stat().get("done", 0) < N_TASKS:
                time.sleep(rng.uniform(0.6, 1.4))
                i = rng.randrange(N_WORKERS)
                if workers[i].poll() is None:
                    workers[i].send_signal(signal.SIGKILL)
                    workers[i].wait()
                    kills += 1
                workers[i] = start_worker(pool_url, tracking, tmp_path / "home", log)
            kill_phase = time.monotonic() - t0
            # No more kills: the workers finish the pool (expired leases included) and exit.
            for w in workers:
                w.wait(timeout=120)
            stat = tm.task_stat()
            rows = list(tm.query())
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    elapsed = time.monotonic() - t0
    print(f"{kills} kills in {kill_phase:.1f} s; all done after {elapsed:.1f} s; "
          f"attempts {Counter(r['attempts'] for r in rows)}")
    assert kills >= 10
    assert stat == {"done": N_TASKS}, log.read_text()[-3000:]
    assert [r["_id"] for r in rows] == sorted(ids)
    assert any(r["attempts"] > 0 for r in rows)  # leases of killed workers expired and were re-run
    exp = store.get_exp("faults")
    finished: Counter[str] = Counter(r.tags[TAG_HASH] for r in exp.list_recorders(status={Recorder.STATUS_FI}))
    referenced = [r["res"]["recorder_id"] for r in rows]
    assert len(set(referenced)) == N_TASKS
    for row in rows:
        rec = exp.get_recorder(row["res"]["recorder_id"])
        assert rec.status == "FINISHED" and rec.params["n"] == str(row["def"]["n"])
        assert rec.tags[TAG_HASH] == task_hash(row["def"]) and finished[rec.tags[TAG_HASH]] == 1
    # Runs of killed workers were ended by the tasks' next holders: none is left RUNNING.
    assert exp.list_recorders(status={Recorder.STATUS_R}) == []
    killed = exp.list_recorders(status={Recorder.STATUS_K})
    assert all(TAG_ENDED_BY in r.tags for r in killed)
    print(f"{len(killed)} runs of killed workers ended KILLED by the next holder")
