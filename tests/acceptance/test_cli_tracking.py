"""`qroll run`, `qroll worker` and `qroll collect` on a real tracking server and a PostgreSQL backend
store, from a fresh home; the server stopped mid-run (back within the wait, or gone for good); a
PostgreSQL backend store restarted mid-run; an unreachable server and a missing driver (exit 2)."""

# ruff: noqa: F811  (fixtures imported from pool_fixtures are re-bound as test arguments)

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
import yaml
from mlflow_server import fresh_database, mlflow_server
from pg_server import free_port, private_postgres

from qroll.collect.merged import merged_runs, window_runs
from qroll.pool import TaskManager
from qroll.record import ExpManager
from qroll.record.tags import TAG_ENDED_BY

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
DATA = "synthetic://?instruments=20&start=2016-01-01&end=2019-12-31&seed=3"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    with fresh_database("qroll_cli_srv") as backend, mlflow_server(backend, root / "destination", root) as srv:
        yield srv


def qroll_cli(*args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "qroll", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def start_worker(*args: str, home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "qroll", "--home", str(home), "worker", *args],
                                env=env, stdout=out, stderr=subprocess.PIPE)


def stop(worker: subprocess.Popen[bytes]) -> None:
    """Kill a worker still running, and close its pipe."""
    if worker.poll() is None:
        worker.kill()
    worker.communicate()


def run_config(tmp_path: Path, experiment: str) -> Path:
    segments = {"train": ["2016-04-01", "2018-06-30"], "valid": ["2018-07-01", "2018-12-31"],
                "test": ["2019-01-01", "2019-06-30"]}
    handler = {"class": "Alpha158", "kwargs": {"instruments": "all", "start_time": "2016-01-01",
                                                "end_time": "2019-12-31"}}
    task = {"model": {"class": "LinearModel", "kwargs": {"estimator": "ridge", "alpha": 1.0}},
            "dataset": {"class": "DatasetH", "kwargs": {"handler": handler, "segments": segments}},
            "record": ["SignalRecord"]}
    raw = {"experiment": experiment, "data": DATA, "rolling": {"step": "Q", "trunc_days": "auto"}, "tasks": [task]}
    path = tmp_path / f"{experiment}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_run_worker_and_collect_through_a_server(server, tmp_path):
    home = tmp_path / "home"
    pool = f"sqlite:///{tmp_path}/pool.db"
    cfg = run_config(tmp_path, "srv_cli")
    # `qroll run --workers 0` enqueues and waits; a `qroll worker` started beside it trains.
    log = tmp_path / "worker.log"
    worker = start_worker("--pool", pool, "--pool-name", "srv_cli", "--tracking", server.url, "--idle-poll", "0.3",
                          home=home, log=log)
    try:
        res = qroll_cli("run", str(cfg), "--tracking", server.url, "--pool", pool, "--workers", "0", home=home)
    finally:
        stop(worker)
    assert res.returncode == 0, res.stderr + log.read_text()
    assert "2019-01-01" in res.stdout and "merged signal" in res.stdout and "View run" not in res.stdout
    collected = qroll_cli("collect", "srv_cli", "--tracking", server.url, home=tmp_path / "other_home")
    assert collected.returncode == 0, collected.stderr
    assert "2019-01-01..2019-03-29" in collected.stdout and "2019-04-01..2019-06-28" in collected.stdout
    assert not (home / "mlflow.db").exists() and not (home / "artifacts").exists()
    exp = ExpManager(server.url).get_exp("srv_cli")
    recs = exp.list_recorders()
    assert len(window_runs(exp)) == 2 and len(merged_runs(exp)) == 1 and len(recs) == 3
    assert all(r.artifact_uri.startswith("mlflow-artifacts:/") for r in recs)


def test_run_and_collect_on_a_postgresql_store_with_a_shared_artifact_root(tmp_path):
    shared = tmp_path / "shared"
    with fresh_database("qroll_cli_store") as url:
        cfg = run_config(tmp_path, "pg_cli")
        res = qroll_cli("run", str(cfg), "--tracking", url, "--artifact-root", str(shared), "--pool", url,
                        "--workers", "2", home=tmp_path / "home")
        assert res.returncode == 0, res.stderr
        with TaskManager("pg_cli", url) as tm:
            assert tm.task_stat() == {"done": 2}
        # Two windows and the merged signal, all in the shared artifact root.
        assert len(list(shared.rglob("pred.pkl"))) == 3 and not (tmp_path / "home" / "artifacts").exists()
        collected = qroll_cli("collect", "pg_cli", "--tracking", url, home=tmp_path / "other_home")
        assert collected.returncode == 0, collected.stderr
        assert "2019-04-01..2019-06-28" in collected.stdout


def record_tasks(n: int, sleep: float) -> list[dict]:
    return [{"model": {"class": "Noop"}, "dataset": {"kwargs": {}}, "n": i, "sleep": sleep} for i in range(n)]


def check_done_once(url: str, pool: str, tracking: str, n: int) -> None:
    """Every task done once, its result a FINISHED run holding its number; no run left RUNNING."""
    with TaskManager(pool, url) as tm:
        rows = list(tm.query())
    assert Counter(r["status"] for r in rows) == {"done": n}
    exp = ExpManager(tracking).get_exp(pool)
    runs = {r.id: r for r in exp.list_recorders()}
    for row in rows:
        rec = runs[row["res"]["recorder_id"]]
        assert rec.status == "FINISHED" and rec.params["n"] == str(row["def"]["n"])
    assert not [r for r in runs.values() if r.status == "RUNNING"]
    for rec in runs.values():  # any other run was ended as the outage's leftover, saying so
        assert rec.status == "FINISHED" or TAG_ENDED_BY in rec.tags


def test_workers_wait_for_a_server_restarted_mid_run(server, tmp_path):
    pool = f"sqlite:///{tmp_path}/pool.db"
    n = 16
    with TaskManager("outage", pool) as tm:
        tm.create_task(record_tasks(n, 0.4))
    log = tmp_path / "workers.log"
    args = ("--pool", pool, "--pool-name", "outage", "--tracking", server.url, "--train-func",
            "pool_task_funcs:record_run", "--until-empty", "--idle-poll", "0.2", "--store-wait", "90")
    workers = [start_worker(*args, home=tmp_path / "home", log=log) for _ in range(2)]
    try:
        with TaskManager("outage", pool) as tm:
            deadline = time.monotonic() + 120
            while tm.task_stat().get("done", 0) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
            done_before = tm.task_stat().get("done", 0)
            server.restart(down_seconds=2.0)  # stopped mid-task: the workers wait, then go on
        errs = [w.communicate(timeout=180)[1].decode() for w in workers]
    finally:
        for w in workers:
            stop(w)
    assert [w.returncode for w in workers] == [0, 0], errs
    assert done_before < n and any("went away" in e for e in errs), errs  # the outage hit mid-run
    check_done_once(pool, "outage", server.url, n)


def test_a_postgresql_store_restarted_mid_run_loses_nothing(tmp_path):
    # Not under pytest's tmp_path: as root, the server runs as "postgres", which cannot enter
    # pytest's private (0700) folders.
    root = Path(tempfile.mkdtemp(prefix="qroll-pg-"))
    with private_postgres(root) as pg:
        tracking = pg.create_database("store")
        pool = f"sqlite:///{tmp_path}/pool.db"
        n = 12
        with TaskManager("pgstore", pool) as tm:
            tm.create_task(record_tasks(n, 0.4))
        log = tmp_path / "workers.log"
        args = ("--pool", pool, "--pool-name", "pgstore", "--tracking", tracking, "--artifact-root",
                str(tmp_path / "shared"), "--train-func", "pool_task_funcs:record_run", "--until-empty",
                "--idle-poll", "0.2", "--store-wait", "90")
        workers = [start_worker(*args, home=tmp_path / "home", log=log) for _ in range(2)]
        try:
            with TaskManager("pgstore", pool) as tm:
                deadline = time.monotonic() + 120
                while tm.task_stat().get("done", 0) < 3 and time.monotonic() < deadline:
                    time.sleep(0.2)
                done_before = tm.task_stat().get("done", 0)
                pg.restart(mode="immediate", down_seconds=2.0)  # a crash: every connection is cut
            errs = [w.communicate(timeout=180)[1].decode() for w in workers]
        finally:
            for w in workers:
                stop(w)
        assert [w.returncode for w in workers] == [0, 0], errs
        assert done_before < n
        print(f"{done_before}/{n} done at the restart; outages noticed: {sum('went away' in e for e in errs)}")
        check_done_once(pool, "pgstore", tracking, n)
    shutil.rmtree(root, ignore_errors=True)


def test_a_server_gone_for_good_returns_the_task_and_stops_the_worker(tmp_path):
    root = tmp_path / "server"
    with fresh_database("qroll_gone") as backend, mlflow_server(backend, root / "dest", root) as srv:
        # Credentials in the URI (the server ignores them): the worker's line must mask them.
        tracking = srv.url.replace("http://", "http://qroll:s3cret@")
        pool = f"sqlite:///{tmp_path}/pool.db"
        with TaskManager("gone", pool) as tm:
            (first, *_) = tm.create_task(record_tasks(3, 6.0))
        worker = start_worker("--pool", pool, "--pool-name", "gone", "--tracking", tracking, "--train-func",
                              "pool_task_funcs:record_run", "--until-empty", "--store-wait", "3",
                              home=tmp_path / "home", log=tmp_path / "worker.log")
        try:
            with TaskManager("gone", pool) as tm:
                deadline = time.monotonic() + 120
                while not tm.query({"status": "running"}) and time.monotonic() < deadline:
                    time.sleep(0.2)
                time.sleep(1.0)  # the run is started, its task sleeping
                srv.stop()
                t0 = time.monotonic()
                err = worker.communicate(timeout=120)[1].decode()
                stopped_after = time.monotonic() - t0
                row = next(r for r in tm.query() if r["_id"] == first)
                stat = tm.task_stat()
        finally:
            stop(worker)
    lines = [ln for ln in err.splitlines() if ln.startswith("qroll: error:")]
    assert worker.returncode != 0 and len(lines) == 1, err
    assert "http://qroll:***@127.0.0.1" in lines[0] and "s3cret" not in err
    assert stopped_after < 60, stopped_after
    assert row["status"] == "waiting" and row["attempts"] == 0, row
    assert stat == {"waiting": 3}


def one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("qroll: error: "), res.stderr
    return lines[0]


def test_an_unreachable_server_is_one_line_fast_and_writes_nothing(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    pool = f"sqlite:///{tmp_path}/pool.db"
    with TaskManager("p", pool) as tm:
        tm.create_task(record_tasks(1, 0.0))
        before = list(tm.query())
    home = tmp_path / "home"
    cfg = run_config(tmp_path, "unreachable")
    for args in (("run", str(cfg), "--tracking", closed, "--pool", pool),
                 ("worker", "--pool", pool, "--pool-name", "p", "--tracking", closed, "--until-empty"),
                 ("collect", "p", "--tracking", closed)):
        t0 = time.monotonic()
        res = qroll_cli(*args, home=home, timeout=120)
        elapsed = time.monotonic() - t0
        line = one_error_line(res)
        assert f"cannot reach the tracking server {closed}" in line, (args, line)
        assert elapsed < 30, (args, elapsed)  # seconds, not MLflow's minutes of retries
    with TaskManager("p", pool) as tm:
        assert list(tm.query()) == before
    assert not (home / "mlflow.db").exists() and not (home / "artifacts").exists()


# Python started with the PostgreSQL drivers unimportable, as on a machine without them.
NO_DRIVER = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("psycopg", "psycopg2", "psycopg_binary", "pg8000", "asyncpg"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Blocker())
from qroll.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_postgresql_store_without_a_driver_is_one_line(tmp_path):
    home = tmp_path / "home"
    url = "postgresql://bob:s3cret@127.0.0.1:5432/test"
    cfg = run_config(tmp_path, "nodriver")
    for args in (("collect", "x", "--tracking", url), ("run", str(cfg), "--tracking", url)):
        res = subprocess.run([sys.executable, "-c", NO_DRIVER, "--home", str(home), *args],
                             capture_output=True, text=True, timeout=120)
        line = one_error_line(res)
        assert "postgresql://bob:***@127.0.0.1:5432/test needs a postgresql driver and none is installed" in line
        assert "pip install 'qroll[postgres]'" in line and "s3cret" not in res.stderr
    assert not home.exists() or not any(home.iterdir())
