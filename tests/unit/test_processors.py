"""Processors: Qlib's semantics and float32 numbers (alpha158.md §5.3), on in-memory frames.

Where Qlib's implementation is a pandas one-liner, the test runs that one-liner on the same pandas
and asserts bit-identity; the comparison with Qlib itself is in
``tests/integration/test_processors_oracle.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qroll.data.processors import (
    CSRankNorm,
    CSZFillna,
    CSZScoreNorm,
    DropCol,
    DropnaFeature,
    DropnaLabel,
    DropnaProcessor,
    Fillna,
    FilterCol,
    MinMaxNorm,
    ProcessInf,
    RobustZScoreNorm,
    TanhProcess,
    ZScoreNorm,
)
from qroll.errors import ProcessorError

NAMES = ["KMID", "ROC5", "STD20", "CORD60", "RSQR5", "VSTD5", "CONST"]


def make_frame(seed: int = 0, days: int = 60, n_inst: int = 40, nan: float = 0.02, inf: float = 0.002) -> pd.DataFrame:
    """A handler-layout frame: ragged days, NaN and ±inf sprinkled, a constant column, ties."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-01", periods=days)
    idx = pd.MultiIndex.from_product([dates, [f"SH{600000 + i}" for i in range(n_inst)]],
                                     names=["datetime", "instrument"])
    idx = idx[rng.random(len(idx)) > 0.1]
    vals = rng.standard_normal((len(idx), len(NAMES) + 1)).astype(np.float32) * np.float32(0.37) + np.float32(1.1)
    vals[:, 3] = np.round(vals[:, 3], 1)
    draw = rng.random(vals.shape)
    vals[draw < nan] = np.nan
    vals[(draw > nan) & (draw < nan + inf)] = np.inf
    vals[(draw > nan + inf) & (draw < nan + 2 * inf)] = -np.inf
    vals[:, 6] = 2.5
    cols = pd.MultiIndex.from_tuples([("feature", c) for c in NAMES] + [("label", "LABEL0")])
    return pd.DataFrame(vals, index=idx, columns=cols)


def bits_equal(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return (a.index.equals(b.index) and a.columns.equals(b.columns) and list(a.dtypes) == list(b.dtypes)
            and np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True))


def qlib_groupby(df: pd.DataFrame, cols: pd.Index, func) -> pd.DataFrame:
    """Qlib's own pandas code for the per-day processors (its inf/NaN arithmetic warns; Qlib ignores it)."""
    out = df.copy()
    with np.errstate(all="ignore"):
        out[cols] = df[cols].groupby("datetime", group_keys=False).apply(func)
    return out


@pytest.mark.parametrize("group", [None, "feature", "label"])
def test_cszscorenorm_is_bit_identical_to_pandas_groupby(group):
    df = make_frame()
    cols = df.columns if group is None else df.columns[df.columns.get_loc(group)]
    expected = qlib_groupby(df, cols, lambda x: (x - x.mean()).div(x.std()))
    assert bits_equal(CSZScoreNorm(fields_group=group)(df), expected)


def test_cszscorenorm_unsorted_rows_keep_their_order():
    df = make_frame().sample(frac=1.0, random_state=3)
    cols = df.columns[df.columns.get_loc("label")]
    expected = qlib_groupby(df, cols, lambda x: (x - x.mean()).div(x.std()))
    assert bits_equal(CSZScoreNorm(fields_group="label")(df), expected)


def test_cszscorenorm_label_has_zero_mean_unit_std_ddof1_and_single_value_day_is_nan():
    df = make_frame(inf=0)
    out = CSZScoreNorm(fields_group="label")(df)
    stats = out[("label", "LABEL0")].groupby("datetime").agg(["mean", "std"])
    assert np.allclose(stats["mean"], 0, atol=1e-6) and np.allclose(stats["std"], 1, atol=1e-5)
    one = df.iloc[:1]
    assert np.isnan(CSZScoreNorm(fields_group="label")(one).iloc[0, -1])


def test_cszscorenorm_robust_clips_and_rejects_unknown_method():
    df = make_frame(inf=0)
    out = CSZScoreNorm(fields_group="feature", method="robust")(df)["feature"].drop(columns="CONST")
    assert np.nanmax(np.abs(out.to_numpy())) == 3
    with pytest.raises(ProcessorError, match="'mad'"):
        CSZScoreNorm(method="mad")


def test_processinf_replaces_inf_with_that_days_mean_of_finite_values():
    df = make_frame(inf=0.01)
    assert np.isinf(df.to_numpy()).any()

    def process_inf(x):
        for col in x.columns:
            x[col] = x[col].replace([np.inf, -np.inf], x[col][~np.isinf(x[col])].mean())
        return x

    expected = df.groupby("datetime", group_keys=False).apply(process_inf).sort_index()
    got = ProcessInf()(df)
    assert not np.isinf(got.to_numpy()).any()
    assert bits_equal(got, expected)


def test_cszfillna_fills_with_the_days_float32_mean():
    df = make_frame(inf=0)
    cols = df.columns[df.columns.get_loc("feature")]
    expected = qlib_groupby(df, cols, lambda x: x.fillna(x.mean()))
    got = CSZFillna(fields_group="feature")(df)
    assert bits_equal(got, expected)
    assert got["label"].isna().any().all()  # the label group is untouched


def test_csranknorm_is_float64_and_matches_pandas_rank():
    df = make_frame()
    got = CSRankNorm(fields_group="feature")(df)
    ranked = (df["feature"].groupby("datetime").rank(pct=True) - 0.5) * 3.46
    assert (got["feature"].dtypes == np.float64).all() and got[("label", "LABEL0")].dtype == np.float32
    assert np.array_equal(got["feature"].to_numpy(), ranked.to_numpy(), equal_nan=True)
    assert np.nanmax(got["feature"].to_numpy()) == pytest.approx(0.5 * 3.46)


def test_fillna_default_fills_the_label_too_and_group_fills_only_its_columns():
    df = make_frame()
    assert not Fillna()(df).isna().any().any()
    only = Fillna(fields_group="feature", fill_value=-1)(df)
    assert not only["feature"].isna().any().any() and only["label"].isna().any().all()
    assert (only["feature"].to_numpy()[df["feature"].isna().to_numpy()] == -1).all()
    assert np.isinf(only.to_numpy()).any()  # Fillna leaves ±inf alone


def test_zscorenorm_uses_fit_rows_only_ddof0_and_leaves_constant_columns():
    df = ProcessInf()(make_frame())
    proc = ZScoreNorm("2015-01-01", "2015-01-30", fields_group="feature")
    proc.fit(df)
    fit = np.asfortranarray(df.loc["2015-01-01":"2015-01-30", "feature"].to_numpy())
    mean, std = np.nanmean(fit, axis=0), np.nanstd(fit, axis=0)
    assert proc.mean_train.dtype == np.float32
    assert np.array_equal(proc.mean_train[:-1], mean[:-1]) and np.array_equal(proc.std_train[:-1], std[:-1])
    out = proc(df)
    assert (out[("feature", "CONST")] == 2.5).all()  # std 0 -> mean 0, std 1
    expected = (df["feature"].to_numpy() - proc.mean_train) / proc.std_train
    assert np.array_equal(out["feature"].to_numpy(), expected, equal_nan=True)
    assert out[("label", "LABEL0")].equals(df[("label", "LABEL0")])


def test_robustzscorenorm_median_mad_1_4826_clip():
    df = ProcessInf()(make_frame())
    proc = RobustZScoreNorm("2015-01-01", "2015-02-27", fields_group="feature")
    proc.fit(df)
    fit = df.loc["2015-01-01":"2015-02-27", "feature"].to_numpy()
    med = np.nanmedian(fit, axis=0)
    sigma = (np.nanmedian(np.abs(fit - med), axis=0) + np.float32(1e-12)) * np.float32(1.4826)
    assert np.array_equal(proc.mean_train, med) and np.array_equal(proc.std_train, sigma)
    out = proc(df)["feature"].to_numpy()
    assert np.nanmax(np.abs(out)) == 3
    raw = RobustZScoreNorm("2015-01-01", "2015-02-27", fields_group="feature", clip_outlier=False)
    raw.fit(df)
    assert np.nanmax(np.abs(raw(df)["feature"].to_numpy())) > 3


def test_minmaxnorm_maps_fit_range_to_unit_interval():
    df = ProcessInf()(make_frame())
    proc = MinMaxNorm("2015-01-01", "2015-03-31", fields_group="feature")
    proc.fit(df)
    out = proc(df)["feature"]
    assert np.nanmin(out.drop(columns="CONST").to_numpy()) == 0
    assert np.nanmax(out.drop(columns="CONST").to_numpy()) == 1
    assert (out["CONST"] == 2.5).all()


def test_dropna_processors():
    df = make_frame()
    dropped = DropnaLabel()(df)
    assert len(dropped) == len(df) - df[("label", "LABEL0")].isna().sum()
    assert not DropnaLabel().is_for_infer() and DropnaLabel().readonly()
    assert DropnaProcessor(fields_group="feature")(df).equals(DropnaFeature()(df))
    assert not DropnaFeature()(df)["feature"].isna().any().any()


def test_filtercol_keeps_other_groups_and_dropcol_drops_by_last_level():
    df = make_frame()
    kept = FilterCol(col_list=["KMID", "ROC5"])(df)
    assert kept.columns.tolist() == [("feature", "KMID"), ("feature", "ROC5"), ("label", "LABEL0")]
    dropped = DropCol(col_list=["KMID", "ROC5"])(df)
    assert ("feature", "KMID") not in dropped.columns and len(dropped.columns) == len(df.columns) - 2


def test_tanhprocess_skips_label_columns():
    df = make_frame(inf=0)
    out = TanhProcess()(df)
    assert out[("label", "LABEL0")].equals(df[("label", "LABEL0")])
    assert np.allclose(out[("feature", "KMID")], np.tanh(df[("feature", "KMID")] - 1), equal_nan=True)


def test_missing_fields_group_names_the_group():
    with pytest.raises(ProcessorError, match="fields_group='feat'.*'feature', 'label'"):
        CSZScoreNorm(fields_group="feat")(make_frame())


def test_fit_range_without_rows_and_use_before_fit_are_errors():
    df = make_frame()
    proc = ZScoreNorm("2019-01-01", "2019-12-31")
    with pytest.raises(ProcessorError, match="2019-01-01..2019-12-31"):
        proc.fit(df)
    with pytest.raises(ProcessorError, match="before fit"):
        MinMaxNorm("2015-01-01", "2015-02-01")(df)


def test_processors_do_not_modify_their_input():
    df = make_frame()
    before = df.copy()
    for proc in (CSZScoreNorm(), ProcessInf(), Fillna(), CSZFillna(), CSRankNorm()):
        proc(df)
    assert bits_equal(df, before)


def test_a_label_only_processor_shares_the_feature_columns():
    df = make_frame()
    df = pd.DataFrame(np.asfortranarray(df.to_numpy()), index=df.index, columns=df.columns)  # one block
    got = CSZScoreNorm(fields_group="label")(df)
    assert np.shares_memory(got["feature"].to_numpy(), df["feature"].to_numpy())
    assert got.columns.equals(df.columns) and set(got.dtypes) == {np.dtype("float32")}
    assert not np.array_equal(got["label"].to_numpy(), df["label"].to_numpy(), equal_nan=True)
    assert np.array_equal(got["feature"].to_numpy(), df["feature"].to_numpy(), equal_nan=True)


def test_an_all_column_processor_returns_one_fresh_block():
    df = make_frame()
    got = Fillna()(df)
    assert not np.shares_memory(got.to_numpy(), df.to_numpy()) and not got.isna().any().any()
