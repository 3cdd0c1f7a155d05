"""TopkDropoutStrategy: the one-day signal shift, stable ties, n_drop = 0 and qroll's overflow fix."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from backtest_data import DAYS, flat, write_qlib_dir

from qroll.backtest import backtest_daily
from qroll.backtest.exchange import Exchange
from qroll.backtest.position import Position
from qroll.backtest.strategy import TopkDropoutStrategy, prepare_signal
from qroll.data.qlib_bin import QlibBinSource

CODES = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]


@pytest.fixture
def source(tmp_path: Path) -> QlibBinSource:
    return QlibBinSource(write_qlib_dir(tmp_path / "data", {
        "close": {c: flat(10.0 + i) for i, c in enumerate(CODES)},
        "change": {c: flat(0.0) for c in CODES},
        "factor": {c: flat(1.0) for c in CODES},
        "volume": {c: flat(1e6) for c in CODES},
    }))


def _pred(scores: dict[pd.Timestamp, dict[str, float]]) -> pd.DataFrame:
    rows = [(d, c, v) for d, per in scores.items() for c, v in per.items()]
    frame = pd.DataFrame(rows, columns=["datetime", "instrument", "score"])
    return frame.set_index(["datetime", "instrument"]).sort_index()


def test_signal_of_the_previous_trading_day_trades_today() -> None:
    pred = _pred({DAYS[2]: {"AAA": 1.0, "BBB": float("nan")}, DAYS[3]: {"AAA": 2.0}})
    steps = prepare_signal(pred, DAYS)
    assert sorted(steps) == [3, 4]  # the score dated day 2 is used by the step of day 3
    assert steps[3].to_dict() == {"AAA": 1.0}  # NaN rows are dropped
    # A date between trading days (a weekend) belongs to the next trading day's window.
    weekend = _pred({pd.Timestamp("2020-01-04"): {"AAA": 5.0}})
    assert list(prepare_signal(weekend, DAYS)) == [int(DAYS.searchsorted("2020-01-06"))]


def test_ties_are_broken_by_name_and_first_day_uses_shifted_signal(source: QlibBinSource) -> None:
    pred = _pred({d: {c: 1.0 for c in reversed(CODES)} for d in DAYS[:6]})
    strategy = {"class": "TopkDropoutStrategy", "kwargs": {"signal": pred, "topk": 2, "n_drop": 1}}
    report, positions = backtest_daily(DAYS[0], DAYS[5], strategy, benchmark=None, source=source)
    assert report["turnover"].iloc[0] == 0.0  # day 0 has no previous-day prediction
    assert sorted(positions[DAYS[1]].get_stock_list()) == ["AAA", "BBB"]
    assert (report["bench"] == 0.0).all()  # benchmark=None: no benchmark (qroll's fix)


def _held(source: QlibBinSource, codes: list[str]) -> tuple[Position, Exchange]:
    pos = Position(1e6)
    for c in codes:
        pos.position[c] = {"amount": 100.0, "price": 10.0, "weight": 0.0, "count_day": 3}
    return pos, Exchange(source, DAYS[:8])


def test_more_holdings_than_topk_plus_n_drop_buy_nothing(source: QlibBinSource) -> None:
    pred = _pred({DAYS[0]: {c: float(i) for i, c in enumerate(CODES)}})
    strat = TopkDropoutStrategy(signal=pred, topk=2, n_drop=1)
    strat.prepare(DAYS)
    pos, ex = _held(source, CODES[:4])  # 4 held > topk + n_drop = 3
    orders = strat.generate_orders(1, 1, pos, ex)
    assert [o.buy for o in orders] == [False]  # Qlib would buy almost the whole universe here
    assert orders[0].code == "AAA"  # the lowest-scored holding


def test_n_drop_zero_plans_to_sell_every_holding(source: QlibBinSource) -> None:
    pred = _pred({DAYS[0]: {c: float(i) for i, c in enumerate(CODES)}})
    strat = TopkDropoutStrategy(signal=pred, topk=2, n_drop=0)
    strat.prepare(DAYS)
    pos, ex = _held(source, ["EEE", "FFF"])
    orders = strat.generate_orders(1, 1, pos, ex)
    assert sorted((o.code, o.buy) for o in orders) == [("EEE", False), ("FFF", False)]


def test_hold_thresh_keeps_young_holdings(source: QlibBinSource) -> None:
    pred = _pred({DAYS[0]: {c: float(i) for i, c in enumerate(CODES)}})
    strat = TopkDropoutStrategy(signal=pred, topk=2, n_drop=1, hold_thresh=5)
    strat.prepare(DAYS)
    pos, ex = _held(source, ["AAA", "FFF"])  # count_day 3 < 5: AAA cannot be sold yet
    orders = strat.generate_orders(1, 1, pos, ex)
    assert [o.buy for o in orders] == [True] and orders[0].code == "EEE"
