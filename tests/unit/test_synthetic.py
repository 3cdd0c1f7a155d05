"""SyntheticMarket: deterministic, realistic, fast, with a weak but real predictable component."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from qroll.data.source import Source, open_source, source_schemes
from qroll.data.synthetic import SyntheticMarket
from qroll.errors import ConfigError, DataNotFoundError

URI = "synthetic://?instruments=300&start=2008-01-01&end=2020-12-31&seed=0"


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket(URI)


@pytest.fixture(scope="module")
def data(market: SyntheticMarket) -> dict[str, pd.DataFrame]:
    return market.load(market.fields(), list(market.instruments()))


def test_is_a_source_opened_by_uri(market: SyntheticMarket) -> None:
    src = open_source(URI)
    assert isinstance(src, SyntheticMarket) and isinstance(src, Source)
    assert src.uri == URI
    assert "synthetic" in source_schemes()


def test_unknown_scheme_lists_supported() -> None:
    with pytest.raises(ConfigError, match=r"'ftp'.*qlib://, synthetic://, table://"):
        open_source("ftp://host/data")


def test_calendar_matches_uri_calendar(market: SyntheticMarket) -> None:
    assert list(market.calendar.days) == list(pd.bdate_range(market.start, market.end))
    assert market.calendar.days[0] == pd.Timestamp("2008-01-01")
    assert (market.calendar.days.day_of_week < 5).all()
    small = SyntheticMarket("synthetic://?instruments=4&start=2015-03-02&end=2015-06-30&seed=3")
    assert list(small.calendar.days) == list(pd.bdate_range(small.start, small.end))


def test_kwargs_override_uri_and_fingerprint() -> None:
    a = SyntheticMarket("synthetic://?instruments=10&seed=1", seed=2)
    assert a.seed == 2 and a.n_instruments == 10
    assert a.fingerprint() == SyntheticMarket(instruments=10, seed=2).fingerprint()
    assert a.fingerprint() != SyntheticMarket(instruments=10, seed=3).fingerprint()
    assert a.fingerprint() != SyntheticMarket(instruments=11, seed=2).fingerprint()
    assert len(a.fingerprint()) == 16 and int(a.fingerprint(), 16) >= 0


def test_bad_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown option.*colour"):
        SyntheticMarket("synthetic://?colour=red")
    with pytest.raises(ConfigError, match="instruments=0"):
        SyntheticMarket(instruments=0)
    with pytest.raises(DataNotFoundError, match="'csi300'.*all, synth100"):
        SyntheticMarket(instruments=3).instruments("csi300")


def test_symbols_and_markets(market: SyntheticMarket) -> None:
    all_ = market.instruments("all")
    # 225 trade from the first day; the last 300 // 4 = 75 list later, by trading day 2,700 of 3,393.
    assert list(all_)[:2] == ["SYN0001", "SYN0002"] and len(all_) == 300
    assert sum(a == market.calendar.days[0] for ((a, _),) in all_.values()) == 225
    sub = market.instruments("synth100")
    assert list(sub) == list(all_)[:100]
    assert market.markets() == ["all", "synth100"]
    # synth100 spans lie inside the instrument's listing, and some instruments leave and re-enter.
    for sym, spans in sub.items():
        (lo, hi), = all_[sym]
        assert all(lo <= a <= b <= hi for a, b in spans)
    assert sum(len(s) == 2 for s in sub.values()) >= 5
    # Two months: the 9,000 of the first day, named with five digits (the 3,000 later ones list from day 250).
    first_day = SyntheticMarket(instruments=12000, end="2008-03-01").instruments()
    assert len(first_day) == 9000 and list(first_day)[-1] == "SYN09000"


def test_same_seed_same_data_other_seed_other_data(market: SyntheticMarket, data) -> None:
    again = SyntheticMarket(URI).load(["close", "volume"], ["SYN0001", "SYN0300"])
    np.testing.assert_array_equal(again["close"].to_numpy(), data["close"][["SYN0001", "SYN0300"]].to_numpy())
    other = SyntheticMarket(URI.replace("seed=0", "seed=1")).load(["close"], ["SYN0001"])["close"]
    assert not np.allclose(other.to_numpy(), data["close"][["SYN0001"]].to_numpy(), equal_nan=True)


def test_same_data_in_another_process(data) -> None:
    code = (
        "from qroll.data.synthetic import SyntheticMarket as S;"
        f"m=S({URI!r});d=m.load(['close','volume','factor'],['SYN0007','SYN0123']);"
        "import hashlib;print(hashlib.sha256(b''.join(d[f].to_numpy().tobytes() for f in d)).hexdigest())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    import hashlib

    mine = hashlib.sha256(
        b"".join(data[f][["SYN0007", "SYN0123"]].to_numpy().tobytes() for f in ("close", "volume", "factor"))
    ).hexdigest()
    assert out == mine


def test_frames_follow_the_contract(market: SyntheticMarket, data) -> None:
    assert set(data) == {"open", "high", "low", "close", "volume", "vwap", "factor", "change"}
    for frame in data.values():
        assert frame.index.equals(market.calendar.days)
        assert (frame.dtypes == np.float32).all()
    part = market.load(["$Close", "nosuch"], ["syn0002", "SYN0001", "XYZ"], "2010-01-02", "2010-01-10")
    close = part["close"]
    assert list(close.columns) == ["syn0002", "SYN0001", "XYZ"]
    assert close.index[0] == pd.Timestamp("2010-01-04") and close.index[-1] == pd.Timestamp("2010-01-08")
    assert close["XYZ"].isna().all() and part["nosuch"].isna().all().all()
    np.testing.assert_array_equal(close["SYN0001"].to_numpy(), data["close"].loc["2010-01-04":"2010-01-08", "SYN0001"])


def test_listing_and_delisting(market: SyntheticMarket, data) -> None:
    close, days = data["close"], market.calendar.days
    spans = market.instruments()
    late = [s for s, ((a, _),) in spans.items() if a > days[0]]
    early = [s for s, ((_, b),) in spans.items() if b < days[-1]]
    assert 30 <= len(late) <= 120 and 20 <= len(early) <= 100
    for sym in late[:10] + early[:10]:
        (a, b), = spans[sym]
        col = close[sym]
        assert col[:a].iloc[:-1].isna().all() and col[b:].iloc[1:].isna().all()
        assert not np.isnan(col[a]) and not np.isnan(col[b])
        assert col[a:b].notna().mean() > 0.99  # rare suspensions only


def test_prices_volume_factor_are_realistic(data) -> None:
    o, h, lo, c, v, w = (data[k].to_numpy() for k in ("open", "high", "low", "close", "volume", "vwap"))
    ok = ~np.isnan(c)
    assert (lo[ok] <= o[ok]).all() and (o[ok] <= h[ok]).all()
    assert (lo[ok] <= c[ok]).all() and (c[ok] <= h[ok]).all()
    assert (lo[ok] <= w[ok] * (1 + 1e-6)).all() and (w[ok] <= h[ok] * (1 + 1e-6)).all()
    assert (v[ok] > 0).all()
    lv = np.log(data["volume"]["SYN0001"].to_numpy())
    lv = lv[~np.isnan(lv)]
    assert np.corrcoef(lv[1:], lv[:-1])[0, 1] > 0.2  # volume is autocorrelated
    ret = np.diff(np.log(c), axis=0)
    assert 0.01 < np.nanstd(ret) < 0.04
    market_ret = np.nanmean(ret, axis=1)
    assert np.nanstd(market_ret) > 0.005  # a common factor moves the names together
    f = data["factor"].to_numpy()
    steps = np.diff(f, axis=0)
    assert np.nanmin(f) == 1.0 and (steps[~np.isnan(steps)] >= 0).all()
    constant = np.nanmax(f, axis=0) == 1.0
    assert 0.1 < constant.mean() < 0.6  # some never adjust, the others step up
    chg = data["change"].to_numpy()[1:]
    both = ~np.isnan(chg)
    np.testing.assert_allclose(chg[both], (c[1:] / c[:-1] - 1)[both], rtol=2e-4, atol=1e-6)


def test_weak_reversal_signal(data) -> None:
    close = data["close"]
    past5 = close / close.shift(5) - 1
    label = close.shift(-2) / close.shift(-1) - 1  # Alpha158's default label
    ic = (-past5).corrwith(label, axis=1, method="spearman").dropna()
    assert 0.015 < ic.mean() < 0.06
    assert ic.mean() / ic.std() * np.sqrt(len(ic)) > 10  # clearly non-zero over 13 years


def test_generation_is_fast() -> None:
    # Best of three: other processes on a shared CI machine can stall any single run.
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        SyntheticMarket(URI).load(["close"], ["SYN0001"])
        times.append(time.perf_counter() - t0)
    assert min(times) < 2.0, f"300 instruments x 13 years took {min(times):.2f} s"
