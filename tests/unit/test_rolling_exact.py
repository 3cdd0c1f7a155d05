"""A rolling std or variance over a window of equal values is exactly 0; every other value is pandas'.

pandas 3's rolling variance keeps running sums across windows, so a window of equal values that
follows a volatile stretch can come out as a round-off residue instead of 0 (pandas 1.5-2.x zeroed
it with a run-length rule). On a suspended stock's zero-volume days that residue, divided by a mean
of exactly 0 + 1e-12, made Alpha158's WVMA5 about 1e11 (issue 11).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qroll.data import ops
from qroll.data.expression import evaluate
from qroll.data.features import compute_features
from qroll.data.source import open_source
from tests.conftest import shared_dataset

NAN = np.nan
PANDAS_3 = int(pd.__version__.split(".")[0]) >= 3
WVMA5 = "Std(Abs($close/Ref($close, 1)-1)*$volume, 5)/(Mean(Abs($close/Ref($close, 1)-1)*$volume, 5)+1e-12)"


def volatile_then_equal(value: float) -> np.ndarray:
    """30 values up to 1e7, then 10 equal ones: with seed 5, pandas 3.1.1 leaves a residue on all of them."""
    rng = np.random.default_rng(5)
    return np.concatenate([rng.uniform(0, 1e7, 30), np.full(10, value)])


def pandas_says(x: np.ndarray, n: int, how: str) -> np.ndarray:
    """pandas' public API on one series: ``rolling(n, min_periods=1).<how>()`` (n = 0: expanding)."""
    series = pd.Series(x)
    roller = series.expanding(min_periods=1) if n == 0 else series.rolling(n, min_periods=1)
    return np.asarray(getattr(roller, how)().to_numpy(), dtype=np.float64)


def brute_force_equal(x: np.ndarray, n: int) -> np.ndarray:
    """The rule by definition: at least two non-NaN values in the window, all equal."""
    width, days = x.shape
    out = np.zeros((width, days), dtype=bool)
    for i in range(width):
        for t in range(days):
            window = x[i, (0 if n == 0 else max(0, t - n + 1)) : t + 1]
            window = window[~np.isnan(window)]
            out[i, t] = window.size >= 2 and bool(np.all(window == window[0]))
    return out


@pytest.mark.parametrize("value", [0.0, 3.7])
@pytest.mark.parametrize("how", ["std", "var"])
def test_a_window_of_equal_values_is_exactly_zero(value, how):
    x = volatile_then_equal(value)
    out = ops.pandas_rolling(x[None, :], 5, how)[0]
    assert out[34:].tolist() == [0.0] * 6  # the windows that hold five equal values
    # Every other window keeps pandas' number bit for bit, the one that reaches into the run too.
    assert np.array_equal(out[:34], pandas_says(x, 5, how)[:34], equal_nan=True)


@pytest.mark.parametrize("value", [0.0, 3.7])
@pytest.mark.parametrize("expr", ["Std($x, 5)", "Var($x, 5)"])
def test_std_and_var_expressions_give_zero(value, expr):
    out = evaluate(expr, {"x": volatile_then_equal(value).reshape(-1, 1)})
    assert isinstance(out, np.ndarray)
    assert out[34:, 0].tolist() == [0.0] * 6
    assert (out[1:34, 0] > 0).all()  # a window with any other value is not zero


@pytest.mark.skipif(not PANDAS_3, reason="pandas < 3 zeroes these windows itself")
@pytest.mark.parametrize("value", [0.0, 3.7])
def test_pandas_3_leaves_a_residue_on_these_inputs(value):
    # Keeps the tests above able to fail: on these inputs pandas itself does not give 0.
    for how in ("std", "var"):
        assert (pandas_says(volatile_then_equal(value), 5, how)[34:] > 0).all()


def test_nan_days_are_skipped_and_signed_zeros_are_equal():
    x = np.array([NAN, 3.7, NAN, 3.7, 3.7, 5.0, 5.0, NAN, 5.0])
    var = ops.pandas_rolling(x[None, :], 3, "var")[0]
    # One value or none: NaN (ddof = 1); [3.7, NaN, 3.7], [NaN, 3.7, 3.7], [5, 5, NaN], [5, NaN, 5]: 0.
    assert np.isnan(var[:3]).all()
    assert var[[3, 4, 7, 8]].tolist() == [0.0] * 4
    assert var[5] == pytest.approx(np.var([3.7, 3.7, 5.0], ddof=1)) and var[6] > 0
    zeros = np.array([[0.0, -0.0, 0.0, -0.0]])
    assert ops.pandas_rolling(zeros, 3, "std")[0, 1:].tolist() == [0.0] * 3
    expanding = ops.pandas_rolling(np.array([[NAN, 2.5, NAN, 2.5, 2.5, 1.0]]), 0, "var")[0]
    assert expanding[3:5].tolist() == [0.0, 0.0] and expanding[5] > 0


def test_equal_windows_follows_the_definition():
    rng = np.random.default_rng(7)
    for trial in range(200):
        days = int(rng.integers(1, 30))
        x = rng.choice([0.0, -0.0, 1.0, 3.7, NAN], size=(3, days), p=rng.dirichlet(np.ones(5)))
        if trial % 2:  # NaN only before listing and after delisting, as most series are
            x[np.isnan(x)] = 2.0
            a, b = sorted(rng.integers(0, days + 1, 2))
            x[:, :a] = NAN
            x[:, b:] = NAN
        for n in (0, 1, 2, 3, 5, 10):
            assert np.array_equal(ops.equal_windows(x, n), brute_force_equal(x, n)), (x.tolist(), n)


def test_wvma5_is_zero_on_suspended_days():
    # A stock that trades for 30 days, then is suspended for 10: close repeats, volume is 0.
    rng = np.random.default_rng(26)
    close = 10 * np.cumprod(1 + rng.normal(0, 0.02, 40))
    close[30:] = close[29]
    volume = np.concatenate([rng.uniform(1e6, 1e7, 30), np.zeros(10)])
    panels = {"close": close.astype(np.float32).reshape(-1, 1), "volume": volume.astype(np.float32).reshape(-1, 1)}
    wvma = evaluate(WVMA5, panels)
    assert isinstance(wvma, np.ndarray)
    # From day 34 on, the last five |return| * volume are all 0: Std 0, Mean 0, so 0 / 1e-12 = 0.
    assert wvma[34:, 0].tolist() == [0.0] * 6
    assert (wvma[2:34, 0] > 0).all() and (wvma[2:34, 0] < 10).all()
    if PANDAS_3:  # what the window statistics on their own would have given: a residue over 1e-12
        inner = evaluate("Abs($close/Ref($close, 1)-1)*$volume", panels)
        assert isinstance(inner, np.ndarray)
        assert (pandas_says(inner[:, 0].astype(np.float64), 5, "std")[34:] / 1e-12 > 1e6).all()


def test_wvma5_is_zero_on_a_real_suspension():
    # SH600000 was suspended from 2015-10-15: zero volume, repeated close. Qlib 0.9.7 on pandas
    # 3.1.1 gives WVMA5 = 4.56e11 on 2015-10-21..23 when its series starts in 2010 and 0 when it
    # starts on 2015-09-01; qroll now gives 0 either way.
    root = shared_dataset("cn_csi300", "features/sh600000/volume.day.bin")
    source = open_source(f"qlib://{root}")
    values = {}
    for start in ("2010-01-04", "2015-09-01"):
        frame = compute_features(source, [WVMA5, "$volume"], ["WVMA5", "VOLUME"], instruments=["SH600000"],
                                 start=start, end="2015-10-26")["feature"].droplevel("instrument")
        values[start] = frame
    for frame in values.values():
        assert frame.loc["2015-10-15":"2015-10-23", "VOLUME"].eq(0).all()
        assert frame.loc["2015-10-21":"2015-10-23", "WVMA5"].tolist() == [0.0, 0.0, 0.0]
        assert frame.loc["2015-10-26", "WVMA5"] > 0  # trading again
    later = values["2015-09-01"].index
    assert values["2010-01-04"].loc[later].equals(values["2015-09-01"])
