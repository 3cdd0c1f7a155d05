"""A real ``mlflow server`` for tests: started on a free loopback port, stopped, restarted.

The server proxies artifacts (``--artifacts-destination``), so new experiments get
``mlflow-artifacts:/`` locations and clients never see the destination folder. Its backend store is
any URI (a PostgreSQL database from :func:`fresh_database`, a SQLite file). The server and its
uvicorn workers run in a process group of their own, stopped by that group's id.

Use :func:`mlflow_server` (a context manager; module-scoped fixtures keep server starts few)::

    with fresh_database("qroll_srv") as backend, mlflow_server(backend, tmp / "artifacts", tmp) as srv:
        ExpManager(srv.url)          # http://127.0.0.1:PORT
        srv.stop(); srv.start()      # the same port and stores again
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pg_server import free_port
from requires import skip_or_fail

__all__ = ["MlflowServer", "PG_URL", "fresh_database", "mlflow_server"]

PG_URL = os.environ.get("QROLL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
START_TIMEOUT_S = 120.0  # a loaded 2-core machine takes 5-15 s to import MLflow and serve


class MlflowServer:
    """One ``mlflow server`` process group: backend URI, artifact destination, port, log file."""

    def __init__(self, backend_uri: str, artifacts: Path, log: Path, port: int | None = None) -> None:
        self.backend_uri = backend_uri
        self.artifacts = Path(artifacts)
        self.log = Path(log)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the server and wait (bounded) until it answers an experiment search."""
        mlflow = str(Path(sys.executable).with_name("mlflow"))
        cmd = [mlflow, "server", "--backend-store-uri", self.backend_uri, "--artifacts-destination",
               str(self.artifacts), "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        # The job runner (three huey consumers) serves MLflow's GenAI jobs: nothing a test needs,
        # and a second of CPU per start on a 2-core machine.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        probe = f"{self.url}/api/2.0/mlflow/experiments/search?max_results=1"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(probe, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"mlflow server on {self.url} did not answer within {timeout:.0f} s: "
                           f"{self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL after 15 s; the port is free after."""
        if self.proc is None or self.proc.poll() is not None and not self._group_alive():
            self.proc = None
            return
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 15.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self._group_alive():
                self.proc.poll()
                time.sleep(0.1)
            if not self._group_alive():
                break
        self.proc.wait(timeout=5)
        self.proc = None

    def _group_alive(self) -> bool:
        assert self.proc is not None
        self.proc.poll()  # reap the leader, so that only live members answer the signal 0
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop, stay down ``down_seconds``, start again on the same port."""
        self.stop()
        time.sleep(down_seconds)
        self.start()


@contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, log_dir: Path) -> Iterator[MlflowServer]:
    """A started server; stopped on exit, whatever happens."""
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    server = MlflowServer(backend_uri, artifacts, Path(log_dir) / "mlflow-server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def fresh_database(prefix: str, admin_url: str = PG_URL) -> Iterator[str]:
    """A new, empty database on the test PostgreSQL server (its URL), dropped on exit.

    Skipped when that server cannot be reached (failed under ``CI=true``), saying why.
    """
    try:
        import psycopg

        admin = psycopg.connect(admin_url, connect_timeout=5, autocommit=True)
    except Exception as exc:  # ImportError or any connection failure
        skip_or_fail(f"PostgreSQL at {admin_url} is not usable: {exc}")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base, _, query = admin_url.partition("?")
    try:
        yield f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    finally:
        # FORCE: a server or worker killed mid-test may leave sessions behind.
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
