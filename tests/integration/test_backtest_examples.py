"""The worked examples A, B and C of ``reference/qlib_backtest.md`` §8, reproduced by qroll's backtest.

The expected numbers are Qlib 0.9.7's, as the reference prints them (10 significant digits); the
inputs (pred, Series benchmark) are rebuilt as its "Inputs" section says (``backtest_examples.py``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from backtest_examples import example_bench, example_pred
from conftest import shared_dataset

from qroll.analysis.risk import risk_analysis
from qroll.backtest import REPORT_COLUMNS, backtest_daily
from qroll.data.qlib_bin import QlibBinSource

STANDARD = {"limit_threshold": 0.095, "deal_price": "close", "open_cost": 0.0005, "close_cost": 0.0015,
            "min_cost": 5}


def _source(name: str) -> QlibBinSource:
    return QlibBinSource(shared_dataset(name, "calendars/day.txt"))


def _printed(actual: float, expected: float) -> bool:
    """``actual`` rounds to ``expected`` as printed with 10 significant digits."""
    if expected == 0:
        return abs(actual) <= 1e-12
    ulp10 = 10 ** (math.floor(math.log10(abs(expected))) - 9)
    return abs(actual - expected) <= 0.51 * ulp10


def _check_rows(report: pd.DataFrame, expected: dict[str, list[float]]) -> None:
    for day, values in expected.items():
        row = report.loc[pd.Timestamp(day)]
        bad = {c: (row[c], v) for c, v in zip(REPORT_COLUMNS, values, strict=True) if not _printed(row[c], v)}
        assert not bad, f"{day}: {bad}"


def _check_risk(report: pd.DataFrame, expected: dict[str, list[float]]) -> None:
    names = ["mean", "std", "annualized_return", "information_ratio", "max_drawdown"]
    for key, values in expected.items():
        r = report["return"] - report["bench"] - (report["cost"] if key == "with_cost" else 0)
        got = risk_analysis(r, freq="day")["risk"]
        bad = {n: (got[n], v) for n, v in zip(names, values, strict=True)
               if v is not None and not _printed(got[n], v)}
        assert not bad, f"{key}: {bad}"


def _run(src: QlibBinSource, market: str, pred_window: tuple[str, str], bt: tuple[str, str], topk: int,
         n_drop: int, benchmark: str | None) -> tuple[pd.DataFrame, dict]:
    pred = example_pred(src, market, *pred_window)
    bench = benchmark if benchmark is not None else example_bench(src, market, *bt)
    strategy = {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                "kwargs": {"signal": pred, "topk": topk, "n_drop": n_drop}}
    return backtest_daily(bt[0], bt[1], strategy, account=1e8, benchmark=bench, exchange_kwargs=STANDARD,
                          source=src)


def _check_positions(report: pd.DataFrame, positions: dict) -> None:
    assert list(positions) == list(report.index)
    for day, pos in positions.items():
        assert pos.get_cash() == report.at[day, "cash"]
        stock = sum(a * pos.get_stock_price(c) for c, a in pos.get_stock_amount_dict().items())
        assert stock == pytest.approx(report.at[day, "value"], rel=1e-12)


def test_example_a_synth300() -> None:
    src = _source("qlib_synth300")
    report, positions = _run(src, "synth300", ("2018-12-03", "2019-12-31"), ("2019-01-01", "2019-12-31"),
                             50, 5, None)
    assert report.shape == (261, 9) and report.index.name == "datetime"
    _check_rows(report, {
        "2019-01-01": [99952523.6, -5.304173101e-17, 94952805.59, 0.9495280559, 47476.40279, 0.0004747640279,
                       94952805.59, 4999718.011, -0.01302368301],
        "2019-01-02": [101008845.8, 0.01078272944, 118515178.7, 0.2357356501, 68915.20287, 0.0002144898329,
                       100277712.7, 731133.1129, 0.003615641272],
        "2019-01-03": [100807947.3, -0.001794064811, 138290113.9, 0.1957742909, 88597.29758, 0.000194855159,
                       100282177.2, 525770.1048, -0.005227532529],
        "2019-01-04": [101204194.6, 0.004125822876, 157951031.9, 0.1950334126, 108265.7428, 0.0001951080819,
                       100683038.4, 521156.1766, 0.002819663749],
        "2019-01-07": [101156760.8, -0.0002713364143, 177914274.4, 0.1972570669, 128239.1657, 0.0001973576584,
                       100635217.5, 521543.31, -0.001757062782],
    })
    last = report.iloc[-1]
    assert report.index[-1] == pd.Timestamp("2019-12-31")
    assert _printed(last["account"], 103381182.2)
    assert _printed(last["total_turnover"], 5085278331)
    assert _printed(last["total_cost"], 5038021.2)
    _check_risk(report, {
        "without_cost": [9.001545365e-05, 0.003176528762, 0.02142367797, 0.4371724254, -0.05060906641],
        "with_cost": [-0.000108781321, 0.003171760852, -0.02588995439, -0.5291056174, -0.07429047826],
    })
    _check_positions(report, positions)
    # Planned sells can fail, so the book runs slightly around topk (49-51 in Qlib's run).
    sizes = [len(p.get_stock_list()) for p in positions.values()]
    assert min(sizes) >= 45 and max(sizes) <= 55
    # A delisted stock (data ends 2019-10-16) is never sold: Qlib holds it on the last day.
    assert "SH600240" in positions[pd.Timestamp("2019-12-31")].get_stock_list()


def test_example_b_csi300_string_benchmark() -> None:
    src = _source("cn_csi300")
    report, positions = _run(src, "csi300", ("2019-12-02", "2020-12-31"), ("2020-01-02", "2020-12-31"),
                             50, 5, "SH000300")
    assert report.shape == (243, 9)
    _check_rows(report, {
        "2020-01-02": [100000000, 0, 0, 0, 0, 0, 0, 100000000, 0.01358652115],
        "2020-01-03": [99996203.76, -1.461194188e-16, 7592478.237, 0.07592478237, 3796.239119, 3.796239119e-05,
                       7592478.237, 92403725.52, -0.001752376556],
        "2020-01-06": [99940579.19, -0.0005471035192, 9425061.225, 0.01832652559, 4712.530612, 9.163262797e-06,
                       9370352.95, 90570226.24, -0.003780245781],
        "2020-01-07": [99968221.59, 0.0002945175021, 13008776.31, 0.03585845819, 6504.388153, 1.79292291e-05,
                       12983502.28, 86984719.31, 0.007490873337],
        "2020-01-08": [99778437.75, -0.001889270355, 14842460.34, 0.01834266936, 7421.23017, 9.17133468e-06,
                       14628319.32, 85150118.43, -0.01151621342],
    })
    _check_risk(report, {
        "without_cost": [-0.0006413505193, 0.006431191844, -0.1526414236, -1.538482159, -0.1941504343],
        "with_cost": [-0.0006530521569, 0.006433397864, -0.1554264133, -1.566015067, -0.1966117135],
    })
    _check_positions(report, positions)


def test_example_c_edge_cases() -> None:
    src = _source("qlib_edge")
    report, positions = _run(src, "edge", ("2008-01-01", "2009-07-10"), ("2008-01-15", "2009-07-10"), 3, 1, None)
    assert report.shape == (389, 9)
    assert np.isfinite(report.to_numpy()).all()
    _check_risk(report, {"with_cost": [-0.001058656156, 0.01493096561, None, -1.093844307, -0.5598625141]})
    _check_positions(report, positions)
