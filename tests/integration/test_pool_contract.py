"""The pool contract: SQLite and PostgreSQL held to the same behaviour, test by test."""

# ruff: noqa: F811  (fixtures imported from pool_fixtures are re-bound as test arguments)

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from pool_fixtures import clock, execute_sql, make_task, make_tm, pool_url  # noqa: F401
from requires import require_module

from qroll.errors import (
    LeaseLostError,
    NotSerializableError,
    PoolConnectionError,
    PoolError,
    PoolQueryError,
    PoolSchemaError,
    PoolTimeoutError,
)
from qroll.pool import Heartbeat, TaskManager, run_task


def lgb(make_task: Any, n: int) -> dict[str, Any]:
    return make_task(model={"class": "LGBModel", "kwargs": {"seed": n}})


# -- creating ---------------------------------------------------------------------------------
def test_dedup_within_a_batch_and_across_calls(make_tm, make_task):
    tm = make_tm()
    a, b = make_task(), make_task(record=["SigAnaRecord"])
    same_a = {**dict(reversed(list(a.items()))), "dataset": {"class": "DatasetH", "kwargs": {
        "segments": {"test": ["2020-01-02", dt.date(2020, 3, 31)]}}}}
    ids = tm.create_task([a, b, a, same_a])
    assert ids[0] == ids[2] == ids[3] != ids[1]
    assert tm.create_task([b, a]) == [ids[1], ids[0]]
    assert tm.task_stat() == {"waiting": 2}


def test_dry_run_returns_ids_and_inserts_nothing(make_tm, make_task):
    tm = make_tm()
    [first] = tm.create_task([lgb(make_task, 1)])
    assert tm.create_task([lgb(make_task, 1), lgb(make_task, 2), lgb(make_task, 2)], dry_run=True) == [
        first, None, None]
    assert tm.task_stat() == {"waiting": 1}


def test_not_serialisable_task_is_refused_whole_batch(make_tm, make_task):
    tm = make_tm()
    with pytest.raises(NotSerializableError, match=r"task\.model\.kwargs\.obj"):
        tm.create_task([lgb(make_task, 1), make_task(model={"kwargs": {"obj": object()}})])
    assert tm.task_stat() == {}


def test_done_task_is_reused_and_failed_one_retried_only_when_asked(make_tm, make_task):
    tm = make_tm(max_attempts=1)
    done_id, failed_id = tm.create_task([lgb(make_task, 1), lgb(make_task, 2)])
    tm.commit_task_res(tm.fetch_task(), {"rid": "r1"})
    tm.record_failure(tm.fetch_task(), "boom")
    assert tm.re_query(failed_id)["status"] == "failed"
    assert tm.create_task([lgb(make_task, 1), lgb(make_task, 2)]) == [done_id, failed_id]
    assert tm.task_stat() == {"done": 1, "failed": 1}
    tm.create_task([lgb(make_task, 1), lgb(make_task, 2)], retry_failed=True)
    again = tm.re_query(failed_id)
    assert (again["status"], again["attempts"]) == ("waiting", 0)
    assert tm.re_query(done_id)["res"] == {"rid": "r1"}


# -- claiming and status moves ----------------------------------------------------------------
def test_fetch_order_is_priority_then_age(make_tm, make_task):
    tm = make_tm()
    ids = tm.create_task([lgb(make_task, i) for i in range(4)])
    tm.prioritize({"_id": ids[2]}, 5)
    tm.prioritize({"_id": ids[3]}, -1)
    order = [tm.fetch_task()["_id"] for _ in range(4)]
    assert order == [ids[2], ids[0], ids[1], ids[3]]
    assert tm.fetch_task() is None


def test_fetched_task_has_qlib_keys_and_lease(make_tm, make_task, clock):
    tm = make_tm(lease_seconds=30)
    tm.create_task([make_task()])
    task = tm.fetch_task()
    assert task["status"] == "running" and task["def"] == task["filter"]
    assert task["def"]["dataset"]["kwargs"]["segments"]["test"] == ["2020-01-02", "2020-03-31"]
    assert task["lease_owner"].startswith(tm.worker_id) and task["attempts"] == 0
    assert task["lease_expires"] == clock.now + dt.timedelta(seconds=30)
    assert tm.re_query(task["_id"])["status"] == "running"


def test_every_status_move(make_tm, make_task):
    tm = make_tm()
    [tid] = tm.create_task([make_task()])
    task = tm.fetch_task()
    tm.commit_task_res(task, {"phase": 1}, status="part_done")
    assert tm.fetch_task() is None
    task = tm.fetch_task(status="part_done")
    assert task["res"] == {"phase": 1}
    tm.return_task(task, status="part_done")
    assert tm.re_query(tid)["status"] == "part_done"
    task = tm.fetch_task(status="part_done")
    tm.commit_task_res(task, {"phase": 2})
    assert tm.re_query(tid)["status"] == "done" and tm.re_query(tid)["res"] == {"phase": 2}
    assert tm.reset_status({"_id": tid}, "waiting") == 1
    task = tm.fetch_task()
    assert tm.reset_waiting() == 1
    assert tm.re_query(tid)["status"] == "waiting" and tm.re_query(tid)["lease_owner"] is None


def test_safe_fetch_task_returns_the_task_on_error(make_tm, make_task):
    tm = make_tm()
    [tid] = tm.create_task([make_task()])
    with pytest.raises(RuntimeError), tm.safe_fetch_task() as task:
        assert tm.re_query(task["_id"])["status"] == "running"
        raise RuntimeError("inside")
    assert tm.re_query(tid)["status"] == "waiting" and tm.re_query(tid)["attempts"] == 0


def test_task_fetcher_iter_claims_until_empty(make_tm, make_task):
    tm = make_tm()
    ids = tm.create_task([lgb(make_task, i) for i in range(3)])
    got = [t["_id"] for t in tm.task_fetcher_iter()]
    assert got == ids and tm.task_stat() == {"running": 3}


def test_commit_and_fetch_stores_the_result_and_claims_the_next(make_tm, make_task):
    tm = make_tm()
    low, high, other = tm.create_task([lgb(make_task, 1), lgb(make_task, 2), lgb(make_task, 3)])
    tm.prioritize({"_id": high}, 5)
    first = tm.fetch_task()
    assert first["_id"] == high
    second = tm.commit_and_fetch(first, {"rid": "r-high"})
    assert second is not None and second["_id"] == low and second["status"] == "running"
    assert second["lease_owner"] not in (None, first["lease_owner"])
    assert tm.re_query(high)["res"] == {"rid": "r-high"} and tm.re_query(high)["status"] == "done"
    third = tm.commit_and_fetch(second, {"rid": "r-low"}, status="part_done")
    assert third["_id"] == other
    assert tm.commit_and_fetch(third, {"rid": "r-other"}) is None
    assert tm.task_stat() == {"done": 2, "part_done": 1}


def test_commit_and_fetch_follows_query_and_next_status(make_tm, make_task):
    tm = make_tm()
    a, b, c = tm.create_task([lgb(make_task, 1), lgb(make_task, 2),
                              make_task(model={"class": "LinearModel"})])
    for _ in range(2):
        tm.commit_task_res(tm.fetch_task(query={"def.model.class": "LGBModel"}), "phase1",
                           status="part_done")
    task = tm.fetch_task(status="part_done")
    nxt = tm.commit_and_fetch(task, "phase2", query={"def.model.class": "LGBModel"},
                              next_status="part_done")
    assert {task["_id"], nxt["_id"]} == {a, b} and nxt["res"] == "phase1"
    assert tm.commit_and_fetch(nxt, "phase2", next_status="part_done") is None
    assert tm.re_query(c)["status"] == "waiting"
    assert tm.task_stat() == {"done": 2, "waiting": 1}


def test_commit_and_fetch_with_a_lost_lease_changes_and_claims_nothing(make_tm, make_task, clock):
    first, second = make_tm(lease_seconds=10), make_tm(lease_seconds=10)
    tid, spare = first.create_task([lgb(make_task, 1), lgb(make_task, 2)])
    stale = first.fetch_task()
    clock.advance(11)
    fresh = second.fetch_task()
    assert fresh["_id"] == tid
    first._next_requeue = clock.now + dt.timedelta(seconds=60)  # take the one-transaction path
    with pytest.raises(LeaseLostError, match=f"task {tid}"):
        first.commit_and_fetch(stale, {"rid": "stale"})
    assert first.re_query(spare)["status"] == "waiting"
    assert first.re_query(tid)["res"] is None
    with pytest.raises(NotSerializableError, match="res"):
        second.commit_and_fetch(fresh, {"obj": object()})
    assert second.task_stat() == {"running": 1, "waiting": 1}


def test_commit_and_fetch_requeues_an_expired_lease_when_nothing_else_waits(make_tm, make_task, clock):
    worker, dead = make_tm(lease_seconds=40), make_tm(lease_seconds=4)
    mine, orphan = worker.create_task([lgb(make_task, 1), lgb(make_task, 2)])
    task = worker.fetch_task()
    assert dead.fetch_task()["_id"] == orphan  # its worker dies holding it
    clock.advance(5)  # the orphan's lease has expired; the worker's requeue (every 10 s) is not due
    assert worker._next_requeue is not None and clock.now < worker._next_requeue
    got = worker.commit_and_fetch(task, "ok")
    assert got is not None and got["_id"] == orphan and got["attempts"] == 1
    assert worker.re_query(mine)["status"] == "done"


# -- leases, fencing, attempts ----------------------------------------------------------------
def test_lost_lease_cannot_commit_or_return(make_tm, make_task, clock):
    first, second = make_tm(lease_seconds=10), make_tm(lease_seconds=10)
    [tid] = first.create_task([make_task()])
    stale = first.fetch_task()
    clock.advance(11)
    fresh = second.fetch_task()  # the claim requeues the expired lease, then takes it
    assert fresh["_id"] == tid and fresh["attempts"] == 1
    with pytest.raises(LeaseLostError, match=f"task {tid}"):
        first.commit_task_res(stale, {"rid": "stale"})
    with pytest.raises(LeaseLostError):
        first.return_task(stale)
    with pytest.raises(LeaseLostError):
        first.heartbeat(stale)
    row = second.re_query(tid)
    assert (row["status"], row["res"], row["lease_owner"]) == ("running", None, fresh["lease_owner"])
    second.commit_task_res(fresh, {"rid": "fresh"})
    assert second.re_query(tid)["res"] == {"rid": "fresh"}


def test_same_manager_reclaiming_gets_a_new_lease_token(make_tm, make_task, clock):
    tm = make_tm(lease_seconds=5)
    tm.create_task([make_task()])
    stale = tm.fetch_task()
    clock.advance(6)
    fresh = tm.fetch_task()
    assert fresh["lease_owner"] != stale["lease_owner"]
    with pytest.raises(LeaseLostError):
        tm.commit_task_res(stale, 1)


def test_heartbeat_extends_the_lease(make_tm, make_task, clock):
    tm, other = make_tm(lease_seconds=10), make_tm(lease_seconds=10)
    tm.create_task([make_task()])
    task = tm.fetch_task()
    for _ in range(3):
        clock.advance(8)
        assert tm.heartbeat(task) == clock.now + dt.timedelta(seconds=10)
        assert other.fetch_task() is None
    tm.commit_task_res(task, "ok")


def test_expired_leases_requeue_then_fail_with_error_kept(make_tm, make_task, clock):
    tm = make_tm(lease_seconds=10, max_attempts=2)
    [tid] = tm.create_task([make_task()])
    task = tm.fetch_task()
    try:
        raise ValueError("bad input")
    except ValueError as exc:
        tm.record_failure(task, exc)
    row = tm.re_query(tid)
    assert (row["status"], row["attempts"], row["last_error"]) == ("waiting", 1, "ValueError: bad input")
    # The whole traceback, from its header down to the raise in this test, not just the message.
    trace = row["last_traceback"]
    assert trace.startswith("Traceback (most recent call last):\n"), trace
    assert 'in test_expired_leases_requeue_then_fail_with_error_kept\n    raise ValueError("bad input")' in trace
    assert trace.endswith("ValueError: bad input\n"), trace
    tm.fetch_task()
    clock.advance(5)
    assert tm.requeue_expired() == 0
    clock.advance(6)
    assert tm.requeue_expired() == 1
    row = tm.re_query(tid)
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert "expired" in row["last_error"] and row["lease_owner"] is None
    assert tm.fetch_task() is None


def test_expired_part_done_task_goes_back_to_part_done(make_tm, make_task, clock):
    tm = make_tm(lease_seconds=10)
    [tid] = tm.create_task([make_task()])
    tm.commit_task_res(tm.fetch_task(), {"phase": 1}, status="part_done")
    tm.fetch_task(status="part_done")
    clock.advance(11)
    tm.requeue_expired()
    row = tm.re_query(tid)
    assert (row["status"], row["attempts"], row["res"]) == ("part_done", 1, {"phase": 1})


def test_failures_count_until_failed(make_tm, make_task):
    tm = make_tm(max_attempts=3)
    [tid] = tm.create_task([make_task()])
    statuses = []
    for i in range(3):
        try:
            raise KeyError(f"missing {i}")
        except KeyError as exc:
            statuses.append(tm.record_failure(tm.fetch_task(), exc).value)
    assert statuses == ["waiting", "waiting", "failed"]
    row = tm.re_query(tid)
    assert row["last_error"] == "KeyError: 'missing 2'" and "raise KeyError" in row["last_traceback"]


def test_heartbeat_thread_keeps_a_real_lease(pool_url, make_task):
    with TaskManager("hb", pool_url, lease_seconds=0.6) as tm, TaskManager("hb", pool_url) as other:
        tm.create_task([make_task()])
        task = tm.fetch_task()
        with Heartbeat(tm, task, interval=0.1) as hb:
            threading.Event().wait(1.5)
            assert other.fetch_task() is None
        assert not hb.lost.is_set()
        tm.commit_task_res(task, "ok")


# -- reading, waiting, removing ---------------------------------------------------------------
def test_query_filters(make_tm, make_task):
    tm = make_tm()
    ids = tm.create_task([lgb(make_task, 1), lgb(make_task, 2),
                          make_task(model={"class": "LinearModel", "kwargs": {"seed": 3}}, record=["X", "Y"])])
    tm.commit_task_res(tm.fetch_task({"_id": ids[1]}), {"rid": "r"})

    def ids_of(query: dict[str, Any]) -> list[int]:
        return [t["_id"] for t in tm.query(query)]

    assert ids_of({"def.model.class": "LGBModel"}) == ids[:2]
    assert ids_of({"filter.model.class": "LinearModel"}) == [ids[2]]
    assert ids_of({"def.model.kwargs.seed": {"$in": [1, 3]}}) == [ids[0], ids[2]]
    assert ids_of({"def.record.1": "Y"}) == [ids[2]]
    assert ids_of({"def.dataset.kwargs.segments.test.0": "2020-01-02"}) == ids
    assert ids_of({"status": "done"}) == [ids[1]]
    assert ids_of({"status": {"$in": ["waiting", "done"]}, "def.model.class": "LGBModel"}) == ids[:2]
    assert ids_of({"_id": {"$in": [ids[2], str(ids[0])]}}) == [ids[0], ids[2]]
    assert ids_of({"_id": {"$in": []}}) == []
    assert ids_of({"_id": {"$nin": [ids[0]]}, "def.model.class": {"$nin": ["LinearModel"]}}) == [ids[1]]
    assert ids_of({"def": lgb(make_task, 2)}) == [ids[1]]
    assert ids_of({"def.no.such.path": 1}) == []
    assert tm.task_stat({"def.model.class": "LGBModel"}) == {"waiting": 1, "done": 1}
    raw = next(tm.query({"_id": ids[1]}, decode=False))
    assert isinstance(raw["def"], str) and '"LGBModel"' in raw["def"]
    with pytest.raises(PoolQueryError, match=r"'model.class'.*_id, status"):
        list(tm.query({"model.class": "LGBModel"}))
    with pytest.raises(PoolQueryError, match=r"\$ne"):
        list(tm.query({"status": {"$ne": "done"}}))
    with pytest.raises(PoolQueryError, match="'finished' is not a status"):
        tm.task_stat({"status": "finished"})


def test_re_query_missing_id_is_a_pool_error(make_tm):
    with pytest.raises(PoolError, match="no task with id 12345"):
        make_tm().re_query(12345)


def test_remove_refuses_an_empty_query(make_tm, make_task):
    tm = make_tm()
    ids = tm.create_task([lgb(make_task, i) for i in range(3)])
    with pytest.raises(PoolError, match="all=True"):
        tm.remove()
    assert tm.remove({"_id": ids[0]}) == 1
    assert tm.remove(all=True) == 2
    assert tm.task_stat() == {}


def test_pools_are_separate_and_listed(make_tm, make_task):
    a, b = make_tm(task_pool="a"), make_tm(task_pool="b")
    a.create_task([make_task()])
    assert b.fetch_task() is None and b.task_stat() == {}
    b.create_task([make_task()])
    assert a.list() == ["a", "b"] and str(a) == "TaskManager(a)"


def test_wait_times_out_with_counts_and_ignores_part_done(make_tm, make_task):
    tm = make_tm()
    tm.create_task([lgb(make_task, i) for i in range(2)])
    with pytest.raises(PoolTimeoutError, match="2 tasks still waiting or running.*waiting=2"):
        tm.wait(timeout=0.2, poll=0.05)
    tm.commit_task_res(tm.fetch_task(), "r", status="part_done")
    tm.commit_task_res(tm.fetch_task(), "r")
    assert tm.wait(timeout=1) == {"part_done": 1, "done": 1}


def test_wait_requeues_expired_leases(make_tm, make_task, clock):
    tm = make_tm(lease_seconds=1, max_attempts=1)
    tm.create_task([make_task()])
    tm.fetch_task()
    clock.advance(2)
    assert tm.wait(timeout=1, poll=0.01) == {"failed": 1}


# -- schema and connection errors ---------------------------------------------------------------
def test_pool_written_by_a_newer_schema_is_refused(pool_url, make_tm):
    make_tm().close()
    execute_sql(pool_url, "UPDATE qroll_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(PoolSchemaError, match="schema version 99.*upgrade qroll"):
        TaskManager("pool", pool_url)


def test_unknown_scheme_lists_supported_ones():
    with pytest.raises(PoolConnectionError, match="postgresql://, sqlite://"):
        TaskManager("p", "mongodb://u:secret@10.0.0.4:27017/")


def test_unreachable_postgresql_is_one_clear_line_without_password():
    require_module("psycopg", "psycopg is not installed: pip install 'qroll[postgres]' (CI installs it)")
    with pytest.raises(PoolConnectionError) as info:
        TaskManager("p", "postgresql://bob:s3cret@127.0.0.1:1/nowhere")
    message = str(info.value)
    assert "postgresql://bob:***@127.0.0.1:1/nowhere" in message and "s3cret" not in message
    assert "\n" not in message


# -- concurrency and the worker loop --------------------------------------------------------
def test_concurrent_claims_never_double_assign(pool_url, make_task):
    with TaskManager("race", pool_url) as tm:
        ids = tm.create_task([lgb(make_task, i) for i in range(200)])
    claimed: list[list[int]] = [[] for _ in range(6)]
    errors: list[BaseException] = []

    def worker(slot: int) -> None:
        try:
            with TaskManager("race", pool_url) as mine:
                while (task := mine.fetch_task()) is not None:
                    claimed[slot].append(task["_id"])
                    mine.commit_task_res(task, {"by": slot})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    every = sorted(i for c in claimed for i in c)
    assert every == sorted(ids)
    with TaskManager("race", pool_url) as tm:
        assert tm.task_stat() == {"done": 200}
        assert {t["_id"]: t["res"]["by"] for t in tm.query()} == {i: s for s, c in enumerate(claimed) for i in c}


def fails_on_two(task: dict[str, Any]) -> int:
    if task["model"]["kwargs"]["seed"] == 2:
        raise ValueError("seed 2 is cursed")
    return task["model"]["kwargs"]["seed"]


def test_run_task_records_failures_and_moves_on(pool_url, make_task):
    with TaskManager("runs", pool_url, max_attempts=2) as tm:
        ids = tm.create_task([lgb(make_task, i) for i in range(1, 4)])
        assert run_task(fails_on_two, "runs", url=pool_url) is True
        # The failed task went back to waiting after one attempt; a second run uses it up.
        assert tm.task_stat() == {"done": 2, "waiting": 1}
        assert run_task(fails_on_two, "runs", url=pool_url) is False
        bad = tm.re_query(ids[1])
        assert (bad["status"], bad["attempts"]) == ("failed", 2)
        assert "seed 2 is cursed" in bad["last_error"] and "fails_on_two" in bad["last_traceback"]
        assert [tm.re_query(i)["res"] for i in (ids[0], ids[2])] == [1, 3]


def test_run_task_two_phases_and_force_release(pool_url, make_task):
    with TaskManager("phases", pool_url) as tm:
        ids = tm.create_task([make_task(), make_task(record=[])])
        assert run_task(len, "phases", url=pool_url, after_status="part_done", force_release=True)
        assert [tm.re_query(i)["res"] for i in ids] == [3, 3]
        assert run_task(str, "phases", url=pool_url, before_status="part_done")
        assert tm.task_stat() == {"done": 2} and tm.re_query(ids[0])["res"] == "3"
    with pytest.raises(PoolError, match="done→waiting"):
        run_task(len, "phases", url=pool_url, before_status="done", after_status="waiting")


def lease_echo(task: dict[str, Any], pool_lease: Any) -> list[Any]:
    return [pool_lease.pool, pool_lease.task_id, pool_lease.owner]


def no_lease(task: dict[str, Any], **kwargs: Any) -> list[str]:
    return sorted(kwargs)


def test_run_task_gives_the_lease_to_functions_that_take_it(pool_url, make_task):
    with TaskManager("pool", pool_url) as tm:
        a, b = tm.create_task([lgb(make_task, 1), lgb(make_task, 2)])
    assert run_task(lease_echo, "pool", url=pool_url, query={"_id": a})
    assert run_task(no_lease, "pool", url=pool_url, query={"_id": b}, extra=1)
    with TaskManager("pool", pool_url) as tm:
        got = tm.re_query(a)["res"]
        assert got[:2] == ["pool", a] and got[2].startswith(tm.worker_id.split(":")[0])
        assert tm.re_query(b)["res"] == ["extra"]
