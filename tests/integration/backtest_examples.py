"""Inputs of the worked examples of ``reference/qlib_backtest.md`` §8, regenerated without Qlib."""

from __future__ import annotations

import numpy as np
import pandas as pd

from qroll.data.qlib_bin import QlibBinSource


def _closes(src: QlibBinSource, market: str) -> tuple[dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]],
                                                       pd.DataFrame]:
    members = src.instruments(market)
    close = src.load(["close"], list(members))["close"].astype(np.float64)
    return members, close


def _member_mask(members: dict, close: pd.DataFrame) -> np.ndarray:
    days = close.index
    mask = np.zeros(close.shape, dtype=bool)
    for j, code in enumerate(close.columns):
        for a, b in members[code]:
            mask[:, j] |= (days >= a) & (days <= b)
    return mask


def example_pred(src: QlibBinSource, market: str, start: str, end: str) -> pd.DataFrame:
    """``score = -(c_d / c_{d-5} - 1)`` over each member's spans inside ``[start, end]``, NaN dropped."""
    members, close = _closes(src, market)
    score = -(close / close.shift(5) - 1)
    score = score.where(_member_mask(members, close))
    score = score.loc[pd.Timestamp(start):pd.Timestamp(end)]
    long = score.stack(future_stack=True).dropna()
    long.index = long.index.set_names(["datetime", "instrument"])
    return long.sort_index().to_frame("score")


def example_bench(src: QlibBinSource, market: str, start: str, end: str) -> pd.Series:
    """Mean daily close-to-close return over the market's members per day (0.0 when none)."""
    members, close = _closes(src, market)
    ret = (close / close.shift(1) - 1).where(_member_mask(members, close))
    mean = ret.loc[pd.Timestamp(start):pd.Timestamp(end)].mean(axis=1)
    return mean.fillna(0.0)
