"""Analysis of collected signals and backtests, as Qlib computes them.

Signal quality: daily IC / Rank IC and long-short returns (:mod:`qroll.analysis.signal`). Portfolio
evaluation: the risk figures of a return series and the trade indicators of a backtest
(:mod:`qroll.analysis.risk`).
"""

from __future__ import annotations

from qroll.analysis.risk import indicator_analysis, risk_analysis, risk_scaler
from qroll.analysis.signal import SignalFigures, calc_ic, calc_long_short_return, ic_summary

__all__ = [
    "SignalFigures",
    "calc_ic",
    "calc_long_short_return",
    "ic_summary",
    "indicator_analysis",
    "risk_analysis",
    "risk_scaler",
]
