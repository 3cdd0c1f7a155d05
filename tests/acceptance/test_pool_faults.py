"""Pool workers from a fresh home, together and under SIGKILL, as a user scales out.

Neither the MLflow store nor the experiment exists when the workers start: they race to create
both. Every task must end ``done`` exactly once, with exactly one FINISHED MLflow run, and the
store must open cleanly afterwards (no ``_alembic_tmp_*`` table left by a migration).
"""

# ruff: noqa: F811  (fixtures imported from pool_fixtures are re-bound as test arguments)

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from pool_fixtures import pool_url  # noqa: E402, F401

from qroll.config import task_hash  # noqa: E402
from qroll.pool import TaskManager  # noqa: E402
from qroll.record import ExpManager, Recorder  # noqa: E402
from qroll.record.creation import head_revision  # noqa: E402
from qroll.record.tags import TAG_ENDED_BY, TAG_HASH, TAG_POOL_ID, TAG_POOL_LEASE  # noqa: E402

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
N_WORKERS, LEASE = 4, 3.0
N_TASKS = 60  # under kills: ~30-45 s per backend on a loaded 2-core machine
KILL_PHASE = 35.0  # seconds of killing at most; then the workers are left to finish


def start_worker(url: str, home: Path, log: Path, tracking: str | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "qroll", "--home", str(home), "worker", "--pool", url, "--pool-name", "faults",
           "--experiment", "faults", "--lease-seconds", str(LEASE), "--idle-poll", "0.2",
           "--train-func", "pool_task_funcs:record_run", "--until-empty"]
    if tracking is not None:
        cmd += ["--tracking", tracking]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def make_tasks(n: int) -> list[dict[str, Any]]:
    return [{"model": {"class": "Noop"}, "dataset": {"kwargs": {}}, "n": i, "sleep": 0.2} for i in range(n)]


def assert_store_intact(db: Path) -> None:
    with closing(sqlite3.connect(db)) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert not {n for n in names if n.startswith("_alembic_tmp_")}
    assert revision == head_revision()
    assert list(db.parent.glob(f"{db.name}.creating-*")) == []


def assert_each_task_has_one_finished_run(store: ExpManager, rows: list[dict[str, Any]]) -> list[Recorder]:
    """Check the runs of the pool's tasks; return the runs a task's next holder ended as KILLED."""
    exp = store.get_exp("faults", create=False)
    finished: Counter[str] = Counter(r.tags[TAG_HASH] for r in exp.list_recorders(status={Recorder.STATUS_FI}))
    referenced = [r["res"]["recorder_id"] for r in rows]
    assert len(set(referenced)) == len(rows)
    for row in rows:
        rec = exp.get_recorder(row["res"]["recorder_id"])
        assert rec.status == "FINISHED" and rec.params["n"] == str(row["def"]["n"])
        assert rec.tags[TAG_HASH] == task_hash(row["def"]) and finished[rec.tags[TAG_HASH]] == 1
    # Runs of killed workers were ended by the tasks' next holders: none is left RUNNING, and every
    # run is either a task's one FINISHED run or a KILLED one saying which lost lease it ran under.
    assert exp.list_recorders(status={Recorder.STATUS_R}) == []
    killed = exp.list_recorders(status={Recorder.STATUS_K})
    assert len(exp.list_recorders()) == len(rows) + len(killed)
    retried = {str(r["_id"]) for r in rows if r["attempts"] > 0}
    for rec in killed:
        assert f"the run's pool lease {rec.tags[TAG_POOL_LEASE]} was lost" in rec.tags[TAG_ENDED_BY]
        assert rec.tags[TAG_POOL_ID] in retried  # its task was run again, under another lease
    return killed


def test_four_workers_started_together_on_a_fresh_home(tmp_path):
    home = tmp_path / "home"
    url = f"sqlite:///{home}/pool.db"
    with TaskManager("faults", url) as tm:  # as `qroll run --pool` leaves it: tasks, no store yet
        tm.create_task(make_tasks(12))
    assert not (home / "mlflow.db").exists()
    log = tmp_path / "workers.log"
    workers = [start_worker(url, home, log) for _ in range(N_WORKERS)]
    codes = [w.wait(timeout=240) for w in workers]
    assert codes == [0] * N_WORKERS, log.read_text()[-3000:]
    with TaskManager("faults", url) as tm:
        assert tm.task_stat() == {"done": 12}
        rows = list(tm.query())
    assert_store_intact(home / "mlflow.db")
    # No worker was killed, so no run may have been ended by another worker.
    assert assert_each_task_has_one_finished_run(ExpManager(home=home), rows) == []


def test_sigkilled_workers_lose_nothing(pool_url, tmp_path):
    db = tmp_path / "mlflow.db"
    tracking = f"sqlite:///{db}"  # created by the racing workers, under the kills
    with TaskManager("faults", pool_url, max_attempts=100) as tm:
        ids = tm.create_task(make_tasks(N_TASKS))
    log = tmp_path / "workers.log"
    rng = random.Random(0)
    workers = [start_worker(pool_url, tmp_path / "home", log, tracking) for _ in range(N_WORKERS)]
    kills, early, t0 = 0, 0, time.monotonic()
    first_pause = rng.uniform(0.2, 0.5)  # the first kill lands while the workers start the store
    try:
        with TaskManager("faults", pool_url) as tm:
            while time.monotonic() - t0 < KILL_PHASE and tm.task_stat().get("done", 0) < N_TASKS:
                time.sleep(first_pause if kills == 0 else rng.uniform(0.5, 1.3))
                i = rng.randrange(N_WORKERS)
                if workers[i].poll() is None:
                    workers[i].send_signal(signal.SIGKILL)
                    workers[i].wait()
                    kills += 1
                    early += not db.exists()  # before any worker finished building the store
                workers[i] = start_worker(pool_url, tmp_path / "home", log, tracking)
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
    print(f"{kills} kills in {kill_phase:.1f} s ({early} before the store existed); all done after "
          f"{elapsed:.1f} s; "
          f"attempts {Counter(r['attempts'] for r in rows)}")
    assert kills >= 15 and early >= 1
    assert stat == {"done": N_TASKS}, log.read_text()[-3000:]  # none failed, none left behind
    assert [r["_id"] for r in rows] == sorted(ids)
    assert any(r["attempts"] > 0 for r in rows)  # leases of killed workers expired and were re-run
    assert_store_intact(db)
    killed = assert_each_task_has_one_finished_run(ExpManager(tracking), rows)
    print(f"{len(killed)} runs ended as KILLED by the tasks' next holders")
