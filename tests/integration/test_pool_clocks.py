"""Clocks that differ between machines: a lease is written with its holder's clock and judged with
another's; a skew within the judge's tolerance never makes it expire early. Both backends."""

# ruff: noqa: F811  (fixtures imported from pool_fixtures are re-bound as test arguments)

from __future__ import annotations

import datetime as dt

import pytest
from pool_fixtures import FrozenClock, clock, make_task, make_tm, pool_url  # noqa: F401

from qroll.errors import LeaseLostError, PoolError
from qroll.pool import TaskManager
from qroll.pool.manager import DEFAULT_CLOCK_TOLERANCE

SKEW = 4.0  # seconds the judge's clock runs ahead of the holder's


class Skewed:
    """A second machine's clock: moves with ``base`` but reads ``seconds`` later."""

    def __init__(self, base: FrozenClock, seconds: float) -> None:
        self.base, self.skew = base, dt.timedelta(seconds=seconds)

    def __call__(self) -> dt.datetime:
        return self.base.now + self.skew


@pytest.mark.parametrize("tolerance", [None, 0])
def test_a_skewed_clock_does_not_expire_a_lease_early(pool_url, make_task, clock, tolerance):
    """With the default tolerance the lease holds; with none (qroll before it) it was lost early."""
    holder = TaskManager("pool", pool_url, clock=clock, lease_seconds=10)
    judge = TaskManager("pool", pool_url, clock=Skewed(clock, SKEW), lease_seconds=10,
                        clock_tolerance=tolerance)
    try:
        assert judge.clock_tolerance == (min(DEFAULT_CLOCK_TOLERANCE, 10) if tolerance is None else 0)
        [tid] = holder.create_task([make_task()])
        task = holder.fetch_task()
        clock.advance(8)  # 8 s by the holder's clock, within its 10 s lease; 12 s by the judge's
        if tolerance == 0:
            assert judge.requeue_expired() == 1
            with pytest.raises(LeaseLostError):
                holder.commit_task_res(task, {"rid": "lost"})
            return
        assert judge.requeue_expired() == 0 and judge.fetch_task() is None
        holder.commit_task_res(task, {"rid": "kept"})
        row = holder.re_query(tid)
        assert (row["status"], row["attempts"], row["res"]) == ("done", 0, {"rid": "kept"})
    finally:
        holder.close()
        judge.close()


def test_a_dead_holders_lease_is_requeued_once_past_the_tolerance(pool_url, make_task, clock):
    holder = TaskManager("pool", pool_url, clock=clock, lease_seconds=10)
    judge = TaskManager("pool", pool_url, clock=Skewed(clock, SKEW), lease_seconds=10)
    try:
        [tid] = holder.create_task([make_task()])
        holder.fetch_task()  # and the holder dies
        clock.advance(10 + judge.clock_tolerance - SKEW - 0.5)  # the judge: 0.5 s short of it
        assert judge.fetch_task() is None
        clock.advance(1)
        again = judge.fetch_task()
        assert again is not None and again["_id"] == tid and again["attempts"] == 1
    finally:
        holder.close()
        judge.close()


def test_a_skew_larger_than_the_tolerance_is_what_it_does_not_cover(pool_url, make_task, clock):
    holder = TaskManager("pool", pool_url, clock=clock, lease_seconds=10)
    judge = TaskManager("pool", pool_url, clock=Skewed(clock, 8), lease_seconds=10, clock_tolerance=2)
    try:
        holder.create_task([make_task()])
        holder.fetch_task()
        clock.advance(5)  # 13 s by the judge's clock: 3 s past the lease, 1 s past the tolerance
        assert judge.requeue_expired() == 1
    finally:
        holder.close()
        judge.close()


def test_tolerance_defaults_to_at_most_the_lease_and_refuses_negatives(pool_url):
    with TaskManager("pool", pool_url, lease_seconds=2) as short, TaskManager("pool", pool_url) as default:
        assert short.clock_tolerance == 2 and default.clock_tolerance == DEFAULT_CLOCK_TOLERANCE
    with pytest.raises(PoolError, match="clock_tolerance=-1"):
        TaskManager("pool", pool_url, clock_tolerance=-1)
