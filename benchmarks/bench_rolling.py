"""The whole rolling experiment, Qlib 0.9.7 against qroll, side by side in one run.

Run from the repository root (``make bench-rolling``; needs ``.venv-qlib``, see ``make oracle``)::

    .venv/bin/python benchmarks/bench_rolling.py [--qlib-tracking file|sqlite]

One task on ``../shared/data/qlib_synth300`` (300 instruments, 2008-2020): Qlib's default
``Alpha158`` handler, ``LGBModel`` with the same LightGBM parameters, ``SignalRecord`` +
``SigAnaRecord``, rolled by ``RollingGen(step=250, rtype="sliding", trunc_days=3)`` into 5 windows
(test 2017-2020). Each side runs generate → ``TrainerR`` → ``RecorderCollector`` with
``RollingGroup`` in its own fresh process (qroll with an empty cache), with ``lightgbm.train``
wrapped by the same timer. Measured: total time, time inside the LightGBM fits, peak RSS
(``ru_maxrss``; Qlib's loader processes too) and the merged signal's IC, ICIR, Rank IC and Rank
ICIR over the whole test span, computed here with one formula for both sides.

Results print as a table and are written to ``benchmarks/results/rolling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

T_PROCESS = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
QLIB_PYTHON = ROOT / ".venv-qlib" / "bin" / "python"
QLIB_SIDE = ROOT / "benchmarks" / "qlib_side" / "rolling_flow.py"
PROVIDER = ROOT.parent / "shared" / "data" / "qlib_synth300"

LGB_PARAMS: dict[str, Any] = {
    "loss": "mse", "learning_rate": 0.2, "num_leaves": 64, "max_depth": 8, "colsample_bytree": 0.8879,
    "subsample": 0.8789, "lambda_l1": 205.6999, "lambda_l2": 580.9768, "num_threads": 2,
    "early_stopping_rounds": 50, "num_boost_round": 1000, "seed": 0,
}
# Qlib 0.9.7's TimeAdjuster.truncate asserts the truncated day is after the calendar's first day,
# so a train segment starting on 2008-01-01 (day 0) crashes RollingGen(trunc_days=3): start on day 1.
SEGMENTS = {"train": ["2008-01-02", "2014-12-31"], "valid": ["2015-01-01", "2016-12-31"],
            "test": ["2017-01-01", "2020-12-31"]}
ROLLING = {"step": 250, "rtype": "sliding", "trunc_days": 3}
TASK: dict[str, Any] = {
    "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt", "kwargs": LGB_PARAMS},
    "dataset": {
        "class": "DatasetH", "module_path": "qlib.data.dataset",
        "kwargs": {
            "handler": {
                "class": "Alpha158", "module_path": "qlib.contrib.data.handler",
                "kwargs": {"instruments": "synth300", "start_time": "2008-01-01", "end_time": "2020-12-31",
                           "fit_start_time": "<dataset.kwargs.segments.train.0>",
                           "fit_end_time": "<dataset.kwargs.segments.train.1>"},
            },
            "segments": SEGMENTS,
        },
    },
    "record": [
        {"class": "SignalRecord", "module_path": "qlib.workflow.record_temp",
         "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}},
        {"class": "SigAnaRecord", "module_path": "qlib.workflow.record_temp", "kwargs": {}},
    ],
}


def qroll_flow(out_dir: str) -> None:
    """In this (fresh) process: qroll's generate → TrainerR → RecorderCollector, timed like Qlib's side."""
    out = Path(out_dir)
    os.environ["QROLL_HOME"] = str(out / "home")  # an empty feature cache: the first-time cost
    import lightgbm as lgb

    fits: list[dict[str, Any]] = []
    original_train = lgb.train

    def timed_train(params: dict[str, Any], train_set: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        booster = original_train(params, train_set, *args, **kwargs)
        fits.append({
            "seconds": time.perf_counter() - started, "params": dict(params),
            "num_boost_round": kwargs.get("num_boost_round"), "valid_names": kwargs.get("valid_names"),
            "rows": train_set.num_data(), "features": train_set.num_feature(),
            "best_iteration": booster.best_iteration, "trees": booster.num_trees(),
        })
        return booster

    lgb.train = timed_train  # qroll's LGBModel looks lgb.train up at call time, as Qlib's does

    from qroll import RecorderCollector, RollingGroup
    from qroll.collect.collector import rolling_key
    from qroll.experiment import RollingExperiment
    from qroll.run_config import RunConfig

    config = RunConfig.from_dict({
        "experiment": "rolling_bench", "data": f"qlib://{PROVIDER}",
        "tracking": f"sqlite:///{out}/mlflow.db", "rolling": ROLLING, "tasks": [TASK],
    })
    t_setup = time.perf_counter()
    run = RollingExperiment(config)  # opens (creates) the SQLite store: outside "total", as qlib.init is
    t0 = time.perf_counter()
    tasks = run.tasks()
    t1 = time.perf_counter()
    run.train()
    t2 = time.perf_counter()
    collected = RecorderCollector(
        run.experiment, process_list=[RollingGroup()], rec_key_func=rolling_key,
        artifacts_path={"pred": "pred.pkl", "label": "label.pkl"},
    )()
    t3 = time.perf_counter()
    (pred,) = collected["pred"].values()
    (label,) = collected["label"].values()
    _frame(pred).to_parquet(out / "pred.parquet")
    _frame(label).to_parquet(out / "label.parquet")
    windows = [
        {**{k: [str(d)[:10] if d is not None else None for d in v]
            for k, v in t["dataset"]["kwargs"]["segments"].items()},
         "handler_end": str(t["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"])[:10]}
        for t in tasks
    ]
    (out / "windows.json").write_text(json.dumps(windows, indent=2))
    (out / "timing.json").write_text(json.dumps({
        "setup_seconds": t0 - t_setup, "generate_seconds": t1 - t0, "train_seconds": t2 - t1,
        "collect_seconds": t3 - t2,
        "total_seconds": t3 - t0, "process_seconds": time.perf_counter() - T_PROCESS,
        "fit_seconds": sum(f["seconds"] for f in fits), "fits": fits,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "children_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "tracking": "sqlite",
    }, indent=2, default=str))


def _frame(obj: pd.Series | pd.DataFrame) -> pd.DataFrame:
    return obj.to_frame() if isinstance(obj, pd.Series) else obj


def signal_quality(pred: pd.DataFrame, label: pd.DataFrame) -> dict[str, float]:
    """IC, ICIR, Rank IC and Rank ICIR of the merged signal, one formula for both sides.

    Per test day: Pearson (IC) and Spearman (Rank IC) correlation of the score and the raw label over
    the instruments that have both; the ICIR is the mean daily IC over its standard deviation.
    """
    df = pd.DataFrame({"pred": pred.iloc[:, 0], "label": label.iloc[:, 0].reindex(pred.index)}).dropna()
    by_day = df.groupby(level="datetime")
    ic = by_day.apply(lambda d: d["pred"].corr(d["label"]))
    ric = by_day.apply(lambda d: d["pred"].corr(d["label"], method="spearman"))
    return {"days": int(ic.notna().sum()), "rows": len(df), "IC": float(ic.mean()),
            "ICIR": float(ic.mean() / ic.std()), "Rank IC": float(ric.mean()),
            "Rank ICIR": float(ric.mean() / ric.std())}


def run_side(cmd: list[str], out: Path, log: Path, cwd: Path = ROOT) -> dict[str, Any]:
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, text=True)
    if proc.returncode:
        sys.exit(f"{cmd[0]} failed ({proc.returncode}); its log:\n" + log.read_text()[-4000:])
    timing = json.loads((out / "timing.json").read_text())
    pred = pd.read_parquet(out / "pred.parquet")
    label = pd.read_parquet(out / "label.parquet")
    timing["windows"] = json.loads((out / "windows.json").read_text())
    timing["signal"] = signal_quality(pred, label)
    timing["outside_fit_share"] = 1 - timing["fit_seconds"] / timing["total_seconds"]
    timing["pred"], timing["label"] = pred, label
    return timing


def _segments(windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The handler's end differs on purpose for the open last window (qroll: None, Qlib 0.9.7: the
    # template's end; benchmarks/README.md), and both load to the calendar's end here.
    return [{k: v for k, v in w.items() if k != "handler_end"} for w in windows]


def lgb_params_seen(fits: list[dict[str, Any]]) -> list[Any]:
    """What lightgbm.train received, once per distinct call shape."""
    seen: list[Any] = []
    for f in fits:
        shape = {k: f[k] for k in ("params", "num_boost_round", "valid_names")}
        if shape not in seen:
            seen.append(shape)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qlib-tracking", choices=("file", "sqlite"), default="file",
                        help="Qlib's MLflow store: its default file store, or SQLite as qroll uses")
    args = parser.parse_args()
    if not QLIB_PYTHON.exists():
        sys.exit(f"Qlib's venv is missing: run `make oracle` first (expected {QLIB_PYTHON})")
    if not (PROVIDER / "calendars" / "day.txt").exists():
        sys.exit(f"the benchmark data is missing: expected {PROVIDER}")

    with tempfile.TemporaryDirectory(prefix="qroll-bench-rolling-") as tmp_name:
        tmp = Path(tmp_name)
        spec = tmp / "spec.json"
        spec.write_text(json.dumps({"provider": str(PROVIDER), "task": TASK, "rolling": ROLLING,
                                    "tracking": args.qlib_tracking}))
        print("Qlib 0.9.7 ...", flush=True)
        # In the temporary folder: Qlib 0.9.7 creates its MLflow "filelock" at a path relative to
        # the working directory (expm.py strips the store path's leading "/").
        qlib = run_side([str(QLIB_PYTHON), str(QLIB_SIDE), str(spec), str(tmp / "qlib")], tmp / "qlib",
                        tmp / "qlib.log", cwd=tmp)
        print("qroll ...", flush=True)
        (tmp / "qroll").mkdir()
        code = ("import sys; sys.path.insert(0, 'benchmarks'); from bench_rolling import qroll_flow; "
                f"qroll_flow({str(tmp / 'qroll')!r})")
        ours = run_side([sys.executable, "-c", code], tmp / "qroll", tmp / "qroll.log")

    common = qlib["pred"].index.intersection(ours["pred"].index)
    label_diff = (qlib["label"].iloc[:, 0].reindex(common) - ours["label"].iloc[:, 0].reindex(common)).abs()
    pred_corr = float(np.corrcoef(qlib["pred"].iloc[:, 0].reindex(common),
                                  ours["pred"].iloc[:, 0].reindex(common))[0, 1])
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "python": sys.version.split()[0],
        "setup": {"data": str(PROVIDER), "task": TASK, "rolling": ROLLING,
                  "qlib_tracking": args.qlib_tracking},
        "same_windows": _segments(qlib["windows"]) == _segments(ours["windows"]),
        "handler_end": {"qlib": [w["handler_end"] for w in qlib["windows"]],
                        "qroll": [w["handler_end"] for w in ours["windows"]]},
        "same_lgb_params": lgb_params_seen(qlib["fits"]) == lgb_params_seen(ours["fits"]),
        "lgb_calls": {"qlib": lgb_params_seen(qlib["fits"]), "qroll": lgb_params_seen(ours["fits"])},
        "merged_rows": {"qlib": len(qlib["pred"]), "qroll": len(ours["pred"]), "common": len(common)},
        "label_max_abs_diff": float(label_diff.max()),
        "pred_correlation": pred_corr,
    }
    for name, side in (("qlib", qlib), ("qroll", ours)):
        results[name] = {k: v for k, v in side.items() if k not in ("pred", "label")}
    q, r = results["qlib"], results["qroll"]
    qlib_peak = max(q["peak_rss_mib"], q["children_peak_rss_mib"])
    results["ratios"] = {
        "total_qlib_over_qroll": q["total_seconds"] / r["total_seconds"],
        "fit_qlib_over_qroll": q["fit_seconds"] / r["fit_seconds"],
        "outside_fit_qlib_over_qroll": (q["total_seconds"] - q["fit_seconds"])
        / (r["total_seconds"] - r["fit_seconds"]),
        "qroll_outside_fit_share": r["outside_fit_share"],
        "peak_rss_qroll_over_qlib": r["peak_rss_mib"] / qlib_peak,
        "peak_rss_qroll_over_qlib_plus_children": r["peak_rss_mib"]
        / (q["peak_rss_mib"] + q["children_peak_rss_mib"]),
    }
    out = ROOT / "benchmarks" / "results" / "rolling.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    report(results)


def report(res: dict[str, Any]) -> None:
    q, r, x = res["qlib"], res["qroll"], res["ratios"]
    print(f"\nRolling experiment on qlib_synth300, RollingGen(250, sliding, trunc_days=3), {res['machine']}")
    print("windows (train | valid | test):")
    for w in r["windows"]:
        print(f"  {w['train'][0]}..{w['train'][1]} | {w['valid'][0]}..{w['valid'][1]} | "
              f"{w['test'][0]}..{w['test'][1]}  handler end {w['handler_end']}")
    print(f"handler end, Qlib: {res['handler_end']['qlib']}, qroll: {res['handler_end']['qroll']}")
    print(f"same segments on both sides: {res['same_windows']}; same lightgbm.train arguments: "
          f"{res['same_lgb_params']}")
    rows = [
        ("generate (s)", "generate_seconds", ".2f"), ("train (s)", "train_seconds", ".1f"),
        ("collect (s)", "collect_seconds", ".2f"), ("total (s)", "total_seconds", ".1f"),
        ("inside lightgbm.train (s)", "fit_seconds", ".1f"),
        ("outside the fits (share)", "outside_fit_share", ".1%"),
        ("whole process (s)", "process_seconds", ".1f"), ("peak RSS (MiB)", "peak_rss_mib", ",.0f"),
        ("children peak RSS (MiB)", "children_peak_rss_mib", ",.0f"),
    ]
    print(f"{'':32}{'Qlib 0.9.7':>14}{'qroll':>14}")
    for label, key, fmt in rows:
        print(f"{label:32}{format(q[key], fmt):>14}{format(r[key], fmt):>14}")
    for key in ("IC", "ICIR", "Rank IC", "Rank ICIR"):
        print(f"{'merged ' + key:32}{q['signal'][key]:>14.4f}{r['signal'][key]:>14.4f}")
    print(f"{'fits (best iteration)':32}{str([f['best_iteration'] for f in q['fits']]):>14} "
          f"{str([f['best_iteration'] for f in r['fits']])}")
    print(f"total Qlib / qroll: {x['total_qlib_over_qroll']:.2f}x (target >= 4); "
          f"qroll outside the fits: {x['qroll_outside_fit_share']:.1%} (target <= 10 %); "
          f"peak RSS qroll / Qlib: {x['peak_rss_qroll_over_qlib']:.2f} (target <= 0.5)")
    print(f"labels equal up to {res['label_max_abs_diff']:.3g}; corr(pred Qlib, pred qroll) = "
          f"{res['pred_correlation']:.4f}")


if __name__ == "__main__":
    main()
