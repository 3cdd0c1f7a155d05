"""Analysis of collected signals: daily IC / Rank IC and long-short returns, as Qlib computes them."""

from __future__ import annotations

from qroll.analysis.signal import calc_ic, calc_long_short_return, ic_summary

__all__ = ["calc_ic", "calc_long_short_return", "ic_summary"]
