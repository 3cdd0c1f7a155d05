"""`qroll update` after one new day, against Qlib 0.9.7's ``OnlineManager.routine``, side by side.

Run from the repository root (``make bench-online``; Qlib's side needs ``.venv-qlib``)::

    .venv/bin/python benchmarks/bench_online.py [--no-qlib] [--instruments 300]

The case: the synthetic market (300 instruments, 2008-2020, seed 0) in Qlib's layout, one task
(Qlib's ``Alpha158`` handler from 2015, ``LGBModel`` with the rolling benchmark's parameters,
``SignalRecord``), ``RollingGen(step=20, rtype="sliding", trunc_days=3)`` from a template whose
test starts 2020-06-01. The data directory is dumped up to 2020-07-23 and each side trains its
first windows (06-01 and 06-29). Then, each in a fresh process timed from outside:

1. **one new day, no window due**: 2020-07-24 is appended to the directory (as Qlib's collectors
   append), then ``qroll update CONFIG`` / Qlib's ``routine(2020-07-24)``;
2. **nothing new**: the same update again;
3. **one new day, one window due**: 2020-07-27 (the 20th trading day of the 06-29 window) is
   appended, then the update / routine, which trains the 07-27 window; its fit's own time
   (LightGBM) is taken out to compare with the target "one fit + 3 s".

Feature extension: the Alpha158 frame of the directory up to 07-23 is computed into an empty
feature cache (a full computation: what a recompute costs), 07-24 is appended, and the frame of
the grown directory is loaded from that cache in a fresh process (the extension, when the cache
grows by days; a recompute when it does not: the script reports what happened either way).

Qlib 0.9.7 works on its own copy of the directory, which gets a ``calendars/day_future.txt``: on
the 19th trading day of a window without one, Qlib's ``routine`` raises ``TypeError``
(``reference/qlib_online.md`` O2), so the no-window-due case could not run at all. Qlib's manager is
rebuilt from the store in each process (its pickle is not what a new day's process should
trust, O3), with ``TrainerR`` and its default MLflow file store.

On both sides ``lightgbm.train`` is wrapped by the same timer, so "a fit" means the same thing:
LightGBM's training call, not the features it was given.

Results print as a table and go to ``benchmarks/results/online.json`` (when a step fails, the
commands' output goes to ``benchmarks/results/online_log.txt``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_rolling import LGB_PARAMS  # the rolling benchmark's LightGBM, the same fit on both sides

ROOT = Path(__file__).resolve().parents[1]
QLIB_PYTHON = ROOT / ".venv-qlib" / "bin" / "python"
RESULTS = ROOT / "benchmarks" / "results" / "online.json"

FIRST, DAY_NOT_DUE, DAY_DUE = "2020-07-23", "2020-07-24", "2020-07-27"
TASK: dict[str, Any] = {
    "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt", "kwargs": LGB_PARAMS},
    "dataset": {
        "class": "DatasetH", "module_path": "qlib.data.dataset",
        "kwargs": {
            "handler": {
                "class": "Alpha158", "module_path": "qlib.contrib.data.handler",
                # The handler end lies past the data: later windows must read the new days (Qlib
                # 0.9.7 keeps a template's end for them, and would predict nothing, O9).
                "kwargs": {"instruments": "all", "start_time": "2015-01-01", "end_time": "2020-12-31",
                           "fit_start_time": "<dataset.kwargs.segments.train.0>",
                           "fit_end_time": "<dataset.kwargs.segments.train.1>"},
            },
            "segments": {"train": ["2015-06-01", "2019-06-28"], "valid": ["2019-07-01", "2020-05-22"],
                         "test": ["2020-06-01", FIRST]},
        },
    },
    "record": [{"class": "SignalRecord", "module_path": "qlib.workflow.record_temp",
                "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}}],
}
ROLLING = {"step": 20, "rtype": "sliding", "trunc_days": 3}
EXPERIMENT = "bench_online"


# -- qroll's side -------------------------------------------------------------------------------------


def market(instruments: int) -> Any:
    from qroll.data.synthetic import SyntheticMarket

    return SyntheticMarket(instruments=instruments, start="2008-01-01", end="2020-12-31", seed=0)


def timed(cmd: list[str], log: Path, cwd: Path = ROOT) -> tuple[float, str]:
    """Run ``cmd`` to completion; its wall time (seconds) and its output (which goes to ``log`` too)."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        shown = " ".join(cmd[:4])
        raise SystemExit(f"{shown} ... failed (exit {proc.returncode}); see {log}:\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout


def qroll_update(config: Path, home: Path, log: Path) -> dict[str, Any]:
    """``qroll update CONFIG`` in a fresh process (the command line's own ``main``, with LightGBM's
    ``train`` timed as on Qlib's side), timed from outside."""
    seconds, out = timed([sys.executable, __file__, "--qroll-update", str(home), str(config)], log)
    *lines, last = out.strip().splitlines()
    text = " ".join(" ".join(lines).split())
    inner = re.search(r"done in ([0-9.]+) s", text)
    trained = re.search(r"trained (\d+) (?:first windows|window\(s\) due)", text)
    return {"wall_seconds": seconds, "library_seconds": float(inner.group(1)) if inner else None,
            "trained": int(trained.group(1)) if trained else 0, **json.loads(last)}


def update_phase(home: str, config: str) -> None:
    """In a fresh process: ``qroll update`` as the command line runs it, LightGBM's fits timed."""
    fits = _time_lightgbm()
    from qroll.cli import main as qroll_main

    status = qroll_main(["--home", home, "update", config])
    print(json.dumps({"fit_seconds": sum(fits), "fits": len(fits)}))
    sys.exit(status)


def _time_lightgbm() -> list[float]:
    """Wrap ``lightgbm.train`` (looked up at call time by both sides' LGBModel) when LightGBM is
    first imported, so a process that never needs it does not pay its import (about 1 s) here;
    the list receives each fit's seconds."""
    import importlib.abc
    import importlib.util

    fits: list[float] = []

    def wrap(module: Any) -> None:
        original = module.train

        def timed_train(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            booster = original(*args, **kwargs)
            fits.append(time.perf_counter() - started)
            return booster

        module.train = timed_train

    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            if name != "lightgbm":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            run = spec.loader.exec_module

            def exec_module(module: Any) -> None:
                run(module)
                wrap(module)

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, Hook())
    return fits


def features_phase(directory: str, cache: str) -> None:
    """In a fresh process: Alpha158 + LABEL0 of the directory through the feature cache, timed."""
    from qroll.data.cache import FeatureCache
    from qroll.data.features import DEFAULT_LABEL, alpha158_config
    from qroll.data.qlib_bin import QlibBinSource

    store = FeatureCache(cache)
    source = QlibBinSource(directory)
    started = time.perf_counter()
    frame = store.load(source, "all", alpha158_config(), DEFAULT_LABEL)
    seconds = time.perf_counter() - started
    store.wait()
    # What the cache did (FeatureCache.counters, where this checkout has them): extended or computed.
    counters = getattr(store, "counters", None)
    stats = dataclasses.asdict(counters) if dataclasses.is_dataclass(counters) else None
    print(json.dumps({"seconds": seconds, "rows": len(frame), "stats": stats}, default=str))


def measure_features(market_obj: Any, tmp: Path, log: Path) -> dict[str, Any]:
    from qroll.data.qlib_append import append_qlib_bin
    from qroll.data.qlib_bin import dump_qlib_bin

    directory = dump_qlib_bin(market_obj, tmp / "features_data", end=FIRST)
    cache = tmp / "features_cache"
    args = [sys.executable, __file__, "--features", str(directory), str(cache)]
    _, out = timed(args, log)
    full = json.loads(out.strip().splitlines()[-1])
    append_qlib_bin(market_obj, directory, end=DAY_NOT_DUE)
    _, out = timed(args, log)
    grown = json.loads(out.strip().splitlines()[-1])
    return {"full_seconds": full["seconds"], "after_one_day_seconds": grown["seconds"],
            "rows": [full["rows"], grown["rows"]], "stats": grown["stats"]}


def qroll_side(market_obj: Any, tmp: Path, log: Path) -> dict[str, Any]:
    import yaml

    from qroll.data.qlib_append import append_qlib_bin
    from qroll.data.qlib_bin import dump_qlib_bin

    directory = dump_qlib_bin(market_obj, tmp / "qroll_data", end=FIRST)
    tracking = f"sqlite:///{tmp}/qroll_store/mlflow.db"
    config = tmp / "online.yaml"
    config.write_text(yaml.safe_dump({"experiment": EXPERIMENT, "data": f"qlib://{directory}",
                                      "tracking": tracking, "rolling": ROLLING, "tasks": [TASK],
                                      "backtest": None}))
    home = tmp / "qroll_home"
    out: dict[str, Any] = {"first": qroll_update(config, home, log)}
    append_qlib_bin(market_obj, directory, end=DAY_NOT_DUE)
    out["no_window_due"] = qroll_update(config, home, log)
    out["nothing_new"] = qroll_update(config, home, log)
    append_qlib_bin(market_obj, directory, end=DAY_DUE)
    out["window_due"] = qroll_update(config, home, log)
    return out


# -- Qlib's side (run by .venv-qlib's Python) ------------------------------------------------------------


def qlib_phase(spec_path: str) -> None:
    """In Qlib's venv: ``first`` trains the first windows, ``routine`` runs one routine; timing as JSON."""
    t_process = time.perf_counter()
    spec = json.loads(Path(spec_path).read_text())
    # MLflow >= 3.13 refuses a file store unless this is set; Qlib 0.9.7's default store is one.
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    fits = _time_lightgbm()
    import qlib
    from qlib.constant import REG_CN
    from qlib.model.trainer import TrainerR
    from qlib.workflow import R
    from qlib.workflow.online.manager import OnlineManager
    from qlib.workflow.online.strategy import RollingStrategy
    from qlib.workflow.task.gen import RollingGen

    t_init = time.perf_counter()
    qlib.init(provider_uri=spec["provider"], region=REG_CN,
              exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                           "kwargs": {"uri": spec["uri"], "default_exp_name": "Experiment"}})
    init = time.perf_counter() - t_init
    rolling = spec["rolling"]
    strategy = RollingStrategy(spec["experiment"], spec["task"],
                               RollingGen(step=rolling["step"], rtype=rolling["rtype"],
                                          trunc_days=rolling["trunc_days"]))
    manager = OnlineManager([strategy], trainer=TrainerR(), begin_time=spec["day"])
    t0 = time.perf_counter()
    if spec["phase"] == "first":
        manager.first_train()
    else:
        manager.routine(spec["day"])
    work = time.perf_counter() - t0
    runs = len(R.list_recorders(experiment_name=spec["experiment"]))
    print(json.dumps({"process_seconds": time.perf_counter() - t_process, "init_seconds": init,
                      "work_seconds": work, "fit_seconds": sum(fits), "fits": len(fits), "runs": runs}))


def qlib_side(market_obj: Any, tmp: Path, log: Path) -> dict[str, Any]:
    import pandas as pd

    from qroll.data.qlib_append import append_qlib_bin
    from qroll.data.qlib_bin import dump_qlib_bin

    directory = dump_qlib_bin(market_obj, tmp / "qlib_data", end=FIRST)
    # Qlib needs future days at a window's 19th day (O2); its day_future.txt is the whole calendar,
    # the data's days and the next business days to 2021.
    known = pd.DatetimeIndex(market_obj.calendar.days[market_obj.calendar.days <= FIRST])
    future = known.append(pd.bdate_range(pd.Timestamp(FIRST) + pd.Timedelta(days=1), "2021-12-31"))
    (directory / "calendars" / "day_future.txt").write_text("".join(f"{d:%Y-%m-%d}\n" for d in future))
    uri = (tmp / "qlib_store" / "mlruns").as_uri()
    out: dict[str, Any] = {}

    def phase(name: str, phase_kind: str, day: str) -> dict[str, Any]:
        spec = tmp / f"qlib_{name}.json"
        spec.write_text(json.dumps({"provider": str(directory), "uri": uri, "task": TASK, "rolling": ROLLING,
                                    "experiment": EXPERIMENT, "phase": phase_kind, "day": day}))
        # From "/": Qlib 0.9.7 puts its MLflow lock at the store path made relative (expm.py:237).
        seconds, stdout = timed([str(QLIB_PYTHON), __file__, "--qlib-phase", str(spec)], log, cwd=Path("/"))
        return {"wall_seconds": seconds, **json.loads(stdout.strip().splitlines()[-1])}

    out["first"] = phase("first", "first", FIRST)
    append_qlib_bin(market_obj, directory, end=DAY_NOT_DUE)
    out["no_window_due"] = phase("no_window_due", "routine", DAY_NOT_DUE)
    out["nothing_new"] = phase("nothing_new", "routine", DAY_NOT_DUE)
    append_qlib_bin(market_obj, directory, end=DAY_DUE)
    out["window_due"] = phase("window_due", "routine", DAY_DUE)
    return out


# -- the report ------------------------------------------------------------------------------------------


def _s(value: Any) -> str:
    return "-" if value is None else f"{value:.2f} s"


def report(result: dict[str, Any]) -> str:
    q, ql, f = result["qroll"], result.get("qlib"), result["features"]
    rows = [("case", "qroll update (wall)", "qroll library", "Qlib routine (wall)", "Qlib / qroll")]
    cases = (("no_window_due", "one new day, no window due"), ("nothing_new", "again, nothing new"),
             ("window_due", "one new day, one window due"))
    for case, label in cases:
        theirs = ql[case]["wall_seconds"] if ql else None
        rows.append((label, _s(q[case]["wall_seconds"]), _s(q[case]["library_seconds"]), _s(theirs),
                     f"{theirs / q[case]['wall_seconds']:.1f}x" if theirs else "-"))
    width = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)) for r in rows]
    due = q["window_due"]
    rest = due["wall_seconds"] - due["fit_seconds"]
    text = f"window due: qroll's fit {due['fit_seconds']:.2f} s, the rest {rest:.2f} s"
    if ql:
        theirs = ql["window_due"]
        other = theirs["wall_seconds"] - theirs["fit_seconds"]
        text += f"; Qlib's fit {theirs['fit_seconds']:.2f} s, the rest {other:.2f} s"
    lines.append(text)
    lines.append(f"features: full Alpha158 computation {f['full_seconds']:.2f} s; after one new day, through "
                 f"the cache {f['after_one_day_seconds']:.2f} s; the cache's counters then: {f['stats']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instruments", type=int, default=300)
    parser.add_argument("--no-qlib", action="store_true", help="qroll's side only")
    parser.add_argument("--qlib-phase", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--features", nargs=2, metavar=("DIR", "CACHE"), help=argparse.SUPPRESS)
    parser.add_argument("--qroll-update", nargs=2, metavar=("HOME", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.qroll_update:
        update_phase(*args.qroll_update)
        return
    if args.qlib_phase:
        qlib_phase(args.qlib_phase)
        return
    if args.features:
        features_phase(*args.features)
        return
    run_qlib = not args.no_qlib and QLIB_PYTHON.exists()
    if not args.no_qlib and not run_qlib:
        print(f"{QLIB_PYTHON} is missing (make qlib-venv): measuring qroll's side only")
    obj = market(args.instruments)
    tmp = Path(tempfile.mkdtemp(prefix="bench_online_"))
    log = tmp / "log.txt"
    try:
        result: dict[str, Any] = {
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "platform": platform.platform()},
            "instruments": args.instruments, "days": [FIRST, DAY_NOT_DUE, DAY_DUE],
            "features": measure_features(obj, tmp, log),
            "qroll": qroll_side(obj, tmp, log),
        }
        if run_qlib:
            result["qlib"] = qlib_side(obj, tmp, log)
    except BaseException:
        if log.exists():  # what each command printed, for the step that failed
            shutil.copy(log, ROOT / "benchmarks" / "results" / "online_log.txt")
            print(f"the commands' output: {ROOT / 'benchmarks' / 'results' / 'online_log.txt'}")
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str))
    print(report(result))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
