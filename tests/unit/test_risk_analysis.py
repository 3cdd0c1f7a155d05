"""risk_analysis and indicator_analysis against figures computed here independently (plain numpy)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from qroll import ConfigError, indicator_analysis, risk_analysis
from qroll.analysis import risk_scaler

INDEX = ["mean", "std", "annualized_return", "information_ratio", "max_drawdown"]


def sum_mode(values: list[float], n: float) -> dict[str, float]:
    """Qlib's "sum" figures by hand: NaN skipped; drawdown as a loop over the running sum."""
    x = np.array([v for v in values if not math.isnan(v)])
    mean, std = x.mean(), x.std(ddof=1)
    running, peak, worst = 0.0, -math.inf, math.inf
    for v in x:
        running += v
        peak = max(peak, running)
        worst = min(worst, running - peak)
    return {"mean": mean, "std": std, "annualized_return": mean * n,
            "information_ratio": mean / std * math.sqrt(n), "max_drawdown": worst}


def product_mode(values: list[float], n: float) -> dict[str, float]:
    """Qlib's "product" figures by hand; ``len(r)`` counts NaN rows, as Qlib's does."""
    x = np.array([v for v in values if not math.isnan(v)])
    total = float(np.prod(1 + x))
    periods = len(values)
    mean = total ** (1 / periods) - 1
    std = np.log1p(x).std(ddof=1)
    wealth, peak, worst = 1.0, -math.inf, math.inf
    for v in x:
        wealth *= 1 + v
        peak = max(peak, wealth)
        worst = min(worst, wealth / peak - 1)
    return {"mean": mean, "std": std, "annualized_return": total ** (n / periods) - 1,
            "information_ratio": mean / std * math.sqrt(n), "max_drawdown": worst}


def assert_risk(got: pd.DataFrame, want: dict[str, float], rel: float = 1e-12) -> None:
    assert list(got.columns) == ["risk"] and list(got.index) == INDEX
    for key in INDEX:
        assert got.loc[key, "risk"] == pytest.approx(want[key], rel=rel, abs=1e-15), key


def test_sum_mode_by_hand():
    # S = 0.1, -0.1, -0.05: the worst fall from the peak 0.1 is to -0.1, a drawdown of 0.2 (summed,
    # not a ratio); mean -0.05/3 per day.
    got = risk_analysis(pd.Series([0.1, -0.2, 0.05]))["risk"]
    assert got["max_drawdown"] == pytest.approx(-0.2)
    assert got["mean"] == pytest.approx(-0.05 / 3)
    assert got["annualized_return"] == pytest.approx(-0.05 / 3 * 238)


def test_product_mode_by_hand():
    # P = 1.1, 0.88, 0.924: drawdown 0.88/1.1 - 1 = -0.2; geometric mean 0.924^(1/3) - 1.
    got = risk_analysis(pd.Series([0.1, -0.2, 0.05]), mode="product")["risk"]
    assert got["max_drawdown"] == pytest.approx(-0.2)
    assert got["mean"] == pytest.approx(0.924 ** (1 / 3) - 1)
    assert got["annualized_return"] == pytest.approx(0.924 ** (238 / 3) - 1)
    assert got["std"] == pytest.approx(np.std(np.log([1.1, 0.8, 1.05]), ddof=1))


@pytest.mark.parametrize("mode", ["sum", "product"])
def test_random_series_match_the_hand_computation(mode):
    rng = np.random.default_rng(7)
    values = list(rng.normal(0.0004, 0.012, 250))
    want = (sum_mode if mode == "sum" else product_mode)(values, 238)
    assert_risk(risk_analysis(pd.Series(values), mode=mode), want)


def test_nan_is_skipped_in_sum_mode():
    values = [0.01, float("nan"), -0.03, 0.02, float("nan"), -0.01]
    assert_risk(risk_analysis(pd.Series(values)), sum_mode(values, 238))


def test_nan_counts_as_a_period_in_product_mode():
    values = [0.01, float("nan"), -0.03, 0.02, -0.01]
    assert_risk(risk_analysis(pd.Series(values), mode="product"), product_mode(values, 238))


def test_trailing_nan_makes_the_geometric_mean_nan_as_in_qlib():
    # Qlib reads the last value of the cumulative product, which is NaN after a trailing NaN.
    got = risk_analysis(pd.Series([0.01, -0.02, float("nan")]), mode="product")["risk"]
    assert math.isnan(got["mean"]) and math.isnan(got["annualized_return"])
    assert got["max_drawdown"] == pytest.approx(0.98 - 1)


@pytest.mark.parametrize(("freq", "periods"), [("day", 238), ("1day", 238), ("D", 238), ("week", 50),
                                               ("2w", 25), ("month", 12), ("mon", 12),
                                               ("5min", 240 * 238 / 5), ("minute", 240 * 238)])
def test_freq_sets_periods_per_year(freq, periods):
    values = [0.01, -0.02, 0.015, 0.005, -0.001]
    assert risk_scaler(freq) == periods
    assert_risk(risk_analysis(pd.Series(values), freq=freq), sum_mode(values, periods))


def test_n_alone_is_used_silently():
    values = [0.01, -0.02, 0.015, 0.005]
    assert_risk(risk_analysis(pd.Series(values), N=252, freq=None), sum_mode(values, 252))


def test_n_with_freq_wins_with_a_warning():
    values = [0.01, -0.02, 0.015, 0.005]
    with pytest.warns(UserWarning, match="freq 'week' is ignored because N=252"):
        got = risk_analysis(pd.Series(values), N=252, freq="week")
    assert_risk(got, sum_mode(values, 252))
    with pytest.warns(UserWarning, match="freq 'day' is ignored"):  # freq's default is "day", as in Qlib
        risk_analysis(pd.Series(values), N=252)


def test_array_input_and_integer_returns_are_accepted():
    values = [1, -2, 3, 0]
    assert_risk(risk_analysis(np.array(values)), sum_mode([float(v) for v in values], 238))


def test_zero_spread_gives_inf_without_a_runtime_warning():
    # filterwarnings=error would turn NumPy's division warning into a failure.
    got = risk_analysis(pd.Series([0.01, 0.01, 0.01]))["risk"]
    assert got["std"] == 0 and got["information_ratio"] == math.inf


@pytest.mark.parametrize("mode", ["sum", "product"])
def test_empty_series_gives_nan(mode):
    got = risk_analysis(pd.Series([], dtype=float), mode=mode)
    assert list(got.index) == INDEX and got["risk"].isna().all()


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"mode": "compound"}, ["'compound'", "'sum'", "'product'"]),
    ({"freq": "daily"}, ["'daily'", "day/d", "minute/min"]),
    ({"freq": "0day"}, ["'0day'", "count >= 1"]),
    ({"freq": "1sec"}, ["'1sec'"]),
    ({"freq": None}, ["give N", "both are None"]),
])
def test_bad_arguments_raise_one_config_error(kwargs, words):
    with pytest.raises(ConfigError) as info:
        risk_analysis(pd.Series([0.01, 0.02]), **kwargs)
    for word in words:
        assert word in str(info.value)


def test_bad_returns_raise_config_error():
    with pytest.raises(ConfigError, match="DataFrame with columns"):
        risk_analysis(pd.DataFrame({"return": [0.1], "bench": [0.0]}))
    with pytest.raises(ConfigError, match="numeric returns, got dtype (str|object)"):
        risk_analysis(pd.Series(["0.1", "0.2"]))


def indicators() -> pd.DataFrame:
    # Day 3 has no orders: NaN indicators and zero weights, as Qlib's daily indicators have.
    return pd.DataFrame({
        "ffr": [1.0, 0.5, np.nan, 0.8],
        "pa": [0.0, 0.02, np.nan, -0.01],
        "pos": [0.0, 1.0, np.nan, 0.5],
        "deal_amount": [300.0, -100.0, 0.0, 200.0],
        "value": [3e4, -2e4, 0.0, 1e4],
        "count": [3, 1, 0, 2],
    }, index=pd.bdate_range("2020-01-02", periods=4))


@pytest.mark.parametrize(("method", "weights"), [
    ("mean", [3, 1, 0, 2]),
    ("amount_weighted", [300, 100, 0, 200]),
    ("value_weighted", [3e4, 2e4, 0, 1e4]),
])
def test_indicator_analysis_weights(method, weights):
    df = indicators()
    got = indicator_analysis(df, method=method)
    assert list(got.columns) == ["value"] and list(got.index) == ["ffr", "pa", "pos"]
    w = np.array(weights, dtype=float)
    for col in ("ffr", "pa"):
        x = df[col].to_numpy()
        want = sum(xi * wi for xi, wi in zip(x, w, strict=True) if not math.isnan(xi)) / w.sum()
        assert got.loc[col, "value"] == pytest.approx(want, rel=1e-15)
    # pos is always count-weighted: (0*3 + 1*1 + 0.5*2) / 6
    assert got.loc["pos", "value"] == pytest.approx(2 / 6, rel=1e-15)


def test_indicator_nan_with_a_weight_counts_in_the_denominator_only():
    df = pd.DataFrame({"ffr": [1.0, np.nan], "pa": [0.0, 0.0], "pos": [0.0, 0.0], "count": [1, 1]})
    assert indicator_analysis(df).loc["ffr", "value"] == 0.5


def test_indicator_analysis_without_orders_gives_nan_quietly():
    df = indicators().iloc[[2]]
    assert indicator_analysis(df)["value"].isna().all()


def test_indicator_analysis_bad_input():
    with pytest.raises(ConfigError, match=r"method 'median' is not one of \['mean', 'amount_weighted'"):
        indicator_analysis(indicators(), method="median")
    with pytest.raises(ConfigError, match=r"no column\(s\) \['value'\]"):
        indicator_analysis(indicators().drop(columns="value"), method="value_weighted")
    with pytest.raises(ConfigError, match=r"no column\(s\) \['count'\]"):
        indicator_analysis(indicators().drop(columns="count"))
    with pytest.raises(ConfigError, match="must be a DataFrame"):
        indicator_analysis(indicators()["ffr"])  # type: ignore[arg-type]
