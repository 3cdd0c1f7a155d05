"""Qlib's daily portfolio backtest (``backtest_daily``), re-implemented with Qlib's numbers.

Modules: :mod:`~qroll.backtest.daily` (the loop and the report), :mod:`~qroll.backtest.strategy`
(``TopkDropoutStrategy`` and the signal shift), :mod:`~qroll.backtest.exchange` (quotes, limits,
lots, fills), :mod:`~qroll.backtest.position` (cash and holdings),
:mod:`~qroll.backtest.benchmark` (the benchmark's daily return).
"""

from __future__ import annotations

from qroll.backtest.daily import REPORT_COLUMNS, backtest_daily
from qroll.backtest.exchange import Exchange
from qroll.backtest.position import Position
from qroll.backtest.strategy import TopkDropoutStrategy

__all__ = ["REPORT_COLUMNS", "Exchange", "Position", "TopkDropoutStrategy", "backtest_daily"]
