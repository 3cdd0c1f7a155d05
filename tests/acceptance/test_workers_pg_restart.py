"""The pool's PostgreSQL restarted mid-run (as a crash): ``qroll worker`` processes started together
from a fresh home reconnect and go on; every task ends ``done`` once, with one FINISHED run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from qroll.config import task_hash
from qroll.pool import TaskManager
from qroll.record import ExpManager, Recorder
from qroll.record.tags import TAG_HASH

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pg_server import private_postgres  # noqa: E402

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
N_TASKS, N_WORKERS, LEASE, DOWN = 36, 3, 5.0, 2.5


def start_worker(url: str, tracking: str, home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "qroll", "--home", str(home), "worker", "--pool", url, "--pool-name", "rs",
           "--experiment", "rs", "--tracking", tracking, "--lease-seconds", str(LEASE), "--idle-poll", "0.2",
           "--train-func", "pool_task_funcs:record_run", "--until-empty"]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def test_workers_ride_out_a_postgresql_restart(tmp_path):
    # The server's folder is not under tmp_path: as root it runs as "postgres", which cannot enter
    # pytest's private (0700) folders.
    root = Path(tempfile.mkdtemp(prefix="qroll-pg-"))
    tracking = f"sqlite:///{tmp_path}/mlflow.db"  # not created beforehand: the workers race for it
    log = tmp_path / "workers.log"
    tasks = [{"model": {"class": "Noop"}, "dataset": {"kwargs": {}}, "n": i, "sleep": 0.5} for i in range(N_TASKS)]
    try:
        with private_postgres(root) as pg:
            url = pg.create_database("pool")
            with TaskManager("rs", url) as tm:
                ids = tm.create_task(tasks)
                workers = [start_worker(url, tracking, tmp_path / "home", log) for _ in range(N_WORKERS)]
                try:
                    t0, working = time.monotonic(), set()
                    # Restart once every worker holds the pool (one that *starts* while the server
                    # is down fails at once, by design) and a quarter of the tasks are done.
                    while len(working) < N_WORKERS or tm.task_stat().get("done", 0) < N_TASKS // 4:
                        assert time.monotonic() - t0 < 120, log.read_text()[-3000:]
                        working |= {t["lease_owner"].rsplit(":", 1)[0] for t in tm.query({"status": "running"})}
                        time.sleep(0.1)
                    done_before = tm.task_stat().get("done", 0)
                    pg.restart(mode="immediate", down_seconds=DOWN)
                    codes = [w.wait(timeout=150) for w in workers]
                finally:
                    for w in workers:
                        if w.poll() is None:
                            w.kill()
                            w.wait()
                stat, rows = tm.task_stat(), list(tm.query())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = log.read_text()
    print(f"restart after {done_before} of {N_TASKS} done; all done after {time.monotonic() - t0:.1f} s; "
          f"attempts {Counter(r['attempts'] for r in rows)}; {text.count('reconnected to the task pool')} "
          "reconnections")
    assert codes == [0] * N_WORKERS, text[-3000:]
    assert done_before < N_TASKS and "reconnected to the task pool" in text
    assert stat == {"done": N_TASKS}, text[-3000:]
    assert [r["_id"] for r in rows] == sorted(ids)
    exp = ExpManager(tracking).get_exp("rs")
    finished = Counter(r.tags[TAG_HASH] for r in exp.list_recorders(status={Recorder.STATUS_FI}))
    assert len({r["res"]["recorder_id"] for r in rows}) == N_TASKS
    for row in rows:
        rec = exp.get_recorder(row["res"]["recorder_id"])
        assert rec.status == Recorder.STATUS_FI and rec.params["n"] == str(row["def"]["n"])
        assert finished[task_hash(row["def"])] == 1
    assert exp.list_recorders(status={Recorder.STATUS_R}) == []
