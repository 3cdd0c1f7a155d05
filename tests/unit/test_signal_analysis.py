"""calc_ic / calc_long_short_return against Qlib's per-day pandas formulas, computed directly."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from qroll.analysis import calc_ic, calc_long_short_return, ic_summary


def _index(days: int, instruments: int) -> pd.MultiIndex:
    return pd.MultiIndex.from_product(
        [pd.bdate_range("2020-01-01", periods=days), [f"S{i:03d}" for i in range(instruments)]],
        names=["datetime", "instrument"],
    )


@pytest.fixture
def pred_label() -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(7)
    idx = _index(30, 25)
    pred = pd.Series(rng.normal(size=len(idx)), index=idx)
    label = pd.Series(0.3 * pred.to_numpy() + rng.normal(size=len(idx)), index=idx)
    pred.iloc[::11] = np.nan
    label.iloc[::13] = np.nan
    day = idx.get_level_values(0)
    pred[day == day[25 * 3]] = 1.0  # a constant prediction: no correlation that day
    label[day == day[25 * 5]] = np.nan  # no label that day
    pred = pred.round(1)  # ties, for Spearman's average ranks
    return pred, label


def _qlib_ic(pred: pd.Series, label: pd.Series) -> tuple[pd.Series, pd.Series]:
    df = pd.DataFrame({"pred": pred, "label": label})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on the constant day; NaN is the answer
        ic = df.groupby("datetime").apply(lambda d: d["pred"].corr(d["label"]))
        ric = df.groupby("datetime").apply(lambda d: d["pred"].corr(d["label"], method="spearman"))
    return ic, ric


def test_ic_and_rank_ic_equal_per_day_pandas(pred_label: tuple[pd.Series, pd.Series]) -> None:
    pred, label = pred_label
    ic, ric = calc_ic(pred, label)
    want_ic, want_ric = _qlib_ic(pred, label)
    pd.testing.assert_series_equal(ic, want_ic, check_names=False, rtol=1e-10, atol=1e-12)
    pd.testing.assert_series_equal(ric, want_ric, check_names=False, rtol=1e-10, atol=1e-12)
    assert ic.isna().sum() == 2 and ic.index.name == "datetime" and ic.index.is_monotonic_increasing
    assert ic.notna().sum() == 28 and ic.abs().max() <= 1
    dropped_ic, dropped_ric = calc_ic(pred, label, dropna=True)
    assert len(dropped_ic) == 28 and len(dropped_ric) == 28


def test_ic_on_union_of_indexes_and_single_rows() -> None:
    idx = _index(3, 4)
    pred = pd.Series(np.arange(12.0), index=idx)
    label = pd.Series([1.0, 3.0, 2.0, 5.0, 9.0], index=idx[:5])  # day 2 has one row, day 3 none
    ic, ric = calc_ic(pred, label)
    want_ic, want_ric = _qlib_ic(pred, label)
    assert len(ic) == 3 and ic.iloc[1:].isna().all()
    pd.testing.assert_series_equal(ic, want_ic, check_names=False)
    pd.testing.assert_series_equal(ric, want_ric, check_names=False)


def _qlib_long_short(pred: pd.Series, label: pd.Series, quantile: float = 0.2, dropna: bool = False):
    df = pd.DataFrame({"pred": pred, "label": label})
    if dropna:
        df = df.dropna()
    group = df.groupby(level="datetime", group_keys=False)

    def n(x: pd.DataFrame) -> int:
        return int(len(x) * quantile)

    r_long = group.apply(lambda x: x.nlargest(n(x), columns="pred").label.mean())
    r_short = group.apply(lambda x: x.nsmallest(n(x), columns="pred").label.mean())
    return (r_long - r_short) / 2, group.label.mean()


@pytest.mark.parametrize("dropna", [False, True])
@pytest.mark.parametrize("quantile", [0.2, 0.1])
def test_long_short_equals_nlargest_nsmallest(pred_label, dropna: bool, quantile: float) -> None:
    pred, label = pred_label
    ls, avg = calc_long_short_return(pred, label, quantile=quantile, dropna=dropna)
    want_ls, want_avg = _qlib_long_short(pred, label, quantile, dropna)
    pd.testing.assert_series_equal(ls, want_ls, check_names=False, rtol=1e-12)
    pd.testing.assert_series_equal(avg, want_avg, check_names=False, rtol=1e-12)
    assert ls.notna().sum() >= 25


def test_long_short_ties_follow_row_order() -> None:
    idx = _index(1, 5)
    pred = pd.Series([2.0, 2.0, 2.0, 1.0, 1.0], index=idx)
    label = pd.Series([0.10, 0.20, 0.30, 0.40, 0.50], index=idx)
    ls, _ = calc_long_short_return(pred, label)
    # nlargest keeps the first 2.0 (0.10); nsmallest the first 1.0 (0.40).
    assert ls.iloc[0] == pytest.approx((0.10 - 0.40) / 2)


def test_ic_summary_is_qlib_mean_over_std() -> None:
    ic = pd.Series([0.1, 0.2, np.nan, 0.4])
    ric = pd.Series([0.05, 0.05, 0.05, 0.05])
    out = ic_summary(ic, ric)
    assert out["IC"] == pytest.approx(ic.mean()) and out["ICIR"] == pytest.approx(ic.mean() / ic.std())
    assert out["Rank IC"] == pytest.approx(0.05) and np.isnan(out["Rank ICIR"])  # zero spread
