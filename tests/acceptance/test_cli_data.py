"""`qroll data info|dump` and `qroll cache info|clear`, run in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from qroll.data.qlib_bin import QlibBinSource
from qroll.data.synthetic import SyntheticMarket
from tests.conftest import shared_dataset

SMALL = "synthetic://?instruments=12&start=2019-01-01&end=2019-12-31&seed=4"


def qroll_cli(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["--home", str(home)] if home else []
    return subprocess.run([sys.executable, "-m", "qroll", *prefix, *args], capture_output=True, text=True,
                          timeout=300)


def test_data_info_on_real_qlib_data():
    path = shared_dataset("cn_csi300", "calendars/day.txt")
    res = qroll_cli("data", "info", f"qlib://{path}")
    assert res.returncode == 0, res.stderr
    assert "2010-01-04..2026-05-08, 3966 trading days" in res.stdout
    assert "change, close, factor, high, low, open, volume" in res.stdout
    # csi300 lists 789 names of which 38 have no data.
    row = next(line for line in res.stdout.splitlines() if " csi300 " in line)
    assert "751" in row and "38" in row


def test_data_dump_round_trips_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "qlib_data"
    res = qroll_cli("data", "dump", SMALL, str(out))
    assert res.returncode == 0, res.stderr
    dumped, original = QlibBinSource(out), SyntheticMarket(SMALL)
    symbols = list(original.instruments("all"))
    assert list(dumped.instruments("all")) == symbols
    a = dumped.load(["close"], symbols)["close"].to_numpy()
    b = original.load(["close"], symbols)["close"].to_numpy()
    np.testing.assert_array_equal(a, b)
    res = qroll_cli("data", "dump", SMALL, str(out))
    assert res.returncode == 2 and "--overwrite" in res.stderr and res.stderr.count("\n") == 1
    assert qroll_cli("data", "dump", SMALL, str(out), "--overwrite").returncode == 0


def test_data_errors_are_one_line(tmp_path):
    for args, text in [(("data", "info", f"qlib://{tmp_path}/none"), "does not exist"),
                       (("data", "info", "ftp://x"), "unknown scheme"),
                       (("data", "info", f"table://{tmp_path}/p.csv"), "p.csv")]:
        res = qroll_cli(*args)
        assert res.returncode == 2 and text in res.stderr and res.stderr.count("\n") == 1, res.stderr


def test_cache_info_and_clear(tmp_path):
    home = tmp_path / "home"
    assert "is empty" in qroll_cli("cache", "info", home=home).stdout
    code = f"from qroll import Alpha158; Alpha158(instruments='all', source={SMALL!r}).fetch(data_key='raw')"
    env_run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "QROLL_HOME": str(home)})
    assert env_run.returncode == 0, env_run.stderr
    info = qroll_cli("cache", "info", home=home).stdout
    assert SMALL in info and "159" in info  # 158 features + LABEL0
    assert "removed 1 feature-cache entry" in qroll_cli("cache", "clear", home=home).stdout
    assert "is empty" in qroll_cli("cache", "info", home=home).stdout
