"""The cluster guide, run as written on one machine, and disturbed on purpose.

Every command of ``docs/cluster.md`` runs here, in order, with the guide's variables pointing at
loopback addresses: a private PostgreSQL (the pool's database and MLflow's backend store), ``mlflow
server`` with an artifact destination, a two-node Ray cluster, ``qroll run --workers 0`` putting
the 60 tasks of ``cluster_rolling.yaml`` in the pool, and ``qroll worker`` both on Ray and by hand.
While they work, PostgreSQL is restarted (as a crash), the second Ray node is taken down (its
raylet and workers killed by pid) and worker processes are SIGKILLed at random. Then: every task
is ``done`` exactly once, each with one FINISHED run; the merged predictions equal ``TrainerR``'s
(``qroll run`` without a pool, in a home of its own) value by value; and ``qroll collect`` prints
the same table as after that undisturbed run (run ids aside: they differ between stores).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pg_server import free_port, pg_bin, private_postgres  # noqa: E402
from requires import require_module, skip_or_fail  # noqa: E402

from qroll import ExpManager, RecorderCollector, RollingGroup  # noqa: E402
from qroll.collect.merged import merged_runs, window_runs  # noqa: E402
from qroll.pool import TaskManager  # noqa: E402
from qroll.record import Recorder  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "cluster.md"
CONFIG = ROOT / "src" / "qroll" / "examples" / "cluster_rolling.yaml"
BIN = Path(sys.executable).parent
N_TASKS = 60
DEADLINE_S = 420  # the whole disturbed run, start to last task; it takes ~2 minutes here


def guide_commands(text: str) -> list[str]:
    """The commands of the guide's ``sh`` blocks, in order (one a line; comments dropped)."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        for line in block.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def test_guide_has_the_commands_this_test_expects():
    cmds = guide_commands(GUIDE.read_text())
    kinds = Counter(shlex.split(c)[0] + " " + shlex.split(c)[1] for c in cmds)
    assert kinds == {"createdb -h": 2, "mlflow server": 1, "ray start": 2, "qroll run": 1, "qroll worker": 2,
                     "qroll pool": 1, "qroll collect": 1, "ray stop": 1, "qroll store": 1}, kinds


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process serving port {port} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


def strip_run_ids(table: str) -> str:
    """A results table without its run-id column (8 hex digits) and its header's store name."""
    lines = [ln for ln in table.splitlines() if "tracking" not in ln]
    return "\n".join(re.sub(r"│ [0-9a-f]{8} │", "│ - │", ln) for ln in lines)


def merged_predictions(tracking: str, experiment: str) -> dict[str, pd.Series]:
    exp = ExpManager(tracking).get_exp(experiment, create=False)
    merged = RecorderCollector(exp, process_list=[RollingGroup()])()["pred"]
    out = {}
    for key, frame in merged.items():
        series = frame.iloc[:, 0]
        idx = series.index
        series.index = pd.MultiIndex.from_arrays(
            [pd.DatetimeIndex(idx.get_level_values(0)).as_unit("ns"), idx.get_level_values(1)], names=idx.names)
        out[str(key)] = series.sort_index()
    return out


class Disturber:
    """Restarts PostgreSQL, takes Ray's second node down and SIGKILLs Ray workers, each once due."""

    def __init__(self, pg, node_ip: str, rng: random.Random) -> None:
        self.pg, self.node_ip, self.rng = pg, node_ip, rng
        self.restarted = self.node_down = False
        self.kills = 0
        self.next_kill = time.monotonic() + 8

    @staticmethod
    def raylet_of(ip: str):
        """The raylet process of the node at ``ip``, or None."""
        import psutil

        for proc in psutil.process_iter(["cmdline"]):
            args = " ".join(proc.info["cmdline"] or []).split()  # Ray rewrites some titles into one string
            if args and args[0].endswith("/raylet") and f"--node_ip_address={ip}" in args:
                return proc
        return None

    @staticmethod
    def ray_workers() -> list:
        import psutil

        # A Ray worker process running a task is titled ``ray::<function>``; idle ones ``ray::IDLE``.
        return [p for p in psutil.process_iter(["cmdline"])
                if " ".join(p.info["cmdline"] or []).startswith("ray::_worker")]

    def step(self, done: int) -> None:
        import psutil

        if not self.restarted and done >= 10:
            self.pg.restart(mode="immediate", down_seconds=2)
            self.restarted = True
            print(f"PostgreSQL restarted at {done} done")
        elif self.restarted and not self.node_down and done >= 25:
            node = self.raylet_of(self.node_ip)
            assert node is not None, f"no raylet of the second node ({self.node_ip}) runs"
            victims = [node, *node.children(recursive=True)]
            for proc in victims:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.send_signal(signal.SIGKILL)
            self.node_down = True
            print(f"Ray node 2 down at {done} done ({len(victims)} processes)")
        elif time.monotonic() >= self.next_kill and done < N_TASKS - 5:
            workers = self.ray_workers()
            if workers:
                try:
                    self.rng.choice(workers).send_signal(signal.SIGKILL)
                    self.kills += 1
                except psutil.NoSuchProcess:
                    pass
            self.next_kill = time.monotonic() + self.rng.uniform(4, 8)


def pool_done(url: str) -> Counter[str]:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            rows = conn.execute("SELECT status, count(*) FROM qroll_tasks GROUP BY status").fetchall()
    except psycopg.Error:
        return Counter()  # down for its restart, or the pool's table not made yet
    return Counter({str(s): int(n) for s, n in rows})


def test_cluster_guide_under_faults(tmp_path):
    for tool in ("ray", "mlflow"):
        if not (BIN / tool).exists():
            skip_or_fail(f"{tool} is not installed in this environment ({BIN / tool}): pip install 'qroll[dev]'")
    if pg_bin("initdb") is None:
        pytest.skip("initdb not found: the PostgreSQL server package is not installed")
    require_module("psutil", "the test finds Ray's processes with psutil (in qroll[dev])")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}

    # The undisturbed reference: TrainerR in one process (qroll run without a pool), a home of its own.
    ref_home = tmp_path / "ref"
    ref = subprocess.run([str(BIN / "qroll"), "--home", str(ref_home), "run", str(CONFIG)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]
    ref_tracking = f"sqlite:///{ref_home}/mlflow.db"
    ref_table = subprocess.run([str(BIN / "qroll"), "collect", "cluster_rolling", "--tracking", ref_tracking],
                               env=env, capture_output=True, text=True, timeout=120, check=True).stdout

    ray_tmp = Path(tempfile.mkdtemp(prefix="qr", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    home = tmp_path / "home"
    background: list[subprocess.Popen[bytes]] = []
    logs = tmp_path / "logs"
    logs.mkdir()
    with private_postgres(tmp_path / "pg") as pg:
        env.update(DB_HOST="127.0.0.1", DB_PORT=str(pg.port), TRACKING_HOST="127.0.0.1",
                   TRACKING_PORT=str(free_port()), ARTIFACTS=str(tmp_path / "artifacts"), HEAD_IP="127.0.0.2", NODE_IP="127.0.0.3",
                   RAY_PORT=str(free_port()), CONFIG=str(CONFIG), QROLL_HOME=str(home), RAY_TMPDIR=str(ray_tmp),
                   # An earlier local ``ray.init`` on this machine leaves ~/.ray/auth_token, after which
                   # a head started here asks for tokens that a joining node does not send.
                   RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
        pool_url = f"postgresql://postgres@127.0.0.1:{pg.port}/qroll_pool"
        tracking = f"http://127.0.0.1:{env['TRACKING_PORT']}"

        def start(cmd: str, name: str) -> subprocess.Popen[bytes]:
            with (logs / f"{name}.log").open("wb") as log:
                proc = subprocess.Popen(["bash", "-c", cmd], env=env, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=tmp_path, start_new_session=True)
            background.append(proc)
            return proc

        driver = None
        workers: list[subprocess.Popen[bytes]] = []
        last: list[str] = []
        try:
            for n, cmd in enumerate(guide_commands(GUIDE.read_text())):
                if cmd.startswith(("ray stop", "qroll pool", "qroll collect")):
                    last.append(cmd)  # after the work: results, then the cluster's end
                elif cmd.startswith("qroll worker"):
                    workers.append(start(cmd, f"worker{n}"))  # the guide's two ways, side by side
                elif cmd.endswith("&"):
                    proc = start(cmd[:-1], f"cmd{n}")
                    if cmd.startswith("mlflow server"):
                        wait_port(int(env["TRACKING_PORT"]), 120, proc)
                    if cmd.startswith("qroll run"):
                        driver = proc
                else:
                    done = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True,
                                          timeout=180, cwd=tmp_path)
                    assert done.returncode == 0, f"{cmd}\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
            assert driver is not None and len(workers) == 2

            disturber = Disturber(pg, env["NODE_IP"], random.Random(0))
            t0 = time.monotonic()
            while time.monotonic() - t0 < DEADLINE_S:
                stat = pool_done(pool_url)
                if stat["done"] == N_TASKS and driver.poll() is not None:
                    break
                disturber.step(stat["done"])
                time.sleep(0.5)
            elapsed = time.monotonic() - t0
            assert driver.wait(timeout=60) == 0, "\n".join(p.read_text()[-2500:] for p in sorted(logs.iterdir()))
            for w in workers:
                w.wait(timeout=120)
            print(f"60 tasks in {elapsed:.0f} s; {disturber.kills} worker kills; PostgreSQL restarted: "
                  f"{disturber.restarted}; node 2 down: {disturber.node_down}")
            assert disturber.restarted and disturber.node_down

            results = [subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, timeout=180,
                                      cwd=tmp_path) for cmd in last if not cmd.startswith("ray stop")]
            for res in results:
                assert res.returncode == 0, res.stderr[-2000:]
            # The store and the pool are read while the server and the database still run.
            with TaskManager("cluster_rolling", pool_url) as tm:
                rows = list(tm.query())
            assert Counter(r["status"] for r in rows) == {"done": N_TASKS}
            assert len({r["res"]["recorder_id"] for r in rows}) == N_TASKS
            exp = ExpManager(tracking).get_exp("cluster_rolling", create=False)
            finished = Counter(r.tags["qroll.task_hash"] for r in window_runs(exp))
            assert len(finished) == N_TASKS and set(finished.values()) == {1}
            assert sorted(merged_runs(exp)) == ["LGBModel", "LinearModel"]  # evaluated after the last task
            assert exp.list_recorders(status={Recorder.STATUS_R}) == []

            # Same numbers as the undisturbed TrainerR, value by value, and the same results table.
            got, want = merged_predictions(tracking, "cluster_rolling"), merged_predictions(ref_tracking, "cluster_rolling")
            assert got.keys() == want.keys() and len(got) == 2
            for key in want:
                pd.testing.assert_series_equal(got[key], want[key], check_exact=True)
            collect_out = results[-1].stdout
            assert strip_run_ids(collect_out) == strip_run_ids(ref_table)
        finally:
            for cmd in last:
                if cmd.startswith("ray stop"):
                    subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, timeout=120)
            for proc in background:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            shutil.rmtree(ray_tmp, ignore_errors=True)
