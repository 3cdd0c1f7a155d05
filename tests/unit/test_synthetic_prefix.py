"""SyntheticMarket is prefix-stable: the same seed, instruments and start give the same data on every
day up to the shorter end (values, stored ranges, memberships), so a shorter market is the data of
a longer one as it stood on its end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qroll.data.source import clip_spans, prefix_digest
from qroll.data.synthetic import SyntheticMarket

# (seed, instruments, start, shorter end, longer end)
PAIRS = [
    # Late listings (from trading day 250), delistings and synth100 exits fall between the two ends.
    (0, 40, "2008-01-01", "2009-03-31", "2012-12-31"),
    (5, 60, "2010-01-01", "2011-06-30", "2011-07-29"),
    (7, 12, "2014-01-01", "2014-06-30", "2016-12-30"),
    # One day more; the shortest market (10 business days).
    (11, 5, "2020-01-01", "2020-01-14", "2020-01-15"),
    # The default market, cut in 2019.
    (3, 300, "2008-01-01", "2019-06-28", "2020-12-31"),
]
IDS = [f"seed{p[0]}-{p[1]}x{p[3]}-{p[4]}" for p in PAIRS]


def bits(frame: pd.DataFrame) -> np.ndarray:
    """The float32 values as integers: equal arrays hold the same bits (NaN included)."""
    return frame.to_numpy(dtype=np.float32).view(np.uint32)


def emptied(first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Stored ranges with every empty one written ``(-1, -1)``: comparable whatever their bounds."""
    empty = first > last
    return np.stack([np.where(empty, -1, first), np.where(empty, -1, last)])


@pytest.mark.parametrize(("seed", "n", "start", "short_end", "long_end"), PAIRS, ids=IDS)
def test_the_shorter_market_is_the_longer_one_as_it_stood(seed: int, n: int, start: str, short_end: str,
                                                          long_end: str) -> None:
    short = SyntheticMarket(instruments=n, start=start, end=short_end, seed=seed)
    long = SyntheticMarket(instruments=n, start=start, end=long_end, seed=seed)
    k = len(short.calendar)
    limit = short.calendar.last_day
    assert short.calendar.days.equals(long.calendar.days[:k]) and len(long.calendar) > k

    for market in long.markets():
        seen = {s: clip_spans(spans, limit) for s, spans in long.instruments(market).items()}
        assert short.instruments(market) == {s: spans for s, spans in seen.items() if spans}, market

    # Every field of every symbol the longer market has (those not listed yet included), bit for bit.
    symbols = list(long.instruments()) + ["NOPE"]
    got, want = short.load(short.fields(), symbols), long.load(long.fields(), symbols, None, limit)
    for field in long.fields():
        assert got[field].index.equals(want[field].index)
        np.testing.assert_array_equal(bits(got[field]), bits(want[field]), err_msg=field)
    a, b = short.stored_ranges(short.fields(), symbols), long.stored_ranges(long.fields(), symbols, None, limit)
    for field in long.fields():
        np.testing.assert_array_equal(emptied(*a[field]), emptied(*b[field]), err_msg=field)

    assert short.fingerprint_until(None) == long.fingerprint_until(short_end) == prefix_digest(short)
    assert short.fingerprint() != long.fingerprint()


def test_the_pairs_span_listings_delistings_and_index_changes() -> None:
    """The first pair's later days hold each kind of event, so the test above compares their cut."""
    short = SyntheticMarket(instruments=40, start="2008-01-01", end="2009-03-31", seed=0)
    long = SyntheticMarket(instruments=40, start="2008-01-01", end="2012-12-31", seed=0)
    limit = short.calendar.last_day
    spans = long.instruments()
    assert sum(a > limit for ((a, _),) in spans.values()) == len(spans) - len(short.instruments()) == 4
    assert sum(limit < b < long.calendar.last_day for ((_, b),) in spans.values()) == 2
    # Two synth100 members leave the index (and come back) after the shorter end; none is out on it.
    sub = long.instruments("synth100")
    out = [s for s, v in sub.items() if len(v) == 2 and v[0][1] < limit < v[1][0]]
    later = [s for s, v in sub.items() if len(v) == 2 and v[0][1] > limit]
    assert (len(out), len(later)) == (0, 2)
    assert all(short.instruments("synth100")[s] == [(v[0][0], limit)] for s, v in sub.items() if s in later)


def test_the_last_quarter_lists_later_in_symbol_order() -> None:
    market = SyntheticMarket(instruments=200, start="2008-01-01", end="2020-12-31", seed=4)
    days = market.calendar.days
    listed = [a for ((a, _),) in market.instruments().values()]
    assert listed[:150] == [days[0]] * 150 and len(listed) == 200
    late = pd.DatetimeIndex(listed[150:])
    assert late.is_monotonic_increasing and late[0] >= days[250] and late[-1] < days[2700]
    year = SyntheticMarket(instruments=200, start="2008-01-01", end=str(days[249].date()), seed=4)
    assert list(year.instruments()) == list(market.instruments())[:150]


def test_fingerprint_until_follows_the_data() -> None:
    market = SyntheticMarket(instruments=8, start="2020-01-01", end="2020-06-30", seed=2)
    digests = {day: market.fingerprint_until(day) for day in ("2020-03-31", "2020-04-01", "2020-04-04", None)}
    assert digests["2020-04-04"] == market.fingerprint_until("2020-04-03")  # a Saturday: Friday's data
    assert len(set(digests.values())) == 4
    assert market.fingerprint_until("2020-03-31") != SyntheticMarket(
        instruments=8, start="2020-01-01", end="2020-06-30", seed=3).fingerprint_until("2020-03-31")
    assert market.fingerprint_until("2019-12-31") == SyntheticMarket(  # before any day: nothing held
        instruments=8, start="2020-01-01", end="2020-06-30", seed=3).fingerprint_until("2019-12-31")
