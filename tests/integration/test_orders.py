"""Tomorrow's orders from today's online signal equal what the backtest trades tomorrow, day by day.

A run config is simulated over a span on a real SQLite MLflow store (``qroll.online.service``); its
online signal is backtested with the config's ``backtest:`` (the code ``qroll run`` judges a merged
signal with), and for every day of the span :func:`~qroll.online.orders.next_orders` computes the
next day's orders from the holdings of that backtest at the day's close. The limit threshold is
set low (3 %) so that names at their limit on the next day occur: those are the orders an as-of
estimate cannot know about.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from qroll.backtest.exchange import Exchange
from qroll.data.asof import AsOfSource
from qroll.data.synthetic import SyntheticMarket
from qroll.errors import ConfigValueError
from qroll.online.orders import backtest_signal, holdings_at, next_orders
from qroll.online.service import online_signal, simulate
from qroll.record import ExpManager
from qroll.run_config import RunConfig

pytestmark = pytest.mark.slow

URI = "synthetic://?instruments=30&start=2017-01-02&end=2018-06-29&seed=0"
START, END = "2017-12-01", "2018-01-31"
EXCHANGE = {"limit_threshold": 0.03, "deal_price": "close", "open_cost": 0.0005, "close_cost": 0.0015,
            "min_cost": 5}


def run_config(home: Any) -> RunConfig:
    features = (["$close/Ref($close, 1) - 1", "Mean($close, 5)/$close"], ["RET1", "MA5"])
    handler = {"class": "DataHandlerLP", "kwargs": {
        "instruments": "all", "start_time": "2017-01-02", "end_time": "2018-01-31",
        "data_loader": {"class": "QlibDataLoader", "kwargs": {"config": {
            "feature": features, "label": (["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"])}}},
        "infer_processors": [{"class": "Fillna", "kwargs": {"fields_group": "feature"}}],
        "learn_processors": ["DropnaLabel"]}}
    segments = {"train": ("2017-01-02", "2017-06-30"), "valid": ("2017-07-03", "2017-08-25"),
                "test": ("2017-09-01", "2018-01-31")}
    task = {"model": {"class": "LinearModel", "kwargs": {"estimator": "ols"}},
            "dataset": {"class": "DatasetH", "kwargs": {"handler": handler, "segments": segments}},
            "record": ["SignalRecord"]}
    return RunConfig.from_dict({
        "experiment": "orders", "data": URI, "tracking": f"sqlite:///{home}/mlflow.db",
        "rolling": {"step": 20, "rtype": "sliding", "trunc_days": "auto"}, "tasks": [task],
        "backtest": {"strategy": {"class": "TopkDropoutStrategy", "kwargs": {"topk": 6, "n_drop": 2}},
                     "backtest": {"account": 10_000_000, "exchange_kwargs": EXCHANGE}}})


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    home = tmp_path_factory.mktemp("orders")
    cfg = run_config(home)
    store = ExpManager(cfg.tracking, home=home)
    simulate(cfg, START, END, exp_manager=store, home=home)
    signal = online_signal(store.get_exp(cfg.experiment), END)
    market = SyntheticMarket(URI)
    # The backtest of the online signal on the data up to the span's end: it ends the day before.
    result = backtest_signal(signal, cfg.backtest, AsOfSource(market, END), benchmark=False)
    return cfg, signal, market, result


def order_rows(frame: pd.DataFrame) -> list[tuple[str, str, float]]:
    return [(str(r.instrument), str(r.direction), float(r.amount)) for r in frame.itertuples()]


def backtest_rows(result: Any, day: pd.Timestamp) -> list[tuple[str, str, float]]:
    orders = result.orders
    if day not in orders.index.get_level_values("datetime"):
        return []
    part = orders.xs(day, level="datetime")
    return [(str(code), "buy" if row.trade_dir == 1 else "sell", float(row.amount)) for code, row in part.iterrows()]


def test_the_orders_of_each_day_are_the_backtests_trades_of_the_next_day(simulated):
    cfg, signal, market, result = simulated
    steps = pd.DatetimeIndex(result.report.index)
    days = steps[(steps >= pd.Timestamp(START)) & (steps < steps[-1])]
    # The synthetic calendar is Mon-Fri: every business day with a next backtest day.
    assert list(days) == list(pd.bdate_range(START, "2018-01-29"))
    compared = limited = 0
    for day, trade_day in zip(days, steps[steps.searchsorted(days[0]) + 1:], strict=False):
        want = backtest_rows(result, trade_day)
        # With the next day's own quotes (a replay), the orders are the backtest's, amounts included.
        exact = next_orders(signal, cfg.backtest, market, day, prices="trade_day")
        assert exact.trade_day == trade_day and not exact.estimated
        assert order_rows(exact.orders) == want, day
        # As of the day (estimates): the same names and directions but those the next day forbids.
        estimate = next_orders(signal, cfg.backtest, market, day)
        assert estimate.estimated and str(day.date()) in estimate.note
        got = order_rows(estimate.orders)
        nxt = Exchange(market, pd.DatetimeIndex([trade_day]), **EXCHANGE)
        today = Exchange(market, pd.DatetimeIndex([day]), **EXCHANGE)
        kept = [(code, side) for code, side, _ in got if nxt.is_tradable(code, 0)]
        dropped = [code for code, _, _ in got if not nxt.is_tradable(code, 0)]
        unseen = [(code, side) for code, side, _ in want if today.is_suspended(code, 0)]
        assert [(c, s) for c, s, _ in want if (c, s) not in unseen] == kept, day
        limited += len(dropped)
        # A sell is the whole holding: its amount is exact even as an estimate.
        sells = {c: a for c, s, a in want if s == "sell"}
        for code, side, amount in got:
            if side == "sell" and code in sells:
                assert amount == sells[code]
        compared += len(want)
    assert compared >= 100  # the strategy traded on most days (162 orders here)
    assert limited >= 3  # names at their limit on the trade day: the estimate's known blind spot


def test_holdings_are_the_backtests_positions_at_the_close(simulated):
    cfg, signal, market, result = simulated
    for day in pd.DatetimeIndex(result.report.index)[-25::6]:
        held = holdings_at(signal, cfg.backtest, market, day)
        want = result.positions[day]
        assert held.get_stock_amount_dict() == want.get_stock_amount_dict()
        assert held.get_cash() == pytest.approx(want.get_cash(), rel=1e-12)
    # Before the signal's first trade the holdings are the account's cash.
    assert holdings_at(signal, cfg.backtest, market, "2017-09-01").get_stock_list() == []
    assert holdings_at(signal, cfg.backtest, market, "2017-09-01").get_cash() == 10_000_000


def test_target_holdings_are_the_holdings_after_the_orders(simulated):
    cfg, signal, market, _ = simulated
    orders = next_orders(signal, cfg.backtest, market, END)
    assert orders.as_of == pd.Timestamp(END) and orders.trade_day == pd.Timestamp("2018-02-01")
    held = set(orders.holdings.index)
    sold = set(orders.orders.loc[orders.orders["direction"] == "sell", "instrument"])
    bought = set(orders.orders.loc[orders.orders["direction"] == "buy", "instrument"])
    assert set(orders.target.index) == (held - sold) | bought
    assert len(orders.target) <= 6 and not (sold & bought)
    spent = (orders.orders["deal_amount"] * orders.orders["price"]
             * np.where(orders.orders["direction"] == "buy", 1, -1)).sum()
    # Cash after = cash before - buys + sells - fees (5 money at least per order).
    fees = orders.cash - spent - orders.target_cash
    assert 5 * len(orders.orders) <= fees <= 0.01 * orders.orders["value"].sum() + 5 * len(orders.orders)
    scores = signal.xs(pd.Timestamp(END), level="datetime")
    assert orders.orders["score"].tolist() == scores.reindex(orders.orders["instrument"]).tolist()


def test_a_replay_needs_the_next_day_in_the_data(simulated):
    cfg, signal, market, _ = simulated
    with pytest.raises(ConfigValueError, match="no trading day after 2018-06-29"):
        next_orders(signal, cfg.backtest, market, "2018-06-29", prices="trade_day")
    with pytest.raises(ConfigValueError, match="prices='tomorrow'"):
        next_orders(signal, cfg.backtest, market, END, prices="tomorrow")
