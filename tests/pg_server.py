"""A private PostgreSQL server for tests that stop, restart or break it without disturbing others.

``initdb`` into a temporary folder and ``pg_ctl`` on a free loopback port: both ship with the
machine's PostgreSQL package (``/usr/lib/postgresql/<v>/bin``). PostgreSQL refuses to run as root,
so under root the server runs as the ``postgres`` user (``runuser``). Trust authentication,
loopback only: nothing outside this machine can reach it.

Use :func:`private_postgres` (a context manager) or the ``private_pg`` fixture of a test module::

    with private_postgres() as pg:
        url = pg.url                # postgresql://postgres@127.0.0.1:PORT/postgres
        pg.create_database("pool")  # postgresql://postgres@127.0.0.1:PORT/pool
        pg.restart(mode="immediate")  # as a crash: every connection is cut
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["PrivatePostgres", "pg_bin", "private_postgres"]


def pg_bin(tool: str) -> str | None:
    """The path of a PostgreSQL server tool (``initdb``, ``pg_ctl``), or ``None``."""
    found = shutil.which(tool)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    return candidates[-1] if candidates else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """One PostgreSQL server of a test's own: data folder, port, start/stop/restart."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.data = self.root / "pgdata"
        self.sockets = self.root / "pgsock"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self._as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        full = ["runuser", "-u", "postgres", "--", *cmd] if self._as_root else list(cmd)
        return subprocess.run(full, check=check, capture_output=True, text=True, timeout=timeout)

    def init(self) -> None:
        initdb = pg_bin("initdb")
        if initdb is None:
            pytest.skip("initdb not found: the PostgreSQL server package is not installed")
        for folder in (self.root, self.sockets):
            folder.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
            self.root.chmod(0o755)
        self._run(initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync",
                  "-E", "UTF8", "--locale=C")

    def start(self) -> None:
        pg_ctl = pg_bin("pg_ctl")
        assert pg_ctl is not None
        # fsync off: this server holds test data only, and a stop "-m immediate" is not a power cut,
        # so crash recovery still finds every committed transaction in the OS's buffers.
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.sockets} -c fsync=off "
                   "-c max_connections=200 -c shared_buffers=32MB")
        self._run(pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (connections closed cleanly) or ``immediate`` (a crash)."""
        pg_ctl = pg_bin("pg_ctl")
        assert pg_ctl is not None
        self._run(pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self, mode: str = "fast", down_seconds: float = 0.0) -> None:
        """Stop the server, stay down ``down_seconds``, start it again on the same port."""
        self.stop(mode)
        if down_seconds:
            time.sleep(down_seconds)
        self.start()

    def is_running(self) -> bool:
        pg_ctl = pg_bin("pg_ctl")
        assert pg_ctl is not None
        return self._run(pg_ctl, "-D", str(self.data), "status", check=False).returncode == 0

    def create_database(self, name: str) -> str:
        """Create database ``name``; its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)


@contextmanager
def private_postgres(root: Path | None = None) -> Iterator[PrivatePostgres]:
    """A started private server; stopped (immediately) and removed on exit, whatever happens.

    Its folder is a new one under ``/tmp`` (``root`` is ignored and kept for callers passing a
    test's ``tmp_path``): pytest's temporary folders are private to their owner, and under root
    the server runs as ``postgres``, which could not enter them.
    """
    folder = Path(tempfile.mkdtemp(prefix="qroll-pg-", dir="/tmp"))
    folder.chmod(0o755)
    pg = PrivatePostgres(folder / "server")
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        pg.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)
