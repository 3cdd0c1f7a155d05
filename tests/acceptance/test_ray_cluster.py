"""`qroll worker --ray-address` on a real two-node Ray cluster (two `ray start` on this machine):
workers spread over both nodes with `--ray-cpus` CPUs each; a worker process SIGKILLed and then the
whole second node taken down lose no task; an address that is not a Ray cluster exits 2 at once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from ray_cluster import RayCluster, RayNode, ray_cluster
from ray_task_funcs import TAG_END, TAG_NODE, TAG_PROC, TAG_START
from requires import require_ray, skip_or_fail

from qroll.pool import TaskManager
from qroll.record import ExpManager, Recorder
from qroll.record.tags import TAG_HASH

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the cluster helper reads /proc")]
require_ray()

HERE = Path(__file__).resolve().parent
PYTHONPATH = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])


def worker_cmd(home: Path, url: str, tracking: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "qroll", "--home", str(home), "worker", "--pool", url, "--pool-name", "r",
            "--experiment", "r", "--tracking", tracking, "--train-func", "ray_task_funcs:record_where",
            "--until-empty", "--idle-poll", "0.2", *args]


def make_pool(url: str, n: int, sleep: float) -> list[int]:
    with TaskManager("r", url, max_attempts=10) as tm:
        ids = tm.create_task([{"model": {"class": "Noop"}, "dataset": {"kwargs": {}}, "n": i, "sleep": sleep}
                              for i in range(n)])
    return [i for i in ids if i is not None]


def check_done_once(url: str, tracking: str, ids: list[int]) -> tuple[list[dict[str, Any]], list[Recorder]]:
    """Every task ``done`` once, referencing its one FINISHED run; no run left RUNNING."""
    with TaskManager("r", url) as tm:
        rows = list(tm.query())
    assert sorted(r["_id"] for r in rows) == sorted(ids) and {r["status"] for r in rows} == {"done"}
    exp = ExpManager(tracking).get_exp("r")
    finished = exp.list_recorders(status={Recorder.STATUS_FI})
    per_hash = Counter(r.tags[TAG_HASH] for r in finished)
    runs = []
    for row in rows:
        rec = exp.get_recorder(row["res"]["recorder_id"])
        assert rec.status == "FINISHED" and rec.params["n"] == str(row["def"]["n"])
        assert per_hash[rec.tags[TAG_HASH]] == 1, f"task {row['_id']} has {per_hash[rec.tags[TAG_HASH]]} runs"
        runs.append(rec)
    assert exp.list_recorders(status={Recorder.STATUS_R}) == []
    return rows, runs


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])  # an end sorts first
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_workers_spread_over_both_nodes_each_with_its_ray_cpus(tmp_path):
    # Nodes of 2 CPUs and --ray-cpus 2: a node runs one worker at a time, so 4 workers run 2 at once.
    url, tracking = f"sqlite:///{tmp_path}/pool.db", f"sqlite:///{tmp_path}/mlflow.db"
    ids = make_pool(url, 16, sleep=0.5)
    with ray_cluster(cpus=(2, 2), env={"PYTHONPATH": PYTHONPATH}) as cluster:
        print(f"cluster up: ray start took {cluster.start_seconds} s")
        t0 = time.monotonic()
        res = subprocess.run(worker_cmd(tmp_path / "home", url, tracking, "--ray-address", cluster.address,
                                        "--concurrency", "4", "--ray-cpus", "2", "--lease-seconds", "20"),
                             capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": PYTHONPATH})
        print(f"16 tasks on 4 workers in {time.monotonic() - t0:.1f} s")
        assert res.returncode == 0, res.stderr[-3000:]
        assert "4 Ray worker(s) finished; pool r: done 16" in res.stdout
        _, runs = check_done_once(url, tracking, ids)
        by_node = Counter(cluster.node_of(r.tags[TAG_NODE]).name for r in runs)
        print(f"tasks per node: {dict(by_node)}; worker processes: {len({r.tags[TAG_PROC] for r in runs})}")
        assert set(by_node) == {"head", "node2"}
        for node in cluster.nodes:  # --ray-cpus 2 of a node's 2: never two tasks at once on one node
            spans = [(float(r.tags[TAG_START]), float(r.tags[TAG_END])) for r in runs
                     if r.tags[TAG_NODE] == node.node_id]
            assert most_at_once(spans) == 1, node.name
        assert most_at_once([(float(r.tags[TAG_START]), float(r.tags[TAG_END])) for r in runs]) <= 2


def busy_worker(cluster: RayCluster, node: RayNode, url: str, tracking: str, not_pids: set[int]) -> int | None:
    """The pid of a pool worker (a Ray worker process) on ``node`` that has finished a run and
    holds a task's lease now."""
    on_node = cluster.worker_pids(node, "ray::_worker") - not_pids
    with TaskManager("r", url) as tm:
        # A lease owner reads HOST:PID, or HOST:PID:TOKEN where each claim has a token of its own.
        owners = {int(str(t["lease_owner"]).split(":")[1]) for t in tm.query({"status": "running"})}
    busy = on_node & owners
    if not busy or not Path(tracking.removeprefix("sqlite:///")).exists():  # the workers create the store
        return None
    exp = ExpManager(tracking).get_exp("r")
    for pid in busy:
        if exp.list_recorders(status={Recorder.STATUS_FI}, tags={TAG_PROC: f"{socket.gethostname()}:{pid}"}):
            return pid
    return None


def wait_for(what: str, probe: Callable[[], int | None], proc: subprocess.Popen[bytes], log: Path,
             timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := probe()) is not None:
            return found
        assert proc.poll() is None, f"qroll worker ended before {what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"no {what} after {timeout} s:\n{log.read_text()[-3000:]}")


def test_a_killed_worker_and_a_lost_node_lose_no_task(tmp_path):
    url, tracking = f"sqlite:///{tmp_path}/pool.db", f"sqlite:///{tmp_path}/mlflow.db"
    ids = make_pool(url, 20, sleep=0.5)
    log = tmp_path / "worker.log"
    with ray_cluster(cpus=(1, 1), env={"PYTHONPATH": PYTHONPATH}) as cluster, log.open("wb") as out:
        node2 = cluster.nodes[1]
        t0 = time.monotonic()
        proc = subprocess.Popen(worker_cmd(tmp_path / "home", url, tracking, "--ray-address", cluster.address,
                                           "--concurrency", "2", "--ray-cpus", "1", "--lease-seconds", "3"),
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": PYTHONPATH})
        try:
            # 1. A worker process on node 2 that has done a task is SIGKILLed in the middle of the next ...
            victim = wait_for("busy worker on node 2", lambda: busy_worker(cluster, node2, url, tracking, set()),
                              proc, log)
            os.kill(victim, signal.SIGKILL)
            t_kill = time.monotonic() - t0
            # ... and Ray starts it again on node 2 (the one free CPU): the new process takes a task.
            replacement = wait_for("busy replacement worker on node 2",
                                   lambda: busy_worker(cluster, node2, url, tracking, {victim}), proc, log)
            t_back = time.monotonic() - t0
            # 2. The whole of node 2 (raylet, workers, daemons) goes down in the middle of a task.
            killed = cluster.kill_node(node2)
            t_node = time.monotonic() - t0
            rc = proc.wait(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        elapsed = time.monotonic() - t0
    print(f"ray start took {cluster.start_seconds} s; worker {victim} killed at {t_kill:.1f} s, replaced by "
          f"{replacement} at {t_back:.1f} s; node 2 ({len(killed)} processes) killed at {t_node:.1f} s; "
          f"all done after {elapsed:.1f} s")
    assert replacement in killed and victim != replacement
    assert rc == 0, log.read_text()[-3000:]
    assert "2 Ray worker(s) finished; pool r: done 20" in log.read_text()
    rows, runs = check_done_once(url, tracking, ids)
    # The tasks held by the two killed processes were run again, to the end, by other workers.
    retried = [r for r in rows if r["attempts"] > 0]
    assert len(retried) >= 2, rows
    nodes = Counter(cluster.node_of(r.tags[TAG_NODE]).name for r in runs)
    print(f"tasks per node: {dict(nodes)}; attempts: {Counter(r['attempts'] for r in rows)}")
    assert nodes["head"] >= 1 and nodes["node2"] >= 2  # one by the killed worker, one by its replacement


def test_a_failed_task_makes_the_ray_workers_exit_1(tmp_path):
    url, tracking = f"sqlite:///{tmp_path}/pool.db", f"sqlite:///{tmp_path}/mlflow.db"
    with TaskManager("r", url, max_attempts=1) as tm:
        tm.create_task([{"model": {"class": "Noop"}, "dataset": {"kwargs": {}}, "n": i, "sleep": 0, "fail": i == 1}
                        for i in range(3)])
    res = subprocess.run(worker_cmd(tmp_path / "home", url, tracking, "--ray", "--concurrency", "1"),
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": PYTHONPATH})
    assert res.returncode == 1, res.stderr[-3000:]
    assert "1 Ray worker(s) finished; pool r: done 2, failed 1" in res.stdout
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("qroll worker: pool r: the Ray workers had 1 failed task attempt(s)"), res.stderr
    assert "2 done" in last


@pytest.fixture(params=["postgresql", "silent"])
def not_ray(request):
    """A listening TCP port where no Ray cluster is: PostgreSQL's, or a socket that never answers."""
    if request.param == "postgresql":
        # The test server of the pool suite, which CI=true requires (pool_fixtures.pg_admin).
        pg = urlsplit(os.environ.get("QROLL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"))
        address = f"{pg.hostname}:{pg.port or 5432}"
        try:
            socket.create_connection((pg.hostname, pg.port or 5432), timeout=2).close()
        except OSError as exc:
            skip_or_fail(f"no PostgreSQL on {address} to stand for another service: {exc}")
        yield address
        return
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"127.0.0.1:{server.getsockname()[1]}"


def test_an_address_that_is_not_a_ray_cluster_exits_2_at_once_writing_nothing(not_ray, tmp_path):
    url, tracking = f"sqlite:///{tmp_path}/pool.db", f"sqlite:///{tmp_path}/store/mlflow.db"
    ids = make_pool(url, 2, sleep=0)
    before = (tmp_path / "pool.db").read_bytes()
    t0 = time.monotonic()
    res = subprocess.run(worker_cmd(tmp_path / "home", url, tracking, "--ray-address", not_ray),
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": PYTHONPATH})
    elapsed = time.monotonic() - t0
    print(f"{not_ray}: exit {res.returncode} after {elapsed:.1f} s: {res.stderr.strip()}")
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith(f"qroll: error: {not_ray} is not a Ray cluster")
    assert elapsed < 60  # Ray itself retries for minutes; the check answers in milliseconds (5 s if silent)
    assert (tmp_path / "pool.db").read_bytes() == before and len(ids) == 2
    assert not (tmp_path / "store").exists() and not (tmp_path / "home").exists()
