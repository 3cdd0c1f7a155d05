"""The PostgreSQL task pool (psycopg 3: ``pip install 'qroll[postgres]'``), for many machines.

URL: ``postgresql://user:password@host:5432/dbname`` (``postgres://`` too; libpq parameters such
as ``?options=-csearch_path%3Dmyschema`` pass through). A claim is one statement that locks the
best task with ``FOR UPDATE SKIP LOCKED``, so workers never wait on each other's rows. Statements
run in autocommit mode, each its own transaction, except batches that must be all-or-nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from qroll.errors import PoolConnectionError, PoolError, QrollError
from qroll.pool.backend import Dialect, Runner, SQLBackend
from qroll.record.store import one_line, scrub

__all__ = ["CONNECT_TIMEOUT_S", "PostgresBackend"]

CONNECT_TIMEOUT_S = 5  # seconds to wait for the server before saying it is unreachable
_SCHEMA_LOCK = 0x71_72_6F_6C_6C  # advisory lock id ("qroll") taken while creating the schema


def _as_text(data: Any) -> str:
    return data if isinstance(data, str) else bytes(data).decode("utf-8")


class PostgresBackend(SQLBackend):
    """The pool in a PostgreSQL database (see the module docstring); thread-safe in a process."""

    dialect = Dialect("postgresql")
    claim_requeues = True

    def __init__(self, url: str) -> None:
        super().__init__(url)
        try:
            import psycopg
            from psycopg.rows import dict_row
            from psycopg.types.json import set_json_loads
        except ImportError as exc:
            raise PoolConnectionError(
                f"the task pool at {self.masked_url} needs psycopg 3: pip install 'qroll[postgres]'"
            ) from exc
        self._errors = psycopg.Error
        self._operational = psycopg.OperationalError
        self._lock = threading.RLock()
        conninfo = "postgresql://" + url.split("://", 1)[1]  # drop "postgres", "+psycopg" spellings
        try:
            self._conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                                         row_factory=dict_row)
        except psycopg.Error as exc:
            raise PoolConnectionError(
                f"cannot connect to the task pool at {self.masked_url}: {scrub(one_line(exc), url)}; "
                f"check the host, port, database name and credentials (waited {CONNECT_TIMEOUT_S} s)"
            ) from exc
        # JSON columns come back as text, as from SQLite, so records decode them one way.
        set_json_loads(_as_text, self._conn)
        try:
            with self._tx(atomic=True) as run:
                # Several workers may open a fresh database at once: create the schema one at a time.
                run(None, {}, sql=f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
                self._init_schema(run)
        except BaseException:
            self._conn.close()
            raise

    @contextmanager
    def _tx(self, atomic: bool = True) -> Iterator[Runner]:
        conn = self._conn

        def run(name: str | None, params: dict[str, Any], where: str = "",
                sql: str | None = None) -> list[dict[str, Any]]:
            cur = conn.execute(sql if sql is not None else self.dialect.query(name or "", where),
                               params or None)
            if cur.description is None:
                return [{}] * max(cur.rowcount, 0)
            return cur.fetchall()

        with self._lock:
            try:
                with conn.transaction() if atomic else nullcontext():
                    yield run
            except QrollError:
                raise
            except self._operational as exc:
                raise PoolConnectionError(
                    f"lost the task pool at {self.masked_url}: {scrub(one_line(exc), self.url)}"
                ) from exc
            except self._errors as exc:
                raise PoolError(
                    f"the task pool at {self.masked_url} failed: {scrub(one_line(exc), self.url)}"
                ) from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()
