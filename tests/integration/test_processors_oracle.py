"""qroll's processors against Qlib 0.9.7's, run in Qlib's own venv (``.venv-qlib``), bit for bit."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from qlib_venv import need_qlib

from qroll.data import processors as P

SCRIPT = Path(__file__).with_name("qlib_processor_oracle.py")
FIT = {"fit_start_time": "2015-01-01", "fit_end_time": "2015-03-31"}

CASES = [
    ("CSZScoreNorm", {"fields_group": "label"}),
    ("CSZScoreNorm", {"fields_group": "feature"}),
    ("CSZScoreNorm", {}),
    ("CSZScoreNorm", {"fields_group": "feature", "method": "robust"}),
    ("CSRankNorm", {"fields_group": "feature"}),
    ("ProcessInf", {}),
    ("CSZFillna", {"fields_group": "feature"}),
    ("Fillna", {}),
    ("Fillna", {"fields_group": "feature", "fill_value": -1}),
    ("ZScoreNorm", {**FIT, "fields_group": "feature"}),
    ("ZScoreNorm", FIT),
    ("RobustZScoreNorm", {**FIT, "fields_group": "feature"}),
    ("RobustZScoreNorm", {**FIT, "fields_group": "feature", "clip_outlier": False}),
    ("MinMaxNorm", {**FIT, "fields_group": "feature"}),
    ("DropnaLabel", {}),
    ("DropnaProcessor", {"fields_group": "feature"}),
    ("FilterCol", {"col_list": ["KMID", "ROC5"]}),
    ("DropCol", {"col_list": ["KMID", "ROC5"]}),
    ("TanhProcess", {}),
]


def make_frame(inf: float, seed: int = 0) -> pd.DataFrame:
    """Two column blocks (features, label) as Qlib's loader builds them; NaN, ±inf, ties, a constant."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-01", periods=120)
    idx = pd.MultiIndex.from_product([dates, [f"SH{600000 + i}" for i in range(80)]],
                                     names=["datetime", "instrument"])
    idx = idx[rng.random(len(idx)) > 0.1]
    names = ["KMID", "ROC5", "STD20", "CORD60", "RSQR5", "VSTD5", "CONST"]
    vals = rng.standard_normal((len(idx), 8)).astype(np.float32) * np.float32(0.37) + np.float32(1.1)
    vals[:, 3] = np.round(vals[:, 3], 1)
    draw = rng.random(vals.shape)
    vals[draw < 0.02] = np.nan
    vals[(draw > 0.02) & (draw < 0.02 + inf)] = np.inf
    vals[(draw > 0.02 + inf) & (draw < 0.02 + 2 * inf)] = -np.inf
    vals[:, 6] = 2.5
    feat = pd.DataFrame(vals[:, :7], index=idx, columns=pd.MultiIndex.from_tuples([("feature", n) for n in names]))
    label = pd.DataFrame(vals[:, 7:], index=idx, columns=pd.MultiIndex.from_tuples([("label", "LABEL0")]))
    return pd.concat([feat, label], axis=1)


@pytest.mark.oracle
@pytest.mark.parametrize("inf", [0.0, 0.002], ids=["finite", "with_inf"])
def test_processors_match_qlib_bit_for_bit(tmp_path, inf):
    qlib_python = need_qlib()
    frame = make_frame(inf)
    cases = [{"name": f"{i}-{c}", "class": c, "kwargs": k} for i, (c, k) in enumerate(CASES)]
    (tmp_path / "in.pkl").write_bytes(pickle.dumps(frame))
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    subprocess.run([str(qlib_python), str(SCRIPT), str(tmp_path / "in.pkl"), str(tmp_path / "out.pkl"),
                    str(tmp_path / "cases.json")], check=True, timeout=300, stdin=subprocess.DEVNULL)
    expected = pickle.loads((tmp_path / "out.pkl").read_bytes())
    different = []
    for case in cases:
        proc = getattr(P, case["class"])(**case["kwargs"])
        proc.fit(frame)
        got, want = proc(frame), expected[case["name"]]
        same = (got.index.equals(want.index) and got.columns.equals(want.columns)
                and list(got.dtypes) == list(want.dtypes)
                and np.array_equal(got.to_numpy(), want.to_numpy(), equal_nan=True))
        if not same:
            different.append(case["name"])
    assert different == [], f"differ from Qlib 0.9.7: {different} (python {sys.version_info[:2]})"
