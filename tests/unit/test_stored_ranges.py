"""Stored ranges (``Source.stored_ranges``): a series is its stored range, stored NaN days included.

Qlib evaluates each instrument on the days from its first to its last *stored* value
(``reference/alpha158.md`` §3.1, §4); a stored NaN (a suspension) is a row of the series.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from qroll.data.expression import Evaluator, evaluate
from qroll.data.features import compute_features
from qroll.data.qlib_bin import QlibBinSource, dump_qlib_bin
from qroll.data.source import Source, clip_ranges, ranges_from_values
from qroll.data.synthetic import SyntheticMarket
from qroll.data.table import TableSource
from qroll.errors import DataError, ExpressionError

NAN = np.nan


def col(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32).reshape(-1, 1)


def rng(first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
    return np.array([first]), np.array([last])


class NoRanges:
    """A third-party source: the Source methods but ``stored_ranges``, delegating to another."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.uri = inner.uri

    @property
    def calendar(self) -> Any:
        return self.inner.calendar

    def instruments(self, market: str = "all") -> Any:
        return self.inner.instruments(market)

    def fields(self) -> list[str]:
        return list(self.inner.fields())

    def load(self, fields: Sequence[str], instruments: Sequence[str], start: Any = None,
             end: Any = None) -> dict[str, pd.DataFrame]:
        return dict(self.inner.load(fields, instruments, start, end))


# -- Evaluator ---------------------------------------------------------------------------------
def test_trailing_stored_nan_days_are_part_of_the_series() -> None:
    volume = col(1, 3, 2, NAN, NAN)
    expr = "Sum(Greater($volume-Ref($volume, 1), 0), 3)"
    # Without ranges the series ends at the last value, so the NaN days are outside it.
    assert np.isnan(evaluate(expr, {"volume": volume})[3:]).all()
    out = evaluate(expr, {"volume": volume}, {"volume": rng(0, 4)})
    # Day 3's window (days 1..3) still holds the +2 of day 1: min_periods=1 skips the NaN days;
    # day 0's window has no value (no previous day): NaN, as pandas' Sum.
    np.testing.assert_array_equal(out[:, 0], [NAN, 2.0, 2.0, 2.0, 0.0])
    # After the stored range nothing is computed, even where a window would reach back into it.
    cut = evaluate(expr, {"volume": volume}, {"volume": rng(0, 3)})
    assert cut[3, 0] == 2.0 and np.isnan(cut[4, 0])


def test_leading_stored_nan_days_start_the_series() -> None:
    close = col(NAN, NAN, 2, 4, 8)
    # Ref(x, 0) is the first value of the series: a stored NaN when the range starts at day 0.
    assert np.isnan(evaluate("Ref($close, 0)", {"close": close}, {"close": rng(0, 4)})).all()
    approx_ref = evaluate("Ref($close, 0)", {"close": close})  # the series starts on day 2
    np.testing.assert_array_equal(approx_ref[:, 0], [NAN, NAN, 2, 2, 2])
    # WMA's window is truncated at the series start: days 0..2 are a 3-day window, not 1 day.
    stored = evaluate("WMA($close, 3)", {"close": close}, {"close": rng(0, 4)})
    approx = evaluate("WMA($close, 3)", {"close": close})
    assert stored[2, 0] == pytest.approx(2 * 3 / 6) and approx[2, 0] == pytest.approx(2.0)


def test_fields_over_different_ranges_align_as_a_union() -> None:
    close = col(1, 2, 4, 8, 16)
    vwap = col(NAN, 2, 4, NAN, NAN)
    ranges = {"close": rng(0, 4), "vwap": rng(1, 2)}
    out = evaluate("Mean($vwap, 2)/$close", {"close": close, "vwap": vwap}, ranges)
    assert out[:, 0].tolist()[1:3] == [1.0, 0.75] and np.isnan(out[[0, 3, 4], 0]).all()
    # The vwap-only series ends on day 2, so its windows do not run on into day 3.
    alone = evaluate("Mean($vwap, 2)", {"vwap": vwap}, {"vwap": rng(1, 2)})
    assert np.isnan(alone[3, 0]) and alone[2, 0] == 3.0


def test_empty_and_out_of_panel_ranges() -> None:
    close = col(1, 2, 4)
    assert np.isnan(evaluate("Mean($close, 2)", {"close": close}, {"close": rng(3, -1)})).all()
    wide = evaluate("Mean($close, 2)", {"close": close}, {"close": rng(-5, 9)})
    assert wide[:, 0].tolist() == [1.0, 1.5, 3.0]


def test_ranges_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(ExpressionError, match=r"stored range of \$close has 2/2 entries for 1"):
        Evaluator({"close": col(1, 2)}, {"close": (np.array([0, 0]), np.array([1, 1]))})


# -- helpers -----------------------------------------------------------------------------------
def test_ranges_from_values_and_clip() -> None:
    frame = np.array([[NAN, 1], [2, NAN], [NAN, NAN], [3, NAN]], dtype=np.float32)
    r = ranges_from_values({"x": frame, "y": np.full((4, 2), NAN)}, offset=5)
    assert [a.tolist() for a in r["x"]] == [[6, 5], [8, 5]]
    assert all((a > b).all() for a, b in [r["y"]])
    market = SyntheticMarket(instruments=2, start="2020-01-01", end="2020-01-31", seed=0)
    first, last = clip_ranges(np.array([0, 10]), np.array([20, 30]), market.calendar, "2020-01-03", "2020-01-10")
    assert first.tolist() == [2, 10] and last.tolist() == [7, 7]


# -- sources -----------------------------------------------------------------------------------
def test_synthetic_ranges_are_the_listed_days() -> None:
    market = SyntheticMarket(instruments=40, start="2015-01-01", end="2016-12-31", seed=3)
    assert isinstance(market, Source)
    symbols = list(market.instruments()) + ["NOPE"]
    ranges = market.stored_ranges(["close", "$VWAP", "nofield"], symbols)
    days = market.calendar.days
    close = market.load(["close"], symbols)["close"]
    for j, sym in enumerate(symbols[:-1]):
        (a, b), = market.instruments()[sym]
        assert (days[ranges["close"][0][j]], days[ranges["close"][1][j]]) == (a, b)
        # The first and last listed days are never suspended: the non-NaN values span the range.
        assert (close[sym].first_valid_index(), close[sym].last_valid_index()) == (a, b)
    assert ranges["close"][0][-1] > ranges["close"][1][-1]  # unknown symbol: empty
    assert (ranges["nofield"][0] > ranges["nofield"][1]).all()
    np.testing.assert_array_equal(ranges["vwap"][0], ranges["close"][0])
    clipped = market.stored_ranges(["close"], symbols[:3], "2016-01-01", "2016-03-31")["close"]
    a, b = days.searchsorted(pd.Timestamp("2016-01-01")), days.searchsorted(pd.Timestamp("2016-03-31"))
    assert (clipped[0] >= a).all() and (clipped[1] <= b).all()


@pytest.fixture()
def table(tmp_path: Path) -> TableSource:
    """Instrument AAA's last three rows have NaN values; BBB is complete; CCC's volume is all NaN."""
    days = pd.bdate_range("2021-01-04", periods=10)
    rows = []
    for k, day in enumerate(days):
        rows.append({"date": day, "code": "AAA", "close": 10.0 + k if k < 7 else NAN,
                     "volume": 100.0 + 10 * k * (-1) ** k if k < 7 else NAN})
        rows.append({"date": day, "code": "BBB", "close": 20.0 + k, "volume": 200.0 + k})
        if k >= 2:
            rows.append({"date": day, "code": "CCC", "close": 30.0 + k, "volume": NAN})
    path = tmp_path / "prices.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return TableSource(path, instrument="code")


def test_table_ranges_are_the_instrument_rows(table: TableSource) -> None:
    r = table.stored_ranges(["close", "volume", "open"], ["AAA", "ccc", "BBB", "ZZZ"])
    assert r["close"][0].tolist()[:3] == [0, 2, 0] and r["close"][1].tolist()[:3] == [9, 9, 9]
    # An all-NaN column still has the instrument's rows (what Qlib's dump_bin would store).
    np.testing.assert_array_equal(np.stack(r["volume"]), np.stack(r["close"]))
    assert r["close"][0][3] > r["close"][1][3]  # unknown symbol
    assert (r["open"][0] > r["open"][1]).all()  # not a column
    assert [a.tolist() for a in table.stored_ranges(["close"], ["AAA"], "2021-01-06", "2021-01-08")["close"]] \
        == [[2], [4]]


def test_table_trailing_nan_rows_are_returned_and_computed(table: TableSource) -> None:
    exprs = ["$close", "Mean($close, 3)", "Sum(Greater($volume-Ref($volume, 1), 0), 3)", "$volume"]
    names = ["C", "MA3", "UP3", "V"]
    frame = compute_features(table, exprs, names, instruments="all")["feature"]
    aaa = frame.xs("AAA", level="instrument")
    assert len(aaa) == 10 and aaa["C"].iloc[7:].isna().all()
    # Day 7 (first NaN row): the 3-day window holds days 5 and 6.
    assert aaa["MA3"].iloc[7] == np.float32((15.0 + 16.0) / 2) and aaa["MA3"].iloc[8] == np.float32(16.0)
    assert np.isnan(aaa["MA3"].iloc[9])
    # Volume rises by 110 on day 6: still in the windows of the NaN days 7 and 8, not 9.
    np.testing.assert_array_equal(aaa["UP3"].iloc[6:].to_numpy(), np.array([180, 110, 110, NAN], dtype=np.float32))
    ccc = frame.xs("CCC", level="instrument")
    assert len(ccc) == 8 and ccc["V"].isna().all() and ccc["C"].notna().all()
    # A third-party source without stored_ranges falls back to the non-NaN values: AAA ends on day 6.
    fallback = compute_features(NoRanges(table), exprs, names, instruments="all")["feature"]
    assert len(fallback.xs("AAA", level="instrument")) == 7
    common = fallback.index
    assert np.array_equal(fallback.loc[common, ["C", "MA3"]].to_numpy(),
                          frame.loc[common, ["C", "MA3"]].to_numpy(), equal_nan=True)


def test_dump_keeps_stored_nan_days(table: TableSource, tmp_path: Path) -> None:
    back = QlibBinSource(dump_qlib_bin(table, tmp_path / "q"))
    for field in ("close", "volume"):
        got = back.stored_ranges([field], ["AAA", "BBB", "CCC"])[field]
        want = table.stored_ranges([field], ["AAA", "BBB", "CCC"])[field]
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_bad_third_party_ranges_are_refused(table: TableSource) -> None:
    class Short(NoRanges):
        def stored_ranges(self, fields: Sequence[str], instruments: Sequence[str], start: Any = None,
                          end: Any = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
            return {f: (np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)) for f in fields}

    with pytest.raises(DataError, match=r"stored_ranges gave 1/1 ranges of \$close for 3 instruments"):
        compute_features(Short(table), ["$close"], ["C"], instruments="all")
