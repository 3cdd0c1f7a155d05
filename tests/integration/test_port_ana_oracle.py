"""qroll's PortAnaRecord against Qlib 0.9.7's, each on a run holding the same pred.pkl and label.pkl.

Qlib's record runs in Qlib's venv on a file MLflow store in a temporary folder; qroll's on a SQLite
store. Compared: the 13 metrics (1e-12), the artifact names, the trade indicator frame (same counts
and NaN days), ``port_analysis_1day.pkl`` (same 2-level index, 1e-12), ``indicator_analysis_1day.pkl``,
the report and the positions. The three configs cover Qlib's default config (``config=None``,
on ``cn_csi300``, which holds SH000300), the time range taken from the predictions (start and end
None), an explicit executor, a backtest block without account and exchange_kwargs (the defaults of
``qlib.backtest.backtest``), partial fills, frequency spellings and the indicator weighting methods.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
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

from qroll.data.qlib_bin import QlibBinSource
from qroll.record import ExpManager, PortAnaRecord

STANDARD = {"limit_threshold": 0.095, "deal_price": "close", "open_cost": 0.0005, "close_cost": 0.0015,
            "min_cost": 5}
EXECUTOR = {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
            "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True}}


def _config(topk: int, n_drop: int, start: str | None, end: str | None, bench: Any, **strategy: Any) -> dict:
    return {"strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                         "kwargs": {"signal": "<PRED>", "topk": topk, "n_drop": n_drop, **strategy}},
            "backtest": {"start_time": start, "end_time": end, "account": 100000000, "benchmark": bench,
                         "exchange_kwargs": STANDARD}}


def _defaults(config: dict) -> dict:
    backtest = {k: v for k, v in config["backtest"].items() if k not in ("account", "exchange_kwargs")}
    return {**config, "backtest": backtest, "executor": EXECUTOR}


# name -> (market, pred window, args after config, config builder given the Series benchmark)
CASES: dict[str, tuple[str, tuple[str, str], list[Any], Any]] = {
    # Example A's pred; the range from the pred: start 2018-12-03 (no signal that day), end 2020-01-01.
    "qlib_synth300": ("synth300", ("2018-12-03", "2019-12-31"), ["day"],
                      lambda bench: _config(50, 5, None, None, bench)),
    # Qlib's default config (TopkDropout 50/5, SH000300, limit 0.095 on a percent $change), range
    # 2019-12-02..2021-01-04 from the pred, value-weighted indicators.
    "cn_csi300": ("csi300", ("2019-12-02", "2020-12-31"), [None, "1day", "value_weighted"],
                  lambda bench: None),
    # Explicit range and executor, no account nor exchange_kwargs (qlib.backtest.backtest's defaults:
    # 1e9, fees 15 / 25 bp); risk_degree 1.5 makes buys run short of cash (ffr < 1).
    "qlib_edge": ("edge", ("2008-01-01", "2009-07-10"), ["1day", "d", "amount_weighted"],
                  lambda bench: _defaults(_config(3, 2, "2008-01-15", "2009-07-10", bench, risk_degree=1.5))),
}

ORACLE = """
from qlib.workflow import R
from qlib.workflow.record_temp import PortAnaRecord
qlib.init(provider_uri=inp["data"], region="cn", kernels=1,
          exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                       "kwargs": {"uri": "file:" + inp["tmp"] + "/mlruns", "default_exp_name": "oracle"}})
pred = decode_pred(inp["pred"])
cfg = inp["config"]
if cfg is not None:
    cfg["backtest"]["benchmark"] = decode_bench(cfg["backtest"]["benchmark"])
    if "exchange_kwargs" in cfg["backtest"]:
        cfg["backtest"]["exchange_kwargs"] = exchange(cfg["backtest"]["exchange_kwargs"])
with R.start(experiment_name="oracle"):
    rec = R.get_recorder()
    rec.save_objects(**{"pred.pkl": pred, "label.pkl": pred.rename(columns={"score": "label"})})
    PortAnaRecord(rec, cfg, *inp["args"]).generate()
# Read back once the run has ended: Qlib logs metrics asynchronously, and ending waits for them.
rec = R.get_recorder(recorder_id=rec.id, experiment_name="oracle")
load = lambda name: rec.load_object("portfolio_analysis/" + name)
port = load("port_analysis_1day.pkl")
out = {"metrics": rec.list_metrics(),
       "artifacts": sorted(rec.list_artifacts("portfolio_analysis")),
       "report": encode_frame(load("report_normal_1day.pkl")),
       "positions": encode_positions(load("positions_normal_1day.pkl")),
       "indicators": encode_frame(load("indicators_normal_1day.pkl")),
       "port_analysis": {"index": [list(k) for k in port.index], "names": list(port.index.names),
                         "columns": list(port.columns), "risk": port["risk"].tolist()},
       "indicator_analysis": load("indicator_analysis_1day.pkl")["value"].to_dict()}
json.dump(out, open(inp["out"], "w"))
"""


@pytest.mark.oracle
@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_port_ana_record_matches_qlib(name: str, tmp_path: Path) -> None:
    need_qlib()
    market, window, args, make_config = CASES[name]
    src = QlibBinSource(shared_dataset(name, "calendars/day.txt"))
    pred = example_pred(src, market, *window)
    bench = example_bench(src, market, "2008-01-01", "2021-12-31")
    config = make_config(bench)
    wire = None
    if config is not None:
        wire = {**config, "backtest": {**config["backtest"], "benchmark": encode_bench(bench)}}
    want = run_qlib(ORACLE, {"data": str(src.root), "pred": encode_pred(pred), "config": wire, "args": args},
                    tmp_path)

    manager = ExpManager(f"sqlite:///{tmp_path}/mlflow.db")
    with manager.get_exp("oracle").start_recorder() as rec:
        rec.save_objects(**{"pred.pkl": pred, "label.pkl": pred.rename(columns={"score": "label"})})
        metrics = PortAnaRecord(rec, config, *args, source=src).generate()

    assert sorted(metrics) == sorted(want["metrics"]) and len(metrics) == 13
    assert rec.list_metrics().keys() == metrics.keys()
    metric_diff = 0.0
    for key, value in want["metrics"].items():
        assert math.isnan(value) == math.isnan(metrics[key]), key
        if not math.isnan(value):
            metric_diff = max(metric_diff, abs(metrics[key] - value))
    assert metric_diff <= 1e-12
    assert [a for a in rec.list_artifacts() if a.startswith("portfolio_analysis/")] == want["artifacts"]

    load = lambda artifact: rec.load_object(f"portfolio_analysis/{artifact}")  # noqa: E731
    report = load("report_normal_1day.pkl")
    rep = report_diffs(report, decode_frame(want["report"]))
    assert rep["money_rel"] <= 1e-12 and rep["rates_abs"] <= 1e-12, rep
    pos = position_diffs(load("positions_normal_1day.pkl"), want["positions"], float(report["account"].max()))
    assert pos <= 1e-12
    ind = indicator_diffs(load("indicators_normal_1day.pkl"), decode_frame(want["indicators"]))
    assert ind["rates_abs"] <= 1e-12 and ind["amounts_rel"] <= 1e-12, ind
    port = load("port_analysis_1day.pkl")
    assert [list(k) for k in port.index] == want["port_analysis"]["index"]
    assert list(port.index.names) == want["port_analysis"]["names"] == [None, None]
    assert list(port.columns) == want["port_analysis"]["columns"] == ["risk"]
    port_diff = float(np.max(np.abs(port["risk"].to_numpy() - np.array(want["port_analysis"]["risk"]))))
    assert port_diff <= 1e-12
    analysis = load("indicator_analysis_1day.pkl")["value"].to_dict()
    assert list(analysis) == list(want["indicator_analysis"]) == ["ffr", "pa", "pos"]
    for key, value in want["indicator_analysis"].items():
        assert analysis[key] == pytest.approx(value, rel=1e-12, abs=1e-15, nan_ok=True), key
    print(name, pd.Series({"metrics_abs": metric_diff, "port_analysis_abs": port_diff, **rep,
                           "positions_rel": pos, **{f"ind_{k}": v for k, v in ind.items()},
                           "days": len(report), "first": f"{report.index[0]:%Y-%m-%d}",
                           "last": f"{report.index[-1]:%Y-%m-%d}", "ffr": metrics["1day.ffr"]}).to_string())
