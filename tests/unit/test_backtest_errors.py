"""Bad input to backtest_daily: one qroll error naming the value and what to do."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from backtest_data import DAYS, flat, write_qlib_dir

from qroll.backtest import backtest_daily
from qroll.data.qlib_bin import QlibBinSource
from qroll.errors import CalendarError, ConfigError, DataNotFoundError


@pytest.fixture
def source(tmp_path: Path) -> QlibBinSource:
    return QlibBinSource(write_qlib_dir(tmp_path / "data", {
        "close": {"AAA": flat(10.0), "BBB": flat(11.0)}, "factor": {"AAA": flat(1.0), "BBB": flat(1.0)}}))


def _strategy(days: pd.DatetimeIndex = DAYS) -> dict:
    idx = pd.MultiIndex.from_product([days, ["AAA", "BBB"]], names=["datetime", "instrument"])
    pred = pd.DataFrame({"score": range(len(idx))}, index=idx, dtype=float)
    return {"class": "TopkDropoutStrategy", "kwargs": {"signal": pred, "topk": 1, "n_drop": 1}}


def test_unknown_strategy_class(source: QlibBinSource) -> None:
    with pytest.raises(ConfigError, match="'NoSuchStrategy'"):
        backtest_daily(DAYS[1], DAYS[5], {"class": "NoSuchStrategy", "kwargs": {}}, source=source)


def test_benchmark_not_in_source(source: QlibBinSource) -> None:
    with pytest.raises(DataNotFoundError, match="'SH000300'.*pd.Series"):
        backtest_daily(DAYS[1], DAYS[5], _strategy(), source=source)


def test_signal_not_overlapping(source: QlibBinSource) -> None:
    with pytest.raises(ConfigError, match="does not overlap"):
        backtest_daily(DAYS[1], DAYS[3], _strategy(DAYS[6:]), benchmark=None, source=source)


def test_deal_price_field_missing(source: QlibBinSource) -> None:
    with pytest.raises(DataNotFoundError, match=r"\$vwap"):
        backtest_daily(DAYS[1], DAYS[5], _strategy(), benchmark=None, source=source,
                       exchange_kwargs={"deal_price": "vwap"})


def test_range_past_the_calendar(source: QlibBinSource) -> None:
    with pytest.raises(CalendarError, match="last day"):
        backtest_daily(DAYS[1], DAYS[-1], _strategy(), benchmark=None, source=source)
    with pytest.raises(CalendarError, match="no trading day"):
        backtest_daily("2030-01-01", "2030-02-01", _strategy(), benchmark=None, source=source)


def test_unknown_exchange_option(source: QlibBinSource) -> None:
    with pytest.raises(ConfigError, match="no_such_option"):
        backtest_daily(DAYS[1], DAYS[5], _strategy(), benchmark=None, source=source,
                       exchange_kwargs={"no_such_option": 1})
