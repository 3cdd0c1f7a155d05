"""Creating an MLflow store, a task pool, a feature-cache entry when many processes race, some killed.

Every process here is real and starts from nothing: no store exists before the racers start.
Broken stores are built for real, by SIGKILLing MLflow's own migrations part-way (an SQLAlchemy
hook in the child kills its own process at a chosen statement), never by writing tables by hand.
"""

# ruff: noqa: F811  (the pool_url fixture imported from pool_fixtures is re-bound as an argument)

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pool_fixtures import PG_URL, pg_admin, pool_url  # noqa: E402, F401

from qroll.errors import StoreSchemaError  # noqa: E402
from qroll.record import ExpManager, creation  # noqa: E402
from qroll.record.creation import head_revision  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# A child that opens the store the way a worker does; with KILL_AT set, an SQLAlchemy hook
# SIGKILLs the process just after the first statement starting with that text.
OPEN = """
import os, signal, sys, time
from sqlalchemy import event
from sqlalchemy.engine import Engine
kill_at = os.environ.get("KILL_AT")
if kill_at:
    @event.listens_for(Engine, "after_cursor_execute")
    def _die(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)
start = float(os.environ.get("START_AT", "0"))
{body}
while time.time() < start:
    time.sleep(0.001)
{action}
"""
QROLL_OPEN = OPEN.format(body="from qroll.record import ExpManager",
                         action="ExpManager(sys.argv[1]).get_exp('race'); print('opened')")
# Plain MLflow building the store, as an older qroll did: no lock, migrations in place.
MLFLOW_BUILD = OPEN.format(
    body="from sqlalchemy import create_engine\nfrom mlflow.store.db.utils import _initialize_tables",
    action="_initialize_tables(create_engine(sys.argv[1]))")


def child(code: str, uri: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, uri], env={**os.environ, **env, "PYTHONPATH": str(ROOT / "src")},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def race(code: str, uri: str, n: int = 4) -> list[tuple[int, str]]:
    """Start ``n`` children that open ``uri`` at the same instant (after their imports)."""
    start = str(time.time() + 5.0)  # imports take ~1-3 s each on a loaded machine
    procs = [child(code, uri, START_AT=start) for _ in range(n)]
    return [finish(p, timeout=180) for p in procs]


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    """The child's exit status and output, its pipe closed."""
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def sqlite_revision(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- SQLite --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_four_processes_create_one_sqlite_store(tmp_path):
    path = tmp_path / "mlflow.db"
    results = race(QROLL_OPEN, f"sqlite:///{path}")
    assert [rc for rc, _ in results] == [0] * 4, results
    assert sqlite_revision(path) == head_revision()
    assert not {t for t in tables(path) if t.startswith("_alembic_tmp_")}
    assert sorted(p.name for p in tmp_path.iterdir() if "creating" in p.name) == []
    names = sorted(e.name for e in ExpManager(f"sqlite:///{path}").list_experiments())
    assert names == ["Default", "race"]


def test_killed_creator_leaves_no_store_and_the_next_open_builds_it(tmp_path):
    path = tmp_path / "mlflow.db"
    rc, out = finish(child(QROLL_OPEN, f"sqlite:///{path}", KILL_AT="CREATE TABLE _ALEMBIC_TMP_"))
    assert rc == -signal.SIGKILL, out
    assert not path.exists()  # the half store is the killed creator's temporary file, not the store
    assert [p.name for p in tmp_path.glob("mlflow.db.creating-*")]
    ExpManager(f"sqlite:///{path}").get_exp("after")
    assert sqlite_revision(path) == head_revision()
    assert list(tmp_path.glob("mlflow.db.creating-*")) == []


def test_store_half_migrated_by_plain_mlflow_is_reported_in_one_line(tmp_path):
    path = tmp_path / "mlflow.db"
    rc, out = finish(child(MLFLOW_BUILD, f"sqlite:///{path}", KILL_AT="CREATE TABLE _ALEMBIC_TMP_"))
    assert rc == -signal.SIGKILL, out
    assert any(t.startswith("_alembic_tmp_") for t in tables(path))
    before = digest(path)
    with pytest.raises(StoreSchemaError, match=r"is half-built: tables _alembic_tmp_\w+ are left by an "
                       r"interrupted schema migration; it holds no runs: delete .*mlflow\.db"):
        ExpManager(f"sqlite:///{path}")
    cli = subprocess.run([sys.executable, "-m", "qroll", "store", "upgrade", "--tracking", f"sqlite:///{path}"],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and cli.stdout == ""
    assert cli.stderr.count("\n") == 1 and cli.stderr.startswith("qroll: error: tracking store"), cli.stderr
    assert "half-built" in cli.stderr
    assert digest(path) == before  # nothing touched


def build_old_store(where: Path | str, revision: str) -> str:
    """A store (a SQLite file, or a database URI) at an old MLflow revision holding one run,
    migrated by MLflow's own scripts; the run's id."""
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(where if isinstance(where, str) else f"sqlite:///{where}", poolclass=NullPool)
    InitialBase.metadata.create_all(engine)
    config = _get_alembic_config(str(engine.url))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    run_id = uuid.uuid4().hex
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage) "
                          "VALUES (0, 'Default', '/tmp/a/0', 'active'), (1, 'old', '/tmp/a/1', 'active')"))
        conn.execute(text("INSERT INTO runs (run_uuid, name, status, start_time, end_time, lifecycle_stage, "
                          "experiment_id, artifact_uri, source_type, source_name, entry_point_name, user_id, "
                          "source_version) VALUES (:id, 'r', 'FINISHED', 1, 2, 'active', 1, '/tmp/a/1/x', "
                          "'LOCAL', 's', 'e', 'u', 'v')"), {"id": run_id})
    engine.dispose()
    return run_id


@pytest.mark.slow
def test_older_store_is_refused_then_upgraded_by_the_command(tmp_path):
    path, old = tmp_path / "mlflow.db", "90e64c465722"  # MLflow's third revision
    run_id = build_old_store(path, old)
    uri = f"sqlite:///{path}"
    with pytest.raises(StoreSchemaError, match=rf"revision {old}, older than MLflow .* run "
                       rf"`qroll store upgrade --tracking {uri}`"):
        ExpManager(uri)
    assert sqlite_revision(path) == old  # opening never migrates
    upgrade = [sys.executable, "-m", "qroll", "store", "upgrade", "--tracking", uri]
    with closing(sqlite3.connect(path)) as reader:  # another process's open store, as a worker's
        reader.execute("PRAGMA journal_mode=WAL")
        reader.execute("SELECT count(*) FROM runs").fetchone()
        busy = subprocess.run(upgrade, capture_output=True, text=True, timeout=180)
    assert busy.returncode == 2 and "in use by another process" in busy.stderr, busy.stderr
    assert sqlite_revision(path) == old
    cli = subprocess.run([sys.executable, "-m", "qroll", "store", "upgrade", "--tracking", uri],
                         capture_output=True, text=True, timeout=180)
    assert cli.returncode == 0, cli.stderr
    assert f"from schema revision {old} to {head_revision()}" in cli.stdout
    assert sqlite_revision(path) == head_revision()
    assert sqlite_revision(tmp_path / f"mlflow.db.before-upgrade-{old}") == old  # the original, kept
    store = ExpManager(uri)
    assert store.client.get_run(run_id).info.status == "FINISHED"
    again = subprocess.run([sys.executable, "-m", "qroll", "store", "upgrade", "--tracking", uri],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "already at" in again.stdout


def test_opening_an_up_to_date_store_takes_no_lock(tmp_path, monkeypatch):
    from filelock import FileLock

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ExpManager(uri)
    monkeypatch.setattr(creation, "LOCK_TIMEOUT_S", 1.0)
    # Held on its own file descriptor: an opener that took the lock would time out.
    with FileLock(f"{tmp_path / 'mlflow.db'}.lock", is_singleton=False):
        ExpManager(uri).get_exp("x")


# -- PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture
def pg_store() -> Iterator[str]:
    """A new, empty database on the test server, dropped afterwards; its SQLAlchemy URI."""
    admin = pg_admin()
    name = f"qroll_store_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def pg_state(uri: str) -> tuple[str | None, int]:
    """The store's alembic revision and how many experiments named Default it holds."""
    import psycopg

    with psycopg.connect(uri.replace("+psycopg", ""), autocommit=True) as conn:
        present = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        if "alembic_version" not in present:
            return None, 0
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        defaults = conn.execute("SELECT count(*) FROM experiments WHERE name = 'Default'").fetchone()
        return (row[0] if row else None), int(defaults[0] if defaults else 0)


@pytest.mark.slow
def test_four_processes_create_one_postgres_store(pg_store):
    results = race(QROLL_OPEN, pg_store)
    assert [rc for rc, _ in results] == [0] * 4, results
    assert pg_state(pg_store) == (head_revision(), 1)


@pytest.mark.slow
def test_postgres_creator_killed_mid_migration_then_next_open_works(pg_store):
    # The first ALTER runs inside alembic's one transaction: the kill rolls the migration back.
    rc, out = finish(child(QROLL_OPEN, pg_store, KILL_AT="ALTER TABLE"))
    assert rc == -signal.SIGKILL, out
    assert pg_state(pg_store)[0] != head_revision()
    ExpManager(pg_store).get_exp("after")  # the advisory lock died with the killed process
    assert pg_state(pg_store) == (head_revision(), 1)


@pytest.mark.slow
def test_older_postgres_store_with_a_run_is_refused_then_upgraded_by_the_command(pg_store):
    old = "90e64c465722"  # MLflow's third revision
    run_id = build_old_store(pg_store, old)
    with pytest.raises(StoreSchemaError, match=rf"revision {old}, older than MLflow .* run `qroll store upgrade"):
        ExpManager(pg_store)
    assert pg_state(pg_store)[0] == old  # opening never migrates
    cli = subprocess.run([sys.executable, "-m", "qroll", "store", "upgrade", "--tracking", pg_store],
                         capture_output=True, text=True, timeout=180)
    assert cli.returncode == 0 and f"from schema revision {old} to {head_revision()}" in cli.stdout, cli.stderr
    assert ExpManager(pg_store).client.get_run(run_id).info.status == "FINISHED"


def test_store_upgrade_creates_a_new_postgres_store_then_finds_it_current(pg_store):
    cmd = [sys.executable, "-m", "qroll", "store", "upgrade", "--tracking", pg_store]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert first.returncode == 0 and first.stdout.startswith("created tracking store"), first.stderr
    assert pg_state(pg_store) == (head_revision(), 1)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0 and "already at" in again.stdout, again.stderr


# -- the task pool's schema and the feature cache ---------------------------------------------------

# A child creating the pool; with DIE_MID_SCHEMA set it SIGKILLs itself inside the schema's
# transaction, after the first CREATE TABLE of schema.sql.
POOL_OPEN = OPEN.format(body="""
import qroll.pool.backend as backend
from qroll.pool import TaskManager
if os.environ.get("DIE_MID_SCHEMA"):
    full = backend.load_schema
    def dying(dialect):
        yield full(dialect)[0]
        os.kill(os.getpid(), signal.SIGKILL)
    backend.load_schema = dying""", action="""
with TaskManager("race", sys.argv[1]) as tm:
    tm.create_task([{"n": i} for i in range(20)])
    print(tm.task_stat())""")


@pytest.mark.slow
def test_pool_created_by_racing_processes_after_a_killed_creator(pool_url):
    rc, out = finish(child(POOL_OPEN, pool_url, DIE_MID_SCHEMA="1"))
    assert rc == -signal.SIGKILL, out
    results = race(POOL_OPEN, pool_url)
    assert [rc for rc, _ in results] == [0] * 4, results
    assert all("{'waiting': 20}" in out for _, out in results)  # one set of tasks, de-duplicated


CACHE_WRITE = OPEN.format(body="""
import hashlib
from qroll.data import cache, cache_files
from qroll.data.source import open_source
if os.environ.get("DIE_BEFORE_MANIFEST"):
    write = cache_files._atomic_write
    def dying(path, *chunks):
        if path.suffix == ".json":
            os.kill(os.getpid(), signal.SIGKILL)
        return write(path, *chunks)
    cache_files._atomic_write = dying
src = open_source("synthetic://?instruments=6&start=2015-01-01&end=2015-12-31&seed=3")
feature = (["$close/Ref($close, 1) - 1", "Mean($volume, 5)"], ["RET1", "VMA5"])
label = (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"])""", action="""
frame = cache.FeatureCache.at(sys.argv[1]).load(src, "all", feature, label)
print(hashlib.sha256(frame.to_numpy().tobytes()).hexdigest())""")


@pytest.mark.slow
def test_feature_cache_entry_written_by_racing_processes_after_a_killed_writer(tmp_path):
    import warnings

    from qroll.data.cache import FeatureCache
    from qroll.data.source import open_source

    home = tmp_path / "home"
    cache = FeatureCache.at(home)
    rc, out = finish(child(CACHE_WRITE, str(home), DIE_BEFORE_MANIFEST="1"))
    assert rc == -signal.SIGKILL, out
    # The killed writer's data file and lock file, no manifest: not an entry.
    assert sorted(p.suffix for p in cache.folder.iterdir()) == [".bin", ".lock"]
    assert cache.info() == []
    results = race(CACHE_WRITE, str(home))
    assert [rc for rc, _ in results] == [0] * 4, results
    assert len({out for _, out in results}) == 1  # the same frame everywhere
    (entry,) = cache.info()
    assert sorted(p.suffix for p in cache.folder.iterdir()) == [".bin", ".json"]  # no .tmp, no .lock
    cache.forget_memory()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a damaged entry would warn
        frame = cache.load(open_source("synthetic://?instruments=6&start=2015-01-01&end=2015-12-31&seed=3"),
                           "all", (["$close/Ref($close, 1) - 1", "Mean($volume, 5)"], ["RET1", "VMA5"]),
                           (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"]))
    assert hashlib.sha256(frame.to_numpy().tobytes()).hexdigest() == results[0][1].strip()
    cache.forget_memory()
