"""Creating and upgrading an MLflow tracking store's schema, safely when many processes race.

MLflow builds a new database store's schema in whichever process opens it first, with no lock:
four workers opening one new ``mlflow.db`` at once all run the migrations, and leave a store that
no MLflow can open again (``table _alembic_tmp_tags already exists``). qroll therefore builds
the schema itself, before MLflow sees the store:

* **SQLite** (``sqlite:///path/mlflow.db``): under an exclusive lock file beside the store
  (``mlflow.db.lock``, an OS lock: a SIGKILLed holder releases it), the store is built, migrated
  and given MLflow's ``Default`` experiment in a temporary file of the same folder
  (``mlflow.db.creating-*``), fsynced, then renamed into place: a killed creator leaves at most a
  temporary file, removed by the next creator. The file is built in rollback-journal mode, with
  every connection closed before the rename, and only then switched to write-ahead logging.
* **PostgreSQL** (``postgresql://...``): under a session-level advisory lock held on its own
  connection (the server drops it when its process dies). PostgreSQL's DDL is transactional, so
  a killed creator leaves the schema at some earlier revision; the next opener finishes it when
  the store holds no runs (nothing to lose) and refuses otherwise.

Opening a store that is complete and at this MLflow's head revision takes no lock: one
connection reads the table names and the revision (about a millisecond for SQLite). A store at
an older revision is never migrated by opening it: :class:`~qroll.errors.StoreSchemaError` gives
the command to run, ``qroll store upgrade`` (:func:`upgrade_store`), which migrates under the
same lock (for SQLite: a copy, migrated, then renamed over the original, which is kept as
``mlflow.db.before-upgrade-<revision>``). A store half-built by an older qroll or by plain MLflow
is reported in one line saying what is wrong and how to recover.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qroll.errors import StoreSchemaError, TrackingError
from qroll.home import qroll_home
from qroll.messages import mask_credentials, one_line, scrub
from qroll.record.store import PROBE_TIMEOUT_S, quiet

__all__ = ["LOCK_TIMEOUT_S", "StoreState", "ensure_database_store", "ensure_sqlite_store", "upgrade_store"]

LOCK_TIMEOUT_S = 600.0
"""Seconds an opener waits for another process creating or upgrading the store (≈ 1–10 s)."""

_PG_STORE_LOCK = 0x71_72_6F_6C_6C_6D  # advisory lock id ("qrollm"); the pool's schema uses another
_TMP_PREFIX = "_alembic_tmp_"  # tables alembic's SQLite batch mode leaves when interrupted


@dataclass(frozen=True, kw_only=True, slots=True)
class StoreState:
    """What one look at a store's schema found.

    Attributes
    ----------
    tables : frozenset of str
        Every table name in the store (SQLite's internal ones excluded).
    revision : str or None
        The alembic revision in ``alembic_version``; None when that table is missing or empty.
    default_experiment : bool
        Whether MLflow's ``Default`` experiment (id 0) exists: MLflow inserts it on open, and two
        processes inserting it at once collide, so a new store gets it at creation.
    """

    tables: frozenset[str]
    revision: str | None
    default_experiment: bool

    @property
    def empty(self) -> bool:
        """No table of MLflow's at all: a new store (alembic's own table aside)."""
        return not (self.tables - {"alembic_version"})

    def problem(self) -> str | None:
        """What makes the schema half-built, or None. An older, complete revision is not one."""
        leftovers = sorted(t for t in self.tables if t.startswith(_TMP_PREFIX))
        if leftovers:
            return f"tables {', '.join(leftovers)} are left by an interrupted schema migration"
        if self.empty:
            return None
        if self.revision is None:
            return ("it has MLflow tables but no schema revision (alembic_version): its creation was "
                    "interrupted")
        missing = sorted(_expected_tables() - self.tables)
        if self.revision == head_revision() and missing:
            return f"it is at MLflow's latest revision but lacks tables {', '.join(missing[:5])}"
        return None

    def complete(self) -> bool:
        """At this MLflow's head revision, every table there, the ``Default`` experiment in."""
        return self.revision == head_revision() and self.default_experiment and self.problem() is None


@functools.cache
def head_revision() -> str:
    """The alembic revision this MLflow's schema ends at (parsed once per process: ~10 ms)."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return str(_get_latest_schema_revision())


@functools.cache
def _expected_tables() -> frozenset[str]:
    from mlflow.store.db.base_sql_model import Base
    from mlflow.store.db.utils import _all_tables_exist  # noqa: F401  (registers every model's table)

    return frozenset(Base.metadata.tables)


def _known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    try:
        return ScriptDirectory.from_config(_get_alembic_config(db_url="")).get_revision(revision) is not None
    except Exception:  # alembic's ResolutionError / CommandError for a revision it does not know
        return False


def _mlflow_version() -> str:
    import mlflow

    return str(mlflow.__version__)


# -- messages --------------------------------------------------------------------------------------


def _refusal(state: StoreState, runs: int, shown: str, path: Path | None) -> StoreSchemaError:
    """The one-line error for a store that is not complete and is not ours to finish."""
    problem = state.problem()
    if problem is not None:
        if path is None:
            fix = (f"it holds {runs} run(s): back it up, then run `qroll store upgrade --tracking {shown}`"
                   if runs else "it holds no runs: drop its tables (or the database) and open it again")
        elif runs:
            fix = (f"it holds {runs} run(s): keep a copy of {path}, then restore it from a backup or repair "
                   "the interrupted migration by hand; qroll will not open it")
        else:
            fix = (f"it holds no runs: delete {path} (and any {path.name}-wal, {path.name}-shm beside it) "
                   "and open it again to get a new store")
        return StoreSchemaError(f"tracking store {shown} is half-built: {problem}; {fix}")
    assert state.revision is not None
    if not _known_revision(state.revision):
        return StoreSchemaError(
            f"tracking store {shown} has MLflow schema revision {state.revision}, unknown to this MLflow "
            f"{_mlflow_version()}: a newer MLflow wrote it; upgrade MLflow (pip install -U mlflow)"
        )
    return StoreSchemaError(
        f"tracking store {shown} has MLflow schema revision {state.revision}, older than MLflow "
        f"{_mlflow_version()} needs ({head_revision()}); back it up, stop the processes using it, then run "
        f"`qroll store upgrade --tracking {shown}`"
    )


def _unfinished(built: StoreState, shown: str) -> TrackingError:
    return TrackingError(f"building the tracking store {shown} failed: MLflow's migrations left "
                         f"{built.problem() or f'revision {built.revision}'}")


# -- SQLite ----------------------------------------------------------------------------------------


def _sqlite_state(conn: sqlite3.Connection) -> StoreState:
    tables = frozenset(
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not row[0].startswith("sqlite_")
    )
    revision = None
    if "alembic_version" in tables:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        revision = row[0] if row else None
    default = "experiments" in tables and conn.execute(
        "SELECT 1 FROM experiments WHERE experiment_id = 0").fetchone() is not None
    return StoreState(tables=tables, revision=revision, default_experiment=default)


def _sqlite_runs(conn: sqlite3.Connection, state: StoreState) -> int:
    return max((conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
                for t in ("runs", f"{_TMP_PREFIX}runs") if t in state.tables), default=0)


@contextlib.contextmanager
def _sqlite(path: Path, shown: str) -> Iterator[sqlite3.Connection]:
    # mode=rw: never create the file here; only a complete store is ever put at ``path``.
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=PROBE_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise TrackingError(f"cannot open the SQLite tracking store {shown}: {one_line(exc)}") from exc
    try:
        yield conn
    except sqlite3.Error as exc:
        raise TrackingError(f"cannot read the SQLite tracking store {shown}: {one_line(exc)}") from exc
    finally:
        conn.close()


def _fast_sqlite(path: Path, shown: str) -> bool:
    """True when the store at ``path`` is complete (switching it to WAL if it is not yet)."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with _sqlite(path, shown) as conn:
        if not _sqlite_state(conn).complete():
            return False
        wal = conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    if not wal:
        _use_wal(path, shown)
    return True


def _use_wal(path: Path, shown: str) -> None:
    """Switch the store to write-ahead logging (a setting kept in the file).

    A run's few commits then cost ~20 ms instead of ~40 ms, and readers (a collector, the MLflow
    UI) no longer block the workers writing runs.
    """
    try:
        conn = sqlite3.connect(path, timeout=PROBE_TIMEOUT_S)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            return  # another process holds the file: it is usable, and WAL is only an optimisation
        raise TrackingError(f"cannot open the SQLite tracking store {shown}: {exc}") from exc
    except sqlite3.Error as exc:
        raise TrackingError(f"cannot open the SQLite tracking store {shown}: {exc}") from exc


@contextlib.contextmanager
def _file_lock(path: Path, shown: str) -> Iterator[None]:
    from filelock import FileLock, Timeout

    lock = FileLock(f"{path}.lock", timeout=LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout as exc:
        raise TrackingError(
            f"waited {LOCK_TIMEOUT_S:.0f} s for another process creating or upgrading the tracking store "
            f"{shown} (lock file {path}.lock); check for a stuck qroll process"
        ) from exc
    try:
        # Any temporary store left here was its creator's when it was killed: creators hold the lock.
        for leftover in path.parent.glob(f"{path.name}.creating-*"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        yield
    finally:
        lock.release()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # not every filesystem lets a directory be fsynced
    finally:
        os.close(fd)


def _sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path}"


def _build_in(tmp: Path, artifact_root: str) -> None:
    """Create or finish MLflow's schema (and ``Default`` experiment) in the SQLite file ``tmp``."""
    with quiet():  # importing MLflow's store configures its ORM mappers, which warn
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    uri = _sqlite_uri(tmp)
    try:
        with quiet():
            SqlAlchemyStore(uri, artifact_root)  # create_all, every migration, Default experiment
    finally:
        # MLflow keeps one engine per URI for the process's life; this one's file is about to move.
        engine = SqlAlchemyStore._engine_map.pop(uri, None)
        if engine is not None:
            engine.dispose()


def _replace_with(tmp: Path, path: Path, shown: str) -> None:
    """Rename the complete store ``tmp`` over ``path``, with no journal of the old file left."""
    for suffix in ("-wal", "-journal"):
        # A journal beside the new file would be replayed into it: refuse rather than corrupt.
        if Path(f"{path}{suffix}").exists():
            raise TrackingError(f"cannot replace the tracking store {shown}: {path}{suffix} exists "
                                "(another process holds the store open); stop it and try again")
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(path.parent)


def _checkpoint(path: Path, shown: str) -> None:
    """Fold ``path``'s write-ahead log into it and leave rollback mode (no ``-wal`` file after)."""
    with _sqlite(path, shown) as conn:
        try:
            mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        except sqlite3.OperationalError as exc:
            mode = one_line(exc)
    if mode != "delete":  # SQLite keeps WAL while another connection has the file open
        raise TrackingError(
            f"the tracking store {shown} is in use by another process (journal mode stays {mode!r}); "
            "stop the workers and any `mlflow ui` on it, then run the command again"
        )


def ensure_sqlite_store(path: Path, shown: str) -> None:
    """Make the SQLite store at ``path`` complete, creating it safely if it does not exist.

    Parameters
    ----------
    path : Path
        The store's file (its folder exists).
    shown : str
        The tracking URI as messages show it (credentials masked).

    Raises
    ------
    StoreSchemaError
        If the store exists but is half-built or at another revision (never migrated here).
    TrackingError
        If the file cannot be read, or another process held the lock for :data:`LOCK_TIMEOUT_S`.
    """
    if _fast_sqlite(path, shown):
        return
    with _file_lock(path, shown):
        _create_sqlite(path, shown, upgrade=False)
    _use_wal(path, shown)


def _create_sqlite(path: Path, shown: str, *, upgrade: bool) -> str | None:
    """Under the lock: create, finish or (``upgrade``) migrate; the revision replaced, if any."""
    exists = path.is_file()
    state, runs = StoreState(tables=frozenset(), revision=None, default_experiment=False), 0
    if exists:
        with _sqlite(path, shown) as conn:
            state = _sqlite_state(conn)
            runs = _sqlite_runs(conn, state)
    if state.complete():
        return None
    migrate = (upgrade and not state.empty and state.problem() is None
               and state.revision is not None and _known_revision(state.revision))
    if not state.empty and not migrate:
        # A Default experiment missing from an otherwise complete store is MLflow's to add.
        if state.revision == head_revision() and state.problem() is None:
            return None
        raise _refusal(state, runs, shown, path)
    tmp = path.with_name(f"{path.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        if exists:
            _checkpoint(path, shown)  # an empty file's or the old store's WAL, folded in before the swap
        if migrate:
            with _sqlite(path, shown) as src, contextlib.closing(sqlite3.connect(tmp)) as dst:
                src.backup(dst)
        _build_in(tmp, str(path.parent / "artifacts"))
        with _sqlite(tmp, shown) as conn:
            built = _sqlite_state(conn)
        if not built.complete():  # MLflow's own migrations misbehaved: keep the old file untouched
            raise _unfinished(built, shown)
        if migrate:
            backup = path.with_name(f"{path.name}.before-upgrade-{state.revision}")
            if not backup.exists():
                os.link(path, backup)
        _replace_with(tmp, path, shown)
    except sqlite3.Error as exc:
        raise TrackingError(f"cannot build the SQLite tracking store {shown}: {one_line(exc)}") from exc
    except OSError as exc:
        raise TrackingError(f"cannot write the SQLite tracking store {shown}: {exc}") from exc
    finally:
        for leftover in path.parent.glob(f"{tmp.name}*"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return state.revision if migrate else None


# -- PostgreSQL (and the other server databases) --------------------------------------------------


def _db_state(conn: Any) -> StoreState:
    import sqlalchemy

    tables = frozenset(sqlalchemy.inspect(conn).get_table_names())
    revision = None
    if "alembic_version" in tables:
        revision = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()
    default = "experiments" in tables and conn.execute(
        sqlalchemy.text("SELECT 1 FROM experiments WHERE experiment_id = 0")).first() is not None
    return StoreState(tables=tables, revision=revision, default_experiment=default)


def _db_runs(conn: Any, state: StoreState) -> int:
    import sqlalchemy

    if "runs" not in state.tables:
        return 0
    return int(conn.execute(sqlalchemy.text("SELECT count(*) FROM runs")).scalar())


@contextlib.contextmanager
def _engine(uri: str, shown: str) -> Iterator[Any]:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    kind = uri.split(":", 1)[0].split("+", 1)[0].lower()
    args = {"connect_timeout": PROBE_TIMEOUT_S} if kind in ("postgresql", "postgres", "mysql") else {}
    engine = sqlalchemy.create_engine(uri, poolclass=NullPool, connect_args=args)
    try:
        yield engine
    finally:
        engine.dispose()


@contextlib.contextmanager
def _advisory_lock(engine: Any, shown: str) -> Iterator[None]:
    """PostgreSQL's session-level advisory lock, on a connection of its own for the whole block.

    Tried in a loop rather than waited for in the server, so the wait is bounded; the server
    drops the lock with the connection if this process dies.
    """
    import sqlalchemy

    if engine.dialect.name != "postgresql":
        yield  # MySQL and others: no lock; MLflow's own behaviour
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        try_lock = sqlalchemy.text("SELECT pg_try_advisory_lock(:key)")
        while not conn.execute(try_lock, {"key": _PG_STORE_LOCK}).scalar():
            if time.monotonic() > deadline:
                raise TrackingError(f"waited {LOCK_TIMEOUT_S:.0f} s for another process creating or "
                                    f"upgrading the tracking store {shown}; check for a stuck qroll process")
            time.sleep(0.1)
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_STORE_LOCK})


def _finish_db(uri: str, engine: Any, state: StoreState, artifact_root: str) -> None:
    with quiet():
        from mlflow.store.db.utils import _initialize_tables, _upgrade_db
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        if state.revision is None:
            _initialize_tables(engine)  # create_all skips the tables there; then every migration
        else:
            _upgrade_db(engine)  # from the revision reached; each run is one transaction
        SqlAlchemyStore(uri, artifact_root)  # the Default experiment, inserted under the lock


def ensure_database_store(uri: str, shown: str, artifact_root: str) -> None:
    """Make the server database store at ``uri`` complete; create or finish it under a lock.

    Under PostgreSQL's advisory lock, a store that is empty, or behind this MLflow's revision
    but holding no runs (its creator was killed), is built to the head revision; one holding
    runs is refused with the ``qroll store upgrade`` command.

    Raises
    ------
    StoreSchemaError
        If the store holds runs and is not at this MLflow's revision.
    TrackingError
        If the database cannot be reached or the lock was held for :data:`LOCK_TIMEOUT_S`.
    """
    _on_database(uri, shown, artifact_root, upgrade=False)


def _on_database(uri: str, shown: str, artifact_root: str, *, upgrade: bool) -> str | None:
    try:
        with _engine(uri, shown) as engine:
            with engine.connect() as conn:
                if _db_state(conn).complete():
                    return None
            with _advisory_lock(engine, shown):
                with engine.connect() as conn:
                    state = _db_state(conn)
                    runs = _db_runs(conn, state)
                if state.complete():
                    return None
                at_head = state.revision == head_revision() and state.problem() is None
                newer = state.revision is not None and not _known_revision(state.revision)
                # Finished here: a new store, a killed creator's (no runs: nothing to lose), one
                # lacking only MLflow's Default experiment, or any store on an explicit upgrade.
                if newer or (runs and not upgrade and not at_head):
                    raise _refusal(state, runs, shown, None)
                _finish_db(uri, engine, state, artifact_root)
                with engine.connect() as conn:
                    built = _db_state(conn)
                if not built.complete():
                    raise _unfinished(built, shown)
                return state.revision or ""  # "": there was no schema, it was created here
    except TrackingError:
        raise
    except Exception as exc:  # SQLAlchemy's, the driver's and MLflow's errors, at the boundary
        why = scrub(one_line(exc), uri)
        raise TrackingError(f"cannot prepare the tracking store {shown}: {why}") from exc


# -- the explicit upgrade --------------------------------------------------------------------------


def upgrade_store(uri: str | None = None, artifact_root: str | None = None) -> str:
    """Migrate the store at ``uri`` to this MLflow's schema under the creation lock (``qroll store upgrade``).

    SQLite: the store is copied, the copy migrated and renamed over the original, which is kept
    as ``<file>.before-upgrade-<revision>``; it fails if another process has the store open.
    PostgreSQL: MLflow's migrations run under the advisory lock (each is transactional).

    Parameters
    ----------
    uri : str, optional
        The tracking URI (``sqlite:///...`` or a database URL); default the qroll home's store,
        ``sqlite:///<home>/mlflow.db``.
    artifact_root : str, optional
        Where MLflow's ``Default`` experiment keeps artifacts if the store is created here
        (default ``<home>/artifacts``).

    Returns
    -------
    str
        One line saying what was done.

    Raises
    ------
    StoreSchemaError
        If the store is half-built in a way no migration can finish, or newer than this MLflow.
    TrackingError
        If the URI is not a database store, or the store cannot be read or locked.
    """
    from sqlalchemy.engine import make_url

    home = qroll_home().resolve()
    uri = uri or f"sqlite:///{home / 'mlflow.db'}"
    shown = mask_credentials(uri)
    kind = uri.split(":", 1)[0].split("+", 1)[0].lower()
    head = head_revision()
    if kind == "sqlite":
        database = make_url(uri).database
        if not database or database == ":memory:":
            raise TrackingError(f"tracking URI {shown} names no SQLite file to upgrade")
        path = Path(database).expanduser().resolve()
        if not path.is_file():
            raise TrackingError(f"no tracking store at {path}: nothing to upgrade (a store is created when "
                                "first used)")
        with _file_lock(path, shown):
            old = _create_sqlite(path, shown, upgrade=True)
        _use_wal(path, shown)
        if old is None:
            return f"tracking store {shown} is already at MLflow's schema revision {head}"
        return (f"upgraded tracking store {shown} from schema revision {old} to {head}; the old file is kept "
                f"as {path.name}.before-upgrade-{old}")
    if kind in ("postgresql", "postgres", "mysql", "mssql"):
        old = _on_database(uri, shown, artifact_root or str(home / "artifacts"), upgrade=True)
        if old is None:
            return f"tracking store {shown} is already at MLflow's schema revision {head}"
        if not old:
            return f"created tracking store {shown} at MLflow's schema revision {head}"
        return f"upgraded tracking store {shown} from schema revision {old} to {head}"
    raise TrackingError(f"tracking URI {shown} is not a database store: `qroll store upgrade` takes "
                        "sqlite:/// or postgresql:// (a tracking server's store: run it on that URI)")
