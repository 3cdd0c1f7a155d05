"""qroll's backtest_daily against Qlib 0.9.7's on ``qlib_edge``, run in Qlib's own venv (``.venv-qlib``).

Three parameter sets cover the strategy's options (n_drop, hold_thresh, only_tradable,
forbid_all_trade_at_limit, risk_degree), deal price close and open, min cost 0, impact cost and
limit thresholds as a pair of expressions. Inputs and answers travel as JSON (floats round-trip
exactly), so the two venvs may hold different pandas versions.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from backtest_examples import example_bench, example_pred
from conftest import shared_dataset

from qroll.backtest import REPORT_COLUMNS, backtest_daily
from qroll.data.qlib_bin import QlibBinSource

ROOT = Path(__file__).resolve().parents[2]
QLIB_PYTHON = Path(os.environ.get("QROLL_QLIB_PYTHON", ROOT / ".venv-qlib" / "bin" / "python"))
START, END = "2008-01-15", "2009-07-10"
STANDARD = {"limit_threshold": 0.095, "deal_price": "close", "open_cost": 0.0005, "close_cost": 0.0015,
            "min_cost": 5}
CASES = [
    {"strategy": {"topk": 3, "n_drop": 1}, "exchange": STANDARD},
    {"strategy": {"topk": 4, "n_drop": 2, "hold_thresh": 3, "only_tradable": True},
     "exchange": {**STANDARD, "deal_price": "open", "min_cost": 0}},
    {"strategy": {"topk": 5, "n_drop": 1, "forbid_all_trade_at_limit": False, "risk_degree": 0.8},
     "exchange": {**STANDARD, "impact_cost": 0.01,
                  "limit_threshold": ["$close/Ref($close,1)-1 >= 0.05", "$close/Ref($close,1)-1 <= -0.05"]}},
]

# Executed by Qlib's python: reads the inputs on stdin, writes Qlib's reports and positions on stdout.
ORACLE = """
import json, sys, warnings
warnings.simplefilter("ignore")
import pandas as pd, qlib
from qlib.contrib.evaluate import backtest_daily
from qlib.contrib.strategy import TopkDropoutStrategy
inp = json.load(sys.stdin)
qlib.init(provider_uri=inp["data"], region="cn", kernels=1)
pred = pd.DataFrame(inp["pred"], columns=["datetime", "instrument", "score"])
pred["datetime"] = pd.to_datetime(pred["datetime"])
pred = pred.set_index(["datetime", "instrument"]).sort_index()
bench = pd.Series(inp["bench"][1], index=pd.to_datetime(inp["bench"][0]))
out = []
for c in inp["cases"]:
    ex = dict(c["exchange"])
    if isinstance(ex["limit_threshold"], list):
        ex["limit_threshold"] = tuple(ex["limit_threshold"])  # Qlib takes only a tuple
    rep, pos = backtest_daily(inp["start"], inp["end"], TopkDropoutStrategy(signal=pred, **c["strategy"]),
                              benchmark=bench, exchange_kwargs=ex)
    out.append({"report": {k: rep[k].tolist() for k in rep.columns},
                "positions": [{k: v["amount"] for k, v in p.position.items() if isinstance(v, dict)}
                              for p in pos.values()]})
print(json.dumps(out))
"""


@pytest.mark.oracle
@pytest.mark.slow
def test_backtest_matches_qlib_on_edge_data() -> None:
    if not QLIB_PYTHON.exists():
        pytest.skip(f"Qlib's venv not found: expected {QLIB_PYTHON} (or set QROLL_QLIB_PYTHON)")
    src = QlibBinSource(shared_dataset("qlib_edge", "calendars/day.txt"))
    pred = example_pred(src, "edge", "2008-01-01", END)
    bench = example_bench(src, "edge", START, END)
    inp = {"data": str(src.root), "start": START, "end": END, "cases": CASES,
           "pred": [[f"{d:%Y-%m-%d}", c, v] for (d, c), v in pred["score"].items()],
           "bench": [[f"{d:%Y-%m-%d}" for d in bench.index], bench.tolist()]}
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run([str(QLIB_PYTHON), "-c", ORACLE], input=json.dumps(inp), capture_output=True,
                          text=True, timeout=300, check=False, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = json.loads(proc.stdout)
    money = ["account", "total_turnover", "total_cost", "value", "cash"]
    for case, want in zip(CASES, expected, strict=True):
        strategy = {"class": "TopkDropoutStrategy", "kwargs": {"signal": pred, **case["strategy"]}}
        report, positions = backtest_daily(START, END, strategy, benchmark=bench,
                                           exchange_kwargs=case["exchange"], source=src)
        qlib = pd.DataFrame(want["report"], index=report.index)[REPORT_COLUMNS]
        scale = float(report["account"].abs().max())
        # Money to 1e-12 of the account, rates to 1e-12 absolute (reference §9: Qlib's own set order
        # moves the last bits).
        assert float((report[money] - qlib[money]).abs().max().max()) <= 1e-12 * scale, case
        rates = [c for c in REPORT_COLUMNS if c not in money]
        assert float((report[rates] - qlib[rates]).abs().max().max()) <= 1e-12, case
        for day, want_pos in zip(report.index, want["positions"], strict=True):
            got = positions[day].get_stock_amount_dict()
            assert sorted(got) == sorted(want_pos), (case, day)
            assert np.allclose([got[k] for k in sorted(got)], [want_pos[k] for k in sorted(got)],
                               rtol=1e-12, atol=0), (case, day)
