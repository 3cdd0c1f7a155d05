"""The storage boundary of the task pool: a few primitives, one registry, SQL kept in .sql files.

Everything :class:`~qroll.pool.manager.TaskManager` does is written once on top of the
:class:`PoolBackend` primitives (``add``, ``claim``, ``heartbeat``, ``finish``,
``requeue_expired``, ``select``, ``update``, ``delete``, ``stats``, ``pools``). A backend is
chosen by the URL's scheme (:func:`open_backend`); the two shipped ones share
:class:`SQLBackend` and differ only in their connection and their ``sql/*_<dialect>.sql`` files,
which hold the same named queries (``-- name: claim``).

Queries from users (Mongo-style ``{"status": "waiting", "def.model.class": {"$in": [...]}}``)
are compiled by :func:`build_where` into placeholders only: values are always bound.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Protocol

from qroll.config import task_hash, to_jsonable
from qroll.errors import PoolConnectionError, PoolQueryError, PoolSchemaError
from qroll.messages import mask_credentials
from qroll.pool.records import Task, TaskStatus

__all__ = [
    "KEEP",
    "SCHEMA_VERSION",
    "Dialect",
    "NewTask",
    "PoolBackend",
    "SQLBackend",
    "build_where",
    "load_queries",
    "open_backend",
    "register_backend",
    "supported_schemes",
]

#: The schema this qroll writes and reads; stored in ``qroll_meta.schema_version``.
SCHEMA_VERSION = 1
#: Migrations from a version to the next one, as a named query of the dialect's queries file.
#: Empty while there is only version 1.
MIGRATIONS: dict[int, str] = {}

#: Stand-in for "leave the stored result as it is" in :meth:`PoolBackend.finish`.
KEEP: Any = type("Keep", (), {"__repr__": lambda self: "KEEP"})()

# Query fields that map to a column, and how their values are checked.
COLUMNS = {
    "_id": "id",
    "status": "status",
    "priority": "priority",
    "attempts": "attempts",
    "max_attempts": "max_attempts",
    "lease_owner": "lease_owner",
    "task_hash": "task_hash",
}
JSON_ROOTS = ("def", "filter")  # ``filter`` is Qlib's queryable copy of ``def``; here they are one
OPERATORS = ("$eq", "$in", "$nin")
_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@dataclass(frozen=True, kw_only=True, slots=True)
class NewTask:
    """A task definition ready to be stored: its hash and canonical JSON."""

    task_hash: str
    definition: str
    priority: int = 0
    max_attempts: int = 3


@cache
def load_queries(dialect: str) -> dict[str, str]:
    """The named queries of ``sql/queries_<dialect>.sql``, name → SQL (no trailing ``;``).

    Examples
    --------
    >>> "claim" in load_queries("sqlite") and "claim" in load_queries("postgresql")
    True
    """
    text = resources.files("qroll.pool").joinpath("sql").joinpath(f"queries_{dialect}.sql").read_text("utf-8")
    parts = _NAME.split(text)
    pairs = zip(parts[1::2], parts[2::2], strict=True)
    return {name: body.strip().rstrip(";").strip() for name, body in pairs}


def load_schema(dialect: str) -> list[str]:
    """The statements of ``sql/schema_<dialect>.sql``, comments dropped."""
    text = resources.files("qroll.pool").joinpath("sql").joinpath(f"schema_{dialect}.sql").read_text("utf-8")
    code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    return [stmt.strip() for stmt in code.split(";") if stmt.strip()]


@dataclass(frozen=True)
class Dialect:
    """How one SQL dialect spells a placeholder and a JSON path."""

    name: str

    @property
    def queries(self) -> dict[str, str]:
        return load_queries(self.name)

    def param(self, name: str) -> str:
        return self.queries["fragment_param"].replace("{name}", name)

    def json_path(self, segments: Sequence[str]) -> Any:
        """The bound value naming a path into ``def``: a JSON path (SQLite) or a text array."""
        if self.name == "postgresql":
            return list(segments)
        return "$" + "".join(f"[{s}]" if s.isdigit() else f'."{s}"' for s in segments)

    def query(self, name: str, where: str = "", **parts: str) -> str:
        sql = self.queries[name].replace("{where}", where)
        for key, value in parts.items():
            sql = sql.replace("{" + key + "}", value)
        return sql


def _fields_help() -> str:
    return ", ".join([*COLUMNS, *JSON_ROOTS]) + " or a dotted path such as 'def.model.class'"


def _conditions(key: str, cond: Any) -> tuple[str, list[Any]]:
    if isinstance(cond, Mapping) and any(str(k).startswith("$") for k in cond):
        if len(cond) != 1 or next(iter(cond)) not in OPERATORS:
            raise PoolQueryError(
                f"the pool query {{{key!r}: {dict(cond)!r}}} uses an operator qroll does not support: "
                f"use a value (equality) or one of {', '.join(OPERATORS)}"
            )
        op, value = next(iter(cond.items()))
        if op in ("$in", "$nin"):
            if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple, set)):
                raise PoolQueryError(f"the pool query's {key!r}: {{{op!r}: {value!r}}} needs a list")
            return op[1:], list(value)
        return "eq", [value]
    return "eq", [cond]


def _column_value(key: str, value: Any) -> Any:
    if key == "status":
        try:
            return TaskStatus(value).value
        except ValueError:
            valid = ", ".join(s.value for s in TaskStatus)
            raise PoolQueryError(
                f"the pool query's status {value!r} is not a status: use one of {valid}") from None
    if key in ("_id", "priority", "attempts", "max_attempts"):
        try:
            if isinstance(value, bool) or int(value) != float(value):
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise PoolQueryError(f"the pool query's {key} {value!r} is not an integer") from None
    return value


def build_where(query: Mapping[str, Any] | None, dialect: Dialect) -> tuple[str, dict[str, Any]]:
    """Compile a Mongo-style query into `` AND ...`` SQL with placeholders, and their values.

    Parameters
    ----------
    query : mapping, optional
        Field → value (equality), ``{"$in": [values]}`` or ``{"$nin": [values]}``, all ANDed.
        Fields: ``_id``, ``status``, ``priority``, ``attempts``, ``max_attempts``, ``lease_owner``,
        ``task_hash``; ``def`` or
        ``filter`` with a whole task definition (matched by its hash); or a dotted path into the
        definition, ``def.model.class`` or Qlib's ``filter.model.class`` (a digit segment indexes a
        list). A path compares JSON values: ``"2017-01-02"`` matches a stored date, a missing key
        matches nothing.
    dialect : Dialect

    Returns
    -------
    sql : str
        Empty, or ``" AND cond AND ..."``, naming placeholders ``w0, w1, ...`` only.
    params : dict
        The placeholders' values.

    Raises
    ------
    PoolQueryError
        An unknown field (the message lists the valid ones), an unknown operator, a bad status or
        id, or a value that is not JSON.

    Examples
    --------
    >>> build_where({"status": "done", "def.model.class": {"$in": ["LGB", "Linear"]}}, Dialect("sqlite"))
    (" AND status = :w0 AND json_extract(def, :w1) IN (json_extract(:w2, '$'), json_extract(:w3, '$'))", \
{'w0': 'done', 'w1': '$."model"."class"', 'w2': '"LGB"', 'w3': '"Linear"'})
    """
    clauses: list[str] = []
    params: dict[str, Any] = {}

    def bind(value: Any) -> str:
        name = f"w{len(params)}"
        params[name] = value
        return dialect.param(name)

    for key, cond in (query or {}).items():
        key = str(key)
        op, values = _conditions(key, cond)
        root, _, rest = key.partition(".")
        if key in COLUMNS:
            lhs, rhs = COLUMNS[key], [bind(_column_value(key, v)) for v in values]
        elif root in JSON_ROOTS and not rest:
            # A whole definition, as Qlib's create_task looks tasks up: by identity, i.e. hash.
            lhs, rhs = "task_hash", [bind(task_hash(v)) for v in values]
        elif root in JSON_ROOTS:
            segments = rest.split(".")
            if any(not s or '"' in s for s in segments):
                raise PoolQueryError(f"the pool query's path {key!r} has an empty or quoted segment")
            lhs = dialect.queries["fragment_json_path"].replace("{param}", bind(dialect.json_path(segments)))
            value_sql = dialect.queries["fragment_json_value"]
            rhs = [value_sql.replace("{param}", bind(_json_text(key, v))) for v in values]
        else:
            raise PoolQueryError(f"the pool query names the unknown field {key!r}: use {_fields_help()}")
        if op == "eq":
            clauses.append(f"{lhs} = {rhs[0]}")
        elif op == "in":
            clauses.append(f"{lhs} IN ({', '.join(rhs)})" if rhs else "1 = 0")
        else:  # a missing JSON path is NULL, and NOT IN of NULL is unknown: it does not match
            clauses.append(f"{lhs} NOT IN ({', '.join(rhs)})" if rhs else "1 = 1")
    return "".join(f" AND {c}" for c in clauses), params


def _json_text(key: str, value: Any) -> str:
    return json.dumps(to_jsonable(value, path=f"query[{key!r}]"), sort_keys=True, separators=(",", ":"))


class PoolBackend(Protocol):
    """The primitives a task-pool store provides. Times are timezone-aware UTC datetimes.

    :class:`~qroll.pool.TaskManager` builds everything else (Qlib's API, leases, attempts,
    waiting) on these, so a new store implements only them. Each call is atomic: ``add`` all or
    nothing, ``claim`` hands a task to exactly one owner however many workers race, ``heartbeat``
    and ``finish`` are *fenced* (they change nothing unless ``owner`` still holds the lease).

    Notes
    -----
    A SQL database is best added as an :class:`SQLBackend` with its dialect's named queries in
    ``pool/sql/queries_<dialect>.sql`` and schema in ``schema_<dialect>.sql`` (same names as
    SQLite's and PostgreSQL's; ``tests/unit/test_pool_sql.py`` checks the sets agree); anything
    else implements this protocol directly. Register it with :func:`register_backend`, add it to
    ``BACKENDS`` in ``tests/integration/pool_fixtures.py`` and the contract suite
    (``tests/integration/test_pool_contract.py``, leases, fencing, races, restarts) runs on it.
    Errors are :class:`~qroll.errors.PoolConnectionError` (unreachable),
    :class:`~qroll.errors.PoolSchemaError` (a pool database of another version) and
    :class:`~qroll.errors.PoolQueryError` (a query the store refused), all with credentials masked
    (:func:`qroll.messages.mask_credentials`).
    """

    url: str

    def add(self, pool: str, items: Sequence[NewTask], *, now: dt.datetime, dry_run: bool = False,
            retry_failed: bool = False) -> list[tuple[int | None, bool]]:
        """Insert what is new, all or nothing; per item ``(id or None under dry_run, is_new)``."""
        ...

    def claim(self, pool: str, query: Mapping[str, Any] | None, *, status: str, owner: str,
              now: dt.datetime, lease_until: dt.datetime, requeue: bool = True,
              expired_before: dt.datetime | None = None) -> Task | None:
        """Atomically move the best ``status`` task to ``running``; first requeue expired leases
        when ``requeue`` (callers that requeue on their own schedule pass ``False``), as
        :meth:`requeue_expired` does."""
        ...

    def heartbeat(self, pool: str, task_id: int, owner: str, *, now: dt.datetime,
                  lease_until: dt.datetime) -> bool:
        """Extend the lease; false when ``owner`` no longer holds it."""
        ...

    def finish(self, pool: str, task_id: int, owner: str, *, status: str, now: dt.datetime,
               result: Any = KEEP, error: str | None = None, traceback: str | None = None,
               count_attempt: bool = False) -> TaskStatus | None:
        """Fenced end of a lease: set status (``failed`` instead once attempts run out when
        ``count_attempt``), result JSON text, error; the status set, or ``None`` when ``owner``
        lost the lease."""
        ...

    def finish_and_claim(self, pool: str, task_id: int, owner: str, *, status: str, result: Any,
                         query: Mapping[str, Any] | None, next_status: str, next_owner: str,
                         now: dt.datetime, lease_until: dt.datetime) -> tuple[bool, Task | None]:
        """:meth:`finish` with a result, then :meth:`claim` (no requeue), in one durable
        transaction: ``(finished, claimed task or None)``. When the lease was lost nothing changes
        and nothing is claimed: ``(False, None)``."""
        ...

    def requeue_expired(self, pool: str, *, now: dt.datetime,
                        expired_before: dt.datetime | None = None) -> int:
        """Send running tasks whose lease ended before ``expired_before`` (default ``now``: the
        caller's allowance for clock skew, see :class:`~qroll.pool.manager.TaskManager`) back,
        or to ``failed``; ``now`` is the time written."""
        ...

    def select(self, pool: str, query: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        """Rows (column → value, JSON columns as text) matching ``query``, by id."""
        ...

    def update(self, pool: str, query: Mapping[str, Any] | None, *, now: dt.datetime,
               status: str | None = None, priority: int | None = None) -> int:
        """Set the status (clearing leases) or the priority of matching tasks; the count."""
        ...

    def delete(self, pool: str, query: Mapping[str, Any] | None) -> int:
        """Delete matching tasks; the count."""
        ...

    def stats(self, pool: str, query: Mapping[str, Any] | None) -> dict[str, int]:
        """Status → number of matching tasks, counted by the database."""
        ...

    def pools(self) -> list[str]:
        """The names of the pools that hold at least one task."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...


Runner = Callable[..., list[dict[str, Any]]]


class SQLBackend:
    """The primitives written once in SQL; subclasses bring a connection and a transaction.

    A subclass sets ``dialect`` and implements ``_tx(atomic)``, a context manager yielding
    ``run(name, params, where="", **parts) -> rows``; with ``atomic`` the statements run in one write
    transaction, else each commits on its own. It also converts times with ``_time``.
    """

    dialect: Dialect
    #: Extra ``{name}`` parts of the ``claim`` query (PostgreSQL: how the claim commits).
    claim_parts: dict[str, str] = {}
    #: Inserting at least this many tasks at once refreshes the planner's statistics.
    analyze_after = 500

    def __init__(self, url: str) -> None:
        self.url = url
        self.masked_url = mask_credentials(url)

    def _tx(self, atomic: bool = True) -> AbstractContextManager[Runner]:
        raise NotImplementedError

    def _time(self, value: dt.datetime) -> Any:
        return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.masked_url!r})"

    # -- schema -------------------------------------------------------------------------------
    def _init_schema(self, run: Runner) -> None:
        run("meta_create", {})
        rows = run("meta_version", {})
        if not rows:
            for statement in load_schema(self.dialect.name):
                run(None, {}, sql=statement)
            run("meta_set_version", {"version": str(SCHEMA_VERSION)})
            return
        version = int(rows[0]["value"])
        if version > SCHEMA_VERSION:
            raise PoolSchemaError(
                f"the task pool at {self.masked_url} has schema version {version}, written by a newer "
                f"qroll; this qroll reads version {SCHEMA_VERSION}: upgrade qroll (pip install -U qroll)"
            )
        while version < SCHEMA_VERSION:
            if version not in MIGRATIONS:
                raise PoolSchemaError(
                    f"the task pool at {self.masked_url} has schema version {version}, which this qroll "
                    f"cannot migrate to {SCHEMA_VERSION}: finish or export its tasks with the qroll that "
                    "wrote it, then start a new pool (another database or file)"
                )
            run(MIGRATIONS[version], {})
            version += 1
            run("meta_set_version", {"version": str(version)})

    # -- primitives ---------------------------------------------------------------------------
    def add(self, pool: str, items: Sequence[NewTask], *, now: dt.datetime, dry_run: bool = False,
            retry_failed: bool = False) -> list[tuple[int | None, bool]]:
        out: list[tuple[int | None, bool]] = []
        seen: dict[str, int | None] = {}
        t = self._time(now)
        with self._tx(atomic=True) as run:
            for item in items:
                if item.task_hash in seen:
                    out.append((seen[item.task_hash], False))
                    continue
                key = {"pool": pool, "task_hash": item.task_hash}
                rows = [] if dry_run else run("insert", {
                    **key, "def": item.definition, "priority": item.priority,
                    "max_attempts": item.max_attempts, "now": t})
                if rows:
                    task_id: int | None = int(rows[0]["id"])
                    out.append((task_id, True))
                else:
                    found = run("find_by_hash", key)
                    task_id = int(found[0]["id"]) if found else None
                    if found and retry_failed and not dry_run and found[0]["status"] == "failed":
                        run("retry_failed", {"id": task_id, "now": t})
                    out.append((task_id, task_id is None))
                seen[item.task_hash] = task_id
        if not dry_run and sum(new for _, new in out) >= self.analyze_after:
            # A big batch into a young table: without fresh statistics the planner may scan the
            # whole table on every claim (seen as a 4x slower first run on PostgreSQL).
            with self._tx(atomic=False) as run:
                run("analyze", {})
        return out

    def requeue_expired(self, pool: str, *, now: dt.datetime,
                        expired_before: dt.datetime | None = None) -> int:
        params = {"pool": pool, "now": self._time(now), "expired_before": self._time(expired_before or now)}
        with self._tx(atomic=False) as run:
            return len(run("requeue_expired", params))

    def claim(self, pool: str, query: Mapping[str, Any] | None, *, status: str, owner: str,
              now: dt.datetime, lease_until: dt.datetime, requeue: bool = True,
              expired_before: dt.datetime | None = None) -> Task | None:
        where, params = build_where({k: v for k, v in (query or {}).items() if k != "status"},
                                    self.dialect)
        t = self._time(now)
        params.update(pool=pool, status=status, owner=owner, now=t, lease_until=self._time(lease_until))
        # Without a requeue the claim is one statement, atomic by itself: no transaction round trips.
        with self._tx(atomic=requeue) as run:
            if requeue:  # in the same transaction, so the requeued rows are claimable at once
                run("requeue_expired", {"pool": pool, "now": t,
                                        "expired_before": self._time(expired_before or now)})
            rows = run("claim", params, where=where, **self.claim_parts)
        return Task.from_row(rows[0]) if rows else None

    def heartbeat(self, pool: str, task_id: int, owner: str, *, now: dt.datetime,
                  lease_until: dt.datetime) -> bool:
        with self._tx(atomic=False) as run:
            rows = run("heartbeat", {"pool": pool, "id": task_id, "owner": owner, "now": self._time(now),
                                     "lease_until": self._time(lease_until)})
        return bool(rows)

    def finish(self, pool: str, task_id: int, owner: str, *, status: str, now: dt.datetime,
               result: Any = KEEP, error: str | None = None, traceback: str | None = None,
               count_attempt: bool = False) -> TaskStatus | None:
        params = self._finish_params(pool, task_id, owner, status=status, now=now, result=result,
                                     error=error, traceback=traceback, count_attempt=count_attempt)
        with self._tx(atomic=False) as run:
            rows = run("finish", params)
        return TaskStatus(rows[0]["status"]) if rows else None

    def _finish_params(self, pool: str, task_id: int, owner: str, *, status: str, now: dt.datetime,
                       result: Any = KEEP, error: str | None = None, traceback: str | None = None,
                       count_attempt: bool = False) -> dict[str, Any]:
        """The bound values of the ``finish`` query."""
        return {
            "pool": pool, "id": task_id, "owner": owner, "status": status, "now": self._time(now),
            "set_result": 0 if result is KEEP else 1, "result": None if result is KEEP else result,
            "count_attempt": int(count_attempt), "error": error, "traceback": traceback,
        }

    def finish_and_claim(self, pool: str, task_id: int, owner: str, *, status: str, result: Any,
                         query: Mapping[str, Any] | None, next_status: str, next_owner: str,
                         now: dt.datetime, lease_until: dt.datetime) -> tuple[bool, Task | None]:
        where, claim = build_where({k: v for k, v in (query or {}).items() if k != "status"},
                                   self.dialect)
        t = self._time(now)
        claim.update(pool=pool, status=next_status, owner=next_owner, now=t,
                     lease_until=self._time(lease_until))
        finish = self._finish_params(pool, task_id, owner, status=status, now=now, result=result)
        if "finish_and_claim" in self.dialect.queries:  # one statement: one round trip
            with self._tx(atomic=False) as run:
                [row] = run("finish_and_claim", {**claim, **finish, "next_status": next_status,
                                                 "next_owner": next_owner}, where=where)
            return bool(row["finished"]), (None if row["id"] is None else Task.from_row(row))
        # One transaction, so one commit (one WAL flush or fsync) per task instead of two. The
        # claim commits with the result, durably, whatever claim_parts say.
        with self._tx(atomic=True) as run:
            if not run("finish", finish):
                return False, None
            rows = run("claim", claim, where=where, claim_from="")
        return True, (Task.from_row(rows[0]) if rows else None)

    def select(self, pool: str, query: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        where, params = build_where(query, self.dialect)
        with self._tx(atomic=False) as run:
            return run("select", {**params, "pool": pool}, where=where)

    def update(self, pool: str, query: Mapping[str, Any] | None, *, now: dt.datetime,
               status: str | None = None, priority: int | None = None) -> int:
        where, params = build_where(query, self.dialect)
        base = {**params, "pool": pool, "now": self._time(now)}
        with self._tx(atomic=True) as run:
            n = 0
            if status is not None:
                n = len(run("set_status", {**base, "status": TaskStatus(status).value}, where=where))
            if priority is not None:
                n = len(run("set_priority", {**base, "priority": int(priority)}, where=where))
            return n

    def delete(self, pool: str, query: Mapping[str, Any] | None) -> int:
        where, params = build_where(query, self.dialect)
        with self._tx(atomic=True) as run:
            return len(run("delete", {**params, "pool": pool}, where=where))

    def stats(self, pool: str, query: Mapping[str, Any] | None) -> dict[str, int]:
        where, params = build_where(query, self.dialect)
        with self._tx(atomic=False) as run:
            rows = run("stats", {**params, "pool": pool}, where=where)
        return {str(r["status"]): int(r["n"]) for r in rows}

    def pools(self) -> list[str]:
        with self._tx(atomic=False) as run:
            return [str(r["pool"]) for r in run("pools", {})]

    def close(self) -> None:
        raise NotImplementedError


# -- the registry -------------------------------------------------------------------------------
_BACKENDS: dict[str, str | Callable[[str], PoolBackend]] = {
    "sqlite": "qroll.pool.sqlite:SQLiteBackend",
    "postgresql": "qroll.pool.postgres:PostgresBackend",
    "postgres": "qroll.pool.postgres:PostgresBackend",
}


def register_backend(scheme: str, factory: str | Callable[[str], PoolBackend]) -> None:
    """Make URLs ``<scheme>://...`` open with ``factory(url)`` (or ``"module:Class"``).

    Parameters
    ----------
    scheme : str
        The URL scheme, without ``://`` (matched case-insensitively).
    factory : callable or str
        Called with the whole URL, returning a :class:`PoolBackend`; or ``"module:attr"``
        naming it, imported on first use (so a driver is imported only when its pool is opened).

    Notes
    -----
    After ``register_backend("mysql", "mypkg.pool_mysql:MySQLBackend")``, every pool URL of that
    scheme reaches it: ``TaskManager(pool, "mysql://...")``, ``qroll worker --pool``, a run
    config's ``pool:``. Register it in a module the workers import too.
    """
    _BACKENDS[scheme.lower()] = factory


def supported_schemes() -> list[str]:
    """The URL schemes :func:`open_backend` knows, sorted.

    Examples
    --------
    >>> supported_schemes()
    ['postgres', 'postgresql', 'sqlite']
    """
    return sorted(_BACKENDS)


def open_backend(url: str) -> PoolBackend:
    """Open the pool store ``url`` names, creating its schema on first use.

    Raises
    ------
    PoolConnectionError
        An unknown scheme (the message lists the supported ones), a missing driver, or a database
        that does not answer within a few seconds. Passwords are masked in every message.
    PoolSchemaError
        A database written by a newer qroll, or an old one that cannot be migrated.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    scheme = scheme.split("+", 1)[0]  # "postgresql+psycopg://" as SQLAlchemy spells it
    factory = _BACKENDS.get(scheme)
    if factory is None:
        raise PoolConnectionError(
            f"the task pool URL {mask_credentials(url)!r} has no supported scheme: use one of "
            f"{', '.join(s + '://' for s in supported_schemes())} (e.g. sqlite:///path/pool.db)"
        )
    if isinstance(factory, str):
        module, _, name = factory.partition(":")
        factory = getattr(importlib.import_module(module), name)
    return factory(url)


def iter_tasks(rows: Sequence[Mapping[str, Any]]) -> Iterator[Task]:
    """Decode rows into :class:`Task` records."""
    return (Task.from_row(r) for r in rows)
