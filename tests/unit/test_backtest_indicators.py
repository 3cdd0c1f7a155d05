"""Trade indicators of the daily backtest (reference §6.6): days without orders, partial fills, counts.

The expected figures are derived by hand from the fill rules of reference §5.4 on a tiny market
with flat prices, not copied from a run.
"""

from __future__ import annotations

import math
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from backtest_data import DAYS, flat, write_qlib_dir

from qroll.backtest import INDICATOR_COLUMNS, TradeIndicators, backtest_daily, run_backtest
from qroll.backtest.indicators import numpy_sum, step_indicators
from qroll.data.qlib_bin import QlibBinSource

PRICES = {"AAA": 10.0, "BBB": 20.0, "CCC": 40.0}
# No lot rounding, no minimum fee, 0.1 % fees: every amount below follows from §5.4 by hand.
EXCHANGE = {"open_cost": 0.001, "close_cost": 0.001, "min_cost": 0, "trade_unit": None}


@pytest.fixture
def source(tmp_path: Path) -> QlibBinSource:
    return QlibBinSource(write_qlib_dir(tmp_path / "data", {
        "close": {c: flat(p) for c, p in PRICES.items()},
        "change": {c: flat(0.0) for c in PRICES},
        "factor": {c: flat(1.0) for c in PRICES},
        "volume": {c: flat(1e6) for c in PRICES},
    }))


def _pred(scores: dict[pd.Timestamp, dict[str, float]]) -> pd.DataFrame:
    rows = [(d, c, v) for d, per in scores.items() for c, v in per.items()]
    frame = pd.DataFrame(rows, columns=["datetime", "instrument", "score"])
    return frame.set_index(["datetime", "instrument"]).sort_index()


def _strategy(pred: pd.DataFrame, **kwargs: float) -> dict:
    return {"class": "TopkDropoutStrategy", "kwargs": {"signal": pred, **kwargs}}


def test_a_day_without_orders_and_the_frame_layout(source: QlibBinSource) -> None:
    pred = _pred({d: {"AAA": 3.0, "BBB": 2.0, "CCC": 1.0} for d in DAYS[:4]})
    result = run_backtest(DAYS[0], DAYS[3], _strategy(pred, topk=1, n_drop=1), account=1e6, benchmark=None,
                          exchange_kwargs=EXCHANGE, source=source)
    ind = result.indicators
    assert list(ind.columns) == INDICATOR_COLUMNS and ind.index.name is None
    assert list(ind.index) == list(result.report.index)
    assert ind["count"].dtype == np.int64 and (ind.drop(columns="count").dtypes == np.float64).all()
    # Day 0 has no previous-day prediction; days 2 and 3 keep AAA (n_drop never drops the best).
    for day in (DAYS[0], DAYS[2], DAYS[3]):
        row = ind.loc[day]
        assert math.isnan(row["ffr"]) and math.isnan(row["pa"]) and math.isnan(row["pos"])
        assert row["deal_amount"] == 0.0 and row["value"] == 0.0 and row["count"] == 0
    # Day 1 buys AAA with 0.95 of the cash, in full: 950,000 / 10 = 95,000 shares.
    assert ind.loc[DAYS[1]].to_dict() == {"ffr": 1.0, "pa": 0.0, "pos": 0.0, "deal_amount": 95000.0,
                                          "value": 950000.0, "count": 1}
    # backtest_daily is unchanged: the same report and positions, as a pair.
    report, positions = backtest_daily(DAYS[0], DAYS[3], _strategy(pred, topk=1, n_drop=1), account=1e6,
                                       benchmark=None, exchange_kwargs=EXCHANGE, source=source)
    pd.testing.assert_frame_equal(report, result.report)
    assert positions.keys() == result.positions.keys()


def test_buys_beyond_the_cash_fill_partly(source: QlibBinSource) -> None:
    # risk_degree 1.5 spends 150 % of the cash: 7,500 on each of AAA and BBB out of 10,000.
    pred = _pred({DAYS[0]: {"AAA": 3.0, "BBB": 2.0, "CCC": 1.0},
                  DAYS[1]: {"AAA": 3.0, "BBB": 1.0, "CCC": 2.0}})
    result = run_backtest(DAYS[1], DAYS[2], _strategy(pred, topk=2, n_drop=1, risk_degree=1.5), account=1e4,
                          benchmark=None, exchange_kwargs=EXCHANGE, source=source)
    # AAA: 750 shares for 7,500 + 7.5 fee, in full; 2,492.5 left. BBB: 375 shares ordered, the
    # cash buys 2,492.5 / 1.001 / 20 of them.
    bbb = 2492.5 / 1.001 / 20
    day1 = result.indicators.loc[DAYS[1]]
    assert day1["ffr"] == pytest.approx((1 + bbb / 375) / 2, rel=1e-15)
    assert day1["deal_amount"] == pytest.approx(750 + bbb, rel=1e-15)
    assert day1["value"] == pytest.approx(7500 + bbb * 20, rel=1e-15)
    assert day1["count"] == 2 and day1["pa"] == 0.0 and day1["pos"] == 0.0
    orders = result.orders.loc[DAYS[1]]
    assert orders.loc["BBB", "ffr"] == pytest.approx(bbb / 375, rel=1e-15)
    assert orders.loc["AAA", "ffr"] == 1.0
    assert orders["trade_dir"].tolist() == [1, 1]
    # Day 2 sells BBB (bottom of held + candidates) in full and buys CCC with 1.5 x the cash
    # (cash after the sale: 20 x bbb x 0.999): more than it has, so CCC fills partly: 2 orders.
    day2 = result.indicators.loc[DAYS[2]]
    assert day2["count"] == 2
    cash = 20 * bbb * 0.999
    ccc = cash / 1.001 / 40
    ordered = cash * 1.5 / 40
    assert day2["ffr"] == pytest.approx((1 + ccc / ordered) / 2, rel=1e-12)
    assert result.orders.loc[DAYS[2]]["trade_dir"].to_dict() == {"BBB": 0, "CCC": 1}
    assert day2["deal_amount"] == pytest.approx(bbb + ccc, rel=1e-12)


def test_an_order_rounded_to_no_lot_counts_but_has_no_fill_rate(source: QlibBinSource) -> None:
    # 950 / 40 = 23.75 shares: below one lot of 100, so the buy order is for 0 shares.
    pred = _pred({DAYS[0]: {"CCC": 1.0}})
    result = run_backtest(DAYS[1], DAYS[1], _strategy(pred, topk=1, n_drop=1), account=1000, benchmark=None,
                          exchange_kwargs={**EXCHANGE, "trade_unit": 100}, source=source)
    row = result.indicators.iloc[0]
    assert math.isnan(row["ffr"]) and row["pa"] == 0.0 and row["pos"] == 0.0
    assert row["count"] == 1 and row["deal_amount"] == 0.0 and row["value"] == 0.0
    assert result.orders["amount"].tolist() == [0.0] and math.isnan(result.orders["ffr"].iloc[0])


def test_step_indicators_follow_numpy_nanmean_and_nansum() -> None:
    rng = np.random.default_rng(7)
    for n in (1, 3, 8, 9, 17, 130, 300):
        amounts = rng.uniform(1, 1e5, n)
        deals = amounts * rng.choice([1.0, 0.5, 0.0, 1 / 3], n)
        amounts[::7] = 0.0
        deals[::7] = 0.0  # 0 / 0: no fill rate
        values = deals * rng.uniform(1, 100, n)
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all NaN: "Mean of empty slice"
            want_ffr = np.nanmean(deals / amounts)
        ffr, *rest = step_indicators(list(amounts), list(deals), list(values))
        assert ffr == want_ffr or (math.isnan(ffr) and math.isnan(want_ffr)), n
        assert rest == [0.0, 0.0, np.nansum(deals), np.nansum(values), n]
    assert numpy_sum([1e16, 1.0, -1e16] * 5) == float(np.sum(np.array([1e16, 1.0, -1e16] * 5)))


def test_trade_indicators_object_pickles_and_reads_like_qlibs(source: QlibBinSource) -> None:
    pred = _pred({d: {"AAA": 3.0, "BBB": 2.0} for d in DAYS[:3]})
    result = run_backtest(DAYS[0], DAYS[3], _strategy(pred, topk=1, n_drop=1), account=1e6, benchmark=None,
                          exchange_kwargs=EXCHANGE, source=source)
    obj = pickle.loads(pickle.dumps(TradeIndicators(result.indicators, result.orders)))
    frame = obj.generate_trade_indicators_dataframe()
    pd.testing.assert_frame_equal(frame, result.indicators)
    frame.iloc[0, 0] = 123.0  # a copy: the object keeps its frame
    assert obj.frame.iloc[0, 0] != 123.0
    assert obj.freq == "1day" and "orders=1" in repr(obj)
