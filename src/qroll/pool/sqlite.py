"""The SQLite task pool: one file, write-ahead logging, safe for many processes on one machine.

URLs follow SQLAlchemy's and MLflow's spelling: ``sqlite:///relative/pool.db``,
``sqlite:////absolute/pool.db``, ``sqlite:///:memory:`` (one process only). Each claim runs in a
``BEGIN IMMEDIATE`` transaction, so two processes never take the same task; a busy database is
waited for (busy timeout) rather than failing.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qroll.errors import PoolConnectionError, PoolError, QrollError
from qroll.messages import one_line
from qroll.pool.backend import Dialect, Runner, SQLBackend

__all__ = ["BUSY_TIMEOUT_S", "SQLiteBackend", "sqlite_path"]

BUSY_TIMEOUT_S = 30.0  # seconds a statement waits for another process's write lock


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///`` URL.

    Examples
    --------
    >>> sqlite_path("sqlite:///runs/pool.db"), sqlite_path("sqlite:////tmp/pool.db")
    ('runs/pool.db', '/tmp/pool.db')
    """
    prefix = "sqlite:///"
    if not url.lower().startswith(prefix) or len(url) == len(prefix):
        raise PoolConnectionError(
            f"the task pool URL {url!r} is not a SQLite file URL: write sqlite:///relative/pool.db "
            "or sqlite:////absolute/pool.db"
        )
    return url[len(prefix):].split("?", 1)[0]


def _time(value: dt.datetime) -> str:
    # One fixed UTC format with microseconds, so that comparing text compares instants.
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


class SQLiteBackend(SQLBackend):
    """The pool in a SQLite file (see the module docstring); thread-safe within a process."""

    dialect = Dialect("sqlite")

    def __init__(self, url: str) -> None:
        super().__init__(url)
        path = sqlite_path(url)
        self._lock = threading.RLock()
        try:
            if path != ":memory:":
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves; the Python module's implicit
            # transactions would start them deferred, and deferred writers deadlock on upgrade.
            self._conn = sqlite3.connect(str(Path(path).expanduser()) if path != ":memory:" else path,
                                         timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                         check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable against a crashed or killed process in WAL mode (only a power cut
            # can lose the last commits), and saves an fsync per claim.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        except (OSError, sqlite3.Error) as exc:
            raise PoolConnectionError(
                f"cannot open the task pool at {self.masked_url}: {one_line(exc)}; check that the "
                "directory exists and is writable"
            ) from exc
        try:
            with self._tx(atomic=True) as run:
                self._init_schema(run)
        except BaseException:
            self._conn.close()
            raise

    def _time(self, value: dt.datetime) -> Any:
        return _time(value)

    @contextmanager
    def _tx(self, atomic: bool = True) -> Iterator[Runner]:
        conn = self._conn

        def run(name: str | None, params: dict[str, Any], where: str = "",
                sql: str | None = None, **parts: str) -> list[dict[str, Any]]:
            cur = conn.execute(sql if sql is not None else self.dialect.query(name or "", where, **parts),
                               params)
            if cur.description is None:
                return [{}] * max(cur.rowcount, 0)
            return [dict(row) for row in cur.fetchall()]

        with self._lock:
            try:
                if atomic:
                    conn.execute("BEGIN IMMEDIATE")
                try:
                    yield run
                except BaseException:
                    if atomic and conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                if atomic:
                    conn.execute("COMMIT")
            except QrollError:
                raise
            except sqlite3.Error as exc:
                raise PoolError(f"the task pool at {self.masked_url} failed: {one_line(exc)}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()
