"""Inputs of the worked examples of ``reference/qlib_backtest.md`` §8, regenerated without Qlib,
and the plumbing of the oracle tests that run Qlib 0.9.7 in its own venv (``.venv-qlib``)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from qlib_venv import need_qlib

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


# -- Qlib oracle plumbing ------------------------------------------------------------------------


# The head of every script run by Qlib's python: reads the payload, decodes its frames; the
# script writes its answer as JSON to inp["out"] (stdout carries Qlib's own prints).
QLIB_PRELUDE = """
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np, pandas as pd, qlib
inp = json.load(sys.stdin)

def decode_pred(rows):
    pred = pd.DataFrame(rows, columns=["datetime", "instrument", "score"])
    pred["datetime"] = pd.to_datetime(pred["datetime"])
    return pred.set_index(["datetime", "instrument"]).sort_index()

def decode_bench(b):
    return b if isinstance(b, str) else pd.Series(b[1], index=pd.to_datetime(b[0]))

def exchange(ex):
    ex = dict(ex)
    if isinstance(ex.get("limit_threshold"), list):
        ex["limit_threshold"] = tuple(ex["limit_threshold"])  # Qlib takes only a tuple
    return ex

def encode_frame(df):
    return {"index": [f"{d:%Y-%m-%d}" for d in df.index], "columns": {c: df[c].tolist() for c in df.columns}}

def encode_positions(positions):
    return {f"{d:%Y-%m-%d}": {k: (dict(v) if isinstance(v, dict) else v) for k, v in p.position.items()}
            for d, p in positions.items()}
"""


def run_qlib(script: str, payload: dict[str, Any], workdir: Path, timeout: float = 600) -> Any:
    """Run ``QLIB_PRELUDE + script`` with Qlib's python on ``payload``; return its JSON answer.

    ``PYTHONHASHSEED`` is fixed (Qlib's set order moves the last bits, reference §9) and MLflow's
    file store is allowed (MLflow 3 refuses Qlib's default ``mlruns`` otherwise).
    """
    out = workdir / "qlib_answer.json"
    env = {**os.environ, "PYTHONHASHSEED": "0", "MLFLOW_ALLOW_FILE_STORE": "true"}
    proc = subprocess.run([str(need_qlib()), "-c", QLIB_PRELUDE + script],
                          input=json.dumps({**payload, "out": str(out), "tmp": str(workdir)}),
                          capture_output=True, text=True, timeout=timeout, check=False, env=env, cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def encode_pred(pred: pd.DataFrame) -> list[list[Any]]:
    """``pred`` as JSON rows ``[date, instrument, score]`` (floats round-trip exactly)."""
    return [[f"{d:%Y-%m-%d}", c, v] for (d, c), v in pred.iloc[:, 0].items()]


def encode_bench(bench: str | pd.Series) -> Any:
    """A benchmark code as it is, a Series as ``[dates, values]``."""
    if isinstance(bench, str):
        return bench
    return [[f"{d:%Y-%m-%d}" for d in bench.index], bench.tolist()]


def decode_frame(data: dict[str, Any]) -> pd.DataFrame:
    """A frame written by the prelude's ``encode_frame``."""
    return pd.DataFrame(data["columns"], index=pd.DatetimeIndex(pd.to_datetime(data["index"])))


MONEY = ["account", "total_turnover", "total_cost", "value", "cash"]


def report_diffs(ours: pd.DataFrame, theirs: pd.DataFrame) -> dict[str, float]:
    """Largest report differences: money relative to the largest account, rates absolute."""
    assert list(ours.index.strftime("%Y-%m-%d")) == list(theirs.index.strftime("%Y-%m-%d"))
    theirs = theirs[list(ours.columns)]
    a, b = ours.to_numpy(np.float64), theirs.to_numpy(np.float64)
    assert (np.isnan(a) == np.isnan(b)).all()
    diff = np.nan_to_num(np.abs(a - b))
    money = [list(ours.columns).index(c) for c in MONEY]
    rates = [j for j in range(a.shape[1]) if j not in money]
    scale = float(np.abs(ours["account"]).max())
    return {"money_rel": float(diff[:, money].max()) / scale, "rates_abs": float(diff[:, rates].max())}


def position_diffs(ours: dict[pd.Timestamp, Any], theirs: dict[str, dict[str, Any]], scale: float) -> float:
    """Compare every day's position as a dict: same stocks and day counts; return the largest
    relative difference of amounts, prices and weights, and of cash and account value relative
    to ``scale`` (money)."""
    assert [f"{d:%Y-%m-%d}" for d in ours] == list(theirs)
    worst = 0.0
    for day, pos in ours.items():
        want = theirs[f"{day:%Y-%m-%d}"]
        got = pos.position
        stocks = sorted(k for k, v in got.items() if isinstance(v, dict))
        assert stocks == sorted(k for k, v in want.items() if isinstance(v, dict)), day
        for code in stocks:
            g, w = got[code], want[code]
            assert g["count_day"] == w["count_day"], (day, code)
            for key in ("amount", "price", "weight"):
                rel = abs(g[key] - w[key]) / max(abs(w[key]), 1e-300)
                worst = max(worst, rel)
        for key in ("cash", "now_account_value"):
            worst = max(worst, abs(got[key] - want[key]) / scale)
    return worst


def indicator_diffs(ours: pd.DataFrame, theirs: pd.DataFrame) -> dict[str, float]:
    """Compare the trade indicator frames: same dates, counts and NaN places; largest differences
    of the rates (absolute) and of deal amount and value (relative)."""
    assert list(ours.columns) == list(theirs.columns) == ["ffr", "pa", "pos", "deal_amount", "value", "count"]
    assert list(ours.index.strftime("%Y-%m-%d")) == list(theirs.index.strftime("%Y-%m-%d"))
    assert ours["count"].dtype == np.int64 and (ours["count"].to_numpy() == theirs["count"].to_numpy()).all()
    a, b = ours.to_numpy(np.float64), theirs.to_numpy(np.float64)
    assert (np.isnan(a) == np.isnan(b)).all(), "NaN indicators differ"
    diff = np.nan_to_num(np.abs(a - b))
    size = np.maximum(np.nan_to_num(np.abs(b)), 1e-300)
    return {"rates_abs": float(diff[:, :3].max()), "amounts_rel": float((diff[:, 3:5] / size[:, 3:5]).max())}
