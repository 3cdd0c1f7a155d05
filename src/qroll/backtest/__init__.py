"""Qlib's daily portfolio backtest (``backtest_daily``), re-implemented with Qlib's numbers.

Modules: :mod:`~qroll.backtest.daily` (the loop, the report and :func:`run_backtest`),
:mod:`~qroll.backtest.strategy` (``TopkDropoutStrategy`` and the signal shift),
:mod:`~qroll.backtest.exchange` (quotes, limits, lots, fills), :mod:`~qroll.backtest.position`
(cash and holdings), :mod:`~qroll.backtest.benchmark` (the benchmark's daily return),
:mod:`~qroll.backtest.indicators` (fill rates and order counts).
"""

from __future__ import annotations

from qroll.backtest.daily import REPORT_COLUMNS, BacktestResult, backtest_daily, run_backtest
from qroll.backtest.exchange import Exchange
from qroll.backtest.indicators import INDICATOR_COLUMNS, TradeIndicators
from qroll.backtest.position import Position
from qroll.backtest.strategy import TopkDropoutStrategy

__all__ = ["INDICATOR_COLUMNS", "REPORT_COLUMNS", "BacktestResult", "Exchange", "Position",
           "TopkDropoutStrategy", "TradeIndicators", "backtest_daily", "run_backtest"]
