"""Daily portfolio backtest: qroll's ``backtest_daily`` against Qlib 0.9.7's, side by side in one run.

Run from the repository root (``make bench-backtest``; needs ``.venv-qlib``, or set
``QROLL_QLIB_PYTHON`` to another Qlib 0.9.7 interpreter)::

    .venv/bin/python benchmarks/bench_backtest.py [--repeat 3]

The backtest: ``../shared/data/cn_csi300`` (real A-shares, the CSI300 members), 2019-01-02..2020-12-30
(487 trading days), TopkDropout topk 50 / n_drop 5, close deal price, limit thresholds
``$change >= 9.5`` / ``$change <= -9.5`` (this data's ``change`` is in percent), Qlib's standard
costs (open 0.0005, close 0.0015, min 5), benchmark SH000300, account 1e8. The pred is the one of
``reference/qlib_backtest.md`` §8 "Inputs" (``score = -(c_d / c_{d-5} - 1)`` over each member's
spans), built once here and handed to both sides as a parquet file.

Each side runs ``--repeat`` times, each time in a fresh process (no in-process cache carries over);
the best time counts. Timed: the ``backtest_daily`` call itself, which opens the data, loads the
quotes and the benchmark and runs every day. Not timed: interpreter start, reading the pred; the
imports and (Qlib) ``qlib.init`` are timed on their own clocks. Then every report column and every
day's positions are compared. Results print as a table and go to ``benchmarks/results/backtest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
QLIB_PYTHON = Path(os.environ.get("QROLL_QLIB_PYTHON", ROOT / ".venv-qlib" / "bin" / "python"))
QLIB_SIDE = ROOT / "benchmarks" / "qlib_side" / "backtest.py"
CSI300 = ROOT.parent / "shared" / "data" / "cn_csi300"
START, END = "2019-01-02", "2020-12-30"
PRED_START = "2018-12-03"  # a month ahead, so the first step has a signal
EXCHANGE_KWARGS = {"limit_threshold": ["$change >= 9.5", "$change <= -9.5"], "deal_price": "close",
                   "open_cost": 0.0005, "close_cost": 0.0015, "min_cost": 5}
MONEY = ["account", "total_turnover", "total_cost", "value", "cash"]


def build_pred(provider: Path, market: str, start: str, end: str) -> pd.DataFrame:
    """Reference §8 "Inputs": ``-(c_d / c_{d-5} - 1)`` on each member's spans in [start, end], NaN dropped."""
    from qroll.data.qlib_bin import QlibBinSource

    src = QlibBinSource(provider)
    members = src.instruments(market)
    close = src.load(["close"], list(members))["close"].astype(np.float64)
    mask = np.zeros(close.shape, dtype=bool)
    for j, code in enumerate(close.columns):
        for a, b in members[code]:
            mask[:, j] |= (close.index >= a) & (close.index <= b)
    score = (-(close / close.shift(5) - 1)).where(mask).loc[pd.Timestamp(start):pd.Timestamp(end)]
    long = score.stack(future_stack=True).dropna()
    long.index = long.index.set_names(["datetime", "instrument"])
    return long.sort_index().to_frame("score")


def qroll_run(provider: str, pred_path: str, out: str) -> dict[str, float]:
    """In this process: qroll's backtest, timed as Qlib's side is (see the module docstring)."""
    pred = pd.read_parquet(pred_path)
    t0 = time.perf_counter()
    from qroll.backtest import backtest_daily

    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    strategy = {"class": "TopkDropoutStrategy", "kwargs": {"signal": pred, "topk": 50, "n_drop": 5}}
    report, positions = backtest_daily(START, END, strategy, benchmark="SH000300",
                                       exchange_kwargs=EXCHANGE_KWARGS, source=f"qlib://{provider}")
    seconds = time.perf_counter() - t0
    report.to_parquet(Path(out) / "report.parquet")
    (Path(out) / "positions.json").write_text(json.dumps(
        {f"{day:%Y-%m-%d}": p.get_stock_amount_dict() for day, p in positions.items()}))
    return {"seconds": seconds, "import_seconds": t_import, "days": len(report),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def qroll_subprocess(provider: Path, pred: Path, out: Path) -> dict[str, float]:
    out.mkdir(parents=True, exist_ok=True)
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); "
        "from bench_backtest import qroll_run; "
        f"print(json.dumps(qroll_run({str(provider)!r}, {str(pred)!r}, {str(out)!r})))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"qroll's side failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def qlib_subprocess(provider: Path, pred: Path, out: Path) -> dict[str, float]:
    cmd = [str(QLIB_PYTHON), str(QLIB_SIDE), str(provider), str(pred), START, END, str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"Qlib's side failed:\n{proc.stderr[-3000:]}")
    return json.loads((out / "timing.json").read_text())


def compare(ours_dir: Path, theirs_dir: Path) -> dict[str, object]:
    """Every report column (relative difference |a-b| / max(|a|, |b|)) and every day's positions."""
    ours = pd.read_parquet(ours_dir / "report.parquet")
    theirs = pd.read_parquet(theirs_dir / "report.parquet")[list(ours.columns)]
    theirs.index = pd.DatetimeIndex(theirs.index, name="datetime")
    same_days = ours.index.equals(theirs.index)
    a, b = ours.to_numpy(np.float64), theirs.reindex(ours.index).to_numpy(np.float64)
    diff = np.abs(a - b)
    scale = np.maximum(np.abs(a), np.abs(b))
    rel = np.where(scale > 0, diff / np.where(scale > 0, scale, 1.0), 0.0)
    per_col = {c: {"max_rel_diff": float(np.nanmax(rel[:, j])), "max_abs_diff": float(np.nanmax(diff[:, j]))}
               for j, c in enumerate(ours.columns)}
    # The oracle test's tolerances: money to 1e-12 of the largest account, rates to 1e-12 absolute.
    acc = float(np.abs(a[:, list(ours.columns).index("account")]).max())
    agree = same_days and all(
        per_col[c]["max_abs_diff"] <= (1e-12 * acc if c in MONEY else 1e-12) for c in ours.columns)
    pos_a = json.loads((ours_dir / "positions.json").read_text())
    pos_b = json.loads((theirs_dir / "positions.json").read_text())
    same_names = sum(sorted(pos_a[d]) == sorted(pos_b.get(d, {})) for d in pos_a)
    same_amounts = sum(
        sorted(pos_a[d]) == sorted(pos_b.get(d, {}))
        and bool(np.allclose([pos_a[d][k] for k in sorted(pos_a[d])], [pos_b[d][k] for k in sorted(pos_a[d])],
                             rtol=1e-12, atol=0))
        for d in pos_a)
    return {"days_qroll": len(ours), "days_qlib": len(theirs), "same_days": same_days,
            "columns": per_col,
            # Relative differences only mean something for money; rates near 0 (a 1e-17 return) get
            # large relative but ~1e-15 absolute differences.
            "max_rel_diff_money": max(per_col[c]["max_rel_diff"] for c in MONEY),
            "max_abs_diff_rates": max(per_col[c]["max_abs_diff"] for c in ours.columns if c not in MONEY),
            "nan_mismatches": int((np.isnan(a) != np.isnan(b)).sum()), "agree_within_oracle_tolerance": agree,
            "days_same_instruments": same_names, "days_same_amounts": same_amounts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not QLIB_PYTHON.exists():
        sys.exit(f"Qlib's venv is missing: run `make .venv-qlib/.installed` or set QROLL_QLIB_PYTHON "
                 f"(expected {QLIB_PYTHON})")
    if not (CSI300 / "calendars" / "day.txt").exists():
        sys.exit(f"the CSI300 data is missing: expected {CSI300}")

    results: dict[str, object] = {
        "machine": f"{os.cpu_count()} cores", "python": sys.version.split()[0], "data": str(CSI300),
        "backtest": {"start": START, "end": END, "market": "csi300", "topk": 50, "n_drop": 5,
                     "benchmark": "SH000300", "exchange_kwargs": EXCHANGE_KWARGS},
        "timed": "the backtest_daily call (opening the data, loading quotes and benchmark, every day); "
                 "fresh process per repeat; best of repeats; imports and qlib.init on their own clocks",
    }
    with tempfile.TemporaryDirectory(prefix="qroll-bench-bt-") as tmp_name:
        tmp = Path(tmp_name)
        pred = build_pred(CSI300, "csi300", PRED_START, END)
        pred_path = tmp / "pred.parquet"
        pred.to_parquet(pred_path)
        results["pred_rows"] = len(pred)
        qlib_runs, qroll_runs = [], []
        for i in range(args.repeat):  # interleaved, so a load spike on the machine hits both sides
            qlib_runs.append(qlib_subprocess(CSI300, pred_path, tmp / f"qlib{i}"))
            qroll_runs.append(qroll_subprocess(CSI300, pred_path, tmp / f"qroll{i}"))
        results["fidelity"] = compare(tmp / "qroll0", tmp / "qlib0")

    best_qlib = min(qlib_runs, key=lambda r: r["seconds"])
    best_qroll = min(qroll_runs, key=lambda r: r["seconds"])
    results["qlib"] = {"best": best_qlib, "runs_seconds": [r["seconds"] for r in qlib_runs],
                       "init_seconds": [r["init_seconds"] for r in qlib_runs]}
    results["qroll"] = {"best": best_qroll, "runs_seconds": [r["seconds"] for r in qroll_runs]}
    ratio = best_qroll["seconds"] / best_qlib["seconds"]
    results["ratio_qroll_over_qlib"] = ratio
    results["target_met"] = ratio <= 1 / 20

    out = ROOT / "benchmarks" / "results" / "backtest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    f = results["fidelity"]
    assert isinstance(f, dict)
    print(f"backtest_daily, CSI300 {START}..{END} ({best_qroll['days']} days), topk 50 n_drop 5, "
          f"{results['machine']}, best of {args.repeat} fresh processes")
    print(f"  Qlib 0.9.7  {best_qlib['seconds']:7.2f} s   (qlib.init {best_qlib['init_seconds']:.2f} s, "
          f"imports {best_qlib['import_seconds']:.2f} s, peak RSS {best_qlib['peak_rss_mib']:.0f} MiB)")
    print(f"  qroll       {best_qroll['seconds']:7.2f} s   (imports {best_qroll['import_seconds']:.2f} s, "
          f"peak RSS {best_qroll['peak_rss_mib']:.0f} MiB)")
    print(f"  qroll / Qlib: 1/{1 / ratio:.1f} (target 1/20: {'met' if results['target_met'] else 'missed'})")
    print(f"  report: {f['days_qroll']} days, money max rel diff {f['max_rel_diff_money']:.3g}, "
          f"rates max abs diff {f['max_abs_diff_rates']:.3g}, NaN mismatches "
          f"{f['nan_mismatches']}, within the oracle's tolerance: {f['agree_within_oracle_tolerance']}; "
          f"positions: same instruments {f['days_same_instruments']} / same amounts {f['days_same_amounts']} "
          f"of {f['days_qroll']} days")


if __name__ == "__main__":
    main()
