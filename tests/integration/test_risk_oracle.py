"""risk_analysis and indicator_analysis against Qlib 0.9.7's, run in Qlib's own venv (``.venv-qlib``).

The inputs travel as JSON (floats written with ``repr`` round-trip exactly), not pickles, so the two
venvs may hold different pandas versions.
"""

from __future__ import annotations

import json
import math
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
from qlib_venv import need_qlib

from qroll import indicator_analysis, risk_analysis

# Executed by Qlib's python: reads the cases on stdin, writes Qlib's answers on stdout.
ORACLE = """
import json, sys, warnings
import numpy as np, pandas as pd
warnings.simplefilter("ignore")
from qlib.contrib.evaluate import indicator_analysis, risk_analysis
cases = json.load(sys.stdin)
out = {}
for c in cases["risk"]:
    r = pd.Series(c["r"], dtype=float)
    with np.errstate(all="ignore"):
        out[c["name"]] = risk_analysis(r, N=c["N"], freq=c["freq"], mode=c["mode"])["risk"].to_dict()
for c in cases["indicator"]:
    df = pd.DataFrame(c["df"])
    with np.errstate(all="ignore"):
        out[c["name"]] = indicator_analysis(df, method=c["method"])["value"].to_dict()
json.dump(out, sys.stdout)
"""


def make_cases() -> dict[str, list[dict]]:
    rng = np.random.default_rng(20240610)
    risk = []
    for i in range(6):
        r = rng.normal(rng.uniform(-1e-3, 1e-3), rng.uniform(1e-3, 3e-2), int(rng.integers(20, 400)))
        if i % 2:  # NaN gaps inside the series (not at the end, where "product" gives NaN in both)
            r[rng.choice(len(r) - 1, size=5, replace=False)] = np.nan
        for mode in ("sum", "product"):
            for n, freq in ((None, "day"), (None, "week"), (None, "5min"), (252, None)):
                risk.append({"name": f"risk-{i}-{mode}-{n}-{freq}", "r": [float(v) for v in r],
                             "N": n, "freq": freq, "mode": mode})
    indicator = []
    for i in range(3):
        days = 60
        count = rng.integers(0, 12, days)
        ffr = np.where(count > 0, rng.uniform(0.3, 1.0, days), np.nan)
        ffr[rng.choice(days, size=3, replace=False)] = np.nan  # a NaN with a nonzero weight
        df = {"ffr": ffr, "pa": np.where(count > 0, rng.normal(0, 0.01, days), np.nan),
              "pos": np.where(count > 0, rng.uniform(0, 1, days), np.nan),
              "deal_amount": count * rng.uniform(-1e4, 1e4, days), "value": count * rng.uniform(-1e6, 1e6, days),
              "count": count}
        for method in ("mean", "amount_weighted", "value_weighted"):
            indicator.append({"name": f"ind-{i}-{method}", "method": method,
                              "df": {k: [None if (isinstance(v, float) and math.isnan(v)) else v
                                         for v in np.asarray(col).tolist()] for k, col in df.items()}})
    return {"risk": risk, "indicator": indicator}


def close(got: float, want: float) -> bool:
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    return abs(got - want) <= 1e-12 * max(1.0, abs(want))


@pytest.mark.oracle
def test_risk_and_indicator_analysis_match_qlib():
    cases = make_cases()
    proc = subprocess.run([str(need_qlib()), "-c", ORACLE], input=json.dumps(cases), capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = json.loads(proc.stdout)
    different = []
    for c in cases["risk"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # no case passes N with freq; belt and braces
            got = risk_analysis(pd.Series(c["r"], dtype=float), N=c["N"], freq=c["freq"], mode=c["mode"])
        want = expected[c["name"]]
        assert list(got.index) == list(want)
        different += [f"{c['name']}.{k}: {got.loc[k, 'risk']!r} vs {v!r}" for k, v in want.items()
                      if not close(float(got.loc[k, "risk"]), float(v))]
    for c in cases["indicator"]:
        got = indicator_analysis(pd.DataFrame(c["df"]).astype({"count": int}), method=c["method"])
        want = expected[c["name"]]
        assert list(got.index) == list(want)
        different += [f"{c['name']}.{k}: {got.loc[k, 'value']!r} vs {v!r}" for k, v in want.items()
                      if not close(float(got.loc[k, "value"]), float(v))]
    assert different == [], different[:10]
