"""``AsOfSource``: the data as known on a day. In memory, on the synthetic market (no I/O)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qroll.data.asof import AsOfSource
from qroll.data.features import compute_features
from qroll.data.synthetic import SyntheticMarket
from qroll.errors import ConfigTypeError, ConfigValueError

FEATURES = (["$close/Ref($close, 1) - 1", "Mean($close, 5)/$close"], ["RET1", "MA5"])
LABEL = (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"])


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket(instruments=6, start="2020-01-01", end="2020-06-30", seed=3)


def test_nothing_after_the_as_of_day_is_visible(market):
    view = AsOfSource(market, "2020-03-15")  # a Sunday: the view ends on Friday the 13th
    last = pd.Timestamp("2020-03-13")
    assert view.as_of == last and view.calendar.last_day == last and len(view.calendar.future) == 0
    assert list(view.calendar.days) == [d for d in market.calendar.days if d <= last]
    close = view.load(["close"], list(market.instruments()))["close"]
    assert close.index.max() == last
    pd.testing.assert_frame_equal(close, market.load(["close"], list(market.instruments()), None, last)["close"])
    assert view.load(["close"], ["SYN0001"], "2020-04-01")["close"].empty
    first, stop = view.stored_ranges(["close"], list(market.instruments()))["close"]
    assert stop.max() == len(view.calendar) - 1 and (first <= stop).all()
    assert all(b <= last for spans in view.instruments().values() for _, b in spans)
    assert view.markets() == market.markets() and view.fields() == market.fields()


def test_features_on_the_view_are_the_full_sources_and_labels_stop_at_the_as_of_day(market):
    """Features look back only, so they equal the full source's; the label looks two days ahead, so
    on the view's last two days it is not known yet."""
    view = AsOfSource(market, "2020-03-13")
    full = compute_features(market, *FEATURES, *LABEL)
    cut = compute_features(view, *FEATURES, *LABEL)
    assert cut.index.get_level_values("datetime").max() == pd.Timestamp("2020-03-13")
    same = full.loc[cut.index]
    pd.testing.assert_frame_equal(cut["feature"], same["feature"])
    label = cut[("label", "LABEL0")]
    tail = label.index.get_level_values("datetime") >= "2020-03-12"
    assert label[tail].isna().all() and same[("label", "LABEL0")][tail].notna().any()
    np.testing.assert_array_equal(label[~tail].to_numpy(), same[("label", "LABEL0")][~tail].to_numpy())


def test_a_view_has_a_fingerprint_of_its_own(market):
    a, b = AsOfSource(market, "2020-03-13"), AsOfSource(market, "2020-03-16")
    assert len({a.fingerprint(), b.fingerprint(), market.fingerprint()}) == 3
    assert a.fingerprint() == AsOfSource(market, "2020-03-14").fingerprint()  # the same days, the same view
    assert a.uri == market.uri
    # Its content up to a day is the source's: the same digest, and none of the days after the as-of.
    assert a.fingerprint_until("2020-02-28") == market.fingerprint_until("2020-02-28")
    assert a.fingerprint_until("2020-06-30") == market.fingerprint_until("2020-03-13")
    assert b.fingerprint_until("2020-06-30") != a.fingerprint_until("2020-06-30")


def test_an_instrument_listed_after_the_as_of_day_is_not_a_member_yet():
    market = SyntheticMarket(instruments=40, start="2015-01-01", end="2020-12-31", seed=1)
    late = {s: spans[0][0] for s, spans in market.instruments().items() if spans[0][0] > market.calendar.first_day}
    if not late:
        pytest.skip("this synthetic market lists every instrument from its first day: no late listing to hide")
    symbol, listed = min(late.items(), key=lambda kv: kv[1])
    before = AsOfSource(market, listed - pd.Timedelta(days=1))
    assert symbol not in before.instruments()
    assert symbol in AsOfSource(market, listed).instruments()


def test_bad_as_of_days_are_config_errors(market):
    with pytest.raises(ConfigValueError, match="before the first trading day 2020-01-01"):
        AsOfSource(market, "2019-12-31")
    with pytest.raises(ConfigTypeError, match="not a date"):
        AsOfSource(market, "yesterday-ish")
