"""The simulated exchange: lots, limits (float32), suspension, deal-price fallback and fills."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from backtest_data import DAYS, flat, write_qlib_dir

from qroll.backtest.exchange import Exchange
from qroll.backtest.position import Position
from qroll.data.qlib_bin import QlibBinSource
from qroll.errors import ConfigError, DataNotFoundError

NAN = float("nan")


@pytest.fixture
def source(tmp_path: Path) -> QlibBinSource:
    change = {"AAA": flat(0.0), "BBB": flat(0.0), "CCC": flat(NAN), "DDD": flat(0.0)}
    change["AAA"][1] = float(np.float32(0.095))  # exactly the float32 threshold: limit-up in Qlib
    change["BBB"][1] = 0.0949
    change["BBB"][2] = -0.2
    close = {"AAA": flat(10.0), "BBB": flat(20.0), "CCC": flat(5.0), "DDD": flat(8.0)}
    close["CCC"][3] = NAN  # suspended on day 3
    opens = {"AAA": flat(9.0), "BBB": flat(NAN), "CCC": flat(5.0), "DDD": flat(8.0)}
    factor = {"AAA": flat(1.0), "BBB": flat(2.0), "CCC": flat(1.0), "DDD": flat(1.0)}
    volume = {s: flat(1e6) for s in close}
    return QlibBinSource(write_qlib_dir(
        tmp_path / "data", {"close": close, "open": opens, "change": change, "factor": factor,
                            "volume": volume},
        spans={"DDD": (0, 4)}))


def test_lot_rounding_uses_raw_shares(source: QlibBinSource) -> None:
    ex = Exchange(source, DAYS[:8])
    assert ex.round_lot(250.0, 1.0) == 200.0
    assert ex.round_lot(125.0, 2.0) == 100.0  # 250 raw shares → 200 raw → 100 adjusted
    assert ex.round_lot(99.95, 1.0) == 100.0  # the +0.1 guard against float error
    assert Exchange(source, DAYS[:8], trade_unit=None).round_lot(250.0, 1.0) == 250.0


def test_limits_compare_in_float32_and_nan_never_limits(source: QlibBinSource) -> None:
    ex = Exchange(source, DAYS[:8], limit_threshold=0.095)
    assert not ex.is_tradable("AAA", 1) and not ex.is_tradable("AAA", 1, "buy")
    assert ex.is_tradable("AAA", 1, "sell")
    assert ex.is_tradable("BBB", 1)
    assert not ex.is_tradable("BBB", 2, "sell") and ex.is_tradable("BBB", 2, "buy")
    assert ex.is_tradable("CCC", 1)  # NaN change: no limit


def test_limit_pair_from_yaml_list(source: QlibBinSource) -> None:
    ex = Exchange(source, DAYS[:8], limit_threshold=["$change >= 0.1", "$change <= -0.1"])
    assert ex.is_tradable("AAA", 1)  # 0.095 < 0.1
    assert not ex.is_tradable("BBB", 2, "sell")
    assert ex.is_tradable("CCC", 1, "buy")  # NaN >= 0.1 is False (numpy), as in Qlib
    with pytest.raises(ConfigError, match="limit_threshold"):
        Exchange(source, DAYS[:8], limit_threshold=["$change >= 0.1"])


def test_suspension_nan_close_and_outside_span(source: QlibBinSource) -> None:
    ex = Exchange(source, DAYS[:8])
    assert ex.is_suspended("CCC", 3) and not ex.is_suspended("CCC", 2)
    assert not ex.is_suspended("DDD", 4) and ex.is_suspended("DDD", 5)  # all.txt span ends on day 4
    assert ex.is_suspended("ZZZ", 0)


def test_deal_price_falls_back_to_close(source: QlibBinSource) -> None:
    ex = Exchange(source, DAYS[:8], deal_price="open")
    assert ex.deal_price("AAA", 0, True) == 9.0
    assert ex.deal_price("BBB", 0, True) == 20.0
    with pytest.raises(DataNotFoundError, match=r"\$vwap"):
        Exchange(source, DAYS[:8], deal_price="vwap")


def test_fill_clips_buy_to_cash_and_charges_min_cost(source: QlibBinSource) -> None:
    ex = Exchange(source, DAYS[:8], open_cost=0.001, close_cost=0.002, min_cost=5.0)
    pos = Position(1005.0)
    val, cost, price = ex.deal_order("AAA", 0, 1000.0, True, pos)
    # (1005 - 5) / 10 = 100 shares fit: cash 1005 < 1e4 + fee, so the amount is cut to the cash.
    assert (val, cost, price) == (1000.0, 5.0, 10.0)
    assert pos.get_cash() == 0.0 and pos.get_stock_amount("AAA") == 100.0
    val, cost, _ = ex.deal_order("AAA", 0, 100.0, False, pos)
    assert (val, cost) == (1000.0, 5.0) and not pos.check_stock("AAA") and pos.get_cash() == 995.0
    assert ex.deal_order("CCC", 3, 10.0, True, pos)[0] == 0.0  # suspended: nothing happens


def test_adjusted_mode_when_a_factor_is_missing(tmp_path: Path) -> None:
    factor = flat(1.0)
    factor[2] = NAN
    src = QlibBinSource(write_qlib_dir(tmp_path / "d", {"close": {"AAA": flat(10.0)},
                                                        "factor": {"AAA": factor}}))
    ex = Exchange(src, DAYS[:8])
    assert ex.adjusted_mode and ex.round_lot(250.0, 1.0) == 250.0
