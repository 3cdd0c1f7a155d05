"""The PostgreSQL task pool (psycopg 3: ``pip install 'qroll[postgres]'``), for many machines.

URL: ``postgresql://user:password@host:5432/dbname`` (``postgres://`` too; libpq parameters such
as ``?options=-csearch_path%3Dmyschema`` pass through). A claim is one statement that locks the
best task with ``FOR UPDATE SKIP LOCKED``, so workers never wait on each other's rows. Statements
run in autocommit mode, each its own transaction, except batches that must be all-or-nothing.

Durability. Every statement waits for its commit to reach disk (the server's
``synchronous_commit``, on by default), so a crash of the server loses nothing a call returned.
That flush is most of the cost of a claim (about 1 ms on a cloud disk). **Opt-in:**
``?async_claims=1`` in the URL commits *claims only* without waiting for the flush
(``synchronous_commit=off`` for that transaction); results, returns, failures, heartbeats and
requeues stay durable. Losing a claim is safe: a server crash can forget claims of the last
moments (at most ~3 × ``wal_writer_delay``); such a task is ``waiting`` again, and the worker that
held it can no longer commit (its lease is gone: fencing raises ``LeaseLostError``), so the task
is run again rather than lost or stored twice. A committed result always follows its claim in the
WAL, so its flush makes the claim durable too.
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
# Joined into the claim with async_claims=1: this transaction alone commits without waiting for the
# WAL flush. A one-row subquery in FROM is evaluated; an unreferenced CTE would not be.
_ASYNC_CLAIM = ", (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit"


def _split_qroll_options(conninfo: str) -> tuple[str, bool]:
    """The libpq URL without qroll's own ``async_claims`` parameter, and that parameter's value.

    Examples
    --------
    >>> _split_qroll_options("postgresql://h/db?async_claims=1&sslmode=disable")
    ('postgresql://h/db?sslmode=disable', True)
    >>> _split_qroll_options("postgresql://h/db")
    ('postgresql://h/db', False)
    """
    base, sep, query = conninfo.partition("?")
    if not sep:
        return conninfo, False
    kept, flag = [], False
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key != "async_claims":
            kept.append(pair)
        elif value.lower() in ("1", "true", "on", "yes"):
            flag = True
        elif value.lower() not in ("0", "false", "off", "no"):
            raise PoolConnectionError(f"the task pool URL parameter async_claims={value!r} is not a "
                                      "boolean: write async_claims=1 or async_claims=0")
    return base + ("?" + "&".join(kept) if kept else ""), flag


def _as_text(data: Any) -> str:
    return data if isinstance(data, str) else bytes(data).decode("utf-8")


class PostgresBackend(SQLBackend):
    """The pool in a PostgreSQL database (see the module docstring); thread-safe in a process."""

    dialect = Dialect("postgresql")

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
        conninfo, self.async_claims = _split_qroll_options("postgresql://" + url.split("://", 1)[1])
        self.claim_parts = {"claim_from": _ASYNC_CLAIM if self.async_claims else ""}
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
                sql: str | None = None, **parts: str) -> list[dict[str, Any]]:
            cur = conn.execute(sql if sql is not None else self.dialect.query(name or "", where, **parts),
                               params or None)
            # pgresult.nfields, not description: description builds a Column per field, per call.
            if cur.pgresult is None or not cur.pgresult.nfields:
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
