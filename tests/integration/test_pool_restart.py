"""The PostgreSQL pool across lost connections and server restarts: managers reconnect and go on,
calls whose answer was lost are not done twice, and leases that expired meanwhile are fenced."""

# ruff: noqa: F811  (fixtures imported from pool_fixtures are re-bound as test arguments)

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pool_fixtures import make_task, pg_admin, pool_url  # noqa: F401

from qroll.errors import LeaseLostError, PoolConnectionError
from qroll.pool import Heartbeat, TaskManager
from qroll.pool.backend import SQLBackend

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pg_server import PrivatePostgres, private_postgres  # noqa: E402

only_postgresql = pytest.mark.parametrize("pool_url", ["postgresql"], indirect=True)


def cut(tm: TaskManager) -> None:
    """End the server side of a manager's connection, as a restart or a network cut does."""
    admin = pg_admin()
    try:
        pid = tm.backend._conn.info.backend_pid  # type: ignore[attr-defined]
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        admin.close()


# -- a first try that committed, then lost its answer (shared server) ---------------------------
@only_postgresql
def test_a_claim_whose_answer_was_lost_is_found_not_taken_twice(pool_url, make_task):
    with TaskManager("pool", pool_url) as tm:
        ids = tm.create_task([make_task(n=1), make_task(n=2)])
        now = tm.clock()
        kwargs: dict[str, Any] = {"status": "waiting", "owner": "w:lost1", "now": now,
                                  "lease_until": tm._lease_until(now)}
        first = SQLBackend.claim(tm.backend, "pool", None, **kwargs)  # committed; its answer "lost"
        cut(tm)
        again = tm.backend.claim("pool", None, **kwargs)  # the retry after reconnecting
        assert first is not None and again is not None and again.id == first.id == ids[0]
        assert tm.task_stat() == {"running": 1, "waiting": 1}


@only_postgresql
def test_a_commit_whose_answer_was_lost_is_no_lost_lease(pool_url, make_task):
    with TaskManager("pool", pool_url) as tm:
        [tid] = tm.create_task([make_task()])
        task = tm.fetch_task()
        now = tm.clock()
        kwargs: dict[str, Any] = {"status": "done", "now": now, "result": '{"rid": "r1"}'}
        assert SQLBackend.finish(tm.backend, "pool", tid, task["lease_owner"], **kwargs) is not None
        cut(tm)
        assert tm.backend.finish("pool", tid, task["lease_owner"], **kwargs) == "done"
        # A finish with another result (another worker's) is not taken for ours:
        assert tm.backend.finish("pool", tid, task["lease_owner"], **{**kwargs, "result": '"x"'}) is None
        assert tm.re_query(tid)["res"] == {"rid": "r1"}


@only_postgresql
def test_a_commit_and_claim_whose_answer_was_lost_keeps_both(pool_url, make_task):
    with TaskManager("pool", pool_url) as tm:
        first_id, second_id, _ = tm.create_task([make_task(n=i) for i in range(3)])
        task = tm.fetch_task()
        now = tm.clock()
        kwargs: dict[str, Any] = {"status": "done", "result": '"ok"', "query": None, "next_status": "waiting",
                                  "next_owner": "w:next1", "now": now, "lease_until": tm._lease_until(now)}
        done, nxt = SQLBackend.finish_and_claim(tm.backend, "pool", first_id, task["lease_owner"], **kwargs)
        assert done and nxt is not None and nxt.id == second_id
        cut(tm)
        done, again = tm.backend.finish_and_claim("pool", first_id, task["lease_owner"], **kwargs)
        assert done and again is not None and again.id == second_id
        assert tm.task_stat() == {"done": 1, "running": 1, "waiting": 1}


# -- a real restart of a private server -----------------------------------------------------------
@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    # Not under pytest's tmp_path: as root, the server runs as "postgres", which cannot enter
    # pytest's private (0700) folders.
    root = Path(tempfile.mkdtemp(prefix="qroll-pg-"))
    try:
        with private_postgres(root) as pg:
            yield pg
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_pool(private_pg: PrivatePostgres, request: pytest.FixtureRequest) -> str:
    return private_pg.create_database(f"pool_{request.node.name.lower()[:40]}")


@pytest.mark.slow
def test_a_manager_goes_on_across_a_crash_restart(private_pg, pg_pool, make_task):
    with TaskManager("pool", pg_pool, lease_seconds=4) as tm, TaskManager("pool", pg_pool) as other:
        ids = tm.create_task([make_task(n=1), make_task(n=2)])
        task = tm.fetch_task()
        with Heartbeat(tm, task, interval=0.5) as hb:
            private_pg.restart(mode="immediate", down_seconds=2)
            time.sleep(1.5)  # heartbeats reconnect and renew the lease
            assert other.requeue_expired() == 0
            held = other.re_query(task["_id"])
            assert (held["status"], held["lease_owner"]) == ("running", task["lease_owner"])
        assert not hb.lost.is_set()
        nxt = tm.commit_and_fetch(task, {"rid": "r1"})
        assert nxt is not None and nxt["_id"] == ids[1]
        tm.commit_task_res(nxt, {"rid": "r2"})
        rows = list(other.query())
        assert [(r["status"], r["attempts"], r["res"]) for r in rows] == [
            ("done", 0, {"rid": "r1"}), ("done", 0, {"rid": "r2"})]


@pytest.mark.slow
def test_a_lease_that_expired_during_the_outage_is_fenced(private_pg, pg_pool, make_task):
    with TaskManager("pool", pg_pool, lease_seconds=1, clock_tolerance=0) as slow:
        [tid] = slow.create_task([make_task()])
        stale = slow.fetch_task()
        private_pg.restart(mode="fast", down_seconds=1.5)  # longer than the lease, no heartbeat
        with TaskManager("pool", pg_pool, clock_tolerance=0) as fresh:
            got = fresh.fetch_task()
            assert got is not None and got["_id"] == tid and got["attempts"] == 1
            with pytest.raises(LeaseLostError, match=f"task {tid}"):
                slow.commit_task_res(stale, {"rid": "stale"})
            fresh.commit_task_res(got, {"rid": "fresh"})
            assert fresh.re_query(tid)["res"] == {"rid": "fresh"}


@pytest.mark.slow
def test_a_server_that_stays_down_is_one_clear_error_after_the_bound(private_pg, pg_pool, make_task):
    with TaskManager("pool", pg_pool + "?reconnect_seconds=2") as tm:
        tm.create_task([make_task()])
        private_pg.stop("immediate")
        try:
            start = time.monotonic()
            with pytest.raises(PoolConnectionError) as info:
                tm.task_stat()
            took = time.monotonic() - start
        finally:
            threading.Thread(target=private_pg.start).run()
    message = str(info.value)
    assert "could not get it back" in message and "reconnect_seconds" in message and "count tasks" in message
    assert 1.5 <= took < 30, took
