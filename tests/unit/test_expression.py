"""Qlib's expression operators on tiny hand-made panels (reference/alpha158.md §3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qroll.data import ops
from qroll.data.expression import Const, Evaluator, Field, Op, evaluate, extent, fields_of, look_ahead, parse
from qroll.errors import ExpressionError

NAN = np.nan


def col(*values: float, dtype: type = np.float32) -> np.ndarray:
    """One instrument's series as a (days, 1) panel."""
    return np.array(values, dtype=dtype).reshape(-1, 1)


def ev(expr: str, **panels: np.ndarray) -> np.ndarray:
    out = evaluate(expr, panels)
    assert isinstance(out, np.ndarray)
    return out


# -- parsing ---------------------------------------------------------------------------------
def test_parse_precedence_and_canonical_form() -> None:
    assert str(parse("$a+$b*2")) == "Add($a,Mul($b,2))"
    assert str(parse("($a+$b)*2")) == "Mul(Add($a,$b),2)"
    assert str(parse("$a-$b-$c")) == "Sub(Sub($a,$b),$c)"
    assert str(parse("$a>$b")) == "Gt($a,$b)"
    assert str(parse("$a >= $b & $c")) == "Ge($a,And($b,$c))"  # Python: & binds tighter than >=
    assert str(parse("-$a")) == "Neg($a)"
    assert parse("-2") == Const(-2)
    assert parse("$CLOSE") == Field("close")
    assert parse("1e-12") == Const(1e-12) and isinstance(parse("2").value, int)  # type: ignore[union-attr]


def test_whitespace_is_irrelevant() -> None:
    assert parse("Ref( $close , 1 )") == parse("Ref($close,1)") == Op("Ref", (Field("close"), Const(1)))


@pytest.mark.parametrize("bad", ["Foo($close)", "Mean($close)", "Mean($close, $open)", "($close", "$close +",
                                 "$close $open", "Ref($close, 1"])
def test_bad_expressions_raise(bad: str) -> None:
    with pytest.raises(ExpressionError):
        parse(bad)


def test_look_ahead_is_the_net_reach_of_refs() -> None:
    assert look_ahead("Ref($close, -2)/Ref($close, -1) - 1") == 2
    assert look_ahead("Ref(Ref($close, -2), 1)") == 1  # offsets add up ...
    assert extent("Ref(Ref($close, -2), 1)")[1] == 2  # ... while Qlib loads 2 days ahead
    assert look_ahead("Mean(Ref($close, -10), 5) + Ref($close, 3)") == 10
    assert look_ahead("Std($close, 20)/Ref($close, 1)") == 0
    with pytest.raises(ExpressionError, match="offset -1.5 must be an integer"):
        look_ahead("Ref($close, -1.5)")


def test_extent_and_fields() -> None:
    assert extent("Ref($close, -2)/Ref($close, -1) - 1") == (0, 2)
    assert extent("Std($close, 20)/$close") == (19, 0)
    assert extent("Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), 60)") == (60, 0)
    assert extent("Mean(Ref($close, 3), 5)") == (7, 0)
    assert fields_of("Corr($close, Log($volume+1), 5)") == {"close", "volume"}


def test_unknown_field_raises() -> None:
    with pytest.raises(ExpressionError, match=r"\$open"):
        ev("$open", close=col(1.0))


# -- element-wise ----------------------------------------------------------------------------
def test_elementwise_stays_float32() -> None:
    high, low = col(2.0, 3.0), col(2.0, 1.0)
    out = ev("$high-$low+1e-12", high=high, low=low)
    assert out.dtype == np.float32
    assert out[0, 0] == np.float32(1e-12) and out[1, 0] == np.float32(2.0)
    assert ev("2*$high", high=high).dtype == np.float32
    assert ev("$high/(1+1)", high=high).dtype == np.float32  # numbers combine as Python numbers


def test_division_by_zero_is_unguarded_and_silent() -> None:
    out = ev("$a/$b", a=col(1.0, -1.0, 0.0), b=col(0.0, 0.0, 0.0))
    assert np.isposinf(out[0, 0]) and np.isneginf(out[1, 0]) and np.isnan(out[2, 0])


def test_comparisons_with_nan_are_false_and_greater_propagates_nan() -> None:
    a, b = col(1.0, NAN, 3.0), col(0.0, 0.0, 5.0)
    assert ev("$a>$b", a=a, b=b).ravel().tolist() == [True, False, False]
    assert ev("Mean($a>$b, 3)", a=a, b=b).ravel().tolist() == [1.0, 0.5, 1 / 3]
    g = ev("Greater($a, $b)", a=a, b=b).ravel()
    assert g[0] == 1.0 and np.isnan(g[1]) and g[2] == 5.0
    assert ev("Less($a, $b)", a=a, b=b).ravel()[2] == 3.0


def test_unary_operators() -> None:
    x = col(-2.0, 0.0, 4.0)
    assert ev("Abs($x)", x=x).ravel().tolist() == [2.0, 0.0, 4.0]
    assert ev("Sign($x)", x=x).ravel().tolist() == [-1.0, 0.0, 1.0]
    log = ev("Log($x)", x=x)
    assert log.dtype == np.float32 and np.isnan(log[0, 0]) and np.isneginf(log[1, 0])
    assert log[2, 0] == np.log(np.float32(4.0))
    assert ev("Power($x, 2)", x=x).ravel().tolist() == [4.0, 0.0, 16.0]
    assert ev("If($x>0, $x, 0)", x=x).ravel().tolist() == [0.0, 0.0, 4.0]
    assert ev("Not($x>0)", x=x).ravel().tolist() == [True, True, False]
    assert ev("And($x>-3, $x<1)", x=x).ravel().tolist() == [True, True, False]
    assert ev("Or($x>3, $x<-1)", x=x).ravel().tolist() == [True, False, True]


def test_ref_shifts_rows() -> None:
    x = col(NAN, 1.0, 2.0, 3.0)
    assert np.array_equal(ev("Ref($x, 1)", x=x).ravel(), [NAN, NAN, 1.0, 2.0], equal_nan=True)
    # Day 0 is before the series starts, so it stays NaN rather than taking day 2's value.
    assert np.array_equal(ev("Ref($x, -2)", x=x).ravel(), [NAN, 3.0, NAN, NAN], equal_nan=True)
    y = col(1.0, NAN, 2.0, 3.0)  # a stored NaN day still counts as a row
    assert np.array_equal(ev("Ref($y, -2)", y=y).ravel(), [2.0, 3.0, NAN, NAN], equal_nan=True)
    # N = 0: the first loaded value of the series, on every day of it.
    assert np.array_equal(ev("Ref($x, 0)", x=x).ravel(), [NAN, 1.0, 1.0, 1.0], equal_nan=True)


# -- windows ---------------------------------------------------------------------------------
def test_min_periods_one_and_nan_skipped() -> None:
    x = col(1.0, NAN, 3.0, 5.0)
    assert ev("Mean($x, 3)", x=x).ravel().tolist() == [1.0, 1.0, 2.0, 4.0]
    assert ev("Sum($x, 2)", x=x).ravel().tolist() == [1.0, 1.0, 3.0, 8.0]
    assert ev("Count($x, 2)", x=x).ravel().tolist() == [1.0, 1.0, 1.0, 2.0]
    assert np.isnan(ev("Sum($x, 1)", x=x)[1, 0])  # an all-NaN window is NaN, not 0
    std = ev("Std($x, 3)", x=x).ravel()
    assert np.isnan(std[0]) and np.isnan(std[1]) and std[2] == np.std([1.0, 3.0], ddof=1)


def test_window_outputs_are_float64_and_inf_is_nan() -> None:
    x = col(1.0, np.inf, 3.0)
    out = ev("Mean($x, 2)", x=x)
    assert out.dtype == np.float64 and out.ravel().tolist() == [1.0, 1.0, 3.0]
    assert ev("Max($x, 3)", x=x).ravel().tolist() == [1.0, 1.0, 3.0]


def test_constant_window_std_and_corr() -> None:
    x = col(*[3.0] * 6)
    assert ev("Std($x, 5)", x=x)[5, 0] == 0.0
    y = col(1.0, 2.0, 4.0, 3.0, 5.0, 6.0)
    assert np.isnan(ev("Corr($x, $y, 5)", x=x, y=y)).all()  # zero std masks the correlation
    assert np.isnan(ev("Rsquare($x, 5)", x=x)).all()


def test_max_min_quantile_median() -> None:
    x = col(5.0, 1.0, 4.0, 2.0, 3.0)
    assert ev("Max($x, 3)", x=x).ravel().tolist() == [5.0, 5.0, 5.0, 4.0, 4.0]
    assert ev("Min($x, 3)", x=x).ravel().tolist() == [5.0, 1.0, 1.0, 1.0, 2.0]
    # h = 0.8 * 4 = 3.2 over sorted [1, 2, 3, 4, 5]: 4 + (5 - 4) * 0.2
    assert ev("Quantile($x, 5, 0.8)", x=x)[4, 0] == pytest.approx(4.2, abs=1e-12)
    assert ev("Med($x, 5)", x=x)[4, 0] == 3.0


def test_rank_with_ties_and_nan_current() -> None:
    x = col(2.0, 1.0, 2.0, 2.0, NAN)
    rank = ev("Rank($x, 4)", x=x).ravel()
    # day 3: window [2, 1, 2, 2], today's 2 has 1 smaller, 3 equal -> (1 + 4 + 1) / (2 * 4)
    assert rank[0] == 1.0 and rank[1] == 0.5 and rank[3] == 0.75
    assert np.isnan(rank[4])


def test_idxmax_idxmin_ties_nan_and_truncation() -> None:
    x = col(1.0, 3.0, 3.0, 2.0, NAN, 5.0)
    assert ev("IdxMax($x, 3)", x=x).ravel()[:4].tolist() == [1.0, 2.0, 2.0, 1.0]  # first max wins
    assert ev("IdxMax($x, 3)", x=x)[4, 0] == 3.0  # a NaN in the window: the first NaN's position
    assert ev("IdxMin($x, 3)", x=x).ravel()[:4].tolist() == [1.0, 1.0, 1.0, 3.0]
    # A late listing: the window is truncated at the first stored day, not padded.
    late = np.array([[NAN, 1.0], [NAN, 2.0], [4.0, 3.0], [1.0, 4.0]], dtype=np.float32)
    out = ev("IdxMax($x, 3)", x=late)
    assert out[2, 0] == 1.0 and out[3, 0] == 1.0 and out[3, 1] == 3.0


def test_regression_matches_least_squares() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=40).cumsum() + 50
    x = col(*y, dtype=np.float64)
    n = 10
    slope = ev("Slope($x, 10)", x=x).ravel()
    rsq = ev("Rsquare($x, 10)", x=x).ravel()
    resi = ev("Resi($x, 10)", x=x).ravel()
    for t in (n - 1, 25, 39):
        w = y[t - n + 1 : t + 1]
        b, a = np.polyfit(np.arange(1, n + 1), w, 1)
        assert slope[t] == pytest.approx(b, rel=1e-7)
        assert resi[t] == pytest.approx(w[-1] - (a + b * n), abs=1e-7)
        assert rsq[t] == pytest.approx(np.corrcoef(np.arange(n), w)[0, 1] ** 2, rel=1e-7)
    assert np.isnan(slope[0]) and np.isnan(rsq[0])  # one point


def test_regression_inf_poisons_the_rest_of_the_series() -> None:
    x = col(1.0, 2.0, np.inf, 3.0, 4.0, 5.0, 6.0, 7.0)
    slope = ev("Slope($x, 2)", x=x).ravel()
    assert slope[1] == 1.0
    assert np.isnan(slope[5:]).all()  # the inf left the window at day 4, but its sums stay NaN


def test_corr_and_cov() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=30), rng.normal(size=30)
    corr = ev("Corr($a, $b, 8)", a=col(*a, dtype=np.float64), b=col(*b, dtype=np.float64)).ravel()
    assert corr[20] == pytest.approx(np.corrcoef(a[13:21], b[13:21])[0, 1], rel=1e-9)
    assert np.isnan(corr[0])
    cov = ev("Cov($a, $b, 8)", a=col(*a, dtype=np.float64), b=col(*b, dtype=np.float64)).ravel()
    assert cov[20] == pytest.approx(np.cov(a[13:21], b[13:21])[0, 1], rel=1e-9)


def test_other_windows() -> None:
    x = col(1.0, 2.0, 4.0, 8.0)
    assert ev("Delta($x, 3)", x=x).ravel().tolist() == [0.0, 1.0, 3.0, 6.0]
    assert ev("Var($x, 2)", x=x)[3, 0] == 8.0
    assert ev("Mad($x, 2)", x=x)[3, 0] == 2.0
    # Qlib's WMA quirk: nanmean(w * x), i.e. the weighted mean divided again by the count.
    assert ev("WMA($x, 2)", x=x)[3, 0] == pytest.approx((4 / 3 + 8 * 2 / 3) / 2)
    ema = ev("EMA($x, 3)", x=x).ravel()
    assert ema[3] == pytest.approx(pd.Series([1.0, 2.0, 4.0, 8.0]).ewm(span=3).mean().iloc[3])
    # pandas' bias-corrected sample skewness G1 and excess kurtosis G2, from the central moments.
    d = np.array([1.0, 2.0, 4.0, 8.0]) - 3.75
    m2, m3, m4, k = (d**2).mean(), (d**3).mean(), (d**4).mean(), 4
    g1 = np.sqrt(k * (k - 1)) / (k - 2) * m3 / m2**1.5
    g2 = (k - 1) / ((k - 2) * (k - 3)) * ((k + 1) * (m4 / m2**2 - 3) + 6)
    assert ev("Skew($x, 4)", x=x)[3, 0] == pytest.approx(g1, rel=1e-9)
    assert ev("Kurt($x, 4)", x=x)[3, 0] == pytest.approx(g2, rel=1e-9)
    assert np.isnan(ev("Skew($x, 4)", x=x)[1, 0]) and np.isnan(ev("Kurt($x, 4)", x=x)[2, 0])  # too few values


def test_fast_kernels_match_pandas_public_api() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)) * 100 + 50
    x[rng.random(x.shape) < 0.1] = NAN
    x[5, 2], x[7, 3] = np.inf, -np.inf
    x[100:170, 4] = 3.0
    y = rng.normal(size=(300, 5))
    for n in (1, 5, 60, 0):
        frame = pd.DataFrame(x)
        roll = frame.expanding(min_periods=1) if n == 0 else frame.rolling(n, min_periods=1)
        equal = ops.equal_windows(ops.as_float64(x.T), n).T
        for how, args in [("mean", ()), ("sum", ()), ("std", ()), ("var", ()), ("max", ()), ("quantile", (0.2,)),
                          ("rank", ())]:
            want = (roll.rank(pct=True) if how == "rank" else getattr(roll, how)(*args)).to_numpy()
            got = ops.pandas_rolling(x.T, n, how, *args).T
            if how in ("std", "var"):  # exactly 0 on a window of equal values, pandas' number elsewhere
                assert (got[equal] == 0).all(), (n, how)
                assert n < 2 or equal[100 + n - 1 : 170, 4].all()  # windows inside the run of 3.0
                got, want = got[~equal], want[~equal]
            assert np.array_equal(got, want, equal_nan=True), (n, how)
        want = roll.corr(pd.DataFrame(y)).to_numpy()
        assert np.array_equal(ops.rolling_corr(x.T, y.T, n).T, want, equal_nan=True), n


def test_columns_are_independent_and_shared_subexpressions_agree() -> None:
    rng = np.random.default_rng(3)
    close = rng.uniform(9, 11, size=(50, 4)).astype(np.float32)
    close[:12, 1] = NAN  # a late listing
    exprs = ["Mean($close, 5)/$close", "Std($close, 5)/$close", "Rsquare($close, 5)", "Corr($close, $close*$close, 5)",
             "Slope($close, 5)", "Resi($close, 5)"]
    together = list(Evaluator({"close": close}).evaluate_many(exprs))
    for expr, value in zip(exprs, together, strict=True):
        alone = ev(expr, close=close)
        assert np.array_equal(value, alone, equal_nan=True), expr
        single = ev(expr, close=close[:, 1:2])
        assert np.array_equal(alone[:, 1:2], single, equal_nan=True), expr


def test_dataframe_panels_give_a_dataframe() -> None:
    index = pd.bdate_range("2020-01-01", periods=3)
    close = pd.DataFrame({"A": [1.0, 2.0, 3.0], "B": [2.0, 2.0, 2.0]}, index=index, dtype=np.float32)
    out = evaluate("Mean($close, 2)", {"close": close})
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == ["A", "B"] and out.index.equals(index)
    assert out["A"].tolist() == [1.0, 1.5, 2.5]


def test_days_outside_a_series_do_not_enter_windows() -> None:
    # Qlib has no rows before listing: a comparison there is not a False day, and Ref(x, -1) does
    # not pull the first stored value into the day before listing.
    late = np.array([[NAN, 1.0], [NAN, 2.0], [2.0, 1.0], [3.0, 4.0], [4.0, 3.0]], dtype=np.float32)
    up = ev("Mean($x>Ref($x, 1), 5)", x=late)
    assert up[2, 0] == 0.0 and up[3, 0] == 0.5 and up[4, 0] == 2 / 3
    assert np.isnan(up[1, 0])
    ahead = ev("Mean(Ref($x, -1), 3)", x=late)
    assert ahead[2, 0] == 3.0  # only day 2's own value (tomorrow's 3.0), not day 1's
    assert np.isnan(ev("$x>0", x=late)[0, 0])  # a final column is NaN outside the series too
    assert ev("Count($x, 5)", x=late)[4, 0] == 3.0
