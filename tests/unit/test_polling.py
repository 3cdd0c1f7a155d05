"""The one poll loop (qroll.pool.polling) and the waits built on it: pauses, time limits, growth."""

from __future__ import annotations

import math
import time

import pytest

from qroll.errors import ConfigError, ConfigValueError, PoolConfigError, PoolTimeoutError
from qroll.pool import TaskManager
from qroll.pool.polling import Poll, check_seconds
from qroll.pool.worker import work


class FakeTime:
    """A clock that only moves when slept on; records each pause."""

    def __init__(self) -> None:
        self.now = 100.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def looks(answers: list[object], at: list[float], fake: FakeTime):
    feed = iter(answers)

    def look():
        at.append(fake.now)
        return next(feed)

    return look


def test_constant_pauses_until_the_look_finds_something():
    fake, at = FakeTime(), []
    poll = Poll(pause=0.25, sleep=fake.sleep, clock=fake.clock)
    assert poll.until(looks([None, None, "found"], at, fake)) == "found"
    assert fake.pauses == [0.25, 0.25]
    assert at == [100.0, 100.25, 100.5]


def test_a_look_that_finds_at_once_never_pauses():
    fake = FakeTime()
    assert Poll(pause=5, sleep=fake.sleep, clock=fake.clock).until(lambda: 0) == 0  # 0 is found
    assert fake.pauses == []


def test_time_limit_without_clip_looks_once_past_it_and_returns_none():
    fake, at = FakeTime(), []
    poll = Poll(pause=1.0, timeout=2.5, sleep=fake.sleep, clock=fake.clock)
    assert poll.until(looks([None] * 10, at, fake)) is None
    # Looks at 0, 1, 2 (each < 2.5 s: pause), then 3 (>= 2.5 s: stop).
    assert [t - 100 for t in at] == [0, 1, 2, 3]
    assert fake.pauses == [1.0, 1.0, 1.0]


def test_time_limit_with_clip_ends_the_last_pause_at_the_limit():
    fake, at = FakeTime(), []
    poll = Poll(pause=1.0, timeout=2.5, clip=True, sleep=fake.sleep, clock=fake.clock)
    assert poll.until(looks([None] * 10, at, fake)) is None
    assert fake.pauses == [1.0, 1.0, 0.5]
    assert [t - 100 for t in at] == [0, 1, 2, 2.5]


def test_a_zero_timeout_looks_exactly_once():
    fake, at = FakeTime(), []
    assert Poll(pause=1, timeout=0, sleep=fake.sleep, clock=fake.clock).until(looks([None], at, fake)) is None
    assert len(at) == 1 and fake.pauses == []


def test_pauses_double_up_to_their_bound():
    fake = FakeTime()
    poll = Poll(pause=0.5, backoff=2, max_pause=8, sleep=fake.sleep, clock=fake.clock)
    poll.until(looks([None] * 7 + [True], [], fake))
    assert fake.pauses == [0.5, 1, 2, 4, 8, 8, 8]


def test_between_runs_before_each_pause_but_not_once_time_is_up():
    fake, events = FakeTime(), []

    def look():
        events.append(("look", fake.now - 100))

    def between():
        events.append(("between", fake.now - 100))

    Poll(pause=1, timeout=1.5, sleep=fake.sleep, clock=fake.clock).until(look, between=between)
    assert events == [("look", 0), ("between", 0), ("look", 1), ("between", 1), ("look", 2)]


@pytest.mark.parametrize("kwargs, name", [
    ({"pause": -1}, "pause=-1"),
    ({"pause": math.nan}, "pause=nan"),
    ({"pause": 1, "timeout": -0.1}, "timeout=-0.1"),
    ({"pause": 1, "max_pause": math.inf}, "max_pause=inf"),
    ({"pause": 1, "backoff": 0.5}, "backoff=0.5"),
])
def test_bad_settings_are_config_value_errors(kwargs, name):
    with pytest.raises(ConfigValueError, match=name) as info:
        Poll(**kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ConfigError)


def test_check_seconds():
    assert check_seconds("poll", 0) == 0.0
    assert check_seconds("timeout", None, optional=True) is None
    with pytest.raises(ConfigValueError, match=r"^timeout=None must be a number of seconds >= 0"):
        check_seconds("timeout", None)
    with pytest.raises(ConfigValueError, match=r"^poll='x' must be a number"):
        check_seconds("poll", "x")  # type: ignore[arg-type]


def test_task_manager_wait_times_out_on_the_shared_loop(tmp_path):
    with TaskManager("p", f"sqlite:///{tmp_path}/pool.db") as tm:
        tm.create_task([{"n": 1}])
        started = time.monotonic()
        with pytest.raises(PoolTimeoutError, match=r"waited 0.3 s .*1 tasks still waiting.*waiting=1"):
            tm.wait(timeout=0.3, poll=0.1)
        # The last pause is clipped to the limit: well under one more poll past it.
        assert 0.3 <= time.monotonic() - started < 1.0
        done = tm.fetch_task()
        tm.commit_task_res(done, {"ok": True})
        assert tm.wait(timeout=0, poll=5) == {"done": 1}  # nothing undone: returns at once
        with pytest.raises(ConfigValueError, match="poll=-1"):
            tm.wait(poll=-1)


def test_work_checks_its_pauses_and_concurrency(tmp_path):
    url = f"sqlite:///{tmp_path}/pool.db"
    with pytest.raises(ConfigValueError, match="idle_poll=-2"):
        work(url, "p", echo, idle_poll=-2)
    with pytest.raises(PoolConfigError, match="concurrency=0"):
        work(url, "p", echo, concurrency=0)


def echo(task, **kwargs):
    return {"n": task["n"]}


def test_a_worker_pauses_only_when_idle_and_stops_when_the_pool_is_empty(tmp_path):
    url = f"sqlite:///{tmp_path}/pool.db"
    with TaskManager("p", url) as tm:
        tm.create_task([{"n": i} for i in range(3)])
    started = time.monotonic()
    summary = work(url, "p", echo, idle_poll=30)
    # Three tasks back to back and an empty pool: no 30 s idle pause was taken.
    assert time.monotonic() - started < 10
    assert summary.done == 3 and summary.ok
    with TaskManager("p", url) as tm:
        assert sorted(t["res"]["n"] for t in tm.query()) == [0, 1, 2]
