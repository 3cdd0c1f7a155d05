"""qroll's daily backtest against Qlib 0.9.7's on three data sets, run in Qlib's own venv (``.venv-qlib``).

Per data set, several parameter sets cover the strategy's options (n_drop, hold_thresh,
only_tradable, forbid_all_trade_at_limit, risk_degree above 1, which makes buys run out of cash and
fill partly), deal price close and open, min cost 0, impact cost and limit thresholds as a pair of
expressions. Compared: every report column (money to 1e-12 of the account, rates to 1e-12), every
day's position as a dict (stocks and day counts equal; amounts, prices, weights, cash to 1e-12),
``risk_analysis`` of both excess returns (1e-12) and the trade indicators (same counts and NaN days;
rates to 1e-12, amounts to 1e-12 relative). Inputs and answers travel as JSON (floats round-trip
exactly).

- ``qlib_synth300``: reference §8 example A (2019, topk 50, benchmark a Series).
- ``cn_csi300``: example B's year 2020 with the benchmark ``"SH000300"`` (Qlib's float32 path) and
  the limits as expressions, since this data's ``$change`` is in percent.
- ``qlib_edge``: example C (NaN gaps, suspension, late listing, early delisting).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from backtest_examples import (
    decode_frame,
    encode_bench,
    encode_pred,
    example_bench,
    example_pred,
    indicator_diffs,
    need_qlib,
    position_diffs,
    report_diffs,
    run_qlib,
)
from conftest import shared_dataset

from qroll.analysis.risk import risk_analysis
from qroll.backtest import run_backtest
from qroll.data.qlib_bin import QlibBinSource

STANDARD = {"limit_threshold": 0.095, "deal_price": "close", "open_cost": 0.0005, "close_cost": 0.0015,
            "min_cost": 5}
PCT_LIMITS = {**STANDARD, "limit_threshold": ["$change >= 9.5", "$change <= -9.5"]}
DATASETS: dict[str, dict[str, Any]] = {
    "qlib_synth300": {
        "market": "synth300", "pred": ("2018-12-03", "2019-12-31"), "range": ("2019-01-01", "2019-12-31"),
        "bench": None,
        "cases": [
            {"strategy": {"topk": 50, "n_drop": 5}, "exchange": STANDARD},
            {"strategy": {"topk": 30, "n_drop": 3, "hold_thresh": 2, "only_tradable": True},
             "exchange": {**STANDARD, "deal_price": "open", "min_cost": 0}},
            {"strategy": {"topk": 20, "n_drop": 2, "risk_degree": 1.2}, "exchange": STANDARD},
        ],
    },
    "cn_csi300": {
        "market": "csi300", "pred": ("2019-12-02", "2020-12-31"), "range": ("2020-01-02", "2020-12-31"),
        "bench": "SH000300",
        "cases": [
            {"strategy": {"topk": 50, "n_drop": 5}, "exchange": PCT_LIMITS},
            {"strategy": {"topk": 30, "n_drop": 5, "hold_thresh": 3, "only_tradable": True,
                          "forbid_all_trade_at_limit": False},
             "exchange": {**PCT_LIMITS, "deal_price": "open", "min_cost": 0}},
            {"strategy": {"topk": 10, "n_drop": 1, "risk_degree": 1.1}, "exchange": PCT_LIMITS},
        ],
    },
    "qlib_edge": {
        "market": "edge", "pred": ("2008-01-01", "2009-07-10"), "range": ("2008-01-15", "2009-07-10"),
        "bench": None,
        "cases": [
            {"strategy": {"topk": 3, "n_drop": 1}, "exchange": STANDARD},
            {"strategy": {"topk": 4, "n_drop": 2, "hold_thresh": 3, "only_tradable": True},
             "exchange": {**STANDARD, "deal_price": "open", "min_cost": 0}},
            {"strategy": {"topk": 5, "n_drop": 1, "forbid_all_trade_at_limit": False, "risk_degree": 0.8},
             "exchange": {**STANDARD, "impact_cost": 0.01,
                          "limit_threshold": ["$close/Ref($close,1)-1 >= 0.05",
                                              "$close/Ref($close,1)-1 <= -0.05"]}},
            {"strategy": {"topk": 3, "n_drop": 2, "risk_degree": 1.5}, "exchange": STANDARD},
        ],
    },
}

# Qlib's backtest (the one PortAnaRecord runs) with every argument explicit: report, positions,
# trade indicators, and risk_analysis of both excess returns.
ORACLE = """
from qlib.backtest import backtest
from qlib.contrib.evaluate import risk_analysis
from qlib.contrib.strategy import TopkDropoutStrategy
qlib.init(provider_uri=inp["data"], region="cn", kernels=1)
pred, bench = decode_pred(inp["pred"]), decode_bench(inp["bench"])
executor = {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
            "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True}}
out = []
for c in inp["cases"]:
    metrics, indicators = backtest(start_time=inp["start"], end_time=inp["end"],
                                   strategy=TopkDropoutStrategy(signal=pred, **c["strategy"]), executor=executor,
                                   account=1e8, benchmark=bench, exchange_kwargs=exchange(c["exchange"]),
                                   pos_type="Position")
    report, positions = metrics["1day"]
    excess = report["return"] - report["bench"]
    risk = {"without_cost": risk_analysis(excess, freq="day")["risk"].tolist(),
            "with_cost": risk_analysis(excess - report["cost"], freq="day")["risk"].tolist()}
    out.append({"report": encode_frame(report), "positions": encode_positions(positions),
                "indicators": encode_frame(indicators["1day"][0]), "risk": risk})
json.dump(out, open(inp["out"], "w"))
"""


@pytest.mark.oracle
@pytest.mark.slow
@pytest.mark.parametrize("name", list(DATASETS))
def test_backtest_matches_qlib(name: str, tmp_path: Path) -> None:
    need_qlib()
    spec = DATASETS[name]
    src = QlibBinSource(shared_dataset(name, "calendars/day.txt"))
    pred = example_pred(src, spec["market"], *spec["pred"])
    start, end = spec["range"]
    bench = spec["bench"] if spec["bench"] is not None else example_bench(src, spec["market"], start, end)
    expected = run_qlib(ORACLE, {"data": str(src.root), "start": start, "end": end, "cases": spec["cases"],
                                 "pred": encode_pred(pred), "bench": encode_bench(bench)}, tmp_path)
    figures = []
    for case, want in zip(spec["cases"], expected, strict=True):
        strategy = {"class": "TopkDropoutStrategy", "kwargs": {"signal": pred, **case["strategy"]}}
        result = run_backtest(start, end, strategy, benchmark=bench, exchange_kwargs=case["exchange"],
                              source=src)
        report = result.report
        rep = report_diffs(report, decode_frame(want["report"]))
        assert rep["money_rel"] <= 1e-12 and rep["rates_abs"] <= 1e-12, (case, rep)
        pos = position_diffs(result.positions, want["positions"], float(report["account"].abs().max()))
        assert pos <= 1e-12, case
        excess = report["return"] - report["bench"]
        risk = 0.0
        for key, series in (("without_cost", excess), ("with_cost", excess - report["cost"])):
            got = risk_analysis(series, freq="day")["risk"].to_numpy()
            risk = max(risk, float(abs(got - want["risk"][key]).max()))
        assert risk <= 1e-12, case
        ind = indicator_diffs(result.indicators, decode_frame(want["indicators"]))
        assert ind["rates_abs"] <= 1e-12 and ind["amounts_rel"] <= 1e-12, (case, ind)
        figures.append({**rep, "positions_rel": pos, "risk_abs": risk, **{f"ind_{k}": v for k, v in ind.items()},
                        "min_ffr": float(result.indicators["ffr"].min())})
    print(name, pd.DataFrame(figures).to_string())  # shown with -rP: the oracle's figures
    # risk_degree > 1 spends more than the cash: the last buys are clipped (ffr < 1), in both.
    assert figures[-1]["min_ffr"] < 1
