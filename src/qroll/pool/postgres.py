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

Restarts. A connection lost mid-call (the server restarted or crashed, a network cut) is
reopened with backoff (0.1 s doubling to 2 s) for up to ``reconnect_seconds`` (default 60; set
``?reconnect_seconds=N`` in the URL), and the call is made again; after that it raises
:class:`~qroll.errors.PoolConnectionError`. Each primitive is safe to make again even when its
first try committed but its answer was lost: a claim looks first for the task its lease token
already holds (so no task is left leased to nobody); a finish looks for the row its first try
wrote (same time, status and result), so a stored result is neither dropped nor reported as a
lost lease; a heartbeat is idempotent, and a lease that expired and was requeued meanwhile is
fenced as ever. Leases are extended by the time the outage took. Opening a pool does not wait:
an unreachable server at start is a clear error within ``CONNECT_TIMEOUT_S``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

from qroll.errors import PoolConnectionError, PoolError, QrollError
from qroll.messages import one_line, scrub
from qroll.pool.backend import KEEP, Dialect, Runner, SQLBackend
from qroll.pool.records import Task, TaskStatus

__all__ = ["BACKOFF_FIRST_S", "BACKOFF_MAX_S", "CONNECT_TIMEOUT_S", "DEFAULT_RECONNECT_S", "PostgresBackend"]

logger = logging.getLogger("qroll.pool")

CONNECT_TIMEOUT_S = 5  # seconds to wait for the server before saying it is unreachable
DEFAULT_RECONNECT_S = 60.0  # seconds a call keeps reconnecting to a lost server before it gives up
BACKOFF_FIRST_S = 0.1  # seconds before the first reconnection; doubled after each failure...
BACKOFF_MAX_S = 2.0  # ...up to this, so a server back after a restart is found within ~2 s
_SCHEMA_LOCK = 0x71_72_6F_6C_6C  # advisory lock id ("qroll") taken while creating the schema
# Joined into the claim with async_claims=1: this transaction alone commits without waiting for the
# WAL flush. A one-row subquery in FROM is evaluated; an unreferenced CTE would not be.
_ASYNC_CLAIM = ", (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit"
_TRUE, _FALSE = ("1", "true", "on", "yes"), ("0", "false", "off", "no")
T = TypeVar("T")


def _split_qroll_options(conninfo: str) -> tuple[str, dict[str, Any]]:
    """The libpq URL without qroll's own parameters, and their values.

    qroll's parameters: ``async_claims`` (boolean, default off) and ``reconnect_seconds`` (how
    long a call reconnects to a lost server, default 60).

    Examples
    --------
    >>> _split_qroll_options("postgresql://h/db?async_claims=1&sslmode=disable&reconnect_seconds=5")
    ('postgresql://h/db?sslmode=disable', {'async_claims': True, 'reconnect_seconds': 5.0})
    >>> _split_qroll_options("postgresql://h/db")
    ('postgresql://h/db', {'async_claims': False, 'reconnect_seconds': 60.0})
    """
    options: dict[str, Any] = {"async_claims": False, "reconnect_seconds": DEFAULT_RECONNECT_S}
    base, sep, query = conninfo.partition("?")
    if not sep:
        return conninfo, options
    kept = []
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == "async_claims":
            if value.lower() not in _TRUE + _FALSE:
                raise PoolConnectionError(f"the task pool URL parameter async_claims={value!r} is not a "
                                          "boolean: write async_claims=1 or async_claims=0")
            options["async_claims"] = value.lower() in _TRUE
        elif key == "reconnect_seconds":
            try:
                options["reconnect_seconds"] = float(value)
                if not options["reconnect_seconds"] >= 0:
                    raise ValueError
            except ValueError:
                raise PoolConnectionError(
                    f"the task pool URL parameter reconnect_seconds={value!r} is not a number of seconds "
                    "(0 or more): write e.g. reconnect_seconds=120") from None
        else:
            kept.append(pair)
    return base + ("?" + "&".join(kept) if kept else ""), options


def _as_text(data: Any) -> str:
    return data if isinstance(data, str) else bytes(data).decode("utf-8")


class _Lost(PoolConnectionError):
    """The connection broke during a statement (internal: the retry loop reconnects)."""


class PostgresBackend(SQLBackend):
    """The pool in a PostgreSQL database (see the module docstring); thread-safe in a process.

    Attributes
    ----------
    reconnect_seconds : float
        How long, in seconds, a call reconnects to a lost server before it raises
        :class:`~qroll.errors.PoolConnectionError` (URL parameter ``reconnect_seconds``).
    """

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
        self._psycopg, self._dict_row, self._set_json_loads = psycopg, dict_row, set_json_loads
        self._errors = psycopg.Error
        self._operational = psycopg.OperationalError
        self._lock = threading.RLock()
        self._conninfo, options = _split_qroll_options("postgresql://" + url.split("://", 1)[1])
        self.async_claims: bool = options["async_claims"]
        self.reconnect_seconds: float = options["reconnect_seconds"]
        self.claim_parts = {"claim_from": _ASYNC_CLAIM if self.async_claims else ""}
        try:
            self._conn = self._connect(CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise PoolConnectionError(
                f"cannot connect to the task pool at {self.masked_url}: {scrub(one_line(exc), url)}; "
                f"check the host, port, database name and credentials (waited {CONNECT_TIMEOUT_S} s)"
            ) from exc
        try:
            with self._tx(atomic=True) as run:
                # Several workers may open a fresh database at once: create the schema one at a time.
                run(None, {}, sql=f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
                self._init_schema(run)
        except BaseException:
            self._conn.close()
            raise

    def _connect(self, timeout: float) -> Any:
        conn = self._psycopg.connect(self._conninfo, autocommit=True, connect_timeout=max(1, round(timeout)),
                                     row_factory=self._dict_row)
        # JSON columns come back as text, as from SQLite, so records decode them one way.
        self._set_json_loads(_as_text, conn)
        return conn

    @contextmanager
    def _tx(self, atomic: bool = True) -> Iterator[Runner]:
        with self._lock:
            conn = self._conn

            def run(name: str | None, params: dict[str, Any], where: str = "",
                    sql: str | None = None, **parts: str) -> list[dict[str, Any]]:
                cur = conn.execute(sql if sql is not None else self.dialect.query(name or "", where, **parts),
                                   params or None)
                # pgresult.nfields, not description: description builds a Column per field, per call.
                if cur.pgresult is None or not cur.pgresult.nfields:
                    return [{}] * max(cur.rowcount, 0)
                return cur.fetchall()

            try:
                with conn.transaction() if atomic else nullcontext():
                    yield run
            except QrollError:
                raise
            except self._operational as exc:
                raise _Lost(
                    f"lost the task pool at {self.masked_url}: {scrub(one_line(exc), self.url)}"
                ) from exc
            except self._errors as exc:
                raise PoolError(
                    f"the task pool at {self.masked_url} failed: {scrub(one_line(exc), self.url)}"
                ) from exc

    # -- reconnecting -------------------------------------------------------------------------
    def _reconnect(self, time_left: float) -> None:
        """Replace a broken connection (another thread may have done it already)."""
        with self._lock:
            if not (self._conn.closed or self._conn.broken):
                return  # a passing error (a deadlock, a cancel) on a live connection, or mended
            try:
                conn = self._connect(min(CONNECT_TIMEOUT_S, max(1.0, time_left)))
            except self._errors as exc:
                raise _Lost(f"cannot reconnect to the task pool at {self.masked_url}: "
                            f"{scrub(one_line(exc), self.url)}") from exc
            self._conn.close()
            self._conn = conn
            logger.warning("reconnected to the task pool at %s", self.masked_url)

    def _retrying(self, action: str, attempt: Callable[[int, dt.timedelta], T]) -> T:
        """``attempt(tries, outage)`` until it does not lose the connection, reconnecting between.

        ``tries`` counts earlier tries (0 first), ``outage`` is the time since the first one, by
        which a retried call extends the leases it writes. Gives up after ``reconnect_seconds``.
        """
        start = time.monotonic()
        delay, tries = BACKOFF_FIRST_S, 0
        while True:
            outage = dt.timedelta(seconds=time.monotonic() - start) if tries else dt.timedelta(0)
            try:
                if tries:
                    self._reconnect(self.reconnect_seconds - (time.monotonic() - start))
                return attempt(tries, outage)
            except _Lost as exc:
                waited = time.monotonic() - start
                if waited + delay > self.reconnect_seconds:
                    raise PoolConnectionError(
                        f"lost the task pool at {self.masked_url} and could not get it back in "
                        f"{waited:.0f} s ({tries + 1} tries) to {action}: {exc}; check that the server "
                        "is up, or allow longer outages with ?reconnect_seconds=N in the pool URL"
                    ) from exc
                if tries == 0:
                    logger.warning("%s; reconnecting for up to %g s to %s", exc, self.reconnect_seconds,
                                   action)
                time.sleep(delay)
                delay, tries = min(2 * delay, BACKOFF_MAX_S), tries + 1

    # -- primitives, each safe to make again after a lost answer ------------------------------
    def add(self, *args: Any, **kwargs: Any) -> Any:
        # INSERT ... ON CONFLICT DO NOTHING: a second try finds the tasks the first one added.
        return self._retrying("add tasks", lambda *_: SQLBackend.add(self, *args, **kwargs))

    def requeue_expired(self, *args: Any, **kwargs: Any) -> Any:
        return self._retrying("requeue expired leases",
                              lambda *_: SQLBackend.requeue_expired(self, *args, **kwargs))

    def select(self, *args: Any, **kwargs: Any) -> Any:
        return self._retrying("read tasks", lambda *_: SQLBackend.select(self, *args, **kwargs))

    def update(self, *args: Any, **kwargs: Any) -> Any:
        return self._retrying("update tasks", lambda *_: SQLBackend.update(self, *args, **kwargs))

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        return self._retrying("delete tasks", lambda *_: SQLBackend.delete(self, *args, **kwargs))

    def stats(self, *args: Any, **kwargs: Any) -> Any:
        return self._retrying("count tasks", lambda *_: SQLBackend.stats(self, *args, **kwargs))

    def pools(self) -> list[str]:
        return self._retrying("list pools", lambda *_: SQLBackend.pools(self))

    def heartbeat(self, pool: str, task_id: int, owner: str, *, now: dt.datetime,
                  lease_until: dt.datetime) -> bool:
        return self._retrying("renew a lease", lambda _, outage: SQLBackend.heartbeat(
            self, pool, task_id, owner, now=now + outage, lease_until=lease_until + outage))

    def _held(self, pool: str, owner: str, now: dt.datetime, lease_until: dt.datetime) -> Task | None:
        """The task an earlier try of a claim by ``owner`` took, its lease renewed; or ``None``."""
        with self._tx(atomic=False) as run:
            rows = run("held_by", {"pool": pool, "owner": owner})
            if not rows or not run("heartbeat", {"pool": pool, "id": rows[0]["id"], "owner": owner,
                                                 "now": now, "lease_until": lease_until}):
                return None
        return Task.from_row({**rows[0], "lease_expires": lease_until, "updated": now})

    def claim(self, pool: str, query: Mapping[str, Any] | None, *, status: str, owner: str,
              now: dt.datetime, lease_until: dt.datetime, requeue: bool = True,
              expired_before: dt.datetime | None = None) -> Task | None:
        def attempt(tries: int, outage: dt.timedelta) -> Task | None:
            held = self._held(pool, owner, now + outage, lease_until + outage) if tries else None
            return held or SQLBackend.claim(self, pool, query, status=status, owner=owner, now=now + outage,
                                            lease_until=lease_until + outage, requeue=requeue,
                                            expired_before=None if expired_before is None
                                            else expired_before + outage)

        return self._retrying("claim a task", attempt)

    def finish(self, pool: str, task_id: int, owner: str, *, status: str, now: dt.datetime,
               result: Any = KEEP, error: str | None = None, traceback: str | None = None,
               count_attempt: bool = False) -> TaskStatus | None:
        params = self._finish_params(pool, task_id, owner, status=status, now=now, result=result,
                                     error=error, traceback=traceback, count_attempt=count_attempt)

        def attempt(tries: int, outage: dt.timedelta) -> TaskStatus | None:
            with self._tx(atomic=False) as run:
                rows = run("finish", params)
                if not rows and tries:  # the first try may have committed before its answer was lost
                    rows = run("finished", params)
            return TaskStatus(rows[0]["status"]) if rows else None

        return self._retrying("end a lease", attempt)

    def finish_and_claim(self, pool: str, task_id: int, owner: str, *, status: str, result: Any,
                         query: Mapping[str, Any] | None, next_status: str, next_owner: str,
                         now: dt.datetime, lease_until: dt.datetime) -> tuple[bool, Task | None]:
        finish = self._finish_params(pool, task_id, owner, status=status, now=now, result=result)

        def attempt(tries: int, outage: dt.timedelta) -> tuple[bool, Task | None]:
            if tries:
                with self._tx(atomic=False) as run:
                    landed = bool(run("finished", finish))
                if landed:  # the result is stored; the claim that went with it may be too
                    until = lease_until + outage
                    return True, (self._held(pool, next_owner, now + outage, until) or SQLBackend.claim(
                        self, pool, query, status=next_status, owner=next_owner, now=now + outage,
                        lease_until=until, requeue=False))
            return SQLBackend.finish_and_claim(self, pool, task_id, owner, status=status, result=result,
                                               query=query, next_status=next_status, next_owner=next_owner,
                                               now=now, lease_until=lease_until + outage)

        return self._retrying("store a result", attempt)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
