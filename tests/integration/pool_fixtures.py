"""Fixtures for the pool contract suite: one pool URL per backend, a frozen clock, factories.

Imported by test modules (``from pool_fixtures import *``) rather than living in conftest.py.
PostgreSQL comes from ``$QROLL_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``);
each test gets its own schema, dropped afterwards. Unreachable: skipped, or failed when ``CI=true``.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from requires import skip_or_fail

from qroll.messages import mask_credentials
from qroll.pool import TaskManager
from qroll.pool.sqlite import sqlite_path

PG_URL = os.environ.get("QROLL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


def pg_admin() -> Any:
    """A psycopg connection to the test server, or skip (fail under CI) saying why."""
    try:
        import psycopg

        return psycopg.connect(PG_URL, connect_timeout=3, autocommit=True)
    except Exception as exc:  # ImportError or any connection failure
        skip_or_fail(f"PostgreSQL at {mask_credentials(PG_URL)} is not usable: {exc}")


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def execute_sql(url: str, sql: str) -> None:
    """Run one statement on the database behind a pool URL (to tamper with it in tests)."""
    if url.startswith("sqlite"):
        with sqlite3.connect(sqlite_path(url)) as conn:
            conn.execute(sql)
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture(params=BACKENDS)
def pool_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A fresh, empty pool database URL for each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/pool.db"
        return
    admin = pg_admin()
    schema = f"qroll_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_schema(PG_URL, schema)
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


class FrozenClock:
    """A clock that stands still until moved; call it for the time."""

    def __init__(self) -> None:
        self.now = dt.datetime(2024, 1, 2, 9, 30, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def make_tm(pool_url: str, clock: FrozenClock) -> Iterator[Callable[..., TaskManager]]:
    """``make_tm(**overrides)``: a TaskManager on the test pool, frozen clock, no clock tolerance,
    closed afterwards."""
    made: list[TaskManager] = []

    def make(**overrides: Any) -> TaskManager:
        # Leases judged exactly (no clock tolerance): the suite moves the clock past their ends.
        kwargs: dict[str, Any] = {"task_pool": "pool", "url": pool_url, "clock": clock, "lease_seconds": 60,
                                  "clock_tolerance": 0}
        kwargs.update(overrides)
        tm = TaskManager(**kwargs)
        made.append(tm)
        return tm

    yield make
    for tm in made:
        tm.close()


@pytest.fixture
def make_task() -> Callable[..., dict[str, Any]]:
    """``make_task(**overrides)``: a small task definition in Qlib's shape."""

    def make(**overrides: Any) -> dict[str, Any]:
        task: dict[str, Any] = {
            "model": {"class": "LGBModel", "module_path": "qroll.models", "kwargs": {"num_leaves": 31}},
            "dataset": {"class": "DatasetH", "kwargs": {"segments": {"test": ("2020-01-02", "2020-03-31")}}},
            "record": ["SignalRecord"],
        }
        task.update(overrides)
        return task

    return make
